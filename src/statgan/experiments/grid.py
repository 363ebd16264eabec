"""A small resumable grid runner: run cells (one training run + its evaluation each) in this
process or in ``jobs`` worker processes, caching each finished cell as JSON.

A :class:`Cell` is a key (``"mnist/ragan/sam/s0"``, also its path under ``OUT/cells/``) and a
JSON-able ``spec`` that completely describes the run; the runner is a module-level function
``runner(spec, work_dir) -> dict`` (picklable, so worker processes can call it). A cached result is
reused only when its stored spec hash matches the cell's, so changing a budget re-runs exactly the
cells whose definition changed, and an interrupted grid resumes where it stopped: finished cells
are skipped, and an unfinished cell keeps its work directory, so that a runner that resumes (the
Bridging one does, from the trainer's last checkpoint) continues it. That holds however the
attempt ended: Ctrl-C or SIGTERM (the grid stops, the trainer checkpoints first), SIGKILL, a lost
machine or a worker of ``jobs`` > 1 stopped with the grid (the runner's periodic checkpoints). Each
attempt keeps :data:`ATTEMPT_FILE` in the work directory -- the cell's spec hash and the CPU and
wall seconds spent on it so far, refreshed every :data:`HEARTBEAT_S` seconds -- so the record's
times include the attempts it continued (an attempt killed without warning loses at most its
last ``HEARTBEAT_S`` seconds from that sum). A work directory without that file (or of another
spec), or of an attempt that crashed, is cleared and the cell starts from scratch.

Cells that fail with a :class:`~statgan.train.trainer.TrainingDiverged` are results too (cached
with ``"error"``); any other exception is reported and *not* cached, so a rerun tries again.
Workers use one torch thread each: ``jobs`` processes then share the cores instead of fighting
over them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import StatganError, TrainingInterrupted
from ..rundir.files import atomic_write_json, atomic_write_text
from ..train.trainer import TrainingDiverged

Runner = Callable[[Dict[str, Any], Path], Dict[str, Any]]


@dataclass(frozen=True)
class Cell:
    key: str
    spec: Dict[str, Any]

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.spec)


def spec_hash(spec: Dict[str, Any]) -> str:
    """Content hash of a JSON-able spec (key order does not matter)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def result_path(out: Path, key: str) -> Path:
    return Path(out) / "cells" / f"{key}.json"


def records_path(out: Path) -> Path:
    """``OUT/records.jsonl``: every finished cell's record, one JSON object per line (commit it to keep
    a grid's results without its run directories)."""
    return Path(out) / "records.jsonl"


def write_records(path: Path, records: Dict[str, Dict[str, Any]]) -> None:
    """The finished cells' records as JSON lines, sorted by key (tracebacks left out), written atomically."""
    lines = [json.dumps({k: v for k, v in records[key].items() if k != "traceback"}, sort_keys=True)
             for key in sorted(records)]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))


