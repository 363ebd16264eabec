"""The stages of an audit, each a function of the earlier ones' results.

:func:`statgan.audit.run.audit_run` calls them in order:

    image_sets -> invert_sets -> choose_sigma -> likelihoods -> bdmc_bounds -> (local variance)
    -> typicality_tests, set_summaries, ood_scores, memorisation, correlations, inversion_ratios
    -> statgan.audit.verdicts.findings

Stages that produce per-image tensors return in-memory dataclasses (:class:`ImageSets`,
:class:`Likelihoods`, :class:`BDMCBounds`, :class:`TypicalityTests`); the others return the pieces
of :class:`statgan.audit.summary.AuditSummary` directly. Every sampler is seeded by (the settings'
seed, its purpose), so a stage's numbers do not depend on which stages ran before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch
from torch import Tensor

from ..errors import StatganError
from ..runtime.lazy import scipy_stats
from ..runtime.seeding import derived_seed
from .ais import BDMCResult, ais, bdmc, bits_per_dim, select_sigma
from .inversion import InversionResult, invert
from .ood import auroc, correlation
from .rundata import FeatureLoss, RunData
from .settings import AuditSettings, InvertSettings
from .summary import (
    BDMCSummary,
    Correlations,
    InversionRatios,
    Memorisation,
    OODScores,
    SetCorrelation,
    SetSummary,
    SigmaChoice,
    Stats,
    TypicalityGroup,
    TypicalitySummary,
    TypicalityTestSummary,
)
from .typicality import TypicalityResult, typicality_test

__all__ = [
    "BDMCBounds", "ImageSets", "Likelihoods", "TypicalityTests", "bdmc_bounds", "choose_sigma", "correlations",
    "errors", "image_sets", "invert_images", "invert_sets", "inversion_ratios", "likelihoods", "memorisation", "ood_scores",
    "set_summaries", "typicality_tests",
]

#: images per chunk in inversion and AIS (memory: a chunk's generator activations x restarts/chains)
BATCH = 128


# ==== image sets ====================================================================================
@dataclass
class ImageSets:
    """The images of one audit (CPU, float32). ``valid`` chooses sigma and bootstraps the OOD test."""

    train: Tensor
    test: Tensor
    valid: Tensor
    generated: Tensor
    ood: Dict[str, Tensor]

    @property
    def scored(self) -> Dict[str, Tensor]:
        """The sets of the tables and plots: train, test, generated, then the OOD sets."""
        return {"train": self.train, "test": self.test, "generated": self.generated, **self.ood}

    @property
    def ood_names(self) -> List[str]:
        return list(self.ood)


def image_sets(run: RunData, s: AuditSettings) -> ImageSets:
    """The audit's image sets; every set must hold at least one typicality batch."""
    test, valid = run.test_and_valid(s.n, s.n_valid)
    assert valid is not None  # n_valid >= 2 (validated)
    sets = ImageSets(train=run.train(s.n), test=test, valid=valid, generated=run.generated(s.n)[0],
                     ood=run.ood(s.n_ood, s.ood))
    if not sets.ood:
        raise StatganError("no OOD set could be built; pass --ood with set names")
    for name, x in sets.scored.items():
        if x.shape[0] < s.typicality_batch:
            raise StatganError(f"the {name} set has {x.shape[0]} images, fewer than the typicality batch ({s.typicality_batch})")
    return sets


# ==== inversion =====================================================================================
def invert_images(run: RunData, x: Tensor, s: InvertSettings, purpose: str, feature: FeatureLoss) -> InversionResult:
    """Invert the run's generator at ``x`` with the settings' knobs and a seed private to ``purpose``."""
    return invert(run.G, x.to(run.device), run.latent_dim, restarts=s.restarts, steps=s.steps, lr=s.lr,
                  loss=feature[0], feature_fn=feature[1], batch_size=BATCH, seed=derived_seed(s.seed, f"audit:invert:{purpose}"))


def invert_sets(run: RunData, sets: ImageSets, s: AuditSettings, feature: FeatureLoss) -> Dict[str, InversionResult]:
    """Every set inverted, keyed by name (the scored sets, then ``valid``)."""
    return {name: invert_images(run, x, s, name, feature) for name, x in {**sets.scored, "valid": sets.valid}.items()}


