"""``statgan reproduce bridging``: the claims of Filippone & Linhard (2025, arXiv 2507.00651,
"Bridging GANs and Bayesian neural networks"), checked on mnist5k and 2-D toy densities.

Two grids, one report:

* **Regularisers** (issue item 6). For each objective of the paper's code — WGAN-div
  (``wgan-div``, n_critic 5), relativistic average GAN (``ragan``) and fixed-kernel MMD (``gmmn``) —
  and each seed, eight cells: ``baseline``; ``relaxation`` (σ = 0.1 decaying linearly to 0 over the
  run); ``gradreg`` (the paper's λ‖∇_ψ L_G‖², ``param_grad``, for the GANs; λ·mean‖∂MMD²/∂x̃‖,
  ``sample_grad``, for gmmn); ``sam`` (adaptive SAM, ρ = 0.5, on G and D); ``mcd`` (MC dropout,
  p = 0.1, n_mcd = 2); ``sam_gradreg`` (both); and a batch-size pair ``batch_small`` /
  ``batch_large`` (¼× and 2× the baseline batch) at an *equal number of epochs* — the setting of
  Keskar et al. (2017) in which large batches are said to reach sharper minima — so both see the
  same images and cost about the same compute. Every run is scored by FID in the feature space of
  statgan's MNIST LeNet (EMA generator vs the 1,000-image mnist5k test split, 2,000 generated
  samples in ``small``) and by the final sharpness, the top Hessian eigenvalue of L_G with respect
  to the (raw) generator's parameters on one fixed evaluation batch of training images and latents
  (the same for every cell, chosen by :data:`SHARPNESS_SEED`), with every network in eval mode
  (:func:`statgan.regularizers.sharpness.fixed_batch_sharpness`). The in-training probe's value
  on the last training batch is kept as ``sharpness_last_batch`` for comparison only: it grows as
  the batch shrinks by construction.
* **Latent dimension** (item 7). The paper proves that a partially stochastic generator
  approximates any absolutely continuous density once its latent dimension is large enough; here
  MLP generators with latent dimension 1, 2, 4, 8 are trained (``gmmn`` with kernel length scales
  0.07–2.2) on 2-D densities with an exact log-density: the paper's toy (200 points from N(0, I₂)),
  ``8gaussians`` and ``checkerboard``. Scores from 10,000 samples of the EMA generator: the chi-square decile RMS on
  squared norms (Gaussian, the paper's score), the mean exact log-density log p_data of the samples
  (floored at −20 so that samples off the checkerboard's support count as −20, not −∞; a precision
  score that a collapsed generator can also do well on) and the held-out log-likelihood of the 2,000
  test points under a Gaussian KDE of the samples (bandwidth chosen on 2,000 training points; a
  coverage score).

The report's verdicts are computed from the numbers, never typed by hand (:func:`verdict`): Welch
t-tests over seeds with 95% intervals, Spearman correlation of *cell means* (seeds of a cell are
not independent draws of the between-cell relation, so n is the number of cells), Holm's
correction within each family of comparisons (every claim, 3 and 4 included), and one of holds /
partly holds / does not hold / unresolved -- or *not tested at this budget* when no objective can
test the claim: its baseline has not learned (above :data:`NOT_LEARNED_FACTOR` × the FID floor) or
its treatment deviates from the paper's released code in a way that can flip the sign
(:data:`DEVIATIONS`). An unresolved claim says what the design could detect. The claim families
are :func:`fid_family`, :func:`flatness_family` and :func:`batch_family`;
tests/test_experiments_bridging_calibration.py checks their verdicts on simulated cells. The
``tiny`` budget is a smoke test and prints no verdicts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch

from .. import config as config_mod
from .. import data as datasets
from ..metrics.evaluate import evaluate_paths, evaluate_run
from ..rundir.files import atomic_write_text
from ..regularizers.sharpness import fixed_batch_sharpness
from ..rundir.run import read_metrics
from ..runtime.lazy import scipy_stats
from ..runtime.seeding import stream_generator
from ..train.trainer import Trainer
from .grid import Cell
from .stats import EXACT_SPEARMAN_N, Correlation, Welch, cell_mean_spearman, chi2_decile_rms, holm, mean_std, welch_test

OBJECTIVES = ("wgan-div", "ragan", "gmmn")
CELLS = ("baseline", "relaxation", "gradreg", "sam", "mcd", "sam_gradreg", "batch_small", "batch_large")
CELL_LABELS = {
    "baseline": "baseline",
    "relaxation": "+ relaxation (σ 0.1 → 0)",
    "gradreg": "+ gradient reg.",
    "sam": "+ SAM (ASAM ρ 0.5)",
    "mcd": "+ MC dropout (p 0.1, 2 passes)",
    "sam_gradreg": "+ SAM & gradient reg.",
    "batch_small": "small batch",
    "batch_large": "large batch",
}
#: the image data set of the regulariser grid, and the split its FID is computed against
IMAGE_DATA, FID_SPLIT = "mnist5k", "test"
#: the FID floor: the same split against the training images (what a perfect generator would score)
FLOOR_KEY = f"{IMAGE_DATA}/floor"
#: training-set sizes the report compares mnist5k's with (public facts, not measurements)
MNIST_TRAIN, CIFAR10_TRAIN = 60_000, 50_000
TOY_DENSITIES = ("gaussian", "8gaussians", "checkerboard")
TOY_BANDWIDTHS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1)
LOGP_FLOOR = -20.0
#: training points the toy KDE bandwidth is chosen on
KDE_VALID_N = 2000
P_THRESHOLD = 0.05
#: seed of the fixed sharpness evaluation batch (which training images, which latents, the power
#: iteration's start): the same for every cell and seed, so every run is measured on one function
SHARPNESS_SEED = 2507_00651
#: a baseline whose FID is above this multiple of the real-vs-real floor has not learned the data
NOT_LEARNED_FACTOR = 10.0
#: the verdict printed instead of any verdict at a budget that is only a smoke test
SMOKE_TEST = "smoke test: no verdicts at the tiny budget"


@dataclass(frozen=True)
class Budget:
    """Sizes of one budget. ``steps`` are generator steps at the baseline batch per objective."""

    description: str
    objectives: Tuple[str, ...]
    cells: Tuple[str, ...]
    seeds: Tuple[int, ...]
    steps: Dict[str, int]
    width: int
    batch: int
    small_batch: int
    large_batch: int
    fid_n: int
    sharpness_iters: int
    #: training images (and latents) in the fixed sharpness evaluation batch
    sharpness_n: int
    toy_densities: Tuple[str, ...]
    toy_dims: Tuple[int, ...]
    toy_steps: int
    toy_eval_n: int
    estimate: str = ""
    #: False for a smoke test: the report prints its statistics but no verdicts
    verdicts: bool = True
    #: torch threads for cells run in the calling process (--jobs 1); None = leave torch's setting.
    #: The tiny cells are so small that a second thread only adds synchronisation (and, on a busy
    #: machine, waiting for a core).
    threads: Optional[int] = None


BUDGETS: Dict[str, Budget] = {
    "tiny": Budget(
        description="smoke test: 2 objectives × 3 cells × 1 seed × 4 steps, a 2-dimension toy sweep",
        objectives=("ragan", "gmmn"), cells=("baseline", "mcd", "sam_gradreg"), seeds=(0,),
        steps={"ragan": 4, "gmmn": 4, "wgan-div": 2}, width=8, batch=16, small_batch=8, large_batch=32,
        fid_n=256, sharpness_iters=3, sharpness_n=256, toy_densities=("gaussian",), toy_dims=(1, 2), toy_steps=20,
        toy_eval_n=2000, estimate="well under a minute on 2 CPU cores", threads=1, verdicts=False,
    ),
    "small": Budget(
        description=("DCGAN width 16, batch 64, Adam lr 1e-3; 300 generator steps for wgan-div (1,500 critic "
                     "steps), 1,200 for ragan, 2,000 for gmmn; FID from 2,000 samples; toys: 1,200 steps"),
        objectives=OBJECTIVES, cells=CELLS, seeds=(0, 1, 2, 3, 4),
        steps={"wgan-div": 300, "ragan": 1200, "gmmn": 2000}, width=16, batch=64, small_batch=16, large_batch=128,
        fid_n=2000, sharpness_iters=20, sharpness_n=1024, toy_densities=TOY_DENSITIES, toy_dims=(1, 2, 4, 8), toy_steps=1200,
        toy_eval_n=10_000,
        estimate=("about 96 minutes with --jobs 2 on an idle 2-core CPU (measured 2026-11-30: 192 CPU-minutes for "
                  "the 181 cells of the 5 seeds; 2 h 2 min wall on a machine shared with other jobs), inside 3 hours"),
    ),
    "full": Budget(
        description=("the paper's setting scaled to mnist5k: DCGAN width 64, batch 128, about 250 epochs of the "
                     "training split (7,800 generator steps), FID from 10,000 samples"),
        objectives=OBJECTIVES, cells=CELLS, seeds=(0, 1, 2),
        steps={"wgan-div": 7_800, "ragan": 7_800, "gmmn": 7_800}, width=64, batch=128, small_batch=32,
        large_batch=256, fid_n=10_000, sharpness_iters=20, sharpness_n=2048, toy_densities=TOY_DENSITIES, toy_dims=(1, 2, 4, 8),
        toy_steps=10_000, toy_eval_n=10_000,
        estimate=("not run: roughly 2–4 GPU-hours on one modern GPU, or several CPU-days (72 DCGAN-64 runs "
                  "of 7,800 steps at batch 128, wgan-div with 5 critic steps each)"),
    ),
}


# ---- grid definition -----------------------------------------------------------------------------
def _mnist_config(b: Budget, objective: str, cell: str, seed: int) -> Dict[str, Any]:
    steps, batch = b.steps[objective], b.batch
    if cell == "batch_small":
        steps, batch = steps * b.batch // b.small_batch, b.small_batch
    elif cell == "batch_large":
        steps, batch = max(1, steps * b.batch // b.large_batch), b.large_batch
    regs: Dict[str, Any] = {}
    gradreg = {"sample_grad": {"weight": 1.0}} if objective == "gmmn" else {"param_grad": {"weight": 0.01}}
    if cell == "relaxation":
        regs["relaxation"] = {"sigma": 0.1, "schedule": "linear", "sigma_min": 0.0, "decay_steps": steps}
    if cell in ("gradreg", "sam_gradreg"):
        regs.update(gradreg)
    if cell in ("sam", "sam_gradreg"):
        regs["sam"] = {"rho": 0.5, "adaptive": True}
    if cell == "mcd":
        regs["mc_dropout"] = {"p": 0.1, "n_mcd": 2}
    regs["sharpness"] = {"every": steps, "iters": b.sharpness_iters}  # once, after the last step
    width = {"width": b.width, "norm": "batch"}
    return {
        "run": {"seed": seed, "device": "cpu"},
        "data": {"name": IMAGE_DATA},
        "model": {"arch": "dcgan", "latent_dim": 100, "generator": dict(width), "discriminator": dict(width)},
        "objective": {"name": objective},
        "train": {
            "steps": steps, "batch_size": batch, "n_critic": 5 if objective == "wgan-div" else 1,
            # the paper's Adam settings, with its linear warm-up over the first 4% of the run
            "lr_g": 1e-3, "lr_d": 1e-3, "betas": [0.5, 0.999], "warmup_steps": steps // 25,
            # EMA over about the last fifth of the run, started after the first quarter
            "ema": True, "ema_decay": round(1.0 - 5.0 / max(steps, 10), 6), "ema_start": steps // 4,
            "log_every": max(1, min(50, steps)), "sample_every": 0, "checkpoint_every": 0, "keep_checkpoints": 1,
            "progress": False, "tensorboard": False,
        },
        "regularizers": regs,
    }


def _toy_config(b: Budget, density: str, dim: int, seed: int) -> Dict[str, Any]:
    data: Dict[str, Any] = {"name": density}
    batch = 256
    if density == "gaussian":
        data["n"] = 200  # the paper's toy: 200 training points from N(0, I2)
        batch = 200
    net = {"hidden": 128, "depth": 3}
    return {
        "run": {"seed": seed, "device": "cpu"},
        "data": data,
        "model": {"arch": "mlp", "latent_dim": dim, "generator": dict(net), "discriminator": dict(net)},
        # a fixed-kernel MMD: on these 2-D densities it fits far more reliably than the GAN objectives at
        # this budget (ragan left the 200-point Gaussian with χ² RMS 2.1), so the latent dimension is
        # what varies. Kernel precisions λ span length scales 1/sqrt(2λ) from 0.07 to 2.2.
        "objective": {"name": "gmmn", "bandwidths": list(TOY_BANDWIDTHS)},
        "train": {"steps": b.toy_steps, "batch_size": batch, "lr_g": 5e-4, "lr_d": 5e-4, "betas": [0.5, 0.9],
                  "ema": True, "ema_decay": 0.99, "log_every": max(1, min(50, b.toy_steps)), "sample_every": 0,
                  "checkpoint_every": 0, "keep_checkpoints": 1, "progress": False, "tensorboard": False},
    }


#: cells that the claims compare with the baseline: run first (for every seed) so that a grid stopped
#: early still has all seeds of them
PRIORITY_CELLS = ("baseline", "mcd", "sam_gradreg", "sam")


def cells(budget: str, seeds: Optional[Sequence[int]] = None) -> List[Cell]:
    """All cells of a budget, in the order they run: the FID floor (seconds, and every table needs
    it), the image-grid cells the claims need (:data:`PRIORITY_CELLS`) for every seed, then the toy
    sweep for every seed, then the remaining image cells for every seed — each group seed-major, so
    a run stopped early still has balanced seeds where they matter most."""
    b = BUDGETS[budget]
    seeds = list(b.seeds if seeds is None else seeds)

    def image(s: int, obj: str, cell: str) -> Cell:
        spec = {"kind": "mnist", "objective": obj, "cell": cell, "seed": s, "fid_n": b.fid_n,
                # the fixed-batch sharpness (the method is part of the spec: older cells are rerun)
                "sharpness": {"method": "fixed-batch-eval", "n": b.sharpness_n, "iters": b.sharpness_iters,
                              "seed": SHARPNESS_SEED},
                "config": _mnist_config(b, obj, cell, s)}
        return Cell(f"mnist/{obj}/{cell}/s{s}", spec)

    out = [Cell(FLOOR_KEY, {"kind": "floor", "data": IMAGE_DATA, "split": FID_SPLIT, "extractor": "lenet"})]
    first = [c for c in b.cells if c in PRIORITY_CELLS]
    rest = [c for c in b.cells if c not in PRIORITY_CELLS]
    out += [image(s, obj, cell) for s in seeds for obj in b.objectives for cell in first]
    for s in seeds:
        for density in b.toy_densities:
            for dim in b.toy_dims:
                spec = {"kind": "toy", "density": density, "latent_dim": dim, "seed": s,
                        "eval_n": b.toy_eval_n, "config": _toy_config(b, density, dim, s)}
                out.append(Cell(f"toy/{density}/z{dim}/s{s}", spec))
    out += [image(s, obj, cell) for s in seeds for obj in b.objectives for cell in rest]
    return out


# ---- running one cell ----------------------------------------------------------------------------
def _train(spec: Dict[str, Any], wd: Path) -> Tuple[Trainer, float]:
    cfg = config_mod.from_dict(spec["config"])
    config_mod.validate(cfg)
    trainer = Trainer(cfg, wd / "run")
    result = trainer.fit()
    return trainer, result.seconds


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


def run_cell(spec: Dict[str, Any], wd: Path) -> Dict[str, Any]:
    """Train and evaluate one cell (a grid runner: module-level so worker processes can call it)."""
    if spec["kind"] == "mnist":
        return _run_mnist(spec, wd)
    if spec["kind"] == "toy":
        return _run_toy(spec, wd)
    if spec["kind"] == "floor":
        return _run_floor(spec)
    raise ValueError(f"unknown cell kind {spec['kind']!r}")


def _run_floor(spec: Dict[str, Any]) -> Dict[str, Any]:
    """FID of the data set's FID split against its own training images: the floor of the FID table."""
    ev = evaluate_paths(f"data:{spec['data']}:{spec['split']}", f"data:{spec['data']}:train", metrics=["fid"],
                        extractor=spec["extractor"])
    return {"fid": ev.metrics["fid"], "fid_extractor": ev.extractor.id,
            "fid_reference": f"{ev.reference.source} (n={ev.reference.n})",
            "fid_generated": f"{ev.generated.source} (n={ev.generated.n})"}


