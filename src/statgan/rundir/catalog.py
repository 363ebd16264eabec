"""What is in a run directory, at a glance: ``statgan runs`` and ``statgan compare``.

Everything here reads files only (config.yaml, status.json, checkpoints/*.json, metrics.jsonl,
eval/*.json) — no model is built and nothing is written — so listing a folder of hundreds of runs
is quick, and a half-written or foreign folder is described rather than fatal.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from ..errors import StatganError
from . import checkpoint as ckpt
from .run import CONFIG_FILE, RunStatus, checkpoint_dir, read_metrics, read_status


@dataclass(frozen=True)
class EvalResult:
    """One ``statgan eval`` result file of a run."""

    path: Path
    step: Optional[int]
    metrics: Dict[str, float]
    labels: Dict[str, str]

    def headline(self) -> str:
        """``FID (lenet-…) 12.3`` for the first metric, the one a table has room for."""
        if not self.metrics:
            return "-"
        key = next(iter(self.metrics))
        return f"{self.labels.get(key, key)} {self.metrics[key]:.4g}"


@dataclass(frozen=True)
class RunInfo:
    """A run directory described from its files."""

    path: Path
    name: str
    config: Dict[str, Any]
    step: int
    total: Optional[int]
    status: str  # finished | running | interrupted | diverged | failed | no checkpoint
    message: str = ""
    evals: Tuple[EvalResult, ...] = ()
    fid_during_training: Optional[Tuple[int, float, str]] = None  # (step, fid, extractor id) of the last one

    @property
    def dataset(self) -> str:
        return str(self.config.get("data", {}).get("name", "?"))

    @property
    def arch(self) -> str:
        return str(self.config.get("model", {}).get("arch", "?"))

    @property
    def objective(self) -> str:
        return str(self.config.get("objective", {}).get("name", "?"))

    @property
    def regularizers(self) -> str:
        regs = self.config.get("regularizers") or {}
        return ",".join(sorted(regs)) or "-"

    @property
    def latest_eval(self) -> str:
        if self.evals:
            return self.evals[-1].headline()
        if self.fid_during_training is not None:
            step, fid, ext = self.fid_during_training
            return f"FID ({ext}) {fid:.4g} @ {step}"
        return "-"


def _read_evals(run_dir: Path) -> Tuple[EvalResult, ...]:
    out = []
    for p in sorted((run_dir / "eval").glob("*.json"), key=lambda q: q.stat().st_mtime):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("metrics"), dict):
            step = rec.get("generated", {}).get("step")
            out.append(EvalResult(p, step if isinstance(step, int) else None, dict(rec["metrics"]), dict(rec.get("labels", {}))))
    return tuple(out)


def describe_run(run_dir: Path) -> RunInfo:
    """A :class:`RunInfo` for ``run_dir``; StatganError if it has no ``config.yaml``."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    try:
        config = yaml.safe_load(cfg_path.read_text()) or {}
    except FileNotFoundError:
        raise StatganError(f"{str(run_dir)!r} is not a statgan run directory (no config.yaml)") from None
    except yaml.YAMLError as exc:
        raise StatganError(f"{str(cfg_path)!r} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise StatganError(f"{str(cfg_path)!r} does not hold a config mapping")
    total = config.get("train", {}).get("steps")
    found = ckpt.list_checkpoints(checkpoint_dir(run_dir))
    step = found[-1][0] if found else 0
    recorded: Optional[RunStatus] = read_status(run_dir)
    if recorded is not None:
        status, message = recorded.state, recorded.message
    elif not found:
        status, message = "no checkpoint", ""
    elif isinstance(total, int) and step >= total:
        status, message = "finished", ""
    else:
        status, message = "interrupted", ""
    fid = None
    for rec in read_metrics(run_dir):
        if isinstance(rec.get("fid"), (int, float)):
            fid = (int(rec["step"]), float(rec["fid"]), str(rec.get("fid_extractor", "?")))
    return RunInfo(run_dir, run_dir.name, config, step, total if isinstance(total, int) else None, status, message,
                   _read_evals(run_dir), fid)


def find_runs(root: Path) -> List[RunInfo]:
    """Every run directory directly under ``root`` (or ``root`` itself if it is one), by name."""
    root = Path(root)
    if not root.is_dir():
        raise StatganError(f"{str(root)!r} is not a folder; give the folder that holds the run directories (default runs/)")
    candidates = [root] if (root / CONFIG_FILE).is_file() else sorted(p for p in root.iterdir() if (p / CONFIG_FILE).is_file())
    return [describe_run(p) for p in candidates]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_runs_table(runs: Sequence[RunInfo]) -> str:
    """The text table ``statgan runs`` prints."""
    if not runs:
        return "no runs found"
    rows = [[r.name, r.dataset, r.arch, r.objective, r.regularizers, f"{r.step}/{r.total if r.total is not None else '?'}",
             r.status, r.latest_eval] for r in runs]
    return _table(["name", "data", "arch", "objective", "regularizers", "step", "status", "latest eval"], rows)


# ---- compare ------------------------------------------------------------------------------------
def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    """Dotted keys of a nested config; an empty section reads as unset (``None``), like a section an
    older config lacks, so "no regularizers" compares equal however it was written."""
    if isinstance(d, dict) and d:
        out: Dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: None if isinstance(d, dict) else d}


