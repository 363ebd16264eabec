"""Shared pieces of :mod:`statgan.data`: the registry, split checking, default roots, pixel scaling.

Kept in its own module so that ``images.py`` and ``toy.py`` can register themselves without a
circular import through ``statgan.data.__init__``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, TypeVar

import numpy as np
import torch

from ..errors import ConfigError
from ..registry import PLUGIN_GROUPS, Registry

F = TypeVar("F", bound=Callable[..., Any])

#: name -> loader function ``loader(split="train", root=None, **options)``.
DATASETS = Registry("dataset", group=PLUGIN_GROUPS["dataset"])

#: Splits every dataset understands unless it says otherwise (celeba adds "valid").
TRAIN_TEST: Tuple[str, ...] = ("train", "test")


def dataset(name: str, *, aliases: tuple = (), splits: Tuple[str, ...] = TRAIN_TEST) -> Callable[[F], F]:
    """Register a loader in :data:`DATASETS` and remember which splits it accepts.

    The accepted splits are stored on the function (``loader.splits``) so that
    :func:`statgan.data.load` can reject a bad split before any file is touched.
    """

    def deco(fn: F) -> F:
        fn.splits = tuple(splits)  # type: ignore[attr-defined]
        return DATASETS.register(name, aliases=aliases)(fn)

    return deco


def check_split(name: str, split: Any, allowed: Tuple[str, ...] = TRAIN_TEST) -> str:
    """Return ``split`` if allowed, else raise a one-line ConfigError naming value and choices."""
    if not isinstance(split, str) or split not in allowed:
        raise ConfigError(
            f"{name}: unknown split {split!r}; expected one of: {', '.join(repr(s) for s in allowed)}"
        )
    return split


def data_home() -> Path:
    """Base folder for downloaded datasets: ``$STATGAN_DATA`` if set, else ``~/.cache/statgan/data``."""
    env = os.environ.get("STATGAN_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/statgan/data").expanduser()


def resolve_root(name: str, root: Optional[os.PathLike | str]) -> Path:
    """``root`` as a Path, or the default ``data_home()/<name>`` when None."""
    if root is None:
        return data_home() / name
    if not isinstance(root, (str, os.PathLike)):
        raise ConfigError(f"{name}: root must be a path, got {root!r}")
    return Path(root).expanduser()


def uint8_to_float(arr: np.ndarray) -> torch.Tensor:
    """uint8 pixels 0..255 -> float32 in [-1, 1] via ``x / 127.5 - 1`` (0 -> -1 and 255 -> 1 exactly)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if not arr.flags.writeable:  # e.g. np.asarray(PIL image); torch warns on read-only buffers
        arr = arr.copy()
    t = torch.from_numpy(arr)
    return t.to(torch.float32).div_(127.5).sub_(1.0)
