"""Heavy third-party modules that only some commands need, imported on first use.

``scipy.stats`` takes about a second to import (more on a busy machine); only statistical tests
in the audit and the reproductions use it, so ``statgan --help``, ``list`` or ``train`` should not
pay for it. One function per module keeps the lazy import in one place.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any, Callable, List, Mapping, Tuple


def scipy_stats() -> ModuleType:
    """``scipy.stats``, imported on first use."""
    # heavy (~1 s): off the start-up path of every command that runs no statistical test
    from scipy import stats

    return stats


def lazy_exports(package: str, exports: Mapping[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) that import each name in ``exports``
    from its submodule (``exports[name]``, relative to ``package``) on first access.

    The scientific-Python lazy-loading pattern (SPEC 1), written out because it is ten lines: a
    package's public names stay where users find them (``statgan.audit.invert``), while importing
    the package itself -- as ``statgan.audit.settings`` must, for the CLI's start-up -- loads no torch.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)  # next time a plain attribute
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
