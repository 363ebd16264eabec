"""The training loop.

One generator step is ``n_critic`` discriminator updates followed by one generator update::

    for k in 1..n_critic:   real ← next batch;  fake ← G(z);  regularizers.begin_batch(real, fake)
                            real' ← transform_real(real);  fake' ← transform_fake(fake.detach())
                            L_D = objective.discriminator_loss(D, real', fake') + Σ penalties;  step D
                            objective.after_discriminator_step(D)      (a no-op unless, e.g., clipping)
    L_G = objective.generator_loss(D, real', transform_fake(fake)) + Σ penalties;  step G;  EMA update

The loop knows no objective or regulariser by name: it uses the :class:`~statgan.objectives.base.Objective`
interface (the two losses, ``has_discriminator``, ``after_discriminator_step``) and the hooks of
:class:`statgan.regularizers.RegularizerSet` (observation noise, penalties, Monte-Carlo averaging,
optimizer wrapping such as SAM, probes). Every update goes through ``optimizer.step(closure)``
(:mod:`statgan.train.update`). The generated batch of the last critic step is reused for the generator step's
first evaluation (as in the DCGAN reference code), which saves one generator forward pass per
step; further evaluations (Monte-Carlo dropout, SAM's perturbed pass) re-run G on the same
latents. With no regularisers this is exactly the plain loop, operation for operation.

After each generator step, in this order and each only when due: a divergence check (the commit
point), the log record, the regularisers' probes, an FID evaluation, samples, a checkpoint, the
callbacks, and a stop requested by a signal.

Reproducibility: weights are initialised from ``run.seed``; latents come from a dedicated CPU
generator (identical streams on every device, state saved in checkpoints); the data order is a pure
function of the batch counter (:mod:`statgan.train.batches`); the global RNG (dropout, penalty
interpolation) is saved and restored, and so are the regularisers' private RNGs (observation
noise): :mod:`statgan.train.state`. On CPU with ``train.deterministic`` a resumed run is
bit-identical to an uninterrupted one.

Several processes (``torchrun --nproc-per-node N -m statgan train``, :mod:`statgan.runtime.distributed`):
``train.batch_size`` is the global batch; each rank takes its rows of every global batch, of the
latents and of the observation noise (all drawn from the shared streams), each closure ends with
one all-reduce that averages the gradients, BatchNorm buffers are averaged after every step, and
only rank 0 writes the run directory. The global RNG (dropout masks, GP interpolation weights) is
seeded per rank. Faults (:mod:`statgan.train.faults`): a NaN/Inf loss or gradient rolls the run
back to its last good state with lower learning rates, up to ``train.nan_retries`` times.
Mixed precision, TF32, channels-last and torch.compile: :mod:`statgan.train.precision`. What is
built before the first step: :mod:`statgan.train.setup`; the run directory:
:mod:`statgan.train.run_dir`; SIGINT/SIGTERM: :mod:`statgan.train.signals`.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import __version__, viz
from .. import data as datasets
from ..config import Config, TrainSection
from ..errors import StatganError, TrainingInterrupted  # noqa: F401  (re-exported)
from ..metrics.monitor import FIDMonitor
from ..models import build_objective, build_regularizers, data_shape_of
from ..regularizers import ProbeContext
from ..regularizers.ema import EMA
from ..rundir import checkpoint as ckpt
from ..rundir.run import CURVES_FILE, checkpoint_dir, read_metrics, write_status
from ..runtime import distributed
from ..runtime.device import select_device
from ..runtime.seeding import stream_generator
from .batches import BatchStream
from .faults import Divergence, DivergenceGuard, Rollback
from .logging import MetricsLog, NullLog
from .precision import Precision, double_backward_error, is_double_backward_error
from .run_dir import Loaded, newest_good_checkpoint, prepare_run_dir
from .setup import build_networks, build_optimizers, check_startable, configure_torch
from .signals import StopRequest
from .state import TrainingState
from .schedules import ScheduleRunner, ScheduleTargets, build_schedules
from .update import Updater
from .watch import DiscriminatorWinWatch

StepCallback = Callable[["Trainer", int], None]


class TrainingDiverged(StatganError):
    """A loss or gradient stayed NaN/Inf after ``train.nan_retries`` rollbacks."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` produced: the step reached, the last sample grid and checkpoint."""

    run_dir: Path
    step: int
    samples: Optional[Path]
    checkpoint: Optional[Path]
    seconds: float


