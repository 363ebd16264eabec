r"""Relativistic pairing GAN (RpGAN): the loss of R3GAN (Huang, Gokaslan, Kuleshov & Tompkin,
"The GAN is dead; long live the GAN! A Modern GAN Baseline", NeurIPS 2024, eq. 2; the pairing form
goes back to Jolicoeur-Martineau 2018, "RpGAN").

Each real sample is paired with one generated sample and the discriminator judges *the pair*:

.. math::
    L_D &= \mathbb{E}_{x_r \sim p_{data},\, x_f \sim p_g}\bigl[\operatorname{softplus}(-(D(x_r) - D(x_f)))\bigr], \\
    L_G &= \mathbb{E}_{x_r \sim p_{data},\, x_f \sim p_g}\bigl[\operatorname{softplus}(-(D(x_f) - D(x_r)))\bigr],

with ``softplus(-u) = -log σ(u)``. A batch pairs row i of the real batch with row i of the
generated batch (the two are independent draws, so any fixed pairing is an unbiased estimate).

Why pairing rather than :mod:`ragan`'s batch means: with pairs, every generated sample is compared
with a *specific* real one, so D cannot separate the two distributions by a single threshold on
the batch average; R3GAN (Sec. 2, Prop. I) shows that the RpGAN landscape has no local minima
that drop modes, unlike the standard GAN loss, and with R1 + R2 (``regularizers.r1`` / ``r2``)
it converges locally. L_D is a function of the *difference* of the logits only, so D is
identified up to an additive constant (audits that read D as log p_data / p_g see a shifted
estimate).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import OBJECTIVES
from .base import Critic, Objective


def _paired(real_logits: Tensor, fake_logits: Tensor) -> None:
    # pairing needs the same number of real and generated rows: a silent broadcast of a (B,) and a
    # (1,) tensor would compare every real sample with one generated sample
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"rpgan pairs real and generated samples: logits must have the same shape, got "
            f"{tuple(real_logits.shape)} (real) and {tuple(fake_logits.shape)} (generated)"
        )


@OBJECTIVES.register("rpgan", aliases=("relativistic_pairing", "rp-gan"))
class RpGAN(Objective):
    r"""Relativistic pairing loss (module docstring), on raw logits, both losses minimised:

    ``d_loss(r, f) = mean softplus(f - r)``,  ``g_loss(f, r) = mean softplus(r - f)``.

    Gradient of L_G with respect to a generated logit: :math:`-\sigma(D(x_r) - D(x_f))/B` — close
    to −1/B when D rejects the sample (non-saturating), 0 when the sample already beats its pair.
    At p_g = p_data the optimal D is constant and L_D = log 2 (by symmetry and convexity of
    softplus: E softplus(−u) ≥ softplus(−E u) = log 2 for a symmetric difference u).
    R3GAN trains it with n_critic = 1 and γ/2·(R1 + R2).
    """

    n_critic = 1

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        _paired(real_logits, fake_logits)
        return F.softplus(fake_logits - real_logits).mean()

    def g_loss(self, fake_logits: Tensor, real_logits: Optional[Tensor] = None) -> Tensor:
        """Generator loss; like ``ragan`` it needs ``real_logits`` too (the pair's other half)."""
        if real_logits is None:
            raise TypeError("rpgan's generator loss needs real_logits: call g_loss(fake_logits, real_logits)")
        _paired(real_logits, fake_logits)
        return F.softplus(real_logits - fake_logits).mean()

    def generator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        # D is fixed in the generator step and G's gradient does not flow through the real term,
        # so the real logits need no graph (saves the memory of one D forward pass)
        with torch.no_grad():
            real_logits = discriminator(real)
        return self.g_loss(discriminator(fake), real_logits)


__all__ = ["RpGAN"]
