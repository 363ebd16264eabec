"""A strict reader for the IDX format used by MNIST and Fashion-MNIST.

Format (big-endian): two zero bytes, a type code, the number of dimensions ``d``, then ``d``
uint32 sizes, then the data in C order. We check every part of that header and that the payload
has exactly the announced size, so a truncated download or an HTML error page saved under the
right name is reported as a :class:`DatasetError` naming the file instead of producing garbage.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import DatasetError

# type code -> big-endian numpy dtype (from the format's description on the MNIST site).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when the name ends in ``.gz``; DatasetError on any failure."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"cannot read {path}: {exc}") from None


def parse_idx(data: bytes, path: Path, ndim: Optional[int] = None) -> np.ndarray:
    """Decode IDX ``data`` (already decompressed) read from ``path`` (named in error messages)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        head = data[:4].hex() or "empty file"
        raise DatasetError(f"{path} is not an IDX file (bad magic number {head})")
    dtype = _IDX_DTYPES[data[2]]
    nd = data[3]
    if ndim is not None and nd != ndim:
        raise DatasetError(f"{path}: expected an IDX file with {ndim} dimension(s), found {nd}")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims: Tuple[int, ...] = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=nd, offset=4))
    expected = math.prod(dims) * dtype.itemsize  # Python ints: a forged header cannot overflow
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: IDX payload has {len(data) - header} bytes but the header {dims} announces {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # Native byte order (and a writable copy) so torch.from_numpy accepts it.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: Path, ndim: Optional[int] = None) -> np.ndarray:
    """Read and decode the IDX file at ``path`` (``.gz`` or raw)."""
    return parse_idx(read_bytes(path), path, ndim)
