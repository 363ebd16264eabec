"""The Laplace-mixture proposal, and AIS / importance sampling / BDMC from it, against exact likelihoods.

* Linear G (probabilistic PCA): the posterior is Gaussian, so the Laplace approximation is exact:
  its evidence equals the closed-form log p(x) and importance weights are constant (ESS = K).
* Nonlinear G with a 2-D latent: the truth is a Riemann sum of p(z) p(x|z) over a fine grid. The
  integrand is smooth and decays like a Gaussian of width w >= 0.02 (the posterior's narrowest
  spread here), so by Poisson summation the relative error of a grid of step h is of order
  exp(-2 pi^2 w^2 / h^2) -- with h = 0.006, below 1e-40; the test also checks that a finer and wider
  grid (h = 0.004 on [-5, 5]^2 instead of 0.006 on [-4, 4]^2) changes log p(x) by < 1e-6 nats.
  G(z) = (z1^2, z2^2, z1 z2) satisfies G(z) = G(-z): a posterior with two modes of equal mass;
  G(z) = (z1^2, z2^2, z1^2 + 2 z2^2) is invariant under each sign flip: four modes.

Monte Carlo tolerances: the per-image error of log p^ has a standard deviation estimated from the
images themselves; the mean error over B images must lie within 3 standard errors (3 sd / sqrt(B),
a 0.13 % one-sided normal tail) of 0, plus 0.02 nats for the online step-size adaptation's bias
(see statgan.audit.ais). E[log p^] <= log p (Jensen) is one-sided, so lower bounds are checked
from above and upper bounds from below.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from statgan import audit
from statgan.audit.posterior import MODE_WEIGHTS, LaplaceMixture, LaplaceOptions, jacobian, laplace_proposal
from statgan.audit.proposal import GaussianMixture, IsotropicGaussian

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMA = 0.1


def mc_tolerance(err: torch.Tensor) -> float:
    return 3.0 * err.std().item() / math.sqrt(err.numel()) + 0.02


class Quadratic(nn.Module):
    """G(z) = a (z1^2, z2^2, z1 z2) (G(z) = G(-z): two posterior modes), or with ``four=True``
    a (z1^2, z2^2, z1^2 + 2 z2^2) (a function of z1^2 and z2^2: four modes)."""

    def __init__(self, a: float = 1.0, four: bool = False) -> None:
        super().__init__()
        self.a, self.four = a, four

    def forward(self, z):
        z1, z2 = z[:, 0], z[:, 1]
        third = z1.square() + 2 * z2.square() if self.four else z1 * z2
        return self.a * torch.stack([z1.square(), z2.square(), third], 1)


class Curved(nn.Module):
    """A smooth, non-symmetric G: R^2 -> R^6, tanh of a linear map plus a bend (one posterior mode
    for the images used)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.W = nn.Parameter(torch.randn(6, 2, generator=g, dtype=torch.float64), requires_grad=False)
        self.b = nn.Parameter(0.3 * torch.randn(6, generator=g, dtype=torch.float64), requires_grad=False)

    def forward(self, z):
        return torch.tanh(z @ self.W.T + self.b) + 0.3 * z[:, :1].square()


def grid_log_likelihood(G: nn.Module, x: torch.Tensor, sigma: float = SIGMA, h: float = 0.006,
                        lim: float = 4.0) -> torch.Tensor:
    """log p(x) = log sum_grid h^2 N(z; 0, I) N(x; G(z), sigma^2 I) for each image (float64), the
    grid [-lim, lim]^2 in slabs of rows (memory)."""
    u = torch.arange(-lim, lim + h / 2, h, dtype=torch.float64)
    D = x.shape[1]
    const = -0.5 * D * math.log(2 * math.pi * sigma**2) - math.log(2 * math.pi) + 2 * math.log(h)
    parts = []
    for rows in u.split(200):
        z = torch.cartesian_prod(rows, u)
        with torch.no_grad():
            g = G(z)
        sq = torch.cdist(x.double(), g.double()).square()  # (B, N)
        parts.append(torch.logsumexp(-0.5 * sq / sigma**2 - 0.5 * z.square().sum(1), 1))
    return torch.logsumexp(torch.stack(parts, 1), 1) + const


