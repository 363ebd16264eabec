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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from ..runtime.seeding import SeedLike, make_rng
from ..runtime.validation import check_int

__all__ = ["CALIBRATIONS", "TypicalityResult", "typicality_test"]

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
    """(k,) |mean(first m) - mean(next n)| over k random orderings of ``pool`` (m + n <= len(pool))."""
    idx = torch.rand(k, pool.numel(), generator=rng).argsort(1)[:, : m + n]
    x = pool[idx]
    return (x[:, :m].mean(1) - x[:, m:].mean(1)).abs()


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
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
    batch_size = check_int("batch_size", batch_size)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}") from None
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    train = _as_ll("train_ll", train_ll)
    valid = _as_ll("valid_ll", valid_ll)
    test = _as_ll("test_ll", test_ll, ndim=(1, 2))
    if test.dim() == 1:
        n_batches = test.numel() // batch_size
        if n_batches == 0:
            raise ValueError(f"test_ll has {test.numel()} values, fewer than batch_size={batch_size}")
        test = test[: n_batches * batch_size].reshape(n_batches, batch_size)
    elif test.shape[1] != batch_size:
        raise ValueError(f"test_ll has shape {tuple(test.shape)}; a 2-D test_ll must be (n_batches, batch_size={batch_size})")

    entropy = -train.mean()
    rng = make_rng(seed, "cpu")
    batch_nll = -test.mean(1)
    stats = (batch_nll - entropy).abs()
    p_values = None
    if calibration == "fixed-entropy":
        idx = torch.randint(0, valid.numel(), (n_bootstrap, batch_size), generator=rng)
        bootstrap = (-valid[idx].mean(1) - entropy).abs()
        epsilon = torch.quantile(bootstrap, 1.0 - alpha, interpolation="higher")
        is_ood = stats > epsilon
    else:
        n_train = train.numel()
        reference = torch.cat([train, valid])
        # (with fewer held-out values than M, the shown threshold takes fewer "training" values)
        bootstrap = _permutation_stats(reference, batch_size, min(n_train, reference.numel() - batch_size),
                                       n_bootstrap, rng) if reference.numel() > batch_size else stats.new_zeros(1)
        epsilon = torch.quantile(bootstrap, 1.0 - alpha, interpolation="higher")
        p_values = torch.empty(test.shape[0], dtype=torch.float64)
        for b in range(test.shape[0]):
            null = _permutation_stats(torch.cat([reference, test[b]]), batch_size, n_train, n_bootstrap, rng)
            p_values[b] = (1.0 + (null >= stats[b]).sum().double()) / (1.0 + n_bootstrap)
        is_ood = p_values <= alpha
    return TypicalityResult(
        entropy=float(entropy), epsilon=float(epsilon), statistics=stats, is_ood=is_ood,
        bootstrap=bootstrap, batch_mean_nll=batch_nll, batch_size=batch_size, alpha=alpha, calibration=calibration,
        batch_p_values=p_values,
    )
