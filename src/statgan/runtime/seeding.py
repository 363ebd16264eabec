"""One seeding scheme for the whole package.

A run has one user-facing seed; every private random stream (observation noise, Monte-Carlo
dropout masks, probe start vectors, per-rank streams, the audit's image sets and samplers) takes
its seed from :func:`derived_seed` with a purpose string, so streams never collide and adding a new
one never shifts an existing one.
"""

from __future__ import annotations

import hashlib
from typing import Union

import torch

SeedLike = Union[int, torch.Generator, None]


def derived_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for a private RNG stream: sha256 of the run seed and a purpose string.

    Hashing (rather than ``seed + k``) keeps the stream distinct from the trainer's own
    (latents use seed + 1, the fixed sample grid seed + 2) and from other purposes.
    """
    digest = hashlib.sha256(f"statgan:{purpose}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_generator(seed: int, purpose: str, device: Union[str, torch.device] = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``derived_seed(seed, purpose)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derived_seed(seed, purpose))
    return g


def make_rng(seed: SeedLike, device: Union[str, torch.device] = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device``: the one passed, one seeded with ``seed``, or, for
    ``None``, one seeded from the global RNG (so ``torch.manual_seed`` still makes runs repeatable)."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != torch.device(device).type:
            raise ValueError(f"seed is a torch.Generator on {seed.device}, but the computation runs on {device}; pass one on {device} or an int")
        return seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, a torch.Generator or None, got {seed!r}")
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
