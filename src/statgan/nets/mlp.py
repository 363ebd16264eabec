"""Fully connected generator and discriminator for toy/vector data (and, flattened, for images).

Layout (``depth`` hidden layers of ``hidden`` units each)::

    generator      z -> [Linear -> norm -> act -> Dropout] x depth -> Linear -> (tanh if output="tanh")
                     -> reshape to data_shape
    discriminator  flatten(x) -> [Linear -> norm -> act -> Dropout] x depth -> Linear(hidden, 1) -> (B,)

``norm``: ``"none"``, ``"batch"`` (BatchNorm1d after each hidden Linear, whose bias is then dropped as
redundant) or ``"spectral"`` (spectral norm on each hidden Linear of the generator and on *every*
Linear of the discriminator, including its output layer, so the discriminator is 1-Lipschitz).
Dropout (``nn.Dropout``, element-wise, rate ``dropout``) follows every hidden layer when the rate
is > 0 and is absent otherwise. ``depth = 0`` is allowed: the generator is then an affine map of a
Gaussian (a linear-Gaussian / probabilistic-PCA model) and the discriminator a logistic regression.

Weights keep PyTorch's default (Kaiming-uniform) initialisation: the DCGAN N(0, 0.02) scheme would
shrink activations by ~0.02 * sqrt(hidden) per layer here.

The generator's output is linear by default because toy data (mixtures of Gaussians, rings) is
unbounded; use ``output="tanh"`` for images scaled to [-1, 1].
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Sequence, Tuple

from torch import Tensor, nn

from ..runtime.validation import check_choice, check_int, check_rate, check_shape
from .common import (
    DISCRIMINATORS,
    GENERATORS,
    NORMS,
    apply_spectral_norm,
    make_activation,
)

_OUTPUTS = ("linear", "tanh")


def _hidden_stack(
    what: str, in_features: int, hidden: int, depth: int, activation: str, dropout: float, norm: str
) -> Tuple["OrderedDict[str, nn.Module]", List[nn.Linear]]:
    """``block1 .. block{depth}`` (Linear -> norm -> activation -> dropout) and their Linear layers."""
    blocks: "OrderedDict[str, nn.Module]" = OrderedDict()
    linears: List[nn.Linear] = []
    width = in_features
    for i in range(1, depth + 1):
        linear = nn.Linear(width, hidden, bias=norm != "batch")
        linears.append(linear)
        layers: List[nn.Module] = [linear]
        if norm == "batch":
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(make_activation(what, activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        blocks[f"block{i}"] = nn.Sequential(*layers)
        width = hidden
    return blocks, linears


def _check(
    what: str, hidden: int, depth: int, activation: str, dropout: float, norm: str
) -> Tuple[int, int, str, float, str]:
    hidden = check_int("hidden", hidden, owner=what)
    depth = check_int("depth", depth, minimum=0, owner=what)
    activation = check_choice("activation", activation, ("relu", "leaky_relu", "tanh", "elu"), owner=what)
    dropout = check_rate("dropout", dropout, owner=what)
    norm = check_choice("norm", norm, NORMS, owner=what)
    return hidden, depth, activation, dropout, norm


@GENERATORS.register("mlp")
class MLPGenerator(nn.Module):
    """MLP generator: (B, latent_dim) -> (B, *data_shape).

    Args:
        data_shape: any shape, e.g. ``(2,)`` for 2-D toy data or ``(1, 28, 28)`` for MNIST.
        latent_dim: dimension of z.
        hidden: units per hidden layer.
        depth: number of hidden layers (>= 0).
        activation: ``"relu"``, ``"leaky_relu"`` (slope 0.2), ``"tanh"`` or ``"elu"``.
        dropout: rate of ``nn.Dropout`` after every hidden layer; 0 inserts nothing.
        norm: ``"none"``, ``"batch"`` or ``"spectral"`` (hidden layers only).
        output: ``"linear"`` (unbounded, for toy data) or ``"tanh"`` (images in [-1, 1]).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int,
        hidden: int = 128,
        depth: int = 3,
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
        output: str = "linear",
    ) -> None:
        super().__init__()
        what = "mlp generator"
        self.data_shape: Tuple[int, ...] = check_shape("data_shape", data_shape, owner=what)
        self.latent_dim = check_int("latent_dim", latent_dim, owner=what)
        hidden, depth, activation, dropout, norm = _check(what, hidden, depth, activation, dropout, norm)
        output = check_choice("output", output, _OUTPUTS, owner=what)
        self.hidden, self.depth, self.activation = hidden, depth, activation
        self.dropout, self.norm, self.output = dropout, norm, output
        self.n_hidden_blocks = depth

        blocks, linears = _hidden_stack(what, self.latent_dim, hidden, depth, activation, dropout, norm)
        out_features = math.prod(self.data_shape)
        head: List[nn.Module] = [nn.Linear(hidden if depth else self.latent_dim, out_features)]
        if output == "tanh":
            head.append(nn.Tanh())
        blocks["output"] = nn.Sequential(*head)
        self.net = nn.Sequential(blocks)
        if norm == "spectral":
            apply_spectral_norm(linears)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.data_shape)

    def extra_repr(self) -> str:
        return (
            f"data_shape={self.data_shape}, latent_dim={self.latent_dim}, hidden={self.hidden}, "
            f"depth={self.depth}, activation={self.activation!r}, dropout={self.dropout}, "
            f"norm={self.norm!r}, output={self.output!r}"
        )


@DISCRIMINATORS.register("mlp")
class MLPDiscriminator(nn.Module):
    """MLP discriminator: (B, *data_shape) -> (B,) raw logits (no sigmoid; read as log p_data/p_g).

    Args:
        data_shape: any shape; inputs are flattened.
        hidden, depth, dropout: as for :class:`MLPGenerator`.
        activation: default ``"leaky_relu"`` (slope 0.2), the usual discriminator choice.
        norm: ``"none"``, ``"batch"`` (hidden layers) or ``"spectral"`` (all layers).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        hidden: int = 128,
        depth: int = 3,
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        norm: str = "none",
    ) -> None:
        super().__init__()
        what = "mlp discriminator"
        self.data_shape: Tuple[int, ...] = check_shape("data_shape", data_shape, owner=what)
        hidden, depth, activation, dropout, norm = _check(what, hidden, depth, activation, dropout, norm)
        self.hidden, self.depth, self.activation = hidden, depth, activation
        self.dropout, self.norm = dropout, norm
        self.n_hidden_blocks = depth

        in_features = math.prod(self.data_shape)
        blocks, linears = _hidden_stack(what, in_features, hidden, depth, activation, dropout, norm)
        final = nn.Linear(hidden if depth else in_features, 1)
        blocks["output"] = final
        self.net = nn.Sequential(blocks)
        if norm == "spectral":
            apply_spectral_norm(linears + [final])

    def features(self, x: Tensor) -> Tensor:
        """Last hidden layer's activations (B, hidden); the input itself when depth == 0."""
        return self.net[:-1](x.flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)

    def extra_repr(self) -> str:
        return (
            f"data_shape={self.data_shape}, hidden={self.hidden}, depth={self.depth}, "
            f"activation={self.activation!r}, dropout={self.dropout}, norm={self.norm!r}"
        )


__all__ = ["MLPGenerator", "MLPDiscriminator"]