# ==== sigma, AIS, BDMC ==============================================================================
def _ais_options(s: AuditSettings) -> Dict[str, float]:
    return dict(step_size=s.step_size, init_scale=s.init_scale, batch_size=BATCH)


def choose_sigma(run: RunData, valid: Tensor, z_valid: Tensor, s: AuditSettings) -> SigmaChoice:
    """The settings' sigma, or the candidate with the highest mean AIS log-likelihood of the first
    ``sigma_images`` valid images (chains started at their inverted latents ``z_valid``)."""
    if s.sigma is not None:
        return SigmaChoice(chosen=float(s.sigma), method="given (--sigma)")
    k = min(s.sigma_images, valid.shape[0])
    sel = select_sigma(run.G, valid[:k].to(run.device), run.latent_dim, candidates=s.sigma_candidates,
                       n_steps=s.sigma_steps, n_chains=s.chains, leapfrog=s.leapfrog, init=z_valid[:k],
                       seed=derived_seed(s.seed, "audit:sigma"), **_ais_options(s))
    return SigmaChoice(chosen=float(sel.sigma), method=f"max mean AIS log-likelihood of {k} valid images",
                       candidates=tuple(float(c) for c in sel.candidates),
                       mean_log_likelihood=tuple(float(v) for v in sel.mean_log_likelihood), ais_steps=s.sigma_steps)


@dataclass
class Likelihoods:
    """Per set: AIS log-likelihoods (nats, CPU) and the mean HMC acceptance rate."""

    log_likelihood: Dict[str, Tensor]
    acceptance: Dict[str, float]


def likelihoods(run: RunData, images: Dict[str, Tensor], inversions: Dict[str, InversionResult], sigma: float,
                s: AuditSettings) -> Likelihoods:
    """AIS log-likelihood of every image, each image's chains started from its inverted latent."""
    ll: Dict[str, Tensor] = {}
    acceptance: Dict[str, float] = {}
    for name, x in images.items():
        res = ais(run.G, x.to(run.device), run.latent_dim, sigma, s.ais_steps, s.chains, s.leapfrog,
                  init=inversions[name].z, seed=derived_seed(s.seed, f"audit:ais:{name}"), **_ais_options(s))
        ll[name] = res.log_likelihood.cpu()
        acceptance[name] = float(res.acceptance.mean())
    return Likelihoods(ll, acceptance)


@dataclass
class BDMCBounds:
    """BDMC on model samples x = G(z) + sigma eps. ``lower``: the audit's own estimator (forward AIS
    from inverted latents) -- these are also the model samples' log-likelihoods; ``upper``: per
    image the smaller reverse-AIS bound of the two paths (CPU, float64)."""

    lower: Tensor
    upper: Tensor
    inversion_path: BDMCResult
    prior_path: BDMCResult

    def summary(self) -> BDMCSummary:
        return BDMCSummary(n_images=int(self.lower.numel()), lower=Stats.of(self.lower), upper=Stats.of(self.upper),
                           gap=Stats.of(self.upper - self.lower), upper_inversion_path=Stats.of(self.inversion_path.upper),
                           lower_prior_path=Stats.of(self.prior_path.lower),
                           upper_prior_path=Stats.of(self.prior_path.upper))


def bdmc_bounds(run: RunData, sigma: float, s: AuditSettings) -> BDMCBounds:
    """Bidirectional Monte Carlo on ``bdmc_images`` simulated images with the audit's AIS settings."""

    def init(x: Tensor) -> Tensor:
        return invert_images(run, x, s, "model-samples", ("l2", None)).z

    seed = derived_seed(s.seed, "audit:bdmc")
    common = dict(n_images=s.bdmc_images, n_steps=s.ais_steps, n_chains=s.chains, leapfrog=s.leapfrog,
                  step_size=s.step_size, batch_size=BATCH, seed=seed)
    forward = bdmc(run.G, run.latent_dim, sigma, init=init, init_scale=s.init_scale, **common)
    # The reverse run of the inversion-started path must travel from the true z to q = N(z_inv, s^2 I),
    # and z_inv is often far from the true z (many latents give similar images), so its upper bound is
    # loose. Every reverse-AIS estimate is a stochastic upper bound on log p(x), whatever the path: the
    # prior path's (same seed -> same simulated images) is usually tighter, and the smaller one is kept.
    prior = bdmc(run.G, run.latent_dim, sigma, **common)
    assert torch.equal(forward.data, prior.data), "both BDMC paths must score the same simulated images"
    return BDMCBounds(lower=forward.lower.cpu(), upper=torch.minimum(forward.upper, prior.upper).cpu(),
                      inversion_path=forward, prior_path=prior)


