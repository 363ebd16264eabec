r"""Path-length regularisation (Karras et al. 2020, StyleGAN2 Sec. 3.2 and Appendix B), for
generators with an intermediate latent w (``mapping`` / ``synthesis``, e.g. ``model.arch=stylegan``).

For w = mapping(z) and y ~ N(0, I)/√(H·W) (so that ‖y‖ does not grow with the resolution),

.. math:: L_{pl} = \lambda\,\mathbb E_{w,y}\big(\|J_w^\top y\|_2 - a\big)^2,
          \qquad J_w^\top y = \nabla_w\,(g(w)\cdot y),

with ``a`` an exponential moving average of the lengths ``‖J_wᵀy‖`` (decay 0.01 per evaluation) and
``‖·‖`` taken over w summed across layers and averaged, as StyleGAN2 does (``ws`` are the per-layer
copies of w: ``sqrt(mean_layers(sum_dim (∂/∂ws)²))``). It pushes the generator towards a fixed
Jacobian norm at every w: a step in w changes the image by the same amount everywhere.

Lazy (StyleGAN2 Appendix B): with ``every = k`` it is evaluated on generator steps 0, k, 2k, … only,
weighted k·λ. Each evaluation draws its own z (batch ``batch_size // batch_shrink``) and y from a
private generator (checkpointed, so resume is exact) and runs its own generator pass, so it works
with every objective and adds nothing to steps where it is not due. The average ``a`` is checkpointed.

Under DDP (W ranks) the draws are this rank's rows of one global batch (``shard_randn``: the union
over ranks is what one process draws for W times the batch, not W copies of the same rows), and the
mean length that updates ``a`` is averaged over the ranks, so ``a`` stays identical on every rank
(and in every rank's checkpoint) and equals the single-process value at the same global batch.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from ..errors import ConfigError
from ..nets.common import has_w_space
from ..runtime import distributed
from ..runtime.seeding import reseed, stream_generator
from ..runtime.validation import check_int, check_real
from . import REGULARIZERS
from .base import GENERATOR, LossContext, Regularizer, load_rng_state


def path_lengths(generator: torch.nn.Module, z: Tensor, y: Tensor) -> Tensor:
    """Per-sample ``‖J_wᵀ y‖`` (module docstring), differentiable w.r.t. the generator's parameters."""
    ws = generator.mapping(z, update_avg=False)
    if not ws.requires_grad:  # w independent of the parameters (no mapping layers): differentiate at w itself
        ws = ws.detach().requires_grad_(True)
    img = generator.synthesis(ws)
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


@REGULARIZERS.register()
class PathLengthPenalty(Regularizer):
    r"""λ·E(‖J_wᵀy‖ − a)², lazily every k generator steps with weight k·λ (module docstring).

    Args:
        weight: λ ≥ 0 (StyleGAN2: 2).
        every: k ≥ 1 (StyleGAN2: 4).
        decay: the moving average's step, a ← a + decay·(mean length − a) (StyleGAN2: 0.01).
        batch_shrink: the penalty's batch is the real batch's size divided by this (StyleGAN2: 2).
    """

    name = "path_length"

    def __init__(self, weight: float = 2.0, every: int = 4, decay: float = 0.01, batch_shrink: int = 2) -> None:
        what = "regularizers.path_length"
        self.weight = check_real("weight", weight, ge=0.0, owner=what)
        self.every = check_int("every", every, owner=what)
        self.decay = check_real("decay", decay, gt=0.0, owner=what)
        if self.decay > 1.0:
            raise ConfigError(f"{what}: decay={decay!r} must be in (0, 1]")
        self.batch_shrink = check_int("batch_shrink", batch_shrink, owner=what)
        self.gen = stream_generator("regularizer", 0, self.name)  # seed 0 until bound
        self.mean = torch.zeros((), dtype=torch.float64)  # a, the running mean length
        self._step_drawn: Optional[int] = None  # the step whose z, y and starting mean are cached
        self._cache: Optional[tuple] = None

    def bind(self, seed: int, device: torch.device) -> None:
        reseed(self.gen, "regularizer", seed, self.name)
        self.device = device

    def penalty(self, ctx: LossContext) -> Optional[Tensor]:
        if ctx.net != GENERATOR or ctx.step % self.every:
            return None
        G = ctx.generator
        if not has_w_space(G):
            raise ConfigError(f"regularizers.path_length needs a generator with an intermediate latent w "
                              f"(mapping/synthesis, e.g. model.arch=stylegan); {type(G).__name__} has none")
        if self._step_drawn != ctx.step:
            # once per step: a second evaluation of the same update (SAM, MC dropout) reuses the
            # draws and the starting mean, so repeated closures give the same penalty
            n = max(1, ctx.fake.shape[0] // self.batch_shrink)
            z = distributed.shard_randn((n, G.latent_dim), self.gen)
            c, h, w = G.data_shape
            y = distributed.shard_randn((n, c, h, w), self.gen) / (h * w) ** 0.5
            device = ctx.fake.device
            self._cache = (z.to(device), y.to(device, ctx.fake.dtype), self.mean.clone())
            self._step_drawn = ctx.step
        z, y, start = self._cache  # type: ignore[misc]
        lengths = path_lengths(G, z, y)
        # the global batch's mean length (ranks hold equal shares), so every rank updates ``a`` alike
        batch_mean = distributed.all_reduce_(lengths.detach().double().mean(), "mean")
        a = start + self.decay * (batch_mean - start)
        self.mean = a.cpu()
        return (self.weight * self.every) * (lengths - a.to(lengths.dtype)).square().mean()

    def scalars(self, step: int) -> Dict[str, float]:
        return {"path_length.mean": float(self.mean)}

    def state_tensors(self) -> Dict[str, Tensor]:
        return {"rng": self.gen.get_state(), "mean": self.mean.clone()}

    def load_state_tensors(self, tensors: Dict[str, Tensor], source: str) -> None:
        load_rng_state(self.gen, tensors, "rng", source)
        if "mean" in tensors:
            self.mean = tensors["mean"].clone().double()
        self._step_drawn, self._cache = None, None

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, every={self.every}, decay={self.decay:g}, batch_shrink={self.batch_shrink}"


__all__ = ["PathLengthPenalty", "path_lengths"]
