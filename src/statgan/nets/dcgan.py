"""DCGAN generator and discriminator (Radford, Metz & Chintala, ICLR 2016, "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial Networks").

Supported images: square, ``data_shape = (C, S, S)`` with S in {28, 32, 64, 128} and any C >= 1
(1 or 3 in practice). The spatial pyramid starts from ``base`` = 7 for 28 px and 4 otherwise and
doubles ``n_up = log2(S / base)`` times, so 64 px is exactly the classic architecture:

    generator      z(100) -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64xC (tanh)
    discriminator  64x64xC -> 32x32x64 -> 16x16x128 -> 8x8x256 -> 4x4x512 -> 1 (4x4 conv, raw logit)

Hidden blocks
-------------
A *hidden block* is one convolution followed by its (optional) normalisation and activation, i.e.
every convolution except the generator's output convolution (-> C channels, tanh) and the
discriminator's final 1-channel convolution (-> logit). Both networks have ``n_up`` hidden blocks,
numbered 1..n_up **from the network's input**:

    generator:      block 1 is the projection z -> base x base, block n_up outputs S/2 x S/2;
    discriminator:  block 1 is the first S -> S/2 convolution (no batch norm, as in DCGAN),
                    block n_up outputs base x base.

``dropout_slots`` refers to these indices; an ``nn.Dropout2d(dropout)`` (whole-channel dropout) is
appended *after the activation* of each listed block. Default slots (``dropout_slots=None``) are
the middle blocks ``2 .. max(2, n_up - 1)``:

    ====  =====  ======================  =========================================
    size  n_up   default slots           generator / discriminator resolution after
    ====  =====  ======================  =========================================
     28     2    (2,)                    G 14x14 ; D 7x7
     32     3    (2,)                    G 8x8   ; D 8x8
     64     4    (2, 3)                  G 8x8, 16x16 ; D 16x16, 8x8   (reference)
    128     5    (2, 3, 4)               G 8..32 ; D 32..8             (reference)
    ====  =====  ======================  =========================================

i.e. every hidden block except the first and the last; with only two hidden blocks (28 px) that
set is empty and the second block is used so that dropout is never silently a no-op.

Base convolutions
-----------------
``base_convs`` = k > 0 appends k 3×3 stride-1 convolutions (same channels, each with the block's
normalisation and activation) to the hidden block at the *base* resolution (7×7 for 28 px, 4×4
otherwise): the generator's block 1, after the projection of z; the discriminator's block n_up,
before the final convolution. They add depth where it is cheapest and where the networks have
least of it: the discriminator's final convolution reads its base-resolution features linearly, so
with k = 0 every nonlinear feature of a 28 px discriminator sees a 10×10 patch only (two 4×4
stride-2 convolutions); one 3×3 layer at 7×7 widens that to 18×18. With k = 0 (the default) the
networks, and their initial weights for a given seed, are exactly the DCGAN ones.

Biases: a convolution has a bias iff no BatchNorm follows it (BatchNorm subtracts the channel mean,
making a bias redundant). With ``norm="batch"`` that leaves biases only on the generator's output
convolution, the discriminator's first convolution and its final convolution; the reference
PyTorch/Torch code drops those three too (see ``tests/test_nets.py`` for the exact counts).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..runtime.validation import check_bool, check_choice, check_int, check_rate, check_shape
from .common import (
    DISCRIMINATORS,
    GENERATORS,
    LEAKY_SLOPE,
    NORMS,
    MinibatchStddev,
    apply_spectral_norm,
    feature_decoder,
    init_weights,
    resolve_dropout_slots,
)
from .growing import Growing, downsample, from_rgb_head, rgb_head, upsample

#: supported square image sizes
DCGAN_SIZES: Tuple[int, ...] = (28, 32, 64, 128)


def dcgan_geometry(what: str, data_shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """``(channels, size, base, n_up)`` for a ``(C, S, S)`` image shape; ConfigError otherwise."""
    shape = check_shape("data_shape", data_shape, owner=what)
    if len(shape) != 3:
        raise ConfigError(f"{what}: data_shape={shape!r} must be (channels, height, width)")
    channels, height, width = shape
    if height != width:
        raise ConfigError(f"{what}: image size {height}x{width} is not square; DCGAN needs height == width")
    if height not in DCGAN_SIZES:
        raise ConfigError(
            f"{what}: image size {height} is not supported; allowed sizes: {', '.join(map(str, DCGAN_SIZES))}"
        )
    base = 7 if height == 28 else 4
    n_up = int(round(math.log2(height / base)))
    return channels, height, base, n_up


def default_dropout_slots(n_hidden: int) -> Tuple[int, ...]:
    """The middle hidden blocks ``2 .. max(2, n_hidden - 1)`` (see the module docstring)."""
    return tuple(range(2, max(2, n_hidden - 1) + 1))


def _check_base_convs(what: str, base_convs: int, progressive: bool) -> int:
    base_convs = check_int("base_convs", base_convs, minimum=0, owner=what)
    if base_convs and progressive:
        raise ConfigError(f"{what}: base_convs={base_convs!r} with progressive=True is not supported "
                          f"(the growing networks enter and leave at the base block); use one of them")
    return base_convs


def _base_layers(channels: int, n: int, bias: bool, norm_layer: Optional[type], activation: nn.Module,
                 convs: List[nn.Module]) -> List[nn.Module]:
    """``n`` times: a 3×3 stride-1 convolution ``channels -> channels`` (appended to ``convs``, the
    list spectral norm is applied to), its normalisation if any, ``activation``."""
    layers: List[nn.Module] = []
    for _ in range(n):
        conv = nn.Conv2d(channels, channels, 3, 1, 1, bias=bias)
        convs.append(conv)
        layers.append(conv)
        if norm_layer is not None:
            layers.append(norm_layer(channels))
        layers.append(activation)
    return layers


def _check_common(
    what: str, width: int, norm: str, dropout: float, dropout_slots: Optional[Sequence[int]], n_hidden: int
) -> Tuple[int, str, float, Tuple[int, ...]]:
    width = check_int("width", width, owner=what)
    norm = check_choice("norm", norm, NORMS, owner=what)
    dropout = check_rate("dropout", dropout, owner=what)
    slots = resolve_dropout_slots(what, dropout_slots, n_hidden, default_dropout_slots(n_hidden))
    if dropout > 0 and not slots:
        raise ConfigError(f"{what}: dropout={dropout!r} but dropout_slots is empty; set dropout=0 to disable it")
    return width, norm, dropout, slots


@GENERATORS.register("dcgan")
class DCGANGenerator(Growing, nn.Module):
    """DCGAN generator (Radford et al. 2016): (B, latent_dim) -> (B, C, S, S) in [-1, 1].

    Args:
        data_shape: ``(C, S, S)`` with S in 28, 32, 64, 128.
        latent_dim: dimension of z.
        width: ``ngf``; hidden block ``i`` (1-based from z) has ``width * 2**(n_up - i)`` channels.
        norm: ``"batch"`` (BatchNorm2d after each hidden convolution, the DCGAN choice),
            ``"none"``, or ``"spectral"`` (spectral norm on each hidden convolution's weight; the
            output convolution stays unnormalised so the tanh range is not constrained).
        dropout: rate p of ``nn.Dropout2d`` after the blocks in ``dropout_slots``; 0 inserts nothing.
        dropout_slots: 1-based hidden-block indices (module docstring); None = the defaults.
        progressive: add an image head (1×1 convolution, tanh) after every hidden block but the
            last, so that the network can grow (:mod:`statgan.nets.growing`; the schedule is
            ``regularizers.grow``). At full growth the output is the plain network's.
        base_convs: 3×3 convolutions added to block 1, after the projection (module docstring).

    Attributes: ``latent_dim``, ``data_shape``, ``n_hidden_blocks``, ``dropout_slots`` (the blocks
    that carry a Dropout2d; empty when dropout == 0), ``net`` (``nn.Sequential`` with children
    ``block1 .. block{n}`` and ``output``); with ``progressive``, ``to_rgb`` (the heads at the
    resolutions ``resolutions[:-1]``) and the ``growth`` buffer.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int,
        width: int = 64,
        norm: str = "batch",
        dropout: float = 0.0,
        dropout_slots: Optional[Sequence[int]] = None,
        progressive: bool = False,
        base_convs: int = 0,
    ) -> None:
        super().__init__()
        what = "dcgan generator"
        self.progressive = check_bool("progressive", progressive, owner=what)
        self.base_convs = _check_base_convs(what, base_convs, self.progressive)
        channels, size, base, n_up = dcgan_geometry(what, data_shape)
        latent_dim = check_int("latent_dim", latent_dim, owner=what)
        width, norm, dropout, slots = _check_common(what, width, norm, dropout, dropout_slots, n_up)

        self.latent_dim = latent_dim
        self.data_shape: Tuple[int, ...] = (channels, size, size)
        self.n_hidden_blocks = n_up
        self.dropout_slots = slots if dropout > 0 else ()
        self.norm, self.width, self.dropout = norm, width, dropout

        blocks: "OrderedDict[str, nn.Module]" = OrderedDict()
        spectral: List[nn.Module] = []
        in_ch = latent_dim
        for i in range(1, n_up + 1):
            out_ch = width * 2 ** (n_up - i)
            if i == 1:  # project the 1x1 "image" z to base x base
                conv = nn.ConvTranspose2d(in_ch, out_ch, base, 1, 0, bias=norm != "batch")
            else:  # 2x upsampling
                conv = nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=norm != "batch")
            layers: List[nn.Module] = [conv]
            if norm == "batch":
                layers.append(nn.BatchNorm2d(out_ch))
            elif norm == "spectral":
                spectral.append(conv)
            layers.append(nn.ReLU())
            if i == 1:
                layers += _base_layers(out_ch, self.base_convs, norm != "batch", nn.BatchNorm2d if norm == "batch" else None,
                                       nn.ReLU(), spectral if norm == "spectral" else [])
            if dropout > 0 and i in slots:
                layers.append(nn.Dropout2d(dropout))
            blocks[f"block{i}"] = nn.Sequential(*layers)
            in_ch = out_ch
        # no norm on the output layer (Radford et al.: avoids sample oscillation); tanh -> [-1, 1]
        blocks["output"] = nn.Sequential(nn.ConvTranspose2d(in_ch, channels, 4, 2, 1, bias=True), nn.Tanh())
        self.net = nn.Sequential(blocks)

        init_weights(self)
        apply_spectral_norm(spectral)  # after init, so torch's warm-up iterations see final weights
        if self.progressive:
            # built and initialised after the plain network, so that its weights do not depend on
            # the option; the head at resolution index k reads block k+1's output
            self._init_growth(n_up, tuple(base * 2**k for k in range(n_up + 1)))
            self.to_rgb = nn.ModuleList(rgb_head(width * 2 ** (n_up - 1 - k), channels) for k in range(n_up))
            init_weights(self.to_rgb)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"dcgan generator expects z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        x = z.reshape(z.shape[0], self.latent_dim, 1, 1)
        if not self.progressive:
            return self.net(x)
        k, alpha = self.growth_now()
        n = self.n_hidden_blocks
        if k == n and alpha == 0.0:
            return self.net(x)
        hidden = []  # hidden[i]: the features at resolution index i (block i+1's output)
        for i in range(1, min(k, n - 1) + 2):
            x = self.net[i - 1](x)
            hidden.append(x)
        image = self._image(k, hidden)
        if alpha > 0.0:  # fade the new resolution in over the previous one's image, repeated 2x
            image = torch.lerp(upsample(self._image(k - 1, hidden), 2), image, alpha)
        return upsample(image, 2 ** (n - k))

    def _image(self, k: int, hidden: List[Tensor]) -> Tensor:
        """The image at resolution index ``k`` from the hidden features (the full-size output at n)."""
        return self.net.output(hidden[-1]) if k == self.n_hidden_blocks else self.to_rgb[k](hidden[k])

    def extra_repr(self) -> str:
        return (
            f"data_shape={self.data_shape}, latent_dim={self.latent_dim}, width={self.width}, "
            f"norm={self.norm!r}, dropout={self.dropout}, dropout_slots={self.dropout_slots}"
        ) + (", progressive=True" if self.progressive else "") + (f", base_convs={self.base_convs}" if self.base_convs else "")


