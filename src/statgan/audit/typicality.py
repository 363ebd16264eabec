"""Typicality test for out-of-distribution batches (Nalisnick, Matsukawa, Teh & Lakshminarayanan,
"Detecting Out-of-Distribution Inputs to Deep Generative Models Using Typicality", 2019).

A likelihood model can give OOD inputs *higher* density than its training data (Nalisnick et al.
2019; for GANs, Friedman & Weiss 2024), so "low likelihood = OOD" fails. The typical set instead
asks whether a batch's average log-likelihood is close to the model's entropy:

    H^ = -(1/N) sum_n log p(x_n)                       (x_n: training data; estimates H[p])
    s(batch) = | -(1/M) sum_m log p(x~_m) - H^ |       (a batch of M test inputs)
    batch is OOD  iff  s(batch) > epsilon,

with epsilon the (1 - alpha)-quantile of a bootstrap distribution of s (the reference's
"alpha-quantile" read as a level-alpha test: an in-distribution batch is flagged with probability
~alpha). The quantile uses the "higher" order statistic. Two calibrations (``calibration=``):

* ``"fixed-entropy"`` (Nalisnick et al.): s over K bootstrap batches of size M drawn with replacement
  from held-out in-distribution data, around the *fixed* H^. It ignores that H^ is itself an
  estimate: with H^ from N = 25 values an in-distribution batch is flagged more often than alpha
  (0.018 at alpha = 0.01 on a Gaussian, tests/test_audit_typicality.py).
* ``"permutation"`` (the default): an exact two-sample test. Under the null the tested batch, the
  training values and the held-out values are exchangeable draws of one distribution, so the
  statistic s = |mean(batch) - mean(train)| is compared with its permutation distribution: the
  pooled values (train, held-out and the batch itself) are shuffled K times, the first M taken as
  the batch and the next N as the training values. A batch is flagged when its permutation p-value
  (1 + #{s* >= s}) / (1 + K) is at most alpha, which makes the false-alarm rate at most alpha for
  any N -- the uncertainty of H^ included (checked by simulation in tests/test_audit_typicality.py).
  ``epsilon`` is then the (1 - alpha) quantile of the permutation distribution of the training and
  held-out values alone (``bootstrap``): the threshold a batch faces, up to its own M values.

A set is judged by how many of its batches are flagged. All batches share one H^ and one reference
pool, so their flags are dependent and the binomial distribution Bin(n_batches, alpha) understates
the chance of several flags; :func:`rejection_null` simulates the count's null distribution instead
(the pooled values reshuffled into sets of the same sizes, the same test run on each replicate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from ..runtime.seeding import SeedLike, make_rng
from ..runtime.validation import check_int
from .summary import RejectionCount

__all__ = ["CALIBRATIONS", "RejectionCount", "TypicalityResult", "rejection_null", "typicality_test"]

#: ways of calibrating epsilon (module docstring)
CALIBRATIONS = ("permutation", "fixed-entropy")


@dataclass
class TypicalityResult:
    """Output of :func:`typicality_test` (float64 tensors on the CPU).

    Attributes:
        entropy: H^ = -mean training log-likelihood (nats).
        epsilon: the threshold (1 - alpha quantile of ``bootstrap``).
        statistics: (n_batches,) |-mean log p(batch) - H^| of each test batch.
        is_ood: (n_batches,) bool, statistics > epsilon.
        bootstrap: (n_bootstrap,) the null statistic without the tested batches (for plots and epsilon).
        batch_mean_nll: (n_batches,) -mean log p of each test batch (signed, to see the direction).
        batch_size, alpha, calibration: the settings used.
    """

    entropy: float
    epsilon: float
    statistics: Tensor
    is_ood: Tensor
    bootstrap: Tensor
    batch_mean_nll: Tensor
    batch_size: int
    alpha: float
    calibration: str = "permutation"
    batch_p_values: Optional[Tensor] = None

    @property
    def p_values(self) -> Tensor:
        """(n_batches,) p-values (1 + #{null statistics >= s}) / (1 + K): each batch's own permutation
        distribution, or (fixed-entropy) the bootstrap."""
        if self.batch_p_values is not None:
            return self.batch_p_values
        ge = (self.bootstrap.unsqueeze(0) >= self.statistics.unsqueeze(1)).sum(1)
        return (1.0 + ge.double()) / (1.0 + self.bootstrap.numel())

    @property
    def rejection_rate(self) -> float:
        """Fraction of test batches flagged OOD."""
        return float(self.is_ood.double().mean()) if self.is_ood.numel() else float("nan")


def _as_ll(name: str, values: Any, ndim: tuple = (1,)) -> Tensor:
    try:
        t = torch.as_tensor(values).detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a tensor or array of log-likelihoods, got {type(values).__name__}") from None
    if t.dim() not in ndim or t.numel() == 0:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be a non-empty {want} tensor of log-likelihoods, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite log-likelihoods")
    return t


def _permutation_stats(pool: Tensor, m: int, n: int, k: int, rng: torch.Generator) -> Tensor:
    """|mean(first m) - mean(next n)| over k random orderings of the last axis of ``pool`` (R, P) or
    (R, B, P), m + n <= P: shape (R, k) or (R, B, k). Each of the R leading rows draws its own k
    orderings, shared by the B rows within it, so every row's statistics are an exact permutation
    distribution of that row (what a per-row test needs) at the cost of one sort per leading row.
    The two means are one matrix product with the orderings as weights (1/m on the first m
    positions, -1/n on the next n)."""
    r, p = pool.shape[0], pool.shape[-1]
    idx = torch.rand(r, k, p, generator=rng).argsort(-1)
    w = torch.zeros(r, k, p, dtype=pool.dtype)
    w.scatter_(-1, idx[..., :m], 1.0 / m)
    w.scatter_(-1, idx[..., m: m + n], -1.0 / n)
    if pool.dim() == 2:
        return torch.bmm(w, pool.unsqueeze(-1)).squeeze(-1).abs()
    return torch.bmm(pool, w.transpose(1, 2)).abs()


@dataclass(frozen=True)
class _Flags:
    """R runs of the per-batch test at once (leading axis R): H^ (R,), epsilon (R,), the null
    statistics of the reference values (R, K), each batch's statistic, p-value (``None`` for
    fixed-entropy) and flag (R, n_batches)."""

    entropy: Tensor
    epsilon: Tensor
    bootstrap: Tensor
    stats: Tensor
    p_values: Optional[Tensor]
    is_ood: Tensor


def _flag_batches(train: Tensor, valid: Tensor, test: Tensor, alpha: float, k: int, calibration: str,
                  rng: torch.Generator) -> _Flags:
    """The per-batch test of :func:`typicality_test` on R data sets at once: ``train`` (R, N),
    ``valid`` (R, N_v), ``test`` (R, n_batches, M)."""
    m = test.shape[-1]
    entropy = -train.mean(-1)
    stats = (-test.mean(-1) - entropy.unsqueeze(-1)).abs()
    if calibration == "fixed-entropy":
        idx = torch.randint(0, valid.shape[-1], (valid.shape[0], k * m), generator=rng)
        bootstrap = (-torch.gather(valid, 1, idx).view(-1, k, m).mean(-1) - entropy.unsqueeze(-1)).abs()
        epsilon = torch.quantile(bootstrap, 1.0 - alpha, dim=-1, interpolation="higher")
        return _Flags(entropy, epsilon, bootstrap, stats, None, stats > epsilon.unsqueeze(-1))
    n_train = train.shape[-1]
    reference = torch.cat([train, valid], -1)
    # (with fewer held-out values than M, the shown threshold takes fewer "training" values)
    bootstrap = (_permutation_stats(reference, m, min(n_train, reference.shape[-1] - m), k, rng)
                 if reference.shape[-1] > m else stats.new_zeros(stats.shape[0], 1))
    epsilon = torch.quantile(bootstrap, 1.0 - alpha, dim=-1, interpolation="higher")
    pools = torch.cat([reference.unsqueeze(1).expand(-1, test.shape[1], -1), test], -1)  # (R, n_batches, P)
    null = _permutation_stats(pools, m, n_train, k, rng)                                 # (R, n_batches, k)
    p_values = (1.0 + (null >= stats.unsqueeze(-1)).sum(-1).double()) / (1.0 + k)
    return _Flags(entropy, epsilon, bootstrap, stats, p_values, p_values <= alpha)


def _batches(test: Tensor, batch_size: int) -> Tensor:
    """(n_batches, batch_size): consecutive batches of a 1-D ``test`` (the remainder dropped), or a
    2-D ``test`` checked."""
    if test.dim() == 1:
        n_batches = test.numel() // batch_size
        if n_batches == 0:
            raise ValueError(f"test_ll has {test.numel()} values, fewer than batch_size={batch_size}")
        return test[: n_batches * batch_size].reshape(n_batches, batch_size)
    if test.shape[1] != batch_size:
        raise ValueError(f"test_ll has shape {tuple(test.shape)}; a 2-D test_ll must be (n_batches, batch_size={batch_size})")
    return test


def _check_level(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def typicality_test(
    train_ll: Any,
    valid_ll: Any,
    test_ll: Any,
    batch_size: int,
    alpha: float = 0.01,
    n_bootstrap: int = 1000,
    seed: SeedLike = None,
    calibration: str = "permutation",
) -> TypicalityResult:
    """Nalisnick et al.'s (2019) typicality test on log-likelihoods (nats) of three data splits.

    Args:
        train_ll: (N,) log p(x) of training data -> H^.
        valid_ll: (N_v,) log p(x) of held-out in-distribution data -> bootstrap threshold.
        test_ll: (N_t,) log-likelihoods split into consecutive batches of ``batch_size`` (a
            remainder of fewer than ``batch_size`` values is dropped), or (n_batches, batch_size).
        batch_size: M, inputs per batch (M = 1 is the single-input test).
        alpha: test level in (0, 1): the bootstrap false-alarm rate.
        n_bootstrap: K bootstrap batches (>= 1 / alpha for the quantile to mean anything).
        seed: int, torch.Generator (CPU) or None (drawn from the global RNG).
        calibration: ``"permutation"`` (exact; accounts for the uncertainty of H^) or
            ``"fixed-entropy"`` (Nalisnick et al.'s bootstrap around a fixed H^).
    """
    train, valid, test, batch_size, alpha, n_bootstrap = _checked(train_ll, valid_ll, test_ll, batch_size, alpha,
                                                                  n_bootstrap, calibration)
    f = _flag_batches(train[None], valid[None], test[None], alpha, n_bootstrap, calibration, make_rng(seed, "cpu"))
    return TypicalityResult(
        entropy=float(f.entropy[0]), epsilon=float(f.epsilon[0]), statistics=f.stats[0], is_ood=f.is_ood[0],
        bootstrap=f.bootstrap[0], batch_mean_nll=-test.mean(1), batch_size=batch_size, alpha=alpha,
        calibration=calibration, batch_p_values=None if f.p_values is None else f.p_values[0],
    )


def _checked(train_ll: Any, valid_ll: Any, test_ll: Any, batch_size: int, alpha: float, n_bootstrap: int,
             calibration: str) -> Tuple[Tensor, Tensor, Tensor, int, float, int]:
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
    batch_size = check_int("batch_size", batch_size)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap)
    alpha = _check_level("alpha", alpha)
    test = _batches(_as_ll("test_ll", test_ll, ndim=(1, 2)), batch_size)
    return _as_ll("train_ll", train_ll), _as_ll("valid_ll", valid_ll), test, batch_size, alpha, n_bootstrap


def rejection_null(
    train_ll: Any,
    valid_ll: Any,
    test_ll: Any,
    batch_size: int,
    alpha: float = 0.01,
    n_bootstrap: int = 1000,
    n_null: int = 200,
    seed: SeedLike = None,
    calibration: str = "permutation",
) -> RejectionCount:
    """How many batches :func:`typicality_test` flags, against the distribution of that count when
    every value is exchangeable (the tested set is as typical as the reference).

    All batches share one H^ and one reference pool, so their flags are *dependent*: a reference
    that happens to sit low flags many batches at once, and the binomial distribution Bin(n, alpha)
    understates the chance of several flags (with H^ from 25 values, 20 batches of 5 and alpha 0.01,
    P(K >= 3) is about 0.007 against the binomial's 0.001). Here the null of K is simulated instead:
    each replicate shuffles the pooled values (training, held-out and tested) back into sets of the
    same sizes and runs the same test on them -- H^ and the pool re-drawn too -- so the count's
    p-value accounts for the shared H^ and pool (checked by simulation in
    tests/test_audit_typicality.py). ``n_null`` replicates cost n_null times one test. Returns the
    count, the null's histogram and the count's p-value P(K >= k) = (1 + #{K_r >= k}) / (1 + R) (valid:
    the observed data are one more exchangeable replicate).
    """
    train, valid, test, batch_size, alpha, n_bootstrap = _checked(train_ll, valid_ll, test_ll, batch_size, alpha,
                                                                  n_bootstrap, calibration)
    n_null = check_int("n_null", n_null)
    rng = make_rng(seed, "cpu")
    k = int(_flag_batches(train[None], valid[None], test[None], alpha, n_bootstrap, calibration, rng).is_ood.sum())
    pooled = torch.cat([train, valid, test.flatten()])
    n, n_v = train.numel(), valid.numel()
    counts = [0] * (test.shape[0] + 1)
    # replicates in chunks: memory ~ chunk x K x (N + N_v + M) weights
    chunk = max(1, min(n_null, int(4e6 // max(1, n_bootstrap * pooled.numel()))))
    for start in range(0, n_null, chunk):
        r = min(chunk, n_null - start)
        x = pooled[torch.rand(r, pooled.numel(), generator=rng).argsort(1)]
        flags = _flag_batches(x[:, :n], x[:, n: n + n_v], x[:, n + n_v:].reshape(r, *test.shape), alpha,
                              n_bootstrap, calibration, rng).is_ood
        for c in flags.sum(1).tolist():
            counts[int(c)] += 1
    return RejectionCount(k=k, n_batches=int(test.shape[0]), counts=tuple(counts), n_null=n_null,
                          pvalue=(1.0 + sum(counts[k:])) / (1.0 + n_null))