# ==== scores ========================================================================================
@dataclass
class TypicalityTests:
    """Typicality tests by tested set: against the model's typical set (H from half of the model
    samples, bootstrap from the other half) and Nalisnick et al.'s OOD test (H from the training
    images, bootstrap from the valid images)."""

    model: Dict[str, TypicalityResult]
    ood: Dict[str, TypicalityResult]
    model_reference: str
    ood_reference: str

    def summary(self, s: AuditSettings) -> TypicalitySummary:
        def group(reference: str, results: Dict[str, TypicalityResult]) -> TypicalityGroup:
            return TypicalityGroup(reference=reference, sets={
                k: TypicalityTestSummary(entropy=r.entropy, epsilon=r.epsilon, n_batches=int(r.statistics.numel()),
                                         rejection_rate=r.rejection_rate, batch_mean_nll=Stats.of(r.batch_mean_nll),
                                         statistic=Stats.of(r.statistics))
                for k, r in results.items()})

        return TypicalitySummary(batch_size=s.typicality_batch, alpha=s.alpha, n_bootstrap=s.n_bootstrap,
                                 model_typical_set=group(self.model_reference, self.model),
                                 ood_test=group(self.ood_reference, self.ood))


def typicality_tests(ll: Dict[str, Tensor], model_ll: Tensor, ood_names: Sequence[str], s: AuditSettings) -> TypicalityTests:
    """Train, test and generated images against the model's typical set; test and OOD images in the
    OOD test."""

    def test(train_ll: Tensor, valid_ll: Tensor, name: str, purpose: str) -> TypicalityResult:
        return typicality_test(train_ll, valid_ll, ll[name], s.typicality_batch, alpha=s.alpha,
                               n_bootstrap=s.n_bootstrap, seed=derived_seed(s.seed, f"audit:typicality:{purpose}"))

    half = model_ll.numel() // 2
    return TypicalityTests(
        model={name: test(model_ll[:half], model_ll[half:], name, "model") for name in ("train", "test", "generated")},
        ood={name: test(ll["train"], ll["valid"], name, "ood") for name in ["test", *ood_names]},
        model_reference=f"{half} + {model_ll.numel() - half} model samples G(z) + sigma*eps",
        ood_reference=f"train (entropy) + {ll['valid'].numel()} valid images (bootstrap)",
    )


def set_summaries(inversions: Dict[str, InversionResult], lik: Likelihoods, lv: Dict[str, Tensor], model_ll: Tensor,
                  ood_names: Sequence[str], n_dims: int) -> Dict[str, SetSummary]:
    """The per-set table: the scored sets and ``valid`` (in the order of ``inversions``), then the
    model samples."""
    out: Dict[str, SetSummary] = {}
    for name, r in inversions.items():
        ll = lik.log_likelihood[name]
        out[name] = SetSummary(
            n=int(r.errors.numel()),
            kind="ood" if name in ood_names else ("held-out" if name == "valid" else name),
            inversion_error=Stats.of(r.errors), inversion_mse=Stats.of(r.mse), log_likelihood=Stats.of(ll),
            bits_per_dim=Stats.of(bits_per_dim(ll, n_dims)), ais_acceptance=lik.acceptance[name],
            local_variance=Stats.of(lv[name]) if name in lv else None)
    out["model_samples"] = SetSummary(n=int(model_ll.numel()), kind="model", log_likelihood=Stats.of(model_ll),
                                      bits_per_dim=Stats.of(bits_per_dim(model_ll, n_dims)))
    return out


