"""The audit's intervals and tests against closed forms and Monte-Carlo: DeLong's AUROC interval,
the Hodges-Lehmann shift interval, stratified Spearman, Clopper-Pearson, the one median."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from statgan.audit import auroc
from statgan.audit.uncertainty import (
    Z95,
    auroc_ci,
    binomial_ci,
    gap_allowance,
    median,
    median_ci,
    ratio_of_medians_ci,
    shift_test,
    spearman_ci,
    spearman_envelope,
    stratified_spearman,
)


def test_median_is_the_mean_of_the_middle_pair_for_even_n():
    x = torch.tensor([0.0131, 0.0132, 0.5, 0.0])
    assert median(x) == pytest.approx((0.0131 + 0.0132) / 2)  # torch.median would say 0.0131
    assert median(np.arange(5.0)) == 2.0 and math.isnan(median([]))


def test_delong_interval_matches_the_monte_carlo_spread():
    # 400 replicates of 60 in-distribution and 40 shifted scores. The sd of 400 AUROCs has a relative
    # se of ~1/sqrt(800) = 3.5 %; the mean DeLong se is itself a ratio estimate: allow 15 % (~4 se).
    rng = np.random.default_rng(0)
    aucs, ses = [], []
    for _ in range(400):
        a, b = rng.normal(size=60), rng.normal(0.8, 1.0, size=40)
        est, lo, hi = auroc_ci(a, b)
        assert est == pytest.approx(auroc(a, b)) and lo <= est <= hi
        aucs.append(est)
        ses.append((hi - lo) / (2 * Z95))
    assert np.mean(ses) == pytest.approx(np.std(aucs, ddof=1), rel=0.15)
    # the binormal AUROC is Phi(0.8 / sqrt 2) = 0.714
    assert np.mean(aucs) == pytest.approx(0.7142, abs=4 * np.std(aucs) / 20)
    assert auroc_ci([0.0], [1.0, 2.0])[1:] == (0.0, 1.0)  # one in-distribution score: no variance


def test_hodges_lehmann_interval_covers_the_shift_at_its_level():
    # coverage of 400 replicates: 0.95 +- 4 sqrt(0.95 * 0.05 / 400) = +-0.044
    rng = np.random.default_rng(1)
    cover = 0
    for _ in range(400):
        a, b = rng.normal(size=30), rng.normal(1.0, 1.0, size=25)
        t = shift_test(a, b)
        cover += t.lo <= 1.0 <= t.hi
    assert abs(cover / 400 - 0.95) <= 0.044
    t = shift_test([0.0, 1.0, 2.0], [10.0, 11.0, 12.0])
    assert t.shift == 10.0 and t.n_a == 3 and (t.lo, t.hi) == (-math.inf, math.inf)  # too small for a 95 % CI


def test_stratified_spearman_recovers_the_within_set_correlation_that_pooling_reverses():
    # Two sets with within-set Pearson r = -0.5 (Spearman (6/pi) asin(-1/4) = -0.483) whose means
    # move together: pooled, the correlation is strongly positive.
    rng = np.random.default_rng(2)
    cov = [[1.0, -0.5], [-0.5, 1.0]]
    sets = [rng.multivariate_normal([m, m], cov, size=200) for m in (0.0, 6.0)]
    rho, p, lo, hi, n = stratified_spearman([(s[:, 0], s[:, 1]) for s in sets])
    truth = 6 / math.pi * math.asin(-0.25)
    assert n == 400 and lo < truth < hi and p < 1e-10
    pooled = np.concatenate(sets)
    assert spearman_ci(pooled[:, 0], pooled[:, 1])[0] > 0.5
    assert spearman_ci([1, 2, 3], [3, 2, 1]) is None and stratified_spearman([([1, 2], [2, 1])]) is None


def test_binomial_interval_and_ratio_of_medians():
    b = binomial_ci(0, 20, 0.01)
    assert b.lo == 0.0 and b.hi == pytest.approx(1 - 0.025 ** (1 / 20)) and b.pvalue_above_null == 1.0
    b = binomial_ci(17, 20, 0.01)
    assert b.lo < 0.85 < b.hi and b.pvalue_above_null < 1e-20
    rng = np.random.default_rng(3)
    num, den = rng.exponential(10.0, 200), rng.exponential(1.0, 200)
    est, lo, hi = ratio_of_medians_ci(num, den)
    assert est == pytest.approx(np.median(num) / np.median(den)) and lo < 10.0 < hi and lo < est < hi


def test_median_interval_is_the_order_statistic_one_with_its_coverage():
    # n = 16: k = 3 is the largest with P(Bin(16, 1/2) <= k) <= 0.025 (0.0106; k = 4 gives 0.038), so
    # the interval is [x_(4), x_(13)] with coverage 1 - 2 * 0.0106 = 0.979
    med, lo, hi = median_ci(np.arange(16.0))
    assert (med, lo, hi) == (7.5, 3.0, 12.0)
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0])[1:] == (None, None)  # n = 5: no 95 % interval exists
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):  # exponential samples (median log 2): coverage at least 95 %, ~97.9 %
        _, a, b = median_ci(rng.exponential(size=16))
        covered += a <= math.log(2) <= b
    assert covered / 2000 >= 0.95 - 4 * math.sqrt(0.05 * 0.95 / 2000)


def test_gap_allowance_is_a_high_quantile_of_the_gaps():
    gaps = np.concatenate([np.full(45, 10.0), np.full(5, 5000.0)])  # 10 % of the images very loose
    assert gap_allowance(gaps, 0.5) == 10.0 and gap_allowance(gaps, 0.9) == pytest.approx(10.0 + 0.1 * 4990)
    assert gap_allowance(np.full(10, -3.0)) == 0.0 and gap_allowance([]) == math.inf


def test_spearman_envelope_starts_at_the_plain_correlation_and_widens_to_the_ramps():
    rng = np.random.default_rng(1)
    pairs = []
    for n in (30, 50):
        lv = rng.uniform(size=n)
        pairs.append((-0.5 * lv * 100 + rng.normal(0, 20, n), lv))
    plain = stratified_spearman(pairs)
    envs = spearman_envelope(pairs, [0.0, 5.0, 50.0, 1e6])
    assert envs[0].r_min == pytest.approx(plain[0]) == pytest.approx(envs[0].r_max)
    assert (envs[0].lo, envs[0].hi) == pytest.approx((plain[2], plain[3]))
    for a, b in zip(envs, envs[1:]):  # wider with the allowance
        assert b.r_min <= a.r_min + 1e-12 and b.r_max >= a.r_max - 1e-12 and b.lo <= a.lo and b.hi >= a.hi
    # an allowance far above the spread lets the ramps dictate the ranks: rho reaches -1 and +1
    assert envs[-1].r_min == pytest.approx(-1.0, abs=1e-5) and envs[-1].r_max == pytest.approx(1.0, abs=1e-5)
    # the extremes are reached by patterns inside the box: no 0/allowance pattern of a small set beats them
    # by brute force over all 2^n corners (the step patterns are among them)
    import itertools

    from scipy.stats import spearmanr

    ll, lv = rng.normal(0, 10, 8), rng.uniform(size=8)
    env = spearman_envelope([(ll, lv)], [15.0])[0]
    corners = [spearmanr(ll + 15.0 * np.array(c), lv).statistic for c in itertools.product((0, 1), repeat=8)]
    assert min(corners) <= env.r_min + 1e-12 and env.r_max <= max(corners) + 1e-12
