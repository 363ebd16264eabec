r"""Likelihood relaxation: Gaussian observation noise on generated (and optionally real) samples.

A GAN generator defines a degenerate model: all mass on the manifold {G(z)}. Relaxing the
observation model to

.. math:: p(x \mid z) = \mathcal N(x;\ G(z),\ \sigma^2 I), \qquad \tilde x = G(z) + \sigma\varepsilon,\ \varepsilon \sim \mathcal N(0, I)

gives the model a density everywhere, and the discriminator (or MMD) compares the data with the
relaxed samples :math:`\tilde x` (Filippone & Linhard 2025, arXiv 2507.00651: noise on generated
samples only). With ``instance_noise`` the real batch gets its own independent noise too,
:math:`x + \sigma\varepsilon'` (instance noise, Sønderby et al. 2017; Arjovsky & Bottou 2017), which
makes the two distributions overlap instead of making the model's density non-degenerate.

Schedules for σ at generator step t (σ₀ = ``sigma``, σ_min = ``sigma_min``, T = ``decay_steps``):

* ``constant``:    σ(t) = σ₀
* ``linear``:      σ(t) = σ₀ + (σ_min − σ₀)·min(t / T, 1)       (reaches the floor at t = T)
* ``exponential``: σ(t) = σ_min + (σ₀ − σ_min)·exp(−t / T)      (T is the e-folding time)

Reproducibility: ε is drawn on the CPU from a private generator seeded from the run seed and
moved to the device (identical streams on every device, like the trainer's latents); its state
is checkpointed, so a resumed run draws exactly the noise an uninterrupted one would. The noise is
drawn once per generated batch and reused for every evaluation of that batch (discriminator and
generator step, Monte-Carlo dropout repeats, SAM's second pass): the relaxed sample is
G(z) + σε with a fixed ε, as in the reference code. Under torchrun every rank draws the noise of
the whole global batch from the shared stream and keeps its own rows (the same ε a single process
would draw for those samples).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import Tensor

from ..errors import ConfigError
from ..runtime.distributed import shard_randn
from ..runtime.seeding import reseed, stream_generator
from ..runtime.validation import check_bool, check_choice, check_int, check_real
from . import REGULARIZERS
from .base import Regularizer, load_rng_state

SCHEDULES = ("constant", "linear", "exponential")


def noise_std(step: int, sigma: float, schedule: str = "constant", sigma_min: float = 0.0, decay_steps: int = 1) -> float:
    """σ(t) of the schedules in the module docstring."""
    if schedule == "constant":
        return sigma
    if schedule == "linear":
        return sigma + (sigma_min - sigma) * min(step / decay_steps, 1.0)
    if schedule == "exponential":
        return sigma_min + (sigma - sigma_min) * math.exp(-step / decay_steps)
    raise ValueError(f"unknown schedule {schedule!r}")


@REGULARIZERS.register()
class Relaxation(Regularizer):
    r"""Observation noise N(0, σ²I) added to generated samples before the discriminator (and, with
    ``instance_noise``, to real samples), σ following a schedule (module docstring).

    Args:
        sigma: σ₀ ≥ 0, the noise standard deviation at step 0 (data are in [-1, 1]).
        schedule: ``constant``, ``linear`` or ``exponential``.
        sigma_min: the floor σ_min, 0 ≤ σ_min ≤ σ₀ (ignored by ``constant``).
        decay_steps: T ≥ 1 generator steps (linear: time to reach the floor; exponential: time constant).
        instance_noise: also add independent noise of the same σ to the real batch.
    """

    name = "relaxation"

    def __init__(
        self,
        sigma: float = 0.1,
        schedule: str = "constant",
        sigma_min: float = 0.0,
        decay_steps: int = 1000,
        instance_noise: bool = False,
    ) -> None:
        what = "regularizers.relaxation"
        self.sigma = check_real("sigma", sigma, ge=0.0, owner=what)
        self.schedule = check_choice("schedule", schedule, SCHEDULES, owner=what)
        self.sigma_min = check_real("sigma_min", sigma_min, ge=0.0, owner=what)
        if self.sigma_min > self.sigma:
            raise ConfigError(f"{what}: sigma_min={self.sigma_min:g} is not allowed (must be <= sigma={self.sigma:g})")
        self.decay_steps = check_int("decay_steps", decay_steps, owner=what)
        self.instance_noise = check_bool("instance_noise", instance_noise, owner=what)
        self.gen = stream_generator("regularizer", 0, self.name)  # seed 0 until bound
        self._fake_noise: Optional[Tensor] = None
        self._real_noise: Optional[Tensor] = None
        self._sigma_now = self.sigma

    def sigma_at(self, step: int) -> float:
        """σ after ``step`` generator steps."""
        return noise_std(step, self.sigma, self.schedule, self.sigma_min, self.decay_steps)

    def bind(self, seed: int, device: torch.device) -> None:
        reseed(self.gen, "regularizer", seed, self.name)

    def _draw(self, like: Tensor, sigma: float) -> Tensor:
        # under torchrun ``like`` holds this rank's rows: draw the global batch's noise, keep ours
        eps = shard_randn(like.shape, self.gen, like.dtype)
        return eps.mul_(sigma).to(like.device, non_blocking=True)

    def begin_batch(self, real: Tensor, fake: Tensor, step: int) -> None:
        sigma = self._sigma_now = self.sigma_at(step)
        if sigma == 0.0:  # nothing to add (and nothing drawn: σ(t) is a pure function of t, so resume agrees)
            self._fake_noise = self._real_noise = None
            return
        self._fake_noise = self._draw(fake, sigma)
        self._real_noise = self._draw(real, sigma) if self.instance_noise else None

    def transform_fake(self, fake: Tensor) -> Tensor:
        return fake if self._fake_noise is None else fake + self._fake_noise

    def transform_real(self, real: Tensor) -> Tensor:
        return real if self._real_noise is None else real + self._real_noise

    def scalars(self, step: int) -> Dict[str, float]:
        return {"sigma": self._sigma_now}

    def state_tensors(self) -> Dict[str, Tensor]:
        return {"rng": self.gen.get_state()}

    def load_state_tensors(self, tensors: Dict[str, Tensor], source: str) -> None:
        load_rng_state(self.gen, tensors, "rng", source)

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma:g}, schedule={self.schedule!r}, sigma_min={self.sigma_min:g}, "
                f"decay_steps={self.decay_steps}, instance_noise={self.instance_noise}")


__all__ = ["SCHEDULES", "noise_std", "Relaxation"]