def simulate(G: nn.Module, z: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = G(z)
    return out + SIGMA * torch.randn(out.shape, generator=g, dtype=out.dtype)


def candidates(G: nn.Module, x: torch.Tensor, restarts: int = 32) -> torch.Tensor:
    """Every restart's optimum; 32 random starts find all four sign-flipped optima here (16 missed
    one of them for one image: finding the modes is the inversion's job, combining them the mixture's)."""
    return audit.invert(G, x, 2, restarts=restarts, steps=200, lr=0.1, seed=0).restart_z


# latents away from the axes, so that the sign-flipped modes are well separated (|z_i| >= 0.8)
Z_TRUE = torch.tensor([[1.5, -1.2], [-0.9, 1.4], [1.1, 0.8], [-1.3, -1.6], [0.8, -1.0], [1.7, 1.0]],
                      dtype=torch.float64)


@pytest.fixture(scope="module")
def four_modes():
    G = Quadratic(four=True)
    x = simulate(G, Z_TRUE)
    return G, x, grid_log_likelihood(G, x)


def test_grid_truth_is_converged(four_modes):
    G, x, exact = four_modes
    # a finer and wider grid gives the same value: the discretisation and truncation errors are < 1e-6 nats
    assert torch.allclose(grid_log_likelihood(G, x, h=0.004, lim=5.0), exact, atol=1e-6)


def test_laplace_is_exact_for_a_linear_generator():
    """PPCA: Laplace evidence = closed form; IS weights constant (ESS = K); AIS the same."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(5, 50).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(50, 5, generator=g, dtype=torch.float64))
        lin.bias.copy_(0.5 * torch.randn(50, generator=g, dtype=torch.float64))
    sigma = 0.5
    W, b = lin.weight.detach(), lin.bias.detach()
    mvn = torch.distributions.MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(50, dtype=torch.float64))
    x = mvn.sample((8,))
    exact = mvn.log_prob(x)
    z0 = torch.randn(8, 2, 5, generator=g, dtype=torch.float64)  # far from the mode: refinement + GN step
    q = laplace_proposal(lin, x, z0, sigma)
    assert (q.n_modes == 1).all()  # both starts reach the one mode in one Gauss-Newton step
    assert torch.allclose(q.laplace_log_likelihood, exact, atol=1e-6)
    res = audit.ais(lin, x, 5, sigma, n_steps=1, n_chains=32, proposal=q, seed=0)
    assert torch.allclose(res.log_likelihood, exact, atol=1e-6) and (res.ess > 31.99).all()
    # J by forward mode equals W
    assert torch.allclose(jacobian(lin, z0[:, 0]), W.expand(8, 50, 5))


def test_mixture_keeps_all_four_modes_and_single_mode_loses_three_quarters(four_modes):
    G, x, exact = four_modes
    q = laplace_proposal(G, x, candidates(G, x), SIGMA)
    assert isinstance(q, LaplaceMixture) and q.n_modes.tolist() == [4] * len(x)
    # symmetric modes have equal Laplace evidence, hence equal weights (up to how far the optimiser converged)
    w = q.log_weights.exp().sort(-1, descending=True).values
    assert torch.allclose(w[:, :4], torch.full((len(x), 4), 0.25, dtype=torch.float64), atol=1e-3) and (w[:, 4:] == 0).all()
    mix = audit.ais(G, x, 2, SIGMA, n_steps=1, n_chains=400, proposal=q, seed=1)
    err = mix.log_likelihood - exact
    # 400 IS samples: the estimate is within MC error of the truth, and the Laplace fit is good (ESS)
    assert err.abs().max() < 0.1 and abs(err.mean()) <= mc_tolerance(err), err
    assert (mix.ess > 0.5 * 400).all()
    # one Laplace component (the best restart only): weights p/q ~ p(x) / 4 on its quarter of the mass
    best = q.means[torch.arange(len(x)), q.log_evidence.argmax(-1)].unsqueeze(1)
    single = laplace_proposal(G, x, best, SIGMA, LaplaceOptions(jacobians=1, newton_steps=0))
    assert (single.n_modes == 1).all()
    one = audit.ais(G, x, 2, SIGMA, n_steps=1, n_chains=400, proposal=single, seed=1)
    assert torch.allclose(one.log_likelihood - exact, torch.full_like(exact, -math.log(4)), atol=0.1)


def test_ais_and_bdmc_from_the_mixture_bracket_the_truth(four_modes):
    G, x, exact = four_modes
    q = laplace_proposal(G, x, candidates(G, x), SIGMA)
    res = audit.ais(G, x, 2, SIGMA, n_steps=50, n_chains=16, leapfrog=5, proposal=q, step_size=0.01, seed=2)
    err = res.log_likelihood - exact
    assert err.abs().max() < 0.2 and err.mean() <= mc_tolerance(err), err

    def proposal(xs):
        return laplace_proposal(G, xs, candidates(G, xs), SIGMA)

    bd = audit.bdmc(G, 2, SIGMA, n_images=16, n_steps=50, n_chains=8, leapfrog=5, step_size=0.01, proposal=proposal,
                    seed=4)
    truth = grid_log_likelihood(G, bd.data.double())
    lo, up = bd.lower - truth, bd.upper - truth
    assert isinstance(bd.proposal, LaplaceMixture)
    assert lo.mean() <= mc_tolerance(lo) and up.mean() >= -mc_tolerance(up), (lo, up)
    assert bd.gap.median() < 0.2


def test_two_mode_generator_and_equal_weights():
    """G(z) = G(-z): two modes of equal mass; evidence and equal weights agree; both are exact."""
    G = Quadratic(four=False)
    x = simulate(G, Z_TRUE, seed=1)
    exact = grid_log_likelihood(G, x)
    cand = candidates(G, x)
    qe = laplace_proposal(G, x, cand, SIGMA)
    qq = laplace_proposal(G, x, cand, SIGMA, LaplaceOptions(weights="equal"))
    assert qe.n_modes.tolist() == [2] * len(x) and torch.equal(qe.kept, qq.kept)
    for q in (qe, qq):
        est = audit.ais(G, x, 2, SIGMA, n_steps=1, n_chains=400, proposal=q, seed=3).log_likelihood
        err = est - exact
        assert err.abs().max() < 0.1 and abs(err.mean()) <= mc_tolerance(err), err
    assert set(MODE_WEIGHTS) == {"evidence", "equal"}


def test_curved_generator_ais_is_within_mc_error_and_bdmc_brackets():
    G = Curved()
    z = torch.randn(12, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = simulate(G, z, seed=2)
    exact = grid_log_likelihood(G, x)
    q = laplace_proposal(G, x, candidates(G, x, restarts=4), SIGMA)
    res = audit.ais(G, x, 2, SIGMA, n_steps=30, n_chains=16, leapfrog=5, proposal=q, step_size=0.02, seed=6)
    err = res.log_likelihood - exact
    assert err.abs().max() < 0.3 and err.mean() <= mc_tolerance(err), err
    bd = audit.bdmc(G, 2, SIGMA, n_images=12, n_steps=30, n_chains=8, leapfrog=5, step_size=0.02, seed=7,
                    proposal=lambda xs: laplace_proposal(G, xs, candidates(G, xs, restarts=4), SIGMA))
    truth = grid_log_likelihood(G, bd.data.double())
    lo, up = bd.lower - truth, bd.upper - truth
    assert lo.mean() <= mc_tolerance(lo) and up.mean() >= -mc_tolerance(up), (lo, up)
    assert bd.gap.median() < 0.5


def test_mixture_density_is_normalised_and_its_gradient_exact():
    """The mixture's log q integrates to 1 (grid) and its gradient matches autograd."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(1, 3, 2, generator=g, dtype=torch.float64)
    A = torch.randn(1, 3, 2, 2, generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(A @ A.transpose(-1, -2) + 0.5 * torch.eye(2, dtype=torch.float64))
    q = GaussianMixture(means, chol, torch.log(torch.tensor([[0.2, 0.8, 0.0]], dtype=torch.float64)))
    h = 0.03  # the narrowest component's sd is > 0.3 here: the Riemann sum is exact to ~1e-40 (see above)
    u = torch.arange(-12, 12, h, dtype=torch.float64)
    z = torch.cartesian_prod(u, u).unsqueeze(0)
    lq, _ = q.log_prob_and_grad(z)
    assert torch.logsumexp(lq, -1).item() + 2 * math.log(h) == pytest.approx(0.0, abs=1e-6)
    zz = torch.randn(1, 5, 2, generator=g, dtype=torch.float64).requires_grad_(True)
    lq, grad = q.log_prob_and_grad(zz)
    (auto,) = torch.autograd.grad(lq.sum(), zz)
    assert torch.allclose(grad, auto)
    # samples: moments of 20,000 draws match the mixture's mean (3-sigma MC tolerance per coordinate)
    s = q.sample(20000, torch.Generator().manual_seed(1))[0]
    mean = (0.2 * means[0, 0] + 0.8 * means[0, 1])
    assert ((s.mean(0) - mean).abs() < 3 * s.std(0) / math.sqrt(20000)).all()
    iso = IsotropicGaussian(torch.zeros(2, 2, dtype=torch.float64), 0.5)
    assert iso[0:1].mean.shape == (1, 2)


def test_laplace_proposal_argument_errors():
    G = Quadratic()
    x = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"weights must be one of 'evidence', 'equal', got 'mean'"):
        laplace_proposal(G, x, torch.zeros(3, 1, 2, dtype=torch.float64), SIGMA, LaplaceOptions(weights="mean"))
    with pytest.raises(ValueError, match=r"max_scale must be in \(0, 1\]"):
        laplace_proposal(G, x, torch.zeros(3, 1, 2, dtype=torch.float64), SIGMA, LaplaceOptions(max_scale=2.0))
    with pytest.raises(ValueError, match=r"candidates must be a tensor of shape \(B, R, d\) or \(B, d\) with B = 3"):
        laplace_proposal(G, x, torch.zeros(2, 2, dtype=torch.float64), SIGMA)
    q = laplace_proposal(G, x, torch.ones(3, 2, dtype=torch.float64), SIGMA)
    with pytest.raises(ValueError, match=r"proposal must be a statgan.audit.proposal.Proposal over 2 images"):
        audit.ais(G, x[:2], 2, SIGMA, n_steps=2, proposal=q)


def test_settings_name_the_proposals_and_refuse_unknown_ones():
    from statgan.audit import stages
    from statgan.audit.settings import MODE_WEIGHTS as SETTING_WEIGHTS
    from statgan.audit.settings import PROPOSALS, AuditSettings
    from statgan.errors import ConfigError

    assert tuple(stages.PROPOSAL_BUILDERS) == PROPOSALS and set(SETTING_WEIGHTS) == set(MODE_WEIGHTS)
    with pytest.raises(ConfigError, match="unknown proposal 'gauss'; expected one of: laplace, isotropic"):
        AuditSettings(proposal="gauss").validate()
    with pytest.raises(ConfigError, match="unknown mode weights 'mean'"):
        AuditSettings(mode_weights="mean").validate()
    with pytest.raises(ConfigError, match="precondition must be true or false, got 'yes'"):
        AuditSettings(precondition="yes").validate()
    with pytest.raises(ConfigError, match="posterior_sigma_from must be a finite positive number"):
        AuditSettings(posterior_sigma_from=0.0).validate()
    # the legacy settings (the benchmark's reference) are the audit before this proposal, unit mass included
    legacy = AuditSettings(**AuditSettings.LEGACY).validate()
    assert legacy.proposal == "isotropic" and legacy.precondition is False and legacy.posterior_sigma_from is None


def test_invert_keeps_every_restart_and_starts_where_told():
    G = Quadratic(four=True)
    x = simulate(G, Z_TRUE[:2])
    res = audit.invert(G, x, 2, restarts=3, steps=50, lr=0.1, seed=0)
    assert res.restart_z.shape == (2, 3, 2)
    best = res.restart_objectives.argmin(1)
    assert torch.equal(res.restart_z[torch.arange(2), best], res.z)
    # zero steps from given starts: the starts come back unchanged
    again = audit.invert(G, x, 2, steps=0, init=res.restart_z)
    assert torch.equal(again.restart_z, res.restart_z)
    with pytest.raises(ValueError, match=r"init must be a tensor of shape \(B, restarts, latent_dim\) = \(2, R, 2\)"):
        audit.invert(G, x, 2, init=torch.zeros(2, 2, dtype=torch.float64))


def test_invert_with_a_prior_weight_schedule_ends_at_the_last_objective():
    """A per-step lambda (the noise-annealed posterior search) ends at the minimiser of the last
    step's objective: for a linear G that is ridge regression, in closed form."""
    g = torch.Generator().manual_seed(1)
    lin = nn.Linear(4, 30).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(30, 4, generator=g, dtype=torch.float64))
    x = torch.randn(3, 30, generator=g, dtype=torch.float64)
    steps, lam = 2000, 0.5
    schedule = [lam * 100 ** max(0.0, 1 - 2 * t / steps) for t in range(steps)]  # 100 lambda, down to lambda at half-way
    res = audit.invert(lin, x, 4, restarts=2, steps=steps, lr=0.1, prior_weight=schedule, seed=0)
    W, b = lin.weight.detach(), lin.bias.detach()
    # argmin_z |W z + b - x|^2 / D + (lambda / d) |z|^2
    A = W.T @ W / 30 + lam / 4 * torch.eye(4, dtype=torch.float64)
    ridge = torch.linalg.solve(A, (W.T @ (x - b).T) / 30).T
    # deterministic optimisation of a strongly convex quadratic: the 1000 steps at the final lambda
    # (cosine lr from 0.05 to 0) reach it to ~1e-9 here; 1e-6 is the convergence tolerance
    assert torch.allclose(res.z, ridge, atol=1e-6)
    assert torch.allclose(res.objective, res.mse + lam / 4 * res.z.square().sum(-1), atol=1e-12)
    with pytest.raises(ValueError, match=r"prior_weight as a schedule must hold one value per step \(2000\), got 2"):
        audit.invert(lin, x, 4, steps=steps, prior_weight=[1.0, 0.5])
    with pytest.raises(ValueError, match=r"prior_weight must be"):
        audit.invert(lin, x, 4, steps=steps, prior_weight=[-1.0] * steps)


