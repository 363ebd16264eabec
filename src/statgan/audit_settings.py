"""The knobs of ``statgan invert`` and ``statgan audit``: the one place their defaults are written.

(A top-level module rather than part of :mod:`statgan.audit`, whose package imports torch: the CLI
builds its flags from these classes and must start without torch. ``statgan.audit.settings`` is the
same module under its old name.)

The CLI's help strings, :func:`statgan.audit.run.invert_split` and :func:`statgan.audit.run.audit_run`
all read them from here (``f"(default {AuditSettings.n})"``), so a changed default shows everywhere.
docs/audit.md explains each default and what it costs.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

from .errors import ConfigError
from .runtime.validation import check_int, check_positive

__all__ = ["AuditSettings", "GapCurve", "InvertSettings", "LOSSES", "MODE_WEIGHTS", "PRECISIONS", "PROPOSALS", "flag_fields",
           "knob"]

#: ``--loss`` choices of ``statgan invert`` / ``statgan audit``: pixel MSE, or squared distance of
#: statgan's MNIST LeNet features (MNIST-like data only).
LOSSES = ("l2", "lenet")
#: ``--proposal`` choices: AIS's initial distribution q(z | x). "laplace": a mixture of Gauss-Newton
#: Laplace approximations at the distinct inversion optima (statgan.audit.posterior); "isotropic":
#: N(z_inverted, init_scale^2 I) around the best restart (the audit's proposal before the mixture);
#: "prior": none -- the chains start from p(z), and the path p(z) p(x|z)^beta anneals the noise level
#: from infinity down to sigma (no mass matrix: HMC with unit mass).
PROPOSALS = ("laplace", "isotropic", "prior")
#: how the Laplace mixture weights its modes (statgan.audit.posterior.MODE_WEIGHTS)
MODE_WEIGHTS = ("evidence", "equal")
#: ``--precision`` levels of ``statgan audit`` (``--quick`` is the first): what each changes is
#: :attr:`AuditSettings.LEVELS`, what each buys is :data:`GAP_CURVES`
PRECISIONS = ("quick", "default", "certified")


@dataclass(frozen=True)
class GapCurve:
    """The median BDMC gap of the audit's estimator against its annealing steps T, measured on the
    default MNIST run at one sigma with one proposal: gap ~ scale * T^slope, fitted (least squares in
    logs) to the points from ``fit_from`` steps on; beyond ``measured_to`` steps it is an
    extrapolation. Measured with ``benchmarks/likelihood_curve.py`` and ``benchmarks/likelihood_samplers.py``
    (docs/audit.md, *Likelihood precision against compute*)."""

    proposal: str
    sigma: float
    scale: float
    slope: float
    fit_from: int
    measured_to: int
    seconds_per_step: float  # one core's CPU seconds per annealing step and image (forward and reverse run)

    def gap(self, steps: int) -> float:
        return self.scale * steps ** self.slope

    def steps_for(self, gap: float) -> float:
        return (gap / self.scale) ** (1.0 / self.slope)


#: the measured curves (2026-12-07, default run, 16 simulated images, one core; 1 chain, 5 leapfrog steps)
GAP_CURVES: Tuple[GapCurve, ...] = (
    GapCurve(proposal="laplace", sigma=0.1, scale=10570.0, slope=-0.525, fit_from=400, measured_to=10_000,
             seconds_per_step=0.0045),
    GapCurve(proposal="laplace", sigma=0.2, scale=1396.0, slope=-0.489, fit_from=400, measured_to=10_000,
             seconds_per_step=0.0046),
    GapCurve(proposal="prior", sigma=0.1, scale=78040.0, slope=-0.940, fit_from=400, measured_to=25_600,
             seconds_per_step=0.0041),
)


def expected_gap_line(ais_steps: int, sigma: Optional[float], proposal: str = "laplace") -> str:
    """What the measured curve says ``ais_steps`` buys with ``proposal`` at ``sigma`` (or at each measured
    sigma when it is chosen later), and what a 10-nat gap would take: one line for the start of an audit."""
    curves = [c for c in GAP_CURVES if c.proposal == proposal and (sigma is None or abs(c.sigma - sigma) < 1e-9)]
    if not curves:
        where = f"sigma {sigma:g}, " if sigma is not None else ""
        return (f"expected BDMC gap: no measured curve for {where}proposal {proposal} (measured: "
                f"{', '.join(f'{c.proposal} at sigma {c.sigma:g}' for c in GAP_CURVES)}); the audit measures its own")
    parts = []
    for c in curves:
        extra = (" (extrapolated)" if ais_steps > c.measured_to else
                 f" (below the fit's range from {c.fit_from} steps; shorter runs measured wider)" if ais_steps < c.fit_from else "")
        ten = c.steps_for(10.0)
        parts.append(f"sigma {c.sigma:g}: ~{c.gap(ais_steps):.3g} nats{extra}; 10 nats would take ~{ten:,.0f} steps "
                     f"(~{ten * c.seconds_per_step / 60:.3g} CPU-minutes per image)")
    return (f"expected median BDMC gap at {ais_steps} AIS steps from the {proposal} proposal on the default MNIST run -- "
            + "; ".join(parts) + ". The audit measures its own.")


def knob(default: Any, help: str, **cli: Any) -> Any:
    """A settings field that is also a command-line flag of ``statgan invert`` / ``statgan audit``
    (``--NAME`` with dashes; the CLI builds the flags from these fields, so the help lives here once).
    ``cli`` may add ``short`` (e.g. "-n"), ``choices``, ``absent`` (see :mod:`statgan.audit.summary`)."""
    metadata: Dict[str, Any] = {"help": help, **cli}
    return field(default=default, metadata=metadata)


def flag_fields(cls: type) -> Tuple["Field[Any]", ...]:
    """The fields of a settings class that are command-line flags, in declaration order."""
    return tuple(f for f in fields(cls) if "help" in f.metadata)


@dataclass(frozen=True)
class InvertSettings:
    """Knobs of the inversion (``statgan invert``; the audit inverts with the same ones)."""

    n: int = knob(100, "train, test and generated images; invert: images per set, per OOD set", short="-n")
    restarts: int = knob(2, "random starts per image")
    steps: int = knob(300, "Adam steps per start")
    lr: float = knob(0.1, "peak learning rate of the inversion, cosine-annealed")
    loss: str = knob("l2", "inversion loss: pixel MSE, or LeNet-feature distance (MNIST-like data)", choices=LOSSES)
    screen: int = knob(0, "score this many prior draws per image by a forward pass and start from the best "
                          "(0: random starts)", absent=0)
    refine: int = knob(0, "Levenberg-Marquardt steps on each image's best start after Adam (pixel loss only)",
                       absent=0)
    seed: int = knob(0, "seed of the image sets and every sampler")

    def validate(self) -> "InvertSettings":
        """``self`` if every knob is in range; a one-line :class:`ConfigError` otherwise."""
        check_int("n", self.n)
        check_int("restarts", self.restarts)
        check_int("steps", self.steps)
        check_int("seed", self.seed, minimum=0)
        check_int("screen", self.screen, minimum=0)
        check_int("refine", self.refine, minimum=0)
        check_positive("lr", self.lr)
        if self.loss not in LOSSES:  # exact: the pipeline compares the name as given
            raise ConfigError(f"unknown loss {self.loss!r}; expected one of: {', '.join(LOSSES)}")
        if self.screen and self.screen < self.restarts:
            raise ConfigError(f"screen must be 0 or at least restarts ({self.restarts}), got {self.screen}")
        if self.refine and self.loss != "l2":
            raise ConfigError(f"refine needs the pixel loss l2, got loss {self.loss!r}")
        return self


@dataclass(frozen=True)
class AuditSettings(InvertSettings):
    """Knobs of :func:`statgan.audit.run.audit_run`: the inversion's plus the likelihood's. The
    defaults took 7 min 16 s on one idle CPU core for the default MNIST run (2026-12-07; 12 min when
    two other jobs shared the 2-core machine); docs/audit.md breaks it down by stage."""

    n_valid: int = knob(50, "held-out images for sigma and the typicality test")
    n_ood: int = knob(50, "images per OOD set")
    ood: Optional[Tuple[str, ...]] = knob(
        None, "comma-separated OOD sets (default: glyphs,noise,constant,blurred,inverted + local fashion-mnist/svhn); "
              "NAME=SET adds your own (a folder, an .npz file or data:NAME:SPLIT)")
    sigma: Optional[float] = knob(None, "observation noise std (default: chosen on held-out images)")
    sigma_candidates: Tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    sigma_images: int = 16            # valid images used to choose sigma
    sigma_steps: int = 100            # AIS steps per candidate
    ais_steps: int = knob(100, "AIS annealing steps")
    chains: int = knob(1, "AIS chains per image")
    leapfrog: int = knob(5, "HMC leapfrog steps")
    step_size: float = 0.3            # initial HMC step (adapted toward 0.65 acceptance); whitened units when preconditioned
    # HMC mass matrix = the proposal's precision at each image's heaviest mode (False: the identity).
    # ``absent``: what a summary.json written before the knob existed ran with (statgan.audit.summary)
    precondition: bool = knob(True, "HMC's mass matrix: the proposal's precision at each image's heaviest mode "
                              "(--no-precondition: unit mass)", absent=False)
    proposal: str = knob("laplace", "AIS's initial distribution: a Laplace mixture at the inversion optima, "
                         "N(z_inv, s^2 I), or the prior (the noise-level path; unit-mass HMC)", choices=PROPOSALS)
    posterior_adam_steps: int = 100   # laplace: Adam steps (peak lr 0.1) on -log p(x, z) from each restart
    # laplace: those Adam steps anneal the noise level from this down to sigma (None: off)
    posterior_sigma_from: Optional[float] = field(default=1.0, metadata={"absent": None})
    posterior_jacobians: int = 1      # laplace: Jacobian rounds per restart (each ~d forward-mode passes)
    posterior_steps: int = 10         # laplace: Gauss-Newton-preconditioned steps per round toward the mode
    mode_weights: str = "evidence"    # laplace: weights of the distinct modes (MODE_WEIGHTS)
    is_samples: int = knob(32, "importance samples per image from the proposal (reported beside AIS)")
    init_scale: float = 0.4           # isotropic: q = N(z_inverted, init_scale^2 I); laplace: q's largest spread
    bdmc_images: int = 50             # simulated images: BDMC gap and the model's typical set
    typicality_batch: int = 5         # M, images per typicality-test batch
    alpha: float = 0.01               # typicality test level
    n_bootstrap: int = 1000           # typicality permutations per batch
    # null replicates of the number of flagged batches (statgan.audit.typicality.rejection_null);
    # ``absent``: summaries written before it judged that number by the binomial test
    typicality_null: int = field(default=200, metadata={"absent": 0})
    copying_cells: Optional[int] = None  # k-means cells of the data-copying test; None: held-out images // 25, 1..10

    #: What :meth:`quick` changes: a smoke test in seconds (the numbers mean little).
    QUICK: ClassVar[Mapping[str, Any]] = MappingProxyType(dict(
        n=24, n_valid=16, n_ood=12, restarts=1, steps=40, sigma_images=8, sigma_steps=10, ais_steps=10, bdmc_images=12,
        typicality_batch=4, n_bootstrap=200, typicality_null=100, posterior_adam_steps=10, posterior_steps=3,
        is_samples=8))

    #: The defaults before the Laplace proposal (the benchmark's reference): isotropic q, 200 steps.
    LEGACY: ClassVar[Mapping[str, Any]] = MappingProxyType(dict(
        proposal="isotropic", ais_steps=200, chains=1, leapfrog=5, step_size=0.03, init_scale=0.2, sigma_images=32,
        precondition=False, posterior_sigma_from=None))

    #: ``--precision certified``: the noise-level path from the prior (it won against the Laplace
    #: proposal at equal CPU time from 1,600 steps up: docs/audit.md, *Likelihood precision against
    #: compute*) at the longest length measured, on 16 model samples; the sigma choice at 1,600 steps of
    #: the same path. :func:`expected_gap_line` says what it buys before it runs.
    CERTIFIED: ClassVar[Mapping[str, Any]] = MappingProxyType(dict(
        proposal="prior", step_size=0.03, ais_steps=25_600, sigma_steps=1_600, bdmc_images=16))

    #: what each ``--precision`` level changes in the defaults
    LEVELS: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
        {"quick": QUICK, "default": MappingProxyType({}), "certified": CERTIFIED})

    @classmethod
    def quick(cls, **changes: Any) -> "AuditSettings":
        """The defaults with :attr:`QUICK` applied, then ``changes``."""
        return cls.at_precision("quick", **changes)

    @classmethod
    def at_precision(cls, level: str, **changes: Any) -> "AuditSettings":
        """The defaults with the ``--precision`` level's changes (:attr:`LEVELS`) applied, then ``changes``."""
        if level not in cls.LEVELS:
            raise ConfigError(f"unknown precision {level!r}; expected one of: {', '.join(PRECISIONS)}")
        return replace(cls(), **{**cls.LEVELS[level], **changes})

    def validate(self) -> "AuditSettings":
        super().validate()
        for name in ("sigma_images", "sigma_steps", "ais_steps", "chains", "leapfrog", "typicality_batch", "n_bootstrap",
                     "is_samples", "typicality_null"):
            check_int(name, getattr(self, name))
        check_int("posterior_steps", self.posterior_steps, minimum=0)
        check_int("posterior_jacobians", self.posterior_jacobians)
        check_int("posterior_adam_steps", self.posterior_adam_steps, minimum=0)
        if self.posterior_sigma_from is not None:
            check_positive("posterior_sigma_from", self.posterior_sigma_from)
        if self.proposal not in PROPOSALS:
            raise ConfigError(f"unknown proposal {self.proposal!r}; expected one of: {', '.join(PROPOSALS)}")
        if not isinstance(self.precondition, bool):
            raise ConfigError(f"precondition must be true or false, got {self.precondition!r}")
        if self.mode_weights not in MODE_WEIGHTS:
            raise ConfigError(f"unknown mode weights {self.mode_weights!r}; expected one of: {', '.join(MODE_WEIGHTS)}")
        # reference samples need two values at least: the OOD bootstrap resamples the valid images,
        # and BDMC's images are halved (entropy, bootstrap)
        check_int("n_valid", self.n_valid, minimum=2)
        check_int("bdmc_images", self.bdmc_images, minimum=2)
        check_int("n_ood", self.n_ood)
        for name in ("step_size", "init_scale"):
            check_positive(name, getattr(self, name))
        if self.sigma is not None:
            check_positive("sigma", self.sigma)
        if not self.sigma_candidates:
            raise ConfigError("sigma candidates must hold at least one positive number, got none")
        for c in self.sigma_candidates:
            check_positive("sigma candidate", c)
        if not (isinstance(self.alpha, (int, float)) and 0.0 < self.alpha < 1.0):
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.copying_cells is not None:
            check_int("copying_cells", self.copying_cells)
        # n and n_ood may be below the typicality batch: the audit then tests batches of the smallest
        # set's size (statgan.audit.stages.typicality_batch) and says so
        return self
