r"""Normalisation-free residual generator and discriminator in the style of R3GAN (Huang,
Gokaslan, Kuleshov & Tompkin, NeurIPS 2024, "The GAN is dead; long live the GAN! A Modern GAN
Baseline", Sec. 3 and the reference code brownvc/R3GAN), sized for CPUs.

Supported images: square ``(C, S, S)`` with S in {28, 32, 64, 128}, any C >= 1. Stages run at
resolutions ``base · 2^k`` (k = 0 … n_up), base = 7 for 28 px and 4 otherwise, so **28 px starts
from a learned 7×7 basis** instead of cropping a 32-px image (no wasted compute at the highest
resolution, where most of it goes). Stage k has ``width · 2^(n_up − k)`` channels: the DCGAN
convention (``width`` = channels at full resolution, doubled per halving), not R3GAN's constant
widths, because on a CPU the full-resolution stages dominate the cost.

Blocks (both networks; no normalisation layer anywhere)::

    residual block   x + conv1x1(act(conv3x3_grouped(act(conv1x1(x)))))     C -> e·C -> e·C -> C
    act              bias + LeakyReLU(0.2)
    G transition     conv1x1 (channel change) -> upsample ×2
    D transition     downsample ×2 -> conv1x1 (channel change)
    G start          basis (C0, b, b), learned, times a per-sample linear function of z (no bias)
    G end            conv1x1 -> C channels (-> tanh unless ``tanh=False``)
    D start          conv1x1 from C channels
    D end            [minibatch stddev] -> depthwise b×b conv (the "discriminative basis") -> (B, C0[+1])
                     -> linear -> one raw logit

Initialisation (R3GAN's fix-up style): every convolution is N(0, g²/fan_in) ("MSR"), with
g = √(2/(1 + 0.2²)) · L^(−1/4) for the two first convolutions of each residual branch (L = the
number of residual blocks in the network, 3 layers per branch: L^(−1/(2·3−2))), g = 1 elsewhere;
**the last convolution of every residual branch starts at zero**, so at initialisation every
block is the identity and both networks start as linear maps (G up to its tanh), whatever their
depth. Biases start at 0.

Resampling: R3GAN's ``ResamplingFilter = [1, 2, 1]``; its interpolative resamplers convolve it
with the [1, 1] box of the stride-2 step, so the separable kernel is [1, 3, 3, 1]/8 per axis
(bilinear): downsampling = depthwise stride-2 convolution, upsampling = depthwise stride-2
transposed convolution (gain 4, so a constant image stays constant away from the border).

Minibatch standard deviation (Karras et al. 2018, ProGAN; StyleGAN2 variant, ``mbstd=True``):
before D's basis, groups of ``mbstd_group`` samples (samples i, i + B/G, … as in StyleGAN2; G the
largest divisor of the batch ≤ ``mbstd_group``) get one extra channel, the feature-wise standard
deviation over the group averaged over channels and pixels. Off by default: with it, D(x) depends
on the other samples in the batch, which breaks the per-sample reading of D as a log density
ratio that the audit code uses.

Default sizes and measured cost. Defaults: ``width=8`` (8 channels at full resolution, 16, 32, … below),
``blocks=1`` per stage, ``expansion=2``, ``group_width=8``. Step time = one ``rpgan`` D update + G update
(Adam), batch 64, 28×28×1, latent 64, one thread, median of 7 rounds, interleaved with DCGAN width 32
in the same process, on a 2-core machine shared with other jobs (load average 10–12, so absolute
times are inflated; the ratios were stable to ±0.1 over three runs):

    ======================================  ===========  ===========  =====================
    network (28×28×1, latent 100)           G params     D params     step time / DCGAN-32
    ======================================  ===========  ===========  =====================
    DCGAN width 32 (the default run)        347,073      36,577       1 (≈ 230 ms loaded)
    resnet width 8 (default)                19,080       15,913       1.93–2.11
    resnet width 16                         50,192       43,857       4.2
    resnet width 16, blocks [1, 1, 0]       46,800       40,465       2.1
    ======================================  ===========  ===========  =====================

Most of the time goes into the full-resolution stage (its 1×1 and grouped 3×3 convolutions and
activations on 28×28 maps), which is why widths double towards low resolution. Parameter counts at
other sizes: ``tests/test_nets_resnet.py`` (32×32×3: 49,656 / 43,321; 64×64×3: 149,752 / 137,081).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..runtime.validation import check_bool, check_int
from .common import DISCRIMINATORS, GENERATORS, LEAKY_SLOPE, minibatch_stddev
from .dcgan import dcgan_geometry

#: gain of LeakyReLU(0.2) that keeps the second moment (He et al. 2015): √(2 / (1 + a²))
ACTIVATION_GAIN = math.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2))
#: R3GAN's resampling filter; the interpolative kernel is it convolved with [1, 1]
RESAMPLING_FILTER = (1.0, 2.0, 1.0)
#: layers per residual branch (1×1, grouped 3×3, 1×1): sets the exponent of the gain scaling
BRANCH_LAYERS = 3


@torch.no_grad()
def msr_init(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """Weight ~ N(0, gain² / fan_in) with fan_in = input channels per group × kernel size; bias 0."""
    w = layer.weight
    fan_in = w.shape[1] * (w[0][0].numel() if w.dim() > 2 else 1)
    w.normal_(0.0, gain / math.sqrt(fan_in))
    if getattr(layer, "bias", None) is not None:
        layer.bias.zero_()
    return layer


def lowpass_kernel(filt: Sequence[float] = RESAMPLING_FILTER) -> Tensor:
    """The separable 2-D interpolation kernel: ``filt`` ⊛ [1, 1], outer product, sum 1."""
    k = torch.tensor(filt, dtype=torch.float64)
    k = F.conv1d(k.view(1, 1, -1), torch.ones(1, 1, 2, dtype=torch.float64), padding=1).view(-1)  # full convolution
    k2 = torch.outer(k, k)
    return (k2 / k2.sum()).float()


class Resample(nn.Module):
    """Depthwise low-pass ×2 up- or downsampling with the [1, 3, 3, 1] kernel (module docstring)."""

    def __init__(self, up: bool) -> None:
        super().__init__()
        self.up = up
        kernel = lowpass_kernel()
        self.pad = 1  # with the 4-tap kernel and stride 2: output size exactly ×2 or ÷2
        # a constant, not a parameter: non-persistent so it never enters checkpoints
        self.register_buffer("kernel", (kernel * 4.0 if up else kernel)[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        # depthwise (groups = C) with the kernel repeated per channel: on CPUs 5-10x faster than
        # folding the channels into the batch and running a single-channel convolution
        k = self.kernel.to(x.dtype).expand(c, 1, -1, -1)
        if self.up:
            return F.conv_transpose2d(x, k, stride=2, padding=self.pad, groups=c)
        return F.conv2d(x, k, stride=2, padding=self.pad, groups=c)

    def extra_repr(self) -> str:
        return "up" if self.up else "down"


class ResidualBlock(nn.Module):
    """``x + conv1x1(act(conv3x3_g(act(conv1x1(x)))))``, the last convolution zero at init."""

    def __init__(self, channels: int, expansion: int, group_width: int, n_blocks: int, what: str) -> None:
        super().__init__()
        wide = channels * expansion
        if wide % group_width != 0 and group_width < wide:
            raise ConfigError(f"{what}: group_width={group_width} does not divide the {wide} expanded channels of a block")
        groups = max(1, wide // group_width)
        gain = ACTIVATION_GAIN * n_blocks ** (-1.0 / (2 * BRANCH_LAYERS - 2))
        self.conv1 = msr_init(nn.Conv2d(channels, wide, 1, bias=True), gain)
        self.conv2 = msr_init(nn.Conv2d(wide, wide, 3, padding=1, groups=groups, bias=True), gain)
        self.conv3 = nn.Conv2d(wide, channels, 1, bias=False)
        nn.init.zeros_(self.conv3.weight)  # the branch is zero: the block starts as the identity
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def branch(self, x: Tensor) -> Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _geometry(what: str, data_shape: Sequence[int], width: int) -> Tuple[int, int, int, List[int]]:
    """(channels, size, base, stage widths from the lowest resolution up)."""
    channels, size, base, n_up = dcgan_geometry(what, data_shape)
    width = check_int("width", width, owner=what)
    return channels, size, base, [width * 2 ** (n_up - k) for k in range(n_up + 1)]


def _check_block_params(
    what: str, blocks: Union[int, Sequence[int]], n_stages: int, expansion: int, group_width: int
) -> Tuple[List[int], int, int]:
    """(blocks per stage from the lowest resolution up, expansion, group width)."""
    if isinstance(blocks, Sequence) and not isinstance(blocks, (str, bytes)):
        if len(blocks) != n_stages:
            raise ConfigError(f"{what}: blocks={list(blocks)!r} must list {n_stages} stages (lowest resolution first) or be one integer")
        per_stage = [check_int("blocks", b, minimum=0, owner=what) for b in blocks]
    else:
        per_stage = [check_int("blocks", blocks, minimum=0, owner=what)] * n_stages
    return (per_stage, check_int("expansion", expansion, owner=what), check_int("group_width", group_width, owner=what))


@GENERATORS.register("resnet", aliases=("r3gan",))
class ResNetGenerator(nn.Module):
    """R3GAN-style generator (module docstring): (B, latent_dim) -> (B, C, S, S).

    Args:
        data_shape: ``(C, S, S)`` with S in 28, 32, 64, 128.
        latent_dim: dimension of z.
        width: channels of the full-resolution stage; each lower stage has twice as many.
        blocks: residual blocks per stage.
        expansion: channel expansion inside a residual branch (R3GAN: 2).
        group_width: channels per group of the grouped 3×3 convolution (R3GAN: 16).
        tanh: squash the output into [-1, 1] (statgan's image convention); R3GAN itself has none.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int,
        width: int = 8,
        blocks: Union[int, Sequence[int]] = 1,
        expansion: int = 2,
        group_width: int = 8,
        tanh: bool = True,
    ) -> None:
        super().__init__()
        what = "resnet generator"
        channels, size, base, widths = _geometry(what, data_shape, width)
        latent_dim = check_int("latent_dim", latent_dim, owner=what)
        per_stage, expansion, group_width = _check_block_params(what, blocks, len(widths), expansion, group_width)
        self.tanh = check_bool("tanh", tanh, owner=what)
        self.latent_dim, self.data_shape, self.base = latent_dim, (channels, size, size), base
        self.width, self.blocks, self.expansion, self.group_width = width, tuple(per_stage), expansion, group_width
        n_blocks = max(1, sum(per_stage))

        self.basis = nn.Parameter(torch.randn(widths[0], base, base))  # R3GAN: N(0, 1)
        self.modulation = msr_init(nn.Linear(latent_dim, widths[0], bias=False))
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        for k, c in enumerate(widths):
            layers: List[nn.Module] = []
            if k > 0:
                if widths[k - 1] != c:  # change channels at the lower resolution: 4× cheaper
                    layers.append(msr_init(nn.Conv2d(widths[k - 1], c, 1, bias=False)))
                layers.append(Resample(up=True))
            layers += [ResidualBlock(c, expansion, group_width, n_blocks, what) for _ in range(per_stage[k])]
            stages[f"stage{k}"] = nn.Sequential(*layers)
        self.stages = nn.Sequential(stages)
        self.output = msr_init(nn.Conv2d(widths[-1], channels, 1, bias=False))

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"resnet generator expects z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        x = self.basis[None] * self.modulation(z)[:, :, None, None]
        x = self.output(self.stages(x))
        return torch.tanh(x) if self.tanh else x

    def extra_repr(self) -> str:
        return (f"data_shape={self.data_shape}, latent_dim={self.latent_dim}, width={self.width}, blocks={self.blocks}, "
                f"expansion={self.expansion}, group_width={self.group_width}, tanh={self.tanh}")


