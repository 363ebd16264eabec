r"""FastGAN's self-supervised discriminator (Liu, Zhu, Song & Elgammal, ICLR 2021, "Towards Faster and
Stabilized GAN Training for High-fidelity Few-shot Image Synthesis", Sec. 3.2): D also learns to
decode its own features of *real* images back into the images,

.. math:: L_D \mathrel{+}= \lambda\,\mathbb E_{x\sim p_{data}}\bigl\|\mathrm{dec}(f(x)) - \mathrm{pool}(x)\bigr\|_2^2 / d,

with :math:`f(x)` D's features before its final convolution, dec a small decoder trained with D
(``model.discriminator.decoder``, :func:`statgan.nets.common.feature_decoder`), pool the average
over blocks that brings x to the decoder's resolution and d the number of pixel values (a mean
squared error). Forcing f to keep what describes the image, not only what separates real from
generated, is what lets FastGAN's D learn from a hundred images without collapsing onto them.

Deviations from FastGAN: one small decoder of the whole feature map, to twice its resolution (28 px:
a 14×14 image), instead of two four-block decoders (a whole map and a random crop of a larger one),
mean squared error instead of LPIPS (no perceptual network ships offline), and the loss can be applied lazily (``every`` = k: every k-th discriminator step at k·λ, as
R1 in StyleGAN2). The decoder reads the features of D's own forward pass on the real batch (the
discriminator keeps them for the tensor it last saw), so on the steps it is applied the loss costs
the decoder's passes only -- about a third of the 28 px generator's -- and a second D pass only when
another regulariser handed D a different tensor in between.
"""

from __future__ import annotations

from typing import Any, Dict

from torch import Tensor
from torch.nn import functional as F

from ..errors import ConfigError
from . import REGULARIZERS
from .base import DISCRIMINATOR, LossContext
from .gradient import _DiscriminatorPenalty


@REGULARIZERS.register()
class SelfSupervisedReconstruction(_DiscriminatorPenalty):
    """λ × the mean squared error of D's decoder on real images (module docstring).

    Args:
        weight: λ ≥ 0 (default 1: FastGAN adds the reconstruction losses to D's loss unweighted).
        every: k ≥ 1, lazy application as for ``r1`` (default 1).
    """

    name = "recon"
    network_keys = ("decoder",)
    network_families = (DISCRIMINATOR,)

    def __init__(self, weight: float = 1.0, every: int = 1) -> None:
        super().__init__(weight, every)

    def network_params(self, family: str) -> Dict[str, Any]:
        return {"decoder": True} if family == DISCRIMINATOR else {}

    def unweighted(self, ctx: LossContext) -> Tensor:
        D = ctx.discriminator
        reconstruction = getattr(D, "reconstruction", None)
        if reconstruction is None:
            raise ConfigError(f"regularizers.recon needs a discriminator with a decoder; {type(D).__name__} has none")
        image = reconstruction(ctx.real)
        target = F.adaptive_avg_pool2d(ctx.real, image.shape[-2:])
        return F.mse_loss(image, target)

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, every={self.every}"


__all__ = ["SelfSupervisedReconstruction"]
