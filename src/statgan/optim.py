"""A base for optimizer wrappers (SAM, gradient scaling) that checkpoints see through.

A wrapper owns ``base`` (any ``torch.optim.Optimizer``) and changes only ``step``; everything the
trainer and the checkpoint code read or write — ``param_groups`` (learning rates), ``state``,
``zero_grad``, ``state_dict`` / ``load_state_dict`` — is the base optimizer's, so a checkpoint
written with a wrapper loads without it and the other way round.
"""

from __future__ import annotations

from typing import Any, Dict, List

import torch


class OptimizerWrapper:
    """Delegates the optimizer surface to ``self.base``; subclasses define ``step(closure)``."""

    base: torch.optim.Optimizer

    @property
    def param_groups(self) -> List[Dict[str, Any]]:
        return self.base.param_groups

    @property
    def state(self) -> Dict[Any, Any]:
        return self.base.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> Dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
