"""The audit's work in fixed blocks of images, spread over the processes of ``torchrun``.

An audit's expensive stages (inversion, the sigma choice, AIS and importance sampling, BDMC) are
per-image computations whose randomness comes from a seeded generator. If one generator fed a
whole set, image 40's numbers would depend on how many draws images 0..39 used before it, and on
which images shared its chunk -- so splitting a set over processes would change the numbers.

Instead every set is cut into fixed **blocks** of :data:`BLOCK` images (the last one shorter), and
block ``i`` of a purpose gets its own seed ``derived_seed(seed, f"{purpose}:block{i}")``
(:func:`block_seed`). A block's result is a function of its images, its seed and the settings
only, computed in one batch of exactly those images. :func:`run_blocks` runs, on the process of
rank ``r`` out of ``W``, the units ``j`` with ``j % W == r`` and gathers every unit's result to
every rank in unit order (:func:`statgan.runtime.distributed.all_gather_object`, in memory); one
process runs all of them itself with the same seeds. So the concatenated results -- and the
audit's summary -- are the same whatever the number of processes (on one kind of device, with one
number of threads per process: float sums may depend on those).

A block's function may itself call :func:`run_blocks` (BDMC's proposal inverts the simulated
images of its block); such a nested call runs all its units on the calling process, since the
other ranks are busy with their own blocks and cannot join a collective.

A process waits in the gather for the slowest rank's blocks, which at ``--precision certified``
is hours (a stage with fewer blocks than processes runs on some of them only); torch's default
collective timeout is 30 minutes, so the audit gathers over a gloo group of its own with a timeout
of :data:`GATHER_TIMEOUT` (:func:`gather_group`; torchrun still ends every process when one dies).

The ``cat_*`` helpers join per-block results of the types the stages return, and :func:`to_cpu`
moves a block's result off the GPU before it is gathered (a CUDA tensor pickled on rank 1 would be
unpickled onto rank 0's GPU).
"""

from __future__ import annotations

import copy
import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import torch
from torch import Tensor

from ..runtime import distributed
from ..runtime.seeding import derived_seed
from .ais import AISResult, BDMCResult
from .inversion import InversionResult
from .posterior import LaplaceMixture
from .proposal import GaussianMixture, IsotropicGaussian, Proposal

__all__ = ["BLOCK", "GATHER_TIMEOUT", "Block", "block_seed", "block_sizes", "busiest_share", "cat_ais", "cat_bdmc",
           "cat_inversions", "cat_proposals", "gather_group", "make_blocks", "map_blocks", "run_blocks", "to_cpu"]

T = TypeVar("T")

#: images per block: the unit of work a process takes and of seeding (a block is one batch of the
#: samplers, so small enough for a GPU's memory at the audit's chains and restarts, large enough
#: to keep it busy for the MNIST-sized generators)
BLOCK = 32

#: a block's progress callback: called with the number of images just finished
Progress = Optional[Callable[[int], None]]

#: how long a process waits in a gather for the others' blocks (a certified audit's stage takes hours)
GATHER_TIMEOUT = timedelta(days=7)

_nested = 0  # > 0 while a block's function runs: a run_blocks inside it stays on this process
_group: Any = None  # the gather group of gather_group(), while it is open


@dataclass(frozen=True)
class Block:
    """Images ``start:stop`` of a set, block ``index`` of it, with its seed; ``key`` tells the
    caller which set (or candidate) the block belongs to when one call covers several."""

    key: str
    index: int
    start: int
    stop: int
    seed: int

    @property
    def rows(self) -> slice:
        """The block's images as a slice of its set."""
        return slice(self.start, self.stop)

    @property
    def size(self) -> int:
        return self.stop - self.start


def block_seed(seed: int, purpose: str, index: int) -> int:
    """The seed of block ``index`` of ``purpose``: ``derived_seed(seed, f"{purpose}:block{index}")``."""
    return derived_seed(seed, f"{purpose}:block{index}")


def make_blocks(n_images: int, seed_of: Callable[[int], int], key: str = "", first: int = 0) -> List[Block]:
    """``n_images`` cut into blocks of :data:`BLOCK`; block ``i`` is numbered ``first + i`` (its seed
    ``seed_of(first + i)``), so images of a larger set handed over one block at a time keep the
    block numbers (and seeds) they have in the whole set."""
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    return [Block(key, first + i, start, min(start + BLOCK, n_images), int(seed_of(first + i)))
            for i, start in enumerate(range(0, n_images, BLOCK))]


