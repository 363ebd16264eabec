"""AIS, BDMC and sigma selection checked against a model with an exact likelihood.

Probabilistic PCA: G(z) = W z + b with z ~ N(0, I_5) and x | z ~ N(G(z), sigma^2 I_50) has the
closed-form marginal x ~ N(b, W W^T + sigma^2 I). AIS must match it to within 1 nat per image and
must not sit above it on average: E[p^] = p, so E[log p^ - log p] <= 0 (Jensen). The mean error
over B images is allowed above 0 only by Monte Carlo error: 3 standard errors of the mean
(3 sd / sqrt(B), a one-sided 0.13 % CLT tail) plus 0.02 nats for the small bias that online
step-size adaptation may add (see statgan.audit.ais). Everything runs in float64 so that
rounding plays no part.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from statgan import audit, nets
from statgan.audit.ais import linear_schedule, sigmoid_schedule

# one torch thread: small models run fastest so, and timings stay steady on a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")

LATENT, DIM, SIGMA = 5, 50, 0.5


class Counting(nn.Module):
    """Wraps a generator and counts forward calls (to check the gradient budget of HMC)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, z):
        self.calls += 1
        return self.inner(z)


def ppca(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(LATENT, DIM).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(DIM, LATENT, generator=g, dtype=torch.float64))
        lin.bias.copy_(0.5 * torch.randn(DIM, generator=g, dtype=torch.float64))
    return lin


def exact_marginal(lin: nn.Linear, sigma: float = SIGMA) -> torch.distributions.MultivariateNormal:
    W, b = lin.weight.detach(), lin.bias.detach()
    cov = W @ W.T + sigma**2 * torch.eye(DIM, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov)


def mc_tolerance(err: torch.Tensor) -> float:
    return 3.0 * err.std().item() / math.sqrt(err.numel()) + 0.02


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    lin = ppca(0)
    mvn = exact_marginal(lin)
    x = mvn.sample((20,))
    return lin, mvn, x


def test_ais_matches_exact_ppca_likelihood(model):
    lin, mvn, x = model
    exact = mvn.log_prob(x)
    res = audit.ais(lin, x, LATENT, SIGMA, n_steps=1000, n_chains=16, leapfrog=10, seed=1)
    err = res.log_likelihood - exact
    assert res.log_likelihood.dtype == torch.float64 and res.log_likelihood.shape == (20,)
    assert err.abs().max() < 1.0, err
    assert err.mean() <= mc_tolerance(err), (err.mean(), mc_tolerance(err))
    assert 0.5 < res.acceptance.mean() < 0.85  # adapted toward 0.65
    assert res.step_sizes.shape == (999, 20)
    assert torch.allclose(audit.ais_log_likelihood(lin, x, LATENT, SIGMA, audit.SamplerOptions(1000, 16, 10), seed=1), res.log_likelihood)


def test_ais_is_a_lower_bound_when_the_budget_is_small(model):
    """Short runs are biased *downward* (never upward) by many nats, not randomly."""
    lin, mvn, x = model
    err = audit.ais_log_likelihood(lin, x, LATENT, SIGMA, n_steps=20, n_chains=4, leapfrog=5, seed=3) - mvn.log_prob(x)
    assert err.mean() < -1.0
    assert (err < 0).double().mean() >= 0.8


def test_ais_started_from_inverted_latents_is_still_valid(model):
    """A proposal q = N(z_inv, s^2 I) at the inverted latents: unbiased, and good q = accurate fast."""
    lin, mvn, x = model
    z_inv, _ = audit.invert(lin, x, LATENT, restarts=1, steps=200, lr=0.1, seed=0)
    exact = mvn.log_prob(x)
    res = audit.ais(lin, x, LATENT, SIGMA, n_steps=200, n_chains=16, leapfrog=10, proposal=audit.IsotropicGaussian(z_inv, 0.1), seed=2)
    err = res.log_likelihood - exact
    assert err.abs().max() < 1.0, err
    assert err.mean() <= mc_tolerance(err)
    # a far too narrow q is still unbiased in principle but its weights degenerate: visible in ess
    narrow = audit.ais(lin, x, LATENT, SIGMA, n_steps=2, n_chains=16, leapfrog=2, proposal=audit.IsotropicGaussian(z_inv, 1e-3), seed=2)
    assert narrow.ess.mean() < res.ess.mean()


