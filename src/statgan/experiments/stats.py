"""Small statistics for reproduction reports: summaries over seeds, two-sample comparisons,
rank correlation and the chi-square decile goodness-of-fit score of Filippone & Linhard's toy.

Everything takes plain sequences of floats and returns floats (``nan`` where a value is undefined,
e.g. a standard deviation of one number), so a report can be written from whatever cells finished.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np

from ..runtime.lazy import scipy_stats


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; ``nan`` for fewer than two values)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def welch(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, float]:
    r"""Welch's two-sample t-test of mean(a) − mean(b):

    .. math:: t = \frac{\bar a - \bar b}{\sqrt{s_a^2/n_a + s_b^2/n_b}},\qquad
              \nu = \frac{(s_a^2/n_a + s_b^2/n_b)^2}{\frac{(s_a^2/n_a)^2}{n_a-1} + \frac{(s_b^2/n_b)^2}{n_b-1}}

    Returns (difference, t, two-sided p); t and p are ``nan`` when either side has fewer than two
    values or both have zero spread.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return diff, math.nan, math.nan
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se2 = va + vb
    if se2 == 0:
        return diff, math.nan, math.nan
    t = diff / math.sqrt(se2)
    dof = se2**2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return diff, float(t), float(2 * scipy_stats().t.sf(abs(t), dof))


def ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties getting the average of the ranks they span."""
    return scipy_stats().rankdata(np.asarray(x, dtype=np.float64), method="average").astype(np.float64)


def spearman(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    r"""Spearman's rank correlation ρ (Pearson correlation of average ranks) and its two-sided p-value
    from the t approximation :math:`t = \rho\sqrt{(n-2)/(1-\rho^2)}` with n − 2 degrees of freedom
    (``scipy.stats.spearmanr``). ``nan`` for n < 3 or a constant input."""
    if len(x) != len(y):
        raise ValueError(f"spearman: x and y differ in length ({len(x)} vs {len(y)})")
    if len(x) < 3 or np.ptp(np.asarray(x, dtype=np.float64)) == 0 or np.ptp(np.asarray(y, dtype=np.float64)) == 0:
        return math.nan, math.nan
    res = scipy_stats().spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def chi2_decile_rms(samples: np.ndarray, bins: int = 10) -> float:
    r"""Goodness of fit of 2-D samples to N(0, I₂) through their squared norms (the toy score of
    Filippone & Linhard's code): ‖x‖² ~ χ²₂, whose CDF is 1 − exp(−r/2), so the decile edges are
    :math:`r_k = -2\log(1 - k/10)`. With :math:`c_k` the count in bin k and E = n/10,

    .. math:: \text{score} = \sqrt{\tfrac1{10}\textstyle\sum_k (c_k/E - 1)^2}.

    Exact samples give ≈ sqrt(9/n) (0.03 at n = 10,000); all samples in one bin give 3.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] == 0:
        raise ValueError(f"chi2_decile_rms: expected (n, 2) samples, got shape {x.shape}")
    r = (x**2).sum(axis=1)
    # χ²₂ CDF is 1 − exp(−r/2): the bin of r is floor(bins · CDF(r)), clipped for r = +inf / nan
    u = -np.expm1(-0.5 * r)
    u = np.where(np.isfinite(u), u, 1.0)
    idx = np.clip(np.floor(u * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    expected = x.shape[0] / bins
    return float(np.sqrt(np.mean((counts / expected - 1.0) ** 2)))


__all__ = ["mean_std", "welch", "ranks", "spearman", "chi2_decile_rms"]
