"""Annealed importance sampling (AIS) with Hamiltonian Monte Carlo for GAN log-likelihoods, and
bidirectional Monte Carlo (BDMC) to bound its error.

Model (Wu, Burda, Salakhutdinov & Grosse, "On the Quantitative Analysis of Decoder-Based Generative
Models", ICLR 2017): a generator G becomes a density model by adding Gaussian observation noise,

    z ~ p(z) = N(0, I),        x | z ~ N(G(z), sigma^2 I),
    log p(x|z) = -||G(z) - x||^2 / (2 sigma^2) - (D/2) log(2 pi sigma^2)            (D = data dims).

``sigma`` is a *standard deviation* here (Wu et al.'s code takes a variance). The marginal
p(x) = E_{p(z)}[p(x|z)] is estimated by AIS (Neal 2001) along the geometric path

    f_t(z) = p(z) p(x|z)^{beta_t},    0 = beta_0 < beta_1 < ... < beta_T = 1,

with z_0 ~ p(z) exactly, one HMC transition leaving f_t invariant after each weight update, and

    log w = sum_{t=1}^{T} (beta_t - beta_{t-1}) log p(x | z_{t-1}),
    log p^(x) = log mean_k exp(log w_k)        (K independent chains; log-sum-exp, float64).

E[p^(x)] = p(x), so by Jensen E[log p^(x)] <= log p(x): a *stochastic lower bound*, and by
Markov's inequality Pr[log p^(x) > log p(x) + b] < e^{-b}. Running the same chain backwards from an
exact posterior sample (available for data simulated from the model) gives an unbiased estimate of
1/p(x), hence a stochastic *upper* bound; the gap between the two bounds the error of both (BDMC,
Grosse, Ghahramani & Adams 2015; used for GANs by Wu et al. 2017).

The chains may instead start from any normalised proposal q(z | x) with exact samples and density
(``init=`` for N(z_inv, s^2 I), ``proposal=`` for any :class:`statgan.audit.proposal.Proposal`, e.g.
the Laplace mixture of :mod:`statgan.audit.posterior`), annealing along
f_t = q^{1 - beta_t} (p(z) p(x|z))^{beta_t}: the estimator stays unbiased for p(x), and BDMC's
reverse run back to the same q bounds exactly that estimator.

Implementation notes (why the code looks the way it does):

* Images x chains are one tensor (B, K, d); the generator sees (B*K, d) and the residual against x
  is formed by broadcasting (B, 1, D), so x is never copied K times. No Python loop runs over
  images or chains.
* An HMC transition with L leapfrog steps costs exactly L generator forward+backward passes: the
  energy and gradient at the end of a trajectory are carried into the next transition, and they
  are stored split into log p(z) and log p(x|z) so a change of beta only re-weights them.
* Gradients are taken with :func:`torch.autograd.grad` with respect to z only, feeding
  dlog p(x|z)/dG = -(G(z) - x)/sigma^2 straight into the generator's backward; the generator runs
  in eval mode with frozen parameters (see :mod:`statgan.audit._common`).
* Step sizes are per image (all chains of one image share one), adapted as in Wu et al.'s code:
  a moving average (0.9) of the mean acceptance probability, step x1.02 above the 0.65 target and
  x0.98 below, clipped to [1e-4, 0.5]. The update is a tensor op, so the loop has no host syncs.
  Strictly, online adaptation makes each kernel depend on the chains' past, which AIS theory does
  not cover; the effect is small (it is Wu et al.'s protocol), and a fully valid alternative is to
  pass a fixed per-step schedule (``step_size`` as a (T-1, B) tensor, e.g. the ``step_sizes`` of a
  pilot run). BDMC's reverse chain always uses the forward run's schedule, reversed, so it adapts
  nothing.
* Log weights, energies and the acceptance test are float64; the generator runs in its own dtype.
* Reproducibility: every random draw comes from one torch.Generator (``seed``). On CUDA, cuDNN's
  non-deterministic convolution backward kernels make reruns differ at the ~1e-9 level unless
  ``torch.backends.cudnn.deterministic = True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._common import (
    Prior,
    as_prior,
    check_images,
    chunks,
    frozen,
    generate,
    logmeanexp,
)
from .proposal import IsotropicGaussian, Proposal
from ..runtime import threads
from ..runtime.seeding import SeedLike, make_rng
from ..runtime.validation import check_int, check_positive

__all__ = [
    "AISResult",
    "BDMCResult",
    "SigmaSelection",
    "ais",
    "ais_log_likelihood",
    "bdmc",
    "bits_per_dim",
    "select_sigma",
    "sigmoid_schedule",
    "linear_schedule",
]

#: Wu et al. (2017) HMC step-size adaptation constants.
TARGET_ACCEPTANCE = 0.65
STEP_INCREASE, STEP_DECREASE = 1.02, 0.98
STEP_MIN, STEP_MAX = 1e-4, 0.5
ACCEPTANCE_SLOWNESS = 0.9


# ==== schedules ====================================================================================
def sigmoid_schedule(n_steps: int, delta: float = 4.0) -> Tensor:
    """beta_t = (s(u_t) - s(u_0)) / (s(u_T) - s(u_0)), u = linspace(-delta, delta, T+1), s = sigmoid.

    Wu et al. (2017), delta = 4: denser steps near beta = 0 and 1, where the intermediate
    distributions change fastest. Returns (T+1,) float64 with beta_0 = 0 and beta_T = 1 exactly.
    """
    n_steps = check_int("n_steps", n_steps)
    delta = check_positive("delta", delta)
    s = torch.sigmoid(torch.linspace(-delta, delta, n_steps + 1, dtype=torch.float64))
    beta = (s - s[0]) / (s[-1] - s[0])
    beta[0], beta[-1] = 0.0, 1.0
    return beta


def linear_schedule(n_steps: int) -> Tensor:
    """beta_t = t / T, (T+1,) float64."""
    n_steps = check_int("n_steps", n_steps)
    return torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)


def _resolve_schedule(schedule: Union[str, Tensor, Sequence[float]], n_steps: int) -> Tensor:
    if isinstance(schedule, str):
        if schedule == "sigmoid":
            return sigmoid_schedule(n_steps)
        if schedule == "linear":
            return linear_schedule(n_steps)
        raise ValueError(f"schedule must be 'sigmoid', 'linear' or a tensor of betas, got {schedule!r}")
    beta = torch.as_tensor(schedule, dtype=torch.float64).flatten()
    if beta.numel() != n_steps + 1:
        raise ValueError(f"schedule has {beta.numel()} betas, expected n_steps + 1 = {n_steps + 1}")
    if beta[0] != 0 or beta[-1] != 1 or bool((beta[1:] < beta[:-1]).any()):
        raise ValueError("schedule must be non-decreasing from beta_0 = 0 to beta_T = 1")
    return beta


# ==== small helpers =================================================================================
def bits_per_dim(log_px: Union[Tensor, float], n_dims: int, scale: float = 127.5) -> Union[Tensor, float]:
    """Negative log-likelihood in bits per dimension: (-log p(x) + D log(scale)) / (D ln 2).

    ``log_px`` is a density in nats on the data as given; ``scale`` converts to other units by the
    change of variables p_u(u) = p_x(x) / scale^D for u = scale * x (+ shift). The default 127.5
    gives bits/dim in 8-bit pixel units for data scaled to [-1, 1] by ``pixel / 127.5 - 1`` (the
    unit of the likelihood literature on images; only comparable with dequantised models up to the
    discretisation); ``scale=1`` reports the data's own units.
    """
    n_dims = check_int("n_dims", n_dims)
    scale = check_positive("scale", scale)
    return (-log_px + n_dims * math.log(scale)) / (n_dims * math.log(2.0))


# ==== state and evaluation ==========================================================================
class _State(NamedTuple):
    """A batch of chains (B, K, d) with everything HMC needs, carried between transitions.

    ``ll``/``gll``: log p(x|z) (float64) and its z-gradient; ``lp``/``gp``: log p(z) and gradient;
    ``lq``/``gq``: log q(z) of a non-prior initial distribution, or None when q = p.
    """

    z: Tensor
    ll: Tensor
    gll: Tensor
    lp: Tensor
    gp: Tensor
    lq: Optional[Tensor]
    gq: Optional[Tensor]

    def log_f(self, beta: float) -> Tensor:
        """log f_beta(z) = (1 - beta) log q(z) + beta (log p(z) + log p(x|z)); q = p: log p + beta ll."""
        if self.lq is None:
            return self.lp + beta * self.ll
        return (1.0 - beta) * self.lq + beta * (self.lp + self.ll)

    def grad(self, beta: float) -> Tensor:
        if self.gq is None:
            return torch.add(self.gp, self.gll, alpha=beta)
        return (1.0 - beta) * self.gq + beta * (self.gp + self.gll)

    def increment(self) -> Tensor:
        """d log f_beta / d beta: the AIS weight increment per unit of beta (float64, (B, K))."""
        if self.lq is None:
            return self.ll
        return self.lp + self.ll - self.lq

    def select(self, mask: Tensor, other: "_State") -> "_State":
        """Per chain: ``self`` where mask (B, K) is True, else ``other``."""
        m3 = mask.unsqueeze(-1)
        out = []
        for a, b in zip(self, other):
            if a is None:
                out.append(None)
            else:
                out.append(torch.where(m3 if a.dim() == 3 else mask, a, b))
        return _State(*out)


def _make_evaluator(generator: nn.Module, x: Tensor, sigma: float, prior: Prior,
                    base: Optional[Proposal]) -> Callable[[Tensor], _State]:
    """evaluate(z (B, K, d)) -> _State: one generator forward + backward for all chains."""
    data_shape = tuple(x.shape[1:])
    n_dims = int(math.prod(data_shape))
    x3 = x.reshape(x.shape[0], 1, n_dims)
    neg_inv_s2 = -1.0 / sigma**2
    const = -0.5 * n_dims * math.log(2 * math.pi * sigma**2)

    def evaluate(z: Tensor) -> _State:
        B, K, d = z.shape
        with torch.enable_grad():
            zl = z.detach().requires_grad_(True)
            out = generate(generator, zl.reshape(B * K, d), data_shape)
            r = out.detach().reshape(B, K, n_dims) - x3
            # d log p(x|z) / d G(z) = -(G(z) - x) / sigma^2, pushed through the generator's backward.
            (gll,) = torch.autograd.grad(out, zl, grad_outputs=(r * neg_inv_s2).reshape(out.shape))
        ll = 0.5 * neg_inv_s2 * r.double().square().sum(-1) + const
        lp, gp = prior.log_prob_and_grad(z)
        if base is None:
            return _State(z, ll, gll, lp, gp, None, None)
        lq, gq = base.log_prob_and_grad(z)
        return _State(z, ll, gll, lp, gp, lq, gq)

    return evaluate


def _hmc_transition(state: _State, beta: float, eps: Tensor, n_leapfrog: int,
                    evaluate: Callable[[Tensor], _State], rng: torch.Generator,
                    inv_chol: Optional[Tensor] = None) -> Tuple[_State, Tensor]:
    """One HMC transition leaving f_beta invariant (Neal 2011), for all (B, K) chains at once.

    Leapfrog with per-image step ``eps`` (B, 1, 1); the trajectory's L position updates each cost
    one :func:`evaluate`; the gradient at the start is ``state``'s, carried over. Mass matrix: the
    identity, or M_b = L_b L_b^T given as ``inv_chol`` = L^{-1} (B, d, d). With p = L v the momentum
    is carried whitened, v ~ N(0, I), kinetic energy |v|^2 / 2 = p^T M^{-1} p / 2, and the leapfrog
    updates are v += (eps/2) L^{-1} grad, z += eps L^{-T} v (HMC in the coordinates u = L^T z, where
    a posterior close to N(mu, M^{-1}) is close to isotropic).
    Metropolis test on H = -log f_beta(z) + |v|^2 / 2 in float64; a NaN/inf energy is a rejection.
    Returns the new state and the acceptance probabilities min(1, exp(H0 - H1)) (B, K) float64.
    """
    z = state.z

    def whiten(g: Tensor) -> Tensor:  # L^{-1} g for every chain (rows: g^T L^{-T})
        return g if inv_chol is None else g @ inv_chol.transpose(-1, -2)

    def unwhiten(v: Tensor) -> Tensor:  # L^{-T} v (rows: v^T L^{-1})
        return v if inv_chol is None else v @ inv_chol

    p = torch.randn(z.shape, generator=rng, dtype=z.dtype, device=z.device)
    h0 = 0.5 * p.double().square().sum(-1) - state.log_f(beta)
    p = p + (0.5 * eps) * whiten(state.grad(beta))
    new = state
    for step in range(n_leapfrog):
        z = z + eps * unwhiten(p)
        new = evaluate(z)
        g = whiten(new.grad(beta))
        # full momentum steps in between; the final half step closes the trajectory
        p = p + (eps if step < n_leapfrog - 1 else 0.5 * eps) * g
    h1 = 0.5 * p.double().square().sum(-1) - new.log_f(beta)
    log_ratio = torch.nan_to_num(h0 - h1, nan=-math.inf, posinf=-math.inf)
    log_u = torch.rand(log_ratio.shape, generator=rng, dtype=torch.float64, device=z.device).log()
    accept = log_u < log_ratio
    return new.select(accept, state), log_ratio.clamp(max=0.0).exp()


# ==== results =======================================================================================
@dataclass
class AISResult:
    """Per-image AIS output (B images, K chains, T annealing steps).

    Attributes:
        log_likelihood: (B,) float64, log p^(x) = log mean_k exp(log_weights[:, k]) in nats; a
            stochastic lower bound on log p(x). (In :func:`bdmc`'s reverse run it is
            -log mean_k exp(log_weights[:, k]), a stochastic upper bound.)
        log_weights: (B, K) float64 log importance weights of the chains.
        acceptance: (B,) mean HMC acceptance probability over transitions and chains.
        step_sizes: (T-1, B) leapfrog step size of every transition, in the generator's dtype (a
            schedule that can be passed back as ``step_size`` for a non-adaptive, strictly valid
            rerun).
        latents: (B, K, d) final chain states (approximate posterior samples for forward runs).
        sigma, n_steps, n_chains, leapfrog: the settings used.
    """

    log_likelihood: Tensor
    log_weights: Tensor
    acceptance: Tensor
    step_sizes: Tensor
    latents: Tensor
    sigma: float
    n_steps: int
    n_chains: int
    leapfrog: int

    @property
    def ess(self) -> Tensor:
        """(B,) effective sample size of the chains' weights, (sum w)^2 / sum w^2, in [1, K]."""
        lw = self.log_weights
        return torch.exp(2 * torch.logsumexp(lw, 1) - torch.logsumexp(2 * lw, 1))