def _run_mnist(spec: Dict[str, Any], wd: Path) -> Dict[str, Any]:
    trainer, train_s = _train(spec, wd)
    t0 = time.perf_counter()
    sh = spec["sharpness"]
    sharpness = eval_sharpness(trainer, sh["n"], sh["iters"], sh["seed"])
    sharpness_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate_run(wd / "run", metrics=["fid"], n=spec["fid_n"], extractor="lenet", reference=FID_SPLIT, seed=0,
                      write=True)
    return {
        "fid": ev.metrics["fid"],
        "fid_extractor": ev.extractor.id,
        "fid_reference": f"{ev.reference.source} (n={ev.reference.n})",
        "sharpness": sharpness,
        "sharpness_n": sh["n"],
        "sharpness_s": round(sharpness_s, 2),
        "sharpness_last_batch": _last_batch_sharpness(wd / "run"),
        "steps": trainer.step,
        "batch_size": trainer.cfg.train.batch_size,
        "epochs": trainer.step * trainer.cfg.train.batch_size * trainer.cfg.train.n_critic / len(trainer.train_data),
        "train_s": round(train_s, 2),
        "eval_s": round(time.perf_counter() - t0, 2),
    }


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


def _run_toy(spec: Dict[str, Any], wd: Path) -> Dict[str, Any]:
    trainer, train_s = _train(spec, wd)
    t0 = time.perf_counter()
    G = trainer.sampler.eval()
    gen = stream_generator("bridging_toy_eval")
    z = torch.randn(spec["eval_n"], spec["latent_dim"], generator=gen)
    with torch.no_grad():
        x = G(z).double()
    density = datasets.get_density(spec["density"])
    logp = density.log_prob(x)
    logp_floored = torch.clamp(torch.nan_to_num(logp, nan=LOGP_FLOOR, neginf=LOGP_FLOOR), min=LOGP_FLOOR)
    test = datasets.load(spec["density"], "test").double()
    valid = datasets.load(spec["density"], "train", n=KDE_VALID_N).double()
    # bandwidth by held-out likelihood on training points (not the test points that are scored)
    grid = [float(b) for b in np.logspace(-2.5, 0.5, 13)]
    scores = kde_log_likelihood(x, valid, grid)
    h = grid[int(np.argmax(scores))]
    out = {
        "logp_mean": float(logp_floored.mean()),
        "logp_data": float(density.log_prob(test).mean()),
        "in_support": float(torch.isfinite(logp).double().mean()),
        "kde_test_ll": kde_log_likelihood(x, test, [h])[0],
        "kde_bandwidth": float(h),
        "train_s": round(train_s, 2),
    }
    if spec["density"] == "gaussian":
        out["chi2_rms"] = chi2_decile_rms(x.numpy())
    out["eval_s"] = round(time.perf_counter() - t0, 2)
    return out


