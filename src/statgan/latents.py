r"""Pictures made by moving through a generator's latent spaces: truncation, style mixing and
latent walks (``statgan sample --truncation / --style-mix``, ``statgan interpolate``).

* z space exists for every generator (z ~ N(0, I)); w space only for generators with a mapping
  network (``mapping`` / ``synthesis`` / ``num_ws``, i.e. ``model.arch=stylegan``), checked by
  :func:`require_w`, which names the arch in a one-line error.
* Truncation (StyleGAN Sec. 3.1 / Appendix B; Brock et al. 2019 for z): ``w' = w̄ + ψ(w − w̄)`` with w̄
  the generator's tracked average ``w_avg``; ψ = 1 is the plain model, ψ = 0 the image of w̄.
* Style mixing (StyleGAN Fig. 3): cell (i, j) takes the styles of layers ``< crossover`` (coarse:
  the low resolutions) from row source i and those ``>= crossover`` (fine) from column source j.
* Walks: spherical interpolation in z (White 2016, "Sampling generative networks": a straight line
  between two Gaussian samples passes through atypically short vectors, the great circle does
  not), linear interpolation in w (StyleGAN's perceptual-path-length convention).

Every function runs the generator as given (call ``.eval()`` first for the deterministic sampler)
under ``torch.no_grad`` and returns images (B, C, H, W) in [-1, 1], laid out for
:func:`statgan.viz.save_samples` with the returned ``nrow``.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor, nn

from .errors import StatganError
from .nets.common import has_w_space

#: the latent spaces ``statgan interpolate --space`` accepts
SPACES = ("z", "w")


def require_w(generator: nn.Module, what: str) -> None:
    """One-line StatganError unless ``generator`` has an intermediate latent w."""
    if not has_w_space(generator):
        raise StatganError(f"{what} needs an intermediate latent w, and this generator ({type(generator).__name__}) "
                           "has none; only a statgan run with model.arch=stylegan has one")


def check_psi(psi: float) -> float:
    if not math.isfinite(psi):
        raise StatganError(f"--truncation {psi!r}: expected a finite number (1 = no truncation, 0 = the average w)")
    return float(psi)


@torch.no_grad()
def truncated_samples(generator: nn.Module, z: Tensor, psi: float) -> Tensor:
    """``synthesis(w̄ + ψ(mapping(z) − w̄))``; ψ = 1 is exactly ``generator(z)`` in eval mode."""
    require_w(generator, "--truncation")
    return generator.synthesis(generator.mapping(z, psi=check_psi(psi)))


@torch.no_grad()
def style_mix_grid(generator: nn.Module, row_z: Tensor, col_z: Tensor, crossover: int = 0,
                   psi: float = 1.0) -> Tuple[Tensor, int]:
    """The classic style-mixing figure: an (R + 1) × (C + 1) grid whose first row shows the C column
    sources, first column the R row sources (top-left blank), and cell (i, j) row i's coarse styles
    (layers < ``crossover``; 0 = half of them) with column j's fine styles. Returns (images, nrow)."""
    require_w(generator, "--style-mix")
    num_ws = int(generator.num_ws)
    crossover = crossover or num_ws // 2
    if not 1 <= crossover < num_ws:
        raise StatganError(f"--crossover {crossover}: expected a layer in 1..{num_ws - 1} (this generator has {num_ws} styles)")
    psi = check_psi(psi)
    row_ws, col_ws = generator.mapping(row_z, psi=psi), generator.mapping(col_z, psi=psi)
    rows, cols = row_ws.shape[0], col_ws.shape[0]
    row_img, col_img = generator.synthesis(row_ws), generator.synthesis(col_ws)
    mixed = generator.mix_styles(row_ws.repeat_interleave(cols, dim=0), col_ws.repeat(rows, 1, 1), crossover)
    mixed_img = generator.synthesis(mixed).reshape(rows, cols, *row_img.shape[1:])
    blank = torch.full_like(row_img[:1], -1.0)
    lines = [torch.cat([blank, col_img])] + [torch.cat([row_img[i:i + 1], mixed_img[i]]) for i in range(rows)]
    return torch.cat(lines), cols + 1


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (B, D) at fractions ``t`` (T,) ->
    (B, T, D); falls back to linear interpolation where the two vectors are (anti)parallel."""
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((an * bn).sum(dim=1).clamp(-1.0, 1.0))[:, None, None]  # (B, 1, 1)
    t = t[None, :, None]
    so = torch.sin(omega)
    safe = so.abs() > 1e-6
    wa = torch.where(safe, torch.sin((1 - t) * omega) / torch.where(safe, so, 1.0), 1 - t)
    wb = torch.where(safe, torch.sin(t * omega) / torch.where(safe, so, 1.0), t)
    return wa * a[:, None] + wb * b[:, None]


@torch.no_grad()
def latent_walk(generator: nn.Module, z0: Tensor, z1: Tensor, steps: int, space: str = "z") -> Tuple[Tensor, int]:
    """One row per pair (z0[i], z1[i]), ``steps`` images from one end to the other: slerp in z, or
    lerp between mapping(z0) and mapping(z1) in w. Returns (images, nrow = steps)."""
    if space not in SPACES:
        raise StatganError(f"--space {space!r}: expected one of {', '.join(SPACES)}")
    if steps < 2:
        raise StatganError(f"--steps must be at least 2 (the two ends), got {steps}")
    t = torch.linspace(0.0, 1.0, steps, device=z0.device)
    n, d = z0.shape
    if space == "z":
        return generator(slerp(z0, z1, t).reshape(n * steps, d)), steps
    require_w(generator, "--space w")
    w0, w1 = generator.mapping(z0), generator.mapping(z1)  # (B, num_ws, w_dim)
    ws = torch.lerp(w0[:, None], w1[:, None], t[None, :, None, None])
    return generator.synthesis(ws.reshape(n * steps, *w0.shape[1:])), steps


__all__ = ["SPACES", "require_w", "check_psi", "truncated_samples", "style_mix_grid", "slerp", "latent_walk"]
