"""Numerical tests of the sample-quality estimators: streaming stats, Fréchet distance, KID, PRDC, IS.

Each estimator is checked against an independent implementation written here (brute force, the
classic scipy.sqrtm FID formula, a direct O(n²) MMD²) and against closed forms. Monte-Carlo checks
use fixed seeds and a tolerance of a few standard errors estimated from independent replicates, so
they are deterministic and still fail for a biased estimator (each also asserts that the quantity
it checks is many SEs away from what a trivial wrong answer would give).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from statgan.errors import ConfigError, StatganError
from statgan.metrics.frechet import frechet_distance, frechet_distance_from_stats, trace_sqrt_product
from statgan.metrics.inception_score import inception_score
from statgan.metrics.kid import kid
from statgan.metrics.prdc import prdc
from statgan.metrics.stats import FeatureStats, cache_dir, cached_stats, stats_cache_key

# the submodule (for monkeypatching): the package binds the name statgan.metrics.prdc to the function
prdc_module = importlib.import_module("statgan.metrics.prdc")


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ================================================================================================
# Streaming statistics
# ================================================================================================
def offset_data(rng, n=3000, d=12, offset=1e4):
    """Correlated features with mean ~1e4 and std ~1: the case where E[xxᵀ] − μμᵀ cancels 8 digits."""
    a = rng.normal(size=(d, d)) / math.sqrt(d)
    return offset + rng.normal(size=d) + rng.normal(size=(n, d)) @ a


def batches_of(x, sizes):
    out, i = [], 0
    for s in sizes:
        out.append(x[i : i + s])
        i += s
    assert i == len(x)
    return out


SIZES = [1, 0, 7, 256, 1000, 500, 3, 1233]  # uneven, including empty and single-row batches


def test_streaming_stats_match_numpy_with_large_offset():
    rng = np.random.default_rng(0)
    x = offset_data(rng)
    fs = FeatureStats()
    for b in batches_of(x, SIZES):
        fs.update(b)
    ref_cov = np.cov(x, rowvar=False)  # two-pass float64: the reference
    assert fs.n == len(x) and fs.dim == x.shape[1]
    assert fs.mean.dtype == np.float64 and fs.cov.dtype == np.float64
    assert rel_err(fs.mean, x.mean(0)) < 1e-12
    assert rel_err(fs.cov, ref_cov) < 1e-10
    np.testing.assert_array_equal(fs.cov, fs.cov.T)

    # The test is sensitive: the naive one-pass formula fails the same tolerance, in float32 hopelessly
    # (the ulp of 1e8 in float32 is 8) and even in float64 (8 of 16 digits cancel).
    for dt, worse_than in ((np.float32, 1e-1), (np.float64, 1e-10)):
        s, ss = np.zeros(x.shape[1], dt), np.zeros((x.shape[1],) * 2, dt)
        for b in batches_of(x.astype(dt), SIZES):
            s += b.sum(0)
            ss += b.T @ b
        n = len(x)
        naive = (ss.astype(np.float64) - np.outer(s, s).astype(np.float64) / n) / (n - 1)
        assert rel_err(naive, ref_cov) > worse_than


def test_streaming_stats_accept_torch_and_low_precision():
    rng = np.random.default_rng(1)
    x32 = offset_data(rng, n=700, d=5).astype(np.float32)
    fs = FeatureStats(dim=5)
    for b in batches_of(x32, [300, 400]):
        fs.update(torch.from_numpy(b))
    # The float32 inputs are exact in float64; accumulation must not lose anything beyond that.
    x64 = x32.astype(np.float64)
    assert rel_err(fs.cov, np.cov(x64, rowvar=False)) < 1e-10
    assert rel_err(fs.mean, x64.mean(0)) < 1e-12
    fs16 = FeatureStats()
    fs16.update(torch.randn(10, 3, dtype=torch.bfloat16))
    assert fs16.n == 10 and fs16.mean.dtype == np.float64


def test_merge_equals_whole():
    rng = np.random.default_rng(2)
    x = offset_data(rng, n=1500, d=9)
    whole, a, b = FeatureStats(), FeatureStats(), FeatureStats()
    whole.update(x)
    for part in batches_of(x[:600], [100, 500]):
        a.update(part)
    b.update(x[600:])
    merged = a.merge(b)
    assert merged.n == 1500
    assert rel_err(merged.mean, whole.mean) < 1e-13
    assert rel_err(merged.cov, whole.cov) < 1e-10
    assert a.n == 600 and b.n == 900  # operands unchanged
    assert rel_err(FeatureStats().merge(a).cov, a.cov) < 1e-15  # empty is the identity
    assert rel_err(a.merge(FeatureStats(9)).cov, a.cov) < 1e-15
    with pytest.raises(ConfigError, match="dimension"):
        a.merge(FeatureStats(4))


def test_stats_input_errors():
    fs = FeatureStats()
    with pytest.raises(StatganError, match="n = 0"):
        fs.mean
    fs.update(np.ones((1, 3)))
    with pytest.raises(StatganError, match="at least 2"):
        fs.cov
    with pytest.raises(ConfigError, match="expected 3"):
        fs.update(np.ones((4, 5)))
    with pytest.raises(ConfigError, match=r"\(N, D\)"):
        fs.update(np.ones(3))
    with pytest.raises(StatganError, match="NaN"):
        fs.update(np.array([[1.0, np.nan, 0.0]]))
    with pytest.raises(ConfigError, match="dim"):
        FeatureStats(dim=0)


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    fs = FeatureStats()
    fs.update(rng.normal(size=(50, 6)))
    path = tmp_path / "sub" / "ref.npz"
    fs.save(path)
    assert sorted(path.parent.iterdir()) == [path]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"mu", "sigma", "n"}
        np.testing.assert_allclose(z["sigma"], fs.cov, rtol=1e-15)
    back = FeatureStats.load(path)
    assert back.n == 50 and back.dim == 6
    np.testing.assert_array_equal(back.mean, fs.mean)
    np.testing.assert_allclose(back.cov, fs.cov, rtol=1e-14)
    # A loaded result keeps streaming correctly (M2 was reconstructed from sigma and n).
    more = rng.normal(size=(30, 6))
    back.update(more)
    fs.update(more)
    np.testing.assert_allclose(back.cov, fs.cov, rtol=1e-12)


def test_load_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"this is not a zip file at all")
    with pytest.raises(StatganError, match="garbage.npz"):
        FeatureStats.load(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, mu=np.zeros(3))  # no sigma, no n
    with pytest.raises(StatganError, match=r"partial.npz lacks \['sigma', 'n'\]"):
        FeatureStats.load(partial)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(StatganError, match="plain.npy is not an .npz"):
        FeatureStats.load(plain)
    mismatched = tmp_path / "mismatch.npz"
    np.savez(mismatched, mu=np.zeros(3), sigma=np.eye(4), n=np.int64(10))
    with pytest.raises(StatganError, match="mismatch.npz"):
        FeatureStats.load(mismatched)
    with pytest.raises(StatganError, match="missing.npz"):
        FeatureStats.load(tmp_path / "missing.npz")


def test_cache_key_stable_and_sensitive():
    parts = dict(extractor="inception-v3", preprocess="tf-resize-299", dataset="cifar10", split="train", n=50000)
    key = stats_cache_key(**parts)
    # Independent recomputation of the documented definition: sha256 of canonical JSON, 16 hex digits.
    canon = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    assert key == hashlib.sha256(canon.encode()).hexdigest()[:16]
    assert len(key) == 16 and int(key, 16) >= 0
    assert stats_cache_key(**dict(reversed(list(parts.items())))) == key  # keyword order irrelevant
    assert stats_cache_key(**{**parts, "n": np.int64(50000)}) == key  # numpy scalars canonicalised
    changed = {"extractor": "lenet", "preprocess": "none", "dataset": "mnist", "split": "test", "n": 10000}
    for name, value in changed.items():
        assert stats_cache_key(**{**parts, name: value}) != key, name
    assert stats_cache_key(**parts, seed=0) != key
    with pytest.raises(ConfigError, match="bad"):
        stats_cache_key(bad=object())


def test_cache_dir_location(monkeypatch, tmp_path):
    monkeypatch.setenv("STATGAN_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "stats"
    monkeypatch.delenv("STATGAN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "statgan" / "stats"
    assert "site-packages" not in str(cache_dir())


def test_cached_stats_written_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("STATGAN_CACHE", str(tmp_path))
    rng = np.random.default_rng(4)
    data = rng.normal(size=(40, 4))
    calls = []

    def compute():
        calls.append(1)
        fs = FeatureStats()
        fs.update(data)
        return fs

    parts = {"extractor": "toy", "dataset": "gauss", "n": 40}
    first = cached_stats(parts, compute)
    path = tmp_path / "stats" / f"{stats_cache_key(**parts)}.npz"
    assert path.is_file() and len(calls) == 1
    second = cached_stats(parts, compute)
    assert len(calls) == 1  # served from the cache
    np.testing.assert_allclose(second.cov, first.cov, rtol=1e-14)
    assert second.n == 40
    cached_stats({**parts, "n": 41}, compute)  # another key: computed
    assert len(calls) == 2
    cached_stats(parts, compute, cache=False)  # cache disabled: computed
    assert len(calls) == 3
    path.write_bytes(b"corrupt")  # a corrupt cache file is recomputed and replaced, not fatal
    with pytest.warns(RuntimeWarning, match="recomputing"):
        third = cached_stats(parts, compute)
    assert len(calls) == 4
    np.testing.assert_allclose(third.cov, first.cov, rtol=1e-14)
    assert FeatureStats.load(path).n == 40


# ================================================================================================
# Fréchet distance
# ================================================================================================
def fid_sqrtm_reference(mu1, sigma1, mu2, sigma2):
    """The classic pytorch-fid formula: tr sqrtm(Σ1 Σ2) via scipy's Schur-based sqrtm."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def random_stats(rng, d, n):
    a = rng.normal(size=(n, d)) @ (rng.normal(size=(d, d)) / math.sqrt(d)) + rng.normal(size=d)
    return a.mean(0), np.cov(a, rowvar=False)


