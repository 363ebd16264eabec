"""One update of a network: ``optimizer.step(closure)`` with the closure the regularisers need.

The closure zeroes the gradients, evaluates the loss ``regularizers.evaluations(net)`` times
(Monte-Carlo averaging), adds the penalties to each evaluation and back-propagates them one at a
time (one graph alive at a time), and under torchrun ends with one all-reduce that averages the
gradients, so every optimizer (and SAM's perturbation) sees the global gradient. A plain optimizer
calls it once, SAM twice.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, Tuple

import torch
from torch import Tensor, nn

from ..regularizers import LossContext, RegularizerSet
from ..runtime import distributed
from .faults import grad_norm
from .precision import Precision
from .setup import NETS

#: evaluate(k) -> (objective loss, D's real input, D's generated input) of an update's k-th evaluation
Evaluation = Callable[[int], Tuple[Tensor, Tensor, Tensor]]


class Updater:
    """Runs the updates of G and D; keeps the gradient norm after each network's last update."""

    def __init__(self, G: nn.Module, D: nn.Module, regularizers: RegularizerSet, precision: Precision,
                 scalers: Dict[str, Any], sync: bool, device: torch.device) -> None:
        self.G, self.D, self.regularizers, self.precision, self.scalers = G, D, regularizers, precision, scalers
        self.sync = sync  # average the gradients over the ranks
        # on the device, so that watching them costs no host synchronisation per step
        self.grad_norms = {net: torch.zeros((), device=device) for net in NETS}

    def minimise(self, opt: Any, net: str, evaluate: Evaluation, step: int) -> Tensor:
        """One update of ``net`` (``"generator"`` or ``"discriminator"``) after ``step`` generator
        steps; returns the loss (detached). ``evaluate(k)`` is the k-th evaluation of this update
        (k counts across closure calls, so k = 0 may reuse cached forward passes)."""
        regs = self.regularizers
        n = regs.evaluations(net)
        calls, evaluations = itertools.count(), itertools.count()
        autocast, scaler = self.precision.autocast, self.scalers[net]
        params = distributed.optimizer_params(opt)

        def closure() -> Tensor:
            record = next(calls) == 0  # log penalties of the first pass (SAM runs a second)
            opt.zero_grad(set_to_none=True)
            total = None
            for _ in range(n):
                with autocast():
                    loss, real_in, fake_in = evaluate(next(evaluations))
                    loss = regs.add_penalties(LossContext(net, loss, real_in, fake_in, self.G, self.D, step), record)
                part = loss if n == 1 else loss / n
                (part if scaler is None else scaler.scale(part)).backward()
                total = loss.detach() if total is None else total + loss.detach()
            if self.sync:
                distributed.average_gradients(params)
            return total if n == 1 else total / n

        loss = opt.step(closure)
        if scaler is None:  # with fp16, an inf gradient is the scaler's business (a skipped step)
            self.grad_norms[net] = grad_norm(params)
        return loss


__all__ = ["Evaluation", "Updater"]
