"""Typicality test (Nalisnick et al. 2019) on N(0, I_d), whose entropy is (d/2) log(2 pi e); the
false-alarm rate of its permutation calibration checked by simulation."""

from __future__ import annotations

import math

import pytest
import torch

from statgan import audit

# one torch thread: small models run fastest so, and timings stay steady on a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")

D = 10
M = 20  # batch size


def gaussian_ll(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I_d) per row, float64."""
    return -0.5 * x.double().square().sum(1) - 0.5 * D * math.log(2 * math.pi)


@pytest.fixture(scope="module")
def splits():
    g = torch.Generator().manual_seed(0)
    train = gaussian_ll(torch.randn(5000, D, generator=g))
    valid = gaussian_ll(torch.randn(2000, D, generator=g))
    test_in = gaussian_ll(torch.randn(400 * M, D, generator=g))
    test_out = gaussian_ll(1.5 * torch.randn(50 * M, D, generator=g))
    return train, valid, test_in, test_out


def test_entropy_estimate_matches_closed_form(splits):
    train, valid, test_in, _ = splits
    res = audit.typicality_test(train, valid, test_in, M, alpha=0.05, n_bootstrap=2000, seed=0, calibration="fixed-entropy")
    exact = 0.5 * D * math.log(2 * math.pi * math.e)
    se = math.sqrt(D / 2) / math.sqrt(train.numel())  # Var[-log p] = d/2 under N(0, I_d)
    assert abs(res.entropy - exact) < 4 * se


def test_in_distribution_accepted_at_one_minus_alpha(splits):
    train, valid, test_in, _ = splits
    alpha = 0.05
    res = audit.typicality_test(train, valid, test_in, M, alpha=alpha, n_bootstrap=2000, seed=0, calibration="fixed-entropy")
    n = res.statistics.numel()
    assert n == 400 and res.is_ood.dtype == torch.bool and res.bootstrap.shape == (2000,)
    # binomial(400, 0.05): mean 20, sd 4.4 -> 4 sd band, plus slack for the finite valid set
    assert abs(res.is_ood.sum().item() - alpha * n) <= 4 * math.sqrt(n * alpha * (1 - alpha)) + 3
    assert (res.bootstrap > res.epsilon).double().mean() <= alpha
    assert 0 < res.p_values.min() and res.p_values.max() <= 1


def test_wider_gaussian_batches_rejected(splits):
    train, valid, _, test_out = splits
    res = audit.typicality_test(train[:200], valid[:200], test_out, M, alpha=0.01, seed=0)
    assert res.is_ood.all() and res.rejection_rate == 1.0
    # wider data have *lower* likelihood: -mean log p above the entropy by ~ d (1.5^2 - 1) / 2
    assert (res.batch_mean_nll - res.entropy).mean() == pytest.approx(D * (1.5**2 - 1) / 2, rel=0.15)


def test_pre_batched_input_and_dropped_remainder(splits):
    train, valid, test_in, _ = splits
    flat = audit.typicality_test(train[:100], valid[:100], test_in[: 3 * M + 5], M, seed=1)
    batched = audit.typicality_test(train[:100], valid[:100], test_in[: 3 * M].reshape(3, M), M, seed=1)
    assert flat.statistics.shape == (3,)
    assert torch.equal(flat.statistics, batched.statistics) and flat.epsilon == batched.epsilon


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 1.5}, r"alpha must be in \(0, 1\), got 1.5"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"n_bootstrap": 0}, r"n_bootstrap must be an integer >= 1, got 0"),
        ({"test_ll": torch.zeros(5)}, r"test_ll has 5 values, fewer than batch_size=20"),
        ({"test_ll": torch.zeros(3, 4)}, r"a 2-D test_ll must be \(n_batches, batch_size=20\)"),
        ({"train_ll": torch.tensor([1.0, float("nan")])}, r"train_ll contains NaN"),
        ({"valid_ll": torch.zeros(2, 2)}, r"valid_ll must be a non-empty 1-D tensor .* got shape \(2, 2\)"),
    ],
)
def test_argument_errors(kwargs, message):
    args = {"train_ll": torch.zeros(10), "valid_ll": torch.zeros(10), "test_ll": torch.zeros(40), "batch_size": M}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        audit.typicality_test(**args)


def _false_alarm_rate(calibration: str, alpha: float, replicates: int, n_ref: int, k: int, seed: int) -> float:
    """Fraction of in-distribution batches flagged when H^ comes from only ``n_ref`` values: every
    replicate draws its own training, held-out and tested values from N(0, I_D) (exact log p)."""
    g = torch.Generator().manual_seed(seed)
    m = 5
    flagged = 0
    for r in range(replicates):
        x = gaussian_ll(torch.randn(2 * n_ref + m, D, generator=g))
        res = audit.typicality_test(x[:n_ref], x[n_ref:2 * n_ref], x[2 * n_ref:], m, alpha=alpha, n_bootstrap=k,
                                    seed=r, calibration=calibration)
        flagged += int(res.is_ood.sum())
    return flagged / replicates


def test_permutation_calibration_false_alarm_rate_is_alpha_with_few_reference_values():
    # The audit's setting: H^ from 25 model samples, batches of 5. The permutation test is exact, so
    # the false-alarm rate over replicates is Binomial(R, alpha') / R with alpha' <= alpha and, for
    # continuous values and K = 199, alpha' = floor(alpha (K + 1)) / (K + 1) = alpha exactly.
    # R = 2000, alpha = 0.05: sd = sqrt(0.05 * 0.95 / 2000) = 0.0049; 4 sd band.
    alpha, r = 0.05, 2000
    rate = _false_alarm_rate("permutation", alpha, r, n_ref=25, k=199, seed=3)
    assert abs(rate - alpha) <= 4 * math.sqrt(alpha * (1 - alpha) / r)


def test_permutation_calibration_has_power_and_p_values():
    g = torch.Generator().manual_seed(4)
    ref = gaussian_ll(torch.randn(50, D, generator=g))
    wide = gaussian_ll(1.5 * torch.randn(10 * M, D, generator=g))
    res = audit.typicality_test(ref[:25], ref[25:], wide, M, alpha=0.01, n_bootstrap=500, seed=0)
    assert res.calibration == "permutation" and res.is_ood.all()
    assert res.p_values.shape == (10,) and bool((res.p_values <= 0.01).all()) and res.p_values.min() >= 1 / 501


def test_unknown_calibration_is_refused():
    with pytest.raises(ValueError, match="calibration must be one of permutation, fixed-entropy, got 'x'"):
        audit.typicality_test(torch.zeros(4), torch.zeros(4), torch.zeros(4), 2, calibration="x")


def test_rejection_null_counts_the_test_s_own_flags_and_its_p_value_is_a_tail_share():
    g = torch.Generator().manual_seed(5)
    ref = gaussian_ll(torch.randn(50, D, generator=g))
    tested = gaussian_ll(1.3 * torch.randn(20 * 5, D, generator=g))
    res = audit.typicality_test(ref[:25], ref[25:], tested, 5, alpha=0.05, n_bootstrap=200, seed=7)
    null = audit.rejection_null(ref[:25], ref[25:], tested, 5, alpha=0.05, n_bootstrap=200, n_null=99, seed=7)
    # the same seed: the count judged is the test's own
    assert null.k == int(res.is_ood.sum()) and null.n_batches == 20 and sum(null.counts) == 99
    tail = sum(null.counts[null.k:])
    assert null.p_value() == pytest.approx((1 + tail) / 100)
    assert null.p_value(0) == 1.0 and null.p_value(21) == pytest.approx(1 / 100)
    crit = null.critical_k(0.05)
    assert crit is not None and null.p_value(crit) <= 0.05 < null.p_value(crit - 1)
    with pytest.raises(ValueError, match="n_null must be an integer >= 1, got 0"):
        audit.rejection_null(ref[:25], ref[25:], tested, 5, n_null=0)


def test_simulated_null_of_the_count_agrees_with_fresh_simulations():
    # H from 25 values, 20 batches of 5, alpha 0.01 (the audit's model typical set): the chance of
    # K >= 2 flags under the null, from fresh data sets, against rejection_null's simulated null of
    # one data set averaged over data sets -- estimates of the same tail (within 4 standard errors,
    # the null's counting its spread between data sets). The binomial says 0.017; both say ~0.03:
    # the shared H makes several flags likelier (tests/test_audit_verdict_calibration.py shows what
    # that does to a verdict).
    import statistics

    g = torch.Generator().manual_seed(6)
    fresh, tails = [], []
    for r in range(1000):
        x = torch.randn(150, generator=g, dtype=torch.float64)
        fresh.append(int(audit.typicality_test(x[:25], x[25:50], x[50:], 5, alpha=0.01, n_bootstrap=200, seed=r).is_ood.sum()))
        if r < 30:
            null = audit.rejection_null(x[:25], x[25:50], x[50:], 5, alpha=0.01, n_bootstrap=200, n_null=200, seed=r)
            tails.append(sum(null.counts[2:]) / null.n_null)
    p_fresh = sum(k >= 2 for k in fresh) / len(fresh)
    se = math.sqrt(p_fresh * (1 - p_fresh) / len(fresh) + statistics.pvariance(tails) / len(tails))
    assert abs(statistics.mean(tails) - p_fresh) < 4 * se
