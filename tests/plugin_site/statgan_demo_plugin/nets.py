"""A network plugin registers a generator and a discriminator under one name, as statgan's own do."""

from __future__ import annotations

from statgan.nets.common import DISCRIMINATORS, GENERATORS
from statgan.nets.mlp import MLPDiscriminator, MLPGenerator


@GENERATORS.register("demo-mlp")
class DemoGenerator(MLPGenerator):
    """An MLP generator with a tanh output (images in [-1, 1])."""

    def __init__(self, data_shape, latent_dim, hidden: int = 32, depth: int = 1) -> None:
        super().__init__(data_shape, latent_dim, hidden=hidden, depth=depth, output="tanh")


@DISCRIMINATORS.register("demo-mlp")
class DemoDiscriminator(MLPDiscriminator):
    """An MLP discriminator."""

    def __init__(self, data_shape, hidden: int = 32, depth: int = 1) -> None:
        super().__init__(data_shape, hidden=hidden, depth=depth)
