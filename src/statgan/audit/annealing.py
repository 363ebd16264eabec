"""The machinery shared by every likelihood sampler of the audit: options, chain state, the HMC
kernel, the start of the chains and one annealing loop that runs forward AIS, reverse AIS and SMC.

Model and path (Wu, Burda, Salakhutdinov & Grosse, ICLR 2017; Neal 2001): z ~ p(z) = N(0, I),
x | z ~ N(G(z), sigma^2 I), and the chains anneal from a normalised start q(z | x) (the prior, or a
:class:`~statgan.audit.proposal.Proposal`) to the posterior along

    f_beta(z) = q(z)^(1 - beta) (p(z) p(x|z))^beta,      0 = beta_0 < ... < beta_T = 1.

One loop, :func:`anneal`, serves three samplers (blackjax's shape: options and state are immutable
named tuples, the transition kernel is built once and is pure apart from its random draws, the
public functions of :mod:`statgan.audit.ais` are thin facades):

* **forward AIS** (Neal 2001): chains start from exact draws of q, and after every weight update
  log w += (beta_t - beta_{t-1}) d log f / d beta one HMC transition leaves f_{beta_t} invariant;
  log p^(x) = log mean_k exp(log w_k) is unbiased in p(x), a stochastic lower bound on log p(x);
* **reverse AIS** (BDMC, Grosse et al. 2015): the same loop along the betas reversed, started at
  an exact posterior sample of a simulated image; -log mean_k exp(log w_k) is a stochastic upper
  bound;
* **sequential Monte Carlo** (Del Moral, Doucet & Jasra 2006): AIS whose K chains are particles that
  are resampled (systematic resampling) when their effective sample size falls below
  ``resample * K``. With weights accumulated since the last resampling w_k,
  log Z^ = sum over resampling epochs of log mean_k w_k, unbiased in p(x) for a schedule fixed in
  advance. The schedule may be **adaptive** (Zhou, Johansen & Aston 2016): each next beta keeps the
  conditional ESS, CESS = (sum_k W_k u_k)^2 / sum_k W_k u_k^2 with W the normalised weights and
  u_k = exp((beta' - beta) d log f / d beta), at ``cess``. Choosing beta from the particles would
  make the estimate slightly biased, so an adaptive run is two passes: a pilot run with
  ``pilot_chains`` particles chooses each image's betas, the schedule is stretched to ``n_steps``
  steps equally spaced in the pilot's step index (:func:`regrid`: every pilot step lost the same
  conditional ESS), and the estimate comes from a second, independent run along that fixed
  schedule; BDMC's reverse run uses the same schedule reversed. (AIS may use the adaptive schedule
  too: ``resample=0``.) The second run adapts its step sizes online like AIS: the pilot's step
  sizes, adapted over its few steps and few particles, gave errors up to 7 nats on the PPCA test
  model where online adaptation stays under 1.

Implementation notes:

* Images x chains are one tensor (B, K, d); the generator sees (B*K, d) and the residual against x
  is formed by broadcasting (B, 1, D). No Python loop runs over images or chains.
* An HMC transition with L leapfrog steps costs exactly L generator forward+backward passes: the
  energy and gradient at the end of a trajectory are carried into the next transition, stored
  split into log p(z), log p(x|z) and log q(z), so a change of beta only re-weights them.
* Betas are a (T+1, B) float64 tensor: one schedule per image (the adaptive schedules differ by
  image; a shared schedule is expanded). A shorter schedule is padded with beta = 1, where the
  weights no longer change and a transition leaves the posterior invariant.
* Step sizes are per image, adapted as in Wu et al.'s code (a 0.9 moving average of the mean
  acceptance; x1.02 above 0.65, x0.98 below; clipped to [1e-4, 0.5]) unless given as a (T-1, B)
  schedule, which the reverse run and an adaptive run's second pass always do.
* Log weights, energies and the acceptance test are float64; the generator runs in its own dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..runtime import threads
from ..runtime.validation import check_int, check_positive
from ._common import Prior, chunks, generate
from .proposal import Proposal

__all__ = ["ChainRun", "ChainState", "SamplerOptions", "Kernel", "anneal", "adaptive_betas", "hmc_kernel", "linear_schedule",
           "make_evaluator", "regrid", "run_in_chunks", "sigmoid_schedule", "start_chains"]

#: Wu et al. (2017) HMC step-size adaptation constants.
TARGET_ACCEPTANCE = 0.65
STEP_INCREASE, STEP_DECREASE = 1.02, 0.98
STEP_MIN, STEP_MAX = 1e-4, 0.5
ACCEPTANCE_SLOWNESS = 0.9
#: bisection steps of the adaptive schedule's next beta (on log(beta' - beta): 1e-300 resolution is not needed)
BISECTION_STEPS = 50
#: the most steps an adaptive schedule's pilot may take (its last step is forced to beta = 1)
PILOT_MAX_STEPS = 10_000
SCHEDULES = ("sigmoid", "linear", "adaptive")


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


# ==== options =======================================================================================
@dataclass(frozen=True)
class SamplerOptions:
    """How a sampler runs; validated on construction (a one-line ``ValueError`` names the bad value).

    Attributes:
        n_steps: T, annealing steps (intermediate distributions), adaptive schedules included (the
            pilot's schedule is stretched to T). Cost: (T - 1) * leapfrog + 1 generator
            forward+backward passes on a batch of B * n_chains, plus an adaptive schedule's pilot:
            its steps (set by ``cess``, at most :data:`PILOT_MAX_STEPS`) on B * pilot_chains.
        n_chains: K chains (AIS) or particles (SMC) per image.
        leapfrog: L leapfrog steps per HMC transition.
        step_size: initial leapfrog step, adapted per image toward 0.65 acceptance (whitened units
            when preconditioned).
        schedule: "sigmoid" (Wu et al., delta = 4), "linear", "adaptive" (conditional-ESS steps chosen
            by a pilot run) or the T + 1 betas themselves, from 0 to 1.
        resample: resample the particles when their ESS falls below ``resample * n_chains`` (SMC);
            0 never resamples (AIS).
        cess: the conditional ESS fraction each adaptive step keeps (closer to 1: more steps).
        pilot_chains: particles of an adaptive schedule's pilot run (at least 2: the CESS of one
            particle is always 1).
        precondition: HMC's mass matrix from the start distribution's ``mass_chol()`` (the Laplace
            mixture's precision at each image's heaviest mode) instead of the identity; it depends on
            x only, so every transition still leaves f_beta invariant.
        batch_size: images per chunk (memory: batch_size * n_chains generator activations).
    """

    n_steps: int = 1000
    n_chains: int = 16
    leapfrog: int = 10
    step_size: float = 0.1
    schedule: Union[str, Tuple[float, ...]] = "sigmoid"
    resample: float = 0.0
    cess: float = 0.99
    pilot_chains: int = 4
    precondition: bool = False
    batch_size: Optional[int] = None

    def __post_init__(self) -> None:
        check_int("n_steps", self.n_steps)
        check_int("n_chains", self.n_chains)
        check_int("leapfrog", self.leapfrog)
        check_positive("step_size", self.step_size)
        check_int("pilot_chains", self.pilot_chains, minimum=2)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size)
        if not (isinstance(self.resample, (int, float)) and 0.0 <= self.resample <= 1.0):
            raise ValueError(f"resample must be a fraction of the particles in [0, 1], got {self.resample!r}")
        if not (isinstance(self.cess, (int, float)) and 0.0 < self.cess < 1.0):
            raise ValueError(f"cess must be in (0, 1), got {self.cess!r}")
        if not isinstance(self.precondition, bool):
            raise ValueError(f"precondition must be True or False, got {self.precondition!r}")
        if isinstance(self.schedule, str):
            if self.schedule not in SCHEDULES:
                raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))} or a sequence of betas, "
                                 f"got {self.schedule!r}")
        else:
            object.__setattr__(self, "schedule", tuple(float(b) for b in self.schedule))
            self.betas()  # checks them

    @property
    def adaptive(self) -> bool:
        return self.schedule == "adaptive"

    def betas(self) -> Tensor:
        """The fixed schedule, (T+1,) float64 (not for ``"adaptive"``, which the pilot chooses)."""
        if self.schedule == "sigmoid":
            return sigmoid_schedule(self.n_steps)
        if self.schedule == "linear":
            return linear_schedule(self.n_steps)
        if self.adaptive:
            raise ValueError("an adaptive schedule has no betas before its pilot run")
        beta = torch.tensor(self.schedule, dtype=torch.float64)
        if beta.numel() != self.n_steps + 1:
            raise ValueError(f"schedule has {beta.numel()} betas, expected n_steps + 1 = {self.n_steps + 1}")
        if beta[0] != 0 or beta[-1] != 1 or bool((beta[1:] < beta[:-1]).any()):
            raise ValueError("schedule must be non-decreasing from beta_0 = 0 to beta_T = 1")
        return beta


# ==== chain state and evaluation ====================================================================
def _per_chain(beta: Tensor, like: Tensor) -> Tensor:
    """beta (B,) float64 shaped to broadcast against ``like`` (B, K) or (B, K, d), in its dtype."""
    return beta.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class ChainState(NamedTuple):
    """A batch of chains (B, K, d) with everything HMC needs, carried between transitions.

    ``ll``/``gll``: log p(x|z) (float64) and its z-gradient; ``lp``/``gp``: log p(z) and gradient;
    ``lq``/``gq``: log q(z) of a non-prior start distribution, or None when q = p.
    ``beta`` arguments are (B,) float64: one value per image.
    """

    z: Tensor
    ll: Tensor
    gll: Tensor
    lp: Tensor
    gp: Tensor
    lq: Optional[Tensor]
    gq: Optional[Tensor]

    def log_f(self, beta: Tensor) -> Tensor:
        """log f_beta(z) = (1 - beta) log q(z) + beta (log p(z) + log p(x|z)); q = p: log p + beta ll."""
        b = _per_chain(beta, self.ll)
        if self.lq is None:
            return self.lp + b * self.ll
        return (1.0 - b) * self.lq + b * (self.lp + self.ll)

    def grad(self, beta: Tensor) -> Tensor:
        b = _per_chain(beta, self.gp)
        if self.gq is None:
            return self.gp + b * self.gll
        return (1.0 - b) * self.gq + b * (self.gp + self.gll)

    def increment(self) -> Tensor:
        """d log f_beta / d beta: the weight increment per unit of beta (float64, (B, K))."""
        if self.lq is None:
            return self.ll
        return self.lp + self.ll - self.lq

    def select(self, mask: Tensor, other: "ChainState") -> "ChainState":
        """Per chain: ``self`` where mask (B, K) is True, else ``other``."""
        m3 = mask.unsqueeze(-1)
        return ChainState(*(None if a is None else torch.where(m3 if a.dim() == 3 else mask, a, b)
                            for a, b in zip(self, other)))

    def take(self, index: Tensor) -> "ChainState":
        """Chains re-indexed per image: chain k of image b becomes chain index[b, k] (resampling)."""
        return ChainState(*(None if a is None else
                            torch.gather(a, 1, index if a.dim() == 2 else index.unsqueeze(-1).expand(-1, -1, a.shape[-1]))
                            for a in self))


Evaluate = Callable[[Tensor], ChainState]


def make_evaluator(generator: nn.Module, x: Tensor, sigma: float, prior: Prior, base: Optional[Proposal]) -> Evaluate:
    """evaluate(z (B, K, d)) -> ChainState: one generator forward + backward for all chains.

    log p(x|z) = -|G(z) - x|^2 / (2 sigma^2) - (D/2) log(2 pi sigma^2); its gradient is
    d log p(x|z) / d G(z) = -(G(z) - x) / sigma^2 pushed through the generator's backward.
    """
    data_shape = tuple(x.shape[1:])
    n_dims = int(math.prod(data_shape))
    x3 = x.reshape(x.shape[0], 1, n_dims)
    neg_inv_s2 = -1.0 / sigma**2
    const = -0.5 * n_dims * math.log(2 * math.pi * sigma**2)

    def evaluate(z: Tensor) -> ChainState:
        B, K, d = z.shape
        with torch.enable_grad():
            zl = z.detach().requires_grad_(True)
            out = generate(generator, zl.reshape(B * K, d), data_shape)
            r = out.detach().reshape(B, K, n_dims) - x3
            (gll,) = torch.autograd.grad(out, zl, grad_outputs=(r * neg_inv_s2).reshape(out.shape))
        ll = 0.5 * neg_inv_s2 * r.double().square().sum(-1) + const
        lp, gp = prior.log_prob_and_grad(z)
        if base is None:
            return ChainState(z, ll, gll, lp, gp, None, None)
        lq, gq = base.log_prob_and_grad(z)
        return ChainState(z, ll, gll, lp, gp, lq, gq)

    return evaluate


# ==== the HMC kernel ================================================================================
Kernel = Callable[[ChainState, Tensor, Tensor, torch.Generator], Tuple[ChainState, Tensor]]


def hmc_kernel(evaluate: Evaluate, n_leapfrog: int, inv_chol: Optional[Tensor] = None) -> Kernel:
    """Build the HMC transition (Neal 2011) once: ``kernel(state, beta (B,), eps (B, 1, 1), rng)`` leaves
    f_beta invariant for all (B, K) chains and returns (new state, acceptance probabilities (B, K)).

    Leapfrog with per-image step ``eps``; the trajectory's L position updates each cost one
    ``evaluate``; the gradient at the start is the state's, carried over. Mass matrix: the identity,
    or M_b = L_b L_b^T given as ``inv_chol`` = L^{-1} (B, d, d). With p = L v the momentum is carried
    whitened, v ~ N(0, I), kinetic energy |v|^2 / 2 = p^T M^{-1} p / 2, and the updates are
    v += (eps/2) L^{-1} grad, z += eps L^{-T} v (HMC in the coordinates u = L^T z, where a posterior
    close to N(mu, M^{-1}) is close to isotropic). The Metropolis test on H = -log f_beta(z) + |v|^2/2
    is float64; a NaN/inf energy is a rejection.
    """

    def whiten(g: Tensor) -> Tensor:  # L^{-1} g for every chain (rows: g^T L^{-T})
        return g if inv_chol is None else g @ inv_chol.transpose(-1, -2)

    def unwhiten(v: Tensor) -> Tensor:  # L^{-T} v (rows: v^T L^{-1})
        return v if inv_chol is None else v @ inv_chol

    def kernel(state: ChainState, beta: Tensor, eps: Tensor, rng: torch.Generator) -> Tuple[ChainState, Tensor]:
        z = state.z
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

    return kernel


def inverse_mass_chol(q: Optional[Proposal], precondition: bool, dtype: torch.dtype) -> Optional[Tensor]:
    """L^{-1} (B, d, d) of the start distribution's mass matrix (:meth:`Proposal.mass_chol`) when
    preconditioning; None (the identity) otherwise."""
    if not precondition or q is None:
        return None
    L = q.mass_chol()
    if L is None:
        return None
    eye = torch.eye(L.shape[-1], dtype=torch.float64, device=L.device).expand_as(L)
    return torch.linalg.solve_triangular(L.double(), eye, upper=False).to(dtype)


# ==== the start of the chains =======================================================================
def start_chains(base: Optional[Proposal], prior: Prior, n_images: int, n_chains: int, rng: torch.Generator,
                 dtype: torch.dtype, device: torch.device) -> Tensor:
    """(B, K, d) exact draws from the start distribution: ``base`` (a proposal over the B images) or the prior."""
    if base is not None:
        return base.sample(n_chains, rng)
    return prior.sample((n_images, n_chains), rng, dtype, device)


# ==== resampling and the adaptive next beta =========================================================
def systematic_resample(log_w: Tensor, rng: torch.Generator) -> Tensor:
    """(B, K) indices: systematic resampling (Carpenter, Clifford & Fearnhead 1999) of each image's
    particles with weights proportional to exp(log_w); one uniform per image."""
    B, K = log_w.shape
    w = torch.softmax(log_w, 1)
    cum = torch.cumsum(w, 1)
    cum[:, -1] = 1.0  # guard the last edge against rounding
    u = (torch.rand(B, 1, generator=rng, dtype=torch.float64, device=log_w.device)
         + torch.arange(K, dtype=torch.float64, device=log_w.device)) / K
    return torch.searchsorted(cum.contiguous(), u.contiguous()).clamp_(max=K - 1)


def ess_fraction(log_w: Tensor) -> Tensor:
    """(B,) (sum w)^2 / (K sum w^2) of each image's weights, in (0, 1]."""
    return torch.exp(2 * torch.logsumexp(log_w, 1) - torch.logsumexp(2 * log_w, 1)) / log_w.shape[1]


