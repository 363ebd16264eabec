"""Reading and writing a run directory as a whole: its config and its generator.

Everything after training (``statgan sample``, ``eval``, ``invert``, ``audit``, reproductions) reads
a run through this module and never imports the trainer::

    runs/NAME/config.yaml            the resolved config   (read_run_config / write_run_config)
    runs/NAME/status.json            what the run is doing or how it ended   (read_status / write_status)
    runs/NAME/metrics.jsonl          one JSON object per log step            (read_metrics)
    runs/NAME/checkpoints/*.json     checkpoints           (statgan.rundir.checkpoint)
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from torch import nn

from .. import catalog
from .. import config as config_mod
from ..config import Config
from ..errors import CheckpointError, StatganError
from ..models import build_models
from ..runtime.device import select_device
from . import checkpoint as ckpt
from .files import atomic_write_json, atomic_write_text

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"  # loss curves, redrawn as training goes
PLUGINS_FILE = "plugins.json"  # the plugin packages a run's components come from (absent: none)

#: the states a run can be in; ``failed`` and ``diverged`` runs without a checkpoint may be reused
RUN_STATES = ("running", "finished", "interrupted", "diverged", "failed")


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / CONFIG_FILE


def read_run_config(run_dir: Path) -> Config:
    """The config a run was trained with; one-line error if ``run_dir`` is no run directory."""
    p = config_path(run_dir)
    if not p.is_file():
        raise StatganError(f"{str(run_dir)!r} is not a statgan run directory (no config.yaml)")
    check_plugins(run_dir)
    return config_mod.load(p)


def write_run_config(run_dir: Path, cfg: Config) -> None:
    """Write (atomically) the resolved config of a run: the one place ``config.yaml`` is written;
    beside it ``plugins.json``, the plugin packages its dataset, networks, objective or regularisers
    come from (none: no file)."""
    atomic_write_text(config_path(run_dir), cfg.to_yaml())
    origins = config_mod.plugin_origins(cfg)
    plugins = Path(run_dir) / PLUGINS_FILE
    if origins:
        atomic_write_text(plugins, json.dumps(origins, indent=1) + "\n")
    elif plugins.is_file():  # a resumed run that no longer uses any
        plugins.unlink()


def check_plugins(run_dir: Path) -> None:
    """One line naming the package to install when a plugin member the run was trained with is not
    installed here (read from the run's ``plugins.json``); nothing for a run without plugins."""
    path = Path(run_dir) / PLUGINS_FILE
    if not path.is_file():
        return
    try:
        origins = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StatganError(f"{str(path)!r} is unreadable ({exc}); it lists the run's plugin packages") from None
    for o in origins:
        if not catalog.known(o["family"], o["name"]):
            raise StatganError(f"{str(run_dir)!r} was trained with the {o['family']} {o['name']!r} {_missing(o)}")


def _missing(o: Dict[str, Any]) -> str:
    """Where a member recorded in plugins.json came from, and how to get it back."""
    if o.get("package") is None:  # registered by a script, in the process that trained the run
        return (f"registered from Python ({o['value']}), which this process does not have; to reach every statgan "
                f"command, declare it as an entry point in the group {o['group']} of an installed package "
                "(README: plugins)")
    version = f" {o['version']}" if o.get("version") else ""
    return (f"from the plugin package {o['package']}{version} (entry point {o['group']}: {o['name']} = {o['value']}), "
            f"which is not installed here; pip install {o['package']}")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint's JSON says about its run, typed, for everything that reads a trained
    generator (sample, eval, invert, audit, export). ``config`` is the resolved config, parsed;
    ``data_record`` the raw ``data`` section (loader options and all, the form the dataset loader
    and the reference-statistics cache key take). The trainer's resume path reads the record it
    wrote itself (:mod:`statgan.train.state`)."""

    path: Path  # the checkpoint's .json
    step: int
    config: Config
    data_record: Dict[str, Any]
    data_shape: Tuple[int, ...]
    latent_dim: int
    ema: bool  # whether it holds EMA weights
    sha256: str  # of the tensors file
    versions: Dict[str, str]

    @property
    def tensors_path(self) -> Path:
        return self.path.with_suffix(".safetensors")

    @classmethod
    def from_record(cls, record: Dict[str, Any], path: Path) -> "CheckpointMeta":
        """The typed view of a checkpoint's JSON ``record`` (already verified by
        :func:`statgan.rundir.checkpoint.load_checkpoint`), read from ``path``."""
        cfg = config_mod.from_dict(record["config"])
        return cls(path=Path(path), step=int(record["step"]), config=cfg, data_record=dict(record["config"]["data"]),
                   data_shape=tuple(int(s) for s in record["data_shape"]),
                   latent_dim=int(record.get("latent_dim", cfg.model.latent_dim)), ema=bool(record.get("ema")),
                   sha256=str(record["sha256"]), versions=dict(record.get("versions") or {}))


def load_generator(run_dir: Path, checkpoint: Optional[Path] = None, ema: bool = True, device: str = "cpu",
                   use_previous: bool = False) -> Tuple[nn.Module, CheckpointMeta]:
    """The generator of a run (EMA weights by default) in eval mode, plus the checkpoint's
    :class:`CheckpointMeta`.

    With ``use_previous``, a latest checkpoint that is corrupt is skipped (with a warning) for the
    newest one that loads; without it, a corrupt checkpoint is a one-line CheckpointError.
    """
    run_dir = Path(run_dir)
    if checkpoint is None and not run_dir.is_dir():
        raise StatganError(f"{str(run_dir)!r} is neither a run directory nor an existing path")
    if run_dir.is_dir():
        check_plugins(run_dir)  # a missing plugin is named before its weights fail to find a network
    if checkpoint is not None:
        candidates = [Path(checkpoint)]
    else:
        candidates = [p for _, p in reversed(ckpt.list_checkpoints(checkpoint_dir(run_dir)))]
        if not candidates:
            raise CheckpointError(f"no checkpoint in {str(checkpoint_dir(run_dir))!r}")
        if not use_previous:
            candidates = candidates[:1]
    for i, path in enumerate(candidates):
        try:
            tensors, meta = ckpt.load_checkpoint(path)
        except CheckpointError as exc:
            if i + 1 == len(candidates):
                hint = "" if use_previous or checkpoint is not None else "; --use-previous falls back to the newest good one"
                raise CheckpointError(f"{exc}{hint}") from None
            warnings.warn(f"{exc}; using the previous checkpoint {candidates[i + 1].name}")
            continue
        info = CheckpointMeta.from_record(meta, path)
        G, _ = build_models(info.config, info.data_shape)
        ckpt.unpack_module("G_ema" if ema and info.ema else "G", G, tensors, str(path))
        return G.to(select_device(device)).eval(), info
    raise AssertionError("unreachable: the loop returns or raises")


def read_metrics(run_dir: Path) -> List[Dict[str, Any]]:
    """All records of a run's metrics.jsonl (skipping a line cut short by a crash)."""
    out = []
    p = Path(run_dir) / METRICS_FILE
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


@dataclass(frozen=True)
class RunStatus:
    """What ``status.json`` records: the state, at which step, and for a failure the one-line reason."""

    state: str
    step: int
    message: str = ""
    time: str = ""


def write_status(run_dir: Path, state: str, step: int, message: str = "") -> RunStatus:
    """Record the run's state atomically (the trainer calls this at start, at the end and on failure)."""
    if state not in RUN_STATES:
        raise ValueError(f"run state {state!r} is not one of: {', '.join(RUN_STATES)}")
    status = RunStatus(state, int(step), message, time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_json(Path(run_dir) / STATUS_FILE, asdict(status))
    return status


def read_status(run_dir: Path) -> Optional[RunStatus]:
    """The recorded :class:`RunStatus`, or None for runs made before status files (or a damaged one)."""
    try:
        rec = json.loads((Path(run_dir) / STATUS_FILE).read_text())
        status = RunStatus(str(rec["state"]), int(rec["step"]), str(rec.get("message", "")), str(rec.get("time", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status if status.state in RUN_STATES else None