def read_records(paths: Sequence[Path], cells: Sequence[Cell]) -> Dict[str, Dict[str, Any]]:
    """{key: record} for the cells whose record (same key, same spec hash) is in the JSON-lines files
    ``paths``; a later file's record of a cell replaces an earlier one's. Records of other cells or
    other specs are skipped. A missing file or a line that is not a JSON object is a one-line error."""
    wanted = {c.key: c.spec_hash for c in cells}
    found: Dict[str, Dict[str, Any]] = {}
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StatganError(f"cannot read records file {str(path)!r}: {exc.strerror or exc}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not isinstance(rec, dict) or "key" not in rec:
                raise StatganError(f"{path}:{n}: not a cell record (a JSON object with a 'key')")
            if wanted.get(rec["key"]) == rec.get("spec_hash"):
                found[rec["key"]] = rec
    return found


def parse_shard(text: str) -> Tuple[int, int]:
    """``--shard i/N`` -> (i, N): this process runs cells i, i + N, i + 2N, ... (0 <= i < N), so N
    processes or machines (a Slurm job array with ``--array=0-(N-1)``) share a grid; one line when
    the text is not of that form."""
    head, sep, tail = str(text).partition("/")
    try:
        i, n = int(head), int(tail)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise StatganError(f"--shard {text!r}: expected i/N with 0 <= i < N, e.g. 0/4 ... 3/4")
    return i, n


def shard_cells(cells: Sequence[Cell], shard: Optional[Tuple[int, int]]) -> List[Cell]:
    """The cells shard ``(i, N)`` runs: every N-th from the i-th, in the grid's order (all for None).
    The shards of one N partition the grid, and a cell's shard depends only on its position."""
    if shard is None:
        return list(cells)
    i, n = shard
    return list(cells)[i::n]


def shard_records_path(out: Path, shard: Tuple[int, int]) -> Path:
    """``OUT/records-shard-I-of-N.jsonl``: a shard's own records, so shards sharing OUT never write
    one file; ``--collect OUT/records*.jsonl`` reads them together."""
    return Path(out) / f"records-shard-{shard[0]}-of-{shard[1]}.jsonl"


def work_dir(out: Path, key: str) -> Path:
    return Path(out) / "runs" / key


def load_result(out: Path, cell: Cell) -> Optional[Dict[str, Any]]:
    """The cached result of ``cell`` if there is one for this exact spec."""
    p = result_path(out, cell.key)
    if not p.is_file():
        return None
    try:
        res = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return res if res.get("spec_hash") == cell.spec_hash else None


def _write_json(path: Path, obj: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj, sort_keys=True)


#: kept in a cell's work directory while an attempt at it runs, and after one that did not finish:
#: ``{"spec_hash", "cpu_s", "wall_s"}``, the seconds spent on the cell so far. The next run of the same
#: cell keeps the directory (the runner continues from its checkpoint) and adds the seconds to the record
ATTEMPT_FILE = "attempt.json"
#: the name a grid stopped by a signal wrote before the file was kept for every attempt (read, not written)
_OLD_ATTEMPT_FILE = "interrupted.json"
#: seconds between two refreshes of :data:`ATTEMPT_FILE` during an attempt
HEARTBEAT_S = 30.0


def _earlier_attempt(wd: Path, cell: Cell) -> Optional[Tuple[float, float]]:
    """(CPU s, wall s) of the unfinished attempts at ``cell`` whose work ``wd`` keeps, or None."""
    for name in (ATTEMPT_FILE, _OLD_ATTEMPT_FILE):
        try:
            rec = json.loads((wd / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("spec_hash") == cell.spec_hash:
            return float(rec["cpu_s"]), float(rec["wall_s"])
    return None


class _Attempt:
    """The seconds spent on one cell, kept in its work directory (:data:`ATTEMPT_FILE`) from the
    start of an attempt and refreshed by a daemon thread every :data:`HEARTBEAT_S` seconds, so that
    an attempt killed without warning still leaves them for the next one."""

    def __init__(self, wd: Path, cell: Cell, spent: Tuple[float, float]) -> None:
        self.path, self.spec_hash = wd / ATTEMPT_FILE, cell.spec_hash
        self.spent_cpu, self.spent_wall = spent
        self.c0, self.t0 = time.process_time(), time.perf_counter()
        self._stop = threading.Event()
        self.write()
        self._thread = threading.Thread(target=self._beat, name="grid-attempt-heartbeat", daemon=True)
        self._thread.start()

    def seconds(self) -> Tuple[float, float]:
        """(CPU s, wall s) of this cell so far, earlier attempts included (CPU: this whole process,
        which runs one cell at a time)."""
        return self.spent_cpu + time.process_time() - self.c0, self.spent_wall + time.perf_counter() - self.t0

    def write(self) -> None:
        cpu, wall = self.seconds()
        _write_json(self.path, {"spec_hash": self.spec_hash, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2)})

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.write()
            except OSError:  # a full disk must not kill the cell; the last good file stays
                pass

    def end(self, keep: bool) -> None:
        """Stop the heartbeat; keep the file with the final seconds (an attempt to continue) or remove it."""
        self._stop.set()
        self._thread.join()
        if keep:
            self.write()
        else:
            self.path.unlink(missing_ok=True)


def _execute(runner: Runner, cell: Cell, out: str, threads: Optional[int]) -> Dict[str, Any]:
    """Run one cell (in this process or a worker); returns the record, with ``cache`` telling
    whether it may be stored."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    wd = work_dir(Path(out), cell.key)
    earlier = _earlier_attempt(wd, cell)
    if earlier is None and wd.exists():
        shutil.rmtree(wd)  # another spec's work, or an attempt that crashed: start the cell again
    wd.mkdir(parents=True, exist_ok=True)
    (wd / _OLD_ATTEMPT_FILE).unlink(missing_ok=True)  # its seconds are carried on in ATTEMPT_FILE
    attempt = _Attempt(wd, cell, earlier or (0.0, 0.0))
    record: Dict[str, Any] = {"key": cell.key, "spec": cell.spec, "spec_hash": cell.spec_hash}
    keep = False  # whether the next run continues this attempt's work
    try:
        record["result"] = runner(cell.spec, wd)
        record["cache"] = True
    except TrainingDiverged as exc:
        record["error"] = f"diverged: {exc}"
        record["cache"] = True
    except (TrainingInterrupted, KeyboardInterrupt):
        # Ctrl-C / SIGTERM while the cell trained: the trainer wrote a checkpoint; stop the grid
        # (do not go on to the next cell) and leave what the next run needs to continue this one
        keep = True
        raise
    except Exception as exc:  # noqa: BLE001 (reported, not cached: a rerun tries again, from scratch)
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=8)
        record["cache"] = False
    finally:
        attempt.end(keep=keep)
        if threads:
            torch.set_num_threads(previous)
    cpu_s, wall_s = attempt.seconds()
    # with the time of unfinished attempts that this one continued
    record["wall_s"] = round(wall_s, 2)
    # CPU time of this process: what the cell costs on an idle core, whatever else the machine runs
    record["cpu_s"] = round(cpu_s, 2)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return record


def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for libraries that read it later (torch is told directly)
    torch.set_num_threads(threads)


def run_grid(
    cells: Sequence[Cell],
    out: Path,
    runner: Runner,
    jobs: int = 1,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    on_result: Optional[Callable[[Dict[str, Dict[str, Any]]], None]] = None,
    threads: Optional[int] = None,
) -> Dict[str, Dict[str, Any]]:
    """Run every cell not already cached under ``out``; returns {key: record} of all finished cells
    (cached and new). ``jobs`` = 1 runs in this process (torch threads untouched); more uses
    worker processes with one torch thread each. ``on_result(done)`` is called after every newly
    finished cell (e.g. to rewrite a report, so that a long grid always has an up-to-date one).
    ``threads``: torch threads for cells run in this process (``jobs`` = 1; default: untouched)."""
    out = Path(out)
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError("run_grid: duplicate cell keys")
    done: Dict[str, Dict[str, Any]] = {}
    todo: List[Cell] = []
    for c in cells:
        res = load_result(out, c)
        if res is not None:
            done[c.key] = res
        else:
            todo.append(c)
    log(f"grid: {len(cells)} cells, {len(done)} already finished (skipped), {len(todo)} to run with {jobs} job(s)")
    total, count, t_start = len(todo), 0, time.perf_counter()

    def finish(rec: Dict[str, Any]) -> None:
        nonlocal count
        count += 1
        cache = rec.pop("cache", False)
        status = "ok" if "error" not in rec else rec["error"].splitlines()[0][:160]
        log(f"[{count}/{total}] {rec['key']}: {status} ({rec['wall_s']:.0f}s wall, {rec['cpu_s']:.0f}s CPU; "
            f"{time.perf_counter() - t_start:.0f}s elapsed)")
        if cache:
            _write_json(result_path(out, rec["key"]), rec)
            done[rec["key"]] = rec
            if on_result is not None:
                on_result(done)
        elif "traceback" in rec:
            log(rec["traceback"])

    if jobs <= 1:
        for c in todo:
            finish(_execute(runner, c, str(out), threads))
        return done
    ctx = multiprocessing.get_context("spawn")  # no forked torch state (threads, RNG) in workers
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(1,))
    previous = _sigterm_as_interrupt()
    try:
        pending = {pool.submit(_execute, runner, c, str(out), 1) for c in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                finish(f.result())
    except BaseException:
        # Ctrl-C / SIGTERM: stop the workers now, instead of leaving them to finish or hang on a closed
        # result queue; their cells continue from the runner's last periodic checkpoint on the next run
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    pool.shutdown()
    return done


def _sigterm_as_interrupt() -> Any:
    """In the main thread: make SIGTERM raise KeyboardInterrupt (so the grid stops its workers);
    returns the previous handler, or None when it could not be installed."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


__all__ = ["ATTEMPT_FILE", "HEARTBEAT_S", "Cell", "spec_hash", "result_path", "records_path", "write_records", "read_records", "work_dir", "load_result",
           "run_grid", "parse_shard", "shard_cells", "shard_records_path"]
