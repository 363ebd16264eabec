"""Running one cell of the Bridging grid: train (image and toy cells), then measure -- the FID and
the fixed-batch sharpness of an image run, the density scores of a toy run, or the FID floor.

:func:`run_cell` is the grid runner's entry point (module-level, so worker processes can call it):
it takes the stored spec, parses it (:func:`~statgan.experiments.bridging.specs.parse_spec`) and
returns the typed result as the record's ``result`` dictionary.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ... import config as config_mod
from ... import data as datasets
from ...metrics.evaluate import evaluate_paths, evaluate_run
from ...regularizers.sharpness import fixed_batch_sharpness
from ...rundir import checkpoint as ckpt
from ...rundir.run import checkpoint_dir, read_metrics
from ...runtime.seeding import stream_generator
from ...train.trainer import Trainer
from ..stats import chi2_decile_rms
from .specs import (FID_SPLIT, KDE_VALID_N, LOGP_FLOOR, SHARPNESS_SEED, TOY_DENSITY_INFO, CellSpec, FloorCell, ImageCell,
                    ToyCell, parse_spec)
from .records import CellResult, Floor, ImageResult, ToyResult

#: a cell whose config writes no checkpoints until its end (every spec of the Bridging budgets) writes
#: one every this many steps, so that an attempt killed without warning (SIGKILL, a lost machine, a
#: worker of ``--jobs N`` stopped with the grid) is continued from at most this many steps back.
#: Not part of the spec: the checkpoint interval does not change what is learned (a resumable key),
#: so the cells' spec hashes, and the records that carry them, stay as they were
CELL_CHECKPOINT_EVERY = 1000


def _with_periodic_checkpoints(cfg: config_mod.Config) -> config_mod.Config:
    if cfg.train.checkpoint_every:
        return cfg
    periodic = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_every=CELL_CHECKPOINT_EVERY))
    assert not config_mod.resume_blockers(cfg, periodic), "the checkpoint interval must not change what a cell learns"
    return periodic


def train(config: Mapping[str, Any], wd: Path) -> Tuple[Trainer, float]:
    """Train the run ``config`` (statgan's dictionary form) in ``wd / "run"``, with a checkpoint every
    :data:`CELL_CHECKPOINT_EVERY` steps; the trainer and the seconds it trained. A run there with a
    checkpoint is an earlier attempt at the cell that did not finish (the grid clears the work
    directories of other specs and of crashed attempts): it is continued, bit for bit as if it had
    not stopped, and the seconds are this attempt's. A run there without one (killed before its
    first checkpoint) starts again."""
    cfg = _with_periodic_checkpoints(config_mod.from_dict(config))
    config_mod.validate(cfg)
    run_dir = wd / "run"
    resume = ckpt.latest_checkpoint(checkpoint_dir(run_dir)) is not None
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    trainer = Trainer(cfg, run_dir, resume=resume)
    result = trainer.fit()
    return trainer, result.seconds


def _train(spec: Dict[str, Any], wd: Path) -> Tuple[Trainer, float]:
    """:func:`train` of a stored spec's config (benchmarks/bridging_baselines.py trains edited specs)."""
    return train(spec["config"], wd)


def _last_batch_sharpness(run_dir: Path) -> Optional[float]:
    """The in-training probe's value after the last step (on the last training batch, train mode)."""
    values = [float(rec["sharpness"]) for rec in read_metrics(run_dir) if "sharpness" in rec]
    return values[-1] if values else None


def sharpness_batch(data: Any, size: int, latent_dim: int, seed: int = SHARPNESS_SEED) -> Tuple[torch.Tensor, torch.Tensor]:
    """The fixed sharpness evaluation batch: ``min(size, len(data))`` distinct rows of ``data`` (the
    first rows of a permutation drawn from ``seed``) and as many standard-normal latents, drawn
    after the permutation from the same generator. Depends on nothing but its arguments, so every
    cell of a grid is measured on the same images and latents."""
    gen = stream_generator("bridging_sharpness_batch", seed)
    idx = torch.randperm(len(data), generator=gen)[: min(size, len(data))]
    real = data[idx] if torch.is_tensor(data) else torch.stack([torch.as_tensor(data[int(i)]) for i in idx])
    return real, torch.randn(len(idx), latent_dim, generator=gen)


def eval_sharpness(trainer: Trainer, size: int, iters: int, seed: int = SHARPNESS_SEED) -> float:
    r"""Top Hessian eigenvalue of the objective's generator loss w.r.t. the raw generator's parameters
    on the fixed batch :func:`sharpness_batch` (``size`` training images and latents), G and D in
    eval mode (BatchNorm on running statistics, dropout off) and no regulariser transform (no
    relaxation noise): the same function of ψ for every cell, whatever batch size, dropout or
    noise it was trained with. ``iters`` power iterations from a start vector drawn from ``seed``
    (:func:`statgan.regularizers.sharpness.fixed_batch_sharpness`)."""
    real, z = sharpness_batch(trainer.train_data, size, trainer.cfg.model.latent_dim, seed)
    real, z = real.to(trainer.device), z.to(trainer.device)
    G, D = trainer.G, trainer.D
    start = stream_generator("bridging_sharpness_start", seed)
    return fixed_batch_sharpness(lambda: trainer.objective.generator_loss(D, real, G(z)), list(G.parameters()),
                                 [G, D], iters, generator=start)