@pytest.mark.parametrize("d", [64, 512])
def test_frechet_matches_sqrtm_reference(d):
    rng = np.random.default_rng(d)
    mu1, s1 = random_stats(rng, d, 3 * d)  # N = 3d samples: full rank, well conditioned enough for sqrtm
    mu2, s2 = random_stats(rng, d, 3 * d)
    ours = frechet_distance(mu1, s1, mu2, s2)
    ref = fid_sqrtm_reference(mu1, s1, mu2, s2)
    assert ours > 0.1 * np.trace(s1)  # a non-trivial distance, so the relative check means something
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(5)
    d = 40
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n_zero", [0, 5])
def test_frechet_commuting_closed_form(n_zero):
    rng = np.random.default_rng(6)
    d = 30
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # shared eigenvectors: Σ1 Σ2 = Σ2 Σ1
    a, b = rng.uniform(0.01, 9, d), rng.uniform(0.01, 9, d)
    a[:n_zero] = 0.0  # singular Σ1 (as with N ≤ d) must work too
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    # Full rank: rounding only, ~1e-13 relative. Singular: an exactly-zero eigenvalue comes out as
    # ±eps·λmax·O(1) ≈ 1e-14, and the trace term takes its square root (≈ 1e-7): each zero direction
    # may contribute ~sqrt(d·eps·λmax·λ2max) ≈ 5e-7; 5 of them, x2 margin -> 5e-6 absolute.
    tol = 1e-10 * expected if n_zero == 0 else 5e-6
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=tol)