@DISCRIMINATORS.register("resnet", aliases=("r3gan",))
class ResNetDiscriminator(nn.Module):
    """R3GAN-style discriminator (module docstring): (B, C, S, S) -> (B,) raw logits.

    Args:
        data_shape: ``(C, S, S)`` with S in 28, 32, 64, 128.
        width: channels of the full-resolution stage; each lower stage has twice as many.
        blocks: residual blocks per stage.
        expansion: channel expansion inside a residual branch (R3GAN: 2).
        group_width: channels per group of the grouped 3×3 convolution (R3GAN: 16).
        mbstd: append the minibatch-stddev channel before the final layers (off by default: it
            makes D(x) depend on the rest of the batch).
        mbstd_group: group size of the minibatch stddev (StyleGAN2: 4).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        width: int = 8,
        blocks: Union[int, Sequence[int]] = 1,
        expansion: int = 2,
        group_width: int = 8,
        mbstd: bool = False,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        what = "resnet discriminator"
        channels, size, base, widths = _geometry(what, data_shape, width)
        widths = widths[::-1]  # from full resolution down
        per_stage, expansion, group_width = _check_block_params(what, blocks, len(widths), expansion, group_width)
        self.mbstd = check_bool("mbstd", mbstd, owner=what)
        self.mbstd_group = check_int("mbstd_group", mbstd_group, owner=what)
        self.data_shape, self.base = (channels, size, size), base
        self.width, self.blocks, self.expansion, self.group_width = width, tuple(per_stage), expansion, group_width
        n_blocks = max(1, sum(per_stage))
        per_stage = per_stage[::-1]  # like ``widths``: from full resolution down

        self.input = msr_init(nn.Conv2d(channels, widths[0], 1, bias=False))
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        for k, c in enumerate(widths):
            layers: List[nn.Module] = [ResidualBlock(c, expansion, group_width, n_blocks, what) for _ in range(per_stage[k])]
            if k + 1 < len(widths):
                layers.append(Resample(up=False))
                if widths[k + 1] != c:  # change channels at the lower resolution: 4× cheaper
                    layers.append(msr_init(nn.Conv2d(c, widths[k + 1], 1, bias=False)))
            stages[f"stage{k}"] = nn.Sequential(*layers)
        self.stages = nn.Sequential(stages)
        final = widths[-1] + (1 if self.mbstd else 0)
        # R3GAN's "discriminative basis": one learned base×base filter per channel
        self.basis = msr_init(nn.Conv2d(final, final, base, groups=final, bias=False))
        self.output = msr_init(nn.Linear(final, 1, bias=True))

    def features(self, x: Tensor) -> Tensor:
        """(B, C0 [+1]): the representation the final linear layer reads (used by MMD-GAN)."""
        h = self.stages(self.input(x))
        if self.mbstd:
            h = minibatch_stddev(h, self.mbstd_group)
        return self.basis(h).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.features(x)).squeeze(1)

    def extra_repr(self) -> str:
        return (f"data_shape={self.data_shape}, width={self.width}, blocks={self.blocks}, expansion={self.expansion}, "
                f"group_width={self.group_width}, mbstd={self.mbstd}, mbstd_group={self.mbstd_group}")


__all__ = ["ResNetGenerator", "ResNetDiscriminator", "ResidualBlock", "Resample", "minibatch_stddev", "lowpass_kernel", "msr_init"]
