"""The training state: everything a resumed run needs to continue bit for bit.

:class:`TrainingState` holds (references to) the generator, the discriminator, the EMA copy, both
optimizers and their fp16 gradient scalers, the latent RNG stream, the regularisers' private RNG
streams, plus the global torch (and CUDA) RNG and three numbers: the step, the best FID so far and
the learning-rate scale lowered by NaN rollbacks. It can

* :meth:`~TrainingState.capture` all of it as a :class:`Snapshot` (tensors + JSON-able metadata,
  aliasing the live state) and :meth:`~TrainingState.snapshot` an independent in-memory copy;
* :meth:`~TrainingState.restore` a snapshot (the NaN rollback target);
* :meth:`~TrainingState.save_checkpoint` and :meth:`~TrainingState.load_checkpoint` through
  :mod:`statgan.rundir.checkpoint`.

Under torchrun each rank has its own global RNG stream. A snapshot holds this rank's under the
single-process keys (``rng.torch``, ``rng.cuda``); a checkpoint holds rank 0's there and the
others' as ``rng.torch.rankR`` (gathered by every rank, written by rank 0).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..regularizers import RegularizerSet
from ..regularizers.ema import EMA
from ..rundir import checkpoint as ckpt
from ..runtime import distributed
from ..runtime.seeding import seed_global


@dataclass
class StateRecord:
    """The JSON-able part of a training state: what a checkpoint's JSON holds beside the tensors
    (with the run's config and versions, :meth:`statgan.train.trainer.Trainer.save_checkpoint`),
    read back typed so that a resume checks what it needs once, with one line naming the file."""

    step: int
    data_shape: Tuple[int, ...]
    ema: bool  # whether G_ema.* tensors are in the checkpoint
    optimizers: Dict[str, Any]  # each optimizer's JSON-able state (statgan.rundir.checkpoint.pack_optimizer)
    lr_scale: float = 1.0
    best_fid: Optional[float] = None
    grad_scalers: Dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> Dict[str, Any]:
        rec = asdict(self)
        rec["data_shape"] = list(self.data_shape)
        return rec

    @classmethod
    def from_record(cls, record: Dict[str, Any], source: str) -> "StateRecord":
        """The typed record of a checkpoint's JSON; CheckpointError naming ``source`` if it lacks a field."""
        try:
            return cls(step=int(record["step"]), data_shape=tuple(int(s) for s in record.get("data_shape", ())),
                       ema=bool(record.get("ema")), optimizers=dict(record["optimizers"]),
                       lr_scale=float(record.get("lr_scale", 1.0)), best_fid=record.get("best_fid"),
                       grad_scalers=dict(record.get("grad_scalers") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: its metadata lacks or mangles {exc} (not a statgan training checkpoint?)") from None


@dataclass
class Snapshot:
    """A captured training state: tensors (safetensors-able) and the JSON-able rest."""

    tensors: Dict[str, Tensor]
    meta: StateRecord

    @property
    def step(self) -> int:
        """The generator step the state was captured at."""
        return self.meta.step


@dataclass(eq=False)
class TrainingState:
    """What training changes, in one place (see the module docstring). The networks, optimizers
    and generators are updated in place by restores, so references to them stay valid."""

    G: nn.Module
    D: nn.Module
    ema: Optional[EMA]
    opt_G: Any  # a torch optimizer, possibly wrapped (fp16 scaling, SAM); checkpointed through its state_dict
    opt_D: Any
    scalers: Dict[str, Any]  # net -> its fp16 GradScaler, or None
    latents: torch.Generator  # the CPU stream every latent batch is drawn from
    regularizers: RegularizerSet
    data_shape: Tuple[int, ...]
    device: torch.device
    seed: int  # run.seed: the fallback per-rank stream of a resume with more processes than saved
    rank: int = 0
    step: int = 0
    best_fid: Optional[float] = None
    lr_scale: float = 1.0  # lowered by each NaN rollback

    def _optimizers(self) -> Dict[str, Any]:
        """The optimizers under their checkpoint prefixes."""
        return {"opt_G": self.opt_G, "opt_D": self.opt_D}

    # ---- capture -------------------------------------------------------------------------------
    def capture(self) -> Snapshot:
        """The state as it is; the tensors may alias live parameters and buffers (copy them to keep them)."""
        tensors = {**ckpt.pack_module("G", self.G), **ckpt.pack_module("D", self.D)}
        if self.ema is not None:
            tensors.update(ckpt.pack_module("G_ema", self.ema.module))
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.latent"] = self.latents.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        tensors.update(self.regularizers.state_tensors())
        opt_meta = {}
        for key, opt in self._optimizers().items():
            opt_tensors, opt_meta[key] = ckpt.pack_optimizer(key, opt)
            tensors.update(opt_tensors)
        meta = StateRecord(step=self.step, data_shape=tuple(self.data_shape), ema=self.ema is not None,
                           best_fid=self.best_fid, optimizers=opt_meta, lr_scale=self.lr_scale,
                           grad_scalers={k: s.state_dict() for k, s in self.scalers.items() if s is not None})
        return Snapshot(tensors, meta)

    def snapshot(self) -> Snapshot:
        """An independent in-memory copy of the state (the NaN rollback target)."""
        live = self.capture()
        return Snapshot({k: v.detach().clone() for k, v in live.tensors.items()}, copy.deepcopy(live.meta))

    def restore(self, snapshot: Snapshot) -> None:
        """Return exactly to ``snapshot`` (from :meth:`snapshot` on this rank); it stays reusable."""
        tensors = {k: v.clone() for k, v in snapshot.tensors.items()}
        self._apply(tensors, copy.deepcopy(snapshot.meta), "the last good state", rng_suffix="")

    # ---- checkpoint files ------------------------------------------------------------------------
    def save_checkpoint(self, ckpt_dir: Path, keep: int, extra_meta: Dict[str, Any], name: Optional[str] = None) -> Path:
        """Write a checkpoint (rank 0) with ``extra_meta`` (config, versions, ...) added to its JSON.

        Every rank must call it: the RNG states of all ranks are gathered into it.
        """
        state = self.capture()
        state.tensors.update(distributed.peer_rng_states(self.device))
        meta = {**state.meta.to_record(), **extra_meta}
        step = meta.pop("step")  # the checkpoint module records it
        return distributed.run_on_main(lambda: ckpt.save_checkpoint(ckpt_dir, step, state.tensors, meta, keep, name=name))

    def load_checkpoint(self, tensors: Dict[str, Tensor], meta: Dict[str, Any], source: str) -> None:
        """Continue from a checkpoint's contents (as read by :func:`statgan.rundir.checkpoint.load_checkpoint`)."""
        record = StateRecord.from_record(meta, source)
        if record.data_shape != tuple(self.data_shape):
            raise CheckpointError(f"{source}: saved for data of shape {list(record.data_shape)}, "
                                  f"but the dataset gives {list(self.data_shape)}")
        self._apply(tensors, record, source, rng_suffix="" if self.rank == 0 else f".rank{self.rank}")

    def _apply(self, tensors: Dict[str, Tensor], meta: StateRecord, source: str, rng_suffix: str) -> None:
        """Load ``tensors``/``meta`` into the live state; this rank's global RNG is under ``rng.*{rng_suffix}``."""
        ckpt.unpack_module("G", self.G, tensors, source)
        ckpt.unpack_module("D", self.D, tensors, source)
        if self.ema is not None:
            if not meta.ema:
                raise CheckpointError(f"{source}: has no EMA weights but train.ema is on")
            ckpt.unpack_module("G_ema", self.ema.module, tensors, source)
        for key, opt in self._optimizers().items():
            if key not in meta.optimizers:
                raise CheckpointError(f"{source}: has no state for the optimizer {key}")
            ckpt.unpack_optimizer(key, opt, tensors, meta.optimizers[key], source)
        if f"rng.torch{rng_suffix}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch{rng_suffix}"])
        else:  # resumed with more processes than saved it: a fresh per-rank stream
            seed_global("rank_resume", self.seed, self.rank, meta.step)
        self.latents.set_state(tensors["rng.latent"])
        if self.device.type == "cuda" and f"rng.cuda{rng_suffix}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda{rng_suffix}"], self.device)
        self.regularizers.load_state_tensors(tensors, source)
        for net, scaler_state in meta.grad_scalers.items():
            if self.scalers.get(net) is not None:
                self.scalers[net].load_state_dict(scaler_state)
        self.step = meta.step
        self.best_fid = meta.best_fid
        self.lr_scale = meta.lr_scale


__all__ = ["Snapshot", "StateRecord", "TrainingState"]