def test_noise_schedule_is_geometric_then_flat():
    from statgan.audit.posterior import ANNEAL_FRACTION, noise_schedule

    s = noise_schedule(0.1, 1.0, 100)
    ramp = round(ANNEAL_FRACTION * 100)
    assert len(s) == 100 and s[0] == 1.0 and all(v == pytest.approx(0.1, rel=1e-12) for v in s[ramp:])
    # geometric: constant ratio (0.1 / 1.0)^(1 / ramp) between consecutive steps of the ramp
    ratios = torch.tensor(s[1:ramp + 1]) / torch.tensor(s[:ramp])
    assert torch.allclose(ratios, torch.full((ramp,), 0.1 ** (1 / ramp), dtype=ratios.dtype))
    assert noise_schedule(0.1, None, 5) == [0.1] * 5 and noise_schedule(0.1, 0.05, 3) == [0.1] * 3
    with pytest.raises(ValueError, match="sigma_from"):
        LaplaceOptions(sigma_from=-1.0).validate()


def test_jacobian_does_not_surface_torchs_internal_jit_deprecation():
    # torch loads its forward-AD decompositions (which call the deprecated torch.jit.script) on the
    # first jvp of a process, so the check needs a fresh interpreter
    code = ("import torch; from statgan.audit.posterior import jacobian; "
            "G = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).eval(); "
            "print(tuple(jacobian(G, torch.randn(2, 3)).shape))")
    out = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(2, 4, 3)" and "deprecated" not in out.stderr
