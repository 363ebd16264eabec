"""A Laplace-mixture approximation of the latent posterior p(z | x), the audit's AIS proposal.

For the density model z ~ N(0, I), x | z ~ N(G(z), sigma^2 I) the negative log posterior is, up to
a constant,

    U(z) = |G(z) - x|^2 / (2 sigma^2) + |z|^2 / 2.

At a mode z* the Gauss-Newton (Laplace) approximation is N(z*, Lambda^{-1}) with

    Lambda = I + J^T J / sigma^2,        J = dG/dz at z*  (D x d),

(the generalised Gauss-Newton Hessian of U: exact for a linear G, and positive definite always), and
the Laplace estimate of the mode's mass is

    log Z_m = log p(x | z*) + log p(z*) + (d/2) log(2 pi) - (1/2) log det Lambda.

A generator is many-to-one, so p(z | x) can have several modes (G(z) = G(-z) makes it symmetric);
every restart of the inversion is a candidate. :func:`laplace_proposal`

1. moves each restart to a posterior mode by Gauss-Newton-preconditioned ascent on -U,
   z <- z + a Lambda^{-1} (J^T (x - G(z)) / sigma^2 - z) with backtracking on a, recomputing J a
   few times (``jacobians``); J comes from forward-mode autodiff (``torch.func.jacfwd`` with the d unit
   tangents, vectorised over candidates: one forward-mode pass of d tangents per candidate);
2. takes the last Lambda as the precision of the candidate's Gaussian;
3. merges candidates that converged to the same optimum: in decreasing order of log Z, a candidate
   within squared Mahalanobis distance ``merge`` (under a kept mode's Lambda) of a kept one is dropped;
4. weights the distinct modes by their Laplace evidence, w_m = Z_m / sum Z (``weights="evidence"``,
   default: the weight that makes q proportional to the posterior where the Laplace approximations
   hold, so symmetric modes get equal weight and a spurious local optimum, whose evidence is
   typically many nats lower, gets almost none), or equally (``weights="equal"``: robust to a bad
   Laplace estimate of one mode's mass, at the cost of chains spent on spurious optima).

The result is a :class:`statgan.audit.proposal.GaussianMixture`, normalised and sampled exactly, so
importance sampling and AIS from it stay unbiased for p(x) whatever its quality (the weights are
evaluated with the mixture's exact density). See Wu et al. (ICLR 2017) for AIS on GANs and
MacKay (2003, ch. 27) for Laplace's method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..runtime.seeding import SeedLike
from ..runtime.validation import check_int, check_positive
from ._common import check_images, chunks, frozen, generate, jacobian
from .inversion import invert
from .proposal import GaussianMixture

__all__ = ["ANNEAL_FRACTION", "LaplaceMixture", "LaplaceOptions", "MODE_WEIGHTS", "jacobian", "laplace_proposal", "noise_schedule"]


def _evidence_weights(log_evidence: Tensor, keep: Tensor) -> Tensor:
    return torch.log_softmax(log_evidence.masked_fill(~keep, -math.inf), -1)


def _equal_weights(log_evidence: Tensor, keep: Tensor) -> Tensor:
    return torch.log_softmax(torch.zeros_like(log_evidence).masked_fill(~keep, -math.inf), -1)


#: ``weights=`` of :func:`laplace_proposal`: (log Z (B, M), kept (B, M)) -> normalised log-weights.
MODE_WEIGHTS: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {"evidence": _evidence_weights, "equal": _equal_weights}


class LaplaceMixture(GaussianMixture):
    """A :class:`GaussianMixture` built by :func:`laplace_proposal`, with what it was built from.

    Extra attributes: ``log_evidence`` (B, M) Laplace log Z of each candidate (float64),
    ``kept`` (B, M) bool (distinct modes; dropped candidates have weight 0), ``n_modes`` (B,) int.
    """

    def __init__(self, means: Tensor, chol_precision: Tensor, log_weights: Tensor, log_evidence: Tensor,
                 kept: Tensor, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(means, chol_precision, log_weights, dtype)
        self.log_evidence, self.kept = log_evidence, kept
        self.n_modes = kept.sum(-1)

    @property
    def laplace_log_likelihood(self) -> Tensor:
        """(B,) log sum_m Z_m over the distinct modes: the Laplace approximation of log p(x)
        (deterministic, neither bound)."""
        return torch.logsumexp(self.log_evidence.masked_fill(~self.kept, -math.inf), -1)

    def __getitem__(self, sl: slice) -> "LaplaceMixture":
        return LaplaceMixture(self.means[sl], self.chol[sl], self.log_weights[sl], self.log_evidence[sl],
                              self.kept[sl], self.dtype)


#: share of the Adam steps over which ``LaplaceOptions.sigma_from`` anneals down to sigma
ANNEAL_FRACTION = 0.7


def noise_schedule(sigma: float, sigma_from: Optional[float], steps: int) -> List[float]:
    """Noise level per Adam step: geometric from ``sigma_from`` to ``sigma`` over the first
    ``ANNEAL_FRACTION`` of the steps, then ``sigma``; all ``sigma`` when ``sigma_from`` is None or <= sigma."""
    if sigma_from is None or sigma_from <= sigma:
        return [sigma] * steps
    ramp = max(1, round(ANNEAL_FRACTION * steps))
    return [sigma_from * (sigma / sigma_from) ** min(1.0, t / ramp) for t in range(steps)]


@dataclass(frozen=True)
class LaplaceOptions:
    """Knobs of :func:`laplace_proposal` (``statgan audit`` sets them from :class:`AuditSettings`).

    Attributes:
        jacobians: rounds of (Jacobian, ``newton_steps`` steps); one Jacobian costs about d
            forward-mode generator passes per candidate.
        newton_steps: Gauss-Newton-preconditioned steps per round.
        adam_steps, lr: Adam steps on -log p(x, z) before (peak learning rate ``lr``, cosine).
        sigma_from: if > sigma, the Adam steps anneal the noise level of -log p(x, z) from
            ``sigma_from`` down to sigma (geometrically, over the first ``ANNEAL_FRACTION`` of the
            steps; the rest at sigma): a large noise level smooths the landscape, so the search
            drifts toward the posterior's heavier modes before the fine fit. ``None``: off.
        weights: "evidence" or "equal" (:data:`MODE_WEIGHTS`).
        merge: candidates within this squared Mahalanobis distance of a better one are one mode.
        max_scale: the proposal's spread in every direction is at most this (its precision is
            Lambda + (1/max_scale^2 - 1) I; the evidence keeps Lambda). 1 = the Laplace approximation.
    """

    jacobians: int = 2
    newton_steps: int = 10
    adam_steps: int = 0
    lr: float = 0.1
    sigma_from: Optional[float] = None
    weights: str = "evidence"
    merge: float = 1.0
    max_scale: float = 1.0

    def validate(self) -> "LaplaceOptions":
        check_int("jacobians", self.jacobians)
        check_int("newton_steps", self.newton_steps, minimum=0)
        check_int("adam_steps", self.adam_steps, minimum=0)
        check_positive("lr", self.lr)
        if self.sigma_from is not None:
            check_positive("sigma_from", self.sigma_from)
        check_positive("merge", self.merge, allow_zero=True)
        if self.weights not in MODE_WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(map(repr, MODE_WEIGHTS))}, got {self.weights!r}")
        if not (isinstance(self.max_scale, (int, float)) and 0.0 < self.max_scale <= 1.0):
            raise ValueError(f"max_scale must be in (0, 1] (the prior's spread is 1), got {self.max_scale!r}")
        return self


def laplace_proposal(generator: nn.Module, x: Tensor, candidates: Tensor, sigma: float,
                     options: LaplaceOptions = LaplaceOptions(), *, batch_size: Optional[int] = None,
                     seed: SeedLike = None) -> LaplaceMixture:
    """The Laplace mixture q(z | x) of every image (module docstring), for the prior N(0, I).

    Each candidate is moved to a posterior mode by Gauss-Newton-preconditioned ascent: ``jacobians``
    rounds, each computing J and Lambda = I + J^T J / sigma^2 at the current point and then taking
    ``newton_steps`` steps z <- z + a Lambda^{-1} grad log p(x, z) (one generator forward+backward
    each), with a per-candidate step a that halves when a step does not raise log p(x, z) (the step
    is then not taken) and doubles, up to 1, when it does. The last round's Lambda is the precision.
    (Plain gradient steps stall in the prior-dominated directions, whose curvature is ~1 against
    ~10^4 in the stiff ones; at such a point the Laplace approximation is off by hundreds of nats.)

    Args:
        generator: module mapping (N, d) to (N, *x.shape[1:]).
        x: (B, ...) images.
        candidates: (B, R, d) or (B, d) starting latents per image, e.g. the inversion's
            ``restart_z``.
        sigma: observation noise standard deviation.
        options: :class:`LaplaceOptions`.
        batch_size: images per chunk (memory: batch_size * R * D * d float64 Jacobian entries; the
            forward-mode passes take at most 512 rows at a time).
        seed: for the Adam refinement's random draws (none when ``candidates`` are given).
    """
    x = check_images("x", x)
    sigma = check_positive("sigma", sigma)
    o = options.validate()
    if not torch.is_tensor(candidates) or candidates.dim() not in (2, 3) or candidates.shape[0] != x.shape[0]:
        got = tuple(candidates.shape) if torch.is_tensor(candidates) else type(candidates).__name__
        raise ValueError(f"candidates must be a tensor of shape (B, R, d) or (B, d) with B = {x.shape[0]}, got {got}")
    z = candidates if candidates.dim() == 3 else candidates.unsqueeze(1)
    B, R, d = z.shape
    D = math.prod(x.shape[1:])
    if o.adam_steps > 0:
        # invert's objective mse + (lambda/d)|z|^2 with lambda = d sigma^2 / D equals 2 sigma^2 U(z) / D
        # (Adam's steps do not depend on the objective's scale, so a changing sigma changes only the
        # balance of the two terms)
        sigmas = noise_schedule(sigma, o.sigma_from, o.adam_steps)
        z = invert(generator, x, d, steps=o.adam_steps, lr=o.lr, prior_weight=[d * s**2 / D for s in sigmas], init=z,
                   batch_size=batch_size, seed=seed).restart_z
    z = z.detach()
    x = x.to(device=z.device, dtype=z.dtype)
    means, chols, logz = [], [], []
    with frozen(generator), torch.no_grad():
        for sl in chunks(B, batch_size):
            mean, chol_, log_z_ = _gauss_newton_modes(generator, z[sl], x[sl], sigma, o)
            means.append(mean)
            chols.append(chol_)
            logz.append(log_z_)
    means_, chol, log_z = torch.cat(means), torch.cat(chols), torch.cat(logz)
    kept = _distinct_modes(means_, chol, log_z, o.merge)
    return LaplaceMixture(means_, chol, MODE_WEIGHTS[o.weights](log_z, kept), log_z, kept, z.dtype)


def _gauss_newton_modes(generator: nn.Module, z: Tensor, x: Tensor, sigma: float,
                        o: LaplaceOptions) -> Tuple[Tensor, Tensor, Tensor]:
    """One chunk of :func:`laplace_proposal`: candidates ``z`` (b, R, d) of images ``x`` (b, ...)
    moved to posterior modes by the preconditioned ascent of its docstring; returns the modes
    (b, R, d), the Cholesky factors (b, R, d, d) float64 of the proposal's precision (Lambda, or
    Lambda + (1/max_scale^2 - 1) I), and each mode's Laplace evidence
    log Z = log p(x, z*) + d/2 log 2 pi - 1/2 log det Lambda (b, R)."""
    b, R, d = z.shape
    data_shape = tuple(x.shape[1:])
    D = math.prod(data_shape)
    const = -0.5 * D * math.log(2 * math.pi * sigma**2) - 0.5 * d * math.log(2 * math.pi)
    eye = torch.eye(d, dtype=torch.float64, device=z.device)

    def log_joint_and_grad(zz: Tensor) -> Tuple[Tensor, Tensor]:
        """log p(x, z) (b, R) float64 and its gradient (b, R, d) float64: one forward+backward."""
        with torch.enable_grad():
            zl = zz.detach().requires_grad_(True)
            out = generate(generator, zl.reshape(b * R, d), data_shape)
            r = out.reshape(b, R, D) - x.reshape(b, 1, D)
            (g,) = torch.autograd.grad(out, zl, grad_outputs=(-r / sigma**2).reshape(out.shape))
        lj = -0.5 * r.detach().double().square().sum(-1) / sigma**2 - 0.5 * zz.double().square().sum(-1) + const
        return lj, g.double() - zz.double()

    lj, grad = log_joint_and_grad(z)
    step = torch.ones(b, R, 1, dtype=torch.float64, device=z.device)
    for _ in range(o.jacobians):
        J = jacobian(generator, z.reshape(b * R, d)).double().reshape(b, R, D, d)
        L = torch.linalg.cholesky(eye + J.transpose(-1, -2) @ J / sigma**2)
        del J
        for _ in range(o.newton_steps):
            trial = (z.double() + step * torch.cholesky_solve(grad.unsqueeze(-1), L).squeeze(-1)).to(z.dtype)
            lj1, grad1 = log_joint_and_grad(trial)
            up = (lj1 > lj).unsqueeze(-1)  # NaN compares False: not taken
            z = torch.where(up, trial, z)
            lj, grad = torch.where(up.squeeze(-1), lj1, lj), torch.where(up, grad1, grad)
            step = torch.where(up, (2 * step).clamp(max=1.0), 0.5 * step)
    log_z = lj + 0.5 * d * math.log(2 * math.pi) - L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    if o.max_scale < 1.0:  # the proposal's precision: Lambda + (1/max_scale^2 - 1) I
        L = torch.linalg.cholesky(L @ L.transpose(-1, -2) + (o.max_scale**-2 - 1.0) * eye)
    return z, L, log_z


def _distinct_modes(means: Tensor, chol: Tensor, log_z: Tensor, merge: float) -> Tensor:
    """(B, R) bool: in decreasing order of log Z, a candidate is kept unless it lies within squared
    Mahalanobis distance ``merge`` of an already kept one (distance under the kept one's Lambda)."""
    B, R, _ = means.shape
    order = torch.argsort(log_z, dim=-1, descending=True)
    kept = torch.zeros(B, R, dtype=torch.bool, device=means.device)
    # (B, R, R): squared distance of candidate j from candidate i under Lambda_i
    diff = means.double().unsqueeze(1) - means.double().unsqueeze(2)  # [b, i, j] = z_j - z_i
    u = diff @ chol  # rows (z_j - z_i)^T L_i
    dist = u.square().sum(-1)
    rows = torch.arange(B, device=means.device)
    for k in range(R):  # R is the number of restarts: a handful
        j = order[:, k]
        near = (dist[rows, :, j] <= merge) & kept  # some kept i is close to j
        kept[rows, j] = ~near.any(-1)
    return kept
