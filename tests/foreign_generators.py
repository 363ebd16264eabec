"""Generators "trained elsewhere" for the tests of statgan.generator_source: plain nn.Modules that
know nothing of statgan, in the shapes other code bases use."""

import torch
from torch import nn


class TutorialDCGAN(nn.Module):
    """The PyTorch DCGAN tutorial's generator (latent (B, nz, 1, 1) -> 3x64x64 on [-1, 1], BatchNorm,
    ReLU, Tanh), at width ``ngf`` (the tutorial: nz=100, ngf=64; narrow here so tests are fast)."""

    def __init__(self, nz: int = 100, ngf: int = 4, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def make_dcgan64() -> nn.Module:
    """A factory, as a user's code base has one: builds the network and sets its weights (seeded)."""
    with torch.random.fork_rng():  # the test's "trained weights", leaving the caller's RNG alone
        torch.manual_seed(0)
        net = TutorialDCGAN()
        with torch.no_grad():  # BatchNorm statistics that are not the identity, as after training
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    return net


class Declares(nn.Module):
    """Declares its latent size (``latent_dim``), maps to 1x8x8 images on [0, 1] (a sigmoid)."""

    latent_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(z)).reshape(-1, 1, 8, 8)


class Flat(nn.Module):
    """Returns (B, 64) vectors: not images."""

    latent_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)


class Loud(Declares):
    """Images on [0, 255], declared as nothing: far outside [-1, 1]."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 255.0 * super().forward(z)


class NaNs(Declares):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z) * float("nan")


not_a_module = 3