def conditional_ess(log_w: Tensor, increment: Tensor, delta: Tensor) -> Tensor:
    """(B,) CESS = (sum_k W_k u_k)^2 / sum_k W_k u_k^2, u_k = exp(delta * inc_k), W = normalised weights
    (Zhou, Johansen & Aston 2016): the fraction of the particles a step of ``delta`` keeps."""
    lw = torch.log_softmax(log_w, 1)
    a = delta.unsqueeze(1) * increment
    a = torch.where(torch.isfinite(a), a, torch.full_like(a, -math.inf))
    return torch.exp(2 * torch.logsumexp(lw + a, 1) - torch.logsumexp(lw + 2 * a, 1))


def adaptive_betas(beta: Tensor, log_w: Tensor, increment: Tensor, target: float) -> Tensor:
    """(B,) next betas: the largest beta' <= 1 with CESS(beta' - beta) >= ``target``, by bisection on
    log(beta' - beta) (the steps near beta = 0 of a peaked likelihood are many orders of magnitude
    smaller than those near 1)."""
    room = 1.0 - beta
    done = conditional_ess(log_w, increment, room) >= target
    lo = torch.full_like(beta, math.log(1e-14))
    hi = torch.log(room.clamp(min=1e-300))
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        ok = conditional_ess(log_w, increment, mid.exp()) >= target
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    nxt = beta + lo.exp()
    return torch.where(done | (room <= 0), torch.ones_like(beta), nxt.clamp(max=1.0))