def test_frechet_identical_inputs_near_zero_and_symmetric():
    rng = np.random.default_rng(7)
    for n in (1000, 50):  # full rank, and singular (N < d = 100): both must give ~0
        mu, s = random_stats(rng, 100, n)
        scale = np.trace(s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = frechet_distance(mu, s, mu, s)
        # Rounding: eigenvalues carry ~1e-15·λmax absolute error, their sqrt ~1e-8·sqrt(λmax) for the
        # zero ones (singular case), summed over ≤ d of them: far below 1e-6·scale.
        assert -1e-6 * scale <= v <= 1e-6 * scale
    mu1, s1 = random_stats(rng, 50, 60)
    mu2, s2 = random_stats(rng, 50, 200)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)
    # torch input gives the same float
    t = [torch.from_numpy(v) for v in (mu1, s1, mu2, s2)]
    assert frechet_distance(*t) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-12)


@pytest.mark.parametrize("d", [64, 512])
def test_frechet_cholesky_path_equals_eigh_and_sqrtm(d):
    rng = np.random.default_rng(100 + d)
    mu1, s1 = random_stats(rng, d, 3 * d)  # full rank: Cholesky succeeds
    mu2, s2 = random_stats(rng, d, 3 * d)
    tr, path = trace_sqrt_product(s1, s2)
    tr_eigh, path_eigh = trace_sqrt_product(s1, s2, method="eigh")
    assert path == "cholesky" and path_eigh == "eigh"
    assert tr == pytest.approx(tr_eigh, rel=1e-10)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(frechet_distance(mu1, s1, mu2, s2, method="eigh"), rel=1e-8)
    assert ours == pytest.approx(fid_sqrtm_reference(mu1, s1, mu2, s2), rel=1e-8)
    # what LAPACK's type-2 problem computes, spelled out: Σ1 = L Lᵀ, Σ √eig(Lᵀ Σ2 L)
    L = np.linalg.cholesky(s1)
    m = L.T @ s2 @ L
    assert tr == pytest.approx(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0, None)).sum(), rel=1e-10)
    with pytest.raises(ConfigError, match="method must be one of"):
        frechet_distance(mu1, s1, mu2, s2, method="sqrtm")


