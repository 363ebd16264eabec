r"""Integral-probability-metric objectives: Wasserstein GAN with weight clipping, gradient penalty
or the Wasserstein-divergence penalty, and the hinge loss.

The critic D is unconstrained in range (raw outputs, no sigmoid). For all three WGAN variants the
generator loss is :math:`-\mathbb{E}_{p_g}[D(\tilde x)]`.

Trainer hook used here (declared on :class:`~statgan.objectives.base.Objective`, never by name):
``after_discriminator_step(discriminator)`` — ``wgan`` clips the critic's parameters to
[−clip, clip] *after* each optimiser step (clipping inside the loss would be undone by the step).
The critic steps per generator step (5 in the WGAN papers) are the config's ``train.n_critic``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import OBJECTIVES
from ..runtime.validation import check_real
from .base import Critic, Objective
from .penalties import gradient_penalty, gradient_power, outputs_and_input_gradients


class _Wasserstein(Objective):
    """Critic loss −E[D(x)] + E[D(x̃)] and generator loss −E[D(x̃)] shared by the WGANs."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


@OBJECTIVES.register(aliases=("wasserstein",))
class WGAN(_Wasserstein):
    r"""Wasserstein GAN with weight clipping (Arjovsky, Chintala & Bottou 2017, Algorithm 1).

    Critic: :math:`L_D = \mathbb{E}_{p_g}[D(\tilde x)] - \mathbb{E}_{p_{data}}[D(x)]`;
    generator: :math:`L_G = -\mathbb{E}_{p_g}[D(\tilde x)]`. After every critic update all critic
    parameters are clipped to [−clip, clip] (:meth:`after_discriminator_step`), a crude way to keep
    D in a Lipschitz family; −L_D then estimates a multiple of the Wasserstein-1 distance.
    The paper uses RMSProp, lr 5e-5, n_critic = 5.

    Args:
        clip: clipping bound c > 0 (default 0.01).
    """

    name = "wgan"

    def __init__(self, clip: float = 0.01) -> None:
        self.clip = check_real("clip", clip, gt=0.0, owner=self.name)

    @torch.no_grad()
    def after_discriminator_step(self, discriminator: torch.nn.Module) -> None:
        """Clip every parameter of ``discriminator`` to [−clip, clip], in place."""
        for p in discriminator.parameters():
            p.clamp_(-self.clip, self.clip)

    def extra_repr(self) -> str:
        return f"clip={self.clip:g}"


@OBJECTIVES.register(aliases=("wgan_gp", "wgangp"))
class WGANGP(_Wasserstein):
    r"""WGAN with gradient penalty (Gulrajani et al. 2017, Algorithm 1).

    .. math:: L_D = \mathbb{E}_{p_g}[D(\tilde x)] - \mathbb{E}_{p_{data}}[D(x)]
              + \lambda\,\mathbb{E}_{\hat x}\big[(\|\nabla_{\hat x}D(\hat x)\|_2 - 1)^2\big],
              \quad \hat x = \epsilon x + (1-\epsilon)\tilde x,\ \epsilon\sim U(0,1)\text{ per sample};

    :math:`L_G = -\mathbb{E}_{p_g}[D(\tilde x)]`. The penalty is differentiated with
    ``create_graph=True``. Paper defaults: λ = 10, n_critic = 5, Adam(1e-4, β = (0, 0.9)).

    Args:
        gp_weight: λ ≥ 0 (default 10; 0 gives an unconstrained, ill-posed critic).
    """

    name = "wgan-gp"

    def __init__(self, gp_weight: float = 10.0) -> None:
        self.gp_weight = check_real("gp_weight", gp_weight, ge=0.0, owner=self.name)

    def discriminator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        loss = self.d_loss(discriminator(real), discriminator(fake))
        if self.gp_weight > 0:
            loss = loss + self.gp_weight * gradient_penalty(discriminator, real, fake)
        return loss

    def extra_repr(self) -> str:
        return f"gp_weight={self.gp_weight:g}"


@OBJECTIVES.register(aliases=("wgan_div", "wgandiv"))
class WGANDiv(_Wasserstein):
    r"""Wasserstein divergence GAN (Wu et al. 2018, "Wasserstein Divergence for GANs", ECCV).

    As in the reference code of Filippone & Linhard (see REFERENCES.md):

    .. math:: L_D = -\mathbb{E}_{p_{data}}[D(x)] + \mathbb{E}_{p_g}[D(\tilde x)]
              + \frac k2\,\mathbb{E}\big[\|\nabla_x D(x)\|_2^p + \|\nabla_{\tilde x} D(\tilde x)\|_2^p\big],

    the penalty taken at the real and at the generated samples themselves (no interpolates; the
    two expectations are over their own batches), with k = 2, p = 6 (the paper's best setting);
    :math:`L_G = -\mathbb{E}_{p_g}[D(\tilde x)]`. Unlike WGAN-GP the penalty is one-sided towards
    zero gradient and needs no Lipschitz constraint; −L_D estimates the W-div of the paper.
    D is evaluated once per batch: the same forward pass gives the loss and the input gradient.

    Args:
        k: penalty weight k ≥ 0 (default 2).
        p: power p > 0 (default 6).
    """

    name = "wgan-div"

    def __init__(self, k: float = 2.0, p: float = 6.0) -> None:
        self.k = check_real("k", k, ge=0.0, owner=self.name)
        self.p = check_real("p", p, gt=0.0, owner=self.name)

    def discriminator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        real_out, real_grad = outputs_and_input_gradients(discriminator, real)
        fake_out, fake_grad = outputs_and_input_gradients(discriminator, fake)
        penalty = gradient_power(real_grad, self.p).mean() + gradient_power(fake_grad, self.p).mean()
        return self.d_loss(real_out, fake_out) + 0.5 * self.k * penalty

    def extra_repr(self) -> str:
        return f"k={self.k:g}, p={self.p:g}"


@OBJECTIVES.register()
class Hinge(Objective):
    r"""Hinge loss (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018, SN-GAN).

    .. math:: L_D = \mathbb{E}_{p_{data}}[\max(0, 1 - D(x))] + \mathbb{E}_{p_g}[\max(0, 1 + D(\tilde x))],
              \qquad L_G = -\mathbb{E}_{p_g}[D(\tilde x)].

    At the optimum the critic is ±1-valued and −L_D + 2 = 2·TV(p_data, p_g) (support-vector
    view); the generator step is the Wasserstein-style linear loss.
    """

    name = "hinge"

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


__all__ = ["WGAN", "WGANGP", "WGANDiv", "Hinge"]
