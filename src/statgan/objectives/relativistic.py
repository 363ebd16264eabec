r"""Relativistic average GAN (Jolicoeur-Martineau 2018, "The relativistic discriminator: a key
element missing from standard GAN", ICLR 2019), standard (logistic) form, on logits.

The discriminator judges whether a real sample is *more realistic than the average generated
one*: with raw critic outputs C,

.. math:: \tilde D(x_r) = C(x_r) - \mathbb{E}_{p_g}[C(x_f)], \qquad \tilde D(x_f) = C(x_f) - \mathbb{E}_{p_{data}}[C(x_r)].
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from . import OBJECTIVES
from .base import Critic, Objective


@OBJECTIVES.register(aliases=("rasgan", "relativistic", "relativistic_average"))
class RaGAN(Objective):
    r"""RaSGAN (Jolicoeur-Martineau 2018, eqs. 18–19 / Algorithm 2), written with softplus:

    .. math::
        L_D &= \mathbb{E}_{p_{data}}[\operatorname{softplus}(-(C(x_r) - \overline{C_f}))]
             + \mathbb{E}_{p_g}[\operatorname{softplus}(C(x_f) - \overline{C_r})], \\
        L_G &= \mathbb{E}_{p_g}[\operatorname{softplus}(-(C(x_f) - \overline{C_r}))]
             + \mathbb{E}_{p_{data}}[\operatorname{softplus}(C(x_r) - \overline{C_f})],

    where the bars are batch means (−log σ(z) = softplus(−z), −log(1 − σ(z)) = softplus(z), exact
    and overflow-free). The generator loss needs the real logits — unlike the standard GAN, G's
    gradient also flows through the real term via :math:`\overline{C_f}` — so
    :meth:`generator_loss` evaluates D on the real batch too (detached: D is fixed in the G step).
    Reference code uses n_critic = 1.
    """

    name = "ragan"

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return (
            F.softplus(-(real_logits - fake_logits.mean())).mean()
            + F.softplus(fake_logits - real_logits.mean()).mean()
        )

    def g_loss(self, fake_logits: Tensor, real_logits: Optional[Tensor] = None) -> Tensor:
        """Generator loss; unlike other objectives it needs ``real_logits`` too."""
        if real_logits is None:
            raise TypeError("ragan's generator loss needs real_logits: call g_loss(fake_logits, real_logits)")
        return (
            F.softplus(-(fake_logits - real_logits.mean())).mean()
            + F.softplus(real_logits - fake_logits.mean()).mean()
        )

    def generator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        real_logits = discriminator(real).detach()
        return self.g_loss(discriminator(fake), real_logits)


__all__ = ["RaGAN"]
