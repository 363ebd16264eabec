r"""Exponential moving average of generator weights (Karras et al. 2018; Yazıcı et al. 2019).

θ_ema ← β·θ_ema + (1 − β)·θ after every generator step once ``step ≥ start`` (before that the
average simply tracks θ). Buffers (BatchNorm running statistics) are copied, not averaged: they
are already running averages of the current network's activations.

β is either fixed (``decay``) or set from a half-life in images, as in StyleGAN2-ADA (Karras et al.
2020, ``training_loop.py``): after ``n = step · batch`` images,

.. math:: h = \min(h_{\max},\ r \cdot n), \qquad \beta = 0.5^{B / h},

so the average forgets half its weight every ``h`` images, and with a ramp-up ``r`` (0.05 there) the
half-life grows with the run: early on the EMA follows the model closely, so a short run's grid
shows what was learned rather than the near-initial weights a fixed β = 0.999 still holds at
step 500 (0.999^500 = 0.61 of the start remains).
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..runtime.validation import check_int, check_positive, check_rate


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999, start: int = 0, *,
                 halflife_images: Optional[float] = None, rampup: Optional[float] = None, batch_size: int = 1) -> None:
        self.decay, self.start = check_rate("decay", decay), start
        self.halflife_images = None if halflife_images is None else check_positive("halflife_images", halflife_images)
        self.rampup = None if rampup is None else check_positive("rampup", rampup)
        self.batch_size = check_int("batch_size", batch_size)
        if self.rampup is not None and self.halflife_images is None:
            raise ConfigError("EMA: a ramp-up needs a half-life (train.ema_rampup goes with train.ema_halflife_kimg)")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._src = [p for p in model.parameters()]
        self._dst = [p for p in self.module.parameters()]
        self._src_buf = [b for b in model.buffers()]
        self._dst_buf = [b for b in self.module.buffers()]

    def beta(self, step: int) -> float:
        """The decay used after generator step ``step``: fixed, or from the (ramped) half-life."""
        if self.halflife_images is None:
            return self.decay
        half = self.halflife_images
        if self.rampup is not None:
            half = min(half, step * self.batch_size * self.rampup)
        return 0.5 ** (self.batch_size / max(half, 1e-8))

    def describe(self) -> str:
        """How the average is taken, for logs and picture captions."""
        if self.halflife_images is None:
            return f"EMA decay {self.decay:g}"
        ramp = f", ramp-up {self.rampup:g}" if self.rampup is not None else ""
        return f"EMA half-life {self.halflife_images / 1000:g}k images{ramp}"

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Update after generator step number ``step`` (1-based count of completed steps)."""
        if step <= self.start:
            torch._foreach_copy_(self._dst, self._src)
        else:
            # one fused kernel per dtype/device instead of a Python loop over tensors
            torch._foreach_lerp_(self._dst, self._src, 1.0 - self.beta(step))
        if self._dst_buf:
            torch._foreach_copy_(self._dst_buf, self._src_buf)
