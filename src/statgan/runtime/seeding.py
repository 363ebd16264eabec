"""One seeding scheme for the whole package, and one table of every seed stream in it.

A run has one user-facing seed. Every random stream the package seeds is named in :data:`STREAMS`
with a one-line reason and its seed as a function of its inputs; the rest of the package never
calls ``manual_seed`` itself (a structure test enforces it) but asks for a stream by name:

* :func:`stream_seed` -- the int seed (for numpy, or to hand to a function that takes a seed);
* :func:`stream_generator` -- a fresh :class:`torch.Generator` seeded from the stream;
* :func:`reseed` -- re-seed a generator someone already holds (a regulariser's, bound to the run);
* :func:`seed_global` -- seed torch's global RNG (weights, dropout masks, torch.distributions).

New private streams should be ``"derived"``: :func:`derived_seed` hashes the run seed with a
purpose string, so streams never collide and adding one never shifts an existing one. The older
streams (the trainer's ``seed + 1`` / ``seed + 2``, the batch order's ``seed * 1_000_003 + epoch``,
the OOD sets' crc32, the fixed seeds of the toy data and of the evaluation) keep their historical
formulas bit for bit, so that runs made before the table existed reproduce.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Tuple, Union

import torch

SeedLike = Union[int, torch.Generator, None]
Device = Union[str, torch.device]

#: Fixed seeds of the toy densities' datasets, per split (``statgan.data.toy.TOY_SEEDS``).
TOY_SPLIT_SEEDS: Mapping[str, int] = {"train": 0, "test": 1}

#: what a stream's seed is built from
KINDS = ("run", "offset", "derived", "mixed", "fixed", "drawn")
#: which RNG a stream seeds: a private ``torch.Generator`` or torch's global RNG
RNGS = ("generator", "global")


def derived_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for a private RNG stream: sha256 of the run seed and a purpose string.

    Hashing (rather than ``seed + k``) keeps the stream distinct from the trainer's own
    (latents use seed + 1, the fixed sample grid seed + 2) and from other purposes.
    """
    digest = hashlib.sha256(f"statgan:{purpose}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class Stream:
    """One seed stream: its seed as a function of ``inputs``, and why it exists.

    ``kind`` says what the seed is built from (:data:`KINDS`): the run seed itself (``run``), the
    run seed plus a constant (``offset``), a :func:`derived_seed` hash (``derived``), an arithmetic
    or crc32 mix (``mixed``), a constant (``fixed``) or a number drawn from the caller's generator
    (``drawn``). ``rng`` says what it seeds (:data:`RNGS`). ``expression`` is the formula as
    written for people; ``formula`` computes it.
    """

    kind: str
    rng: str
    inputs: Tuple[str, ...]
    expression: str
    description: str
    formula: Callable[..., int]


def _ood_seed(seed: int, name: str) -> int:
    """The OOD sets' historical formula (kept so that old audits reproduce)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def _toy_seed(split: str) -> int:
    """The fixed seed of a toy split, with a clear error for a split that has none."""
    if split not in TOY_SPLIT_SEEDS:
        raise ValueError(f"the toy data has no seed for split {split!r}; known: {', '.join(TOY_SPLIT_SEEDS)}")
    return TOY_SPLIT_SEEDS[split]


#: Every seed stream of the package, by name. Values are frozen: changing a formula changes every
#: run made with it, so a new need gets a new (``derived``) entry instead.
def _as_given(seed: int) -> int:
    """The seed as the caller gave it (the run's, a --seed, a fixed constant passed in)."""
    return seed


STREAMS: Mapping[str, Stream] = {
    # ---- training ------------------------------------------------------------------------------
    "weights": Stream(
        "run", "global", ("seed",), "seed",
        "G's and D's initial weights; afterwards rank 0's global RNG (dropout masks, penalty "
        "interpolation) continues from it, so one seed fixes a whole single-process run",
        lambda seed: int(seed)),
    "rank": Stream(
        "derived", "global", ("seed", "rank"), 'derived_seed(seed, f"rank:{rank}")',
        "the global RNG of rank > 0 after the weights are broadcast: dropout masks and penalty "
        "weights differ per rank, like their data",
        lambda seed, rank: derived_seed(seed, f"rank:{rank}")),
    "rank_resume": Stream(
        "derived", "global", ("seed", "rank", "step"), 'derived_seed(seed, f"rank:{rank}:step:{step}")',
        "the global RNG of a rank that a checkpoint has no saved state for (resumed with more "
        "processes than saved it): fresh, but still a function of the run",
        lambda seed, rank, step: derived_seed(seed, f"rank:{rank}:step:{step}")),
    "trainer_latents": Stream(
        "offset", "generator", ("seed",), "seed + 1",
        "the trainer's latents, on a CPU generator: the same stream on every device, and its state "
        "is saved in checkpoints",
        lambda seed: seed + 1),
    "trainer_grid": Stream(
        "offset", "generator", ("seed",), "seed + 2",
        "the fixed latent grid of the sample images saved during training, the same at every step",
        lambda seed: seed + 2),
    "batch_order": Stream(
        "mixed", "generator", ("seed", "epoch"), "seed * 1_000_003 + epoch",
        "epoch ``epoch``'s permutation of the training set: the batch order is a pure function of "
        "(seed, batch counter), so a resumed run draws the batches an uninterrupted one would",
        lambda seed, epoch: seed * 1_000_003 + epoch),
    "batch_loader": Stream(
        "run", "generator", ("seed",), "seed",
        "the DataLoader of a lazily read training set: its own generator, since creating the "
        "iterator otherwise draws a worker seed from the global RNG and shifts the dropout masks",
        _as_given),
    "regularizer": Stream(
        "derived", "generator", ("seed", "name"), "derived_seed(seed, name)",
        "a regulariser's private CPU generator (relaxation noise, augmentations, path-length "
        "latents), bound to the run seed (seed 0 until bound), apart from the trainer's streams",
        lambda seed, name: derived_seed(seed, name)),
    "mc_dropout": Stream(
        "derived", "global", ("seed",), 'derived_seed(seed, "mc_dropout")',
        "Monte-Carlo dropout masks drawn with a seed, under a forked global RNG (dropout layers take "
        "no generator), so sampling is repeatable and the caller's RNG untouched",
        lambda seed: derived_seed(seed, "mc_dropout")),
    "sharpness_probe": Stream(
        "derived", "generator", ("seed", "step"), 'derived_seed(seed, f"sharpness:{step}")',
        "the power iteration's start vector of the in-training sharpness probe at ``step``",
        lambda seed, step: derived_seed(seed, f"sharpness:{step}")),
    # ---- evaluation, sampling ------------------------------------------------------------------
    "eval_loader": Stream(
        "fixed", "generator", (), "0",
        "the DataLoaders that feed datasets to the metrics: a private generator, since creating the "
        "iterator otherwise draws from the global RNG and would perturb a run that evaluates FID",
        lambda: 0),
    "eval_latents": Stream(
        "run", "generator", ("seed",), "seed",
        "the generator's latents when a metric samples it (the evaluation's seed, 0 by default): "
        "never the global RNG, and sample i the same however the samples are split over ranks",
        _as_given),
    "cli_latents": Stream(
        "run", "generator", ("seed",), "seed",
        "the latents of ``statgan sample`` / ``statgan interpolate``: the user's --seed as given",
        _as_given),
    "generator_probe": Stream(
        "fixed", "generator", (), "0",
        "the two latents a generator given by file or module is first checked on (shape, range, "
        "finite values): the same probe for every load",
        lambda: 0),
    "thread_probe": Stream(
        "fixed", "generator", (), "0",
        "the random latents and images of the check that one training step gives the same bits with one "
        "and two torch threads (statgan.train.thread_invariance): the same inputs for every run",
        lambda: 0),
    "thread_probe_masks": Stream(
        "fixed", "global", (), "0",
        "the global RNG inside that check (dropout masks), forked so the caller's state is kept: the "
        "same masks for each thread count",
        lambda: 0),
    # ---- data ----------------------------------------------------------------------------------
    "toy_split": Stream(
        "fixed", "generator", ("split",), "TOY_SPLIT_SEEDS[split]  (train 0, test 1)",
        "the toy densities' datasets: the same call always returns the same points",
        _toy_seed),
    "ood_set": Stream(
        "mixed", "generator", ("seed", "name"), "(seed * 1_000_003 + crc32(name)) % 2**63",
        "each out-of-distribution set's own generator, so a set's images do not depend on which "
        "other sets are asked for",
        _ood_seed),
    # ---- audit ---------------------------------------------------------------------------------
    "derived": Stream(
        "derived", "generator", ("seed", "purpose"), "derived_seed(seed, purpose)",
        "the family of private streams named by a purpose string (the audit's image sets, "
        "samplers and tests, Stacked MNIST): hashing keeps every purpose apart from every other",
        derived_seed),
    "audit_prior": Stream(
        "drawn", "global", ("seed",), "seed  (drawn from the caller's generator)",
        "sampling a torch.distributions prior (which takes no generator) under a forked global RNG "
        "seeded from the audit's generator, so the result is repeatable and the caller's RNG untouched",
        _as_given),
    # ---- the Bridging reproduction ---------------------------------------------------------------
    "bridging_sharpness_batch": Stream(
        "run", "generator", ("seed",), "seed  (SHARPNESS_SEED = 2507_00651)",
        "the fixed sharpness evaluation batch (which training images, which latents), the same for "
        "every cell and seed, so every run is measured on one function",
        _as_given),
    "bridging_sharpness_start": Stream(
        "offset", "generator", ("seed",), "seed + 1",
        "the start vector of the fixed-batch sharpness power iteration",
        lambda seed: seed + 1),
    "bridging_toy_eval": Stream(
        "fixed", "generator", (), "12345",
        "the latents a toy cell's generator is scored on (log-likelihood, KDE): the same for every "
        "cell and seed",
        lambda: 12345),
}


def stream(name: str) -> Stream:
    """The table entry ``name``; an unknown name is a ValueError listing the known ones."""
    try:
        return STREAMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown seed stream {name!r}; the streams are: {', '.join(STREAMS)}") from None


def stream_seed(name: str, *inputs: Any) -> int:
    """The seed of stream ``name`` for ``inputs`` (in the order of its ``inputs`` field)."""
    s = stream(name)
    if len(inputs) != len(s.inputs):
        raise TypeError(f"seed stream {name!r} takes ({', '.join(s.inputs)}), got {len(inputs)} input(s): {inputs!r}")
    return int(s.formula(*inputs))


def _generator(seed: int, device: Device = "cpu") -> torch.Generator:
    """The one place a private generator is seeded."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _generator_stream(name: str) -> Stream:
    """Stream ``name``, which must seed a private generator."""
    s = stream(name)
    if s.rng != "generator":
        raise ValueError(f"seed stream {name!r} seeds the global RNG; use seed_global({name!r}, ...)")
    return s


def stream_generator(name: str, *inputs: Any, device: Device = "cpu") -> torch.Generator:
    """A fresh :class:`torch.Generator` on ``device`` seeded with ``stream_seed(name, *inputs)``."""
    _generator_stream(name)
    return _generator(stream_seed(name, *inputs), device)


def reseed(generator: torch.Generator, name: str, *inputs: Any) -> torch.Generator:
    """Re-seed ``generator`` in place with ``stream_seed(name, *inputs)`` and return it: for a
    generator created before the run seed is known (a regulariser's, bound later)."""
    _generator_stream(name)
    generator.manual_seed(stream_seed(name, *inputs))
    return generator


def seed_global(name: str, *inputs: Any) -> None:
    """Seed torch's global RNG (CPU and every CUDA device, as ``torch.manual_seed``) from stream
    ``name``: for what takes no generator (weight initialisation, dropout, torch.distributions)."""
    s = stream(name)
    if s.rng != "global":
        raise ValueError(f"seed stream {name!r} seeds a private generator; use stream_generator({name!r}, ...)")
    torch.manual_seed(stream_seed(name, *inputs))


def seeded_generator(seed: int, purpose: str, device: Device = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``derived_seed(seed, purpose)``."""
    return stream_generator("derived", seed, purpose, device=device)


def make_rng(seed: SeedLike, device: Device = "cpu") -> torch.Generator:
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
    return _generator(int(seed), device)
