r"""Sharpness-aware minimisation (SAM; Foret et al. 2021) and its adaptive variant (ASAM; Kwon et
al. 2021) as a wrapper around any torch optimizer.

SAM minimises :math:`\max_{\|e\|\le\rho} L(w + e)` by one ascent and one descent per step:

.. math::
    g = \nabla L(w), \qquad
    e(w) = \rho\,\frac{T_w^2\,g}{\|T_w\,g\|_2}, \qquad
    w \leftarrow \mathrm{base\_step}\big(w,\ \nabla L(w + e(w))\big),

with :math:`T_w = I` for SAM (:math:`e = \rho g/\|g\|`) and :math:`T_w = \mathrm{diag}(|w| + \eta)` for
ASAM, whose neighbourhood scales with the weights (invariant to rescaling a layer; ASAM with η = 0
is :math:`e_w = \rho\,w^2 g / \|w\,g\|`, as in Filippone & Linhard's code, taken from D. Samuel's
``sam`` package). The norm is over all parameters of the wrapped optimizer.

The perturbed pass runs with every buffer of the given modules restored afterwards, so BatchNorm
running statistics (and spectral-norm power-iteration vectors) are those of the first pass at w,
never of the perturbed network w + e(w). The weights are restored by copy (bit-exact), not by
subtracting e.

The wrapper is not a ``torch.optim.Optimizer`` subclass (no duplicated state): it exposes
``param_groups``, ``state``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` of the base
optimizer, so checkpoints hold exactly the base optimizer's state (SAM itself keeps none between
steps), and ``step(closure)`` — the closure must zero the gradients, evaluate the loss and call
``backward()``; it is called twice.
"""

from __future__ import annotations

from typing import Any, Callable, List, Sequence

import torch
from torch import Tensor, nn

from ..objectives.base import Objective
from ..optim import OptimizerWrapper
from ..runtime.validation import check_bool, check_positive, check_real
from . import REGULARIZERS
from .base import DISCRIMINATOR, Regularizer, check_nets, preserved_buffers, require_discriminator

#: added to ‖T g‖ so that a zero gradient gives a zero perturbation, not NaN (as in the reference code)
GRAD_NORM_EPS = 1e-12


class SAM(OptimizerWrapper):
    """SAM / ASAM around ``base`` (any torch optimizer).

    Args:
        base: the optimizer that makes the actual update (e.g. Adam), already constructed.
        rho: ρ > 0, radius of the neighbourhood.
        adaptive: ASAM (T_w = |w| + η) instead of SAM (T_w = I).
        eta: η ≥ 0 of ASAM (keeps zero weights perturbable; 0 = the reference code).
        modules: networks whose buffers are protected during the perturbed pass.
    """

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05, adaptive: bool = True, eta: float = 0.0,
                 modules: Sequence[nn.Module] = ()) -> None:
        self.base, self.adaptive = base, bool(adaptive)
        self.rho = check_positive("rho", rho)
        self.eta = check_positive("eta", eta, allow_zero=True)
        self.modules = tuple(modules)

    # ---- SAM ------------------------------------------------------------------------------------------
    def _params_with_grad(self) -> List[Tensor]:
        return [p for g in self.base.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def perturbation(self, params: Sequence[Tensor]) -> List[Tensor]:
        r""":math:`e(w) = \rho T_w^2 g / \|T_w g\|` for each parameter (from its current ``.grad``)."""
        if not params:
            return []
        if self.adaptive:
            scale = [p.abs() + self.eta for p in params]
            tg = [s * p.grad for s, p in zip(scale, params)]
        else:
            scale, tg = None, [p.grad for p in params]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tg]))
        factor = self.rho / (norm + GRAD_NORM_EPS)
        if scale is None:
            return [t * factor for t in tg]
        return [s * t * factor for s, t in zip(scale, tg)]

    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        """One SAM step; returns the loss of the first closure call (at the unperturbed weights)."""
        if closure is None:
            raise ValueError("SAM needs a closure that zeroes gradients, evaluates the loss and back-propagates")
        with torch.enable_grad():
            loss = closure()
        params = self._params_with_grad()
        with torch.no_grad():
            backup = [p.detach().clone() for p in params]
            for p, e in zip(params, self.perturbation(params)):
                p.add_(e)  # climb to w + e(w)
        try:
            with preserved_buffers(*self.modules), torch.enable_grad():
                closure()  # gradients at w + e(w)
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)  # back to w exactly
        self.base.step()
        return loss

    def __repr__(self) -> str:
        return f"SAM(rho={self.rho:g}, adaptive={self.adaptive}, eta={self.eta:g}, base={type(self.base).__name__})"


@REGULARIZERS.register()
class SharpnessAware(Regularizer):
    r"""Wraps the generator's and/or discriminator's optimizer in :class:`SAM` (ASAM by default, as
    in Filippone & Linhard, who use it on both networks).

    Args:
        rho: ρ > 0 (default 0.05; ASAM's scale-invariant ρ is usually larger, e.g. 0.5–2).
        adaptive: ASAM (default true) or plain SAM.
        eta: η ≥ 0 of ASAM (default 0, the reference code).
        nets: ``both`` (default), ``g`` or ``d``.
    """

    name = "sam"

    def __init__(self, rho: float = 0.05, adaptive: bool = True, eta: float = 0.0, nets: str = "both") -> None:
        what = "regularizers.sam"
        self.rho = check_real("rho", rho, gt=0.0, owner=what)
        self.adaptive = check_bool("adaptive", adaptive, owner=what)
        self.eta = check_real("eta", eta, ge=0.0, owner=what)
        self.nets = check_nets(what, nets)

    def check(self, objective: Objective) -> None:
        if self.nets == (DISCRIMINATOR,):
            require_discriminator("regularizers.sam with nets=d", objective)

    def wrap_optimizer(self, net: str, optimizer: Any, modules: Sequence[nn.Module]) -> Any:
        if net not in self.nets:
            return optimizer
        return SAM(optimizer, rho=self.rho, adaptive=self.adaptive, eta=self.eta, modules=modules)

    def extra_repr(self) -> str:
        return f"rho={self.rho:g}, adaptive={self.adaptive}, eta={self.eta:g}, nets={self.nets}"


__all__ = ["SAM", "SharpnessAware", "GRAD_NORM_EPS"]