def regrid(betas: Tensor, n_steps: int) -> Tensor:
    """An adaptive pilot's schedule (m_b + 1, B) stretched to ``n_steps``: (T+1, B) betas.

    Each pilot step of image b lost the same fraction of the conditional ESS, so pilot steps are
    (approximately) equally far apart in the information the path gains; the new schedule places
    T steps equally spaced in the pilot's step index, beta(u) linearly interpolated for
    u = linspace(0, m_b, T + 1), m_b the pilot's steps to beta = 1 (rows past it are padding).
    """
    reached = (betas >= 1.0).double().argmax(0)  # m_b: the first index at beta = 1
    m = reached.clamp(min=1).double()
    u = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64, device=betas.device).unsqueeze(1) * m  # (T+1, B)
    lo = u.floor().long().clamp(max=betas.shape[0] - 1)
    hi = (lo + 1).clamp(max=betas.shape[0] - 1)
    frac = u - lo.double()
    new = torch.gather(betas, 0, lo) * (1 - frac) + torch.gather(betas, 0, hi) * frac
    new[0], new[-1] = 0.0, 1.0
    return torch.cummax(new.clamp(0.0, 1.0), 0).values


# ==== the annealing loop ============================================================================
class ChainRun(NamedTuple):
    """One run of :func:`anneal` on B images.

    ``log_z``: (B,) float64 log-evidence estimate, sum over resampling epochs of log mean_k w_k (for
    AIS, log mean_k exp(log_weights)); ``log_weights``: (B, K) weights since the last resampling;
    ``acceptance``: (B,) mean HMC acceptance; ``step_sizes``: (T-1, B); ``betas``: (T+1, B) the schedule
    run (float64); ``resamples``: (B,) resampling events; ``latents``: (B, K, d) final chain states;
    ``log_z_at``: (R, B) the running estimate of log Z_t (the normalising constant of f_{beta_t}) at the
    R steps t asked for (``record``), each a stochastic lower bound of its own log Z_t (AIS stopped at
    t is AIS for f_{beta_t}); (0, B) when none were asked for.
    """

    log_z: Tensor
    log_weights: Tensor
    acceptance: Tensor
    step_sizes: Tensor
    betas: Tensor
    resamples: Tensor
    latents: Tensor
    log_z_at: Tensor