@dataclass
class BDMCResult:
    """Bidirectional Monte Carlo bounds on simulated data; unpacks as ``lower, upper = bdmc(...)``.

    Attributes:
        lower: (B,) float64 forward-AIS estimate, a stochastic lower bound on log p(x).
        upper: (B,) float64 reverse-AIS estimate, a stochastic upper bound on log p(x).
        data: (B, *data_shape) the simulated images x = G(z) + sigma * noise.
        latents: (B, d) the exact latents z that generated them (exact posterior samples).
        forward, reverse: the two :class:`AISResult` runs.
        proposal: the initial distribution q of both runs (None: the prior path).
    """

    lower: Tensor
    upper: Tensor
    data: Tensor
    latents: Tensor
    forward: AISResult = field(repr=False)
    reverse: AISResult = field(repr=False)
    proposal: Optional[Proposal] = field(default=None, repr=False)

    @property
    def gap(self) -> Tensor:
        """(B,) upper - lower in nats: bounds the error of either estimate (in expectation)."""
        return self.upper - self.lower

    def __iter__(self) -> Iterator[Tensor]:
        yield self.lower
        yield self.upper


class SigmaSelection(NamedTuple):
    """Result of :func:`select_sigma`: the chosen ``sigma``, the ``candidates`` (C,), the mean
    held-out AIS log-likelihood per candidate (C,) and the per-image values (C, B)."""

    sigma: float
    candidates: Tensor
    mean_log_likelihood: Tensor
    log_likelihood: Tensor


