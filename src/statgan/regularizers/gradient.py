r"""Gradient regularisers, each a separate registered name with a weight.

Generator side (act on the generator's loss :math:`L_G(\psi)`, ψ the generator's parameters):

* ``param_grad``  — :math:`\lambda\,\|\nabla_\psi L_G\|_2^2`, the squared norm of the loss's gradient
  with respect to the generator's parameters (Filippone & Linhard 2025; a penalty towards flat,
  stationary regions). Its own gradient is :math:`2\lambda H\nabla_\psi L_G` (H the Hessian), so it is
  computed with ``create_graph=True`` (double back-propagation). The paper's released code computes
  the norm from ``param.grad`` after a plain ``backward()``: a constant without a graph, which adds
  to the reported loss but sends **no** gradient — the update is exactly the unregularised one.
* ``sample_grad`` — :math:`\lambda\,\frac1B\sum_i \|\partial L_G / \partial\tilde x_i\|_2`, the mean norm
  of the loss's gradient with respect to each generated sample (after observation noise). For the
  MMD objectives (``gmmn``, ``mmd-gan``) this is the paper's :math:`\lambda\,\mathrm{mean}\,\|\partial
  \mathrm{MMD}^2/\partial x_{gen}\|_2`; it is defined the same way for every objective. Note that L_G
  is a batch mean, so each per-sample gradient scales like 1/B.

Discriminator side (act on the discriminator's loss; need an objective with a discriminator):

* ``r1`` — :math:`\frac\gamma2\,\mathbb E_{p_{data}}\|\nabla_x D(x)\|_2^2` on real samples
  (Mescheder, Geiger & Nowozin 2018, "Which training methods for GANs do actually converge?").
* ``r2`` — :math:`\frac\gamma2\,\mathbb E_{p_g}\|\nabla_{\tilde x} D(\tilde x)\|_2^2` on generated samples
  (same paper).
* ``gp`` — :math:`\lambda\,\mathbb E_{\hat x}(\|\nabla_{\hat x} D(\hat x)\|_2 - c)^2` on random
  interpolates of real and generated samples (Gulrajani et al. 2017), the WGAN-GP penalty of
  :mod:`statgan.objectives.penalties`, here composable with any objective.

The discriminator penalties see D's actual inputs: with observation noise (``relaxation``) they
are taken at the noisy samples. They evaluate D once more per evaluation (its own forward pass
with input gradients), as the objectives' own penalties do. Every input gradient is taken with
``create_graph=True`` (via :mod:`statgan.objectives.penalties`), so each penalty is differentiable
with respect to the parameters it regularises.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor

from ..errors import ConfigError
from ..objectives.base import Objective
from ..objectives.penalties import NORM_EPS, gradient_penalty, outputs_and_input_gradients, squared_gradient_norms
from ..runtime.distributed import all_reduce_mean_autograd, world_size
from ..runtime.validation import check_int, check_real
from . import REGULARIZERS
from .base import DISCRIMINATOR, GENERATOR, LossContext, Regularizer, load_step_counter, require_discriminator


def _weight(what: str, weight: Optional[float], example: str) -> float:
    if weight is None:
        raise ConfigError(f"{what}: weight is required (e.g. {what}.weight={example})")
    return check_real("weight", weight, ge=0.0, owner=what)


def parameter_gradient_norm2(loss: Tensor, params: List[Tensor]) -> Tensor:
    r""":math:`\|\nabla_\psi L\|_2^2` over ``params``, differentiable (``create_graph=True``).

    Parameters the loss does not depend on contribute zero. Under torchrun ``loss`` is this rank's
    share and the gradient is averaged over the ranks first (differentiably), so the penalty is
    the norm of the *global* batch's gradient, not the mean of the per-rank norms.
    """
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    grads = [g for g in grads if g is not None]
    grads = all_reduce_mean_autograd(grads)
    terms = [g.pow(2).sum() for g in grads]
    return torch.stack(terms).sum() if terms else loss.new_zeros(())


@REGULARIZERS.register()
class ParamGradPenalty(Regularizer):
    r""":math:`\lambda\|\nabla_\psi L_G\|_2^2` added to the generator loss (double backprop; see the
    module docstring for why ``create_graph`` matters).

    Args:
        weight: λ ≥ 0 (required; the paper sweeps it).
    """

    name = "param_grad"

    def __init__(self, weight: Optional[float] = None) -> None:
        self.weight = _weight("regularizers.param_grad", weight, "0.01")

    def penalty(self, ctx: LossContext) -> Optional[Tensor]:
        if ctx.net != GENERATOR:
            return None
        params = [p for p in ctx.generator.parameters() if p.requires_grad]
        return self.weight * parameter_gradient_norm2(ctx.loss, params)

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}"


@REGULARIZERS.register()
class SampleGradPenalty(Regularizer):
    r""":math:`\lambda\,\frac1B\sum_i\|\partial L_G/\partial\tilde x_i\|_2` added to the generator loss;
    for MMD objectives the paper's λ·mean‖∂MMD²/∂x_gen‖₂.

    Args:
        weight: λ ≥ 0 (required).
    """

    name = "sample_grad"

    def __init__(self, weight: Optional[float] = None) -> None:
        self.weight = _weight("regularizers.sample_grad", weight, "1")

    def penalty(self, ctx: LossContext) -> Optional[Tensor]:
        if ctx.net != GENERATOR:
            return None
        (grad,) = torch.autograd.grad(ctx.loss, ctx.fake, create_graph=True)
        w = world_size()
        if w > 1:  # ∂L/∂x_i of the global loss L = (1/W) Σ_r L_r is (1/W) ∂L_r/∂x_i
            grad = grad / w
        # NORM_EPS keeps the square root differentiable where a sample's gradient vanishes
        return self.weight * torch.sqrt(squared_gradient_norms(grad) + NORM_EPS).mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}"


class _DiscriminatorPenalty(Regularizer):
    """Shared checks of the discriminator penalties: a weight, and an objective with a D.

    Lazy regularisation (Karras et al. 2020, StyleGAN2 Sec. 3.1 / Appendix B): with ``every = k > 1``
    the penalty is added on discriminator steps 1, k+1, 2k+1, … only, weighted k·γ, so that its
    gradient summed over k steps equals the every-step penalty's (for slowly changing D and data)
    at 1/k of its cost. Discriminator steps are counted in :meth:`begin_batch` (once per D update,
    whatever ``n_critic``, SAM or Monte-Carlo repeats do), and the count is checkpointed.
    """

    def __init__(self, weight: float, every: int = 1) -> None:
        self.weight = check_real("weight", weight, ge=0.0, owner=f"regularizers.{self.name}")
        self.every = check_int("every", every, owner=f"regularizers.{self.name}")
        self._d_steps = 0  # discriminator steps begun so far
        self._due = True  # does the current step carry the penalty? (True outside a training loop)

    def check(self, objective: Objective) -> None:
        require_discriminator(f"regularizers.{self.name}", objective)

    def begin_batch(self, real: Tensor, fake: Tensor, step: int) -> None:
        if self.every > 1:
            self._due = self._d_steps % self.every == 0
            self._d_steps += 1

    def penalty(self, ctx: LossContext) -> Optional[Tensor]:
        if ctx.net != DISCRIMINATOR:
            return None
        if self.every == 1:  # the plain path, operation for operation
            return self.weight * self.unweighted(ctx)
        if not self._due:
            return None
        return (self.weight * self.every) * self.unweighted(ctx)

    def state_tensors(self) -> Dict[str, Tensor]:
        # only lazy penalties have state: every = 1 checkpoints stay exactly as they were
        return {"d_steps": torch.tensor(self._d_steps, dtype=torch.int64)} if self.every > 1 else {}

    def load_state_tensors(self, tensors: Dict[str, Tensor], source: str) -> None:
        if self.every > 1:
            self._d_steps = load_step_counter(tensors, "d_steps", source, self._d_steps)

    def unweighted(self, ctx: LossContext) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}" + (f", every={self.every}" if self.every > 1 else "")


class _InputGradientPenalty(_DiscriminatorPenalty):
    """R1 and R2: half the mean squared input-gradient norm of D on one side of the batch."""

    side = "real"  # which batch of the LossContext: "real" (R1) or "fake" (R2)

    def __init__(self, weight: float = 10.0, every: int = 1) -> None:
        super().__init__(weight, every)

    def unweighted(self, ctx: LossContext) -> Tensor:
        _, grad = outputs_and_input_gradients(ctx.discriminator, ctx.real if self.side == "real" else ctx.fake)
        return 0.5 * squared_gradient_norms(grad).mean()


@REGULARIZERS.register()
class R1Penalty(_InputGradientPenalty):
    r""":math:`\frac\gamma2\mathbb E_{p_{data}}\|\nabla_x D(x)\|_2^2` (Mescheder et al. 2018).

    Args:
        weight: γ ≥ 0 (default 10).
        every: k ≥ 1; with k > 1 the penalty is applied every k-th discriminator step with weight
            k·γ (lazy regularisation, StyleGAN2 uses k = 16); k = 1 (default) is every step.
    """

    name = "r1"
    side = "real"


@REGULARIZERS.register()
class R2Penalty(_InputGradientPenalty):
    r""":math:`\frac\gamma2\mathbb E_{p_g}\|\nabla_{\tilde x} D(\tilde x)\|_2^2` (Mescheder et al. 2018);
    ``weight`` and ``every`` as for :class:`R1Penalty`."""

    name = "r2"
    side = "fake"


@REGULARIZERS.register()
class InterpolateGradPenalty(_DiscriminatorPenalty):
    r""":math:`\lambda\,\mathbb E_{\hat x}(\|\nabla_{\hat x}D(\hat x)\|_2 - c)^2`, x̂ uniform interpolates
    of real and generated samples (Gulrajani et al. 2017); the interpolation weights come from the
    global RNG, which the trainer checkpoints.

    Args:
        weight: λ ≥ 0 (default 10).
        target: c ≥ 0, the target gradient norm (default 1).
    """

    name = "gp"

    def __init__(self, weight: float = 10.0, target: float = 1.0) -> None:
        super().__init__(weight)
        self.target = check_real("target", target, ge=0.0, owner="regularizers.gp")

    def unweighted(self, ctx: LossContext) -> Tensor:
        return gradient_penalty(ctx.discriminator, ctx.real, ctx.fake, target=self.target)

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, target={self.target:g}"


__all__ = ["parameter_gradient_norm2", "ParamGradPenalty", "SampleGradPenalty", "R1Penalty", "R2Penalty", "InterpolateGradPenalty"]
