"""The small MNIST classifier behind the ``lenet`` feature extractor.

LeNet-5-style convnet for (B, 1, 28, 28) inputs in [-1, 1]::

    conv 1->32 (5x5) - ReLU - maxpool 2   # 28 -> 24 -> 12
    conv 32->64 (5x5) - ReLU - maxpool 2  # 12 -> 8 -> 4
    flatten (1024) - dropout - fc 1024->128 - ReLU        <- features (penultimate layer, 128-d)
    dropout - fc 128->10                                  <- logits

Dropout is active only in training mode. The trained weights ship as
``statgan/metrics/weights/lenet-mnist.safetensors`` (made by ``scripts/train_lenet.py``); load them
through :func:`statgan.metrics.features.get_extractor` ``("lenet")``, which checks their sha256.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

#: Width of the penultimate layer (the feature dimension of the ``lenet`` extractor).
FEATURE_DIM = 128
#: Number of classes (MNIST digits).
N_CLASSES = 10
#: Input shape the network was trained on.
INPUT_SHAPE = (1, 28, 28)


class LeNet(nn.Module):
    """LeNet-5-style MNIST classifier; ``forward`` returns logits, :meth:`features_and_logits` both."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.fc1 = nn.Linear(64 * 4 * 4, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, N_CLASSES)
        self.drop = nn.Dropout(dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, 128) for (B, 1, 28, 28) inputs in [-1, 1]."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(self.drop(torch.flatten(x, 1))))

    def features_and_logits(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return h, self.fc2(self.drop(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]