# ==== the annealing loop ============================================================================
def _anneal(evaluate: Callable[[Tensor], _State], z0: Tensor, betas: List[float], n_leapfrog: int,
            eps0: Union[float, Tensor], rng: torch.Generator,
            inv_chol: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor, _State]:
    """Run AIS along ``betas`` (forward 0 -> 1, or reversed 1 -> 0) from chains ``z0`` (B, K, d).

    ``eps0``: a float (initial step size, adapted online) or a (T-1, B) schedule (used as given).
    ``inv_chol``: (B, d, d) L^{-1} of each image's HMC mass matrix L L^T, or None (identity).
    Returns (log_weights (B, K) float64, acceptance (B,), step sizes (T-1, B), final state).
    """
    B, K, _ = z0.shape
    T = len(betas) - 1
    fixed = torch.is_tensor(eps0)
    dev, dt = z0.device, z0.dtype
    if fixed:
        schedule = eps0.to(device=dev, dtype=dt)
        eps = schedule[0].reshape(B, 1, 1) if T > 1 else torch.zeros(B, 1, 1, dtype=dt, device=dev)
    else:
        schedule = torch.empty(max(T - 1, 0), B, dtype=dt, device=dev)
        eps = torch.full((B, 1, 1), float(eps0), dtype=dt, device=dev)
    avg_acc = torch.full((B,), TARGET_ACCEPTANCE, dtype=torch.float64, device=dev)
    acc_sum = torch.zeros(B, dtype=torch.float64, device=dev)
    log_w = torch.zeros(B, K, dtype=torch.float64, device=dev)

    state = evaluate(z0)
    threads.loop_start("ais")  # a command's thread tuner, if any, times each transition
    for t in range(1, T + 1):
        log_w += (betas[t] - betas[t - 1]) * state.increment()
        if t == T:  # the last weight is in; a transition at beta_T would not change the estimate
            break
        if fixed:
            eps = schedule[t - 1].reshape(B, 1, 1)
        else:
            schedule[t - 1] = eps.reshape(B)
        state, acc = _hmc_transition(state, betas[t], eps, n_leapfrog, evaluate, rng, inv_chol)
        acc_mean = acc.mean(1)
        acc_sum += acc_mean
        if not fixed:
            avg_acc.mul_(ACCEPTANCE_SLOWNESS).add_((1 - ACCEPTANCE_SLOWNESS) * acc_mean)
            factor = torch.where(avg_acc > TARGET_ACCEPTANCE, STEP_INCREASE, STEP_DECREASE).to(dt)
            eps = (eps * factor.reshape(B, 1, 1)).clamp_(STEP_MIN, STEP_MAX)
        threads.loop_tick()
    acceptance = acc_sum / max(T - 1, 1)
    return log_w, acceptance, schedule, state


