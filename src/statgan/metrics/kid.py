r"""Kernel Inception Distance (Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs", ICLR).

KID is the squared maximum mean discrepancy between the feature distributions P (``feats1``) and Q
(``feats2``) under the cubic polynomial kernel

.. math:: k(x, y) = \left(\tfrac{1}{d}\, x^\top y + 1\right)^3 ,

estimated without bias (U-statistics) on a subset :math:`X = \{x_i\}_{i=1}^m`, :math:`Y = \{y_j\}_{j=1}^m`:

.. math:: \widehat{\mathrm{MMD}}^2_u = \frac{1}{m(m-1)} \sum_{i \ne j} k(x_i, x_j)
          + \frac{1}{m(m-1)} \sum_{i \ne j} k(y_i, y_j) - \frac{2}{m^2} \sum_{i, j} k(x_i, y_j).

Following the paper and its reference code (also torch-fidelity's), the estimate is averaged over
``n_subsets`` random subsets of ``subset_size`` points drawn without replacement from each set; the
returned std is the spread of the per-subset estimates (population std, ``ddof = 0``, as
torch-fidelity), not the standard error of the mean. Being unbiased, the estimate can be slightly
negative when P = Q.
"""

from __future__ import annotations

import warnings
from typing import Any, Tuple

import numpy as np

from ..errors import ConfigError
from .stats import as_numpy

__all__ = ["kid", "mmd2_unbiased"]


def _poly_kernel(a: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    return (a @ b.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel between the rows of ``x`` (m, d) and ``y`` (n, d).

    Computed in float64: the three kernel means are O(1)–O(10) while MMD² of similar distributions
    is O(1e-3) or smaller, so float32 sums would lose most of the significant digits.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    kxx = _poly_kernel(x, x, d)
    kyy = _poly_kernel(y, y, d)
    kxy = _poly_kernel(x, y, d)
    # Off-diagonal means: drop the k(x_i, x_i) terms (that is what makes the estimate unbiased).
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(
    feats1: Any, feats2: Any, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> Tuple[float, float]:
    """KID: (mean, std) of the unbiased polynomial-kernel MMD² over random subsets.

    Args:
        feats1, feats2: features (N1, D) and (N2, D), torch tensors or numpy arrays.
        n_subsets: number of subsets (the paper and torch-fidelity: 100).
        subset_size: points per subset from *each* set (default 1,000). Capped at min(N1, N2), with
            a warning, so that sampling without replacement is possible.
        seed: seeds the subset draws (``numpy.random.default_rng``); same inputs + seed, same result.
    """
    x = as_numpy(feats1, "kid(feats1)")
    y = as_numpy(feats2, "kid(feats2)")
    if x.shape[1] != y.shape[1]:
        raise ConfigError(f"kid: feature dimensions differ: feats1 {tuple(x.shape)} vs feats2 {tuple(y.shape)}")
    for name, v, lo in (("n_subsets", n_subsets, 1), ("subset_size", subset_size, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ConfigError(f"kid: {name} must be an integer >= {lo}, got {v!r}")
    n1, n2 = x.shape[0], y.shape[0]
    m = min(int(subset_size), n1, n2)
    if m < 2:
        raise ConfigError(f"kid: needs at least 2 feature vectors in each set, got {n1} and {n2}")
    if m < subset_size:
        warnings.warn(
            f"kid: subset_size {subset_size} exceeds the number of feature vectors ({n1} and {n2}); using {m}",
            RuntimeWarning,
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    mmds = np.empty(int(n_subsets), dtype=np.float64)
    for s in range(int(n_subsets)):
        # Index the original (possibly float32) arrays and upcast only the subset: no full float64 copy.
        xs = x[rng.choice(n1, m, replace=False)]
        ys = y[rng.choice(n2, m, replace=False)]
        mmds[s] = mmd2_unbiased(xs, ys)
    return float(mmds.mean()), float(mmds.std())
