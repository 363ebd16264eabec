"""Shared pieces of the network families: registries, parameter checks, init and norm helpers.

The two registries live here (not in ``statgan/nets/__init__.py``) so that ``dcgan.py`` and
``mlp.py`` can register themselves without a circular import; the package re-exports them.

Every check raises a one-line :class:`~statgan.errors.ConfigError` naming the network, the
parameter and the offending value, because these values come straight from user configs.
"""

from __future__ import annotations

from numbers import Integral
from typing import Iterable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import ConfigError
from ..registry import PLUGIN_GROUPS, Registry
from ..runtime.validation import check_choice

#: factories ``(data_shape, latent_dim, **params) -> nn.Module`` mapping (B, latent_dim) -> (B, *data_shape)
GENERATORS = Registry("generator", group=PLUGIN_GROUPS["generator"])
#: factories ``(data_shape, **params) -> nn.Module`` mapping (B, *data_shape) -> (B,) raw logits
DISCRIMINATORS = Registry("discriminator", group=PLUGIN_GROUPS["discriminator"])

#: normalisation choices shared by every family
NORMS: Tuple[str, ...] = ("batch", "none", "spectral")

#: slope of LeakyReLU everywhere (Radford et al. 2016 use 0.2 in the discriminator)
LEAKY_SLOPE = 0.2

#: standard deviation of the DCGAN weight initialisation (Radford et al. 2016, section 4)
INIT_STD = 0.02


# --------------------------------------------------------------------------------------------------
# parameter checks specific to networks (the general ones are statgan.runtime.validation's)
# --------------------------------------------------------------------------------------------------
def resolve_dropout_slots(
    what: str, slots: Optional[Sequence[int]], n_hidden: int, default: Sequence[int]
) -> Tuple[int, ...]:
    """Validate 1-based hidden-block indices; ``None`` means ``default``. Returned sorted, unique.

    Slots are validated even when the dropout rate is 0 so that a typo in a config is reported
    on the first run, not only when dropout is switched on later.
    """
    if slots is None:
        return tuple(sorted(default))
    if isinstance(slots, (str, bytes)) or not isinstance(slots, Iterable):
        raise ConfigError(f"{what}: dropout_slots={slots!r} must be a list of block indices in 1..{n_hidden}")
    out = []
    for s in slots:
        if isinstance(s, bool) or not isinstance(s, Integral) or not (1 <= s <= n_hidden):
            raise ConfigError(
                f"{what}: dropout slot {s!r} is out of range; this network has hidden blocks 1..{n_hidden}"
            )
        if int(s) in out:
            raise ConfigError(f"{what}: dropout slot {s!r} is listed twice in dropout_slots={list(slots)!r}")
        out.append(int(s))
    return tuple(sorted(out))


# --------------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------------
_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "elu")


def make_activation(what: str, name: str) -> nn.Module:
    """A fresh activation module. Never ``inplace``: the audit code may hook intermediate
    activations, and an in-place op downstream would silently overwrite what a hook captured."""
    name = check_choice("activation", name, _ACTIVATIONS, owner=what)
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "tanh":
        return nn.Tanh()
    return nn.ELU()


def apply_spectral_norm(layers: Iterable[nn.Module]) -> None:
    """Register ``torch.nn.utils.parametrizations.spectral_norm`` on each layer's ``weight``.

    The parametrization divides the weight by a power-iteration estimate of the largest singular
    value of the weight reshaped to a matrix (output dimension first; ``dim=1`` for transposed
    convolutions, torch's default), refreshing the estimate once per forward pass in train mode
    (Miyato et al. 2018). Call it *after* :func:`init_weights` so the power-iteration vectors that
    torch warms up at registration belong to the final weights.
    """
    for layer in layers:
        spectral_norm(layer)


