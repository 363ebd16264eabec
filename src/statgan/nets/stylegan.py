r"""A small StyleGAN2 (Karras, Laine, Aittala, Hellsten, Lehtinen & Aila, CVPR 2020, "Analyzing and
Improving the Image Quality of StyleGAN"; the mapping network, noise inputs, style mixing and
truncation of StyleGAN, Karras, Laine & Aila, CVPR 2019), sized for CPUs.

Supported images: square ``(C, S, S)`` with S in {28, 32, 64, 128}, any C >= 1 (1 or 3 in practice).

Generator, z → w → x::

    mapping     z → normalise (z / RMS(z)) → ``mapping_layers`` × [equalised linear, lrelu] → w   (lr × ``mapping_lr_mul``)
    synthesis   learned constant (C0, b, b) ~ N(0, 1)
                  → modconv 3×3 (w_0) → torgb (w_1)                                  at b × b
                  per ×2 stage k: upsample → modconv 3×3 (w_{2k-1}) → modconv 3×3 (w_{2k})
                                   → img = upsample(img) + torgb (w_{2k+1})       (skip outputs)
                  → tanh (statgan's [-1, 1] image convention; ``tanh=False`` for the raw sum)

so ``num_ws = 2 · n_up + 2`` styles (6 at 28 px, 8 at 32 px, 10 at 64 px); each torgb shares its
w index with the next stage's first convolution, as in StyleGAN2. The start is b = 4, except
**b = 7 at 28 px** (7 → 14 → 28, the geometry of the dcgan and resnet archs): a 4×4 start would
need a 32-px image cropped to 28, spending a quarter of the full-resolution work (where most of it
goes) on pixels that are thrown away, and making the border of every output a crop artefact.

Modulated convolution with demodulation (StyleGAN2 Sec. 2.2), for input channel i, output o:
``w'_oi = s_i · w_oi`` with ``s = A(w)`` (an equalised linear map, bias initialised to 1), then
``w''_oi = w'_oi / sqrt(Σ_i,k w'_oik² + 1e-8)``. It is computed in StyleGAN2's *non-fused* form,
``d_o · conv(x · s, w)``, which is the same function as a per-sample grouped convolution and
several times faster on CPUs (one ordinary convolution for the whole batch). Demodulation makes
the output of every output channel unit-variance for unit-variance, uncorrelated input.

Noise: after every modulated 3×3 convolution, ``x + strength_c · n`` with ``n`` one N(0, 1) value per
pixel shared by the channels and a learned per-channel strength (starting at 0). ``noise_mode``:
``"random"`` (fresh noise per call, from the global RNG: checkpointed, so resume is exact),
``"const"`` (one fixed noise image per layer, a persistent buffer drawn at construction) or
``"none"``. By default the generator uses ``"random"`` in train mode and ``eval_noise``
(``"const"``) in eval mode, so **G in eval mode is a deterministic function z → x**: the audit
(inversion, AIS/BDMC) needs exactly that, and metrics and sampling read the same function.

Equalised learning rate (ProGAN Sec. 4.1, StyleGAN2's code): every weight is stored as
``N(0, 1) / lr_mul`` and multiplied at run time by ``lr_mul / sqrt(fan_in)``, so its effective scale
is He's 1/sqrt(fan_in) whatever the layer, and Adam's per-parameter step size acts equally on every
layer; ``lr_mul`` = 0.01 in the mapping network slows it down 100× (StyleGAN). Biases are stored
divided by ``lr_mul`` and multiplied by it. Activations: leaky ReLU(0.2) times √2 (StyleGAN2's gain).

Resampling: the [1, 3, 3, 1] low-pass (bilinear) kernel of :class:`statgan.nets.resnet.Resample`.

Truncation and w̄: in train mode every ``mapping`` call (``update_avg`` by default) moves the
buffer ``w_avg`` towards the batch mean of w, ``w̄ ← β·w̄ + (1 − β)·mean(w)``, β = ``w_avg_beta`` =
0.995 (StyleGAN2). Being a registered buffer it is in every checkpoint (and copied into the EMA
generator, whose buffers follow G's). ``mapping(z, psi)`` returns ``w̄ + ψ(w − w̄)``.

Style mixing regularisation (StyleGAN Sec. 3.1): in train mode, with probability ``style_mixing``
a batch's ws are those of z from a crossover layer on, the ws of a second latent from there on
(one crossover drawn uniformly in 1 … num_ws − 1 per batch, from the global RNG, as in StyleGAN2-ADA's
loss). ``forward(z)`` is ``synthesis(mapping(z))`` with no truncation and, in eval mode, no mixing.

Discriminator (StyleGAN2's residual D, Fig. 7c, with the same equalised layers): fromRGB 1×1 →
per stage [conv 3×3 → downsample → conv 3×3 (channel change)] + [downsample → conv 1×1] skip,
summed × 1/√2 → minibatch stddev (group 4, one feature; :func:`statgan.nets.common.minibatch_stddev`,
on by default as in StyleGAN2 — note that D(x) then depends on the rest of the batch) → conv 3×3 →
linear → linear → one raw logit.

Widths: ``width`` channels at full resolution, doubled per halving up to ``max_width`` (both
networks). Defaults and measured cost: README / docs/quality.md (``benchmarks/stylegan_throughput.py``).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..runtime.validation import check_bool, check_choice, check_int, check_rate, check_real
from .common import DISCRIMINATORS, GENERATORS, LEAKY_SLOPE, minibatch_stddev
from .dcgan import dcgan_geometry
from .resnet import Resample

#: StyleGAN2's gain after leaky ReLU(0.2)
LRELU_GAIN = math.sqrt(2.0)
#: noise modes of the synthesis network
NOISE_MODES = ("random", "const", "none")


def lrelu(x: Tensor) -> Tensor:
    """Leaky ReLU(0.2) × √2 (StyleGAN2's ``bias_act`` gain for lrelu)."""
    return F.leaky_relu(x, LEAKY_SLOPE) * LRELU_GAIN


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight N(0, 1)/lr_mul, times lr_mul/√fan_in at run time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, lr_mul: float = 1.0,
                 bias_init: float = 0.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul, self.activation = lr_mul, activation

    def forward(self, x: Tensor) -> Tensor:
        b = None if self.bias is None else self.bias * self.lr_mul
        x = F.linear(x, self.weight * self.weight_gain, b)
        return lrelu(x) if self.activation else x

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, lr_mul={self.lr_mul:g}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate (stride 1, 'same' padding); optional bias + lrelu."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool = True, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)
        return lrelu(x) if self.activation else x


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution (module docstring): ``d_o · conv(x · s, w)``, s = A(w),
    d_o = 1/sqrt(Σ (s_i w_oik)² + 1e-8) with ``demodulate``; optional ×2 upsampling of the
    modulated input first. The style (B, w_dim) → (B, in_ch) affine map starts at bias 1."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True, up: bool = False) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate = demodulate
        self.up = Resample(up=True) if up else None

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w)  # (B, in)
        weight = self.weight
        if not self.demodulate:  # with demodulation any constant factor cancels
            styles = styles * self.weight_gain
        x = x * styles[:, :, None, None]
        if self.up is not None:
            x = self.up(x)
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        if self.demodulate:
            # Σ_{i,k} (s_i w_oik)² = Σ_i s_i² · Σ_k w_oik²: one (B, in) × (in, out) product
            d = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # (B, out)
            x = x * d[:, :, None, None]
        return x