def _setup(generator: nn.Module, x: Tensor, latent_dim: int) -> Tuple[Tensor, torch.device, torch.dtype]:
    """Validate x; the device/dtype to work in (the generator's if it has parameters)."""
    x = check_images("x", x)
    param = next((p for p in generator.parameters() if p.is_floating_point()), None) if isinstance(generator, nn.Module) else None
    device = param.device if param is not None else x.device
    dtype = param.dtype if param is not None else x.dtype
    return x.to(device=device, dtype=dtype), device, dtype


def _check_proposal(proposal: Optional[Proposal], n_images: int, latent_dim: int) -> None:
    if proposal is not None and (not isinstance(proposal, Proposal) or proposal.n_images != n_images
                                 or proposal.dim != latent_dim):
        got = (f"{proposal.n_images} images of dimension {proposal.dim}" if isinstance(proposal, Proposal)
               else type(proposal).__name__)
        raise ValueError(f"proposal must be a statgan.audit.proposal.Proposal over {n_images} images of dimension "
                         f"{latent_dim}, got {got}")


def _inverse_mass_chol(q: Optional[Proposal], precondition: bool, dtype: torch.dtype) -> Optional[Tensor]:
    """L^{-1} (B, d, d) of the proposal's mass matrix (:meth:`Proposal.mass_chol`) when preconditioning."""
    if not precondition or q is None:
        return None
    L = q.mass_chol()
    if L is None:
        return None
    eye = torch.eye(L.shape[-1], dtype=torch.float64, device=L.device).expand_as(L)
    return torch.linalg.solve_triangular(L.double(), eye, upper=False).to(dtype)