_CONV_LIKE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _raw_weight(module: nn.Module) -> torch.Tensor:
    """The trainable weight tensor, looking through a parametrization (e.g. spectral norm)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original  # type: ignore[union-attr,return-value]
    return module.weight  # type: ignore[return-value]


@torch.no_grad()
def init_weights(module: nn.Module, std: float = INIT_STD) -> nn.Module:
    """DCGAN initialisation (Radford et al. 2016; the reference Torch/PyTorch code), in place.

    * (transposed) convolutions: weight ~ N(0, ``std``), bias (if any) = 0;
    * batch norm: weight ~ N(1, ``std``), bias = 0.

    Other modules (Linear in particular) are left untouched: the N(0, 0.02) scheme was tuned for
    the DCGAN convolutions and shrinks the signal of a deep narrow MLP, whose PyTorch default
    (Kaiming-uniform) init is better suited. Works on spectrally normalised layers too (it
    initialises the unnormalised weight and re-warms the power iteration). Returns ``module``.
    """
    for m in module.modules():
        if isinstance(m, _CONV_LIKE):
            nn.init.normal_(_raw_weight(m), 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            _rewarm_spectral_norm(m)
        elif isinstance(m, _BATCH_NORMS) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


def _rewarm_spectral_norm(m: nn.Module) -> None:
    """After re-initialising a spectrally normalised weight, redo torch's 15 warm-up power
    iterations so that the stored singular vectors match the new weight (as at registration)."""
    if not parametrize.is_parametrized(m, "weight"):
        return
    for p in m.parametrizations.weight:  # type: ignore[union-attr]
        if hasattr(p, "_power_method") and hasattr(p, "_reshape_weight_to_matrix"):
            p._power_method(p._reshape_weight_to_matrix(_raw_weight(m)), 15)


def minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """``x`` with one more channel: the std over groups of samples, averaged over C, H, W.

    Minibatch standard deviation (Karras et al. 2018, ProGAN; StyleGAN2's grouping): groups of
    ``group_size`` samples (samples i, i + B/G, …; G the largest divisor of the batch ≤
    ``group_size``) share one feature, the per-feature standard deviation over the group averaged
    over channels and pixels. Shared by every discriminator with an ``mbstd`` option.
    """
    n, _, h, w = x.shape
    g = min(group_size, n)
    while n % g:  # the largest group size that divides the batch
        g -= 1
    y = x.float().reshape(g, n // g, *x.shape[1:])
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n/g,)
    y = y.to(x.dtype).reshape(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


class MinibatchStddev(nn.Module):
    """:func:`minibatch_stddev` as a layer (for ``nn.Sequential`` discriminators)."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        return minibatch_stddev(x, self.group_size)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def has_w_space(module: nn.Module) -> bool:
    """Whether a generator has an intermediate latent w (StyleGAN): ``mapping``, ``synthesis``, ``num_ws``."""
    return all(callable(getattr(module, name, None)) for name in ("mapping", "synthesis")) and hasattr(module, "num_ws")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (spectral-norm buffers u, v are buffers, not parameters)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def feature_decoder(in_ch: int, channels: int, slope: float) -> nn.Module:
    """A discriminator's self-supervised decoder (FastGAN, Liu, Zhu, Song & Elgammal, ICLR 2021, Sec. 3.2):
    a 3×3 convolution to a quarter of the channels, 2× nearest upsampling, a 3×3 convolution to an
    eighth, each with a leaky ReLU, then a 3×3 convolution to ``channels`` and tanh -- an image at
    twice the features' resolution (28 px DCGAN: 7×7 features, a 14×14 image). FastGAN's decoders
    are four upsampling blocks (8×8 features to a 128×128 image); this one is kept narrow and
    shallow so that it costs about a third of the 28 px generator's forward pass, not more than
    the networks it regularises."""
    mid, low = max(in_ch // 4, 1), max(in_ch // 8, 1)
    return nn.Sequential(
        nn.Conv2d(in_ch, mid, 3, 1, 1), nn.LeakyReLU(slope), nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(mid, low, 3, 1, 1), nn.LeakyReLU(slope), nn.Conv2d(low, channels, 3, 1, 1), nn.Tanh())


__all__ = [
    "GENERATORS",
    "DISCRIMINATORS",
    "NORMS",
    "LEAKY_SLOPE",
    "INIT_STD",
    "resolve_dropout_slots",
    "feature_decoder",
    "make_activation",
    "apply_spectral_norm",
    "init_weights",
    "count_parameters",
    "minibatch_stddev",
    "MinibatchStddev",
    "has_w_space",
]
