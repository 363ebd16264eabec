"""Running a reproduction: its grid of cells (resumable, parallel) and its report (``statgan reproduce``)."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from ..errors import StatganError
from ..rundir.files import atomic_write_text
from .defaults import DEFAULT_BUDGET, DEFAULT_JOBS, DEFAULT_OUT, DEFAULT_REPORT
from .grid import (load_result, read_records, records_path, run_grid, shard_cells, shard_records_path,
                   write_records)
from .protocol import Reproduction
from .reproductions import REPRODUCTIONS


def _module(name: str) -> Reproduction:
    """The registered reproduction ``name`` (a one-line error naming the others when there is none)."""
    if name not in REPRODUCTIONS:
        raise StatganError(f"unknown reproduction {name!r}; choose one of: {', '.join(REPRODUCTIONS.names())}")
    return REPRODUCTIONS[name]


def _machine() -> str:
    cores = os.cpu_count() or 0
    return f"{platform.machine()} CPU, {cores} cores, torch {torch.__version__}, Python {platform.python_version()}"


def run(name: str, budget: str = DEFAULT_BUDGET, out: Optional[Path] = None, jobs: int = DEFAULT_JOBS,
        seeds: Optional[Sequence[int]] = None, report: Optional[Path] = None, command: Optional[str] = None,
        report_only: bool = False, collect: Optional[Sequence[Path]] = None,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
        shard: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """Run reproduction ``name`` at ``budget`` under ``out`` (default :data:`DEFAULT_OUT`) and write
    its report (``report``, default :data:`DEFAULT_REPORT` in ``out``), rewritten after every finished
    cell, and ``OUT/records.jsonl`` (every finished cell's record, to commit). ``report_only`` runs
    nothing and writes the report from the cells already finished under ``out``; ``collect`` runs
    nothing and writes it from the records in those JSON-lines files instead. ``shard=(i, N)`` runs
    only the cells :func:`~statgan.experiments.grid.shard_cells` gives shard i of N, writes its records
    to ``OUT/records-shard-I-of-N.jsonl`` and its report from every cell finished under ``out`` (all
    shards', where they share a folder); on separate machines, ``collect`` the shards' records files.
    Returns {"report": path, "finished": n, "total": n, "cells": {...}}."""
    mod = _module(name)
    if budget not in mod.BUDGETS:
        raise StatganError(f"unknown budget {budget!r} for {name}; choose one of: {', '.join(mod.BUDGETS)}")
    if jobs < 1:
        raise StatganError(f"--jobs must be at least 1, got {jobs}")
    if seeds is not None:
        seeds = list(seeds)
        if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise StatganError(f"--seeds must be distinct integers >= 0, got {seeds}")
    out = Path(out) if out is not None else Path(DEFAULT_OUT.format(name=name, budget=budget))
    report = Path(report) if report is not None else out / DEFAULT_REPORT.format(name=name)
    cells = mod.cells(budget, seeds)
    t0 = time.perf_counter()
    command = command or f"statgan reproduce {name} --budget {budget} --out {out} --jobs {jobs}"

    def write(done: Dict[str, Any]) -> None:
        mod.write_report(budget, cells, done, report, command, time.perf_counter() - t0, _machine())

    if collect:
        results = read_records(collect, cells)
        write(results)
        log(f"wrote {report} from {len(results)} of {len(cells)} cells' records in {', '.join(map(str, collect))}")
        return {"report": report, "finished": len(results), "total": len(cells), "cells": results}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StatganError(f"cannot create output folder {str(out)!r}: {exc.strerror or exc}") from None
    saved = out / "command.txt"  # the command that ran the cells, quoted by --report-only reports
    if report_only:
        if saved.is_file():
            command = saved.read_text().strip()
        results = {c.key: r for c in cells if (r := load_result(out, c)) is not None}
    else:
        atomic_write_text(saved if shard is None else out / f"command-shard-{shard[0]}-of-{shard[1]}.txt", command + "\n")
        mine = shard_cells(cells, shard)
        results = run_grid(mine, out, mod.run_cell, jobs=jobs, log=log, on_result=write,
                           threads=mod.BUDGETS[budget].threads)
        if shard is not None:  # the report: every cell finished here, this shard's and the others'
            write_records(shard_records_path(out, shard), results)
            results = {c.key: r for c in cells if (r := load_result(out, c)) is not None}
    write(results)
    records = records_path(out) if shard is None else shard_records_path(out, shard)
    if shard is None:
        write_records(records, results)
    log(f"wrote {report} and {records} ({len(results)} of {len(cells)} cells finished)")
    return {"report": report, "finished": len(results), "total": len(cells), "cells": results}


__all__ = ["REPRODUCTIONS", "run"]
