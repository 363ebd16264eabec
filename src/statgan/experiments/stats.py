"""Small statistics for reproduction reports: summaries over seeds, two-sample comparisons with
their confidence intervals, Holm's multiple-comparison adjustment, rank correlation of cell means
and the chi-square decile goodness-of-fit score of Filippone & Linhard's toy.

Everything takes plain sequences of floats and returns floats or small frozen dataclasses of them
(``nan`` where a value is undefined, e.g. a standard deviation of one number), so a report can be
written from whatever cells finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from ..runtime.lazy import scipy_stats


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; ``nan`` for fewer than two values)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


@dataclass(frozen=True)
class Welch:
    """Welch's two-sample comparison of mean(a) − mean(b) (see :func:`welch_test`)."""

    diff: float
    t: float
    dof: float
    p: float
    #: the two-sided confidence interval of the difference at ``level``
    lo: float
    hi: float
    level: float


def welch_test(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Welch:
    r"""Welch's two-sample t-test of mean(a) − mean(b):

    .. math:: t = \frac{\bar a - \bar b}{\sqrt{s_a^2/n_a + s_b^2/n_b}},\qquad
              \nu = \frac{(s_a^2/n_a + s_b^2/n_b)^2}{\frac{(s_a^2/n_a)^2}{n_a-1} + \frac{(s_b^2/n_b)^2}{n_b-1}}

    with the two-sided p-value from Student's t with ν degrees of freedom and the interval
    :math:`\bar a - \bar b \pm t_{\nu,(1+\text{level})/2}\,\sqrt{s_a^2/n_a + s_b^2/n_b}` (the same as
    ``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)``). t, p and the
    interval are ``nan`` when either side has fewer than two values or both have zero spread.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    nan = math.nan
    if x.size == 0 or y.size == 0:
        return Welch(nan, nan, nan, nan, nan, nan, level)
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return Welch(diff, nan, nan, nan, nan, nan, level)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se2 = va + vb
    if se2 == 0:
        return Welch(diff, nan, nan, nan, nan, nan, level)
    se = math.sqrt(se2)
    t = diff / se
    dof = float(se2**2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1)))
    st = scipy_stats().t
    half = float(st.ppf(0.5 + level / 2, dof)) * se
    return Welch(diff, float(t), dof, float(2 * st.sf(abs(t), dof)), diff - half, diff + half, level)


def welch(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, float]:
    """(difference, t, two-sided p) of :func:`welch_test`."""
    r = welch_test(a, b)
    return r.diff, r.t, r.p


def holm(pvalues: Sequence[float]) -> List[float]:
    r"""Holm's (1979) step-down adjustment for multiple comparisons, controlling the family-wise
    error rate: with the m finite p-values sorted, :math:`p_{(1)} \le \dots \le p_{(m)}`,

    .. math:: \tilde p_{(i)} = \max_{j \le i} \min\big(1, (m - j + 1)\,p_{(j)}\big),

    returned in the input order; rejecting :math:`\tilde p < \alpha` keeps the chance of any false
    rejection in the family below α. ``nan`` entries stay ``nan`` and do not count in m.
    (statsmodels' ``multipletests(method="holm")`` computes the same; it is not a dependency.)
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


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


@dataclass(frozen=True)
class Correlation:
    """Spearman's ρ across units (cells), its p-value and confidence interval (see
    :func:`cell_mean_spearman`)."""

    rho: float
    p: float
    lo: float
    hi: float
    level: float
    #: units the test counts (cells), and the runs averaged into them
    n: int
    n_runs: int


def spearman_interval(rho: float, n: int, level: float = 0.95) -> Tuple[float, float]:
    r"""Confidence interval of Spearman's ρ by Fisher's z with the Bonett & Wright (2000) standard
    error: :math:`\tanh\big(\operatorname{artanh}\rho \pm z_{(1+\text{level})/2}\sqrt{(1 + \rho^2/2)/(n - 3)}\big)`.
    ``nan`` for n ≤ 3 or an undefined ρ."""
    if n <= 3 or not math.isfinite(rho):
        return math.nan, math.nan
    z = math.atanh(max(-1 + 1e-12, min(1 - 1e-12, rho)))
    half = float(scipy_stats().norm.ppf(0.5 + level / 2)) * math.sqrt((1 + rho**2 / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def cell_mean_spearman(cells: Sequence[Tuple[Sequence[float], Sequence[float]]], level: float = 0.95) -> Correlation:
    """Spearman correlation of per-cell means: ``cells`` holds, for each cell, the x and y values of
    its runs (paired; pairs with a non-finite value are dropped, then cells with no pair).

    Runs of one cell (its seeds) share everything but the seed, so they are not independent
    draws of the between-cell relation; the cell means are the units, and n in the test and the
    interval (:func:`spearman_exact`, :func:`spearman_interval`) is the number of cells, not of runs.
    """
    mx: List[float] = []
    my: List[float] = []
    runs = 0
    for xs, ys in cells:
        pairs = [(float(a), float(b)) for a, b in zip(xs, ys)
                 if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
        if pairs:
            runs += len(pairs)
            mx.append(sum(a for a, _ in pairs) / len(pairs))
            my.append(sum(b for _, b in pairs) / len(pairs))
    rho, p = spearman_exact(mx, my) if len(mx) >= 3 else (math.nan, math.nan)
    lo, hi = spearman_interval(rho, len(mx), level)
    return Correlation(rho, p, lo, hi, level, len(mx), runs)


#: up to this many units Spearman's p-value is exact (all n! pairings; 8! = 40,320 is quick)
EXACT_SPEARMAN_N = 8


def spearman_exact(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    """Spearman's ρ with an exact two-sided permutation p-value: the share of the n! pairings of x
    with y whose |ρ| is at least the observed one (``scipy.stats.permutation_test``). For few units
    the t approximation of :func:`spearman` is far off (three points in perfect order get
    p < 0.001 there; exactly, 2 of the 3! = 6 pairings are as extreme, p = 1/3). Above
    :data:`EXACT_SPEARMAN_N` units it falls back to :func:`spearman`."""
    rho, p = spearman(x, y)
    if not math.isfinite(rho) or len(x) > EXACT_SPEARMAN_N:
        return rho, p
    rx, ry = ranks(x), ranks(y)

    def statistic(a: np.ndarray, axis: int = -1) -> np.ndarray:
        a = a - a.mean(axis=axis, keepdims=True)
        b = ry - ry.mean()
        return (a * b).sum(axis=axis) / np.sqrt((a**2).sum(axis=axis) * (b**2).sum())

    res = scipy_stats().permutation_test((rx,), statistic, permutation_type="pairings", n_resamples=np.inf,
                                         vectorized=True, alternative="two-sided")
    return rho, float(res.pvalue)


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


__all__ = ["mean_std", "Welch", "welch_test", "welch", "holm", "ranks", "spearman", "spearman_exact", "Correlation", "spearman_interval",
           "cell_mean_spearman", "chi2_decile_rms"]
