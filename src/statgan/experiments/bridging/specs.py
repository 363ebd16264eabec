"""The Bridging grid: its budgets, the treatments of the regulariser grid, the toy densities, and one
typed, frozen spec per kind of cell (the FID floor, an image run, a toy run).

A spec is the typed form of what the grid runner stores and hashes (:class:`~statgan.experiments.grid.Cell`'s
JSON ``spec``): :meth:`to_spec` writes exactly the dictionary the cell has always had, so the spec
hashes of committed records (``docs/reproductions/bridging-small.jsonl``) still match, and
:func:`parse_spec` reads it back. The budget's name is not part of a spec -- adding it would change
every hash -- so a spec holds what the budget decides for it (sizes, steps, the training config).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

from ..grid import Cell

OBJECTIVES = ("wgan-div", "ragan", "gmmn")
#: the image data set of the regulariser grid, and the split its FID is computed against
IMAGE_DATA, FID_SPLIT = "mnist5k", "test"
TOY_BANDWIDTHS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1)
#: seed of the fixed sharpness evaluation batch (which training images, which latents, the power
#: iteration's start): the same for every cell and seed, so every run is measured on one function
SHARPNESS_SEED = 2507_00651
#: the floor of a toy sample's log p_data, so that samples off the checkerboard's support count as
#: −20, not −∞
LOGP_FLOOR = -20.0
#: training points the toy KDE bandwidth is chosen on
KDE_VALID_N = 2000
#: critic steps per generator step, by objective (the paper's code: 5 for WGAN-div, else 1)
N_CRITIC: Mapping[str, int] = {"wgan-div": 5}


@dataclass(frozen=True)
class Treatment:
    """What one cell of the regulariser grid changes from the baseline (``batch``: which of the
    budget's batch sizes it trains at, for as many epochs as the baseline)."""

    label: str
    relaxation: bool = False
    gradreg: bool = False
    sam: bool = False
    mc_dropout: bool = False
    batch: str = "baseline"  # "baseline" | "small" | "large"

    def regularizers(self, objective: str, steps: int, sharpness_iters: int) -> Dict[str, Any]:
        """The config's ``regularizers`` section (insertion order as the trainer has always seen it)."""
        regs: Dict[str, Any] = {}
        if self.relaxation:
            regs["relaxation"] = {"sigma": 0.1, "schedule": "linear", "sigma_min": 0.0, "decay_steps": steps}
        if self.gradreg:
            regs.update(gradient_regulariser(objective))
        if self.sam:
            regs["sam"] = {"rho": 0.5, "adaptive": True}
        if self.mc_dropout:
            regs["mc_dropout"] = {"p": 0.1, "n_mcd": 2}
        regs["sharpness"] = {"every": steps, "iters": sharpness_iters}  # once, after the last step
        return regs


#: the cells of the regulariser grid, by name, in the report's order
TREATMENTS: Mapping[str, Treatment] = {
    "baseline": Treatment("baseline"),
    "relaxation": Treatment("+ relaxation (σ 0.1 → 0)", relaxation=True),
    "gradreg": Treatment("+ gradient reg.", gradreg=True),
    "sam": Treatment("+ SAM (ASAM ρ 0.5)", sam=True),
    "mcd": Treatment("+ MC dropout (p 0.1, 2 passes)", mc_dropout=True),
    "sam_gradreg": Treatment("+ SAM & gradient reg.", sam=True, gradreg=True),
    "batch_small": Treatment("small batch", batch="small"),
    "batch_large": Treatment("large batch", batch="large"),
}
CELLS = tuple(TREATMENTS)
CELL_LABELS = {name: t.label for name, t in TREATMENTS.items()}
#: cells that the claims compare with the baseline: run first (for every seed) so that a grid stopped
#: early still has all seeds of them
PRIORITY_CELLS = ("baseline", "mcd", "sam_gradreg", "sam")


#: the paper's gradient regulariser (statgan's name, weight λ) by objective: λ·mean‖∂MMD²/∂x̃‖
#: (``sample_grad``) for the fixed-kernel MMD, which has no discriminator to train against;
#: λ‖∇_ψ L_G‖² (``param_grad``, :data:`GAN_GRADIENT_REGULARISER`) for every other objective
GRADIENT_REGULARISERS: Mapping[str, Tuple[str, float]] = {"gmmn": ("sample_grad", 1.0)}
GAN_GRADIENT_REGULARISER = ("param_grad", 0.01)


def gradient_regulariser(objective: str) -> Dict[str, Any]:
    """The ``regularizers`` entry of ``objective``'s gradient regulariser."""
    name, weight = GRADIENT_REGULARISERS.get(objective, GAN_GRADIENT_REGULARISER)
    return {name: {"weight": weight}}


@dataclass(frozen=True)
class ToyDensity:
    """What the latent-dimension sweep needs to know about one 2-D density."""

    name: str
    #: training points (None: the data set's own) and the batch size
    n: Optional[int] = None
    batch: int = 256
    #: N(0, I₂): also scored by the χ² decile RMS of the squared norms (the paper's score)
    standard_normal: bool = False
    #: log p = −∞ off a part of R²: the fraction of samples on the support is reported
    bounded_support: bool = False
    #: said after its name in the report's heading
    note: str = ""


TOY_DENSITY_INFO: Mapping[str, ToyDensity] = {d.name: d for d in (
    # the paper's toy: 200 training points from N(0, I2), one batch
    ToyDensity("gaussian", n=200, batch=200, standard_normal=True, note=" (200 training points, the paper's toy)"),
    ToyDensity("8gaussians"),
    ToyDensity("checkerboard", bounded_support=True),
)}
TOY_DENSITIES = tuple(TOY_DENSITY_INFO)


@dataclass(frozen=True)
class Recipe:
    """How a budget trains its image cells when it departs from the paper's recipe (Adam lr 1e-3,
    betas (0.5, 0.999), BatchNorm in G and D, a 4 % warm-up, an EMA over the last fifth). Every
    treatment of the grid is applied on top of it, so the comparisons keep their meaning: the
    baseline is this recipe, a cell is this recipe plus one regulariser."""

    name: str
    lr: float
    betas: Tuple[float, float]
    #: the discriminator's normalisation ("none": what zero-centred R1/R2 assume)
    d_norm: str
    #: zero-centred R1 and R2 on D (weight γ, applied lazily every ``r1r2_every``-th step at that
    #: multiple of γ): part of every cell, like the optimiser -- not the paper's gradient regulariser
    #: (λ‖∇_ψ L_G‖², the ``gradreg`` treatment), which acts on G's parameters
    r1r2_weight: float
    r1r2_every: int
    #: EMA half-life in thousands of images, ramped over this fraction of training (StyleGAN2's):
    #: independent of the run's length, unlike the paper's last-fifth EMA
    ema_halflife_kimg: float
    ema_rampup: float

    def apply(self, config: Dict[str, Any]) -> None:
        """Edit an image cell's config (built with the paper's recipe) in place."""
        config["model"]["discriminator"]["norm"] = self.d_norm
        train = config["train"]
        train.update(lr_g=self.lr, lr_d=self.lr, betas=list(self.betas), warmup_steps=0,
                     ema_halflife_kimg=self.ema_halflife_kimg, ema_rampup=self.ema_rampup)
        for key in ("ema_decay", "ema_start"):
            train.pop(key)
        gamma = {"weight": self.r1r2_weight, "every": self.r1r2_every}
        config["regularizers"] = {"r1": dict(gamma), "r2": dict(gamma), **config["regularizers"]}


#: statgan's default run's recipe (docs/quality.md, "The default recipe") with the objective left to
#: the grid: D without BatchNorm, Adam lr 2e-3 with betas (0, 0.99), lazy R1/R2 γ = 1 every 16th step
#: and the ramped EMA
MODERN_RECIPE = Recipe(name="modern", lr=2e-3, betas=(0.0, 0.99), d_norm="none", r1r2_weight=1.0, r1r2_every=16,
                       ema_halflife_kimg=10.0, ema_rampup=0.05)


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
    #: the training recipe of the image cells (None: the paper's)
    recipe: Optional[Recipe] = None

    def batch_size(self, which: str) -> int:
        """The batch size of a treatment's ``batch`` ("baseline", "small" or "large")."""
        return {"baseline": self.batch, "small": self.small_batch, "large": self.large_batch}[which]

    def steps_at(self, objective: str, batch: int) -> int:
        """Generator steps of ``objective`` at ``batch`` for as many epochs as the baseline."""
        return max(1, self.steps[objective] * self.batch // batch)


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
    "medium": Budget(
        description=("ragan with statgan's default recipe (D without BatchNorm, Adam lr 2e-3, betas (0, 0.99), lazy "
                     "R1/R2 γ 1, ramped EMA): DCGAN width 32, batch 64, 16,000 generator steps; FID from 10,000 "
                     "samples; no toy sweep (the small budget's)"),
        objectives=("ragan",), cells=CELLS, seeds=(0, 1, 2, 3, 4),
        # 10,000 samples: at 2,000 the baseline's FID carries a sampling sd of ~0.7 and a bias of ~2
        # (seed 0: 42.2-43.7 over three sampling seeds, 40.3 from 10,000), as large as the margin to
        # 10x the floor, which decides whether the claims can be tested at all
        steps={"ragan": 16_000}, width=32, batch=64, small_batch=16, large_batch=128,
        fid_n=10_000, sharpness_iters=20, sharpness_n=1024, toy_densities=(), toy_dims=(), toy_steps=0,
        toy_eval_n=0, recipe=MODERN_RECIPE, threads=1,
        estimate=("about 19 hours with --jobs 2 on an idle 2-core CPU, projected 2026-12-07 from the baseline's "
                  "0.105 CPU-seconds per step (a baseline cell ≈ 28 CPU-minutes; SAM, MC dropout and the gradient "
                  "regulariser cost 2–5× that): a budget for --shard on several machines or for several sittings (a rerun "
                  "skips finished cells and continues a cell that Ctrl-C or SIGTERM stopped)"),
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


# ---- the typed cell specs ----------------------------------------------------------------------
@dataclass(frozen=True)
class FloorCell:
    """The FID floor: the FID split of ``data`` against its own training images (no training)."""

    kind: ClassVar[str] = "floor"
    #: a measurement, not a run: no seed
    seed: ClassVar[Optional[int]] = None
    data: str = IMAGE_DATA
    split: str = FID_SPLIT
    extractor: str = "lenet"

    @property
    def key(self) -> str:
        return f"{self.data}/floor"

    def to_spec(self) -> Dict[str, Any]:
        return {"kind": self.kind, "data": self.data, "split": self.split, "extractor": self.extractor}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "FloorCell":
        return cls(data=spec["data"], split=spec["split"], extractor=spec["extractor"])


@dataclass(frozen=True)
class SharpnessProbe:
    """The final sharpness measurement of an image run: ``iters`` power iterations on the fixed
    evaluation batch of ``n`` training images and latents drawn from ``seed`` (the method is part
    of the spec, so cells measured another way are rerun)."""

    n: int
    iters: int
    seed: int = SHARPNESS_SEED
    method: str = "fixed-batch-eval"

    def to_spec(self) -> Dict[str, Any]:
        return {"method": self.method, "n": self.n, "iters": self.iters, "seed": self.seed}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "SharpnessProbe":
        return cls(n=spec["n"], iters=spec["iters"], seed=spec["seed"], method=spec["method"])


@dataclass(frozen=True)
class ImageCell:
    """One run of the regulariser grid: ``objective`` on :data:`IMAGE_DATA` with the treatment
    ``cell`` (a key of :data:`TREATMENTS`) and ``seed``, scored by FID from ``fid_n`` samples and
    by ``sharpness``; ``config`` is the training config in statgan's dictionary form."""

    kind: ClassVar[str] = "mnist"
    objective: str
    cell: str
    seed: int
    fid_n: int
    sharpness: SharpnessProbe
    config: Dict[str, Any] = field(hash=False, repr=False)

    @classmethod
    def build(cls, b: Budget, objective: str, cell: str, seed: int) -> "ImageCell":
        """The cell as budget ``b`` defines it."""
        return cls(objective=objective, cell=cell, seed=seed, fid_n=b.fid_n,
                   sharpness=SharpnessProbe(n=b.sharpness_n, iters=b.sharpness_iters),
                   config=_image_config(b, objective, TREATMENTS[cell], seed))

    @property
    def key(self) -> str:
        return f"mnist/{self.objective}/{self.cell}/s{self.seed}"

    @property
    def treatment(self) -> Treatment:
        return TREATMENTS[self.cell]

    @property
    def steps(self) -> int:
        return int(self.config["train"]["steps"])

    @property
    def batch_size(self) -> int:
        return int(self.config["train"]["batch_size"])

    def to_spec(self) -> Dict[str, Any]:
        return {"kind": self.kind, "objective": self.objective, "cell": self.cell, "seed": self.seed,
                "fid_n": self.fid_n, "sharpness": self.sharpness.to_spec(), "config": copy.deepcopy(self.config)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "ImageCell":
        return cls(objective=spec["objective"], cell=spec["cell"], seed=spec["seed"], fid_n=spec["fid_n"],
                   sharpness=SharpnessProbe.from_spec(spec["sharpness"]), config=spec["config"])


@dataclass(frozen=True)
class ToyCell:
    """One run of the latent-dimension sweep: an MLP generator with latent dimension ``latent_dim``
    on the 2-D ``density``, scored from ``eval_n`` samples."""

    kind: ClassVar[str] = "toy"
    density: str
    latent_dim: int
    seed: int
    eval_n: int
    config: Dict[str, Any] = field(hash=False, repr=False)

    @classmethod
    def build(cls, b: Budget, density: str, latent_dim: int, seed: int) -> "ToyCell":
        return cls(density=density, latent_dim=latent_dim, seed=seed, eval_n=b.toy_eval_n,
                   config=_toy_config(b, TOY_DENSITY_INFO[density], latent_dim, seed))

    @property
    def key(self) -> str:
        return f"toy/{self.density}/z{self.latent_dim}/s{self.seed}"

    def to_spec(self) -> Dict[str, Any]:
        return {"kind": self.kind, "density": self.density, "latent_dim": self.latent_dim, "seed": self.seed,
                "eval_n": self.eval_n, "config": copy.deepcopy(self.config)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "ToyCell":
        return cls(density=spec["density"], latent_dim=spec["latent_dim"], seed=spec["seed"], eval_n=spec["eval_n"],
                   config=spec["config"])


CellSpec = Union[FloorCell, ImageCell, ToyCell]
#: the kinds of cell, by the ``kind`` their stored spec carries
CELL_KINDS: Mapping[str, Type[CellSpec]] = {c.kind: c for c in (FloorCell, ImageCell, ToyCell)}
#: the key of the FID floor's cell
FLOOR_KEY = FloorCell().key


def parse_spec(spec: Mapping[str, Any]) -> CellSpec:
    """The typed spec of a stored one (ValueError for an unknown kind)."""
    kind = spec.get("kind")
    if kind not in CELL_KINDS:
        raise ValueError(f"unknown cell kind {kind!r}")
    return CELL_KINDS[kind].from_spec(spec)


def _image_config(b: Budget, objective: str, treatment: Treatment, seed: int) -> Dict[str, Any]:
    batch = b.batch_size(treatment.batch)
    steps = b.steps_at(objective, batch)
    width = {"width": b.width, "norm": "batch"}
    config: Dict[str, Any] = {
        "run": {"seed": seed, "device": "cpu"},
        "data": {"name": IMAGE_DATA},
        "model": {"arch": "dcgan", "latent_dim": 100, "generator": dict(width), "discriminator": dict(width)},
        "objective": {"name": objective},
        "train": {
            "steps": steps, "batch_size": batch, "n_critic": N_CRITIC.get(objective, 1),
            # the paper's Adam settings, with its linear warm-up over the first 4% of the run
            "lr_g": 1e-3, "lr_d": 1e-3, "betas": [0.5, 0.999], "warmup_steps": steps // 25,
            # EMA over about the last fifth of the run, started after the first quarter
            "ema": True, "ema_decay": round(1.0 - 5.0 / max(steps, 10), 6), "ema_start": steps // 4,
            "log_every": max(1, min(50, steps)), "sample_every": 0, "checkpoint_every": 0, "keep_checkpoints": 1,
            "progress": False, "tensorboard": False,
        },
        "regularizers": treatment.regularizers(objective, steps, b.sharpness_iters),
    }
    if b.recipe is not None:
        b.recipe.apply(config)
    return config


def _toy_config(b: Budget, density: ToyDensity, dim: int, seed: int) -> Dict[str, Any]:
    data: Dict[str, Any] = {"name": density.name}
    if density.n is not None:
        data["n"] = density.n
    net = {"hidden": 128, "depth": 3}
    return {
        "run": {"seed": seed, "device": "cpu"},
        "data": data,
        "model": {"arch": "mlp", "latent_dim": dim, "generator": dict(net), "discriminator": dict(net)},
        # a fixed-kernel MMD: on these 2-D densities it fits far more reliably than the GAN objectives at
        # this budget (ragan left the 200-point Gaussian with χ² RMS 2.1), so the latent dimension is
        # what varies. Kernel precisions λ span length scales 1/sqrt(2λ) from 0.07 to 2.2.
        "objective": {"name": "gmmn", "bandwidths": list(TOY_BANDWIDTHS)},
        "train": {"steps": b.toy_steps, "batch_size": density.batch, "lr_g": 5e-4, "lr_d": 5e-4, "betas": [0.5, 0.9],
                  "ema": True, "ema_decay": 0.99, "log_every": max(1, min(50, b.toy_steps)), "sample_every": 0,
                  "checkpoint_every": 0, "keep_checkpoints": 1, "progress": False, "tensorboard": False},
    }


def plan(budget: str, seeds: Optional[Sequence[int]] = None) -> List[CellSpec]:
    """All cells of a budget, typed, in the order they run: the FID floor (seconds, and every table
    needs it), the image-grid cells the claims need (:data:`PRIORITY_CELLS`) for every seed, then the
    toy sweep for every seed, then the remaining image cells for every seed — each group seed-major,
    so a run stopped early still has balanced seeds where they matter most."""
    b = BUDGETS[budget]
    seeds = list(b.seeds if seeds is None else seeds)
    first = [c for c in b.cells if c in PRIORITY_CELLS]
    rest = [c for c in b.cells if c not in PRIORITY_CELLS]
    out: List[CellSpec] = [FloorCell()]
    out += [ImageCell.build(b, obj, cell, s) for s in seeds for obj in b.objectives for cell in first]
    out += [ToyCell.build(b, density, dim, s) for s in seeds for density in b.toy_densities for dim in b.toy_dims]
    out += [ImageCell.build(b, obj, cell, s) for s in seeds for obj in b.objectives for cell in rest]
    return out


def cells(budget: str, seeds: Optional[Sequence[int]] = None) -> List[Cell]:
    """:func:`plan` as the grid runner's cells (key and stored spec)."""
    return [Cell(spec.key, spec.to_spec()) for spec in plan(budget, seeds)]


__all__ = ["OBJECTIVES", "CELLS", "CELL_LABELS", "PRIORITY_CELLS", "IMAGE_DATA", "FID_SPLIT", "FLOOR_KEY",
           "TOY_DENSITIES", "TOY_BANDWIDTHS", "LOGP_FLOOR", "KDE_VALID_N", "SHARPNESS_SEED", "N_CRITIC", "Treatment",
           "Recipe", "MODERN_RECIPE", "TREATMENTS", "ToyDensity", "TOY_DENSITY_INFO", "Budget", "BUDGETS", "FloorCell", "SharpnessProbe", "ImageCell", "ToyCell", "CellSpec", "CELL_KINDS",
           "parse_spec", "GRADIENT_REGULARISERS", "GAN_GRADIENT_REGULARISER", "gradient_regulariser", "plan", "cells"]
