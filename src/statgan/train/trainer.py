"""The training loop.

One generator step is ``n_critic`` discriminator updates followed by one generator update::

    for k in 1..n_critic:   real ← next batch;  fake ← G(z);  regularizers.begin_batch(real, fake)
                            real' ← transform_real(real);  fake' ← transform_fake(fake.detach())
                            L_D = objective.discriminator_loss(D, real', fake') + Σ penalties;  step D
                            objective.after_discriminator_step(D)      (if it has one, e.g. clipping)
    L_G = objective.generator_loss(D, real', transform_fake(fake)) + Σ penalties;  step G;  EMA update

The loop knows no objective or regulariser by name: it calls the objective's two hooks, two
optional generic attributes (``has_discriminator``, ``after_discriminator_step``) and the hooks of
:class:`statgan.regularizers.RegularizerSet` (observation noise, penalties, Monte-Carlo averaging,
optimizer wrapping such as SAM, probes). Every update goes through ``optimizer.step(closure)``
with a closure that zeroes the gradients, evaluates the loss (averaged over
``regularizers.evaluations(net)`` evaluations) and back-propagates; a plain optimizer calls it
once, SAM twice. The generated batch of the last critic step is reused for the generator step's
first evaluation (as in the DCGAN reference code), which saves one generator forward pass per
step; further evaluations (Monte-Carlo dropout, SAM's perturbed pass) re-run G on the same
latents. With no regularisers this is exactly the plain loop, operation for operation.

Reproducibility: weights are initialised from ``run.seed``; latents come from a dedicated CPU
generator (identical streams on every device, state saved in checkpoints); the data order is a pure
function of the batch counter (:mod:`statgan.train.batches`); the global RNG (dropout, penalty
interpolation) is saved and restored, and so are the regularisers' private RNGs (observation
noise). On CPU with ``train.deterministic`` a resumed run is bit-identical to an uninterrupted one.

Several processes (``torchrun --nproc-per-node N -m statgan train``, :mod:`statgan.runtime.distributed`):
``train.batch_size`` is the global batch; each rank takes its rows of every global batch, of the
latents and of the observation noise (all drawn from the shared streams), each closure ends with
one all-reduce that averages the gradients, BatchNorm buffers are averaged after every step, and
only rank 0 writes the run directory. The global RNG (dropout masks, GP interpolation weights) is
seeded per rank. Faults (:mod:`statgan.train.faults`): a NaN/Inf loss or gradient rolls the run
back to its last good state with lower learning rates, up to ``train.nan_retries`` times.
Mixed precision, TF32, channels-last and torch.compile: :mod:`statgan.train.precision`.
"""

from __future__ import annotations

import copy
import platform
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .. import __version__
from ..config import Config
from ..errors import CheckpointError, StatganError
from ..models import build_models, data_shape_of
from ..rundir import checkpoint as ckpt
from ..rundir.run import write_run_config
from ..runtime import distributed
from ..runtime.device import select_device
from ..runtime.seeding import derived_seed
from .. import regularizers
from ..regularizers import LossContext, ProbeContext
from ..regularizers.ema import EMA
from .batches import BatchStream
from .faults import Divergence, DivergenceGuard, grad_norm
from .logging import MetricsLog, NullLog
from .precision import Precision, double_backward_error, is_double_backward_error

StepCallback = Callable[["Trainer", int], None]


class TrainingInterrupted(StatganError):
    """Raised after a checkpoint has been written in response to SIGINT/SIGTERM."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: checkpoint written at step {step} ({checkpoint}); continue with: statgan train --resume {checkpoint.parent.parent}")


class TrainingDiverged(StatganError):
    """A loss or gradient stayed NaN/Inf after ``train.nan_retries`` rollbacks."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    samples: Optional[Path]
    checkpoint: Optional[Path]
    seconds: float



def default_run_name(cfg: Config) -> str:
    return f"{cfg.data.name}-{cfg.model.arch}-{cfg.objective.name}-{time.strftime('%Y%m%d-%H%M%S')}"




