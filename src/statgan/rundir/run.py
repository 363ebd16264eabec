"""Reading and writing a run directory as a whole: its config and its generator.

Everything after training (``statgan sample``, ``eval``, ``invert``, ``audit``, reproductions) reads
a run through this module and never imports the trainer::

    runs/NAME/config.yaml            the resolved config   (read_run_config / write_run_config)
    runs/NAME/checkpoints/*.json     checkpoints           (statgan.rundir.checkpoint)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from torch import nn

from .. import config as config_mod
from ..config import Config
from ..errors import CheckpointError, StatganError
from ..models import build_models
from ..runtime.device import select_device
from . import checkpoint as ckpt
from .files import atomic_write_text

CONFIG_FILE = "config.yaml"


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / CONFIG_FILE


def read_run_config(run_dir: Path) -> Config:
    """The config a run was trained with; one-line error if ``run_dir`` is no run directory."""
    p = config_path(run_dir)
    if not p.is_file():
        raise StatganError(f"{str(run_dir)!r} is not a statgan run directory (no config.yaml)")
    return config_mod.load(p)


def write_run_config(run_dir: Path, cfg: Config) -> None:
    """Write (atomically) the resolved config of a run: the one place ``config.yaml`` is written."""
    atomic_write_text(config_path(run_dir), cfg.to_yaml())


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def load_generator(run_dir: Path, checkpoint: Optional[Path] = None, ema: bool = True, device: str = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """The generator of a run (EMA weights by default) in eval mode, plus the checkpoint metadata."""
    run_dir = Path(run_dir)
    if checkpoint is None and not run_dir.is_dir():
        raise StatganError(f"{str(run_dir)!r} is neither a run directory nor an existing path")
    path = Path(checkpoint) if checkpoint is not None else ckpt.latest_checkpoint(checkpoint_dir(run_dir))
    if path is None:
        raise CheckpointError(f"no checkpoint in {str(checkpoint_dir(run_dir))!r}")
    tensors, meta = ckpt.load_checkpoint(path)
    cfg = config_mod.from_dict(meta["config"])
    G, _ = build_models(cfg, tuple(meta["data_shape"]))
    prefix = "G_ema" if ema and meta.get("ema") else "G"
    ckpt.unpack_module(prefix, G, tensors, str(path))
    return G.to(select_device(device)).eval(), meta