def default_run_name(cfg: Config) -> str:
    """``DATA-ARCH-OBJECTIVE-YYYYmmdd-HHMMSS``: the run name when ``run.name`` is not set."""
    return f"{cfg.data.name}-{cfg.model.arch}-{cfg.objective.name}-{time.strftime('%Y%m%d-%H%M%S')}"


class _Batch(NamedTuple):
    """One critic step's inputs: the transformed real batch, the latents and G's output for them."""

    real_in: Tensor
    z: Tensor
    fake: Tensor


@dataclass(frozen=True)
class _Due:
    """What is due after generator step ``step``."""

    log: bool
    fid: bool
    samples: bool
    checkpoint: bool

    @classmethod
    def after(cls, step: int, t: TrainSection, evaluating: bool) -> "_Due":
        return cls(
            log=step % t.log_every == 0 or step == t.steps,
            fid=evaluating and step % t.eval_every == 0,
            samples=bool(t.sample_every) and step % t.sample_every == 0,
            checkpoint=bool(t.checkpoint_every) and step % t.checkpoint_every == 0,
        )

    @property
    def commit_point(self) -> bool:
        """Whether something derived from the weights will be kept (then they are checked first)."""
        return self.log or self.fid or self.checkpoint


@dataclass
class _Fit:
    """What one call of :meth:`Trainer.fit` keeps between steps: its outputs (log, FID monitor,
    progress bar), the divergence watch and rollback target, and the running sums of the next
    log record."""

    log: Union[MetricsLog, NullLog]
    monitor: Optional[FIDMonitor]
    bar: Optional[tqdm]
    guard: DivergenceGuard
    rollback: Rollback
    start_time: float
    interval_start: float  # when the steps summed in acc_d/acc_g began
    acc_d: Tensor
    acc_g: Tensor
    interval_steps: int = 0
    last_samples: Optional[Path] = None
    samples_step: int = -1
    last_checkpoint: Optional[Path] = None
    checkpoint_step: int = -1
    d_wins: DiscriminatorWinWatch = field(default_factory=DiscriminatorWinWatch)

    def record(self, d_loss: Tensor, g_loss: Tensor, grad_norms: Dict[str, Tensor]) -> None:
        """The step just done: its values go to the divergence watch and the running sums (no host sync)."""
        self.guard.observe(torch.stack([d_loss.float(), g_loss.float(), grad_norms["discriminator"], grad_norms["generator"]]))
        self.acc_d += d_loss
        self.acc_g += g_loss
        self.interval_steps += 1

    def mean_losses(self, sync: bool) -> Tuple[float, float]:
        """The mean losses since the interval began (with ``sync``, averaged over the ranks)."""
        if sync:
            mean = distributed.all_reduce_(torch.stack([self.acc_d, self.acc_g]).float(), "mean")
            return (mean[0] / self.interval_steps).item(), (mean[1] / self.interval_steps).item()
        return (self.acc_d / self.interval_steps).item(), (self.acc_g / self.interval_steps).item()

    def restart_interval(self, now: float) -> None:
        self.acc_d.zero_()
        self.acc_g.zero_()
        self.interval_start, self.interval_steps = now, 0


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
        self.cfg, self.run_dir, self.resume = cfg, Path(run_dir), resume
        self.use_previous = use_previous  # resume: skip corrupt checkpoints, take the newest good one
        self.callbacks: List[StepCallback] = list(callbacks or [])
        t = cfg.train
        # the objective and regularisers validate their values: first, so that a config error
        # costs no data loading and leaves nothing behind (neither builds draws random numbers)
        self.objective = build_objective(cfg)
        self.regularizers = build_regularizers(cfg, self.objective)
        configure_torch(t)
        self.device = distributed.device_for_rank(select_device(cfg.run.device))
        self.precision = Precision(t.precision, self.device, tf32=t.tf32, channels_last=t.channels_last, compile=t.compile)
        check_startable(t, distributed.env_world_size())
        self.world = distributed.init(self.device)
        self.regularizers.bind(cfg.run.seed, self.device)

        self.train_data = datasets.load(cfg.data.name, "train", cfg.data.root, **cfg.data.options)
        self.data_shape = data_shape_of(self.train_data)
        self.G, self.D = build_networks(cfg, self.data_shape, self.device, self.precision, self.world)
        self.opt_G, self.opt_D, self.scalers = build_optimizers(t, self.G, self.D, self.regularizers, self.precision)
        self.ema = EMA(self.G, t.ema_decay, t.ema_start,
                       halflife_images=None if t.ema_halflife_kimg is None else 1000.0 * t.ema_halflife_kimg,
                       rampup=t.ema_rampup, batch_size=t.batch_size) if t.ema else None
        self.precision.compile_modules(self.G, self.D)  # after the EMA copy, which stays eager
        # the learning rates the schedules move; warm-up and rollback scaling multiply them (_set_lr)
        self._lrs: Dict[str, float] = {"lr_g": t.lr_g, "lr_d": t.lr_d}
        self.schedules = ScheduleRunner(build_schedules(cfg), ScheduleTargets(
            self._lrs, (self.opt_G, self.opt_D), self.objective, self.regularizers), t.steps)
        self._scheduled: Dict[str, float] = {}  # the values set for the current step, for the log
        self.updater = Updater(self.G, self.D, self.regularizers, self.precision, self.scalers,
                               sync=self.world.distributed, device=self.device)
        self.state = TrainingState(
            self.G, self.D, self.ema, self.opt_G, self.opt_D, self.scalers,
            # latents from a CPU generator: the same stream on every device, and its state is portable
            latents=stream_generator("trainer_latents", cfg.run.seed),
            regularizers=self.regularizers, data_shape=self.data_shape, device=self.device, seed=cfg.run.seed,
            rank=self.world.rank,
        )
        self.fixed_z = torch.randn(
            t.grid_size, cfg.model.latent_dim, generator=stream_generator("trainer_grid", cfg.run.seed)
        ).to(self.device)
        self.loaded_from: Optional[Path] = self._resume() if resume else None
        self.batches = self._batch_stream()
        self.stop_request = StopRequest()
        self._steps_taken = 0  # generator steps run by this object, rolled-back ones included
        self._last_batch: Optional[Tuple[Tensor, Tensor]] = None  # (real', z) of the last generator step, for probes

    # ---- properties ----------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Generator steps done (the checkpointed count)."""
        return self.state.step

    @property
    def sampler_description(self) -> str:
        """Which weights the sample grids show: the EMA (and how it is taken) or the raw generator."""
        return f"{self.ema.describe()} weights" if self.ema is not None else "raw weights (train.ema=false)"

    @property
    def sampler(self) -> nn.Module:
        """The network used for samples: the EMA generator when enabled."""
        return self.ema.module if self.ema is not None else self.G

    @property
    def ckpt_dir(self) -> Path:
        return checkpoint_dir(self.run_dir)

    # ---- checkpoints and resume ------------------------------------------------------------------
    def save_checkpoint(self, name: Optional[str] = None) -> Path:
        """Write a checkpoint (rank 0; every rank takes part, since the RNG states of all ranks are saved)."""
        about = {
            "config": self.cfg.to_dict(),
            "latent_dim": self.cfg.model.latent_dim,
            "world_size": self.world.size,
            "versions": {"statgan": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        return self.state.save_checkpoint(self.ckpt_dir, self.cfg.train.keep_checkpoints, about, name=name)

    def _resume(self) -> Path:
        """Load the newest good checkpoint (chosen by rank 0); returns its path."""
        chosen: List[Loaded] = []  # rank 0 keeps what it read and verified; the other ranks read the file

        def choose() -> Path:
            chosen.append(newest_good_checkpoint(self.ckpt_dir, self.use_previous))
            return chosen[0][0]

        path = distributed.run_on_main(choose)
        tensors, meta = chosen[0][1:] if chosen else ckpt.load_checkpoint(path)
        self.state.load_checkpoint(tensors, meta, str(path))
        return path

    def _batch_stream(self) -> BatchStream:
        """Real batches from the one that follows the current step on."""
        t = self.cfg.train
        return BatchStream(self.train_data, t.batch_size, self.cfg.run.seed, self.device, start=self.step * t.n_critic,
                           rank=self.world.rank, world_size=self.world.size)

    def request_stop(self, signum: int = signal.SIGTERM, reason: Optional[str] = None) -> None:
        """Ask the loop to checkpoint and stop after the current step (what SIGINT/SIGTERM do);
        ``reason`` replaces "SIGTERM received" in the message when the caller is not a signal."""
        self.stop_request.request(signum, reason)

    # ---- one generator step ----------------------------------------------------------------------
    def train_step(self) -> Tuple[Tensor, Tensor]:
        """One generator step (with its n_critic discriminator steps); returns detached losses."""
        self.regularizers.start_step(self.step, self.G, self.D)
        try:
            d_loss = torch.zeros((), device=self.device)
            for _ in range(self.cfg.train.n_critic):
                batch = self._draw_batch()
                if self.objective.has_discriminator:
                    d_loss = self._discriminator_step(batch)
            g_loss = self._generator_step(batch)
        except RuntimeError as exc:
            if is_double_backward_error(exc):
                raise double_backward_error() from None
            raise
        self._end_step(batch)
        return d_loss.detach(), g_loss.detach()

    def _draw_batch(self) -> _Batch:
        real = self.precision.input(self.batches.next())
        z = self._latents()
        with self.precision.autocast():
            fake = self.G(z)
        self.regularizers.begin_batch(real, fake, self.step)
        return _Batch(self.regularizers.transform_real(real), z, fake)

    def _latents(self) -> Tensor:
        # every rank draws the global batch's latents from the shared stream and keeps its rows
        shape = (self.cfg.train.batch_size // self.world.size, self.cfg.model.latent_dim)
        return distributed.shard_randn(shape, self.state.latents).to(self.device, non_blocking=True)

    def _discriminator_step(self, batch: _Batch) -> Tensor:
        D, real_in = self.D, batch.real_in
        fake_in = self.regularizers.transform_fake(batch.fake.detach())
        loss = self.updater.minimise(self.opt_D, "discriminator",
                                     lambda k: (self.objective.discriminator_loss(D, real_in, fake_in), real_in, fake_in),
                                     self.step)
        self.objective.after_discriminator_step(D)
        return loss

    def _generator_step(self, batch: _Batch) -> Tensor:
        G, D, real_in = self.G, self.D, batch.real_in

        def evaluation(k: int) -> Tuple[Tensor, Tensor, Tensor]:
            fake_in = self.regularizers.transform_fake(batch.fake if k == 0 else G(batch.z))
            return self.objective.generator_loss(D, real_in, fake_in), real_in, fake_in

        # D's weights need no gradient in the generator step: skipping them saves a third of D's backward
        D.requires_grad_(False)
        try:
            return self.updater.minimise(self.opt_G, "generator", evaluation, self.step)
        finally:
            D.requires_grad_(True)

    def _end_step(self, batch: _Batch) -> None:
        self._last_batch = (batch.real_in, batch.z)
        self.state.step += 1
        if self.world.distributed:  # BatchNorm statistics of the global batch (approximately), same on all ranks
            distributed.average_buffers(self.G, self.D)
        if self.ema is not None:
            self.ema.update(self.step)

    def _set_lr(self) -> float:
        """Set both learning rates for the next step (warm-up × rollback scale); returns the warm-up factor."""
        t = self.cfg.train
        self._scheduled = self.schedules.apply(self.step)
        factor = 1.0 if t.warmup_steps == 0 else min(1.0, 0.01 + 0.99 * self.step / t.warmup_steps)
        for opt, base in ((self.opt_G, self._lrs["lr_g"]), (self.opt_D, self._lrs["lr_d"])):
            for g in opt.param_groups:
                g["lr"] = base * factor * self.state.lr_scale
        return factor

    # ---- samples -------------------------------------------------------------------------------
    @torch.no_grad()
    def save_samples(self) -> Path:
        """The sampler's images (or 2-D points over the training data) for the fixed latents."""
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
        return viz.save_samples(samples, self.run_dir / "samples" / f"step-{self.step:06d}.png", reference=ref)

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to ``train.steps``. A run that fails before its first step leaves no run directory."""
        created = distributed.run_on_main(lambda: prepare_run_dir(self.run_dir, self.cfg, self.G, self.D, self.resume))
        steps_before = self._steps_taken
        self._record_status("running")
        try:
            result = self._fit()
        except BaseException as exc:
            if (created and self._steps_taken == steps_before and self.world.is_main
                    and not ckpt.list_checkpoints(self.ckpt_dir)):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            else:
                self._record_failure(exc)
            raise
        self._record_status("finished")
        return result

    def _record_status(self, state: str, message: str = "") -> None:
        if self.world.is_main:
            write_status(self.run_dir, state, self.step, message)

    def _record_failure(self, exc: BaseException) -> None:
        """Say in status.json how the run ended, so ``statgan runs`` shows it and a failed run
        without checkpoints may be reused (:func:`prepare_run_dir`)."""
        if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)):
            self._record_status("interrupted", str(exc))
        elif isinstance(exc, TrainingDiverged):
            self._record_status("diverged", str(exc))
        else:
            last = ckpt.latest_checkpoint(self.ckpt_dir)
            how = (f"continue with statgan train --resume {self.run_dir} (from {last.name})" if last is not None else
                   "no checkpoint was written: rerunning with the same run.name reuses this folder")
            self._record_status("failed", f"{' '.join(f'{type(exc).__name__}: {exc}'.split())}; {how}")

    def _fit(self) -> TrainResult:
        with contextlib.ExitStack() as cleanup:
            run = self._start(cleanup)
            self.G.train()
            self.D.train()
            while self.step < self.cfg.train.steps:
                self._run_step(run)
            return self._finish(run)

    def _start(self, cleanup: contextlib.ExitStack) -> _Fit:
        """Open this fit's outputs (closed by ``cleanup``), take over SIGINT/SIGTERM and take the
        first rollback snapshot."""
        t = self.cfg.train
        main = self.world.is_main
        monitor = None
        if t.eval_every:
            monitor = FIDMonitor(self.cfg.to_dict()["data"], self.data_shape, n=t.eval_n, extractor=t.eval_extractor,
                                 reference=t.eval_reference, device=str(self.device), with_reference=main)
        log: Union[MetricsLog, NullLog] = NullLog()
        if main:
            log = MetricsLog(self.run_dir, resume_step=self.step if self.resume else None, tensorboard=t.tensorboard)
        cleanup.callback(log.close)
        cleanup.enter_context(self.stop_request.handlers())
        bar = None
        if t.progress and main:
            bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
            cleanup.callback(bar.close)
        now = time.perf_counter()
        return _Fit(log, monitor, bar, DivergenceGuard(self.device, self.step, capacity=t.log_every),
                    Rollback(self.state, t.nan_retries, t.nan_lr_factor), start_time=now, interval_start=now,
                    acc_d=torch.zeros((), device=self.device), acc_g=torch.zeros((), device=self.device),
                    d_wins=DiscriminatorWinWatch(active=self.objective.has_discriminator))

    def _run_step(self, run: _Fit) -> None:
        """One generator step and what is due after it, each only once the steps so far passed a
        divergence check (a failed check rolls back instead)."""
        lr_factor = self._set_lr()
        d_loss, g_loss = self.train_step()
        self._steps_taken += 1
        run.record(d_loss, g_loss, self.updater.grad_norms)
        due = _Due.after(self.step, self.cfg.train, evaluating=run.monitor is not None)
        if due.commit_point and not self._commit(run):
            return
        if due.log:
            self._log(run, lr_factor)
        self._probe(run)
        if due.fid:
            self._evaluate(run)
        if due.samples:
            self._sample(run)
        if due.checkpoint:
            self._checkpoint(run)
        if run.bar is not None:
            run.bar.update(1)
        for cb in self.callbacks:
            cb(self, self.step)
        if self._stop_requested():
            self._stop(run, checked=due.commit_point)

    def _finish(self, run: _Fit) -> TrainResult:
        """The final samples and checkpoint, unless the last step wrote them already."""
        if run.samples_step != self.step and self.world.is_main:
            run.last_samples = self.save_samples()
            self.save_curves()
        if run.checkpoint_step != self.step:
            run.last_checkpoint = self.save_checkpoint()
        return TrainResult(self.run_dir, self.step, run.last_samples, run.last_checkpoint,
                           time.perf_counter() - run.start_time)

    # ---- what may be due after a step --------------------------------------------------------------
    def _commit(self, run: _Fit) -> bool:
        """Check the steps since the last check: True and a new rollback snapshot if they are
        finite, else a rollback (or TrainingDiverged) and False."""
        # a sum over the ranks keeps NaN and Inf, so every rank reaches the same verdict
        reduce = functools.partial(distributed.all_reduce_, op="sum") if self.world.distributed else None
        bad = run.guard.check(reduce)
        if bad is None:
            run.rollback.commit()
            return True
        self._roll_back(run, bad)
        return False

    def _roll_back(self, run: _Fit, bad: Divergence) -> None:
        """Back to the last good state with lower learning rates, or TrainingDiverged when the
        retries are used up; the discarded steps leave no trace in the log."""
        t, rollback = self.cfg.train, run.rollback
        if rollback.exhausted:
            tried = (f" again after {rollback.retries} rollback(s) to step {rollback.good.step} with the learning rates "
                     f"lowered to {self.state.lr_scale:g}x the configured ones" if rollback.retries else "")
            last = ckpt.latest_checkpoint(self.ckpt_dir)
            raise TrainingDiverged(
                f"training diverged: {bad.describe()}{tried}; giving up (train.nan_retries={t.nan_retries}); "
                f"last good checkpoint: {last if last is not None else 'none'}; try lower train.lr_g / train.lr_d"
            )
        rollback.roll_back(bad)
        self.batches = self._batch_stream()
        self.regularizers.scalars(self.step)  # drop penalty sums of the discarded steps
        run.log.rewind(self.step)
        run.log.log({"step": self.step, "event": "nan_rollback", "diverged": bad.quantities, "at_step": bad.step,
                     "retry": rollback.retries, "lr_scale": self.state.lr_scale})
        if self.world.is_main:
            print(f"statgan: warning: {bad.describe()}; rolled back to step {self.step} with the learning rates "
                  f"at {self.state.lr_scale:g}x (retry {rollback.retries} of {t.nan_retries})", file=sys.stderr)
        run.guard.reset(self.step)
        run.restart_interval(time.perf_counter())
        if run.bar is not None:
            run.bar.n = self.step
            run.bar.refresh()

    def _log(self, run: _Fit, lr_factor: float) -> None:
        """The metrics record of the steps since the last one."""
        t = self.cfg.train
        now = time.perf_counter()
        d_val, g_val = run.mean_losses(sync=self.world.distributed)
        rec = {
            "step": self.step,
            "d_loss": d_val,
            "g_loss": g_val,
            "lr_g": self._lrs["lr_g"] * lr_factor * self.state.lr_scale,
            "lr_d": self._lrs["lr_d"] * lr_factor * self.state.lr_scale,
            "images_per_s": run.interval_steps * t.batch_size / max(now - run.interval_start, 1e-9),
            "elapsed_s": now - run.start_time,
            **self._regularizer_scalars(),
            **{f"schedule.{k}": v for k, v in self._scheduled.items()},
        }
        run.log.log(rec)
        warning = run.d_wins.observe(self.step, d_val, g_val)
        if warning is not None and self.world.is_main:
            print(f"statgan: warning: {warning}", file=sys.stderr)
        if run.bar is not None:
            run.bar.set_postfix(d=f"{d_val:.3f}", g=f"{g_val:.3f}", refresh=False)
        run.restart_interval(now)

    def _regularizer_scalars(self) -> Dict[str, float]:
        """The regularisers' values for the log, averaged over the ranks."""
        out = self.regularizers.scalars(self.step)
        if self.world.distributed and out:
            keys = sorted(out)
            vals = distributed.all_reduce_(torch.tensor([out[k] for k in keys], dtype=torch.float64), "mean")
            out = dict(zip(keys, vals.tolist()))
        return out

    def _probe(self, run: _Fit) -> None:
        """The regularisers' probes, on rank 0's batch (they never change the trajectory)."""
        probed = self.regularizers.probe(self.step, self._probe_context) if self.world.is_main else {}
        if probed:
            run.log.log({"step": self.step, **probed})

    def _probe_context(self) -> ProbeContext:
        """For the regularisers' probes: the generator loss on the last batch at the current weights."""
        real_in, z = self._last_batch  # type: ignore[misc]

        def generator_loss() -> Tensor:
            self.D.requires_grad_(False)
            try:
                return self.objective.generator_loss(self.D, real_in, self.regularizers.transform_fake(self.G(z)))
            finally:
                self.D.requires_grad_(True)

        return ProbeContext(self.G, self.D, generator_loss, self.cfg.run.seed, self.device)

    def _evaluate(self, run: _Fit) -> None:
        """FID of the sampler; a new best is also written as the ``best`` checkpoint."""
        monitor = run.monitor
        assert monitor is not None  # _Due.fid only with a monitor
        fid = monitor(self.sampler, self.cfg.model.latent_dim)
        improved = self.state.best_fid is None or fid < self.state.best_fid
        if improved:
            self.state.best_fid = fid
        run.log.log({"step": self.step, "fid": fid, "fid_extractor": monitor.id, "best_fid": self.state.best_fid})
        if improved:
            self.save_checkpoint(name="best")

    def _sample(self, run: _Fit) -> None:
        run.samples_step = self.step  # on every rank: _finish must agree on whether to write more
        if self.world.is_main:
            run.last_samples = self.save_samples()
            self.save_curves()

    def save_curves(self) -> Path:
        """Redraw ``curves.png`` (losses, and FID when evaluated) from the run's metrics.jsonl."""
        return viz.save_loss_curves(self.run_dir / CURVES_FILE, [(self.run_dir.name, read_metrics(self.run_dir))])

    def _checkpoint(self, run: _Fit) -> None:
        run.last_checkpoint, run.checkpoint_step = self.save_checkpoint(), self.step

    def _stop_requested(self) -> bool:
        stop = self.stop_request.requested
        if self.world.distributed:  # every rank stops after the same step
            stop = distributed.any_rank(stop)
        return stop

    def _stop(self, run: _Fit, checked: bool) -> None:
        """Checkpoint (after a divergence check, unless this step had one) and raise TrainingInterrupted."""
        if not checked and not self._commit(run):
            return  # rolled back: go on from the last good state, and stop after the next step
        path = run.last_checkpoint if run.checkpoint_step == self.step else self.save_checkpoint()
        raise TrainingInterrupted(self.stop_request.signum or signal.SIGTERM, self.step, path, self.stop_request.reason)


__all__ = ["Trainer", "TrainResult", "TrainingDiverged", "TrainingInterrupted", "default_run_name", "StepCallback"]
