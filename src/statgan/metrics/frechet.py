r"""Fréchet distance between two Gaussians fitted to features (FID when the features are Inception's).

Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium" (NeurIPS), define FID as the squared 2-Wasserstein (Fréchet) distance between
:math:`N(\mu_1, \Sigma_1)` and :math:`N(\mu_2, \Sigma_2)` (Dowson & Landau 1982):

.. math:: d^2 = \|\mu_1 - \mu_2\|^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
          - 2 \operatorname{tr}\big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}.

How the trace term is computed, and why not ``scipy.linalg.sqrtm(Σ1 @ Σ2)`` as in pytorch-fid:
``Σ1 Σ2`` is not symmetric, so sqrtm needs a (complex) Schur decomposition — slow (~10 s at
d = 2,048 on 2 cores), it returns spurious imaginary parts when Σ1 Σ2 is singular (N ≤ d), and it was
broken outright in SciPy 1.11.2–1.12. Only the *trace* of the square root is needed, i.e. the sum of
the square roots of the eigenvalues of :math:`\Sigma_1\Sigma_2` (non-negative: it is similar to a
PSD matrix), and those come from one symmetric eigenvalue-only problem:

1. Cholesky (default path): :math:`\Sigma_1 = L L^\top`. Then :math:`M = L^\top \Sigma_2 L` is
   symmetric PSD and similar to :math:`L L^\top \Sigma_2 = \Sigma_1\Sigma_2`
   (:math:`L^{-1} (\Sigma_1\Sigma_2) L = L^\top\Sigma_2 L`), so
   :math:`\operatorname{tr}\sqrt{\Sigma_1\Sigma_2} = \sum_i \sqrt{\lambda_i(M)}`. This is exactly
   LAPACK's symmetric-definite generalized eigenproblem of type 2 (``?sygv``, reached through
   ``scipy.linalg.eigh(Σ2, Σ1, type=2, eigvals_only=True)``): ``potrf`` (d³/3), ``sygst`` forming M
   from one triangle (~d³), then eigenvalues only (no eigenvectors). About 2x cheaper than the
   previous method below, which needed a full ``eigh`` with eigenvectors of Σ1 first, and >10x
   cheaper than sqrtm.
2. ``eigh`` fallback, when Cholesky fails (Σ1 singular — N ≤ d — or not quite PSD by rounding):
   :math:`\Sigma_1 = V \operatorname{diag}(w) V^\top`, tiny negative eigenvalues clipped to 0,
   :math:`A = V \operatorname{diag}(\sqrt{w})` (so :math:`\Sigma_1 = A A^\top`, the same
   factorisation idea with a non-triangular factor) and :math:`M = A^\top \Sigma_2 A`.

In both cases the trace is :math:`\sum_i \sqrt{\max(\lambda_i, 0)}` (M is symmetric by
construction in LAPACK's path, symmetrised against rounding in the ``eigh`` path).
A singular Σ1 on which Cholesky happens to succeed (tiny positive pivots) is fine too: Cholesky is
backward stable, and the two paths then agree to ~1e-10 relative (``tests/test_metrics_math.py``).

All in float64. The result is *not* clipped at 0: for identical or nearly identical inputs, values
like -1e-10 are rounding and are returned as they are (clipping would hide real bugs).
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple

import numpy as np
import torch

from ..errors import ConfigError, StatganError

__all__ = ["frechet_distance", "frechet_distance_from_stats", "trace_sqrt_product"]

METHODS = ("auto", "eigh")


def _to_f64(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ConfigError(f"frechet_distance: {name} must be real-valued, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: str = "auto") -> Tuple[float, str]:
    r"""(:math:`\operatorname{tr}\sqrt{\Sigma_1\Sigma_2}`, the path taken: "cholesky" or "eigh").

    ``s1``, ``s2``: symmetric PSD float64 arrays (D, D) (not checked here). ``method="auto"``
    factorises Σ1 by Cholesky and falls back to ``eigh`` when it is not positive definite;
    ``"eigh"`` always uses the eigendecomposition (the method before Cholesky; kept to compare).
    """
    if method == "auto":
        # scipy.linalg costs ~0.3 s to import and only this needs it: imported lazily
        import scipy.linalg

        try:
            # LAPACK ?sygv with itype 2 ("A B x = λ x", A = Σ2, B = Σ1): potrf (Σ1 = L Lᵀ), sygst
            # (M = Lᵀ Σ2 L, computed from one triangle: half the flops of two general products),
            # then eigenvalues only. eig(M) = eig(Σ2 Σ1) = eig(Σ1 Σ2).
            lam = scipy.linalg.eigh(s2, s1, type=2, eigvals_only=True, driver="gv", check_finite=False)
            return float(np.sqrt(np.clip(lam, 0.0, None)).sum()), "cholesky"
        except np.linalg.LinAlgError:  # Σ1 singular or (by rounding) indefinite: potrf fails
            pass
    w, v = np.linalg.eigh(s1)
    # Eigenvalues of a PSD matrix can come out as -1e-17-ish from rounding (singular Σ1): clip to 0.
    a = v * np.sqrt(np.clip(w, 0.0, None))  # A = V diag(sqrt w):  Σ1 = A Aᵀ
    m = a.T @ s2 @ a  # similar to Σ1 Σ2 (A⁻¹-free: Σ1^{1/2} Σ2 Σ1^{1/2} = V M Vᵀ): same eigenvalues
    m = 0.5 * (m + m.T)  # eigvalsh reads one triangle: make both carry the same rounding
    lam = np.linalg.eigvalsh(m)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum()), "eigh"


def frechet_distance(
    mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, n: Optional[int] = None, method: str = "auto"
) -> float:
    r"""Squared Fréchet distance :math:`d^2` between :math:`N(\mu_1,\Sigma_1)` and :math:`N(\mu_2,\Sigma_2)`.

    Args:
        mu1, mu2: means, shape (D,). Torch tensors or numpy arrays.
        sigma1, sigma2: covariances, shape (D, D), symmetric positive semi-definite.
        n: the number of samples the statistics were estimated from (the smaller of the two). The
            matrices alone cannot reveal it; when ``n <= D`` the covariances are singular and the
            estimate is strongly biased, which triggers a warning.
        method: "auto" (Cholesky of Σ1, ``eigh`` fallback when Σ1 is singular) or "eigh" (always the
            eigendecomposition; slower, same value — for comparisons).

    Returns:
        :math:`d^2` as a Python float (what papers report as "FID"). See the module docstring for
        the algorithm (Cholesky + one symmetric eigenvalue problem in float64, no ``sqrtm``).
    """
    if method not in METHODS:
        raise ConfigError(f"frechet_distance: method must be one of {', '.join(METHODS)}, got {method!r}")
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

    tr_covmean, _ = trace_sqrt_product(s1, s2, method)

    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance_from_stats(a: Any, b: Any) -> float:
    """:func:`frechet_distance` of two :class:`~statgan.metrics.stats.FeatureStats`, passing ``n``."""
    return frechet_distance(a.mean, a.cov, b.mean, b.cov, n=min(a.n, b.n))