def _check_ais_args(sigma: Any, n_steps: Any, n_chains: Any, leapfrog: Any) -> Tuple[float, int, int, int]:
    return (check_positive("sigma", sigma), check_int("n_steps", n_steps), check_int("n_chains", n_chains),
            check_int("leapfrog", leapfrog))


def ais(
    generator: nn.Module,
    x: Tensor,
    latent_dim: int,
    sigma: float,
    n_steps: int = 1000,
    n_chains: int = 16,
    leapfrog: int = 10,
    *,
    step_size: Union[float, Tensor] = 0.1,
    schedule: Union[str, Tensor, Sequence[float]] = "sigmoid",
    prior: Any = None,
    init: Optional[Tensor] = None,
    init_scale: float = 0.1,
    proposal: Optional[Proposal] = None,
    precondition: bool = False,
    batch_size: Optional[int] = None,
    seed: SeedLike = None,
) -> AISResult:
    """AIS estimate of log p(x) for every image, with per-chain details (see the module docstring).

    Args:
        generator: module mapping (N, latent_dim) to (N, *x.shape[1:]).
        x: (B, ...) data, in the generator's output units ([-1, 1] for images).
        latent_dim: dimension d of z.
        sigma: observation noise standard deviation (> 0); choose it with :func:`select_sigma`.
        n_steps: T, the number of annealing steps (intermediate distributions); Wu et al. use
            10,000 for final numbers, Friedman & Weiss 500. Cost: (T - 1) * leapfrog + 1 generator
            forward+backward passes on a batch of B * n_chains.
        n_chains: K independent chains per image (Wu et al.: 16).
        leapfrog: L leapfrog steps per HMC transition (Wu et al.: 10).
        step_size: initial leapfrog step, adapted per image toward 0.65 acceptance, or a (T - 1, B)
            tensor of fixed step sizes (no adaptation; e.g. a pilot run's ``step_sizes``). Wu et al.
            start at 0.01, which suits their 10,000 steps; at x1.02 per transition it takes ~115
            transitions to grow tenfold, too slow for runs of a few hundred steps, so the default
            is 0.1 (the step that suits the N(0, I) prior at beta ~ 0 is larger still).
        schedule: "sigmoid" (Wu et al., delta = 4), "linear", or T + 1 betas from 0 to 1.
        prior: None for N(0, I), a :class:`statgan.audit.Prior` (sample + log-density with
            gradient), or a torch Distribution with event shape (d,) (gradient via autograd).
        init: optional (B, d) latents, e.g. from :func:`statgan.audit.invert`. The chains then start
            from q(z) = N(init_b, init_scale^2 I) and anneal along f_beta = q^{1-beta} (p(z) p(x|z))^beta.
            Since q is normalised and sampled exactly, the estimator remains unbiased for p(x) (and
            log p^ a stochastic lower bound); a good q only reduces variance. (Simply starting
            prior-path chains at inverted latents would NOT be valid: AIS needs exact samples from
            its first distribution.) ``init_scale`` must not be much smaller than the posterior
            spread, or the weights degenerate (check :attr:`AISResult.ess`).
        proposal: instead of ``init``, any normalised initial distribution q with exact samples and
            log-density (:class:`statgan.audit.proposal.Proposal` over the B images), e.g. the
            Laplace mixture of :func:`statgan.audit.posterior.laplace_proposal`; same path and
            guarantees. With ``n_steps=1`` the estimate is plain importance sampling from q,
            log mean_k p(z_k) p(x|z_k) / q(z_k), z_k ~ q.
        precondition: HMC with the mass matrix M = L L^T of ``proposal.mass_chol()`` (for the
            Laplace mixture: the precision I + J^T J / sigma^2 of each image's heaviest mode) instead
            of the identity. The posterior of a GAN at small sigma is stretched by factors of ~100
            between its stiff and its prior-dominated directions; with unit mass one step size
            must suit the stiffest, and the chain hardly moves along the rest within a few hundred
            transitions. M depends on x only (through q), never on the chain's state, so every
            transition still leaves f_beta invariant and the estimator keeps its guarantees. The
            step size is then in whitened units (~0.3 suits a near-Gaussian posterior in d ~ 100).
        batch_size: images per chunk (memory: batch_size * n_chains generator activations).
        seed: int, torch.Generator or None (drawn from the global RNG).
    """
    sigma, n_steps, n_chains, leapfrog = _check_ais_args(sigma, n_steps, n_chains, leapfrog)
    latent_dim = check_int("latent_dim", latent_dim)
    x, device, dtype = _setup(generator, x, latent_dim)
    betas = _resolve_schedule(schedule, n_steps).tolist()
    prior_ = as_prior(prior, latent_dim)
    B = x.shape[0]
    if torch.is_tensor(step_size):
        if tuple(step_size.shape) != (max(n_steps - 1, 0), B):
            raise ValueError(f"step_size schedule has shape {tuple(step_size.shape)}, expected (n_steps - 1, B) = ({n_steps - 1}, {B})")
        if bool((step_size < 0).any()) or not bool(torch.isfinite(step_size).all()):
            raise ValueError("step_size schedule must hold finite non-negative values")
    else:
        step_size = check_positive("step_size", step_size)
    if init is not None and proposal is not None:
        raise ValueError("pass init (an isotropic Gaussian start) or proposal, not both")
    if precondition and proposal is None:
        raise ValueError("precondition=True takes the mass matrix from a proposal; pass proposal=")
    if init is not None:
        if not torch.is_tensor(init) or tuple(init.shape) != (B, latent_dim):
            got = tuple(init.shape) if torch.is_tensor(init) else type(init).__name__
            raise ValueError(f"init must be a tensor of shape (B, latent_dim) = ({B}, {latent_dim}), got {got}")
        proposal = IsotropicGaussian(init.detach().to(device=device, dtype=dtype), check_positive("init_scale", init_scale))
    _check_proposal(proposal, B, latent_dim)
    rng = make_rng(seed, device)

    parts: List[Tuple[Tensor, Tensor, Tensor, Tensor]] = []
    with frozen(generator), torch.no_grad():
        for sl in chunks(B, batch_size):
            xb = x[sl]
            base = proposal[sl] if proposal is not None else None
            evaluate = _make_evaluator(generator, xb, sigma, prior_, base)
            z0 = base.sample(n_chains, rng) if base is not None else prior_.sample((xb.shape[0], n_chains), rng, dtype, device)
            eps0 = step_size[:, sl] if torch.is_tensor(step_size) else step_size
            log_w, acc, sched, state = _anneal(evaluate, z0, betas, leapfrog, eps0, rng,
                                               _inverse_mass_chol(base, precondition, dtype))
            parts.append((log_w, acc, sched, state.z))
    log_w = torch.cat([p[0] for p in parts])
    return AISResult(
        log_likelihood=logmeanexp(log_w, 1),
        log_weights=log_w,
        acceptance=torch.cat([p[1] for p in parts]),
        step_sizes=torch.cat([p[2] for p in parts], 1),
        latents=torch.cat([p[3] for p in parts]),
        sigma=sigma, n_steps=n_steps, n_chains=n_chains, leapfrog=leapfrog,
    )