def block_sizes(n_images: int) -> List[int]:
    """The sizes of :func:`make_blocks`' blocks of ``n_images`` (for projections: no seeds needed)."""
    return [min(BLOCK, n_images - start) for start in range(0, n_images, BLOCK)]


def busiest_share(sizes: Sequence[int], world: int) -> float:
    """The share of the images (units of ``sizes``, dealt round-robin as :func:`run_blocks` deals
    them) that the busiest of ``world`` processes gets: the projected time's factor."""
    total = sum(sizes)
    if total <= 0 or world <= 1:
        return 1.0
    return max(sum(sizes[r::world]) for r in range(world)) / total


@contextmanager
def gather_group(timeout: timedelta = GATHER_TIMEOUT) -> Iterator[None]:
    """A gloo group with a long ``timeout`` that :func:`run_blocks` gathers over while the block
    runs; every rank must enter it together (creating a group is a collective). Nothing in one process."""
    global _group
    if distributed.world_size() == 1 or _group is not None:
        yield
        return
    import torch.distributed as dist  # only under torchrun: some torch builds lack it (see runtime.distributed)

    _group = dist.new_group(backend="gloo", timeout=timeout)
    try:
        yield
    finally:
        group, _group = _group, None
        if dist.is_initialized():
            dist.destroy_process_group(group)


def _all_gather(obj: T) -> List[T]:
    """Every rank's ``obj`` in rank order, over :func:`gather_group`'s group when one is open."""
    if _group is None:
        return distributed.all_gather_object(obj)
    import torch.distributed as dist  # only under torchrun: some torch builds lack it (see runtime.distributed)

    out: List[Any] = [None] * distributed.world_size()
    dist.all_gather_object(out, obj, group=_group)
    return out


@contextmanager
def _in_block() -> Iterator[None]:
    global _nested
    _nested += 1
    try:
        yield
    finally:
        _nested -= 1


def run_blocks(blocks: Sequence[Block], fn: Callable[[Block], T], progress: Progress = None) -> List[T]:
    """``[fn(b) for b in blocks]``, each unit computed on one process and the list on every process.

    Under several processes the rank ``r`` runs units ``j % W == r`` and the results are gathered in
    unit order, so they must be picklable and on the CPU (:func:`to_cpu`). If any rank's unit fails,
    that rank re-raises its error and the others raise
    :class:`~statgan.runtime.distributed.PeerFailed` (nobody waits on a collective forever).
    ``progress`` gets the images finished: this rank's blocks scaled by W as they end (an ETA for the
    whole stage), the rest when the results arrive.
    """
    world = distributed.world_size() if _nested == 0 else 1
    rank = distributed.rank() if world > 1 else 0
    total, told = sum(b.size for b in blocks), 0

    def tell(n: int) -> None:
        nonlocal told
        n = max(0, min(n, total - told))
        if progress is not None and n:
            progress(n)
        told += n

    if world == 1:
        out = []
        for b in blocks:
            with _in_block():
                out.append(fn(b))
            tell(b.size)
        return out
    mine: Dict[int, T] = {}
    error: Optional[BaseException] = None
    failure: Optional[str] = None
    for j, b in enumerate(blocks):
        if j % world != rank:
            continue
        try:
            with _in_block():
                mine[j] = fn(b)
        except Exception as exc:  # re-raised below, after the other ranks have been told
            error, failure = exc, f"{type(exc).__name__}: {exc}"
            break
        tell(b.size * world)
    payload = (failure, mine if failure is None else None)
    parts: List[Tuple[Optional[str], Optional[Dict[int, Any]]]] = _all_gather(payload)
    if error is not None:
        raise error
    for r, (f, _) in enumerate(parts):
        if f is not None:
            raise distributed.PeerFailed(f"rank {r} failed: {f}")
    merged: Dict[int, Any] = {}
    for _, got in parts:
        merged.update(got or {})
    tell(total)
    return [merged[j] for j in range(len(blocks))]


def map_blocks(n_images: int, seed_of: Callable[[int], int], fn: Callable[[Block], T],
               progress: Progress = None) -> List[T]:
    """``fn`` on every block of ``n_images`` (:func:`make_blocks`), results in block order on every
    process (:func:`run_blocks`)."""
    return run_blocks(make_blocks(n_images, seed_of), fn, progress)


