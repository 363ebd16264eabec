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

The samplers share one annealing loop, one start helper and one HMC kernel
(:mod:`statgan.audit.annealing`, where the implementation notes are); the functions here are thin
facades taking a frozen :class:`~statgan.audit.annealing.SamplerOptions`. Keyword arguments named
like its fields change them (``ais(G, x, d, sigma, n_steps=200, n_chains=4)``).

* :func:`ais`: forward AIS (``resample=0``) or SMC (``resample > 0``; ``schedule="adaptive"`` for
  conditional-ESS steps chosen by a pilot run), from the prior or a proposal;
* :func:`smc`: :func:`ais` with :data:`SMC_OPTIONS`, sequential Monte Carlo with adaptive tempering;
* :func:`bdmc`: forward and reverse runs on data simulated from the model, with either sampler;
* :func:`select_sigma`: the noise level with the highest held-out lower bound;
* :func:`sigma_curve`: log p_sigma(x) at many noise levels from one run along the noise level.

Reproducibility: every random draw comes from one torch.Generator (``seed``). On CUDA, cuDNN's
non-deterministic convolution backward kernels make reruns differ at the ~1e-9 level unless
``torch.backends.cudnn.deterministic = True``.
"""


from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ._common import Prior, as_prior, check_images, frozen, working_device_dtype
from .annealing import (
    PILOT_MAX_STEPS,
    ChainRun,
    SamplerOptions,
    anneal,
    hmc_kernel,
    inverse_mass_chol,
    linear_schedule,
    make_evaluator,
    regrid,
    run_in_chunks,
    sigmoid_schedule,
    start_chains,
)
from .proposal import Proposal
from ..runtime.seeding import SeedLike, make_rng
from ..runtime.validation import check_int, check_positive

__all__ = [
    "AISResult",
    "BDMCResult",
    "SMC_OPTIONS",
    "SamplerOptions",
    "SigmaSelection",
    "ais",
    "ais_log_likelihood",
    "bdmc",
    "bits_per_dim",
    "SigmaCurve",
    "select_sigma",
    "sigma_curve",
    "sigmoid_schedule",
    "linear_schedule",
    "smc",
]

#: :func:`smc`'s options: 16 particles resampled below half their number, 200 steps placed by a
#: 4-particle pilot that keeps a conditional ESS of 0.99 per step, 5 leapfrog steps per move.
SMC_OPTIONS = SamplerOptions(n_steps=200, n_chains=16, leapfrog=5, step_size=0.1, schedule="adaptive",
                             resample=0.5, cess=0.99, pilot_chains=4)

_OPTION_NAMES = frozenset(f.name for f in fields(SamplerOptions))


def _options(options: Optional[SamplerOptions], changes: dict, default: SamplerOptions = SamplerOptions()) -> SamplerOptions:
    """``options`` (or ``default``) with keyword ``changes`` named like its fields; an unknown name is a
    one-line error."""
    unknown = sorted(set(changes) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown sampler option(s) {', '.join(unknown)}; SamplerOptions has: {', '.join(sorted(_OPTION_NAMES))}")
    base = options if options is not None else default
    if not isinstance(base, SamplerOptions):
        raise ValueError(f"options must be a statgan.audit.SamplerOptions, got {type(base).__name__}")
    return replace(base, **changes) if changes else base


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


# ==== results =======================================================================================
@dataclass
class AISResult:
    """Per-image output of :func:`ais` / :func:`smc` (B images, K chains or particles, T steps).

    Attributes:
        log_likelihood: (B,) float64 log p^(x) in nats: for AIS log mean_k exp(log_weights[:, k]);
            for SMC the sum over resampling epochs of log mean_k w_k. Unbiased in p(x), so a
            stochastic lower bound on log p(x). (In :func:`bdmc`'s reverse run it is
            -log mean_k exp(log_weights[:, k]), a stochastic upper bound.)
        log_weights: (B, K) float64 log weights of the chains (since the last resampling).
        acceptance: (B,) mean HMC acceptance probability over transitions and chains.
        step_sizes: (T-1, B) leapfrog step size of every transition, in the generator's dtype (pass it
            back as ``step_sizes=`` for a non-adaptive, strictly valid rerun).
        latents: (B, K, d) final chain states (approximate posterior samples for forward runs).
        sigma, n_steps, n_chains, leapfrog: the settings used (n_steps: the steps run, the longest
            image's for an adaptive schedule).
        betas: (T+1, B) float64, the schedule each image ran.
        resamples: (B,) resampling events (0 for AIS).
        options: the :class:`SamplerOptions` of the run.
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
    betas: Optional[Tensor] = field(default=None, repr=False)
    resamples: Optional[Tensor] = field(default=None, repr=False)
    options: Optional[SamplerOptions] = field(default=None, repr=False)

    @classmethod
    def of(cls, run: ChainRun, sigma: float, options: SamplerOptions, *, reverse: bool = False) -> "AISResult":
        """The result of one :class:`~statgan.audit.annealing.ChainRun` (``reverse``: the upper bound's sign)."""
        return cls(log_likelihood=-run.log_z if reverse else run.log_z, log_weights=run.log_weights,
                   acceptance=run.acceptance, step_sizes=run.step_sizes, latents=run.latents, sigma=sigma,
                   n_steps=int(run.betas.shape[0]) - 1, n_chains=options.n_chains, leapfrog=options.leapfrog,
                   betas=run.betas, resamples=run.resamples, options=options)

    @property
    def ess(self) -> Tensor:
        """(B,) effective sample size of the chains' weights, (sum w)^2 / sum w^2, in [1, K]."""
        lw = self.log_weights
        return torch.exp(2 * torch.logsumexp(lw, 1) - torch.logsumexp(2 * lw, 1))


@dataclass
class BDMCResult:
    """Bidirectional Monte Carlo bounds on simulated data; unpacks as ``lower, upper = bdmc(...)``.

    Attributes:
        lower: (B,) float64 forward estimate (AIS or SMC), a stochastic lower bound on log p(x).
        upper: (B,) float64 reverse-AIS estimate, a stochastic upper bound on log p(x).
        data: (B, *data_shape) the simulated images x = G(z) + sigma * noise.
        latents: (B, d) the exact latents z that generated them (exact posterior samples).
        forward, reverse: the two :class:`AISResult` runs (the reverse run follows the forward run's
            schedule and step sizes backwards).
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





# ==== checks ========================================================================================
def _setup(generator: nn.Module, x: Tensor) -> tuple:
    """Validate x; the device/dtype to work in (the generator's if it has parameters)."""
    x = check_images("x", x)
    device, dtype = working_device_dtype(generator, x.device, x.dtype)
    return x.to(device=device, dtype=dtype), device, dtype


def _check_proposal(proposal: Optional[Proposal], n_images: int, latent_dim: int) -> None:
    if proposal is not None and (not isinstance(proposal, Proposal) or proposal.n_images != n_images
                                 or proposal.dim != latent_dim):
        got = (f"{proposal.n_images} images of dimension {proposal.dim}" if isinstance(proposal, Proposal)
               else type(proposal).__name__)
        raise ValueError(f"proposal must be a statgan.audit.proposal.Proposal over {n_images} images of dimension "
                         f"{latent_dim}, got {got}")


def _check_step_sizes(step_sizes: Optional[Tensor], o: SamplerOptions, n_images: int) -> None:
    if step_sizes is None:
        return
    if o.adaptive:
        raise ValueError("step_sizes need a fixed schedule; an adaptive schedule's pilot chooses its own")
    want = (max(o.n_steps - 1, 0), n_images)
    if not torch.is_tensor(step_sizes) or tuple(step_sizes.shape) != want:
        got = tuple(step_sizes.shape) if torch.is_tensor(step_sizes) else type(step_sizes).__name__
        raise ValueError(f"step_sizes schedule has shape {got}, expected (n_steps - 1, B) = {want}")
    if bool((step_sizes < 0).any()) or not bool(torch.isfinite(step_sizes).all()):
        raise ValueError("step_sizes schedule must hold finite non-negative values")


# ==== the runs ======================================================================================
def _forward(generator: nn.Module, x: Tensor, sigma: float, prior: Prior, proposal: Optional[Proposal],
             o: SamplerOptions, step_sizes: Optional[Tensor], rng: torch.Generator) -> ChainRun:
    """Forward AIS or SMC from the start distribution, chunk by chunk (an adaptive schedule: its pilot
    run first, then the estimate along the pilot's betas and step sizes)."""
    device, dtype = x.device, x.dtype

    def chunk(sl: slice) -> ChainRun:
        xb = x[sl]
        base = proposal[sl] if proposal is not None else None
        evaluate = make_evaluator(generator, xb, sigma, prior, base)
        kernel = hmc_kernel(evaluate, o.leapfrog, inverse_mass_chol(base, o.precondition, dtype))
        if o.adaptive:
            z0 = start_chains(base, prior, xb.shape[0], o.pilot_chains, rng, dtype, device)
            pilot = anneal(evaluate, kernel, z0, None, rng, step_size=o.step_size, resample=max(o.resample, 0.5),
                           cess=o.cess, max_steps=PILOT_MAX_STEPS)
            betas, eps = regrid(pilot.betas, o.n_steps), o.step_size
        else:
            betas, eps = o.betas(), (step_sizes[:, sl] if step_sizes is not None else o.step_size)
        z0 = start_chains(base, prior, xb.shape[0], o.n_chains, rng, dtype, device)
        return anneal(evaluate, kernel, z0, betas, rng, step_size=eps, resample=o.resample)

    with frozen(generator), torch.no_grad():
        return run_in_chunks(x.shape[0], o.batch_size, chunk)


def _reverse(generator: nn.Module, x: Tensor, z: Tensor, sigma: float, prior: Prior, proposal: Optional[Proposal],
             o: SamplerOptions, forward: ChainRun, rng: torch.Generator) -> ChainRun:
    """Reverse AIS from the exact latents ``z`` (B, d) along the forward run's betas and step sizes,
    backwards (it adapts and resamples nothing: E[exp(log w)] = 1/p(x) holds for any fixed schedule)."""
    betas, eps = forward.betas.flip(0), forward.step_sizes.flip(0)  # the transition at beta_t <-> the same beta back

    def chunk(sl: slice) -> ChainRun:
        base = proposal[sl] if proposal is not None else None
        evaluate = make_evaluator(generator, x[sl], sigma, prior, base)
        kernel = hmc_kernel(evaluate, o.leapfrog, inverse_mass_chol(base, o.precondition, z.dtype))
        z0 = z[sl].unsqueeze(1).expand(-1, o.n_chains, -1).contiguous()
        return anneal(evaluate, kernel, z0, betas[:, sl], rng, step_size=eps[:, sl])

    with frozen(generator), torch.no_grad():
        return run_in_chunks(x.shape[0], o.batch_size, chunk)


# ==== the facades ===================================================================================
def ais(
    generator: nn.Module,
    x: Tensor,
    latent_dim: int,
    sigma: float,
    options: Optional[SamplerOptions] = None,
    *,
    proposal: Optional[Proposal] = None,
    prior: Any = None,
    step_sizes: Optional[Tensor] = None,
    seed: SeedLike = None,
    **changes: Any,
) -> AISResult:
    """AIS (or, with ``resample > 0``, SMC) estimate of log p(x) for every image (module docstring).

    Args:
        generator: module mapping (N, latent_dim) to (N, *x.shape[1:]).
        x: (B, ...) data, in the generator's output units ([-1, 1] for images).
        latent_dim: dimension d of z.
        sigma: observation noise standard deviation (> 0); choose it with :func:`select_sigma`.
        options: a :class:`SamplerOptions` (default: its defaults, Wu et al.'s 1,000 steps, 16 chains,
            10 leapfrog steps); keyword ``changes`` named like its fields replace them.
        proposal: the start distribution q(z | x), any normalised
            :class:`~statgan.audit.proposal.Proposal` over the B images with exact samples and density
            (e.g. the Laplace mixture of :func:`statgan.audit.posterior.laplace_proposal`, or
            ``IsotropicGaussian(z_inverted, s)``); None: the prior. The path is then
            f_beta = q^{1-beta} (p(z) p(x|z))^beta and the estimator stays unbiased for p(x) whatever q
            is (starting prior-path chains at inverted latents would NOT be valid: AIS needs exact
            samples from its first distribution). With ``n_steps=1`` the estimate is plain importance
            sampling, log mean_k p(z_k) p(x|z_k) / q(z_k), z_k ~ q.
        prior: None for N(0, I), a :class:`statgan.audit.Prior`, or a torch Distribution with event
            shape (d,) (gradient via autograd).
        step_sizes: a (T - 1, B) schedule of fixed step sizes (no adaptation; e.g. a pilot run's
            ``step_sizes``) for a fixed schedule.
        seed: int, torch.Generator or None (drawn from the global RNG).
    """
    o = _options(options, changes)
    sigma = check_positive("sigma", sigma)
    latent_dim = check_int("latent_dim", latent_dim)
    x, device, _ = _setup(generator, x)
    if o.precondition and proposal is None:
        raise ValueError("precondition=True takes the mass matrix from a proposal; pass proposal=")
    _check_proposal(proposal, x.shape[0], latent_dim)
    _check_step_sizes(step_sizes, o, x.shape[0])
    run = _forward(generator, x, sigma, as_prior(prior, latent_dim), proposal, o, step_sizes, make_rng(seed, device))
    return AISResult.of(run, sigma, o)


def _pop_changes(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The keywords named like :class:`SamplerOptions` fields, taken out of ``kwargs``."""
    return {k: kwargs.pop(k) for k in list(kwargs) if k in _OPTION_NAMES}


def smc(generator: nn.Module, x: Tensor, latent_dim: int, sigma: float, options: Optional[SamplerOptions] = None,
        **kwargs: Any) -> AISResult:
    """Sequential Monte Carlo with adaptive tempering: :func:`ais` with :data:`SMC_OPTIONS` (or
    ``options``) and the same keyword arguments. All particles of all images go through G at once."""
    changes = _pop_changes(kwargs)
    return ais(generator, x, latent_dim, sigma, _options(options, changes, SMC_OPTIONS), **kwargs)


def ais_log_likelihood(generator: nn.Module, x: Tensor, latent_dim: int, sigma: float,
                       options: Optional[SamplerOptions] = None, **kwargs: Any) -> Tensor:
    """Per-image log p^(x) in nats, (B,) float64: a stochastic lower bound on log p(x). Same arguments as
    :func:`ais` (which also returns the chains' weights, acceptance rates and step sizes). For bits per
    dimension use :func:`bits_per_dim`."""
    return ais(generator, x, latent_dim, sigma, options, **kwargs).log_likelihood


def select_sigma(
    generator: nn.Module,
    x_heldout: Tensor,
    latent_dim: int,
    candidates: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.4),
    options: Optional[SamplerOptions] = None,
    *,
    proposal: Optional[Callable[[float], Proposal]] = None,
    seed: SeedLike = None,
    **kwargs: Any,
) -> SigmaSelection:
    """Choose sigma maximising the mean held-out log-likelihood lower bound over ``candidates``.

    Wu et al. (2017) pick the observation noise on a validation split. The budget is small on purpose
    (default 100 steps, 4 chains, 5 leapfrog steps: the search is a pre-step); a loose lower bound is
    looser for small sigma (sharper posteriors are harder to anneal to), so very small budgets favour
    larger sigma. Every candidate uses the same seed (common random numbers), which makes the
    comparison less noisy. ``proposal``: optional callable sigma -> :class:`Proposal` over
    ``x_heldout`` (a posterior approximation depends on sigma). Other keywords go to :func:`ais`.
    """
    cands = [check_positive("candidate sigma", c) for c in candidates]
    if not cands:
        raise ValueError("candidates must hold at least one sigma, got an empty sequence")
    o = _options(options, _pop_changes(kwargs), SamplerOptions(n_steps=100, n_chains=4, leapfrog=5))
    if seed is None or isinstance(seed, torch.Generator):
        device = seed.device if isinstance(seed, torch.Generator) else "cpu"
        seed = int(torch.randint(0, 2**62, (1,), generator=seed, device=device).item())
    lls = torch.stack([
        ais_log_likelihood(generator, x_heldout, latent_dim, s, o, seed=seed,
                           **({"proposal": proposal(s)} if proposal is not None else {}), **kwargs)
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
    options: Optional[SamplerOptions] = None,
    *,
    proposal: Optional[Callable[[Tensor], Proposal]] = None,
    prior: Any = None,
    seed: SeedLike = None,
    **changes: Any,
) -> BDMCResult:
    """Bidirectional Monte Carlo (Grosse et al. 2015; Wu et al. 2017) on data simulated from the model.

    Draws z ~ p(z) and x = G(z) + sigma * eps (so z is an exact posterior sample of x), then

    * the forward run (AIS, or SMC with ``options.resample > 0``) from the start distribution ->
      ``lower`` (a stochastic lower bound on log p(x));
    * reverse AIS from z along the forward run's betas backwards (1 -> 0), with its step sizes
      reversed, log w_rev = sum_t (beta_{t-1} - beta_t) d log f / d beta (z_t);
      E[exp(log w_rev)] = 1/p(x) for any schedule fixed before the reverse run starts, so
      ``upper`` = -log mean_k exp(log w_rev) is a stochastic upper bound.

    The gap upper - lower bounds the error of either estimate for data like the simulated data and
    shrinks to 0 as the compute grows. ``proposal``: a callable mapping the simulated images to a
    :class:`Proposal` over them (e.g. ``lambda x: laplace_proposal(G, x, invert(G, x, d).restart_z,
    sigma)``): both directions anneal between that q and the posterior, so the bounds bracket exactly
    the estimator ``ais(..., proposal=q)`` computes on real images; its upper bound is loose when q
    has no mass near the true z (a many-to-one generator), since the reverse chain must travel
    there. The q used is ``result.proposal``. (Do not take the minimum of several upper bounds: each
    is a stochastic bound, and the minimum of two is biased low.)
    """
    o = _options(options, changes)
    sigma = check_positive("sigma", sigma)
    latent_dim = check_int("latent_dim", latent_dim)
    n_images = check_int("n_images", n_images)
    device, dtype = working_device_dtype(generator, "cpu", torch.get_default_dtype())
    if o.precondition and proposal is None:
        raise ValueError("precondition=True takes the mass matrix from a proposal; pass proposal=")
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
    if proposal is not None:
        if not callable(proposal):
            raise ValueError(f"proposal must be a callable mapping images (n_images, ...) to a Proposal, got {type(proposal).__name__}")
        q = proposal(x.detach())
        _check_proposal(q, n_images, latent_dim)
    fwd = _forward(generator, x, sigma, prior_, q, o, None, rng)
    rev = _reverse(generator, x, z, sigma, prior_, q, o, fwd, rng)
    return BDMCResult(lower=fwd.log_z, upper=-rev.log_z, data=x, latents=z, forward=AISResult.of(fwd, sigma, o),
                      reverse=AISResult.of(rev, sigma, o, reverse=True), proposal=q)


class SigmaCurve(NamedTuple):
    """Result of :func:`sigma_curve`: ``sigmas`` (S,) in decreasing order and ``log_likelihood`` (S, B),
    float64: a stochastic lower bound of log p_sigma(x) per noise level and image, all from one run."""

    sigmas: Tensor
    log_likelihood: Tensor

    def mean(self) -> Tensor:
        """(S,) the mean over images per sigma (what :func:`select_sigma` maximises)."""
        return self.log_likelihood.mean(1)


def sigma_curve(
    generator: nn.Module,
    x: Tensor,
    latent_dim: int,
    sigmas: Sequence[float],
    options: Optional[SamplerOptions] = None,
    *,
    prior: Any = None,
    seed: SeedLike = None,
    **changes: Any,
) -> SigmaCurve:
    """log p_sigma(x) at every sigma in ``sigmas`` from ONE annealing run along the noise level.

    From the prior, the path f_beta(z) = p(z) p(x|z)^beta at the smallest sigma s is the posterior at
    noise sigma_beta = s / sqrt(beta) (p(x|z)^beta = N(x; G(z), sigma_beta^2 I) up to a constant), so
    annealing beta from 0 to 1 anneals the noise level from infinity down to s (the rate-distortion
    path of Huang et al. 2020). AIS stopped at beta_j = (s / sigma_j)^2 estimates its normaliser
    Z_j without bias, and

        log p_{sigma_j}(x) = log Z_j + (beta_j D / 2) log(2 pi s^2) - (D / 2) log(2 pi sigma_j^2),

    each a stochastic lower bound. The schedule is the options' (sigmoid by default) with the
    beta_j of every asked sigma put in; no proposal (it would fix one sigma) and no resampling.
    """
    o = _options(options, changes)
    if o.adaptive or o.resample > 0 or o.precondition:
        raise ValueError("sigma_curve runs AIS from the prior along a fixed schedule: no adaptive schedule, "
                         "resampling or preconditioning")
    cands = sorted({check_positive("sigma", v) for v in sigmas}, reverse=True)
    if not cands:
        raise ValueError("sigmas must hold at least one noise level, got an empty sequence")
    latent_dim = check_int("latent_dim", latent_dim)
    x, device, _ = _setup(generator, x)
    s = cands[-1]
    want = torch.tensor([(s / v) ** 2 for v in cands], dtype=torch.float64)
    merged = torch.unique(torch.cat([o.betas(), want]))  # sorted; 0 and 1 are in both
    record = [int(torch.searchsorted(merged, b)) for b in want]
    o = replace(o, n_steps=merged.numel() - 1, schedule=tuple(merged.tolist()))
    prior_ = as_prior(prior, latent_dim)
    rng = make_rng(seed, device)

    def chunk(sl: slice) -> ChainRun:
        xb = x[sl]
        evaluate = make_evaluator(generator, xb, s, prior_, None)
        z0 = start_chains(None, prior_, xb.shape[0], o.n_chains, rng, xb.dtype, device)
        return anneal(evaluate, hmc_kernel(evaluate, o.leapfrog), z0, o.betas(), rng, step_size=o.step_size, record=record)

    with frozen(generator), torch.no_grad():
        run = run_in_chunks(x.shape[0], o.batch_size, chunk)
    D = int(math.prod(x.shape[1:]))
    const = torch.tensor([b * D / 2 * math.log(2 * math.pi * s**2) - D / 2 * math.log(2 * math.pi * v**2)
                          for b, v in zip(want.tolist(), cands)], dtype=torch.float64, device=run.log_z_at.device)
    return SigmaCurve(torch.tensor(cands, dtype=torch.float64), run.log_z_at + const.unsqueeze(1))
