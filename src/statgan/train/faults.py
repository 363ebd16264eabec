"""Divergence watch for NaN/Inf rollback (``train.nan_retries``, ``train.nan_lr_factor``).

Every generator step the trainer records four numbers: the discriminator and generator losses and
the norms of the two networks' gradients (after the update's backward passes, averaged over ranks).
They are written into a small device buffer, so there is no host synchronisation per step; the
buffer is checked only at *commit points* — logging steps, checkpoints, FID evaluations, a stop
request and the last step — i.e. before anything derived from the weights is kept. A check that
passes is followed by an in-memory snapshot of the whole training state; a check that fails
names the first step and quantity that went non-finite, and the trainer rolls back to the last
snapshot, multiplies both learning rates by ``nan_lr_factor`` and tries again, at most
``nan_retries`` times in a row (the count starts afresh once training gets past the step that
diverged). The scale of the learning rates is part of the checkpoint, so a resumed run keeps it.
:class:`DivergenceGuard` watches, :class:`Rollback` keeps the snapshot (a
:class:`~statgan.train.state.TrainingState` snapshot) and counts the retries.

Because checkpoints are only ever written after a passing check, every checkpoint on disk is
finite: "the last good checkpoint" is simply the newest one.

With ``train.precision=fp16`` the gradient norms are not watched: an inf gradient there is the
gradient scaler's normal signal to skip a step and lower the loss scale, not divergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import Tensor

from .state import Snapshot, TrainingState

#: the quantities recorded per step, in buffer column order
QUANTITIES = ("d_loss", "g_loss", "grad_norm_d", "grad_norm_g")


@dataclass
class Divergence:
    """The first non-finite record since the last passing check."""

    step: int
    quantities: List[str]
    values: List[float]

    def describe(self) -> str:
        parts = [f"{q}={v}" for q, v in zip(self.quantities, self.values)]
        return f"{' and '.join(parts)} at step {self.step}"


class DivergenceGuard:
    """Records (d_loss, g_loss, ‖∇D‖, ‖∇G‖) per step on the device; :meth:`check` looks at them."""

    def __init__(self, device: torch.device, start_step: int, capacity: int = 64) -> None:
        self._buf = torch.zeros(max(1, capacity), len(QUANTITIES), dtype=torch.float32, device=device)
        self._n = 0
        self._first_step = start_step + 1  # the step the buffer's first row belongs to

    def observe(self, values: Tensor) -> None:
        """The four values of the step just done (a tensor of shape (4,), on the device)."""
        if self._n == self._buf.shape[0]:  # more steps between checks than expected: grow
            self._buf = torch.cat([self._buf, torch.zeros_like(self._buf)])
        self._buf[self._n].copy_(values)
        self._n += 1

    def check(self, reduce: Optional[Callable[[Tensor], Tensor]] = None) -> Optional[Divergence]:
        """None if every recorded value is finite (then the buffer starts afresh), else the first
        non-finite record. ``reduce`` combines the buffers of all ranks (a sum: NaN and Inf
        survive it), so every rank reaches the same verdict."""
        rows = self._buf[: self._n].clone()
        if reduce is not None:
            rows = reduce(rows)
        bad = ~torch.isfinite(rows)
        if not bool(bad.any()):
            self.reset(self._first_step - 1 + self._n)
            return None
        i = int(bad.any(dim=1).nonzero()[0, 0])
        cols = bad[i].nonzero().flatten().tolist()
        return Divergence(self._first_step + i, [QUANTITIES[j] for j in cols], [float(rows[i, j]) for j in cols])

    def reset(self, step: int) -> None:
        """Forget the records; the next one belongs to step ``step + 1``."""
        self._n = 0
        self._first_step = step + 1


class Rollback:
    """The rollback target and the retry count of one training run.

    :meth:`commit` after every passing check keeps a snapshot of ``state``; :meth:`roll_back`
    returns ``state`` to it with the learning-rate scale multiplied by ``lr_factor``. The retries
    are counted from the last rollback until training gets past the step that diverged.
    """

    def __init__(self, state: TrainingState, max_retries: int, lr_factor: float) -> None:
        self.state, self.max_retries, self.lr_factor = state, max_retries, lr_factor
        self.good: Snapshot = state.snapshot()
        self.retries = 0  # rollbacks since training was last past the step that diverged
        self._diverged_at = -1  # the latest step that diverged

    @property
    def exhausted(self) -> bool:
        """Whether ``max_retries`` rollbacks in a row have been used up."""
        return self.retries >= self.max_retries

    def commit(self) -> None:
        """The state passed a check: it becomes the rollback target."""
        if self.state.step > self._diverged_at:
            self.retries = 0
        self.good = self.state.snapshot()

    def roll_back(self, bad: Divergence) -> None:
        """Back to the last good state, with the learning rates lowered."""
        self.retries += 1
        self._diverged_at = max(self._diverged_at, bad.step)
        scale = self.state.lr_scale * self.lr_factor
        self.state.restore(self.good)
        self.state.lr_scale = scale


def grad_norm(params: List[Tensor]) -> Tensor:
    """‖(∇θ₁, …, ∇θₙ)‖₂ over the parameters that have a gradient (0 when none has)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), dtype=torch.float32, device=params[0].device if params else "cpu")
    return torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)]))


__all__ = ["QUANTITIES", "Divergence", "DivergenceGuard", "Rollback", "grad_norm"]
