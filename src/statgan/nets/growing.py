r"""Progressive growing (Karras, Aila, Laine & Lehtinen, ICLR 2018, "Progressive Growing of GANs for
Improved Quality, Stability, and Variation"): what a network needs to train at a lower resolution
first and fade the next one in.

A growing network's resolutions are ``base · 2^k`` for k = 0..n (its pyramid; 7, 14, 28 for the 28 px
DCGAN). Its state is one number, the **growth** g ∈ [0, n], kept as a buffer (so checkpoints, the
EMA copy and a loaded generator carry it):

* g = k (an integer): the network works at resolution index k;
* k < g < k + 1: it fades from k into k + 1 with weight α = g − k on the new resolution,

      G:  y = lerp(up₂(rgb_k(h_k)), rgb_{k+1}(h_{k+1}), α)
      D:  h = lerp(from_rgb_k(pool₂(x_{k+1})), block(from_rgb_{k+1}(x_{k+1})), α)

  (Karras et al. Sec. 2, Fig. 2: the new layers enter as a residual whose weight grows from 0 to 1).

Both networks keep the full image size at their boundary, so nothing outside them (the data, the
regularisers, sample grids, FID) knows about growth: the generator upsamples its image to the full
size by pixel repetition, and the discriminator average-pools its input down to the working
resolution first — which returns a repeated image exactly (up to rounding), so D sees the
generator's low-resolution image and the real images averaged to the same resolution.

The schedule that moves g is :class:`statgan.regularizers.grow.ProgressiveGrowing`.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def growth_point(growth: float) -> Tuple[int, float]:
    """``(k, α)`` of a growth value: the resolution index worked at and the weight of its new layers
    (α = 0: no fade; otherwise the network fades from k − 1 into k)."""
    level = math.floor(growth)
    alpha = growth - level
    return (level + 1, alpha) if alpha > 0 else (level, 0.0)


def upsample(x: Tensor, factor: int) -> Tensor:
    """Pixel repetition by ``factor`` (nearest neighbour; ``x`` itself for 1)."""
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def downsample(x: Tensor, factor: int) -> Tensor:
    """Mean over ``factor`` × ``factor`` blocks (``x`` itself for 1): the inverse of :func:`upsample`."""
    return x if factor == 1 else F.avg_pool2d(x, factor)


class Growing:
    """Mixin of a network that can grow: the ``growth`` buffer and its setter.

    The subclass calls :meth:`_init_growth` with its number of resolution doublings n and its
    resolutions; a network built with growth starts at full size (g = n), so one that is never
    scheduled behaves as the plain network.
    """

    growth: Tensor

    def _init_growth(self, n_levels: int, resolutions: Tuple[int, ...]) -> None:
        self.growth_levels = n_levels
        #: the image side at each resolution index, smallest first
        self.resolutions = resolutions
        # float64: the fade weight is read back exactly as the schedule wrote it
        self.register_buffer("growth", torch.tensor(float(n_levels), dtype=torch.float64))  # type: ignore[attr-defined]

    def set_growth(self, growth: float) -> None:
        """Work at growth ``growth`` ∈ [0, n] from the next forward pass on."""
        if not 0.0 <= growth <= self.growth_levels:
            raise ValueError(f"growth={growth!r} must lie in [0, {self.growth_levels}]")
        self.growth.fill_(growth)

    def growth_now(self) -> Tuple[int, float]:
        """:func:`growth_point` of the current growth (a host read of the buffer: one device sync on a GPU)."""
        return growth_point(float(self.growth))


def rgb_head(in_ch: int, channels: int) -> nn.Module:
    """A generator's image head at a lower resolution (Karras et al.'s toRGB): 1×1 convolution, tanh
    (the range of the full-size output)."""
    return nn.Sequential(nn.Conv2d(in_ch, channels, 1), nn.Tanh())


def from_rgb_head(channels: int, out_ch: int, slope: float) -> nn.Module:
    """A discriminator's image entry at a lower resolution (fromRGB): 1×1 convolution, leaky ReLU."""
    return nn.Sequential(nn.Conv2d(channels, out_ch, 1), nn.LeakyReLU(slope))


__all__ = ["growth_point", "upsample", "downsample", "Growing", "rgb_head", "from_rgb_head"]