def ais_log_likelihood(
    generator: nn.Module,
    x: Tensor,
    latent_dim: int,
    sigma: float,
    n_steps: int = 1000,
    n_chains: int = 16,
    leapfrog: int = 10,
    **options: Any,
) -> Tensor:
    """Per-image AIS log p^(x) in nats, (B,) float64: a stochastic lower bound on log p(x).

    Same arguments as :func:`ais` (which also returns the chains' weights, acceptance rates and
    step sizes); ``options`` are its keyword-only arguments (step_size, schedule, prior, init,
    init_scale, proposal, batch_size, seed). For bits per dimension use :func:`bits_per_dim`.
    """
    return ais(generator, x, latent_dim, sigma, n_steps, n_chains, leapfrog, **options).log_likelihood


def select_sigma(
    generator: nn.Module,
    x_heldout: Tensor,
    latent_dim: int,
    candidates: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.4),
    n_steps: int = 100,
    n_chains: int = 4,
    leapfrog: int = 5,
    *,
    proposal: Optional[Callable[[float], Proposal]] = None,
    **options: Any,
) -> SigmaSelection:
    """Choose sigma maximising the mean held-out AIS log-likelihood over ``candidates``.

    Wu et al. (2017) pick the observation noise on a validation split. The budget here is small on
    purpose (the search is a pre-step); note that a loose lower bound is looser for small sigma
    (sharper posteriors are harder to anneal to), so very small budgets favour larger sigma.
    Every candidate uses the same seed (common random numbers), which makes the comparison less
    noisy. ``proposal``: optional callable sigma -> :class:`Proposal` over ``x_heldout`` (a
    posterior approximation depends on sigma). ``options`` go to :func:`ais`.
    """
    cands = [check_positive("candidate sigma", c) for c in candidates]
    if not cands:
        raise ValueError("candidates must hold at least one sigma, got an empty sequence")
    seed = options.pop("seed", None)
    if seed is None or isinstance(seed, torch.Generator):
        device = seed.device if isinstance(seed, torch.Generator) else "cpu"
        seed = int(torch.randint(0, 2**62, (1,), generator=seed, device=device).item())
    lls = torch.stack([
        ais_log_likelihood(generator, x_heldout, latent_dim, s, n_steps, n_chains, leapfrog, seed=seed,
                           **({"proposal": proposal(s)} if proposal is not None else {}), **options)
        for s in cands
    ])
    means = lls.mean(1)
    best = int(torch.argmax(means))
    return SigmaSelection(cands[best], torch.tensor(cands, dtype=torch.float64), means, lls)


