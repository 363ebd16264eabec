"""The trainer's side of the run directory: checking and creating it before the first step, and
choosing the checkpoint a resumed run continues from. Both run on rank 0 only."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from torch import nn

from ..config import Config
from ..errors import CheckpointError, StatganError
from ..rundir import checkpoint as ckpt
from ..rundir.run import checkpoint_dir, read_status, write_run_config

Loaded = Tuple[Path, Dict[str, torch.Tensor], Dict[str, Any]]


def checkpoint_bytes(G: nn.Module, D: nn.Module) -> int:
    """About the size of one checkpoint: G, D, the EMA copy and two Adam moments per parameter
    (float32), plus room for the metadata."""
    n_g = sum(p.numel() for p in G.parameters())
    n_d = sum(p.numel() for p in D.parameters())
    return 4 * (4 * n_g + 3 * n_d) + (1 << 20)


def prepare_run_dir(run_dir: Path, cfg: Config, G: nn.Module, D: nn.Module, resume: bool) -> bool:
    """Check that ``run_dir`` may be used (new and empty, or resumed), is writable and has room for
    ``train.keep_checkpoints`` checkpoints; create it and (new runs) write its config.yaml.
    Returns whether this call created the directory."""
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        status = read_status(run_dir)
        if status is not None and status.state == "failed" and not ckpt.list_checkpoints(checkpoint_dir(run_dir)):
            # a run that failed before writing any checkpoint has nothing to keep: start it afresh
            print(f"statgan: warning: reusing {run_dir}: its last attempt failed at step {status.step} "
                  f"with no checkpoint ({status.message.split(';')[0]})", file=sys.stderr)
            shutil.rmtree(run_dir)
        else:
            raise StatganError(
                f"run directory {str(run_dir)!r} already exists; continue it with --resume {run_dir} or choose another run.name"
            )
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StatganError(f"cannot write to run directory {str(run_dir)!r}: {exc.strerror or exc}") from None
    need = (cfg.train.keep_checkpoints + 1) * checkpoint_bytes(G, D) + (16 << 20)
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise StatganError(f"not enough space in {str(run_dir)!r}: {free >> 20} MiB free, need about {need >> 20} MiB for checkpoints")
    if not resume:
        write_run_config(run_dir, cfg)
    return created


def newest_good_checkpoint(ckpt_dir: Path, use_previous: bool) -> Loaded:
    """The newest checkpoint, read and verified: (path, tensors, meta).

    A corrupt one is refused with its name (and a hint to ``--use-previous`` when an older one
    exists); with ``use_previous`` it is set aside (renamed ``*.corrupt``) and the next older one
    is tried instead.
    """
    found = [p for _, p in reversed(ckpt.list_checkpoints(ckpt_dir))]
    if not found:
        raise CheckpointError(f"nothing to resume: no checkpoint in {str(ckpt_dir)!r}")
    for i, path in enumerate(found):
        try:
            return (path, *ckpt.load_checkpoint(path))
        except CheckpointError as exc:
            older = found[i + 1 :]
            if not use_previous:
                hint = f"; to resume from the previous one ({older[0].name}) instead, add --use-previous" if older else ""
                raise CheckpointError(f"{exc}{hint}") from None
            if not older:
                raise CheckpointError(f"{exc}; no older checkpoint is readable either") from None
            ckpt.set_aside(path)
            print(f"statgan: warning: {exc}; set aside as *.corrupt, trying {older[0].name}", file=sys.stderr)
    raise AssertionError("unreachable: the last candidate either loads or raises")


__all__ = ["checkpoint_bytes", "prepare_run_dir", "newest_good_checkpoint"]
