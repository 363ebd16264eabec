"""Typicality test for out-of-distribution batches (Nalisnick, Matsukawa, Teh & Lakshminarayanan,
"Detecting Out-of-Distribution Inputs to Deep Generative Models Using Typicality", 2019).

A likelihood model can give OOD inputs *higher* density than its training data (Nalisnick et al.
2019; for GANs, Friedman & Weiss 2024), so "low likelihood = OOD" fails. The typical set instead
asks whether a batch's average log-likelihood is close to the model's entropy:

    H^ = -(1/N) sum_n log p(x_n)                       (x_n: training data; estimates H[p])
    s(batch) = | -(1/M) sum_m log p(x~_m) - H^ |       (a batch of M test inputs)
    batch is OOD  iff  s(batch) > epsilon,

with epsilon the (1 - alpha)-quantile of s over K bootstrap batches of size M drawn with
replacement from held-out in-distribution data (the reference's "alpha-quantile" read as a
level-alpha test: an in-distribution batch is flagged with probability ~alpha). The quantile uses
the "higher" order statistic, so the bootstrap false-alarm rate is at most alpha.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..runtime.seeding import SeedLike, make_rng
from ..runtime.validation import check_int

__all__ = ["TypicalityResult", "typicality_test"]


@dataclass
class TypicalityResult:
    """Output of :func:`typicality_test` (float64 tensors on the CPU).

    Attributes:
        entropy: H^ = -mean training log-likelihood (nats).
        epsilon: the threshold (1 - alpha quantile of ``bootstrap``).
        statistics: (n_batches,) |-mean log p(batch) - H^| of each test batch.
        is_ood: (n_batches,) bool, statistics > epsilon.
        bootstrap: (n_bootstrap,) the statistic on bootstrap batches of held-out data (for plots).
        batch_mean_nll: (n_batches,) -mean log p of each test batch (signed, to see the direction).
        batch_size, alpha: the settings used.
    """

    entropy: float
    epsilon: float
    statistics: Tensor
    is_ood: Tensor
    bootstrap: Tensor
    batch_mean_nll: Tensor
    batch_size: int
    alpha: float

    @property
    def p_values(self) -> Tensor:
        """(n_batches,) bootstrap p-values (1 + #{bootstrap >= s}) / (1 + K)."""
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


def typicality_test(
    train_ll: Any,
    valid_ll: Any,
    test_ll: Any,
    batch_size: int,
    alpha: float = 0.01,
    n_bootstrap: int = 1000,
    seed: SeedLike = None,
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
    """
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
    idx = torch.randint(0, valid.numel(), (n_bootstrap, batch_size), generator=rng)
    bootstrap = (-valid[idx].mean(1) - entropy).abs()
    epsilon = torch.quantile(bootstrap, 1.0 - alpha, interpolation="higher")
    batch_nll = -test.mean(1)
    stats = (batch_nll - entropy).abs()
    return TypicalityResult(
        entropy=float(entropy), epsilon=float(epsilon), statistics=stats, is_ood=stats > epsilon,
        bootstrap=bootstrap, batch_mean_nll=batch_nll, batch_size=batch_size, alpha=alpha,
    )