class StyledLayer(nn.Module):
    """Modulated 3×3 convolution (optionally upsampling), noise with per-channel strength, bias, lrelu."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, demodulate=True, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(out_ch))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        # the fixed noise image of noise_mode="const": part of the model, so saved with it
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str) -> Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength[None, :, None, None]
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype)[None, None] * self.noise_strength[None, :, None, None]
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1×1 convolution to image channels, no demodulation (StyleGAN2), plus bias."""

    def __init__(self, in_ch: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


def _widths(what: str, data_shape: Sequence[int], width: int, max_width: int) -> Tuple[int, int, int, List[int]]:
    """(channels, size, base, channels per resolution from the lowest up)."""
    channels, size, base, n_up = dcgan_geometry(what, data_shape)
    width = check_int("width", width, owner=what)
    max_width = check_int("max_width", max_width, owner=what)
    if max_width < width:
        raise ConfigError(f"{what}: max_width={max_width} is below width={width}")
    return channels, size, base, [min(width * 2 ** (n_up - k), max_width) for k in range(n_up + 1)]


@GENERATORS.register("stylegan", aliases=("stylegan2",))
class StyleGANGenerator(nn.Module):
    """StyleGAN2-style generator (module docstring): (B, latent_dim) -> (B, C, S, S).

    Args:
        data_shape: ``(C, S, S)`` with S in 28, 32, 64, 128.
        latent_dim: dimension of z.
        width: channels at full resolution; doubled per halving up to ``max_width``.
        max_width: the cap on channels.
        w_dim: dimension of w (default: 64).
        mapping_layers: depth of the mapping network (StyleGAN: 8; 0 makes w = normalised z,
            which needs ``w_dim == latent_dim``).
        mapping_lr_mul: learning-rate multiplier of the mapping network (StyleGAN: 0.01).
        style_mixing: probability of style mixing in train mode (StyleGAN: 0.9; 0 = off).
        w_avg_beta: decay of the tracked average w (StyleGAN2: 0.995).
        eval_noise: noise mode in eval mode: ``const`` (default: G is a deterministic function of z),
            ``random`` or ``none``.
        tanh: squash the output into [-1, 1] (statgan's convention; StyleGAN2 itself has none).

    Attributes and methods: ``latent_dim``, ``data_shape``, ``w_dim``, ``num_ws``, ``w_avg`` (buffer),
    ``mapping(z, psi=1.0, update_avg=None) -> ws (B, num_ws, w_dim)``,
    ``synthesis(ws, noise_mode=None) -> x``, ``mix_styles(ws, ws2, crossover)``.
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int, width: int = 8, max_width: int = 32, w_dim: int = 64,
                 mapping_layers: int = 8, mapping_lr_mul: float = 0.01, style_mixing: float = 0.9,
                 w_avg_beta: float = 0.995, eval_noise: str = "const", tanh: bool = True) -> None:
        super().__init__()
        what = "stylegan generator"
        channels, size, base, widths = _widths(what, data_shape, width, max_width)
        self.latent_dim = check_int("latent_dim", latent_dim, owner=what)
        self.w_dim = check_int("w_dim", w_dim, owner=what)
        self.mapping_layers = check_int("mapping_layers", mapping_layers, minimum=0, owner=what)
        self.mapping_lr_mul = check_real("mapping_lr_mul", mapping_lr_mul, gt=0.0, owner=what)
        self.style_mixing = check_real("style_mixing", style_mixing, ge=0.0, owner=what)
        if self.style_mixing > 1.0:
            raise ConfigError(f"{what}: style_mixing={style_mixing!r} is a probability and must be in [0, 1]")
        self.w_avg_beta = check_rate("w_avg_beta", w_avg_beta, owner=what)
        self.eval_noise = check_choice("eval_noise", eval_noise, NOISE_MODES, owner=what)
        self.tanh = check_bool("tanh", tanh, owner=what)
        if self.mapping_layers == 0 and self.w_dim != self.latent_dim:
            raise ConfigError(f"{what}: mapping_layers=0 makes w the normalised z, so w_dim={self.w_dim} "
                              f"must equal latent_dim={self.latent_dim}")
        self.data_shape: Tuple[int, ...] = (channels, size, size)
        self.width, self.max_width, self.base = width, max_width, base
        n_up = len(widths) - 1
        self.num_ws = 2 * n_up + 2

        dims = [self.latent_dim] + [self.w_dim] * self.mapping_layers
        self.mapping_net = nn.Sequential(*[EqualLinear(dims[i], dims[i + 1], lr_mul=self.mapping_lr_mul, activation=True)
                                           for i in range(self.mapping_layers)])
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

        self.const = nn.Parameter(torch.randn(widths[0], base, base))
        self.layers = nn.ModuleList([StyledLayer(widths[0], widths[0], self.w_dim, base)])
        self.torgbs = nn.ModuleList([ToRGB(widths[0], channels, self.w_dim)])
        for k in range(1, n_up + 1):
            res = base * 2 ** k
            self.layers.append(StyledLayer(widths[k - 1], widths[k], self.w_dim, res, up=True))
            self.layers.append(StyledLayer(widths[k], widths[k], self.w_dim, res))
            self.torgbs.append(ToRGB(widths[k], channels, self.w_dim))
        self.upsample = Resample(up=True)

    # ---- z -> w --------------------------------------------------------------------------------
    def mapping(self, z: Tensor, psi: float = 1.0, update_avg: Optional[bool] = None) -> Tensor:
        """ws = (B, num_ws, w_dim), the same w broadcast to every layer, truncated towards ``w_avg``
        by ψ (w̄ + ψ(w − w̄); ψ = 1 none). ``update_avg`` (default: in train mode) moves ``w_avg``."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"stylegan generator expects z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # StyleGAN's normalisation of z
        w = self.mapping_net(x)
        if self.training if update_avg is None else update_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if psi != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, psi)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    @staticmethod
    def mix_styles(ws: Tensor, ws2: Tensor, crossover: int) -> Tensor:
        """Layers ``< crossover`` from ``ws``, layers ``>= crossover`` from ``ws2`` (both (B, num_ws, w_dim))."""
        idx = torch.arange(ws.shape[1], device=ws.device)[None, :, None]
        return torch.where(idx < crossover, ws, ws2)

    # ---- w -> x --------------------------------------------------------------------------------
    def synthesis(self, ws: Tensor, noise_mode: Optional[str] = None) -> Tensor:
        """The image of per-layer styles ``ws`` (B, num_ws, w_dim); ``noise_mode`` None = the
        mode's default (``random`` in train mode, ``eval_noise`` in eval mode)."""
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"stylegan synthesis expects ws of shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        mode = noise_mode or ("random" if self.training else self.eval_noise)
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], mode)
        img = self.torgbs[0](x, ws[:, 1])
        for k in range(1, len(self.torgbs)):
            x = self.layers[2 * k - 1](x, ws[:, 2 * k - 1], mode)
            x = self.layers[2 * k](x, ws[:, 2 * k], mode)
            img = self.upsample(img) + self.torgbs[k](x, ws[:, 2 * k + 1])
        return torch.tanh(img) if self.tanh else img

    def forward(self, z: Tensor) -> Tensor:
        ws = self.mapping(z)
        if self.training and self.style_mixing > 0:
            ws = self._style_mixing(z, ws)
        return self.synthesis(ws)

    def _style_mixing(self, z: Tensor, ws: Tensor) -> Tensor:
        """Style mixing regularisation (StyleGAN2-ADA's ``run_G``): one crossover per batch."""
        crossover = int(torch.randint(1, self.num_ws, ()).item())
        if torch.rand(()).item() >= self.style_mixing:
            return ws
        ws2 = self.mapping(torch.randn_like(z), update_avg=False)
        return self.mix_styles(ws, ws2, crossover)

    def extra_repr(self) -> str:
        return (f"data_shape={self.data_shape}, latent_dim={self.latent_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
                f"width={self.width}, max_width={self.max_width}, mapping_layers={self.mapping_layers}, "
                f"style_mixing={self.style_mixing:g}, eval_noise={self.eval_noise!r}, tanh={self.tanh}")


