"""Heavy third-party modules that only some commands need, imported on first use.

``scipy.stats`` takes about a second to import (more on a busy machine); only statistical tests
in the audit and the reproductions use it, so ``statgan --help``, ``list`` or ``train`` should not
pay for it. One function per module keeps the lazy import in one place.
"""

from __future__ import annotations

from types import ModuleType


def scipy_stats() -> ModuleType:
    """``scipy.stats``, imported on first use."""
    # heavy (~1 s): off the start-up path of every command that runs no statistical test
    from scipy import stats

    return stats