#: the dimension of each :class:`ChainRun` field that runs over images (the others run over steps first)
_IMAGE_DIM = ChainRun(0, 0, 0, 1, 1, 0, 0, 1)


def run_in_chunks(n_images: int, batch_size: Optional[int], run_chunk: Callable[[slice], ChainRun]) -> ChainRun:
    """``run_chunk`` on each chunk of at most ``batch_size`` images, the results concatenated by image.
    Schedules of different lengths (adaptive ones) are padded with their last row (beta = 1)."""
    parts = [run_chunk(sl) for sl in chunks(n_images, batch_size)]
    if len(parts) == 1:
        return parts[0]
    out = []
    for i, dim in enumerate(_IMAGE_DIM):
        fields = [p[i] for p in parts]
        if dim == 1:
            n = max(f.shape[0] for f in fields)
            fields = [torch.cat([f, f[-1:].expand(n - f.shape[0], -1)]) if 0 < f.shape[0] < n else
                      (f.new_zeros(n, f.shape[1]) if f.shape[0] == 0 and n else f) for f in fields]
        out.append(torch.cat(fields, dim))
    return ChainRun(*out)


class _StepSizes:
    """Per-image leapfrog steps: a (T-1, B) schedule used as given, or one adapted online after every
    transition (Wu et al.: a 0.9 moving average of the acceptance; x1.02 above 0.65, x0.98 below),
    whose values are recorded so the reverse run can replay them."""

    def __init__(self, step_size: Union[float, Tensor], B: int, dtype: torch.dtype, device: torch.device) -> None:
        self.fixed = torch.is_tensor(step_size)
        self.B, self.dtype, self.device = B, dtype, device
        self.given = step_size.to(device=device, dtype=dtype) if self.fixed else None
        self.eps = torch.full((B, 1, 1), 0.0 if self.fixed else float(step_size), dtype=dtype, device=device)
        self.used: List[Tensor] = []
        self.avg_acc = torch.full((B,), TARGET_ACCEPTANCE, dtype=torch.float64, device=device)

    def at(self, t: int) -> Tensor:
        """(B, 1, 1) the step of transition t (1-based)."""
        if self.fixed:
            return self.given[t - 1].reshape(self.B, 1, 1)
        self.used.append(self.eps.reshape(self.B))
        return self.eps

    def update(self, acc_mean: Tensor) -> None:
        if self.fixed:
            return
        self.avg_acc.mul_(ACCEPTANCE_SLOWNESS).add_((1 - ACCEPTANCE_SLOWNESS) * acc_mean)
        factor = torch.where(self.avg_acc > TARGET_ACCEPTANCE, STEP_INCREASE, STEP_DECREASE).to(self.dtype)
        self.eps = (self.eps * factor.reshape(self.B, 1, 1)).clamp_(STEP_MIN, STEP_MAX)

    def schedule(self) -> Tensor:
        if self.fixed:
            return self.given
        return torch.stack(self.used) if self.used else torch.empty(0, self.B, dtype=self.dtype, device=self.device)


