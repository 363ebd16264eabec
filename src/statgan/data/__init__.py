"""Datasets: ``load(name, split, root, **options)`` returns training data in one convention.

* Images: float32 in [-1, 1] (``pixel / 127.5 - 1``), shape (N, C, H, W). Small datasets come back
  as one in-memory tensor (the fast path for training); ``celeba`` and ``folder`` come back as a
  lazily decoded :class:`~statgan.data.images.ImageFiles` dataset whose items are (C, H, W)
  tensors (no labels), with ``.shape`` = (C, H, W) and ``len()``.
* Toy 2-D densities (``8gaussians``, ``25gaussians``, ``ring``, ``swissroll``, ``checkerboard``,
  ``gaussian``):
  an (n, 2) float32 tensor of fixed-seed samples; the exact density is
  ``statgan.data.toy.get_density(name)``.
* Labels (digit / class ids, int64, aligned with ``load``'s rows) for mnist5k, mnist,
  fashion-mnist, cifar10 and svhn: :func:`load_labels` with the same arguments.
* ``stacked-mnist`` (:mod:`statgan.data.stacked`): three MNIST digits as RGB channels, 1,000 modes,
  labels ``100·d1 + 10·d2 + d3``.

Splits are "train" and "test" ("valid" too for celeba). Nothing is downloaded unless a loader is
given ``download=True``; missing or malformed files raise one-line :class:`DatasetError` messages
naming the expected location. Heavy libraries (torchvision, scipy, PIL) load only when a loader
needs them.
"""

from __future__ import annotations

from typing import Any, List, Optional, Union

import torch

from ..errors import ConfigError
from ..registry import check_params
from . import images, toy  # noqa: F401  (importing them registers their loaders)
from . import stacked  # noqa: F401  (registers stacked-mnist)
from ._common import DATASETS, TRAIN_TEST, check_split, data_home
from .images import ImageFiles
from .toy import get_density

__all__ = ["DATASETS", "ImageFiles", "data_home", "get_density", "labelled", "load", "load_labels", "names"]


def names() -> List[str]:
    """All registered dataset names (canonical spellings, sorted)."""
    return DATASETS.names()


def load(name: str, split: str = "train", root: Optional[str] = None,
         **options: Any) -> Union[torch.Tensor, torch.utils.data.Dataset]:
    """Load dataset ``name``'s ``split`` from ``root`` (None: the dataset's default location).

    ``options`` are the loader's keyword options (e.g. ``download=True`` for mnist, ``image_size``
    for folder/celeba, ``n`` for toy data); unknown names or options raise ConfigError.
    """
    loader = DATASETS[name]  # ConfigError listing the names if unknown
    canonical = DATASETS.canonical(name)
    check_split(canonical, split, getattr(loader, "splits", TRAIN_TEST))
    return DATASETS.build(canonical, split=split, root=root, **options)


def labelled() -> List[str]:
    """Datasets for which :func:`load_labels` works."""
    return sorted(images.LABELS)


def load_labels(name: str, split: str = "train", root: Optional[str] = None, **options: Any) -> torch.Tensor:
    """Class labels (int64, shape (N,), row i labels row i of ``load(name, split, root, **options)``).

    Available for mnist5k, mnist, fashion-mnist, cifar10 (0..9 in CIFAR order) and svhn (0..9,
    SVHN's "10" mapped to 0). Other datasets raise ConfigError.
    """
    canonical = DATASETS.canonical(name)
    fn = images.LABELS.get(canonical)
    if fn is None:
        raise ConfigError(f"dataset {canonical!r} has no labels; labelled datasets: {', '.join(labelled())}")
    check_split(canonical, split, getattr(DATASETS[canonical], "splits", TRAIN_TEST))
    check_params(fn, options, f"dataset {canonical!r}", n_positional=0)
    return fn(split=split, root=root, **options)