def test_fixed_step_schedule_reproduces_and_stays_accurate(model):
    lin, mvn, x = model
    pilot = audit.ais(lin, x, LATENT, SIGMA, n_steps=300, n_chains=4, leapfrog=10, seed=5)
    fixed = audit.ais(lin, x, LATENT, SIGMA, n_steps=300, n_chains=16, leapfrog=10, step_sizes=pilot.step_sizes, seed=6)
    assert torch.equal(fixed.step_sizes, pilot.step_sizes)
    err = fixed.log_likelihood - mvn.log_prob(x)
    assert err.abs().max() < 1.5 and err.mean() <= mc_tolerance(err)
    with pytest.raises(ValueError, match=r"step_sizes schedule has shape \(10, 20\), expected"):
        audit.ais(lin, x, LATENT, SIGMA, n_steps=300, step_sizes=torch.ones(10, 20))


def test_bdmc_brackets_the_exact_value_and_the_gap_shrinks():
    lin = ppca(1)
    mvn = exact_marginal(lin)
    gaps, results = [], []
    for steps in (5, 50, 500):
        res = audit.bdmc(lin, LATENT, SIGMA, n_images=12, n_steps=steps, n_chains=8, leapfrog=10, seed=7)
        lower, upper = res  # unpacks as a pair
        assert lower.shape == upper.shape == (12,) and res.data.shape == (12, DIM) and res.latents.shape == (12, LATENT)
        gaps.append(res.gap.mean().item())
        results.append(res)
    assert gaps[0] > gaps[1] > gaps[2], gaps
    # E[gap] >= 0 (upper - lower of two stochastic bounds); a long run's gap is ~0 up to MC error
    assert -mc_tolerance(results[-1].gap) <= gaps[2] < 1.0 and gaps[0] > 10.0, gaps
    # same seed -> same simulated data; the exact value lies between the bounds on average
    exact = mvn.log_prob(results[-1].data)
    assert torch.equal(results[0].data, results[-1].data)
    lo, up = results[-1].lower - exact, results[-1].upper - exact
    assert lo.mean() <= mc_tolerance(lo) and up.mean() >= -mc_tolerance(up)


def test_bdmc_on_the_inversion_started_path_brackets_the_exact_value():
    """Both directions run from q = N(invert(x), s^2 I); the bounds still bracket log p(x)."""
    lin = ppca(2)
    mvn = exact_marginal(lin)
    calls = []

    def init(x):
        calls.append(x.shape)
        return audit.IsotropicGaussian(audit.invert(lin, x, LATENT, restarts=1, steps=100, lr=0.1, seed=0).z, 0.1)

    res = audit.bdmc(lin, LATENT, SIGMA, n_images=12, n_steps=200, n_chains=8, leapfrog=10, proposal=init, seed=9)
    assert calls == [(12, DIM)]
    exact = mvn.log_prob(res.data)
    lo, up = res.lower - exact, res.upper - exact
    assert lo.mean() <= mc_tolerance(lo) and up.mean() >= -mc_tolerance(up)
    assert res.gap.mean() < 1.0 and lo.abs().max() < 1.5
    with pytest.raises(ValueError, match=r"proposal must be a statgan.audit.proposal.Proposal over 12 images of dimension 5"):
        audit.bdmc(lin, LATENT, SIGMA, n_images=12, n_steps=3,
                   proposal=lambda x: audit.IsotropicGaussian(torch.zeros(3, 5, dtype=x.dtype), 0.1))


def test_select_sigma_finds_the_true_noise_level(model):
    lin, mvn, x = model
    sel = audit.select_sigma(lin, x[:10], LATENT, candidates=(0.1, 0.5, 2.0), n_steps=100, n_chains=4, seed=0)
    assert sel.sigma == 0.5
    assert sel.log_likelihood.shape == (3, 10) and sel.mean_log_likelihood.shape == (3,)
    assert int(sel.mean_log_likelihood.argmax()) == 1


def test_hmc_costs_L_gradient_evaluations_per_transition(model):
    lin, _, x = model
    g = Counting(lin)
    audit.ais(g, x[:3], LATENT, SIGMA, n_steps=7, n_chains=2, leapfrog=4, seed=0)
    assert g.calls == 1 + (7 - 1) * 4  # one initial evaluation, then L per transition, chunk of 3 x 2 chains


def test_dcgan_with_batchnorm_modes_and_grads_restored_and_seeded():
    torch.manual_seed(0)
    G = nets.build_generator("dcgan", (1, 28, 28), 8, width=4, norm="batch", dropout=0.1)
    G.train()
    G.net.block1.eval()  # a mixed state must come back exactly
    before = [(n, m.training) for n, m in G.named_modules()]
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    a = audit.ais(G, x, 8, 0.2, n_steps=5, n_chains=2, leapfrog=2, seed=11, batch_size=2)
    b = audit.ais(G, x, 8, 0.2, n_steps=5, n_chains=2, leapfrog=2, seed=11, batch_size=2)
    assert torch.equal(a.log_likelihood, b.log_likelihood) and torch.isfinite(a.log_likelihood).all()
    assert a.latents.shape == (3, 2, 8) and a.log_weights.shape == (3, 2)
    assert [(n, m.training) for n, m in G.named_modules()] == before
    assert all(p.requires_grad for p in G.parameters()) and all(p.grad is None for p in G.parameters())
    # eval mode: an image's likelihood does not depend on its batch mates
    c = audit.ais(G, x[:1], 8, 0.2, n_steps=1, n_chains=2, leapfrog=2, seed=3)
    d = audit.ais(G, x[:2], 8, 0.2, n_steps=1, n_chains=2, leapfrog=2, seed=3)
    assert torch.allclose(c.log_likelihood, d.log_likelihood[:1])


