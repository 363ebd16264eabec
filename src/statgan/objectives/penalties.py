r"""Gradient penalties on the discriminator's input gradient, shared by ``wgan-gp``, ``wgan-div``
and ``mmd-gan``.

All gradients are taken with ``create_graph=True`` so that the penalty is itself differentiable
with respect to the discriminator's parameters (a penalty computed without it is a constant and
silently does nothing — the pitfall noted in /work/shared/REFERENCES.md).

Caveat: a discriminator with batch normalisation makes D(x̂_i) depend on the other samples of
the batch, so "the gradient at x̂_i" then includes cross-sample terms (Gulrajani et al. 2017
recommend layer norm or no normalisation in the critic).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

Critic = Callable[[Tensor], Tensor]

#: Added under the square root of ‖∇‖²: the derivative of √s is infinite at s = 0 (a critic with
#: a dead region, or a constant critic at initialisation, would give NaN); 1e-12 shifts the norm
#: by at most 1e-6 and by ~5e-13/‖∇‖ for any non-negligible gradient.
NORM_EPS = 1e-12


def random_interpolates(real: Tensor, fake: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    r""":math:`\hat x = \epsilon x + (1 - \epsilon)\tilde x`, one :math:`\epsilon \sim U(0, 1)` per sample.

    Batches of different sizes are paired on their first ``min(B_real, B_fake)`` samples. The
    result is detached (the penalty must not send gradient into the generator) and requires grad.
    """
    n = min(real.shape[0], fake.shape[0])
    real, fake = real[:n].detach(), fake[:n].detach()
    shape = (n,) + (1,) * (real.dim() - 1)  # broadcast over all non-batch dimensions
    eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    return (eps * real + (1.0 - eps) * fake).requires_grad_(True)


def outputs_and_input_gradients(critic: Critic, x: Tensor, create_graph: bool = True) -> Tuple[Tensor, Tensor]:
    """``(critic(x), ∂ sum critic(x) / ∂x)``; ``x`` is detached and made to require grad.

    Because samples enter the critic independently (no batch norm), the gradient of the sum with
    respect to sample i is the gradient of the critic's output on sample i.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = critic(x)
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    return out, grad


def squared_gradient_norms(grad: Tensor) -> Tensor:
    """Per-sample ‖g_i‖², flattening all non-batch dimensions: shape (B,)."""
    return grad.reshape(grad.shape[0], -1).pow(2).sum(dim=1)


def gradient_penalty(
    critic: Critic,
    real: Tensor,
    fake: Tensor,
    target: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""WGAN-GP's two-sided penalty (Gulrajani et al. 2017, eq. 3), without the weight λ:

    .. math:: \mathbb{E}_{\hat x}\big[(\|\nabla_{\hat x} D(\hat x)\|_2 - \text{target})^2\big]

    on random interpolates :math:`\hat x` of real and generated samples.
    """
    x_hat = random_interpolates(real, fake, generator)
    _, grad = outputs_and_input_gradients(critic, x_hat)
    norms = torch.sqrt(squared_gradient_norms(grad) + NORM_EPS)
    return (norms - target).pow(2).mean()


def gradient_power(grad: Tensor, p: float) -> Tensor:
    r"""Per-sample :math:`\|g_i\|_2^p`, computed as :math:`(\|g_i\|^2)^{p/2}` (no square root, so
    for p ≥ 2 it is smooth at g = 0; for p < 2 :data:`NORM_EPS` keeps the gradient finite)."""
    sq = squared_gradient_norms(grad)
    if p < 2:
        sq = sq + NORM_EPS
    return sq.pow(0.5 * p)


__all__ = [
    "NORM_EPS",
    "random_interpolates",
    "outputs_and_input_gradients",
    "squared_gradient_norms",
    "gradient_penalty",
    "gradient_power",
]