class DiscriminatorBlock(nn.Module):
    """StyleGAN2 residual D block: (conv3×3 → down → conv3×3) + (down → conv1×1), × 1/√2."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3, activation=True)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, activation=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)
        self.down = Resample(up=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.skip(self.down(x))
        x = self.conv1(self.down(self.conv0(x)))
        return (x + y) * (1.0 / math.sqrt(2.0))


@DISCRIMINATORS.register("stylegan", aliases=("stylegan2",))
class StyleGANDiscriminator(nn.Module):
    """StyleGAN2-style residual discriminator (module docstring): (B, C, S, S) -> (B,) raw logits.

    Args:
        data_shape: ``(C, S, S)`` with S in 28, 32, 64, 128.
        width: channels at full resolution; doubled per halving up to ``max_width``.
        max_width: the cap on channels.
        mbstd: the minibatch-stddev layer before the last convolution (on, as in StyleGAN2).
        mbstd_group: its group size (StyleGAN2: 4).
    """

    def __init__(self, data_shape: Sequence[int], width: int = 8, max_width: int = 32, mbstd: bool = True,
                 mbstd_group: int = 4) -> None:
        super().__init__()
        what = "stylegan discriminator"
        channels, size, base, widths = _widths(what, data_shape, width, max_width)
        widths = widths[::-1]  # from full resolution down
        self.mbstd = check_bool("mbstd", mbstd, owner=what)
        self.mbstd_group = check_int("mbstd_group", mbstd_group, owner=what)
        self.data_shape: Tuple[int, ...] = (channels, size, size)
        self.width, self.max_width, self.base = width, max_width, base
        self.from_rgb = EqualConv2d(channels, widths[0], 1, activation=True)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(widths[k], widths[k + 1]) for k in range(len(widths) - 1)])
        c = widths[-1]
        self.conv = EqualConv2d(c + (1 if self.mbstd else 0), c, 3, activation=True)
        self.fc = EqualLinear(c * base * base, c, activation=True)
        self.out = EqualLinear(c, 1)

    def features(self, x: Tensor) -> Tensor:
        """(B, C0): the representation the final linear layer reads (used by MMD-GAN)."""
        h = self.blocks(self.from_rgb(x))
        if self.mbstd:
            h = minibatch_stddev(h, self.mbstd_group)
        return self.fc(self.conv(h).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x)).squeeze(1)

    def extra_repr(self) -> str:
        return (f"data_shape={self.data_shape}, width={self.width}, max_width={self.max_width}, mbstd={self.mbstd}, "
                f"mbstd_group={self.mbstd_group}")


__all__ = ["StyleGANGenerator", "StyleGANDiscriminator", "ModulatedConv2d", "EqualLinear", "EqualConv2d", "NOISE_MODES"]