def run_floor(cell: FloorCell, wd: Path) -> Floor:
    """FID of the data set's FID split against its own training images: the floor of the FID table."""
    ev = evaluate_paths(f"data:{cell.data}:{cell.split}", f"data:{cell.data}:train", metrics=["fid"],
                        extractor=cell.extractor)
    return Floor(fid=ev.metrics["fid"], extractor=ev.extractor.id,
                 reference=f"{ev.reference.source} (n={ev.reference.n})",
                 generated=f"{ev.generated.source} (n={ev.generated.n})")


def run_image(cell: ImageCell, wd: Path) -> ImageResult:
    """Train an image run, then its fixed-batch sharpness and its FID against :data:`FID_SPLIT`."""
    trainer, train_s = train(cell.config, wd)
    t0 = time.perf_counter()
    sh = cell.sharpness
    sharpness = eval_sharpness(trainer, sh.n, sh.iters, sh.seed)
    sharpness_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate_run(wd / "run", metrics=["fid"], n=cell.fid_n, extractor="lenet", reference=FID_SPLIT, seed=0,
                      write=True)
    tc = trainer.cfg.train
    return ImageResult(
        fid=ev.metrics["fid"], fid_extractor=ev.extractor.id, fid_reference=f"{ev.reference.source} (n={ev.reference.n})",
        sharpness=sharpness, sharpness_n=sh.n, sharpness_s=round(sharpness_s, 2),
        sharpness_last_batch=_last_batch_sharpness(wd / "run"), steps=trainer.step, batch_size=tc.batch_size,
        epochs=trainer.step * tc.batch_size * tc.n_critic / len(trainer.train_data), train_s=round(train_s, 2),
        eval_s=round(time.perf_counter() - t0, 2))


def kde_log_likelihood(samples: Any, points: Any, bandwidths: Sequence[float], chunk: int = 256) -> List[float]:
    r"""Mean log-density of ``points`` under the Gaussian KDE of 2-D ``samples``, for each bandwidth h:
    :math:`\log \hat p(x) = \operatorname{logsumexp}_i[-\|x - s_i\|^2/2h^2] - \log n - \log(2\pi h^2)`.
    (The squared distances are computed once per chunk and shared by all bandwidths.)"""
    s = torch.as_tensor(samples, dtype=torch.float64)
    x = torch.as_tensor(points, dtype=torch.float64)
    totals = [0.0] * len(bandwidths)
    for i in range(0, len(x), chunk):
        d2 = torch.cdist(x[i : i + chunk], s).pow_(2)
        for j, h in enumerate(bandwidths):
            lse = torch.logsumexp(d2 * (-0.5 / h**2), dim=1)
            totals[j] += float(lse.sum()) - len(lse) * (math.log(len(s)) + math.log(2 * math.pi * h**2))
    return [t / len(x) for t in totals]


def run_toy(cell: ToyCell, wd: Path) -> ToyResult:
    """Train a toy run, then score ``eval_n`` samples of its EMA generator against the exact density."""
    trainer, train_s = train(cell.config, wd)
    t0 = time.perf_counter()
    G = trainer.sampler.eval()
    gen = stream_generator("bridging_toy_eval")
    z = torch.randn(cell.eval_n, cell.latent_dim, generator=gen)
    with torch.no_grad():
        x = G(z).double()
    density = datasets.get_density(cell.density)
    logp = density.log_prob(x)
    logp_floored = torch.clamp(torch.nan_to_num(logp, nan=LOGP_FLOOR, neginf=LOGP_FLOOR), min=LOGP_FLOOR)
    test = datasets.load(cell.density, "test").double()
    valid = datasets.load(cell.density, "train", n=KDE_VALID_N).double()
    # bandwidth by held-out likelihood on training points (not the test points that are scored)
    grid = [float(b) for b in np.logspace(-2.5, 0.5, 13)]
    scores = kde_log_likelihood(x, valid, grid)
    h = grid[int(np.argmax(scores))]
    chi2 = chi2_decile_rms(x.numpy()) if TOY_DENSITY_INFO[cell.density].standard_normal else None
    return ToyResult(logp_mean=float(logp_floored.mean()), logp_data=float(density.log_prob(test).mean()),
                     in_support=float(torch.isfinite(logp).double().mean()),
                     kde_test_ll=kde_log_likelihood(x, test, [h])[0], kde_bandwidth=float(h), train_s=round(train_s, 2), chi2_rms=chi2,
                     eval_s=round(time.perf_counter() - t0, 2))


#: how each kind of cell runs
RUNNERS: Mapping[type, Callable[[Any, Path], CellResult]] = {
    FloorCell: run_floor, ImageCell: run_image, ToyCell: run_toy}


def run_typed(cell: CellSpec, wd: Path) -> CellResult:
    """Run one typed cell in the work directory ``wd``."""
    return RUNNERS[type(cell)](cell, wd)


def run_cell(spec: Dict[str, Any], wd: Path) -> Dict[str, Any]:
    """Train and evaluate one cell (a grid runner: module-level so worker processes can call it);
    the record's ``result``."""
    return run_typed(parse_spec(spec), wd).to_dict()


__all__ = ["CELL_CHECKPOINT_EVERY", "train", "sharpness_batch", "eval_sharpness", "kde_log_likelihood",
           "run_floor", "run_image", "run_toy", "RUNNERS", "run_typed", "run_cell"]