def errors(inversions: Dict[str, InversionResult]) -> Dict[str, Tensor]:
    """Per set, the per-image inversion errors (CPU): the score the tests below compare."""
    return {name: r.errors.detach().cpu() for name, r in inversions.items()}


def ood_scores(err: Dict[str, Tensor], ll: Dict[str, Tensor], typ: TypicalityTests,
               ood_names: Sequence[str]) -> Dict[str, OODScores]:
    """AUROCs of each OOD set against test (and train) images; a higher score means more OOD."""
    return {name: OODScores(
        auroc_inversion=auroc(err["test"], err[name]),
        auroc_likelihood=auroc(-ll["test"], -ll[name]),
        auroc_likelihood_vs_train=auroc(-ll["train"], -ll[name]),
        median_ll_minus_train=float(ll[name].median() - ll["train"].median()),
        typicality_rejection=typ.ood[name].rejection_rate,
    ) for name in ood_names}


def _mann_whitney_p(a: Tensor, b: Tensor) -> float:
    return float(scipy_stats().mannwhitneyu(a.double().numpy(), b.double().numpy(), alternative="two-sided").pvalue)


def memorisation(err: Dict[str, Tensor], ll: Dict[str, Tensor]) -> Memorisation:
    """Training against held-out test images: would a memorising generator's preference show?"""
    return Memorisation(
        auroc_inversion=auroc(err["train"], err["test"]),
        p_inversion=_mann_whitney_p(err["test"], err["train"]),
        auroc_likelihood=auroc(-ll["train"], -ll["test"]),
        p_likelihood=_mann_whitney_p(ll["test"], ll["train"]),
        mean_ll_gap=float(ll["train"].mean() - ll["test"].mean()),
        median_error_ratio=float(err["test"].median() / err["train"].median()),
    )


def correlations(ll: Dict[str, Tensor], lv: Dict[str, Tensor], ood_names: Sequence[str]) -> Correlations:
    """Spearman correlation of log-likelihood with local variance: pooled over train, test and OOD
    images (generated ones are noise-free G(z), not draws from the density model), and within test."""

    def corr(sets: Sequence[str]) -> SetCorrelation:
        c = correlation(torch.cat([ll[k] for k in sets]), torch.cat([lv[k] for k in sets]))
        return SetCorrelation(r=c.r, pvalue=c.pvalue, n=c.n, method=c.method, sets=tuple(sets))

    return Correlations(pooled=corr(["train", "test", *ood_names]), test=corr(["test"]))


def inversion_ratios(err: Dict[str, Tensor]) -> InversionRatios:
    """Median inversion error of train and test images over that of generated images."""
    gen = float(err["generated"].median())

    def ratio(name: str) -> float:
        return float(err[name].median() / err["generated"].median()) if gen > 0 else math.inf

    return InversionRatios(train_over_generated=ratio("train"), test_over_generated=ratio("test"))


# ==== everything per image ==========================================================================
@dataclass
class PerImage:
    """The stages' per-image results: what the report plots and ``per_image.safetensors`` holds."""

    sets: ImageSets
    inversions: Dict[str, InversionResult]
    likelihoods: Likelihoods
    local_variance: Dict[str, Tensor]
    bdmc: BDMCBounds
    typicality: TypicalityTests

    def tensors(self) -> Dict[str, Tensor]:
        """``SET.errors``, ``SET.mse``, ``SET.log_likelihood``, ``SET.z`` (and ``SET.local_variance``) per
        inverted set, ``model_samples.log_likelihood`` and ``bdmc.upper``."""
        out: Dict[str, Tensor] = {"model_samples.log_likelihood": self.bdmc.lower, "bdmc.upper": self.bdmc.upper}
        for name, r in self.inversions.items():
            out.update({f"{name}.errors": r.errors, f"{name}.mse": r.mse,
                        f"{name}.log_likelihood": self.likelihoods.log_likelihood[name], f"{name}.z": r.z})
            if name in self.local_variance:
                out[f"{name}.local_variance"] = self.local_variance[name]
        return out
