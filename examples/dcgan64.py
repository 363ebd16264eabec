"""A generator "trained elsewhere", for docs/audit.md's worked example: the PyTorch DCGAN tutorial's
64x64 RGB generator (https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html), which takes
latents of shape (B, 100, 1, 1) and returns images on [-1, 1] (a Tanh), with BatchNorm.

statgan reads it as ``examples/dcgan64.py:generator`` (a function with no arguments that returns
the network) with ``--latent-shape 100,1,1``::

    statgan sample examples/dcgan64.py:generator --latent-shape 100,1,1 -n 64 --out dcgan64.png
    statgan audit examples/dcgan64.py:generator --latent-shape 100,1,1 --quick

Your own generator file looks the same: build the network, load its weights (a safetensors file, or
``torch.load(path, weights_only=True)``), return it. Here the weights are a fixed random draw, so
the audit has a network of the real size to measure (set ``STATGAN_DCGAN64_WEIGHTS`` to a
safetensors file of the tutorial's state_dict to audit trained weights).
"""

from __future__ import annotations

import os

import torch
from torch import nn

#: the tutorial's sizes: latent nz, generator width ngf, channels nc
NZ, NGF, NC = 100, 64, 3


class Generator(nn.Module):
    """The tutorial's generator: (B, nz, 1, 1) -> 4x4 -> 8x8 -> 16x16 -> 32x32 -> (B, nc, 64, 64)."""

    def __init__(self, nz: int = NZ, ngf: int = NGF, nc: int = NC) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def _tutorial_init(m: nn.Module) -> None:
    """The tutorial's weights_init: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    if isinstance(m, nn.ConvTranspose2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _batchnorm_statistics(net: Generator, batches: int = 8, size: int = 64) -> None:
    """Set BatchNorm's running statistics to the activations' own, as training leaves them (with the
    initial ones, mean 0 and variance 1, the eval-mode network would map every z to nearly flat grey)."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            net(torch.randn(size, NZ, 1, 1))
    net.eval()


def generator() -> nn.Module:
    """The network with its weights: ``STATGAN_DCGAN64_WEIGHTS`` (a safetensors state_dict) if set,
    else the tutorial's initialisation drawn with seed 0 and BatchNorm statistics measured on 512
    latents (the caller's random state is left alone)."""
    path = os.environ.get("STATGAN_DCGAN64_WEIGHTS")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = Generator()
        net.apply(_tutorial_init)
        _batchnorm_statistics(net)
    if path:
        from safetensors.torch import load_file

        net.load_state_dict(load_file(path))
    return net
