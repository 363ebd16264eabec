"""Auditing a trained generator as a statistical model (Wu et al. 2017; Friedman & Weiss 2024).

::

    from statgan import audit
    z, errors = audit.invert(G, x, latent_dim, restarts=4, steps=500)           # InversionResult
    ll = audit.ais_log_likelihood(G, x, latent_dim, sigma, n_steps=1000)        # (B,) nats, lower bound
    sel = audit.select_sigma(G, x_valid, latent_dim)                            # SigmaSelection(.sigma, ...)
    lower, upper = audit.bdmc(G, latent_dim, sigma, n_images=16, n_steps=1000)  # BDMCResult (.gap)
    ll = audit.smc(G, x, latent_dim, sigma, proposal=q).log_likelihood         # SMC, adaptive tempering
    q = audit.laplace_proposal(G, x, audit.invert(G, x, latent_dim).restart_z, sigma)  # posterior mixture
    ll = audit.ais_log_likelihood(G, x, latent_dim, sigma, n_steps=20, proposal=q)  # AIS from q
    res = audit.typicality_test(train_ll, valid_ll, test_ll, batch_size=10)     # TypicalityResult
    null = audit.rejection_null(train_ll, valid_ll, test_ll, batch_size=10)     # the flag count vs its null
    audit.auroc(-ll_in, -ll_out); audit.local_variance(images); audit.bits_per_dim(ll, D)

A whole run is audited by :func:`statgan.audit.run.audit_run` (``statgan audit RUN_DIR``: inversion,
sigma, AIS, BDMC, typicality, AUROCs and Friedman & Weiss verdicts in a self-contained
``RUN_DIR/audit/report.html``; see docs/audit.md) and inverted by :func:`statgan.audit.run.invert_split`
(``statgan invert``), with the knobs of :mod:`statgan.audit.settings`; they return the typed results of
:mod:`statgan.audit.summary`, computed stage by stage in :mod:`statgan.audit.stages`. Those modules
are not imported here, so ``import statgan.audit`` does not load the data, report or run machinery.

A generator is any ``nn.Module`` mapping (B, latent_dim) to (B, C, H, W) or (B, D), with a
standard-normal prior on z unless ``prior`` is passed (AIS/BDMC). Every function runs it in eval
mode with frozen parameters and restores both afterwards. Results are plain tensors and
dataclasses, so reports and the CLI build on them without reaching into this package.
"""

from .ais import (
    AISResult,
    BDMCResult,
    SMC_OPTIONS,
    SamplerOptions,
    SigmaSelection,
    ais,
    ais_log_likelihood,
    bdmc,
    bits_per_dim,
    linear_schedule,
    select_sigma,
    sigma_curve,
    sigmoid_schedule,
    smc,
)
from ._common import Prior, StandardNormal
from .inversion import InversionResult, invert, lenet_feature_fn
from .ood import Correlation, auroc, correlation, local_variance
from .posterior import LaplaceMixture, laplace_proposal
from .proposal import GaussianMixture, IsotropicGaussian, Proposal
from .typicality import RejectionCount, TypicalityResult, rejection_null, typicality_test

__all__ = [
    "AISResult",
    "BDMCResult",
    "Correlation",
    "GaussianMixture",
    "IsotropicGaussian",
    "LaplaceMixture",
    "Proposal",
    "InversionResult",
    "Prior",
    "RejectionCount",
    "SMC_OPTIONS",
    "SamplerOptions",
    "StandardNormal",
    "SigmaSelection",
    "TypicalityResult",
    "ais",
    "ais_log_likelihood",
    "auroc",
    "bdmc",
    "bits_per_dim",
    "correlation",
    "invert",
    "laplace_proposal",
    "lenet_feature_fn",
    "linear_schedule",
    "local_variance",
    "rejection_null",
    "select_sigma",
    "sigma_curve",
    "sigmoid_schedule",
    "smc",
    "typicality_test",
]