def test_frechet_singular_sigma1_falls_back_to_eigh():
    rng = np.random.default_rng(8)
    d = 60
    # exactly singular Σ1 (a zero direction): Cholesky must fail and eigh take over
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    a[:3] = 0.0
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(s1)
    tr, path = trace_sqrt_product(s1, s2)
    assert path == "eigh"
    assert tr == pytest.approx(np.sqrt(a * b).sum(), abs=1e-6)
    # covariances from N < d samples (rank N - 1): whichever path runs, the value is the eigh method's
    for n in (20, 59, 61):
        mu1, c1 = random_stats(rng, d, n)
        mu2, c2 = random_stats(rng, d, 200)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = frechet_distance(mu1, c1, mu2, c2)
            ref = frechet_distance(mu1, c1, mu2, c2, method="eigh")
        assert got == pytest.approx(ref, rel=1e-8), n
    _, path = trace_sqrt_product(np.cov(rng.normal(size=(20, d)), rowvar=False), s2)
    assert path == "eigh"  # rank 19 of 60: Cholesky meets a non-positive pivot


def test_frechet_validation_and_small_n_warning():
    mu, s = np.zeros(4), np.eye(4)
    with pytest.raises(ConfigError, match=r"sigma2 \(3, 3\)"):
        frechet_distance(mu, s, mu, np.eye(3))
    with pytest.raises(ConfigError, match=r"mu1 \(4, 1\)"):
        frechet_distance(mu[:, None], s, mu, s)
    with pytest.warns(RuntimeWarning, match="N <= D"):
        frechet_distance(mu, s, mu, s, n=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert frechet_distance(mu, s, mu + 1, s, n=5) == pytest.approx(4.0)
    a, b = FeatureStats(), FeatureStats()
    a.update(np.random.default_rng(0).normal(size=(3, 4)))
    b.update(np.random.default_rng(1).normal(size=(30, 4)))
    with pytest.warns(RuntimeWarning, match="N = 3"):
        frechet_distance_from_stats(a, b)


# ================================================================================================
# KID
# ================================================================================================
def mmd2_direct(x, y):
    """Unbiased MMD² by the definition, k(x, y) = (xᵀy/d + 1)³, with explicit i ≠ j masks."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx = np.where(np.eye(m, dtype=bool), 0.0, k(x, x)).sum() / (m * (m - 1))
    kyy = np.where(np.eye(n, dtype=bool), 0.0, k(y, y)).sum() / (n * (n - 1))
    return kxx + kyy - 2.0 * k(x, y).sum() / (m * n)


def test_kid_equals_direct_mmd_when_subset_is_everything():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(150, 16))
    y = rng.normal(size=(150, 16)) * 1.2 + 0.1
    direct = mmd2_direct(x, y)
    mean, std = kid(x, y, n_subsets=1, subset_size=150)
    assert mean == pytest.approx(direct, rel=1e-10)
    # Every subset is a permutation of all points: identical values, zero spread.
    mean3, std3 = kid(torch.from_numpy(x).float(), torch.from_numpy(y).float(), n_subsets=3, subset_size=150)
    x32, y32 = (v.astype(np.float32).astype(np.float64) for v in (x, y))  # the values kid sees, exactly
    assert mean3 == pytest.approx(mmd2_direct(x32, y32), rel=1e-10)
    assert std3 < 1e-9 * abs(mean3)


def test_kid_caps_subset_size_and_is_seeded():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(120, 4)), rng.normal(size=(80, 4)) + 0.3
    with pytest.warns(RuntimeWarning, match="using 80"):
        capped = kid(x, y, n_subsets=5)
    assert capped == kid(x, y, n_subsets=5, subset_size=80)
    a = kid(x, y, n_subsets=5, subset_size=50, seed=1)
    assert a == kid(x, y, n_subsets=5, subset_size=50, seed=1)
    assert a != kid(x, y, n_subsets=5, subset_size=50, seed=2)
    assert a[1] > 0  # subsets differ, so the estimates spread
    with pytest.raises(ConfigError, match="dimensions differ"):
        kid(x, y[:, :3])
    with pytest.raises(ConfigError, match="n_subsets"):
        kid(x, y, n_subsets=0)


def test_kid_unbiased_for_identical_distributions():
    # R independent replicates: their spread gives an honest standard error (subsets drawn from one
    # sample overlap, so KID's own std/sqrt(n_subsets) would understate it).
    rng = np.random.default_rng(10)
    reps = []
    for _ in range(200):
        x = rng.normal(size=(100, 8))
        y = rng.normal(size=(100, 8))
        reps.append(kid(x, y, n_subsets=1, subset_size=100)[0])
    reps = np.asarray(reps)
    se = reps.std(ddof=1) / math.sqrt(len(reps))
    assert abs(reps.mean()) < 3 * se
    assert (reps < 0).any()  # unbiased: negative estimates happen (a biased V-statistic is always > 0)


def poly_kernel_mean(ma, sa, mb, sb, d):
    """E[(xᵀy/d + 1)³] for independent x ~ N(ma, Sa), y ~ N(mb, Sb), by Gaussian moments.

    With s = xᵀy: E s = maᵀmb; E s² = tr(A B), A = Sa + ma maᵀ, B = Sb + mb mbᵀ; conditioning on y,
    s ~ N(maᵀy, yᵀSa y), so E s³ = E[(maᵀy)³ + 3 (maᵀy)(yᵀ Sa y)]
        = m³ + 3m·maᵀSb ma + 3m·(mbᵀSa mb + tr Sa Sb) + 6·maᵀ Sb Sa mb,   m = maᵀmb.
    """
    m = ma @ mb
    e1, e2 = m, np.trace((sa + np.outer(ma, ma)) @ (sb + np.outer(mb, mb)))
    e3 = m**3 + 3 * m * (ma @ sb @ ma) + 3 * m * (mb @ sa @ mb + np.trace(sa @ sb)) + 6 * (ma @ sb @ sa @ mb)
    return e3 / d**3 + 3 * e2 / d**2 + 3 * e1 / d + 1.0


def test_kid_matches_gaussian_closed_form():
    rng = np.random.default_rng(11)
    d = 4
    ma, mb = np.zeros(d), np.full(d, 0.25)
    la = np.eye(d)
    lb = np.diag([1.3, 0.8, 1.0, 1.1]) + 0.2 * rng.normal(size=(d, d))
    sa, sb = la @ la.T, lb @ lb.T
    truth = poly_kernel_mean(ma, sa, ma, sa, d) + poly_kernel_mean(mb, sb, mb, sb, d) - 2 * poly_kernel_mean(ma, sa, mb, sb, d)
    reps = []
    for _ in range(100):
        x = rng.normal(size=(300, d)) @ la.T + ma
        y = rng.normal(size=(300, d)) @ lb.T + mb
        reps.append(kid(x, y, n_subsets=1, subset_size=300)[0])
    reps = np.asarray(reps)
    se = reps.std(ddof=1) / math.sqrt(len(reps))
    assert truth > 10 * se  # the check can tell a real MMD² from 0 or from a biased estimator
    assert abs(reps.mean() - truth) < 4 * se


# ================================================================================================
# PRDC
# ================================================================================================
def prdc_brute(real, fake, k, pr_k=None):
    """Full distance matrices, straight from the definitions (self excluded from real/fake k-NN)."""
    pr_k = k if pr_k is None else pr_k
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    drr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    dff = np.sqrt(((fake[:, None] - fake[None]) ** 2).sum(-1))
    drf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))  # (N, M)
    np.fill_diagonal(drr, np.inf)
    np.fill_diagonal(dff, np.inf)
    r_k = np.sort(drr, 1)[:, k - 1]
    r_p = np.sort(drr, 1)[:, pr_k - 1]
    f_p = np.sort(dff, 1)[:, pr_k - 1]
    return {
        "precision": (drf < r_p[:, None]).any(0).mean(),
        "recall": (drf < f_p[None, :]).any(1).mean(),
        "density": (drf < r_k[:, None]).sum() / (k * fake.shape[0]),
        "coverage": (drf < r_k[:, None]).any(1).mean(),
    }


@pytest.mark.parametrize("k,pr_k", [(1, None), (3, None), (5, 3), (2, 7)])
@pytest.mark.parametrize("block_size", [7, 64, 1000])
def test_prdc_equals_brute_force(k, pr_k, block_size):
    rng = np.random.default_rng(12 + k)
    real = rng.normal(size=(150, 6))
    fake = rng.normal(size=(130, 6)) * 1.1 + 0.3
    ref = prdc_brute(real, fake, k, pr_k)
    assert 0 < ref["precision"] < 1 and 0 < ref["recall"] < 1  # not degenerate
    got = prdc(real, fake, k=k, pr_k=pr_k, block_size=block_size)  # float64: exact same decisions
    assert set(got) == {"precision", "recall", "density", "coverage"}
    for name in ref:
        assert got[name] == pytest.approx(ref[name], abs=1e-12), name
    # float32 torch input: distances differ by ~1e-7 relative; a boundary flip would need a point
    # within that of a ball's edge, which these continuous draws do not have.
    got32 = prdc(torch.from_numpy(real).float(), torch.from_numpy(fake).float(), k=k, pr_k=pr_k, block_size=block_size)
    for name in ref:
        assert got32[name] == pytest.approx(ref[name], abs=1e-12), name


def test_prdc_exact_cases():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(200, 5)) + 1e3  # large offset: handled by centring before the distance expansion
    same = prdc(x.astype(np.float32), x.astype(np.float32), k=5, block_size=64)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(x, x + 100.0, k=5, block_size=64)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    with pytest.raises(ConfigError, match="real samples"):
        prdc(x[:5], x, k=5)
    with pytest.raises(ConfigError, match="fake samples"):
        prdc(x, x[:3], k=5, pr_k=3)
    with pytest.raises(ConfigError, match="dimensions differ"):
        prdc(x, x[:, :2])


def test_prdc_identical_distributions_match_exact_expectations():
    # For P = Q continuous: E[density] = 1 and E[coverage] = 1 − Π_{t<k} (N−1−t)/(N+M−1−t), exactly
    # (rank arguments: a fresh fake is among the k nearest of X_i's N−1 other reals with prob. k/N).
    rng = np.random.default_rng(14)
    n = m = 200
    k = 5
    dens, cov = [], []
    for _ in range(60):
        res = prdc(rng.normal(size=(n, 8)), rng.normal(size=(m, 8)), k=k, block_size=128)
        dens.append(res["density"])
        cov.append(res["coverage"])
    e_cov = 1 - np.prod([(n - 1 - t) / (n + m - 1 - t) for t in range(k)])
    for vals, expected in ((dens, 1.0), (cov, e_cov)):
        vals = np.asarray(vals)
        se = vals.std(ddof=1) / math.sqrt(len(vals))
        assert abs(vals.mean() - expected) < 4 * se, (vals.mean(), expected, se)
    # Sensitivity: the ~0.03 gap between E[coverage] and 1 spans many SEs.
    assert 1 - e_cov > 10 * np.std(cov, ddof=1) / math.sqrt(len(cov))


def test_prdc_blocking_bounds_tile_size(monkeypatch):
    """5,000 x 5,000 in 64-d with 512-row tiles: no distance tile beyond 512², same answers as one tile.

    (The 50,000 x 50,000 case is timed, with its peak memory, in benchmarks/metrics_speed.py.)
    """
    rng = np.random.default_rng(15)
    real = torch.from_numpy(rng.normal(size=(5000, 64)).astype(np.float32))
    fake = torch.from_numpy((rng.normal(size=(5000, 64)) * 1.05).astype(np.float32))
    seen = []
    orig = prdc_module._sq_dists

    def spy(a, b, a_sq, b_sq):
        out = orig(a, b, a_sq, b_sq)
        seen.append(out.numel())
        return out

    monkeypatch.setattr(prdc_module, "_sq_dists", spy)
    blocked = prdc(real, fake, k=5, pr_k=3, block_size=512)
    assert seen and max(seen) <= 512 * 512
    assert len(seen) == 3 * 10 * 10  # real-real, fake-fake, fake-real: 10 x 10 tiles each (5000 = 9·512 + 392)
    seen.clear()
    whole = prdc(real, fake, k=5, pr_k=3, block_size=5000)
    assert max(seen) == 5000 * 5000
    for name in whole:
        assert blocked[name] == pytest.approx(whole[name], abs=2e-4), name  # ≤ 1 boundary flip in 5000


# ================================================================================================
# Inception score
# ================================================================================================
def test_inception_score_uniform_is_one():
    logits = np.random.default_rng(16).normal(size=(100, 1)) * np.ones((1, 10))  # each row constant
    mean, std = inception_score(logits, splits=4)
    assert mean == pytest.approx(1.0, abs=1e-12) and std < 1e-12


def test_inception_score_confident_even_is_num_classes():
    c, n = 10, 1000
    labels = np.arange(n) % c  # each contiguous chunk of 100 holds every class 10 times
    logits = 40.0 * np.eye(c)[labels]  # p(true class) = 1 − 9e−40/(...) ≈ 1 − 4e−17
    mean, std = inception_score(torch.from_numpy(logits).float(), splits=10)
    assert mean == pytest.approx(c, rel=1e-9) and std < 1e-9
    # Uneven use of classes lowers the score: all-one-class chunks score 1.
    mean_sorted, _ = inception_score(40.0 * np.eye(c)[np.sort(labels)], splits=10)
    assert mean_sorted == pytest.approx(1.0, abs=1e-9)


def test_inception_score_closed_form_tiny():
    # Chunk 1: p = (0.9, 0.1), (0.1, 0.9); marginal (0.5, 0.5); KL = 0.9 ln 1.8 + 0.1 ln 0.2 for both.
    # Chunk 2: two identical rows: KL = 0, score 1.
    is1 = math.exp(0.9 * math.log(1.8) + 0.1 * math.log(0.2))
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.3, 0.7], [0.3, 0.7]])
    mean1, _ = inception_score(np.log(probs[:2]), splits=1)
    assert mean1 == pytest.approx(is1, rel=1e-12)
    mean2, std2 = inception_score(np.log(probs) + 5.0, splits=2)  # + constant: logits, not probabilities
    assert mean2 == pytest.approx((is1 + 1) / 2, rel=1e-12)
    assert std2 == pytest.approx(abs(is1 - 1) / 2, rel=1e-12)  # population std of two values


def test_inception_score_input_checks():
    with pytest.raises(ConfigError, match="splits = 10"):
        inception_score(np.zeros((5, 3)))
    with pytest.raises(ConfigError, match="splits"):
        inception_score(np.zeros((5, 3)), splits=0)
    with pytest.warns(RuntimeWarning, match="probabilities"):
        inception_score(np.full((20, 4), 0.25), splits=2)