# ---- report --------------------------------------------------------------------------------------
def _fmt(m: float, s: float, digits: int = 1) -> str:
    if not math.isfinite(m):
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if math.isfinite(s) else f"{m:.{digits}f}"


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def _g(x: float, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


#: the verdict for a claim none of whose tests can be read at this budget
NOT_TESTED = "not tested at this budget"
#: power the "detectable" statements assume (the usual 80 %)
POWER = 0.8


@dataclass(frozen=True)
class Effect:
    """One test inside a claim (one objective, or one latent dimension against the best): its
    estimate with the interval and the test behind it, and the direction the claim predicts.

    ``p_adj`` is the p-value after Holm's correction over the claim's family of tests (the members
    that are tested); the outcome is read from it. ``expected`` is +1 when the claim predicts a
    positive estimate, −1 a negative one (e.g. Δ FID < 0: the regulariser lowers FID).
    ``not_tested``: why this member cannot test the claim at this budget (its baseline has not
    learned, or the treatment deviates from the paper's released code in a way that can flip the
    sign); such a member is reported but not judged. ``kind``/``n``/``se``/``dof`` say what the
    design can detect (:meth:`detectable`)."""

    label: str
    statistic: str
    estimate: float
    lo: float
    hi: float
    test: str
    p: float
    p_adj: float
    expected: int
    not_tested: Optional[str] = None
    #: "welch" (a difference of means over seeds) or "spearman" (a correlation of n cell means)
    kind: str = "welch"
    n: int = 0
    se: float = math.nan
    dof: float = math.nan

    @property
    def tested(self) -> bool:
        return self.not_tested is None and math.isfinite(self.estimate) and math.isfinite(self.p_adj)

    @property
    def outcome(self) -> str:
        """'supports' / 'contradicts' (significant at p_adj < 0.05, in / against the predicted
        direction), 'n.s.', 'untested' or 'not tested' (at this budget)."""
        if self.not_tested is not None:
            return "not tested"
        if not self.tested:
            return "untested"
        if self.p_adj >= P_THRESHOLD:
            return "n.s."
        return "supports" if self.estimate * self.expected > 0 else "contradicts"

    @property
    def wrong_way(self) -> bool:
        """The point estimate goes against the claim (significant or not)."""
        return math.isfinite(self.estimate) and self.estimate * self.expected < 0

    def detectable(self, level: float) -> Optional[float]:
        """The smallest |effect| this design detects at two-sided ``level``: for a Welch difference
        with POWER = 80 %, (t_{1-level/2} + t_POWER) · se on its degrees of freedom; for Spearman's ρ
        of n cell means, the smallest |ρ| whose exact p-value is below ``level`` (any power: the
        cell means are the data). ``None`` when undefined."""
        if self.kind == "spearman":
            return critical_spearman(self.n, level)
        if not (math.isfinite(self.se) and math.isfinite(self.dof) and self.dof > 0):
            return None
        st = scipy_stats().t
        return float((st.ppf(1 - level / 2, self.dof) + st.ppf(POWER, self.dof)) * self.se)

    def describe(self, digits: int = 1) -> str:
        if not math.isfinite(self.estimate):
            return f"{self.label}: no data"
        ci = (f" [95% CI {self.lo:+.{digits}f}, {self.hi:+.{digits}f}]" if math.isfinite(self.lo) else " [no interval]")
        holm = f"Holm p {_p(self.p_adj)}" if self.not_tested is None else "not tested (see the verdict)"
        txt = f"{self.label}: {self.statistic} {self.estimate:+.{digits}f}{ci}, {self.test}, p {_p(self.p)}, {holm}"
        if self.wrong_way and self.not_tested is None:
            txt += " — the wrong direction, " + ("significant" if self.outcome == "contradicts" else "not significant")
        return txt


@functools.lru_cache(maxsize=None)
def critical_spearman(n: int, level: float) -> Optional[float]:
    """The smallest |ρ| of n paired units whose two-sided Spearman p-value is below ``level``: exact
    (all n! rankings, as :func:`statgan.experiments.stats.spearman_exact`) up to
    :data:`EXACT_SPEARMAN_N` units, from the t approximation above; ``None`` when no |ρ| reaches it."""
    if n < 3:
        return None
    if n > EXACT_SPEARMAN_N:
        t = float(scipy_stats().t.ppf(1 - level / 2, n - 2))
        return t / math.sqrt(n - 2 + t * t)
    perms = np.asarray(list(itertools.permutations(range(n))), dtype=np.float64)
    rhos = 1 - 6 * ((perms - np.arange(n)) ** 2).sum(1) / (n * (n * n - 1))
    values = np.unique(np.round(np.abs(rhos), 12))
    for v in values:  # ascending: the first |ρ| whose tail share is below the level
        if float((np.abs(rhos) >= v - 1e-12).mean()) < level:
            return float(v)
    return None


def with_holm(effects: Sequence[Effect]) -> List[Effect]:
    """``effects`` with ``p_adj`` set by Holm's correction over the members that are tested (one
    family); members not tested at this budget keep ``p_adj`` = nan."""
    live = [i for i, e in enumerate(effects) if e.not_tested is None]
    adj = holm([effects[i].p for i in live])
    out = [dataclasses.replace(e, p_adj=math.nan) for e in effects]
    for i, a in zip(live, adj):
        out[i] = dataclasses.replace(effects[i], p_adj=a)
    return out


def welch_effect(label: str, statistic: str, a: Sequence[float], b: Sequence[float], expected: int,
                 not_tested: Optional[str] = None) -> Effect:
    """Mean(a) − mean(b) by Welch's t-test over seeds (``p_adj`` = p until :func:`with_holm`)."""
    w: Welch = welch_test(a, b)
    test = f"Welch t({w.dof:.1f}) = {w.t:.2f}, {len(a)} vs {len(b)} seeds" if math.isfinite(w.t) else "Welch (undefined)"
    se = w.diff / w.t if math.isfinite(w.t) and w.t != 0 else math.nan
    return Effect(label, statistic, w.diff, w.lo, w.hi, test, w.p, w.p, expected, not_tested=not_tested, kind="welch",
                  n=min(len(a), len(b)), se=abs(se), dof=w.dof)


def correlation_effect(label: str, c: Correlation, expected: int, not_tested: Optional[str] = None) -> Effect:
    """Spearman's ρ of cell means as an :class:`Effect` (n = cells)."""
    how = "exact permutation p" if c.n <= EXACT_SPEARMAN_N else "t approximation"
    return Effect(label, "ρ", c.rho, c.lo, c.hi, f"Spearman on {c.n} cell means ({c.n_runs} runs; {how})", c.p, c.p,
                  expected, not_tested=not_tested, kind="spearman", n=c.n)


def _detectable_note(tested: Sequence[Effect]) -> str:
    """What the design can detect, at Holm's first level (the one a test must pass when no other
    member of the family is significant), and how many seeds the observed effects would need."""
    level = P_THRESHOLD / len(tested)
    parts, seeds = [], []
    for e in tested:
        d = e.detectable(level)
        if d is None:
            continue
        if e.kind == "spearman":
            parts.append(f"{e.label} |ρ| ≥ {d:.2f} with {e.n} cells")
        else:
            parts.append(f"{e.label} |{e.statistic}| ≥ {d:.3g}")
            if e.n >= 2 and abs(e.estimate) > 0:
                seeds.append(f"{e.label} ≈ {max(e.n + 1, math.ceil(e.n * (d / abs(e.estimate)) ** 2))}")
    if not parts:
        return ""
    what = "80% power, " if any(e.kind == "welch" for e in tested) else ""
    txt = f"; detectable at this design ({what}p < {P_THRESHOLD:g}/{len(tested)}, Holm's first level): " + ", ".join(parts)
    if seeds:
        txt += "; seeds per cell the observed effects would need: " + ", ".join(seeds)
    return txt


def verdict(effects: Sequence[Effect], verdicts: bool = True) -> str:
    """One verdict from a family of tests (p-values already Holm-adjusted over its tested members):

    * **holds**: significant in the predicted direction for every tested member;
    * **partly holds**: for some (those significantly the other way are named);
    * **does not hold**: significantly the other way for some, in the predicted direction for none;
    * **unresolved**: nothing significant — the seeds' spread (the intervals) is too wide for the
      effect, whichever way its point estimate goes; it says what the design could have detected;
    * **not tested at this budget**: no member can test the claim (baselines that have not learned,
      or a treatment that deviates from the paper's code in a way that can flip the sign).

    With ``verdicts`` False (a smoke-test budget) it says so instead of judging. Point estimates
    that go the wrong way, and members not tested, are always named."""
    if not verdicts:
        return f"**{SMOKE_TEST}**"
    skipped = [e for e in effects if e.not_tested is not None]
    tested = [e for e in effects if e.tested]
    not_tested = "; not tested: " + "; ".join(f"{e.label} ({e.not_tested})" for e in skipped) if skipped else ""
    if skipped and not tested:
        return f"**{NOT_TESTED}**: " + "; ".join(f"{e.label} — {e.not_tested}" for e in skipped)
    if not tested:
        return "**unresolved**: nothing testable (no finished cells, or fewer than two seeds per cell)" + not_tested
    pos = [e.label for e in tested if e.outcome == "supports"]
    neg = [e.label for e in tested if e.outcome == "contradicts"]
    rule = (f"Holm-adjusted p < {P_THRESHOLD} over the {len(tested)} tests" if len(tested) > 1
            else f"p < {P_THRESHOLD}, a single test")
    if pos and len(pos) == len(tested):
        which = f"all {len(tested)}" if len(tested) > 1 else f"the one test ({tested[0].label})"
        head = f"**holds**: significant in the predicted direction for {which} ({rule})"
    elif pos:
        head = (f"**partly holds**: significant in the predicted direction for {', '.join(pos)} only ({rule})"
                + (f"; significantly the other way for {', '.join(neg)}" if neg else ""))
    elif neg:
        head = f"**does not hold**: significantly the other way for {', '.join(neg)}, in the predicted direction for none ({rule})"
    else:
        head = (f"**unresolved**: no test is significant ({rule}); the intervals are wider than the effects"
                + _detectable_note(tested))
    wrong = [e for e in tested if e.wrong_way and e.outcome != "contradicts"]
    if wrong:
        head += ("; point estimates in the wrong direction (not significant): "
                 + ", ".join(f"{e.label} ({e.statistic} {e.estimate:+.3g})" for e in wrong))
    return head + not_tested


def learned_note(typed: "Results", objectives: Sequence[str]) -> str:
    """Whether each objective's baseline has learned the data: its mean FID against
    :data:`NOT_LEARNED_FACTOR` × the measured real-vs-real floor (said explicitly when it has not)."""
    if typed.floor is None:
        return "Whether the baselines have learned cannot be said: the FID floor cell has not finished."
    ratios = {}
    for obj in objectives:
        m = mean_std(_values(_select(typed.images, objective=obj, cell="baseline"), "fid"))[0]
        if math.isfinite(m):
            ratios[obj] = (m, m / typed.floor.fid)
    if not ratios:
        return "No baseline has finished."
    over = {o: v for o, v in ratios.items() if v[1] > NOT_LEARNED_FACTOR}
    listing = "; ".join(f"{o} FID {m:.1f} = {r:.0f}×floor" for o, (m, r) in ratios.items())
    if over:
        return (f"**Baselines have not learned**: {listing} (more than {NOT_LEARNED_FACTOR:g}× the real-vs-real floor "
                f"of {typed.floor.fid:.2f} for {', '.join(over)}). The comparisons below are between generators far from "
                "the data: they describe early training at this budget, not trained GANs.")
    return (f"Baselines within {NOT_LEARNED_FACTOR:g}× the real-vs-real floor of {typed.floor.fid:.2f}: {listing}.")


def score_comparisons(per_dim: Dict[int, List[float]], label: str, higher: bool) -> Tuple[Optional[int], List[Effect], List[Effect]]:
    """One score of the latent sweep: the best dimension (by mean), each other dimension against it
    ("worse than the best" predicted), and every other pair of dimensions (smaller against larger).
    The best is chosen on the same data, so testing only against it would favour finding differences
    (a null sweep said "significantly worse" in ~6 % of simulations at a nominal 5 %); the other pairs
    join the Holm family (:func:`sweep_summary`), which makes it every pre-specified pairwise test."""
    means = {d: mean_std(v)[0] for d, v in per_dim.items() if v}
    if not means:
        return None, [], []
    best = max(means, key=lambda d: means[d] if higher else -means[d])
    expected = -1 if higher else +1  # worse: lower when higher is better, and vice versa
    vs_best = [welch_effect(f"z = {d}", label, per_dim[d], per_dim[best], expected=expected)
               for d in means if d != best]
    others = [welch_effect(f"z = {a} vs z = {c}", label, per_dim[a], per_dim[c], expected=expected)
              for a, c in itertools.combinations(sorted(means), 2) if best not in (a, c)]
    return best, vs_best, others


def sweep_summary(sweep: Sequence[Tuple[str, str, int, Effect]], z_min: int, verdicts: bool = True,
                  others: Sequence[Effect] = ()) -> List[str]:
    """The latent sweep's comparisons, each latent dimension against the best one of its score, as
    one family with ``others`` (the remaining pairs of dimensions, :func:`score_comparisons`):
    Holm-adjusted over all of them (densities × scores × pairs of dimensions)."""
    if not sweep:
        return []
    family = with_holm([*(e for *_, e in sweep), *others])
    adjusted = family[: len(sweep)]
    L = [f"Latent dimensions worse than the best one of their score (Welch's t-test over seeds, p-values "
         f"Holm-adjusted over all {len(family)} pairwise comparisons of the sweep — every pair of dimensions of every "
         "score, so that choosing the best dimension on the same data is accounted for):", ""]
    if not verdicts:
        return L + [f"- **{SMOKE_TEST}**: " + "; ".join(f"{d}, {s}, best z = {bz}: {e.describe(2)}"
                                                        for (d, s, bz, _), e in zip(sweep, adjusted)), ""]
    groups: Dict[Tuple[str, str, int], List[Effect]] = {}
    for (density, score, best, _), e in zip(sweep, adjusted):
        groups.setdefault((density, score, best), []).append(e)
    for (density, score, best), effects in groups.items():
        worse = [f"z = {e.label[4:]} ({e.estimate:+.2f}, Holm p {_p(e.p_adj)})" for e in effects if e.outcome == "supports"]
        L.append(f"- {density}, {score}: best z = {best}; significantly worse: " + (", ".join(worse) if worse else "none"))
    L.append("")
    smallest = [e for e in adjusted if e.label == f"z = {z_min}" and e.tested]
    if smallest:
        k = sum(e.outcome == "supports" for e in smallest)
        L += [f"The smallest latent (z = {z_min}) is significantly worse than the best dimension on {k} of "
              f"{len(smallest)} scores where it is not itself the best (Holm-adjusted)"
              + (" — where a too-small latent fails." if k else ".")
              + " A latent of dimension ≥ 2 can represent a 2-D density (a smooth invertible map of N(0, I₂) "
              "suffices), so differences among z ≥ 2 reflect optimisation at this budget rather than approximation.",
              ""]
    return L


# ---- typed results -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class _Run:
    """What every cell records: its seed, and the one-line error if it failed (metrics then ``nan``/None)."""

    seed: int
    error: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class ImageRun(_Run):
    """One cell of the regulariser grid as the report reads it."""

    objective: str
    cell: str
    fid: float = math.nan
    #: on the fixed evaluation batch, eval mode (:func:`eval_sharpness`)
    sharpness: Optional[float] = None
    #: the in-training probe on the last training batch (the old statistic; for comparison only)
    sharpness_last_batch: Optional[float] = None
    cpu_s: float = math.nan


@dataclass(frozen=True, kw_only=True)
class ToyRun(_Run):
    """One cell of the latent-dimension sweep as the report reads it."""

    density: str
    latent_dim: int
    chi2_rms: Optional[float] = None
    logp_mean: float = math.nan
    logp_data: float = math.nan
    in_support: float = math.nan
    kde_test_ll: float = math.nan


@dataclass(frozen=True)
class Floor:
    """The measured FID floor: the FID split against the training images, same extractor."""

    fid: float
    extractor: str
    reference: str
    generated: str


@dataclass(frozen=True)
class Results:
    """The finished cells of a grid, typed; looked up by their fields, never by key strings."""

    images: Tuple[ImageRun, ...]
    toys: Tuple[ToyRun, ...]
    floor: Optional[Floor]
    #: cell key -> error, for every failed or diverged cell
    failed: Dict[str, str]

    @classmethod
    def from_records(cls, records: Iterable[Dict[str, Any]]) -> "Results":
        images: List[ImageRun] = []
        toys: List[ToyRun] = []
        floor: Optional[Floor] = None
        failed: Dict[str, str] = {}
        for rec in sorted(records, key=lambda r: r["key"]):
            spec, res, error = rec["spec"], rec.get("result", {}), rec.get("error")
            if error is not None:
                failed[rec["key"]] = error
            if spec["kind"] == "mnist":
                images.append(ImageRun(objective=spec["objective"], cell=spec["cell"], seed=spec["seed"],
                                       fid=res.get("fid", math.nan),
                                       sharpness=res.get("sharpness"),
                                       sharpness_last_batch=res.get("sharpness_last_batch"), cpu_s=rec.get("cpu_s", rec["wall_s"]),
                                       error=error))
            elif spec["kind"] == "toy":
                toys.append(ToyRun(density=spec["density"], latent_dim=spec["latent_dim"], seed=spec["seed"], error=error,
                                   **{k: res[k] for k in _TOY_METRICS if k in res}))
            elif spec["kind"] == "floor" and error is None:
                floor = Floor(res["fid"], res["fid_extractor"], res["fid_reference"], res["fid_generated"])
        return cls(tuple(images), tuple(toys), floor, failed)


_TOY_METRICS = ("chi2_rms", "logp_mean", "logp_data", "in_support", "kde_test_ll")
Run = TypeVar("Run", ImageRun, ToyRun)


def _select(runs: Iterable[Run], **fields: Any) -> List[Run]:
    """The finished runs whose fields equal ``fields`` (e.g. ``objective="ragan", cell="mcd"``)."""
    return [r for r in runs if r.error is None and all(getattr(r, k) == v for k, v in fields.items())]


def _values(runs: Iterable[Run], metric: str) -> List[float]:
    """The finite values of ``metric`` over ``runs``."""
    values = (getattr(r, metric) for r in runs)
    return [float(v) for v in values if v is not None and math.isfinite(v)]


@functools.lru_cache(maxsize=None)
def _split_size(name: str, split: str) -> int:
    """Examples in a data split, read from the data (the report is rewritten after every cell)."""
    return len(datasets.load(name, split))


def _design(b: Budget) -> List[str]:
    """What was run and how it differs from the paper (from the budget's numbers and the data)."""
    st = b.steps
    n_train, n_test = _split_size(IMAGE_DATA, "train"), _split_size(IMAGE_DATA, FID_SPLIT)
    epochs = {o: st[o] * b.batch * (5 if o == "wgan-div" else 1) / n_train for o in b.objectives}
    return [
        "## Setup and deviations from the paper", "",
        f"- Data: {IMAGE_DATA}, the {n_train:,}-image training split (28 px, [-1, 1]); FID against its {n_test:,}-image "
        f"{FID_SPLIT} split. The paper uses MNIST/CIFAR-10 at 64 px and larger sets; {n_train:,} images is the "
        "small-data regime of claim 1 (no further subset is taken).",
        f"- Networks: DCGAN at 28 px, width {b.width} (the paper: 64 at 64 px), batch norm in G and D, latent 100. "
        "Adam lr 1e-3, betas (0.5, 0.999), linear warm-up over the first 4% of the steps (the paper: 10 of 250 "
        "epochs); EMA generator with decay 1 − 5/steps started at a quarter of the run (the paper: 0.999 from "
        "epoch 20), final samples from the EMA weights.",
        "- Steps at batch " + str(b.batch) + ": " + ", ".join(
            f"{o} {st[o]:,} generator steps ({epochs[o]:.0f} epochs of real data)" for o in b.objectives)
        + "; objectives as in the paper's code: WGAN-div k = 2, p = 6 with 5 critic steps, `ragan` with 1, `gmmn` "
        "with the paper's 7 RBF precisions.",
        "- Cells: relaxation σ = 0.1 decaying linearly to 0 over the run, noise on generated samples only; gradient "
        "regularisation λ = 0.01 on ‖∇_ψ L_G‖² (`param_grad`) for the GANs — differentiable here, whereas the "
        "paper's released code computes it from `.grad` and so sends no gradient — and λ = 1 on the mean "
        "‖∂MMD²/∂x̃‖ (`sample_grad`) for gmmn; adaptive SAM ρ = 0.5 on G and D (G only for gmmn); MC dropout "
        "p = 0.1 (Dropout2d after the middle block of G and D, the only middle block at 28 px), 2 loss "
        f"evaluations per update; batch pair {b.small_batch} vs {b.large_batch} trained for as many epochs as the "
        f"baseline ({b.batch / b.small_batch:g}× and {b.batch / b.large_batch:g}× its steps): the setting in which "
        "large batches are reported to find sharper minima (Keskar et al. 2017), at about equal compute.",
        f"- Sharpness: top Hessian eigenvalue of L_G w.r.t. the raw generator's parameters on one fixed evaluation "
        f"batch — {b.sharpness_n:,} training images and latents drawn once from a fixed seed, the same for every cell "
        f"and seed — with G and D in eval mode (BatchNorm on its running statistics, dropout off) and no relaxation "
        f"noise, {b.sharpness_iters} power iterations (the paper uses the same quantity via `hessian_eigenthings`). "
        "The value on the last training batch in train mode (the statistic before issue 14) grows as the batch "
        "shrinks by construction, so it is shown for comparison only.",
        "- Not reproduced at this budget: Inception FID / IS / KID on CIFAR-10 and CelebA, 250 epochs, 10,000 "
        f"samples × 3 repetitions. The `full` budget ({BUDGETS['full'].description}) is the paper-like setting on "
        f"{IMAGE_DATA}: {BUDGETS['full'].estimate}.", "",
    ]


def _span_minutes(records: Any) -> float:
    """Minutes from the first cell's start to the last cell's end (from the records' timestamps)."""
    starts, ends = [], []
    for r in records:
        try:
            end = dt.datetime.strptime(r["finished"], "%Y-%m-%dT%H:%M:%S").timestamp()
        except (KeyError, ValueError):
            continue
        ends.append(end)
        starts.append(end - float(r.get("wall_s", 0.0)))
    return (max(ends) - min(starts)) / 60 if ends else 0.0


#: treatments that deviate from the paper's released code in a way that can flip the sign of a
#: claim's effect: cell -> objective -> why. The gradient regulariser of the GAN objectives
#: (``param_grad``) is differentiable here; the paper's code computes it from ``.grad`` and sends no
#: gradient, so its "regularised" cell trains like the unregularised one -- a regulariser that acts
#: can help or hurt, so our sign says nothing about theirs.
DEVIATIONS: Dict[str, Dict[str, str]] = {
    cell: {obj: ("its gradient regulariser is differentiable here, while the paper's code sends no gradient "
                 "through it, which can flip the sign") for obj in ("wgan-div", "ragan")}
    for cell in ("gradreg", "sam_gradreg")
}


def not_learned(typed: "Results", objective: str) -> Optional[str]:
    """Why ``objective``'s comparisons cannot test the paper's claims about trained GANs (its baseline
    is above :data:`NOT_LEARNED_FACTOR` × the floor, or that cannot be told yet), or ``None``."""
    if typed.floor is None:
        return "the FID floor is not measured, so whether its baseline has learned is unknown"
    m = mean_std(_values(_select(typed.images, objective=objective, cell="baseline"), "fid"))[0]
    if not math.isfinite(m):
        return "its baseline has not finished"
    ratio = m / typed.floor.fid
    if ratio > NOT_LEARNED_FACTOR:
        return f"its baseline has not learned: FID {m:.1f} = {ratio:.0f}× the floor, above {NOT_LEARNED_FACTOR:g}×"
    return None


def _why_not_tested(typed: "Results", objective: str, cell: Optional[str] = None) -> Optional[str]:
    reasons = [r for r in (not_learned(typed, objective), DEVIATIONS.get(cell or "", {}).get(objective)) if r]
    return "; ".join(reasons) or None


def fid_family(typed: "Results", b: Budget, cell: str) -> List[Effect]:
    """Claims 1 and 2: Δ FID of ``cell`` over the baseline per objective (Welch), Holm over the tested ones."""
    out = []
    for obj in b.objectives:
        base = _values(_select(typed.images, objective=obj, cell="baseline"), "fid")
        fids = _values(_select(typed.images, objective=obj, cell=cell), "fid")
        out.append(welch_effect(obj, "Δ FID", fids, base, expected=-1, not_tested=_why_not_tested(typed, obj, cell)))
    return with_holm(out)


def flatness_family(typed: "Results", b: Budget) -> List[Effect]:
    """Claim 3: Spearman's ρ of the cell means of sharpness and FID per objective, Holm over the tested ones."""
    out = []
    for obj in b.objectives:
        per_cell = [(_values(rs, "sharpness"), _values(rs, "fid")) for cell in b.cells
                    if (rs := [r for r in _select(typed.images, objective=obj, cell=cell)
                               if r.sharpness is not None and math.isfinite(r.sharpness) and math.isfinite(r.fid)])]
        out.append(correlation_effect(obj, cell_mean_spearman(per_cell), expected=+1,
                                      not_tested=_why_not_tested(typed, obj)))
    return with_holm(out)


def batch_family(typed: "Results", b: Budget) -> List[Effect]:
    """Claim 4: Δ sharpness of the large batch over the small one per objective, Holm over the tested ones."""
    out = []
    for obj in b.objectives:
        small = _select(typed.images, objective=obj, cell="batch_small")
        large = _select(typed.images, objective=obj, cell="batch_large")
        out.append(welch_effect(obj, "Δ sharpness", _values(large, "sharpness"), _values(small, "sharpness"),
                                expected=+1, not_tested=_why_not_tested(typed, obj)))
    return with_holm(out)


def _flatness_rests_on(b: Budget) -> str:
    n, m = len(b.cells), len(b.objectives)
    crit = critical_spearman(n, P_THRESHOLD / m)
    need = (f"an exact p below {P_THRESHOLD:g}/{m} needs |ρ| ≥ {crit:.2f}" if crit is not None
            else f"no ρ reaches p < {P_THRESHOLD:g}/{m}")
    return f"the cell means as the units ({n} cells: {need}); sharpness as the top Hessian eigenvalue on one fixed batch"


def write_report(budget: str, all_cells: Sequence[Cell], results: Dict[str, Dict[str, Any]], path: Path,
                 command: str, wall_s: float, machine: str) -> str:
    """The markdown report from whatever cells finished (missing ones are listed)."""
    b = BUDGETS[budget]
    seeds = sorted({c.spec["seed"] for c in all_cells if "seed" in c.spec})
    missing = [c.key for c in all_cells if c.key not in results]
    typed = Results.from_records(results.values())
    failed = typed.failed
    n_train = _split_size(IMAGE_DATA, "train")
    cell_time = sum(r.get("wall_s", 0.0) for r in results.values())
    cell_cpu = sum(r.get("cpu_s", 0.0) for r in results.values())
    span = _span_minutes(results.values())
    L: List[str] = []
    L += ["# Reproduction: Filippone & Linhard, *Bridging GANs and Bayesian neural networks*", ""]
    L += ["Generated by `statgan reproduce bridging` (do not edit by hand; rerun the command).", ""]
    L += [f"- command: `{command}`", f"- budget: `{budget}` — {b.description}", f"- seeds: {', '.join(map(str, seeds))}",
          f"- machine: {machine}",
          f"- wall-clock span of the finished cells (first start to last finish): {span:.1f} min; sum of per-cell times "
          f"{cell_time / 60:.1f} min (cells run in parallel workers, one torch thread each); sum of per-cell CPU "
          f"times {cell_cpu / 60:.1f} min (≈ the time on idle cores, divide by the number of jobs); a cell's worker "
          f"got {100 * cell_cpu / max(cell_time, 1e-9):.0f}% of a core on average"
          + (" — the machine was busy with other jobs, so wall times are inflated and CPU times are the ones to compare"
             if cell_cpu < 0.8 * cell_time else ""),
          f"- cells finished: {len(results) - len(failed)} of {len(all_cells)}"
          + (f"; failed/diverged: {len(failed)}" if failed else "") + (f"; **missing: {len(missing)}**" if missing else ""),
          f"- estimated time on an idle 2-core machine with `--jobs 2` (sum of CPU times / 2): {cell_cpu / 120:.0f} min"
          + (f" for the finished cells; the budget's estimate: {b.estimate}" if missing else f"; the budget's estimate: {b.estimate}"),
          ""]
    L += _design(b)
    fid_id = typed.floor.extractor if typed.floor is not None else "lenet"
    floor = (f"the floor ({typed.floor.reference} vs {typed.floor.generated}, measured) is {typed.floor.fid:.2f}"
             if typed.floor is not None else f"the floor cell `{FLOOR_KEY}` has not finished")
    n_seeds = len(seeds)
    # ---- item 6 table
    L += [f"## Regularisers on {IMAGE_DATA}", ""]
    L += [f"FID ({fid_id}): Fréchet distance in the feature space of statgan's MNIST LeNet (not comparable with "
          f"Inception FID) between {b.fid_n:,} samples of the EMA generator and the "
          f"{_split_size(IMAGE_DATA, FID_SPLIT):,}-image {IMAGE_DATA} {FID_SPLIT} split; {floor}. Sharpness: top "
          "Hessian eigenvalue of L_G w.r.t. the raw generator's parameters after the last step, on one fixed batch of "
          f"{b.sharpness_n:,} training images and latents with G and D in eval mode (scale depends on the objective: "
          "compare within an objective); *last batch*: the same eigenvalue on the last training batch in train mode "
          "(the statistic before issue 14, biased upwards at small batches; for comparison only). Mean ± sample std "
          "over seeds; Δ = mean(cell) − mean(baseline) with its 95% Welch interval and p-value (unadjusted); "
          "n = finished seeds.", ""]
    for obj in b.objectives:
        L += [f"### {obj}", "",
              "| cell | steps × batch | FID | Δ FID [95% CI], p | sharpness | last batch | CPU time / run | n |",
              "|---|---|---|---|---|---|---|---|"]
        base = _values(_select(typed.images, objective=obj, cell="baseline"), "fid")
        for cell in b.cells:
            runs = _select(typed.images, objective=obj, cell=cell)
            fids = _values(runs, "fid")
            times = _values(runs, "cpu_s")
            spec = next(c.spec for c in all_cells
                        if c.spec["kind"] == "mnist" and c.spec["objective"] == obj and c.spec["cell"] == cell)
            tr = spec["config"]["train"]
            errs = [r for r in typed.images if r.error is not None and r.objective == obj and r.cell == cell]
            if cell == "baseline":
                dtxt = "—"
            else:
                w = welch_test(fids, base)
                dtxt = ("–" if not math.isfinite(w.diff) else f"{w.diff:+.1f}"
                        + (f" [{w.lo:+.1f}, {w.hi:+.1f}], {_p(w.p)}" if math.isfinite(w.lo) else ""))
            m, s = mean_std(fids)
            tm = sum(times) / len(times) if times else math.nan
            n_txt = f"{len(fids)}" + (f" (+{len(errs)} failed)" if errs else "")
            sharp = [_fmt(*mean_std(_values(runs, k)), 3) for k in ("sharpness", "sharpness_last_batch")]
            L.append(f"| {CELL_LABELS[cell]} | {tr['steps']} × {tr['batch_size']} | {_fmt(m, s)} | {dtxt} | "
                     f"{sharp[0]} | {sharp[1]} | {'–' if not math.isfinite(tm) else f'{tm:.0f} s'} | {n_txt} |")
        L.append("")
    # ---- claims
    L += ["## The paper's claims, checked", ""]
    L += [learned_note(typed, b.objectives), ""]
    if not b.verdicts:
        L += [f"**{SMOKE_TEST[0].upper() + SMOKE_TEST[1:]}** ({n_seeds} seed(s), a few steps per cell): the "
              "statistics below are printed to check that the pipeline runs end to end, not to be read as evidence.",
              ""]
    L += [f"Each claim is one family of tests, one per objective; p-values are Holm-adjusted over the family's "
          f"tested members (family-wise error rate {P_THRESHOLD}). A verdict is *holds* (significant in the predicted "
          "direction for every tested objective), *partly holds* (for some), *does not hold* (significantly the other "
          "way, for none in the predicted direction), *unresolved* (no significant test: the seeds' spread is wider "
          "than the effect; it says what the design could detect) or "
          f"*{NOT_TESTED}*: an objective whose baseline has not learned (mean FID above {NOT_LEARNED_FACTOR:g}× the "
          "floor) cannot test a claim about trained GANs, nor a cell whose treatment deviates from the paper's "
          "released code in a way that can flip the sign (the gradient regulariser, see *Setup*); such members are "
          f"reported, not judged. Differences are Welch's t-test over seeds ({n_seeds} per cell) with 95% intervals; "
          "point estimates that go against a claim are named whether or not they are significant.", ""]

    def claim(effects: Sequence[Effect], digits: int = 1, rests_on: str = "") -> str:
        return (verdict(effects, b.verdicts) + ". " + "; ".join(e.describe(digits) for e in effects) + "."
                + (f" *Rests on:* {rests_on}." if rests_on and b.verdicts else ""))

    seeds_as_replicates = (f"the {n_seeds} seeds of a cell as independent replicates, and their FIDs close enough to "
                           f"normal for Welch's t (each FID from {b.fid_n:,} samples carries its own sampling error, "
                           "part of the seeds' spread)")

    L += [f"1. **MC dropout helps on small data** (`mcd` vs `baseline`, Δ FID < 0 predicted; the {n_train:,} "
          f"training images of {IMAGE_DATA} are the small-data regime here — 1/{MNIST_TRAIN / n_train:.0f} of MNIST, "
          f"1/{CIFAR10_TRAIN / n_train:.0f} of CIFAR-10's training set): "
          + claim(fid_family(typed, b, "mcd"), rests_on=seeds_as_replicates), ""]
    L += ["2. **Regularisation with SAM helps** (`sam_gradreg` vs `baseline`, Δ FID < 0 predicted): "
          + claim(fid_family(typed, b, "sam_gradreg")) + " SAM alone (`sam` vs `baseline`): "
          + claim(fid_family(typed, b, "sam"), rests_on=seeds_as_replicates), ""]
    L += ["3. **Flatter minima go with better FID** (Spearman's ρ between the cell means of sharpness and of FID "
          "across the cells of an objective, ρ > 0 predicted: sharper cells have worse FID). The units are the "
          "cells, n = the number of cells: the seeds of a cell share everything but the seed, so they are not "
          "independent draws of the between-cell relation; 95% interval by Fisher's z (Bonett–Wright standard "
          "error), p exact, Holm-adjusted over the objectives: "
          + claim(flatness_family(typed, b), 2, rests_on=_flatness_rests_on(b))
          + " Both quantities also move with how far training got in each cell (the "
          "batch pair differs in steps, SAM and gradient regularisation change the loss scale), so ρ is a "
          "between-cell association, not an effect of flatness; the sharpness is that of the raw generator, the "
          "FID that of the EMA generator.", ""]
    if "batch_small" in b.cells and "batch_large" in b.cells:
        fid_txt = []
        for obj in b.objectives:
            w = welch_test(_values(_select(typed.images, objective=obj, cell="batch_large"), "fid"),
                           _values(_select(typed.images, objective=obj, cell="batch_small"), "fid"))
            if math.isfinite(w.diff):
                fid_txt.append(f"{obj} {w.diff:+.1f}" + (f" [{w.lo:+.1f}, {w.hi:+.1f}]" if math.isfinite(w.lo) else ""))
        L += [f"4. Context for claim 3 — **large batches find sharper minima** (Keskar et al. 2017; batch "
              f"{b.large_batch} vs {b.small_batch} at equal epochs, so the small batch also makes "
              f"{b.large_batch // b.small_batch}× as many updates; Δ sharpness = large − small > 0 predicted, "
              "sharpness on the fixed evaluation batch, so both cells are measured on the same function; Holm-adjusted "
              "over the objectives): "
              + claim(batch_family(typed, b), 3, rests_on="one fixed evaluation batch for both cells; the seeds as "
                      "independent replicates")
              + (" FID large − small [95% CI]: " + "; ".join(fid_txt) + "." if fid_txt else ""), ""]
    # ---- item 7
    L += ["## Latent dimension on 2-D densities (universal approximation, seen)", ""]
    L += [f"MLP generator (3 × 128), `gmmn` (fixed RBF-mixture kernel MMD, precisions {list(TOY_BANDWIDTHS)}), "
          f"{b.toy_steps:,} steps, EMA generator, "
          f"{b.toy_eval_n:,} samples. "
          # each decile bin's relative count error has variance (1 − 0.1)/(0.1 n) = 9/n for exact samples
          "χ² RMS: RMS over the 10 χ²₂ decile bins of (count/expected − 1) for squared norms (lower is better; exact "
          f"samples give ≈ {math.sqrt(9 / b.toy_eval_n):.2g}). log p: mean exact log p_data of the samples, floored at "
          f"{LOGP_FLOOR:g} (higher is better; the data's own mean is given in brackets). KDE test LL: mean "
          "log-likelihood of the test points under a Gaussian KDE of the samples, its bandwidth chosen on "
          f"{KDE_VALID_N:,} training points (coverage; higher is better). "
          "A latent dimension below 2 cannot carry a density on R² at all: its samples lie on a curve.", ""]
    dims = b.toy_dims
    sweep: List[Tuple[str, str, int, Effect]] = []  # (density, score, best z, effect of z vs best)
    others: List[Effect] = []  # the other pairs of dimensions: the rest of the Holm family
    for density in b.toy_densities:
        metrics = [("chi2_rms", "χ² RMS", False)] if density == "gaussian" else []
        metrics += [("logp_mean", "log p", True), ("kde_test_ll", "KDE test LL", True)]
        if density == "checkerboard":  # log p = −∞ off the black squares: how many samples land on them
            metrics.append(("in_support", "fraction in support", True))
        ref = _values(_select(typed.toys, density=density), "logp_data")
        ref_txt = f" [{ref[0]:.2f}]" if ref else ""
        L += [f"### {density}" + (" (200 training points, the paper's toy)" if density == "gaussian" else ""), "",
              "| score | " + " | ".join(f"z = {d}" for d in dims) + " |", "|---|" + "---|" * len(dims)]
        for key, label, higher in metrics:
            per_dim = {d: _values(_select(typed.toys, density=density, latent_dim=d), key) for d in dims}
            L.append(f"| {label}{ref_txt if key == 'logp_mean' else ''} | "
                     + " | ".join(_fmt(*mean_std(per_dim[d]), 2) for d in dims) + " |")
            if key in ("chi2_rms", "kde_test_ll"):
                best, vs_best, rest = score_comparisons(per_dim, label, higher)
                sweep += [(density, label, best, e) for e in vs_best]
                others += rest
        L.append("")
    L += sweep_summary(sweep, min(dims), b.verdicts, others)
    # ---- bookkeeping
    if failed:
        L += ["## Failed or diverged cells", ""] + [f"- `{k}`: {v.splitlines()[0][:200]}" for k, v in sorted(failed.items())] + [""]
    if missing:
        L += ["## Missing cells (not finished when this report was written)", ""]
        L += [f"- `{k}`" for k in missing] + [""]
    text = "\n".join(L)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return text


__all__ = ["BUDGETS", "Budget", "CELLS", "DEVIATIONS", "NOT_TESTED", "OBJECTIVES", "cells", "run_cell", "write_report",
           "Effect", "verdict", "with_holm", "welch_effect", "correlation_effect", "critical_spearman", "learned_note",
           "not_learned", "fid_family", "flatness_family", "batch_family", "score_comparisons", "sweep_summary",
           "sharpness_batch",
           "eval_sharpness", "kde_log_likelihood"]
