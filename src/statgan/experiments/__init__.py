"""Reproductions of published claims, one registered entry each: ``statgan reproduce NAME``.

A reproduction is a module (or any object) that satisfies
:class:`~statgan.experiments.protocol.Reproduction`: its ``NAME``, its ``BUDGETS`` (``tiny`` for the
test suite, ``small`` for a CPU run whose report is committed, ``full`` for the paper-like setting),
the grid of cells for a budget, a cell runner and a report writer. It is checked against the
protocol when it is registered in :data:`REPRODUCTIONS` (``experiments/reproductions.py``);
:func:`run` runs the grid with :func:`statgan.experiments.grid.run_grid` (resumable, parallel) and
writes the markdown from whatever cells finished.

    bridging   Filippone & Linhard 2025: relaxation, gradient regularisation, SAM, MC dropout,
               batch size and sharpness on mnist5k; latent dimension on 2-D densities
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from .. import catalog
from ..runtime.lazy import lazy_exports
from .defaults import DEFAULT_BUDGET, DEFAULT_JOBS, DEFAULT_OUT, DEFAULT_REPORT

# the registry and the runner import torch and every reproduction: loaded on first use, so that the
# CLI's help (which quotes the names, budgets and defaults) starts without them
__getattr__, __dir__ = lazy_exports(__name__, {"REPRODUCTIONS": "reproductions", "run": "runner"})

if TYPE_CHECKING:
    from .reproductions import REPRODUCTIONS
    from .runner import run


def names() -> List[str]:
    return catalog.builtin_names("reproduction")  # reproductions have no plugin group


def budget_names() -> List[str]:
    """The budgets of all reproductions, in their definition order (tiny, small, medium, full)."""
    out: List[str] = []
    for name in names():
        out += [b for b in catalog.attribute("reproduction", name, "BUDGETS") if b not in out]
    return out


__all__ = ["REPRODUCTIONS", "DEFAULT_BUDGET", "DEFAULT_JOBS", "DEFAULT_OUT", "DEFAULT_REPORT", "names", "budget_names",
           "run"]