class Trainer:
    """Builds everything in memory from a validated config; :meth:`fit` writes the run directory."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        *,
        resume: bool = False,
        callbacks: Optional[List[StepCallback]] = None,
        use_previous: bool = False,
    ) -> None:
        from .. import data as datasets
        from .. import objectives

        self.cfg, self.run_dir, self.resume = cfg, Path(run_dir), resume
        self.use_previous = use_previous  # resume: skip corrupt checkpoints, take the newest good one
        self.callbacks = list(callbacks or [])
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        # checks that fail the same way on every rank come before the process group exists
        # (the CLI then lets rank 0 alone report them)
        self.device = distributed.device_for_rank(select_device(cfg.run.device))
        self.precision = Precision(t.precision, self.device, tf32=t.tf32, channels_last=t.channels_last, compile=t.compile)
        n_proc = distributed.env_world_size()
        if t.batch_size % n_proc:
            raise StatganError(f"train.batch_size={t.batch_size} is the global batch and must be divisible by the "
                               f"{n_proc} processes (each takes batch_size / {n_proc} rows)")
        if t.tensorboard is True:  # fail before anything is written, not after the run directory exists
            from .logging import tensorboard_writer_class

            tensorboard_writer_class(required=True)
        self.world = distributed.init(self.device)

        self.train_data = datasets.load(cfg.data.name, "train", cfg.data.root, **cfg.data.options)
        self.data_shape = data_shape_of(self.train_data)

        torch.manual_seed(cfg.run.seed)  # weight initialisation
        G, D = build_models(cfg, self.data_shape)
        self.G, self.D = G.to(self.device), D.to(self.device)
        self.precision.prepare(self.G, self.D, image_data=len(self.data_shape) == 3)
        if self.world.distributed:
            distributed.broadcast_module(self.G, self.D)  # same start everywhere, as DDP does
            if self.world.rank > 0:  # dropout masks and GP weights differ per rank, like their data
                torch.manual_seed(derived_seed(cfg.run.seed, f"rank:{self.world.rank}"))
        self.objective = objectives.get(cfg.objective.name, **cfg.objective.params)
        self.has_discriminator = bool(getattr(self.objective, "has_discriminator", True))
        self._after_d_step = getattr(self.objective, "after_discriminator_step", None)
        self.regularizers = regularizers.build(cfg.regularizers, self.objective)
        self.regularizers.bind(cfg.run.seed, self.device)
        betas = tuple(t.betas)
        # fp16: one gradient scaler per network, inside any regulariser's wrapper (SAM)
        self.scalers = {net: self.precision.grad_scaler() for net in ("generator", "discriminator")}
        # the modules each update's loss runs through (D's loss sees only detached generated samples)
        self.opt_G = self.regularizers.wrap_optimizer("generator", self.precision.wrap_optimizer(
            torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=betas), self.scalers["generator"]), (self.G, self.D))
        self.opt_D = self.regularizers.wrap_optimizer("discriminator", self.precision.wrap_optimizer(
            torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=betas), self.scalers["discriminator"]), (self.D,))
        self.ema = EMA(self.G, t.ema_decay, t.ema_start) if t.ema else None
        self.precision.compile_modules(self.G, self.D)  # after the EMA copy, which stays eager
        # latents from a CPU generator: the same stream on every device, and its state is portable
        self.z_gen = torch.Generator().manual_seed(cfg.run.seed + 1)
        self.fixed_z = torch.randn(
            t.grid_size, cfg.model.latent_dim, generator=torch.Generator().manual_seed(cfg.run.seed + 2)
        ).to(self.device)
        self.step = 0
        self._last_batch: Optional[Tuple[torch.Tensor, torch.Tensor]] = None  # (real', z) of the last G step
        self.best_fid: Optional[float] = None
        self.loaded_from: Optional[Path] = None
        self.lr_scale = 1.0  # lowered by each NaN rollback; checkpointed
        self._grad_norms = {net: torch.zeros((), device=self.device) for net in ("generator", "discriminator")}
        if resume:
            self._restore()
        self.batches = self._batch_stream()
        self._stop_signal: Optional[int] = None

    # ---- properties ----------------------------------------------------------------------------
    @property
    def sampler(self) -> nn.Module:
        """The network used for samples: the EMA generator when enabled."""
        return self.ema.module if self.ema is not None else self.G

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    # ---- checkpointing -------------------------------------------------------------------------
    def state_tensors(self) -> Dict[str, torch.Tensor]:
        tensors = {**ckpt.pack_module("G", self.G), **ckpt.pack_module("D", self.D)}
        if self.ema is not None:
            tensors.update(ckpt.pack_module("G_ema", self.ema.module))
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.latent"] = self.z_gen.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        tensors.update(self.regularizers.state_tensors())
        return tensors

    def _capture(self) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
        """The training state: tensors (this rank's RNG under the single-process keys) and the
        JSON-able rest. Tensors may alias live state; copy them to keep them."""
        tensors = self.state_tensors()
        opt_meta = {}
        for key, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            t, m = ckpt.pack_optimizer(key, opt)
            tensors.update(t)
            opt_meta[key] = m
        meta = {
            "step": self.step,
            "data_shape": list(self.data_shape),
            "ema": self.ema is not None,
            "best_fid": self.best_fid,
            "optimizers": opt_meta,
            "lr_scale": self.lr_scale,
            "grad_scalers": {k: s.state_dict() for k, s in self.scalers.items() if s is not None},
        }
        return tensors, meta

    def save_checkpoint(self, name: Optional[str] = None) -> Path:
        """Write a checkpoint (rank 0; every rank takes part, since the RNG states of all ranks are saved)."""
        tensors, meta = self._capture()
        tensors.update(distributed.peer_rng_states(self.device))
        del meta["step"]  # the checkpoint module records it
        meta.update({
            "config": self.cfg.to_dict(),
            "latent_dim": self.cfg.model.latent_dim,
            "world_size": self.world.size,
            "versions": {"statgan": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
        return distributed.run_on_main(lambda: ckpt.save_checkpoint(
            self.ckpt_dir, self.step, tensors, meta, self.cfg.train.keep_checkpoints, name=name))

    def _apply(self, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any], src: str, own_rng: bool = False) -> None:
        """Load a captured state (a checkpoint, or an in-memory snapshot with ``own_rng``: this
        rank's RNG state under the single-process keys)."""
        ckpt.unpack_module("G", self.G, tensors, src)
        ckpt.unpack_module("D", self.D, tensors, src)
        if self.ema is not None:
            if not meta.get("ema"):
                raise CheckpointError(f"{src}: has no EMA weights but train.ema is on")
            ckpt.unpack_module("G_ema", self.ema.module, tensors, src)
        for key, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            ckpt.unpack_optimizer(key, opt, tensors, meta["optimizers"][key], src)
        rank = self.world.rank
        suffix = "" if own_rng or rank == 0 else f".rank{rank}"
        if f"rng.torch{suffix}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch{suffix}"])
        else:  # resumed with more processes than saved it: a fresh per-rank stream
            torch.manual_seed(derived_seed(self.cfg.run.seed, f"rank:{rank}:step:{meta['step']}"))
        self.z_gen.set_state(tensors["rng.latent"])
        if self.device.type == "cuda" and f"rng.cuda{suffix}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], self.device)
        self.regularizers.load_state_tensors(tensors, src)
        for net, state in meta.get("grad_scalers", {}).items():
            if self.scalers.get(net) is not None:
                self.scalers[net].load_state_dict(state)
        self.step = int(meta["step"])
        self.best_fid = meta.get("best_fid")
        self.lr_scale = float(meta.get("lr_scale", 1.0))

    def _newest_good_checkpoint(self) -> Path:
        """The newest checkpoint; with ``use_previous`` corrupt ones are set aside (renamed
        ``*.corrupt``) and the newest readable one is taken. Keeps what it read in ``_loaded``."""
        found = [p for _, p in reversed(ckpt.list_checkpoints(self.ckpt_dir))]
        if not found:
            raise CheckpointError(f"nothing to resume: no checkpoint in {str(self.ckpt_dir)!r}")
        for i, path in enumerate(found):
            try:
                self._loaded = (path, *ckpt.load_checkpoint(path))
                return path
            except CheckpointError as exc:
                older = found[i + 1 :]
                if not self.use_previous:
                    hint = (f"; to resume from the previous one ({older[0].name}) instead, add --use-previous"
                            if older else "")
                    raise CheckpointError(f"{exc}{hint}") from None
                if not older:
                    raise CheckpointError(f"{exc}; no older checkpoint is readable either") from None
                self._set_aside(path)
                print(f"statgan: warning: {exc}; set aside as *.corrupt, trying {older[0].name}", file=sys.stderr)
        raise AssertionError("unreachable")

    def _set_aside(self, js_path: Path) -> None:
        """Rename a corrupt checkpoint's two files to ``*.corrupt`` (out of the step sequence, kept for inspection)."""
        m = ckpt._NAME.match(js_path.name)
        paths = list(ckpt.checkpoint_paths(self.ckpt_dir, int(m.group(1)))) if m else [js_path]
        for p in paths:
            if p.exists():
                p.rename(p.with_name(p.name + ".corrupt"))

    def _restore(self) -> None:
        self._loaded: Any = None
        path = distributed.run_on_main(self._newest_good_checkpoint)
        # rank 0 has read (and verified) it already; the other ranks read it themselves
        tensors, meta = self._loaded[1:] if self._loaded is not None else ckpt.load_checkpoint(path)
        self._loaded = None
        src = str(path)
        if tuple(meta.get("data_shape", ())) != tuple(self.data_shape):
            raise CheckpointError(f"{src}: saved for data of shape {meta.get('data_shape')}, but the dataset gives {list(self.data_shape)}")
        self._apply(tensors, meta, src)
        self.loaded_from = path

    def _batch_stream(self) -> BatchStream:
        t = self.cfg.train
        return BatchStream(self.train_data, t.batch_size, self.cfg.run.seed, self.device, start=self.step * t.n_critic,
                           rank=self.world.rank, world_size=self.world.size)

    # ---- run directory -------------------------------------------------------------------------
    def _prepare_run_dir(self) -> bool:
        """Check and create the run directory (rank 0); returns whether this call created it."""
        rd = self.run_dir
        if not self.resume:
            if rd.exists() and any(rd.iterdir()):
                raise StatganError(
                    f"run directory {str(rd)!r} already exists; continue it with --resume {rd} or choose another run.name"
                )
        created = not rd.exists()
        try:
            rd.mkdir(parents=True, exist_ok=True)
            probe = rd / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StatganError(f"cannot write to run directory {str(rd)!r}: {exc.strerror or exc}") from None
        # a checkpoint holds G, D, the EMA copy and two Adam moments per parameter
        n_g = sum(p.numel() for p in self.G.parameters())
        n_d = sum(p.numel() for p in self.D.parameters())
        per_ckpt = 4 * (4 * n_g + 3 * n_d) + (1 << 20)
        need = (self.cfg.train.keep_checkpoints + 1) * per_ckpt + (16 << 20)
        free = shutil.disk_usage(rd).free
        if free < need:
            raise StatganError(f"not enough space in {str(rd)!r}: {free >> 20} MiB free, need about {need >> 20} MiB for checkpoints")
        if not self.resume:
            write_run_config(rd, self.cfg)
        return created

    # ---- signals -------------------------------------------------------------------------------
    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask the loop to checkpoint and stop after the current step (what SIGINT/SIGTERM do)."""
        self._stop_signal = signum

    def _install_handlers(self) -> Dict[int, Any]:
        previous = {}

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None:  # second signal: stop now (checkpoints are atomic)
                raise KeyboardInterrupt
            self._stop_signal = signum

        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                previous[s] = signal.signal(s, handler)
        return previous

    # ---- one step ------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        t = self.cfg.train
        factor = 1.0 if t.warmup_steps == 0 else min(1.0, 0.01 + 0.99 * self.step / t.warmup_steps)
        for opt, base in ((self.opt_G, t.lr_g), (self.opt_D, t.lr_d)):
            for g in opt.param_groups:
                g["lr"] = base * factor * self.lr_scale
        return factor

    def _latents(self) -> torch.Tensor:
        # every rank draws the global batch's latents from the shared stream and keeps its rows
        shape = (self.cfg.train.batch_size // self.world.size, self.cfg.model.latent_dim)
        return distributed.shard_randn(shape, self.z_gen).to(self.device, non_blocking=True)

    def _minimise(self, opt: Any, net: str, evaluate: Callable[[int], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """One update of ``net`` through ``opt.step(closure)``; returns the loss (detached).

        ``evaluate(k)`` gives (objective loss, D's real input, D's generated input) for the k-th
        evaluation of this update (k counts across closure calls, so k = 0 may reuse cached
        forward passes). Each closure call averages ``evaluations(net)`` evaluations, each with
        its penalties, back-propagating them one at a time (one graph alive at a time). Under
        torchrun the closure ends by averaging the gradients over the ranks, so every optimizer
        (and SAM's perturbation) sees the global gradient.
        """
        regs = self.regularizers
        n = regs.evaluations(net)
        counter = {"calls": 0, "evals": 0}
        autocast, scaler = self.precision.autocast, self.scalers[net]
        params = distributed.optimizer_params(opt)
        sync = self.world.distributed

        def closure() -> torch.Tensor:
            record = counter["calls"] == 0  # log penalties of the first pass (SAM runs a second)
            counter["calls"] += 1
            opt.zero_grad(set_to_none=True)
            total = None
            for _ in range(n):
                with autocast():
                    loss, real_in, fake_in = evaluate(counter["evals"])
                    counter["evals"] += 1
                    loss = regs.add_penalties(LossContext(net, loss, real_in, fake_in, self.G, self.D, self.step), record)
                part = loss if n == 1 else loss / n
                (part if scaler is None else scaler.scale(part)).backward()
                total = loss.detach() if total is None else total + loss.detach()
            if sync:
                distributed.average_gradients(params)
            return total if n == 1 else total / n

        loss = opt.step(closure)
        if scaler is None:  # with fp16, an inf gradient is the scaler's business (a skipped step)
            self._grad_norms[net] = grad_norm(params)
        return loss

    def train_step(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """One generator step (with its n_critic discriminator steps); returns detached losses."""
        G, D, obj, regs = self.G, self.D, self.objective, self.regularizers
        d_loss = torch.zeros((), device=self.device)
        for _ in range(self.cfg.train.n_critic):
            real = self.precision.input(self.batches.next())
            z = self._latents()
            with self.precision.autocast():
                fake = G(z)
            regs.begin_batch(real, fake, self.step)
            real_in = regs.transform_real(real)
            if self.has_discriminator:
                fake_in = regs.transform_fake(fake.detach())
                d_loss = self._minimise(self.opt_D, "discriminator",
                                        lambda k: (obj.discriminator_loss(D, real_in, fake_in), real_in, fake_in))
                if self._after_d_step is not None:
                    self._after_d_step(D)

        def generator_evaluation(k: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            fake_in = regs.transform_fake(fake if k == 0 else G(z))
            return obj.generator_loss(D, real_in, fake_in), real_in, fake_in

        # D's weights need no gradient in the generator step: skipping them saves a third of D's backward
        D.requires_grad_(False)
        try:
            g_loss = self._minimise(self.opt_G, "generator", generator_evaluation)
        finally:
            D.requires_grad_(True)
        self._last_batch = (real_in, z)
        self.step += 1
        if self.world.distributed:  # BatchNorm statistics of the global batch (approximately), same on all ranks
            distributed.average_buffers(self.G, self.D)
        if self.ema is not None:
            self.ema.update(self.step)
        return d_loss.detach(), g_loss.detach()

    def _probe_context(self) -> ProbeContext:
        """For the regularisers' probes: the generator loss on the last batch at the current weights."""
        real_in, z = self._last_batch  # type: ignore[misc]

        def generator_loss() -> torch.Tensor:
            self.D.requires_grad_(False)
            try:
                return self.objective.generator_loss(self.D, real_in, self.regularizers.transform_fake(self.G(z)))
            finally:
                self.D.requires_grad_(True)

        return ProbeContext(self.G, self.D, generator_loss, self.cfg.run.seed, self.device)

    # ---- samples -------------------------------------------------------------------------------
    @torch.no_grad()
    def save_samples(self) -> Path:
        from ..viz import save_samples

        net = self.sampler
        was_training = net.training
        net.eval()
        try:
            samples = net(self.fixed_z)
        finally:
            net.train(was_training)
        ref = None
        if samples.dim() == 2:
            ref = self.train_data[: 2000] if torch.is_tensor(self.train_data) else None
        return save_samples(samples, self.run_dir / "samples" / f"step-{self.step:06d}.png", reference=ref)

    # ---- faults ----------------------------------------------------------------------------------
    def _snapshot(self) -> None:
        """Keep a copy of the whole training state in memory (the rollback target)."""
        tensors, meta = self._capture()
        self._good = ({k: v.detach().clone() for k, v in tensors.items()}, copy.deepcopy(meta))

    def _rollback(self, bad: Divergence, log: Any) -> None:
        """Back to the last good state with lower learning rates, or TrainingDiverged when the
        retries are used up."""
        t = self.cfg.train
        tensors, meta = self._good
        if self._retries >= t.nan_retries:
            tried = (f" again after {self._retries} rollback(s) to step {meta['step']} with the learning rates lowered "
                     f"to {self.lr_scale:g}x the configured ones" if self._retries else "")
            last = ckpt.latest_checkpoint(self.ckpt_dir)
            raise TrainingDiverged(
                f"training diverged: {bad.describe()}{tried}; giving up (train.nan_retries={t.nan_retries}); "
                f"last good checkpoint: {last if last is not None else 'none'}; try lower train.lr_g / train.lr_d"
            )
        self._retries += 1
        self._diverged_at = max(self._diverged_at, bad.step)
        scale = self.lr_scale * t.nan_lr_factor
        self._apply({k: v.clone() for k, v in tensors.items()}, meta, "the last good state", own_rng=True)
        self.lr_scale = scale
        self.batches = self._batch_stream()
        self.regularizers.scalars(self.step)  # drop penalty sums of the discarded steps
        log.rewind(self.step)
        log.log({"step": self.step, "event": "nan_rollback", "diverged": bad.quantities, "at_step": bad.step,
                 "retry": self._retries, "lr_scale": scale})
        if self.world.is_main:
            print(f"statgan: warning: {bad.describe()}; rolled back to step {self.step} with the learning rates "
                  f"at {scale:g}x (retry {self._retries} of {t.nan_retries})", file=sys.stderr)

    def _scalars(self, step: int) -> Dict[str, float]:
        """The regularisers' values for the log, averaged over the ranks."""
        out = self.regularizers.scalars(step)
        if self.world.distributed and out:
            keys = sorted(out)
            vals = distributed.all_reduce_(torch.tensor([out[k] for k in keys], dtype=torch.float64), "mean")
            out = dict(zip(keys, vals.tolist()))
        return out

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to ``train.steps``. A run that fails before its first step leaves no run directory."""
        created = distributed.run_on_main(self._prepare_run_dir)
        self._steps_done = 0
        try:
            return self._fit()
        except BaseException:
            if created and self._steps_done == 0 and self.world.is_main and not ckpt.list_checkpoints(self.ckpt_dir):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _fit(self) -> TrainResult:
        t = self.cfg.train
        main = self.world.is_main
        log: Any = MetricsLog(self.run_dir, resume_step=self.step if self.resume else None, tensorboard=t.tensorboard) if main else NullLog()
        monitor = None
        if t.eval_every:
            from ..metrics.monitor import FIDMonitor

            monitor = FIDMonitor(self.cfg.to_dict()["data"], self.data_shape, n=t.eval_n, extractor=t.eval_extractor,
                                 reference=t.eval_reference, device=str(self.device), with_reference=main)
        previous = self._install_handlers()
        bar = None
        if t.progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
        start_time = time.perf_counter()
        interval_start, interval_steps = start_time, 0
        acc_d = torch.zeros((), device=self.device)
        acc_g = torch.zeros((), device=self.device)
        last_samples: Optional[Path] = None
        last_ckpt: Optional[Path] = None
        samples_step = ckpt_step = -1
        guard = DivergenceGuard(self.device, self.step, capacity=t.log_every)
        reduce = (lambda rows: distributed.all_reduce_(rows, "sum")) if self.world.distributed else None
        self._retries, self._diverged_at = 0, -1
        self._snapshot()

        def commit() -> bool:
            """Check the steps since the last check; False if they diverged (then rolled back)."""
            nonlocal interval_start, interval_steps
            bad = guard.check(reduce)
            if bad is None:
                if self.step > self._diverged_at:
                    self._retries = 0
                self._snapshot()
                return True
            self._rollback(bad, log)
            guard.reset(self.step)
            acc_d.zero_()
            acc_g.zero_()
            interval_start, interval_steps = time.perf_counter(), 0
            if bar is not None:
                bar.n = self.step
                bar.refresh()
            return False

        try:
            self.G.train()
            self.D.train()
            while self.step < t.steps:
                lr_factor = self._set_lr()
                try:
                    d_loss, g_loss = self.train_step()
                except RuntimeError as exc:
                    if is_double_backward_error(exc):
                        raise double_backward_error() from None
                    raise
                self._steps_done += 1
                guard.observe(torch.stack([d_loss.float(), g_loss.float(),
                                           self._grad_norms["discriminator"], self._grad_norms["generator"]]))
                acc_d += d_loss
                acc_g += g_loss
                interval_steps += 1
                step = self.step
                log_now = step % t.log_every == 0 or step == t.steps
                ckpt_now = bool(t.checkpoint_every) and step % t.checkpoint_every == 0
                eval_now = monitor is not None and step % t.eval_every == 0
                # commit point: nothing derived from the weights is kept before this check
                due = log_now or ckpt_now or eval_now
                committed = due and commit()
                if due and not committed:
                    continue
                if log_now:
                    now = time.perf_counter()
                    if self.world.distributed:
                        mean = distributed.all_reduce_(torch.stack([acc_d, acc_g]).float(), "mean")
                        d_val, g_val = (mean[0] / interval_steps).item(), (mean[1] / interval_steps).item()
                    else:
                        d_val, g_val = (acc_d / interval_steps).item(), (acc_g / interval_steps).item()
                    rec = {
                        "step": step,
                        "d_loss": d_val,
                        "g_loss": g_val,
                        "lr_g": t.lr_g * lr_factor * self.lr_scale,
                        "lr_d": t.lr_d * lr_factor * self.lr_scale,
                        "images_per_s": interval_steps * t.batch_size / max(now - interval_start, 1e-9),
                        "elapsed_s": now - start_time,
                        **self._scalars(step),
                    }
                    log.log(rec)
                    if bar is not None:
                        bar.set_postfix(d=f"{rec['d_loss']:.3f}", g=f"{rec['g_loss']:.3f}", refresh=False)
                    acc_d.zero_()
                    acc_g.zero_()
                    interval_start, interval_steps = now, 0
                # probes read the model on rank 0's batch (they never change the trajectory)
                probed = self.regularizers.probe(step, self._probe_context) if main else {}
                if probed:
                    log.log({"step": step, **probed})
                if eval_now:
                    fid = monitor(self.sampler, self.cfg.model.latent_dim)  # type: ignore[misc]
                    improved = self.best_fid is None or fid < self.best_fid
                    if improved:
                        self.best_fid = fid
                    log.log({"step": step, "fid": fid, "fid_extractor": monitor.id, "best_fid": self.best_fid})  # type: ignore[union-attr]
                    if improved:
                        self.save_checkpoint(name="best")
                if t.sample_every and step % t.sample_every == 0:
                    samples_step = step
                    if main:
                        last_samples = self.save_samples()
                if ckpt_now:
                    last_ckpt, ckpt_step = self.save_checkpoint(), step
                if bar is not None:
                    bar.update(1)
                for cb in self.callbacks:
                    cb(self, step)
                stop = self._stop_signal is not None
                if self.world.distributed:  # every rank stops after the same step
                    stop = distributed.any_rank(stop)
                if stop:
                    if not committed and not commit():
                        continue
                    path = last_ckpt if ckpt_step == step else self.save_checkpoint()
                    raise TrainingInterrupted(self._stop_signal or signal.SIGTERM, step, path)  # type: ignore[arg-type]
            if samples_step != self.step and main:
                last_samples = self.save_samples()
            if ckpt_step != self.step:
                last_ckpt = self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            log.close()
            for s, h in previous.items():
                signal.signal(s, h)
        return TrainResult(self.run_dir, self.step, last_samples, last_ckpt, time.perf_counter() - start_time)
