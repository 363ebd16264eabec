r"""Least-squares GAN (Mao et al. 2017, "Least Squares Generative Adversarial Networks", ICCV)."""

from __future__ import annotations

from torch import Tensor

from . import OBJECTIVES
from ..runtime.validation import check_real, not_allowed
from .base import Objective


@OBJECTIVES.register(aliases=("least_squares", "least-squares"))
class LSGAN(Objective):
    r"""Least-squares GAN with target codes a (fake), b (real) for D and c for G (Mao et al. eq. 2):

    .. math:: L_D = \tfrac12\mathbb{E}_{p_{data}}[(D(x) - b)^2] + \tfrac12\mathbb{E}_{p_g}[(D(\tilde x) - a)^2],
              \qquad L_G = \tfrac12\mathbb{E}_{p_g}[(D(\tilde x) - c)^2].

    D's raw output is used (no sigmoid). The optimal D is
    :math:`D^* = (b\,p_{data} + a\,p_g)/(p_{data} + p_g)`; with b − c = 1 and b − a = 2 (e.g.
    a, b, c = −1, 1, 0) the generator then minimises ½·Pearson χ²(p_data + p_g ‖ 2p_g) (Mao et al.
    §3.2). The default a, b, c = 0, 1, 1 is the paper's "0-1 coding" used in practice.

    Args:
        a: target for generated samples in D's loss (default 0).
        b: target for real samples in D's loss (default 1); must differ from a.
        c: the value G wants D to output on its samples (default 1).
    """

    name = "lsgan"

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0) -> None:
        self.a = check_real("a", a, owner=self.name)
        self.b = check_real("b", b, owner=self.name)
        self.c = check_real("c", c, owner=self.name)
        if self.a == self.b:
            raise not_allowed("b", b, f"must differ from a={a}: D would have nothing to separate", owner=self.name)

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return 0.5 * (real_logits - self.b).pow(2).mean() + 0.5 * (fake_logits - self.a).pow(2).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits - self.c).pow(2).mean()

    def extra_repr(self) -> str:
        return f"a={self.a:g}, b={self.b:g}, c={self.c:g}"


__all__ = ["LSGAN"]
