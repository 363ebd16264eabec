"""HMC with a mass matrix from the proposal (``ais(..., precondition=True)``), on linear-Gaussian
generators where the posterior and log p(x) are closed-form.

For G(z) = W z + b, x | z ~ N(G(z), s^2 I), z ~ N(0, I): the posterior is N(mu, P^{-1}) with
P = I + W^T W / s^2 and mu = P^{-1} W^T (x - b) / s^2, and x ~ N(b, W W^T + s^2 I).

* Invariance: chains started from exact draws of a Gaussian target and moved by many preconditioned
  transitions (mass matrix deliberately unlike the target's precision) must keep the target's
  mean and covariance. A leapfrog with the whitening applied on the wrong side is not volume
  preserving, and its chains drift off the target; the tolerances are 4 standard errors of the
  mean (per coordinate) and of the variance (sd of a Gaussian sample variance: var * sqrt(2/n)).
* Accuracy: on an ill-conditioned posterior (scales from s / 30 to 1), AIS from a proposal with the
  posterior's shape but a displaced centre must be within Monte-Carlo error of the exact log p(x)
  (3 standard errors + 0.02 nats for the step-size adaptation, as in test_audit_ais.py), and BDMC
  must bracket it. At the same number of steps, unit mass leaves a gap many times wider.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from statgan import audit
from statgan.audit._common import as_prior
from statgan.audit.annealing import hmc_kernel, inverse_mass_chol, make_evaluator
from statgan.audit.proposal import GaussianMixture, IsotropicGaussian

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMA = 0.1


def linear(singular_values, D: int, seed: int) -> nn.Linear:
    """G(z) = W z + b with W = U diag(sv) V^T (random orthonormal U, V), float64."""
    g = torch.Generator().manual_seed(seed)
    d = len(singular_values)
    U, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lin = nn.Linear(d, D).double()
    with torch.no_grad():
        lin.weight.copy_(U @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ V.T)
        lin.bias.copy_(0.3 * torch.randn(D, generator=g, dtype=torch.float64))
    return lin


def posterior(lin: nn.Linear, x: torch.Tensor, sigma: float = SIGMA):
    """(mu (B, d), P (d, d)): the exact Gaussian posterior of each image."""
    W, b = lin.weight.detach(), lin.bias.detach()
    P = torch.eye(W.shape[1], dtype=torch.float64) + W.T @ W / sigma**2
    mu = torch.linalg.solve(P, (W.T @ (x - b).T) / sigma**2).T
    return mu, P


def exact_log_likelihood(lin: nn.Linear, x: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    W, b = lin.weight.detach(), lin.bias.detach()
    cov = W @ W.T + sigma**2 * torch.eye(W.shape[0], dtype=torch.float64)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


def simulate(lin: nn.Linear, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, lin.in_features, generator=g, dtype=torch.float64)
    with torch.no_grad():
        return lin(z) + SIGMA * torch.randn(n, lin.out_features, generator=g, dtype=torch.float64)


def mc_tolerance(err: torch.Tensor) -> float:
    return 3.0 * err.std().item() / math.sqrt(err.numel()) + 0.02


def displaced_proposal(lin: nn.Linear, x: torch.Tensor, shift: float, seed: int) -> GaussianMixture:
    """One Gaussian per image with the exact posterior precision, centred ``shift`` posterior
    standard deviations (in whitened units, a random direction) away from the posterior mean."""
    mu, P = posterior(lin, x)
    L = torch.linalg.cholesky(P)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(mu.shape, generator=g, dtype=torch.float64)
    u = shift * u / u.norm(dim=1, keepdim=True)
    offset = torch.linalg.solve_triangular(L.T, u.T, upper=True).T  # L^{-T} u: |offset|_P = shift
    B, d = mu.shape
    return GaussianMixture((mu + offset).unsqueeze(1), L.expand(B, 1, d, d).clone(), torch.zeros(B, 1))


def test_preconditioned_hmc_leaves_a_gaussian_target_invariant():
    d, n = 4, 4000
    lin = linear([0.05, 0.5, 3.0, 20.0], D=6, seed=0)
    x = simulate(lin, 1, seed=1)
    mu, P = posterior(lin, x)
    cov = torch.linalg.inv(P)
    g = torch.Generator().manual_seed(2)
    z0 = (mu + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T).unsqueeze(0)
    # a mass matrix of P's scales but not P (C = chol(P) (I + 0.3 R), M = C C^T): the whitened target
    # is near-isotropic, but not exactly, and L^{-1} is far from symmetric
    C = torch.linalg.cholesky(P) @ (torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, generator=g, dtype=torch.float64))
    inv_chol = torch.linalg.inv(torch.linalg.cholesky(C @ C.T)).unsqueeze(0)
    evaluate = make_evaluator(lin, x, SIGMA, as_prior(None, d), None)
    kernel = hmc_kernel(evaluate, 3, inv_chol)
    state = evaluate(z0)
    eps = torch.full((1, 1, 1), 0.3, dtype=torch.float64)
    accepted = []
    for _ in range(30):
        state, acc = kernel(state, torch.ones(1, dtype=torch.float64), eps, g)
        accepted.append(acc.mean().item())
    z = state.z[0]
    assert 0.2 < sum(accepted) / len(accepted) < 0.99  # the chains moved (and not trivially)
    moved = (z - z0[0]).norm(dim=1) / cov.diagonal().sum().sqrt()
    assert moved.median() > 0.3
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((z.mean(0) - mu[0]).abs() < 4 * se_mean).all(), ((z.mean(0) - mu[0]) / se_mean)
    var = z.var(0)
    se_var = cov.diagonal() * math.sqrt(2.0 / n)
    assert ((var - cov.diagonal()).abs() < 4 * se_var).all(), ((var - cov.diagonal()) / se_var)


def test_preconditioned_ais_is_exact_and_far_tighter_than_unit_mass():
    lin = linear([0.3, 1.0, 3.0, 10.0, 30.0, 30.0], D=20, seed=3)  # posterior sd from s/30 to ~1
    d = lin.in_features
    x = simulate(lin, 16, seed=4)
    exact = exact_log_likelihood(lin, x)
    q = displaced_proposal(lin, x, shift=2.0, seed=5)
    res = audit.ais(lin, x, d, SIGMA, n_steps=40, n_chains=16, leapfrog=5, proposal=q, precondition=True,
                    step_size=0.5, seed=6)
    err = res.log_likelihood - exact
    assert err.mean() <= mc_tolerance(err) and err.mean() >= -0.1, err

    def proposal(xs):
        return displaced_proposal(lin, xs, shift=2.0, seed=7)

    gaps = {}
    for pre, eps in ((True, 0.5), (False, 0.01)):
        bd = audit.bdmc(lin, d, SIGMA, n_images=16, n_steps=40, n_chains=4, leapfrog=5, step_size=eps,
                        proposal=proposal, precondition=pre, seed=8)
        truth = exact_log_likelihood(lin, bd.data)
        lo, up = bd.lower - truth, bd.upper - truth
        assert lo.mean() <= mc_tolerance(lo) and up.mean() >= -mc_tolerance(up), (pre, lo, up)
        gaps[pre] = bd.gap.median().item()
    assert gaps[True] < 0.5 and gaps[False] > 5 * gaps[True], gaps


def test_precondition_needs_a_proposal_and_identity_proposals_change_nothing():
    lin = linear([1.0, 2.0], D=5, seed=9)
    x = simulate(lin, 3, seed=10)
    with pytest.raises(ValueError, match="precondition=True takes the mass matrix from a proposal"):
        audit.ais(lin, x, 2, SIGMA, n_steps=3, n_chains=2, precondition=True)
    with pytest.raises(ValueError, match="precondition=True takes the mass matrix from a proposal"):
        audit.bdmc(lin, 2, SIGMA, n_images=2, n_steps=3, n_chains=2, precondition=True)
    # an isotropic proposal has no mass matrix: preconditioning is the identity, the same chains
    q = IsotropicGaussian(torch.zeros(3, 2, dtype=torch.float64), 0.5)
    assert inverse_mass_chol(q, True, torch.float64) is None
    a = audit.ais(lin, x, 2, SIGMA, n_steps=5, n_chains=2, proposal=q, precondition=True, seed=11)
    b = audit.ais(lin, x, 2, SIGMA, n_steps=5, n_chains=2, proposal=q, precondition=False, seed=11)
    assert torch.equal(a.log_weights, b.log_weights)