def test_bits_per_dim_and_schedule():
    assert audit.bits_per_dim(torch.tensor([-100.0]), 50, scale=1.0).item() == pytest.approx(100 / (50 * math.log(2)))
    assert audit.bits_per_dim(0.0, 4) == pytest.approx(math.log(127.5) / math.log(2))
    assert torch.equal(linear_schedule(4), torch.tensor([0, 0.25, 0.5, 0.75, 1], dtype=torch.float64))
    beta = sigmoid_schedule(100)
    assert beta[0] == 0 and beta[-1] == 1 and (beta[1:] > beta[:-1]).all()
    assert beta[1] - beta[0] < beta[51] - beta[50]  # denser near the ends


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sigma": 0.0}, r"sigma must be a finite positive number, got 0.0"),
        ({"n_steps": 0}, r"n_steps must be an integer >= 1, got 0"),
        ({"n_chains": 2.5}, r"n_chains must be an integer >= 1, got 2.5"),
        ({"schedule": "cosine"}, r"schedule must be one of 'sigmoid', 'linear', 'adaptive' or a sequence of betas, got 'cosine'"),
        ({"resample": 1.5}, r"resample must be a fraction of the particles in \[0, 1\], got 1.5"),
        ({"cess": 1.0}, r"cess must be in \(0, 1\), got 1.0"),
        ({"pilot_chains": 1}, r"pilot_chains must be an integer >= 2, got 1"),
        ({"schedule": [0.0, 0.7, 0.5, 1.0]}, r"schedule must be non-decreasing from beta_0 = 0 to beta_T = 1"),
        ({"proposal": audit.IsotropicGaussian(torch.zeros(2, LATENT), 0.1)},
         r"proposal must be a statgan.audit.proposal.Proposal over 20 images of dimension 5, got 2 images"),
    ],
)
def test_ais_argument_errors(model, kwargs, message):
    lin, _, x = model
    args = {"sigma": SIGMA, "n_steps": 3, "n_chains": 2, "leapfrog": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        audit.ais(lin, x, LATENT, **args)


def test_ais_shape_errors(model):
    lin, _, x = model
    with pytest.raises(ValueError, match=r"generator output has shape \(4, 50\) .* expected \(4, 7\)"):
        audit.ais(lin, torch.zeros(2, 7, dtype=torch.float64), LATENT, SIGMA, n_steps=2, n_chains=2)
    with pytest.raises(ValueError, match="x contains NaN"):
        audit.ais(lin, torch.full((2, DIM), float("nan"), dtype=torch.float64), LATENT, SIGMA, n_steps=2)


def test_custom_prior(model):
    """A wider prior z ~ N(0, 2^2 I) gives x ~ N(b, 4 W W^T + sigma^2 I); the global RNG is untouched."""
    lin, _, x = model
    W, b = lin.weight.detach(), lin.bias.detach()
    exact = torch.distributions.MultivariateNormal(b, 4 * W @ W.T + SIGMA**2 * torch.eye(DIM, dtype=torch.float64)).log_prob(x)
    prior = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(LATENT, dtype=torch.float64), 2 * torch.ones(LATENT, dtype=torch.float64)), 1)
    state = torch.get_rng_state()
    res = audit.ais(lin, x, LATENT, SIGMA, n_steps=1000, n_chains=8, leapfrog=10, prior=prior, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    err = res.log_likelihood - exact
    # the wider prior is a harder start (more mass to anneal away); accuracy, not the 1-nat bar, is checked
    assert err.abs().max() < 1.5 and -0.5 < err.mean() <= mc_tolerance(err), err
    with pytest.raises(ValueError, match=r"prior must have event_shape \(5,\)"):
        audit.ais(lin, x, LATENT, SIGMA, n_steps=2, prior=torch.distributions.Normal(0.0, 1.0))


def test_works_when_called_under_inference_mode(model):
    lin, _, x = model
    with torch.inference_mode():
        ll = audit.ais_log_likelihood(lin, x[:2], LATENT, SIGMA, n_steps=3, n_chains=2, leapfrog=2, seed=0)
        z, err = audit.invert(lin, x[:2], LATENT, restarts=1, steps=3, seed=0)
    assert torch.isfinite(ll).all() and torch.isfinite(err).all()
