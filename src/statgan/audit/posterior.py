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

1. refines each restart toward a posterior mode: Adam on U (the inversion with the prior penalty
   lambda = d sigma^2 / D, which makes its objective proportional to U), then one Gauss-Newton step
   z + Lambda^{-1} (J^T (x - G(z)) / sigma^2 - z) with J at the refined point, kept where it lowers U;
2. computes J at every candidate by forward-mode autodiff (``torch.func.jvp``, d tangents at once,
   batched over candidates: d forward-mode passes per candidate);
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
from typing import Callable, Dict, Optional

import torch
from torch import Tensor, nn

from ..runtime.seeding import SeedLike
from ..runtime.validation import check_int, check_positive
from ._common import check_images, chunks, frozen, generate
from .inversion import invert
from .proposal import GaussianMixture

__all__ = ["LaplaceMixture", "MODE_WEIGHTS", "jacobian", "laplace_proposal"]


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


def jacobian(generator: nn.Module, z: Tensor, rows: int = 512) -> Tensor:
    """(N, D, d) Jacobians dG/dz at z (N, d), D = prod(output shape), by forward mode.

    Each latent is repeated d times with the unit tangents e_1..e_d and pushed through one
    ``torch.func.jvp`` (so the generator must treat samples independently: eval-mode BatchNorm, as
    under :func:`statgan.audit._common.frozen`); ``rows`` bounds the batch (latents x d) per call.
    """
    N, d = z.shape
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    per = max(1, rows // d)
    out = []
    for i in range(0, N, per):
        zi = z[i:i + per]
        n = zi.shape[0]
        _, tangent = torch.func.jvp(generator, (zi.repeat_interleave(d, 0),), (eye.repeat(n, 1),))
        out.append(tangent.reshape(n, d, -1).transpose(1, 2))
    return torch.cat(out)


def laplace_proposal(
    generator: nn.Module,
    x: Tensor,
    candidates: Tensor,
    sigma: float,
    *,
    refine_steps: int = 50,
    lr: float = 0.02,
    weights: str = "evidence",
    merge: float = 1.0,
    batch_size: Optional[int] = None,
    seed: SeedLike = None,
) -> LaplaceMixture:
    """The Laplace mixture q(z | x) of every image (module docstring), for the prior N(0, I).

    Args:
        generator: module mapping (N, d) to (N, *x.shape[1:]).
        x: (B, ...) images.
        candidates: (B, R) or (B, R, d) starting latents per image, e.g. the inversion's
            ``restart_z`` (a (B, d) tensor is taken as R = 1).
        sigma: observation noise standard deviation.
        refine_steps: Adam steps on U(z) from each candidate (0: only the Gauss-Newton step).
        lr: Adam's peak learning rate (cosine-annealed).
        weights: "evidence" or "equal" (:data:`MODE_WEIGHTS`).
        merge: candidates within this squared Mahalanobis distance of a better one are one mode.
        batch_size: images per chunk (memory: batch_size * R * d generator activations in the
            Jacobian, at most 512 rows at a time).
        seed: for the refinement (it draws nothing when ``candidates`` are given; kept for symmetry).
    """
    x = check_images("x", x)
    sigma = check_positive("sigma", sigma)
    refine_steps = check_int("refine_steps", refine_steps, minimum=0)
    merge = check_positive("merge", merge, allow_zero=True)
    if weights not in MODE_WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(map(repr, MODE_WEIGHTS))}, got {weights!r}")
    if not torch.is_tensor(candidates) or candidates.dim() not in (2, 3) or candidates.shape[0] != x.shape[0]:
        got = tuple(candidates.shape) if torch.is_tensor(candidates) else type(candidates).__name__
        raise ValueError(f"candidates must be a tensor of shape (B, R, d) or (B, d) with B = {x.shape[0]}, got {got}")
    z = candidates if candidates.dim() == 3 else candidates.unsqueeze(1)
    B, R, d = z.shape
    data_shape = tuple(x.shape[1:])
    D = math.prod(data_shape)
    if refine_steps > 0:
        # invert's objective mse + (lambda/d)|z|^2 with lambda = d sigma^2 / D equals 2 sigma^2 U(z) / D
        z = invert(generator, x, d, steps=refine_steps, lr=lr, prior_weight=d * sigma**2 / D, init=z,
                   batch_size=batch_size, seed=seed).restart_z
    dtype = z.dtype
    x = x.to(device=z.device, dtype=dtype)
    const = -0.5 * D * math.log(2 * math.pi * sigma**2) - 0.5 * d * math.log(2 * math.pi)

    def neg_log_joint(out: Tensor, zz: Tensor, xb: Tensor) -> Tensor:
        """-log p(x, z) (b, R) float64 from G(z) (b*R, ...)."""
        r = out.double().reshape(xb.shape[0], R, D) - xb.double().reshape(-1, 1, D)
        return 0.5 * r.square().sum(-1) / sigma**2 + 0.5 * zz.double().square().sum(-1) - const

    means, chols, logz = [], [], []
    eye = torch.eye(d, dtype=torch.float64, device=z.device)
    with frozen(generator), torch.no_grad():
        for sl in chunks(B, batch_size):
            zb, xb = z[sl], x[sl]
            b = zb.shape[0]
            flat = zb.reshape(b * R, d)
            out = generate(generator, flat, data_shape)
            u0 = neg_log_joint(out, zb, xb)
            J = jacobian(generator, flat).double().reshape(b, R, D, d)
            prec = eye + J.transpose(-1, -2) @ J / sigma**2
            L = torch.linalg.cholesky(prec)
            # one Gauss-Newton step toward the mode: Lambda delta = J^T (x - G(z)) / sigma^2 - z
            resid = xb.double().reshape(b, 1, D) - out.double().reshape(b, R, D)
            grad = (J.transpose(-1, -2) @ resid.unsqueeze(-1)).squeeze(-1) / sigma**2 - zb.double()
            step = torch.cholesky_solve(grad.unsqueeze(-1), L).squeeze(-1)
            z1 = (zb.double() + step).to(dtype)
            u1 = neg_log_joint(generate(generator, z1.reshape(b * R, d), data_shape), z1, xb)
            better = u1 < u0  # keep the step only where it lowered U (the linearisation held)
            zb = torch.where(better.unsqueeze(-1), z1, zb)
            u = torch.where(better, u1, u0)
            means.append(zb)
            chols.append(L)
            logz.append(-u + 0.5 * d * math.log(2 * math.pi) - L.diagonal(dim1=-2, dim2=-1).log().sum(-1))
    means_, chol, log_z = torch.cat(means), torch.cat(chols), torch.cat(logz)
    kept = _distinct_modes(means_, chol, log_z, merge)
    return LaplaceMixture(means_, chol, MODE_WEIGHTS[weights](log_z, kept), log_z, kept, dtype)


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
