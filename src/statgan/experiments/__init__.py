"""Reproductions of published claims, one registered entry each: ``statgan reproduce NAME``.

A reproduction is a module that defines its budgets (``tiny`` for the test suite, ``small`` for a
CPU run whose report is committed, ``full`` for the paper-like setting), the grid of cells for a
budget and a report writer; :func:`run` runs the grid with :func:`statgan.experiments.grid.run_grid`
(resumable, parallel) and writes the markdown from whatever cells finished.

    bridging   Filippone & Linhard 2025: relaxation, gradient regularisation, SAM, MC dropout,
               batch size and sharpness on mnist5k; latent dimension on 2-D densities
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from ..errors import StatganError
from ..registry import Registry

REPRODUCTIONS = Registry("reproduction")


@REPRODUCTIONS.register("bridging")
def _bridging() -> Any:
    from . import bridging

    return bridging


def names() -> list:
    return REPRODUCTIONS.names()


def _machine() -> str:
    import os

    import torch

    cores = os.cpu_count() or 0
    return f"{platform.machine()} CPU, {cores} cores, torch {torch.__version__}, Python {platform.python_version()}"


def run(name: str, budget: str = "small", out: Optional[Path] = None, jobs: int = 1,
        seeds: Optional[Sequence[int]] = None, report: Optional[Path] = None, command: Optional[str] = None,
        report_only: bool = False,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> Dict[str, Any]:
    """Run reproduction ``name`` at ``budget`` under ``out`` and write its report (``report``,
    default ``OUT/NAME.md``), rewritten after every finished cell; ``report_only`` runs nothing and
    writes the report from the cells already finished. Returns {"report": path, "finished": n,
    "total": n, "cells": {...}}."""
    from .grid import load_result, run_grid

    if name not in REPRODUCTIONS:
        raise StatganError(f"unknown reproduction {name!r}; choose one of: {', '.join(names())}")
    mod = REPRODUCTIONS.build(name)
    if budget not in mod.BUDGETS:
        raise StatganError(f"unknown budget {budget!r} for {name}; choose one of: {', '.join(mod.BUDGETS)}")
    if jobs < 1:
        raise StatganError(f"--jobs must be at least 1, got {jobs}")
    if seeds is not None:
        seeds = list(seeds)
        if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise StatganError(f"--seeds must be distinct integers >= 0, got {seeds}")
    out = Path(out) if out is not None else Path("runs") / "reproduce" / f"{name}-{budget}"
    report = Path(report) if report is not None else out / f"{name}.md"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StatganError(f"cannot create output folder {str(out)!r}: {exc.strerror or exc}") from None
    cells = mod.cells(budget, seeds)
    t0 = time.perf_counter()
    command = command or f"statgan reproduce {name} --budget {budget} --out {out} --jobs {jobs}"

    def write(done: Dict[str, Any]) -> None:
        mod.write_report(budget, cells, done, report, command, time.perf_counter() - t0, _machine())

    saved = out / "command.txt"  # the command that ran the cells, quoted by --report-only reports
    if report_only:
        if saved.is_file():
            command = saved.read_text().strip()
        results = {c.key: r for c in cells if (r := load_result(out, c)) is not None}
    else:
        saved.write_text(command + "\n")
        results = run_grid(cells, out, mod.run_cell, jobs=jobs, log=log, on_result=write,
                           threads=getattr(mod.BUDGETS[budget], "threads", None))
    write(results)
    log(f"wrote {report} ({len(results)} of {len(cells)} cells finished)")
    return {"report": report, "finished": len(results), "total": len(cells), "cells": results}


__all__ = ["REPRODUCTIONS", "names", "run"]
