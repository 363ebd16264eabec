"""Sequential Monte Carlo and the adaptive schedule (statgan.audit.annealing), checked against exact
likelihoods: probabilistic PCA (closed form) and the 2-D generators of test_audit_posterior (a fine
quadrature grid), plus the exact properties of the pieces (systematic resampling's counts, the
conditional ESS, the unbiasedness of the evidence estimate in p(x), not log p(x)).

Tolerances: as in test_audit_ais, a mean error over B images may sit above 0 only by 3 standard
errors of the mean plus 0.02 nats (E[log p^] <= log p by Jensen, since E[p^] = p).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from statgan import audit
from statgan.audit.annealing import (
    SamplerOptions,
    adaptive_betas,
    conditional_ess,
    ess_fraction,
    regrid,
    sigmoid_schedule,
    systematic_resample,
)
from test_audit_ais import LATENT, SIGMA, exact_marginal, mc_tolerance, ppca
from test_audit_posterior import SIGMA as SIGMA2, Quadratic, Z_TRUE, grid_log_likelihood, simulate

pytestmark = pytest.mark.usefixtures("one_thread")


def test_systematic_resampling_counts_are_floor_or_ceil_of_k_times_the_weight():
    """Systematic resampling gives particle k either floor(K w_k) or ceil(K w_k) copies, exactly."""
    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(200, 7, generator=g, dtype=torch.float64) * 2
    idx = systematic_resample(log_w, g)
    counts = torch.zeros_like(log_w).scatter_add_(1, idx, torch.ones_like(log_w))
    kw = 7 * torch.softmax(log_w, 1)
    assert ((counts >= kw.floor() - 1e-9) & (counts <= kw.ceil() + 1e-9)).all()
    assert (counts.sum(1) == 7).all()


def test_conditional_ess_matches_its_definition_and_the_adaptive_step_hits_the_target():
    g = torch.Generator().manual_seed(1)
    log_w = torch.randn(5, 9, generator=g, dtype=torch.float64)
    inc = -50 * torch.rand(5, 9, generator=g, dtype=torch.float64)
    delta = torch.full((5,), 0.01, dtype=torch.float64)
    W = torch.softmax(log_w, 1)
    u = torch.exp(delta.unsqueeze(1) * inc)
    direct = (W * u).sum(1).square() / (W * u.square()).sum(1)
    assert torch.allclose(conditional_ess(log_w, inc, delta), direct, rtol=1e-12)
    beta = torch.zeros(5, dtype=torch.float64)
    nxt = adaptive_betas(beta, log_w, inc, 0.9)
    assert torch.allclose(conditional_ess(log_w, inc, nxt - beta), torch.full((5,), 0.9, dtype=torch.float64), atol=1e-6)
    # a flat likelihood (equal increments) loses nothing: one step to beta = 1
    assert torch.equal(adaptive_betas(beta, log_w, torch.full_like(inc, -3.0), 0.9), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(ess_fraction(torch.zeros(2, 4, dtype=torch.float64)), torch.ones(2, dtype=torch.float64))


def test_regrid_stretches_a_pilot_schedule_to_the_asked_length():
    pilot = torch.stack([torch.tensor([0.0, 0.1, 0.5, 1.0, 1.0], dtype=torch.float64),
                         torch.tensor([0.0, 0.01, 0.02, 0.3, 1.0], dtype=torch.float64)], 1)
    betas = regrid(pilot, 6)
    assert betas.shape == (7, 2)
    assert (betas[0] == 0).all() and (betas[-1] == 1).all() and (betas[1:] >= betas[:-1]).all()
    # image 0 reached 1 after 3 pilot steps: u = 0, .5, 1, ..., 3; beta(0.5) = 0.05, beta(1.5) = 0.3
    assert torch.allclose(betas[:, 0], torch.tensor([0.0, 0.05, 0.1, 0.3, 0.5, 0.75, 1.0], dtype=torch.float64))
    # image 1 took 4: u = 0, 2/3, 4/3, ...; beta(2/3) = 0.01 * 2/3
    assert torch.allclose(betas[1, 1], torch.tensor(0.01 * 2 / 3, dtype=torch.float64))


def test_options_are_frozen_and_validated():
    o = SamplerOptions(n_steps=5, schedule=(0, 0.5, 0.7, 0.8, 0.9, 1))
    assert o.schedule == (0.0, 0.5, 0.7, 0.8, 0.9, 1.0) and o.betas().shape == (6,)
    with pytest.raises(Exception):
        o.n_steps = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"schedule has 3 betas, expected n_steps \+ 1 = 6"):
        SamplerOptions(n_steps=5, schedule=(0, 0.5, 1))
    with pytest.raises(TypeError, match="unknown sampler option.*n_step;"):
        audit.ais(nn.Linear(2, 3), torch.zeros(1, 3), 2, 0.1, n_step=3)


def test_evidence_estimate_is_unbiased_in_p_with_resampling():
    """E[p^(x)] = p(x) for SMC along a fixed schedule: 4,000 independent replicates of one image
    (B copies, each with its own particles), resampled at every step; the mean of p^/p is 1 within
    4 standard errors, while the mean log error is clearly negative (Jensen)."""
    torch.manual_seed(0)
    lin = nn.Linear(1, 3).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0], [-1.0], [0.5]], dtype=torch.float64))
        lin.bias.zero_()
    sigma = 0.3
    cov = lin.weight.detach() @ lin.weight.detach().T + sigma**2 * torch.eye(3, dtype=torch.float64)
    x = torch.tensor([[1.0, -0.4, 0.3]], dtype=torch.float64).expand(4000, -1).contiguous()
    exact = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), cov).log_prob(x[:1])
    res = audit.ais(lin, x, 1, sigma, n_steps=4, n_chains=3, leapfrog=2, step_size=0.2, schedule="linear",
                    resample=1.0, seed=3)
    assert (res.resamples > 0).all()
    ratio = torch.exp(res.log_likelihood - exact)
    se = ratio.std() / math.sqrt(ratio.numel())
    assert abs(ratio.mean().item() - 1.0) < 4 * se.item(), (ratio.mean(), se)
    assert (res.log_likelihood - exact).mean() < -4 * se.item()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    lin = ppca(0)
    mvn = exact_marginal(lin)
    return lin, mvn, mvn.sample((20,))


@pytest.mark.parametrize("options", [
    dict(resample=0.5, schedule="adaptive", n_chains=32, n_steps=400),  # SMC
    dict(resample=0.0, schedule="adaptive", n_chains=16, n_steps=400),  # AIS along the pilot's schedule
])
def test_smc_and_adaptive_ais_match_exact_ppca_likelihood(model, options):
    lin, mvn, x = model
    res = audit.smc(lin, x, LATENT, SIGMA, leapfrog=10, seed=1, **options)
    err = res.log_likelihood - mvn.log_prob(x)
    assert res.betas.shape == (401, 20) and (res.betas[1:] >= res.betas[:-1]).all()
    # 400 steps (AIS's own exactness test runs 1,000): within 2 nats per image, 0.5 on average
    assert err.abs().max() < 2.0 and -0.5 < err.mean() <= mc_tolerance(err), err
    if options["resample"] > 0:
        assert res.resamples.sum() > 0


def test_bdmc_with_smc_brackets_the_exact_value(model):
    lin, mvn, _ = model
    res = audit.bdmc(lin, LATENT, SIGMA, 12, audit.SMC_OPTIONS, n_steps=300, leapfrog=10, seed=7)
    exact = mvn.log_prob(res.data)
    lo, up = res.lower - exact, res.upper - exact
    assert lo.mean() <= mc_tolerance(lo) and up.mean() >= -mc_tolerance(up), (lo, up)
    assert torch.equal(res.reverse.betas, res.forward.betas.flip(0))  # the reverse run retraces the schedule
    assert res.gap.median() < 3.0


def test_smc_from_the_prior_finds_all_four_modes_of_a_quadrature_generator():
    """G is a function of z1^2 and z2^2: four posterior modes of equal mass. SMC from the prior with
    resampling must weigh them right (truth from a fine grid); BDMC with SMC must bracket it."""
    G = Quadratic(four=True)
    x = simulate(G, Z_TRUE)
    exact = grid_log_likelihood(G, x)
    res = audit.smc(G, x, 2, SIGMA2, n_chains=64, n_steps=200, step_size=0.05, seed=2)
    err = res.log_likelihood - exact
    assert err.abs().max() < 1.0 and err.mean() <= mc_tolerance(err), err
    bd = audit.bdmc(G, 2, SIGMA2, 16, audit.SMC_OPTIONS, n_chains=32, n_steps=200, step_size=0.05, seed=4)
    truth = grid_log_likelihood(G, bd.data.double())
    lo, up = bd.lower - truth, bd.upper - truth
    assert lo.mean() <= mc_tolerance(lo) and up.mean() >= -mc_tolerance(up), (lo, up)


def test_sigmoid_schedule_still_drives_plain_ais(model):
    lin, mvn, x = model
    res = audit.ais(lin, x[:4], LATENT, SIGMA, n_steps=50, n_chains=2, leapfrog=2, seed=0)
    assert torch.equal(res.betas[:, 0], sigmoid_schedule(50)) and (res.resamples == 0).all()


def test_sigma_curve_gives_every_noise_level_from_one_run(model):
    """PPCA's marginal is N(b, W W^T + sigma^2 I) at every sigma: one run down to the smallest sigma
    must match each closed form (as AIS does: within 1.5 nats per image, never above on average)."""
    lin, _, x = model
    sigmas = (2.0, 1.0, SIGMA)
    curve = audit.sigma_curve(lin, x, LATENT, sigmas, n_steps=1000, n_chains=16, leapfrog=10, seed=3)
    assert curve.sigmas.tolist() == sorted(sigmas, reverse=True) and curve.log_likelihood.shape == (3, 20)
    for i, sg in enumerate(curve.sigmas.tolist()):
        err = curve.log_likelihood[i] - exact_marginal(lin, sg).log_prob(x)
        assert err.abs().max() < 1.5 and err.mean() <= mc_tolerance(err), (sg, err)
    assert int(curve.mean().argmax()) == 2  # x was drawn at SIGMA: the best of the three
    with pytest.raises(ValueError, match="sigma_curve runs AIS from the prior"):
        audit.sigma_curve(lin, x, LATENT, sigmas, resample=0.5)