@dataclass(frozen=True)
class Comparison:
    """Several runs side by side: the config keys where they differ, and their results."""

    runs: Tuple[RunInfo, ...]
    differences: Tuple[Tuple[str, Tuple[Any, ...]], ...]  # (dotted key, value per run)
    results: Tuple[Tuple[str, Tuple[Optional[float], ...]], ...] = field(default=())  # (metric label, value per run)


def compare_runs(run_dirs: Sequence[Path]) -> Comparison:
    """Config differences and the latest eval result of each metric, per run."""
    if len(run_dirs) < 2:
        raise StatganError(f"compare needs at least two run directories, got {len(run_dirs)}")
    runs = tuple(describe_run(Path(p)) for p in run_dirs)
    flat = [_flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat))
    diffs = []
    for k in keys:
        # a key an older run's config lacks reads as unset (None), like a key set to null
        vals = tuple(f.get(k) for f in flat)
        if any(v != vals[0] for v in vals[1:]):
            diffs.append((k, vals))
    labels: Dict[str, Dict[int, float]] = {}
    for i, r in enumerate(runs):
        for ev in r.evals:  # later files win: the latest result of each metric
            for key, val in ev.metrics.items():
                labels.setdefault(ev.labels.get(key, key), {})[i] = val
        if r.fid_during_training is not None:
            step, fid, ext = r.fid_during_training
            labels.setdefault(f"FID during training ({ext})", {})[i] = fid
    results = tuple((lab, tuple(vals.get(i) for i in range(len(runs)))) for lab, vals in labels.items())
    return Comparison(runs, tuple(diffs), results)


def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def format_comparison(c: Comparison) -> str:
    """The text ``statgan compare`` prints: differing config keys, then results."""
    names = [r.name for r in c.runs]
    parts = []
    if c.differences:
        parts.append(_table(["config", *names], [[k, *map(_show, vals)] for k, vals in c.differences]))
    else:
        parts.append("configs are identical")
    status = [["step", *[f"{r.step}/{r.total if r.total is not None else '?'}" for r in c.runs]],
              ["status", *[r.status for r in c.runs]]]
    parts.append(_table(["run", *names], status + [[lab, *map(_show, vals)] for lab, vals in c.results]))
    return "\n\n".join(parts)


def comparison_html(c: Comparison, images: Dict[str, str]) -> str:
    """A self-contained page: the two tables, and per run the picture data URIs in ``images``
    (keys ``"<run name>/curves"`` and ``"<run name>/samples"``)."""
    esc = html.escape

    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    names = [r.name for r in c.runs]
    diff_rows = [[k, *map(_show, vals)] for k, vals in c.differences] or [["(identical)", *[""] * len(names)]]
    res_rows = [["step", *[f"{r.step}/{r.total if r.total is not None else '?'}" for r in c.runs]],
                ["status", *[r.status for r in c.runs]]] + [[lab, *map(_show, vals)] for lab, vals in c.results]
    figs = []
    for r in c.runs:
        pics = "".join(f'<img alt="{esc(r.name)} {kind}" src="{images[f"{r.name}/{kind}"]}">'
                       for kind in ("curves", "samples") if f"{r.name}/{kind}" in images)
        figs.append(f"<section><h3>{esc(r.name)}</h3>{pics or '<p>no pictures</p>'}</section>")
    style = ("body{font-family:sans-serif;margin:16px;max-width:1100px}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}"
             "img{max-width:480px;margin:4px;vertical-align:top;border:1px solid #eee}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>statgan compare</title><style>{style}</style></head>"
            f"<body><h1>statgan compare</h1><h2>Config differences</h2>{table(['config', *names], diff_rows)}"
            f"<h2>Results</h2>{table(['run', *names], res_rows)}<h2>Curves and samples</h2>{''.join(figs)}</body></html>\n")
