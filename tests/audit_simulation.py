"""Audit summaries built from simulated per-image values whose truth is known -- no generator.

The audit's own stage functions (:mod:`statgan.audit.stages`) and tests run on the simulated values,
so a verdict computed from such a summary can be held against the truth that made the values:
tests/test_audit_verdict_calibration.py checks every finding that way. ``base_summary`` is a whole
summary of a world with no effect anywhere; the ``with_*`` functions replace the parts one finding
reads with those of new simulated values (cheaper than a whole summary per simulation).

Log-likelihoods are simulated as an estimator would report them: a true value minus a looseness
u >= 0 (AIS's lower bounds), and for model samples also a stochastic upper bound true + v, so the
per-image BDMC gap is u + v.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from statgan.audit import stages
from statgan.audit.memorisation import data_copying_test
from statgan.audit.settings import AuditSettings
from statgan.audit.summary import (
    AuditSummary,
    BDMCSummary,
    Machine,
    OODScores,
    SetSummary,
    SigmaChoice,
    Stats,
    Versions,
)
from statgan.audit.uncertainty import auroc_ci, gap_allowance, median, shift_test

#: the simulated OOD sets
OOD = ("o1", "o2", "o3")
#: settings of the simulated audits: the defaults with fewer permutations (the tests run hundreds)
SETTINGS = AuditSettings(n_bootstrap=200, typicality_null=100)
D = 784  # pixels, for bits/dim


def lognormal(g: torch.Generator, n: int, median_: float, sd_log: float = 0.5) -> Tensor:
    return (math.log(median_) + sd_log * torch.randn(n, generator=g, dtype=torch.float64)).exp()


def normal(g: torch.Generator, n: int, mean: float, sd: float) -> Tensor:
    return mean + sd * torch.randn(n, generator=g, dtype=torch.float64)


def exponential(g: torch.Generator, n: int, mean: float) -> Tensor:
    return -mean * torch.rand(n, generator=g, dtype=torch.float64).clamp_min(1e-300).log()


# ==== a whole summary ===============================================================================
def base_summary(seed: int = 0) -> AuditSummary:
    """A complete summary of a world with no effect: every set's inversion errors, log-likelihoods
    and local variances from one distribution, tight likelihood bounds (looseness ~ Exp(1 nat)),
    generated points drawn like held-out ones."""
    g = torch.Generator().manual_seed(seed)
    names = ("train", "test", "generated", "valid", *OOD)
    sizes = {k: (100 if k in ("train", "test", "generated") else 50) for k in names}
    err = {k: lognormal(g, n, 0.01) for k, n in sizes.items()}
    ll = {k: normal(g, n, 600.0, 60.0) - exponential(g, n, 1.0) for k, n in sizes.items()}
    lv = {k: torch.rand(n, generator=g, dtype=torch.float64) for k, n in sizes.items() if k != "valid"}
    true_model = normal(g, 50, 600.0, 60.0)
    lower, upper = true_model - exponential(g, 50, 1.0), true_model + exponential(g, 50, 0.2)
    s = SETTINGS
    typ = stages.typicality_tests(ll, lower, list(OOD), s)
    splits = {k: SetSummary(n=sizes[k], kind="ood" if k in OOD else ("held-out" if k == "valid" else k),
                            inversion_error=Stats.of(err[k]), inversion_mse=Stats.of(err[k]),
                            log_likelihood=Stats.of(ll[k]), bits_per_dim=Stats.of(-ll[k] / (D * math.log(2)) + 8),
                            local_variance=Stats.of(lv[k]) if k in lv else None) for k in names}
    splits["model_samples"] = SetSummary(n=50, kind="model", log_likelihood=Stats.of(lower),
                                         bits_per_dim=Stats.of(-lower / (D * math.log(2)) + 8))
    summary = AuditSummary(
        run="simulated", step=0, weights="EMA", dataset="simulated", data_shape=(1, 28, 28), latent_dim=2, settings=s,
        error_unit="pixel MSE", likelihood_unit="nats", sigma=SigmaChoice(chosen=0.1, method="given (--sigma)"),
        bdmc=_bdmc(lower, upper), splits=splits, ood_sets=OOD, inversion=stages.inversion_ratios(err),
        auroc=stages.ood_scores(err, ll, typ, list(OOD)), memorisation=stages.memorisation(err, ll),
        correlation=stages.correlations(ll, lv, list(OOD), gap_allowance((upper - lower).tolist())),
        typicality=typ.summary(s), timing={}, time="2026-01-01T00:00:00",
        machine=Machine(threads=1, cpu_count=2, device="cpu", platform="simulated", load_average_at_start=None),
        versions=Versions(statgan="0", torch="0", numpy="0", python="0"))
    points = _points(g, copying=False)
    summary.memorisation = replace(summary.memorisation, data_copying=data_copying_test(*points, n_cells=4, seed=seed))
    return summary


def _bdmc(lower: Tensor, upper: Tensor) -> BDMCSummary:
    gaps = upper - lower
    return BDMCSummary(n_images=int(lower.numel()), lower=Stats.of(lower), upper=Stats.of(upper), gap=Stats.of(gaps),
                       gaps=tuple(gaps.tolist()), proposal="simulated")


def _points(g: torch.Generator, copying: bool, dim: int = 5) -> Tuple[Tensor, Tensor, Tensor]:
    """(train, held-out, generated) points for C_T: held-out and (unless ``copying``) generated
    drawn from the training distribution; a copier returns training points plus 1 % noise."""
    train = torch.randn(400, dim, generator=g, dtype=torch.float64)
    held = torch.randn(150, dim, generator=g, dtype=torch.float64)
    if copying:
        gen = train[torch.randint(0, 400, (150,), generator=g)] + 0.01 * torch.randn(150, dim, generator=g, dtype=torch.float64)
    else:
        gen = torch.randn(150, dim, generator=g, dtype=torch.float64)
    return train, held, gen


# ==== the parts one finding reads ===================================================================
def with_inversion(s: AuditSummary, err: Dict[str, Tensor]) -> AuditSummary:
    """(a) and (b): inversion errors of train, test, generated and the OOD sets."""
    s = replace(s, splits=dict(s.splits), auroc=dict(s.auroc))
    if "train" in err and "generated" in err:
        s.inversion = stages.inversion_ratios(err)
    for k, e in err.items():
        s.splits[k] = replace(s.splits[k], n=int(e.numel()), inversion_error=Stats.of(e), inversion_mse=Stats.of(e))
    for k in OOD:
        if k in err:
            est, lo, hi = auroc_ci(err["test"], err[k])
            s.auroc[k] = replace(s.auroc[k], auroc_inversion=est, auroc_inversion_ci=(lo, hi))
    return s


def with_likelihoods(s: AuditSummary, ll: Dict[str, Tensor], lv: Dict[str, Tensor], lower: Tensor,
                     upper: Tensor) -> AuditSummary:
    """(c): estimated log-likelihoods of train and the OOD sets, their local variances, and the model
    samples' bounds (the error allowance)."""
    s = replace(s, splits=dict(s.splits), auroc=dict(s.auroc), bdmc=_bdmc(lower, upper))
    for k, v in ll.items():
        s.splits[k] = replace(s.splits[k], n=int(v.numel()), log_likelihood=Stats.of(v))
    for k in OOD:
        s.auroc[k] = replace(s.auroc[k], likelihood_vs_train=shift_test(ll["train"], ll[k]),
                             median_ll_minus_train=median(ll[k]) - median(ll["train"]))
    s.correlation = stages.correlations(ll, lv, list(OOD), gap_allowance((upper - lower).tolist()))
    return s


