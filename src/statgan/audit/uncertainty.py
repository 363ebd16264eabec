"""The tests and confidence intervals behind the audit's verdicts.

Every verdict of :mod:`statgan.audit.verdicts` rests on one of these, so that it can say how sure
it is (and "unresolved" when the uncertainty is larger than the effect):

* :func:`median` -- the one median of the audit (:func:`statgan.audit.summary.median`,
  ``numpy.median``: the mean of the two middle values for even n; ``torch.median`` takes the lower
  one), used by tables, plots and tests alike;
* :func:`auroc_ci` -- AUROC with DeLong's (1988) variance, in the midrank form of Sun & Xu (2014);
* :func:`shift_test` -- Mann-Whitney U test (scipy) with the Hodges-Lehmann shift and its
  distribution-free confidence interval (Lehmann 1963; Hollander & Wolfe, ch. 4.3);
* :func:`spearman_ci` / :func:`stratified_spearman` -- Spearman's rho per set with a Fisher-z interval
  (variance 1.06 / (n - 3), Fieller, Hartley & Pearson 1957), and the inverse-variance weighted
  combination over sets (a correlation *within* sets, which pooling sets with different means
  does not give);
* :func:`ratio_of_medians_ci` -- percentile bootstrap of a ratio of two medians;
* :func:`binomial_ci` -- Clopper-Pearson interval of a rate, and the one-sided binomial p-value of
  "more than the nominal rate" (scipy.stats.binomtest);
* :func:`median_ci` -- the distribution-free interval of a median from order statistics;
* :func:`gap_allowance` / :func:`spearman_envelope` -- how far the likelihood estimator may be off
  (a high quantile of the per-image BDMC gaps), and what that error can do to a rank correlation
  with log-likelihood.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..runtime.lazy import scipy_stats
from .summary import BinomialCI, CorrelationEnvelope, ShiftTest, median

__all__ = ["GAP_QUANTILE", "Z95", "BinomialCI", "ShiftTest", "auroc_ci", "binomial_ci", "gap_allowance", "median",
           "median_ci", "ratio_of_medians_ci", "shift_test", "spearman_ci", "spearman_envelope", "stratified_spearman"]

#: the quantile of the per-image BDMC gaps taken as the likelihood estimator's error allowance: a
#: median-based statistic (a median, a Hodges-Lehmann shift) moves by at most about this much when
#: no more than 10 % of the images are looser (the median gap would let half of them be)
GAP_QUANTILE = 0.9

#: the two-sided 95 % normal quantile
Z95 = 1.959963984540054
#: Var[atanh(Spearman rho)] ~ 1.06 / (n - 3) (Fieller, Hartley & Pearson 1957)
_SPEARMAN_VAR = 1.06


def _arr(values: Any) -> np.ndarray:
    if torch.is_tensor(values):
        values = values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64).ravel()


def auroc_ci(scores_in: Any, scores_out: Any, level: float = 0.95) -> Tuple[float, float, float]:
    """(AUROC, lower, upper): P(s_out > s_in) + P(=)/2 with DeLong's normal interval, clipped to [0, 1].

    DeLong, DeLong & Clarke-Pearson (1988): with the structural components V10_j = P(s_out_j > s_in)
    and V01_i = P(s_out > s_in_i) (ties 1/2), Var[AUROC] = Var(V10)/n_out + Var(V01)/n_in; both come
    from midranks (Sun & Xu 2014). With one image on either side the variance is undefined and the
    interval is [0, 1]; under perfect separation it is 0 (the interval collapses on the estimate).
    """
    a, b = _arr(scores_in), _arr(scores_out)
    n_in, n_out = a.size, b.size
    rank = scipy_stats().rankdata
    r_all = rank(np.concatenate([a, b]))
    r_a, r_b = rank(a), rank(b)
    auc = float((r_all[n_in:].sum() - n_out * (n_out + 1) / 2.0) / (n_in * n_out))
    if n_in < 2 or n_out < 2:
        return auc, 0.0, 1.0
    v10 = (r_all[n_in:] - r_b) / n_in          # per OOD score: fraction of in-distribution scores below it
    v01 = 1.0 - (r_all[:n_in] - r_a) / n_out   # per in-distribution score: fraction of OOD scores above it
    se = math.sqrt(v10.var(ddof=1) / n_out + v01.var(ddof=1) / n_in)
    z = float(scipy_stats().norm.ppf(0.5 + level / 2))
    return auc, max(0.0, auc - z * se), min(1.0, auc + z * se)


@lru_cache(maxsize=256)
def _exact_u_quantile(n: int, m: int, tail: float) -> int:
    """The largest k with P(U <= k) <= tail for the Mann-Whitney U of samples of n and m without ties
    (-1 if none): U's counts are the coefficients of the Gaussian binomial [n + m choose n]_q =
    prod_{i=1..n} (1 - q^(m+i)) / (1 - q^i)."""
    poly = np.zeros(n * m + 1)
    poly[0] = 1.0
    for i in range(1, n + 1):
        poly[m + i:] -= poly[: n * m + 1 - (m + i)].copy()   # times (1 - q^(m+i))
        for j in range(i, n * m + 1):                          # divided by (1 - q^i)
            poly[j] += poly[j - i]
    cdf = np.cumsum(poly) / poly.sum()
    below = np.nonzero(cdf <= tail * (1 + 1e-12))[0]
    return int(below[-1]) if below.size else -1


def shift_test(a: Any, b: Any, level: float = 0.95) -> ShiftTest:
    """Mann-Whitney U test of b against a, with the Hodges-Lehmann shift of b over a and its CI.

    The CI is the distribution-free one that inverts the U test: with D_(1) <= ... <= D_(nm) the
    sorted differences b_j - a_i and k = floor(nm/2 - z sqrt(nm(n+m+1)/12)) (the normal approximation
    of U's null quantile), the interval is [D_(k+1), D_(nm-k)] (Lehmann 1963). When k < 0 (tiny
    samples) no interval of that level exists and it is (-inf, inf).
    """
    x, y = _arr(a), _arr(b)
    n, m = x.size, y.size
    d = np.sort((y[None, :] - x[:, None]).ravel())
    if n * m <= 2500:
        k = _exact_u_quantile(n, m, (1 - level) / 2)
    else:
        z = float(scipy_stats().norm.ppf(0.5 + level / 2))
        k = math.floor(n * m / 2.0 - z * math.sqrt(n * m * (n + m + 1) / 12.0))
    lo, hi = (float(d[k]), float(d[n * m - k - 1])) if k >= 0 else (-math.inf, math.inf)
    p = float(scipy_stats().mannwhitneyu(y, x, alternative="two-sided").pvalue)
    return ShiftTest(shift=float(np.median(d)), lo=lo, hi=hi, pvalue=p, n_a=n, n_b=m, level=level)


def spearman_ci(x: Any, y: Any, level: float = 0.95) -> Optional[Tuple[float, float, float, float]]:
    """(rho, p, lower, upper): Spearman's rho, scipy's two-sided p-value and a Fisher-z interval with
    variance 1.06 / (n - 3); ``None`` with fewer than 4 pairs or a constant variable."""
    a, b = _arr(x), _arr(y)
    if a.size < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    res = scipy_stats().spearmanr(a, b)
    rho = float(res.statistic)
    z = float(scipy_stats().norm.ppf(0.5 + level / 2))
    se = math.sqrt(_SPEARMAN_VAR / (a.size - 3))
    c = math.atanh(max(-0.999999, min(0.999999, rho)))
    return rho, float(res.pvalue), math.tanh(c - z * se), math.tanh(c + z * se)


def stratified_spearman(pairs: Sequence[Tuple[Any, Any]], level: float = 0.95) -> Optional[Tuple[float, float, float, float, int]]:
    """(rho, p, lower, upper, n): the within-set Spearman correlation over several sets, as the
    inverse-variance weighted mean of the sets' Fisher z = atanh(rho_k) (weights (n_k - 3) / 1.06),
    back-transformed; p from z / se under the normal approximation. Sets with fewer than 4 pairs
    (or a constant variable) are left out; ``None`` when none is left."""
    zs, ws, n = [], [], 0
    for x, y in pairs:
        r = spearman_ci(x, y, level)
        if r is None:
            continue
        k = _arr(x).size
        zs.append(math.atanh(max(-0.999999, min(0.999999, r[0]))))
        ws.append((k - 3) / _SPEARMAN_VAR)
        n += k
    if not ws:
        return None
    w = np.asarray(ws)
    zbar = float(np.dot(w, zs) / w.sum())
    se = 1.0 / math.sqrt(w.sum())
    q = float(scipy_stats().norm.ppf(0.5 + level / 2))
    p = float(2 * scipy_stats().norm.sf(abs(zbar) / se))
    return math.tanh(zbar), p, math.tanh(zbar - q * se), math.tanh(zbar + q * se), n


def ratio_of_medians_ci(num: Any, den: Any, n_boot: int = 2000, level: float = 0.95,
                        seed: int = 0) -> Tuple[float, float, float]:
    """(median(num) / median(den), lower, upper): percentile bootstrap, each sample resampled with
    replacement ``n_boot`` times (inf where a resampled denominator median is 0)."""
    a, b = _arr(num), _arr(den)
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, a.size, (n_boot, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, (n_boot, b.size))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(mb > 0, ma / np.where(mb > 0, mb, 1.0), math.inf)
    q = (1 - level) / 2
    est = float(np.median(a) / np.median(b)) if np.median(b) > 0 else math.inf
    return est, float(np.quantile(r, q)), float(np.quantile(r, 1 - q))


def binomial_ci(k: int, n: int, null: float, level: float = 0.95) -> BinomialCI:
    """Clopper-Pearson interval of k / n and P(X >= k) for X ~ Binomial(n, null)."""
    if n == 0:
        return BinomialCI(k=0, n=0, rate=math.nan, lo=0.0, hi=1.0, pvalue_above_null=1.0)
    st = scipy_stats()
    # the interval of the two-sided test (the one-sided test's interval is [lo, 1])
    ci = st.binomtest(int(k), int(n), float(null)).proportion_ci(confidence_level=level, method="exact")
    p = st.binomtest(int(k), int(n), float(null), alternative="greater").pvalue
    return BinomialCI(k=int(k), n=int(n), rate=k / n, lo=float(ci.low), hi=float(ci.high), pvalue_above_null=float(p))


def median_ci(values: Any, level: float = 0.95) -> Tuple[float, Optional[float], Optional[float]]:
    """(median, lower, upper): the distribution-free interval [x_(k+1), x_(n-k)] of the median, with k
    the largest count such that P(Bin(n, 1/2) <= k) <= (1 - level) / 2 (its coverage is at least
    ``level``); ``None`` ends when n is too small for that level (n <= 5 at 95 %)."""
    a = np.sort(_arr(values))
    n = a.size
    if n == 0:
        return math.nan, None, None
    k = int(scipy_stats().binom.ppf((1 - level) / 2, n, 0.5))
    while k >= 0 and scipy_stats().binom.cdf(k, n, 0.5) > (1 - level) / 2:
        k -= 1
    if k < 0:
        return float(np.median(a)), None, None
    return float(np.median(a)), float(a[k]), float(a[n - k - 1])


def gap_allowance(gaps: Any, quantile: float = GAP_QUANTILE) -> float:
    """The likelihood estimator's error allowance in nats: the ``quantile`` of the per-image BDMC
    gaps (upper - lower bound), at least 0 (``inf`` without gaps)."""
    g = _arr(gaps)
    g = g[np.isfinite(g)]
    return max(0.0, float(np.quantile(g, quantile))) if g.size else math.inf


def _rank_rows(y: np.ndarray) -> np.ndarray:
    return scipy_stats().rankdata(y, axis=-1)


def _spearman_extremes(ll: np.ndarray, lv: np.ndarray, allowance: float) -> Tuple[float, float]:
    """(min, max) of Spearman's rho(ll + e, lv) over error patterns e in [0, allowance]^n: every step
    pattern (the images above (or below) a local-variance rank get the whole allowance) and the two
    ramps e = allowance * rank / n (up or down) -- the patterns that move the ranks of ll furthest
    toward (or away from) those of lv."""
    n = ll.size
    order = np.argsort(np.argsort(lv, kind="stable"), kind="stable")  # 0-based rank of each image's lv
    steps = (order[None, :] >= np.arange(n + 1)[:, None]).astype(np.float64)  # (n + 1, n): top images raised
    ramp = (order / max(n - 1, 1))[None, :]
    pattern = np.concatenate([steps, 1.0 - steps, ramp, 1.0 - ramp]) * allowance
    ry = _rank_rows(ll[None, :] + pattern)
    rx = scipy_stats().rankdata(lv)
    ry = ry - ry.mean(1, keepdims=True)
    rx = rx - rx.mean()
    den = np.sqrt((ry**2).sum(1) * (rx**2).sum())
    rho = np.where(den > 0, (ry * rx).sum(1) / np.where(den > 0, den, 1.0), 0.0)
    return float(rho.min()), float(rho.max())


def spearman_envelope(pairs: Sequence[Tuple[Any, Any]], allowances: Sequence[float],
                      level: float = 0.95) -> List[CorrelationEnvelope]:
    """The within-set Spearman correlation of log-likelihood (first of each pair) with another
    variable, combined over sets as in :func:`stratified_spearman`, when every log-likelihood may
    be too low by anything in [0, allowance] (AIS gives lower bounds): per allowance, the smallest and
    largest combined rho over the error patterns of :func:`_spearman_extremes` (set by set; the
    combination is monotone in each set's rho) and the 95 % interval ends beyond them. The patterns
    are the ones that move ranks most, not a proof over all patterns: an envelope that crosses a
    threshold shows the estimator's error *can* decide the verdict. Sets left out by
    :func:`stratified_spearman` are left out here too; empty when none is left."""
    sets = []
    for x, y in pairs:
        a, b = _arr(x), _arr(y)
        if a.size >= 4 and np.ptp(a) > 0 and np.ptp(b) > 0:
            sets.append((a, b, (a.size - 3) / _SPEARMAN_VAR))
    if not sets:
        return []
    w = np.asarray([s[2] for s in sets])
    se = 1.0 / math.sqrt(w.sum())
    q = float(scipy_stats().norm.ppf(0.5 + level / 2))
    out = []
    for e in allowances:
        ext = np.asarray([_spearman_extremes(a, b, float(e)) for a, b, _ in sets])
        z = np.arctanh(np.clip(ext, -0.999999, 0.999999))
        z_min, z_max = float(np.dot(w, z[:, 0]) / w.sum()), float(np.dot(w, z[:, 1]) / w.sum())
        out.append(CorrelationEnvelope(allowance=float(e), r_min=math.tanh(z_min), r_max=math.tanh(z_max),
                                       lo=math.tanh(z_min - q * se), hi=math.tanh(z_max + q * se)))
    return out