def bdmc(
    generator: nn.Module,
    latent_dim: int,
    sigma: float,
    n_images: int = 16,
    n_steps: int = 1000,
    n_chains: int = 16,
    leapfrog: int = 10,
    *,
    step_size: float = 0.1,
    schedule: Union[str, Tensor, Sequence[float]] = "sigmoid",
    prior: Any = None,
    init: Optional[Callable[[Tensor], Tensor]] = None,
    init_scale: float = 0.1,
    proposal: Optional[Callable[[Tensor], Proposal]] = None,
    precondition: bool = False,
    batch_size: Optional[int] = None,
    seed: SeedLike = None,
) -> BDMCResult:
    """Bidirectional Monte Carlo (Grosse et al. 2015; Wu et al. 2017) on data simulated from the model.

    Draws z ~ p(z) and x = G(z) + sigma * eps (so z is an exact posterior sample of x), then

    * forward AIS from the prior -> ``lower`` (stochastic lower bound on log p(x));
    * reverse AIS from z along the same betas backwards (1 -> 0), with log weights
      log w_rev = sum_t (beta_{t-1} - beta_t) log p(x | z_t); E[exp(log w_rev)] = 1/p(x), so
      ``upper`` = -log mean_k exp(log w_rev) is a stochastic upper bound.

    The reverse chain reuses the forward chain's step-size schedule, reversed (it adapts nothing).
    The gap upper - lower bounds the AIS error for data like the simulated data and shrinks to 0 as
    n_steps grows. Returns a :class:`BDMCResult` (``lower, upper = bdmc(...)`` works; ``.gap``).

    ``init``: optional callable mapping the simulated images (n_images, ...) to latents
    (n_images, d), e.g. ``lambda x: invert(G, x, d).z``. Both directions then use :func:`ais`'s
    inversion-started path f_beta = q^{1-beta} (p(z) p(x|z))^beta with q = N(init(x), init_scale^2 I):
    the reverse run ends in q, which is normalised, so E[exp(log w_rev)] = 1/p(x) still holds and
    the gap certifies exactly the estimator that ``ais(..., init=...)`` computes on real data.
    Its upper bound is loose when init(x) lands far from the true z (a many-to-one generator), since
    the reverse chain must travel there.

    ``proposal``: instead of ``init``, a callable mapping the simulated images to any
    :class:`Proposal` over them (e.g. ``lambda x: laplace_proposal(G, x, invert(G, x, d).restart_z,
    sigma)``): both directions anneal between that q and the posterior, so ``lower``/``upper``
    bracket exactly the estimator ``ais(..., proposal=q)`` computes on real images (the reverse run
    starts from the exact posterior sample z and ends in q). The q used is ``result.proposal``.
    (Do not take the minimum of several upper bounds: each is a stochastic bound, and the minimum
    of two is biased low.)
    ``precondition``: as in :func:`ais`, for both directions (the same mass matrix per image).
    """
    sigma, n_steps, n_chains, leapfrog = _check_ais_args(sigma, n_steps, n_chains, leapfrog)
    latent_dim = check_int("latent_dim", latent_dim)
    n_images = check_int("n_images", n_images)
    step_size = check_positive("step_size", step_size)
    if not isinstance(generator, nn.Module):
        raise ValueError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
    param = next((p for p in generator.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    prior_ = as_prior(prior, latent_dim)
    rng = make_rng(seed, device)

    z = prior_.sample((n_images,), rng, dtype, device)
    with frozen(generator), torch.no_grad():
        mean = generator(z)
    if not torch.is_tensor(mean) or mean.dim() < 2 or mean.shape[0] != n_images:
        raise ValueError(f"generator output for z of shape {tuple(z.shape)} must have shape ({n_images}, ...), "
                         f"got {tuple(mean.shape) if torch.is_tensor(mean) else type(mean).__name__}")
    x = mean + sigma * torch.randn(mean.shape, generator=rng, dtype=mean.dtype, device=device)

    q: Optional[Proposal] = None
    if init is not None and proposal is not None:
        raise ValueError("pass init (an isotropic Gaussian start) or proposal, not both")
    if init is not None:
        if not callable(init):
            raise ValueError(f"init must be a callable mapping images (n_images, ...) to latents (n_images, d), got {type(init).__name__}")
        init_scale = check_positive("init_scale", init_scale)
        z_init = init(x.detach())
        if not torch.is_tensor(z_init) or tuple(z_init.shape) != (n_images, latent_dim):
            got = tuple(z_init.shape) if torch.is_tensor(z_init) else type(z_init).__name__
            raise ValueError(f"init(x) must return latents of shape ({n_images}, {latent_dim}), got {got}")
        q = IsotropicGaussian(z_init.detach().to(device=device, dtype=dtype), init_scale)
    elif proposal is not None:
        if not callable(proposal):
            raise ValueError(f"proposal must be a callable mapping images (n_images, ...) to a Proposal, got {type(proposal).__name__}")
        q = proposal(x.detach())
        _check_proposal(q, n_images, latent_dim)
    fwd = ais(generator, x, latent_dim, sigma, n_steps, n_chains, leapfrog, step_size=step_size,
              schedule=schedule, prior=prior, proposal=q, precondition=precondition, batch_size=batch_size, seed=rng)

    betas = _resolve_schedule(schedule, n_steps).flip(0).tolist()
    eps_rev = fwd.step_sizes.flip(0)  # transition at beta_t forward <-> same beta backward
    parts = []
    with frozen(generator), torch.no_grad():
        for sl in chunks(n_images, batch_size):
            base = q[sl] if q is not None else None
            evaluate = _make_evaluator(generator, x[sl], sigma, prior_, base)
            z0 = z[sl].unsqueeze(1).expand(-1, n_chains, -1).contiguous()
            log_w, acc, sched, state = _anneal(evaluate, z0, betas, leapfrog, eps_rev[:, sl], rng,
                                               _inverse_mass_chol(base, precondition, z0.dtype))
            parts.append((log_w, acc, sched, state.z))
    log_w = torch.cat([p[0] for p in parts])
    rev = AISResult(
        log_likelihood=-logmeanexp(log_w, 1), log_weights=log_w,
        acceptance=torch.cat([p[1] for p in parts]), step_sizes=torch.cat([p[2] for p in parts], 1),
        latents=torch.cat([p[3] for p in parts]),
        sigma=sigma, n_steps=n_steps, n_chains=n_chains, leapfrog=leapfrog,
    )
    return BDMCResult(lower=fwd.log_likelihood, upper=rev.log_likelihood, data=x, latents=z, forward=fwd, reverse=rev,
                      proposal=q)
