"""Generator and discriminator networks, registered by architecture name ("dcgan", "mlp", "resnet", "stylegan").

::

    G = build_generator(arch, data_shape, latent_dim, **params)   # (B, latent_dim) -> (B, *data_shape)
    D = build_discriminator(arch, data_shape, **params)           # (B, *data_shape) -> (B,) raw logits

Both go through :meth:`statgan.registry.Registry.build`, so an unknown ``arch`` or an unknown or
invalid parameter raises a one-line :class:`~statgan.errors.ConfigError`. Every generator exposes
``latent_dim`` and ``data_shape``; every discriminator exposes ``data_shape`` and returns raw
logits (no sigmoid), read by the audit code as an estimate of log p_data(x) / p_g(x).

Dropout layers, when configured, are ``nn.Dropout2d`` (DCGAN) or ``nn.Dropout`` (MLP) modules, so
``model.eval()`` switches them off and MC-dropout code can switch them back on one by one.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from .common import DISCRIMINATORS, GENERATORS, count_parameters, has_w_space, init_weights
from . import dcgan, mlp  # noqa: E402,F401  (importing registers the architectures)
from . import resnet  # noqa: E402,F401  (registers resnet)
from . import stylegan  # noqa: E402,F401  (registers stylegan)
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp import MLPDiscriminator, MLPGenerator
from .resnet import ResNetDiscriminator, ResNetGenerator
from .stylegan import StyleGANDiscriminator, StyleGANGenerator


def build_generator(arch: str, data_shape: Sequence[int], latent_dim: int, **params: Any) -> nn.Module:
    """Generator ``arch`` mapping (B, latent_dim) -> (B, *data_shape); ConfigError on bad input."""
    return GENERATORS.build(arch, data_shape, latent_dim, **params)


def build_discriminator(arch: str, data_shape: Sequence[int], **params: Any) -> nn.Module:
    """Discriminator ``arch`` mapping (B, *data_shape) -> (B,) raw logits; ConfigError on bad input."""
    return DISCRIMINATORS.build(arch, data_shape, **params)


__all__ = [
    "GENERATORS",
    "DISCRIMINATORS",
    "build_generator",
    "build_discriminator",
    "init_weights",
    "count_parameters",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "MLPGenerator",
    "MLPDiscriminator",
    "ResNetGenerator",
    "ResNetDiscriminator",
    "StyleGANGenerator",
    "StyleGANDiscriminator",
    "has_w_space",
]