# ==== results off the GPU, and joined ===============================================================
def to_cpu(obj: T) -> T:
    """``obj`` with every tensor moved to the CPU (detached): tensors, dataclasses (their init
    fields), proposals (their tensor attributes), lists, tuples and dicts of them; anything else as is."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()  # type: ignore[return-value]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_cpu(getattr(obj, f.name))  # type: ignore[return-value]
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, Proposal):
        out = copy.copy(obj)
        out.__dict__.update({k: v.detach().cpu() for k, v in vars(obj).items() if torch.is_tensor(v)})
        return out  # type: ignore[return-value]
    if type(obj) in (list, tuple):
        return type(obj)(to_cpu(v) for v in obj)  # type: ignore[return-value, call-arg]
    if type(obj) is dict:
        return {k: to_cpu(v) for k, v in obj.items()}  # type: ignore[return-value, attr-defined]
    return obj


def _cat(parts: Sequence[Optional[Tensor]], dim: int = 0) -> Optional[Tensor]:
    """The parts joined along ``dim``; ``None`` if any part is ``None``."""
    if any(p is None for p in parts):
        return None
    return torch.cat(list(parts), dim)  # type: ignore[arg-type]


def _cat_steps(parts: Sequence[Optional[Tensor]], pad_with_last: bool) -> Optional[Tensor]:
    """Per-step tensors (T, B) joined along the images; a block that ran fewer steps (an adaptive
    schedule) is padded at the end with its last row (betas: annealing done) or zeros (step sizes)."""
    if any(p is None for p in parts):
        return None
    steps = max(p.shape[0] for p in parts)  # type: ignore[union-attr]
    padded = []
    for p in parts:
        assert p is not None
        if p.shape[0] < steps:
            fill = p[-1:].expand(steps - p.shape[0], *p.shape[1:]) if pad_with_last and p.shape[0] else \
                p.new_zeros((steps - p.shape[0], *p.shape[1:]))
            p = torch.cat([p, fill])
        padded.append(p)
    return torch.cat(padded, 1)


def cat_inversions(parts: Sequence[InversionResult]) -> InversionResult:
    """The blocks' inversions as one result over all their images, in block order."""
    if len(parts) == 1:
        return parts[0]
    return InversionResult(**{f.name: _cat([getattr(p, f.name) for p in parts])
                              for f in dataclasses.fields(InversionResult)})


def cat_ais(parts: Sequence[AISResult]) -> AISResult:
    """The blocks' AIS runs as one result (per-image fields joined; ``n_steps`` the longest block's)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return dataclasses.replace(
        first, log_likelihood=_cat([p.log_likelihood for p in parts]), log_weights=_cat([p.log_weights for p in parts]),
        acceptance=_cat([p.acceptance for p in parts]), latents=_cat([p.latents for p in parts]),
        step_sizes=_cat_steps([p.step_sizes for p in parts], pad_with_last=False),
        betas=_cat_steps([p.betas for p in parts], pad_with_last=True),
        resamples=_cat([p.resamples for p in parts]), n_steps=max(p.n_steps for p in parts))


def cat_proposals(parts: Sequence[Optional[Proposal]]) -> Optional[Proposal]:
    """The blocks' proposals as one over all their images, for the proposal types the audit builds
    (isotropic Gaussians of one scale; Gaussian / Laplace mixtures of one number of components);
    ``None`` for any other mix (nothing downstream needs it: each block's own proposal did its work)."""
    if len(parts) == 1:
        return parts[0]
    if all(type(p) is IsotropicGaussian for p in parts) and len({p.scale for p in parts}) == 1:  # type: ignore[union-attr]
        return IsotropicGaussian(torch.cat([p.mean for p in parts]), parts[0].scale)  # type: ignore[union-attr]
    kind = type(parts[0])
    if kind in (GaussianMixture, LaplaceMixture) and all(type(p) is kind for p in parts) \
            and len({p.n_components for p in parts}) == 1:  # type: ignore[union-attr]
        cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
        if kind is LaplaceMixture:
            return LaplaceMixture(cat("means"), cat("chol"), cat("log_weights"), cat("log_evidence"), cat("kept"),
                                  parts[0].dtype)  # type: ignore[union-attr]
        return GaussianMixture(cat("means"), cat("chol"), cat("log_weights"), parts[0].dtype)  # type: ignore[union-attr]
    return None


def cat_bdmc(parts: Sequence[BDMCResult]) -> BDMCResult:
    """The blocks' BDMC runs as one result: bounds, simulated images, latents, both AIS runs and the
    proposal joined in block order."""
    if len(parts) == 1:
        return parts[0]
    return BDMCResult(lower=torch.cat([p.lower for p in parts]), upper=torch.cat([p.upper for p in parts]),
                      data=torch.cat([p.data for p in parts]), latents=torch.cat([p.latents for p in parts]),
                      forward=cat_ais([p.forward for p in parts]), reverse=cat_ais([p.reverse for p in parts]),
                      proposal=cat_proposals([p.proposal for p in parts]))