def _resample_where_low(state: ChainState, log_w: Tensor, log_z: Tensor, threshold: float,
                        rng: torch.Generator) -> Tuple[ChainState, Tensor, Tensor, Tensor]:
    """Resample the particles of the images whose ESS fraction is below ``threshold``: their mean weight
    moves into log Z (log_z += log mean_k w_k) and their weights restart at 1. Returns (state, log_w,
    log_z, which images were resampled (B,) bool)."""
    B, K = log_w.shape
    low = ess_fraction(log_w) < threshold
    if not bool(low.any()):
        return state, log_w, log_z, low
    idx = torch.where(low.unsqueeze(1), systematic_resample(log_w, rng), torch.arange(K, device=log_w.device).expand(B, -1))
    log_z = log_z + torch.where(low, torch.logsumexp(log_w, 1) - math.log(K), torch.zeros_like(log_z))
    log_w = torch.where(low.unsqueeze(1), torch.zeros_like(log_w), log_w)
    return state.take(idx), log_w, log_z, low


def anneal(evaluate: Evaluate, kernel: Kernel, z0: Tensor, betas: Optional[Tensor], rng: torch.Generator, *,
           step_size: Union[float, Tensor], resample: float = 0.0, cess: Optional[float] = None,
           max_steps: int = 10_000, record: Sequence[int] = ()) -> ChainRun:
    """Anneal chains ``z0`` (B, K, d) along ``betas`` ((T+1,) or (T+1, B), forward 0 -> 1 or reversed
    1 -> 0), or, with ``betas=None``, along the adaptive schedule of conditional ESS ``cess`` (at most
    ``max_steps`` steps; the last is forced to beta = 1).

    ``step_size``: a float (initial step, adapted online) or a (T-1, B) schedule used as given.
    ``resample``: resample when the ESS fraction of the weights falls below it (0: never, AIS).
    ``record``: steps t (1..T) at which to keep the running log Z_t estimate (:attr:`ChainRun.log_z_at`).
    """
    B, K, _ = z0.shape
    dev = z0.device
    f64 = dict(dtype=torch.float64, device=dev)
    adaptive = betas is None
    if adaptive and cess is None:
        raise ValueError("an adaptive schedule needs cess")
    if not adaptive:
        betas = betas.to(**f64)
        betas = betas.unsqueeze(1).expand(-1, B) if betas.dim() == 1 else betas
    T = max_steps if adaptive else betas.shape[0] - 1
    chosen: List[Tensor] = [torch.zeros(B, **f64)]  # the adaptive schedule as it is chosen
    eps = _StepSizes(step_size, B, z0.dtype, dev)
    acc_sum, log_w, log_z = torch.zeros(B, **f64), torch.zeros(B, K, **f64), torch.zeros(B, **f64)
    resamples = torch.zeros(B, dtype=torch.long, device=dev)
    wanted = {int(t): i for i, t in enumerate(record)}
    log_z_at = torch.zeros(len(wanted), B, **f64)
    beta_prev = chosen[0] if adaptive else betas[0]

    state = evaluate(z0)
    threads.loop_start("ais")  # a command's thread tuner, if any, times each transition
    n_trans = 0
    for t in range(1, T + 1):
        inc = state.increment()
        if adaptive:
            beta = adaptive_betas(beta_prev, log_w, inc, cess) if t < T else torch.ones_like(beta_prev)
            chosen.append(beta)
        else:
            beta = betas[t]
        log_w += (beta - beta_prev).unsqueeze(1) * inc
        beta_prev = beta
        if t in wanted:
            log_z_at[wanted[t]] = log_z + torch.logsumexp(log_w, 1) - math.log(K)
        if (bool((beta >= 1.0).all()) if adaptive else t == T):
            break  # the last weight is in; a transition at beta = 1 would not change the estimate
        if resample > 0:
            state, log_w, log_z, low = _resample_where_low(state, log_w, log_z, resample, rng)
            resamples += low.long()
        state, acc = kernel(state, beta, eps.at(t), rng)
        n_trans += 1
        acc_mean = acc.mean(1)
        acc_sum += acc_mean
        eps.update(acc_mean)
        threads.loop_tick()
    log_z = log_z + torch.logsumexp(log_w, 1) - math.log(K)
    return ChainRun(log_z=log_z, log_weights=log_w, acceptance=acc_sum / max(n_trans, 1), step_sizes=eps.schedule(),
                    betas=torch.stack(chosen) if adaptive else betas, resamples=resamples, latents=state.z,
                    log_z_at=log_z_at)
