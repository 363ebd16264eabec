"""Initial distributions q(z | x) for AIS and importance sampling: normalised, sampled exactly, with an
exact log-density and its gradient, one distribution per image.

AIS (Neal 2001) started from any such q and annealed along

    f_beta(z) = q(z)^(1 - beta) * (p(z) p(x|z))^beta,     0 = beta_0 < ... < beta_T = 1,

has E[w] = p(x) because q is normalised and its samples are exact; with T = 1 it is plain
importance sampling, w = p(z) p(x|z) / q(z). A better q only lowers the variance (and so tightens
the stochastic lower bound E[log w] <= log p(x)); reverse AIS from an exact posterior sample back to
the same q gives E[1/w] = 1/p(x), an upper bound on the same estimator (BDMC).

* :class:`IsotropicGaussian`: q = N(z_b, s^2 I), one centre per image (the audit's proposal before
  the Laplace mixture; ``statgan audit --proposal isotropic``).
* :class:`GaussianMixture`: q = sum_m w_bm N(mu_bm, Lambda_bm^{-1}) with each precision given by its
  Cholesky factor Lambda = L L^T; :func:`statgan.audit.posterior.laplace_proposal` builds one from
  inversion optima. Components with weight 0 (log-weight -inf) are padding.

All log-densities are float64 (the AIS weights are); gradients come back in z's dtype.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["GaussianMixture", "IsotropicGaussian", "Proposal"]


class Proposal(ABC):
    """q(z) for each of B images: :meth:`sample`, :meth:`log_prob_and_grad`, and slicing by image."""

    n_images: int
    dim: int

    @abstractmethod
    def sample(self, n_chains: int, rng: torch.Generator) -> Tensor:
        """(B, n_chains, d) exact draws, in the proposal's dtype and device."""
        ...

    @abstractmethod
    def log_prob_and_grad(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        """(log q(z) (B, K) float64, d log q / dz (B, K, d) in z's dtype) for z (B, K, d)."""
        ...

    @abstractmethod
    def __getitem__(self, sl: slice) -> "Proposal":
        """The proposal of the images ``sl`` selects."""

    def mass_chol(self) -> Optional[Tensor]:
        """(B, d, d) lower Cholesky factor of a per-image HMC mass matrix M = L L^T that fits the
        posterior's scales (AIS's ``precondition=True``), or None: the identity. Default None."""
        return None


class IsotropicGaussian(Proposal):
    """q_b = N(mean_b, scale^2 I): log q = -|z - mean|^2 / (2 scale^2) - (d/2) log(2 pi scale^2)."""

    def __init__(self, mean: Tensor, scale: float) -> None:
        self.mean = mean  # (B, d)
        self.scale = float(scale)
        self.n_images, self.dim = mean.shape
        self.const = -0.5 * self.dim * math.log(2 * math.pi * self.scale**2)

    def sample(self, n_chains: int, rng: torch.Generator) -> Tensor:
        eps = torch.randn(self.n_images, n_chains, self.dim, generator=rng, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean.unsqueeze(1) + self.scale * eps

    def log_prob_and_grad(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        diff = z - self.mean.unsqueeze(1)
        return -0.5 * diff.double().square().sum(-1) / self.scale**2 + self.const, diff / (-self.scale**2)

    def __getitem__(self, sl: slice) -> "IsotropicGaussian":
        return IsotropicGaussian(self.mean[sl], self.scale)


class GaussianMixture(Proposal):
    """q_b(z) = sum_m w_bm N(z; mu_bm, (L_bm L_bm^T)^{-1}), L lower-triangular (Cholesky of the precision).

    log N(z; mu, Lambda^{-1}) = -|L^T (z - mu)|^2 / 2 - (d/2) log(2 pi) + sum_i log L_ii, and
    d log q / dz = sum_m r_m(z) (-Lambda_m (z - mu_m)) with responsibilities r_m = w_m N_m(z) / q(z).
    A draw picks m ~ Categorical(w_b), then z = mu_m + L_m^{-T} eps, eps ~ N(0, I) (covariance
    L^{-T} L^{-1} = Lambda^{-1}). Kept in float64: the mixture's density enters every AIS weight.

    Args:
        means: (B, M, d).
        chol_precision: (B, M, d, d) lower Cholesky factors of the precisions.
        log_weights: (B, M) normalised log-weights (logsumexp over M = 0); -inf marks an unused slot.
        dtype: the dtype of the samples (default ``means.dtype``); the density is float64 anyway.
    """

    def __init__(self, means: Tensor, chol_precision: Tensor, log_weights: Tensor,
                 dtype: Optional[torch.dtype] = None) -> None:
        self.dtype = dtype or means.dtype  # the samples' dtype (the generator's)
        self.means = means.double()
        self.chol = chol_precision.double()
        self.log_weights = log_weights.double()
        self.n_images, self.n_components, self.dim = means.shape
        self.log_norm = (self.chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
                         - 0.5 * self.dim * math.log(2 * math.pi))  # (B, M)

    def sample(self, n_chains: int, rng: torch.Generator) -> Tensor:
        B, M, d = self.means.shape
        comp = torch.multinomial(self.log_weights.exp(), n_chains, replacement=True, generator=rng)  # (B, K)
        eps = torch.randn(B, n_chains, d, 1, generator=rng, dtype=torch.float64, device=self.means.device)
        idx = torch.arange(B, device=comp.device).unsqueeze(1)
        L = self.chol[idx, comp]  # (B, K, d, d)
        y = torch.linalg.solve_triangular(L.transpose(-1, -2), eps, upper=True).squeeze(-1)
        return (self.means[idx, comp] + y).to(self.dtype)

    def component_log_prob_and_grad(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        """Per component: log N_m(z) (B, K, M) and its gradient (B, K, M, d), float64."""
        diff = z.double().unsqueeze(2) - self.means.unsqueeze(1)  # (B, K, M, d)
        L = self.chol.unsqueeze(1)  # (B, 1, M, d, d)
        u = (diff.unsqueeze(-2) @ L).squeeze(-2)  # u = L^T diff as a row: |u|^2 = diff^T Lambda diff
        lp = -0.5 * u.square().sum(-1) + self.log_norm.unsqueeze(1)
        grad = -(u.unsqueeze(-2) @ L.transpose(-1, -2)).squeeze(-2)  # -Lambda diff
        return lp, grad

    def log_prob_and_grad(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        lp_m, g_m = self.component_log_prob_and_grad(z)
        joint = lp_m + self.log_weights.unsqueeze(1)
        lq = torch.logsumexp(joint, -1)
        resp = torch.softmax(joint, -1)  # -inf slots get 0
        return lq, (resp.unsqueeze(-1) * g_m).sum(-2).to(z.dtype)

    def mass_chol(self) -> Tensor:
        """The precision's Cholesky factor of each image's heaviest component: the posterior's local
        scales where q holds most of its mass."""
        heaviest = self.log_weights.argmax(-1)
        return self.chol[torch.arange(self.n_images, device=heaviest.device), heaviest]

    def __getitem__(self, sl: slice) -> "GaussianMixture":
        return GaussianMixture(self.means[sl], self.chol[sl], self.log_weights[sl], self.dtype)