def with_typicality(s: AuditSummary, train_ll: Tensor, lower: Tensor, upper: Tensor, settings: AuditSettings = SETTINGS,
                    batch_size: int = 5) -> AuditSummary:
    """(d): the training images' batches against the model's typical set of the model samples' lower
    bounds (H from the first half, the pool the second), and those samples' bounds."""
    half = lower.numel() // 2
    entry = stages.set_typicality(lower[:half], lower[half:], train_ll, batch_size, settings, "model").summary(settings.alpha)
    groups = dict(s.typicality.model_typical_set.sets, train=entry)
    typ = replace(s.typicality, batch_size=batch_size, alpha=settings.alpha,
                  model_typical_set=replace(s.typicality.model_typical_set, sets=groups))
    return replace(s, typicality=typ, bdmc=_bdmc(lower, upper))


def with_memorisation(s: AuditSummary, err: Dict[str, Tensor], ll: Dict[str, Tensor], lower: Optional[Tensor] = None,
                      upper: Optional[Tensor] = None, copying: bool = False, seed: int = 0) -> AuditSummary:
    """Memorisation: train and test errors and log-likelihoods, C_T on simulated points (a copier
    when ``copying``), and optionally the model samples' bounds."""
    g = torch.Generator().manual_seed(seed)
    memo = stages.memorisation(err, ll)
    memo = replace(memo, data_copying=data_copying_test(*_points(g, copying), n_cells=4, seed=seed))
    splits = dict(s.splits)
    for k in ("train", "test"):
        splits[k] = replace(splits[k], inversion_error=Stats.of(err[k]), log_likelihood=Stats.of(ll[k]))
    out = replace(s, memorisation=memo, splits=splits)
    return replace(out, bdmc=_bdmc(lower, upper)) if lower is not None and upper is not None else out


def labels(found: Sequence, finding: str) -> str:
    """The verdict of ``finding`` ("a" ... "memorisation") in a list of findings."""
    return next(f.verdict for f in found if f.id == finding)


__all__ = ["OOD", "SETTINGS", "base_summary", "exponential", "labels", "lognormal", "normal", "with_inversion",
           "with_likelihoods", "with_memorisation", "with_typicality"]
