r"""Fréchet distance between two Gaussians fitted to features (FID when the features are Inception's).

Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium" (NeurIPS), define FID as the squared 2-Wasserstein (Fréchet) distance between
:math:`N(\mu_1, \Sigma_1)` and :math:`N(\mu_2, \Sigma_2)` (Dowson & Landau 1982):

.. math:: d^2 = \|\mu_1 - \mu_2\|^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
          - 2 \operatorname{tr}\big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}.

How the trace term is computed, and why not ``scipy.linalg.sqrtm(Σ1 @ Σ2)`` as in pytorch-fid:
``Σ1 Σ2`` is not symmetric, so sqrtm needs a (complex) Schur decomposition — slow (~10 s at
d = 2,048 on 2 cores), it returns spurious imaginary parts when Σ1 Σ2 is singular (N ≤ d), and it was
broken outright in SciPy 1.11.2–1.12. Here everything is symmetric positive semi-definite:

1. :math:`\Sigma_1 = V \operatorname{diag}(w) V^\top` by ``eigh``; tiny negative eigenvalues (rounding
   on a singular covariance) are clipped to 0, so :math:`A = V \operatorname{diag}(\sqrt{w})` is real.
2. :math:`M = A^\top \Sigma_2 A` has the eigenvalues of :math:`\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}`:
   :math:`\Sigma_1^{1/2} = A V^\top`, so :math:`\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2} = V M V^\top` with V
   orthogonal. (This saves one D³ product against forming :math:`\Sigma_1^{1/2}` explicitly.) M is
   symmetrised against rounding and its eigenvalues come from ``eigvalsh``.
3. :math:`\operatorname{tr}\sqrt{M} = \sum_i \sqrt{\max(\lambda_i, 0)}`.

All in float64. The result is *not* clipped at 0: for identical or nearly identical inputs, values
like -1e-10 are rounding and are returned as they are (clipping would hide real bugs).
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
import torch

from ..errors import ConfigError, StatganError

__all__ = ["frechet_distance", "frechet_distance_from_stats"]


def _to_f64(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ConfigError(f"frechet_distance: {name} must be real-valued, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def frechet_distance(
    mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, n: Optional[int] = None
) -> float:
    r"""Squared Fréchet distance :math:`d^2` between :math:`N(\mu_1,\Sigma_1)` and :math:`N(\mu_2,\Sigma_2)`.

    Args:
        mu1, mu2: means, shape (D,). Torch tensors or numpy arrays.
        sigma1, sigma2: covariances, shape (D, D), symmetric positive semi-definite.
        n: the number of samples the statistics were estimated from (the smaller of the two). The
            matrices alone cannot reveal it; when ``n <= D`` the covariances are singular and the
            estimate is strongly biased, which triggers a warning.

    Returns:
        :math:`d^2` as a Python float (what papers report as "FID"). See the module docstring for
        the algorithm (symmetric eigendecompositions in float64, no ``sqrtm``).
    """
    m1, s1 = _to_f64(mu1, "mu1"), _to_f64(sigma1, "sigma1")
    m2, s2 = _to_f64(mu2, "mu2"), _to_f64(sigma2, "sigma2")
    d = m1.shape[0] if m1.ndim == 1 else -1
    if m1.ndim != 1 or m2.shape != m1.shape or s1.shape != (d, d) or s2.shape != (d, d) or d == 0:
        raise ConfigError(
            "frechet_distance: expected mu1, mu2 of shape (D,) and sigma1, sigma2 of shape (D, D), got "
            f"mu1 {m1.shape}, sigma1 {s1.shape}, mu2 {m2.shape}, sigma2 {s2.shape}"
        )
    for name, a in (("mu1", m1), ("sigma1", s1), ("mu2", m2), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise StatganError(f"frechet_distance: {name} contains NaN or inf")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"frechet_distance: n must be a positive integer or None, got {n!r}")
        if n <= d:
            warnings.warn(
                f"frechet_distance: statistics estimated from N = {n} samples in D = {d} dimensions (N <= D): "
                "the covariances are singular and the Fréchet distance is strongly biased; use N well above D "
                "(FID convention: N >= 10,000 for D = 2,048)",
                RuntimeWarning,
                stacklevel=2,
            )

    # Symmetrise: covariances from np.cov / FeatureStats are symmetric, but user-supplied ones may
    # carry rounding asymmetry, and eigh reads only one triangle.
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)

    w, v = np.linalg.eigh(s1)
    # Eigenvalues of a PSD matrix can come out as -1e-17-ish from rounding (singular Σ1): clip to 0.
    a = v * np.sqrt(np.clip(w, 0.0, None))  # A = V diag(sqrt w):  Σ1^{1/2} = A Vᵀ
    m = a.T @ s2 @ a  # similar to Σ1^{1/2} Σ2 Σ1^{1/2}: same eigenvalues
    m = 0.5 * (m + m.T)
    lam = np.linalg.eigvalsh(m)
    tr_covmean = float(np.sqrt(np.clip(lam, 0.0, None)).sum())

    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance_from_stats(a: Any, b: Any) -> float:
    """:func:`frechet_distance` of two :class:`~statgan.metrics.stats.FeatureStats`, passing ``n``."""
    return frechet_distance(a.mean, a.cov, b.mean, b.cov, n=min(a.n, b.n))