@DISCRIMINATORS.register("dcgan")
class DCGANDiscriminator(Growing, nn.Module):
    """DCGAN discriminator (Radford et al. 2016): (B, C, S, S) -> (B,) raw logits.

    The output is *not* passed through a sigmoid: at the optimum of the standard GAN loss the logit
    estimates log p_data(x) / p_g(x), which the audit code reads directly.

    Args:
        data_shape: ``(C, S, S)`` with S in 28, 32, 64, 128.
        width: ``ndf``; hidden block ``i`` (1-based from the image) has ``width * 2**(i - 1)`` channels.
        norm: ``"batch"`` (BatchNorm2d on hidden blocks 2..n, none on the input block, as DCGAN),
            ``"none"``, or ``"spectral"`` (spectral norm on *every* convolution including the first
            and the final one, as Miyato et al. 2018: the Lipschitz bound needs all layers).
        dropout: rate p of ``nn.Dropout2d`` after the blocks in ``dropout_slots``; 0 inserts nothing.
        dropout_slots: 1-based hidden-block indices (module docstring); None = the defaults.
        mbstd: append the minibatch-stddev channel (:func:`statgan.nets.common.minibatch_stddev`,
            Karras et al. 2018) before the final convolution, a child ``mbstd`` of ``net``. Off by
            default: with it D(x) depends on the rest of the batch, which breaks the per-sample
            reading of D as a log density ratio that the audit code uses.
        mbstd_group: its group size (StyleGAN2: 4).
        progressive: add an image entry (1×1 convolution, leaky ReLU) at every resolution below the
            full one, so that the network can grow (:mod:`statgan.nets.growing`); the input stays
            full-size and is average-pooled to the working resolution. At full growth the output
            is the plain network's.
        decoder: add a small decoder of the features before the final convolution
            (:func:`statgan.nets.common.feature_decoder`), read by :meth:`reconstruction` for
            FastGAN's self-supervised loss (``regularizers.recon``); the logit does not use it.
        base_convs: 3×3 convolutions added to block n_up, before the final convolution (module docstring).

    Attributes: ``data_shape``, ``n_hidden_blocks``, ``dropout_slots`` (the blocks that carry a
    Dropout2d; empty when dropout == 0), ``net`` (``nn.Sequential`` with children
    ``block1 .. block{n}``, [``mbstd``] and ``output``).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        width: int = 64,
        norm: str = "batch",
        dropout: float = 0.0,
        dropout_slots: Optional[Sequence[int]] = None,
        mbstd: bool = False,
        mbstd_group: int = 4,
        progressive: bool = False,
        decoder: bool = False,
        base_convs: int = 0,
    ) -> None:
        super().__init__()
        what = "dcgan discriminator"
        self.progressive = check_bool("progressive", progressive, owner=what)
        self.base_convs = _check_base_convs(what, base_convs, self.progressive)
        channels, size, base, n_up = dcgan_geometry(what, data_shape)
        width, norm, dropout, slots = _check_common(what, width, norm, dropout, dropout_slots, n_up)
        self.mbstd = check_bool("mbstd", mbstd, owner=what)
        self.mbstd_group = check_int("mbstd_group", mbstd_group, owner=what)

        self.data_shape: Tuple[int, ...] = (channels, size, size)
        self.n_hidden_blocks = n_up
        self.dropout_slots = slots if dropout > 0 else ()
        self.norm, self.width, self.dropout = norm, width, dropout

        blocks: "OrderedDict[str, nn.Module]" = OrderedDict()
        convs: List[nn.Module] = []
        in_ch = channels
        for i in range(1, n_up + 1):
            out_ch = width * 2 ** (i - 1)
            batch_norm = norm == "batch" and i > 1  # never on the input block (Radford et al.)
            conv = nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=not batch_norm)
            convs.append(conv)
            layers: List[nn.Module] = [conv]
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
            if i == n_up:
                layers += _base_layers(out_ch, self.base_convs, not batch_norm, nn.BatchNorm2d if batch_norm else None,
                                       nn.LeakyReLU(LEAKY_SLOPE), convs)
            if dropout > 0 and i in slots:
                layers.append(nn.Dropout2d(dropout))
            blocks[f"block{i}"] = nn.Sequential(*layers)
            in_ch = out_ch
        if self.mbstd:
            blocks["mbstd"] = MinibatchStddev(self.mbstd_group)
            in_ch += 1
        final = nn.Conv2d(in_ch, 1, base, 1, 0, bias=True)  # base x base -> 1x1 logit
        convs.append(final)
        blocks["output"] = final
        self.net = nn.Sequential(blocks)

        init_weights(self)
        if norm == "spectral":
            apply_spectral_norm(convs)
        if self.progressive:
            # after the plain network (its weights do not depend on the option); the entry at
            # resolution index k feeds block n_up - k + 1 (at k = 0 the final convolution), whose
            # input has width * 2**(n_up - 1 - k) channels
            self._init_growth(n_up, tuple(base * 2**k for k in range(n_up + 1)))
            self.from_rgb = nn.ModuleList(from_rgb_head(channels, width * 2 ** (n_up - 1 - k), LEAKY_SLOPE)
                                          for k in range(n_up))
            init_weights(self.from_rgb)
        if check_bool("decoder", decoder, owner=what):
            # after the plain network, so that its weights do not depend on the option
            self.decoder = feature_decoder(width * 2 ** (n_up - 1), channels, LEAKY_SLOPE)
            init_weights(self.decoder)
        else:
            self.decoder = None
        self._recent: List[Tuple[Tensor, Tensor]] = []  # (input, features) of the last forward passes

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations, flattened to (B, F): the learned representation that
        kernel objectives (MMD-GAN) compare; ``forward`` is a linear read-out of them."""
        return self._body(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        h = self._body(x)
        if self.decoder is not None:
            # kept for reconstruction(x) of the same tensor: the self-supervised loss then reuses
            # this forward pass (one D pass on the real batch, as in FastGAN) instead of a second one
            self._recent = [(x, h), *self._recent[:1]]
        return self.net.output(h).flatten(1).squeeze(1)

    def reconstruction(self, x: Tensor) -> Tensor:
        """The decoder's image from the features of ``x`` before the final convolution (without the
        minibatch-stddev channel), at twice their resolution (28 px: a 14×14 image). The features
        of one of the last two inputs of :meth:`forward` are reused when ``x`` is that very tensor
        (the same weights and dropout masks as the logit it produced)."""
        if self.decoder is None:
            raise ValueError("this discriminator has no decoder; build it with decoder=True")
        h = next((feats for seen, feats in self._recent if seen is x), None)
        if h is None:
            h = self._body(x)
        return self.decoder(h[:, :-1] if self.mbstd else h)

    def _body(self, x: Tensor) -> Tensor:
        """Everything before the final convolution, at the current growth."""
        n = self.n_hidden_blocks
        k, alpha = self.growth_now() if self.progressive else (n, 0.0)
        if k == n and alpha == 0.0:
            return self.net[:-1](x)
        x = downsample(x, 2 ** (n - k))
        h = x if k == n else self.from_rgb[k](x)
        first = n - k + 1  # the hidden block that reads resolution index k
        if k > 0:
            h = self.net[first - 1](h)
            if alpha > 0.0:  # fade the new resolution in over the previous one's entry
                h = torch.lerp(self.from_rgb[k - 1](downsample(x, 2)), h, alpha)
            first += 1
        for j in range(first, n + 1):
            h = self.net[j - 1](h)
        return self.net.mbstd(h) if self.mbstd else h

    def extra_repr(self) -> str:
        return (
            f"data_shape={self.data_shape}, width={self.width}, norm={self.norm!r}, "
            f"dropout={self.dropout}, dropout_slots={self.dropout_slots}"
        ) + (f", mbstd_group={self.mbstd_group}" if self.mbstd else "") + (", progressive=True" if self.progressive else "") + (
            ", decoder=True" if self.decoder is not None else "") + (f", base_convs={self.base_convs}" if self.base_convs else "")


__all__ = ["DCGAN_SIZES", "DCGANGenerator", "DCGANDiscriminator", "dcgan_geometry", "default_dropout_slots"]
