"""Exponential moving average of generator weights (Karras et al. 2018; Yazıcı et al. 2019).

θ_ema ← β·θ_ema + (1 − β)·θ after every generator step once ``step ≥ start`` (before that the
average simply tracks θ). Buffers (BatchNorm running statistics) are copied, not averaged: they
are already running averages of the current network's activations.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..runtime.validation import check_rate


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999, start: int = 0) -> None:
        self.decay, self.start = check_rate("decay", decay), start
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._src = [p for p in model.parameters()]
        self._dst = [p for p in self.module.parameters()]
        self._src_buf = [b for b in model.buffers()]
        self._dst_buf = [b for b in self.module.buffers()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Update after generator step number ``step`` (1-based count of completed steps)."""
        if step <= self.start:
            torch._foreach_copy_(self._dst, self._src)
        else:
            # one fused kernel per dtype/device instead of a Python loop over tensors
            torch._foreach_lerp_(self._dst, self._src, 1.0 - self.decay)
        if self._dst_buf:
            torch._foreach_copy_(self._dst_buf, self._src_buf)
