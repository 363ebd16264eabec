"""The objective interface every GAN objective implements.

The training loop never branches on an objective's name. Everything it (or a regulariser) may
use is declared on :class:`Objective` with its default: ``name``, ``has_discriminator``,
:meth:`~Objective.discriminator_loss`, :meth:`~Objective.generator_loss` and
:meth:`~Objective.after_discriminator_step`. The two loss hooks by default evaluate the
discriminator once on real and once on generated samples and defer to the logit-level
:meth:`d_loss` / :meth:`g_loss`. Objectives that need more than logits (gradient penalties on
interpolates, MMD on samples or features, relativistic losses that need real logits in the
generator step) override the two hooks instead.

Parameter values are validated in ``__init__`` with :mod:`statgan.runtime.validation`
(``owner`` = the objective's name), so a bad value is a one-line ConfigError at construction.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import torch
from torch import Tensor

Critic = Callable[[Tensor], Tensor]


class Objective:
    """Base class: a GAN objective as a pair of losses, both to be *minimised*.

    ``d_loss(real_logits, fake_logits)``: the discriminator (critic) loss on raw outputs.
    ``g_loss(fake_logits)``: the generator loss on the raw outputs for generated samples.
    """

    #: the canonical registered name, declared in each registered class's body (the registry
    #: registers the class under it, so aliases build instances that carry the canonical name)
    name: ClassVar[str] = "objective"

    #: False for objectives with nothing to train adversarially (``gmmn``): the trainer then skips
    #: the discriminator step, and regularisers that act on D refuse the objective.
    has_discriminator: bool = True

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement d_loss")

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement g_loss")

    # --- hooks used by the trainer -------------------------------------------------------------
    def discriminator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        """Loss for one discriminator update; ``fake`` is already detached from the generator."""
        return self.d_loss(discriminator(real), discriminator(fake))

    def generator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        """Loss for one generator update; gradients flow through ``fake`` into the generator."""
        return self.g_loss(discriminator(fake))

    def after_discriminator_step(self, discriminator: torch.nn.Module) -> None:
        """Called by the trainer after every discriminator update (``wgan`` clips weights here);
        the default does nothing."""

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def bce_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""Binary cross-entropy on logits, real labelled 1 and generated 0.

    .. math:: L_D = \mathbb{E}_{p_{data}}[\operatorname{softplus}(-d(x))] + \mathbb{E}_{p_g}[\operatorname{softplus}(d(x))]

    Its minimiser over all functions is ``d*(x) = log p_data(x) / p_g(x)`` (Goodfellow et al.
    2014; Sugiyama et al. 2012), which is why every density-ratio objective shares it.
    """
    return torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()


def value_with_gradient(value: Tensor, surrogate: Tensor) -> Tensor:
    """A scalar whose *value* is ``value`` and whose *gradient* is that of ``surrogate``.

    Used where the quantity worth reporting (a divergence estimate) is not the function whose
    gradient is correct (see :mod:`statgan.objectives.ratio`): returns
    ``value.detach() + surrogate - surrogate.detach()``.
    """
    return value.detach() + (surrogate - surrogate.detach())
