"""Several processes, one run: the process group torchrun describes, and the few collectives the
trainer needs.

Launch (one process per GPU, or per CPU socket with gloo)::

    torchrun --nproc-per-node 4 -m statgan train CONFIG key=value ...

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init`
reads them (backend ``nccl`` on CUDA, ``gloo`` otherwise). Without them (``WORLD_SIZE`` unset or 1)
every helper here is a no-op and the trainer runs exactly as a single process.

Data parallelism as in DistributedDataParallel: every rank holds the same weights, computes the
loss on its own rows of the global batch, and the gradients are averaged,

.. math:: g = \\frac1W \\sum_{r=1}^{W} \\nabla L_r, \\qquad L_r = \\text{mean over rank } r\\text{'s } B/W \\text{ rows},

which for a loss that is a mean over samples equals the gradient of the global-batch loss. Unlike
``torch.nn.parallel.DistributedDataParallel``, the averaging is one explicit, bucketed all-reduce
of ``.grad`` after each closure's backward passes (:func:`average_gradients`), not autograd hooks.
Why: one update here may run several forward passes before one backward (D on real and generated
samples, R1's extra pass), several backward passes (Monte-Carlo dropout), two closures (SAM),
double back-propagation (``param_grad``, R1, GP) and D with ``requires_grad`` switched off during
G's update — each of which trips DDP's "one forward, one backward, every parameter once" hook
bookkeeping. Averaging ``.grad`` after the closure is correct for all of them; the cost is no
overlap of communication with the backward pass (small at GAN sizes; see docs/scaling.md).

Penalties that are not means over samples need the global quantity inside the penalty, and use
:func:`all_reduce_mean_autograd` (``param_grad``: the norm of the *global* gradient) or
:func:`world_size` (``sample_grad``: ∂L/∂x_i of the global loss is (1/W)·∂L_r/∂x_i).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

import torch
from torch import Tensor, nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..errors import StatganError
from .ranks import env_world_size  # also part of this module's interface (audit, trainer)

T = TypeVar("T")

#: gradients are all-reduced in flat buckets of at most this many elements (DDP uses 25 MiB)
BUCKET_ELEMENTS = 1 << 23

_control_group: Any = None  # a gloo group for CPU-side flags when the default backend is nccl


class PeerFailed(StatganError):
    """Raised on the other ranks when rank 0's part of a collective step failed; rank 0 reports
    the error itself, so the CLI prints nothing for this one."""


@dataclass(frozen=True)
class World:
    """Where this process stands: rank, number of processes, local rank (GPU index on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _dist() -> Any:
    # torch.distributed is imported only when several processes run: some builds (macOS, some
    # CPU wheels) lack it, and single-process use must not depend on it
    import torch.distributed as dist

    return dist


def is_initialized() -> bool:
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def env_rank() -> int:
    """``RANK`` as torchrun sets it (0 when unset): this process's rank before or after the group exists."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise StatganError(f"RANK={os.environ['RANK']!r} is not an integer") from None


def local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    except ValueError:
        raise StatganError(f"LOCAL_RANK={os.environ.get('LOCAL_RANK')!r} is not an integer") from None


def rank() -> int:
    return _dist().get_rank() if is_initialized() else 0


def world_size() -> int:
    return _dist().get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one rank that writes files and logs."""
    return rank() == 0


def current() -> World:
    return World(rank(), world_size(), local_rank() if is_initialized() else 0)


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun on CUDA each process drives GPU ``LOCAL_RANK``; other devices are unchanged."""
    if env_world_size() > 1 and device.type == "cuda":
        lr = local_rank()
        if lr >= torch.cuda.device_count():
            raise StatganError(f"LOCAL_RANK={lr} but this node has {torch.cuda.device_count()} GPU(s); "
                               f"use --nproc-per-node {torch.cuda.device_count()} or fewer")
        return torch.device("cuda", lr)
    return device


def init(device: torch.device) -> World:
    """Join the process group described by torchrun's environment (once per process).

    Does nothing in a single process. ``nccl`` for CUDA devices, ``gloo`` otherwise; with nccl a
    second, gloo group carries the small CPU-side flags (stop requests) so checking them does not
    wait for the GPU.
    """
    global _control_group
    size = env_world_size()
    if size <= 1 or is_initialized():
        return current()
    dist = _dist()
    if not dist.is_available():
        raise StatganError(f"WORLD_SIZE={size} but this torch build has no torch.distributed support")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "RANK") if v not in os.environ]
    if missing:
        raise StatganError(f"WORLD_SIZE={size} is set but {', '.join(missing)} is not; launch with "
                           f"torchrun --nproc-per-node N -m statgan train|audit ...")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, init_method="env://", world_size=size, rank=env_rank(),
                                **({"device_id": device} if device.type == "cuda" else {}))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StatganError(f"cannot join the process group ({backend}, rank {env_rank()} of {size}): {first}") from None
    _control_group = dist.new_group(backend="gloo") if backend != "gloo" else None
    return current()


def cleanup() -> None:
    """Leave the process group (end of ``statgan train`` or ``statgan audit`` under torchrun)."""
    global _control_group
    if is_initialized():
        _dist().destroy_process_group()
    _control_group = None


# ---- collectives ---------------------------------------------------------------------------------
def _group_for(t: Tensor) -> Any:
    """The gloo control group for CPU tensors when the default backend (nccl) cannot take them."""
    return _control_group if t.device.type == "cpu" else None


def all_reduce_(t: Tensor, op: str = "sum") -> Tensor:
    """In-place all-reduce (``sum``, ``mean``, ``max`` or ``min``); identity in a single process."""
    if world_size() == 1:
        return t
    dist = _dist()
    ops = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    dist.all_reduce(t, op=ops[op], group=_group_for(t))
    if op == "mean":
        t.div_(world_size())
    return t


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (a CPU all-reduce; never syncs a GPU)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    _dist().all_reduce(t, op=_dist().ReduceOp.MAX, group=_control_group)
    return bool(t.item())


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` of rank ``src`` on every rank (pickled; for small control messages only)."""
    if world_size() == 1:
        return obj
    box = [obj if rank() == src else None]
    _dist().broadcast_object_list(box, src=src, group=_control_group)
    return box[0]  # type: ignore[return-value]


def all_gather_object(obj: T) -> List[T]:
    if world_size() == 1:
        return [obj]
    out: List[Any] = [None] * world_size()
    _dist().all_gather_object(out, obj, group=_control_group)
    return out


def all_gather_cat(t: Tensor) -> Tensor:
    """Concatenate every rank's ``t`` along dim 0 in rank order (first dimensions may differ)."""
    if world_size() == 1:
        return t
    dist = _dist()
    t = t.contiguous()
    sizes = torch.tensor([t.shape[0]], dtype=torch.int64, device=t.device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world_size())]
    group = _group_for(t)
    dist.all_gather(all_sizes, sizes, group=group)
    n = [int(s.item()) for s in all_sizes]
    padded = t.new_zeros((max(n),) + tuple(t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in n]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:k] for p, k in zip(parts, n)])


def shard_range(n: int) -> Tuple[int, int]:
    """This rank's contiguous share ``[start, stop)`` of ``n`` items (sizes differ by at most one)."""
    r, w = rank(), world_size()
    return n * r // w, n * (r + 1) // w


def shard_rows(x: Tensor) -> Tensor:
    """This rank's rows of a global batch (its size must be divisible by the world size)."""
    w = world_size()
    if w == 1:
        return x
    per = x.shape[0] // w
    r = rank()
    return x[r * per : (r + 1) * per]


def shard_randn(shape: Sequence[int], generator: torch.Generator, dtype: Optional[torch.dtype] = None) -> Tensor:
    """``randn(shape)`` for this rank's rows of the global batch drawn from a shared stream.

    Every rank draws the whole global batch ``(W·shape[0], ...)`` from ``generator`` (identical on
    all ranks) and keeps its rows, so the union over ranks is exactly what one process would draw
    for the global batch, and every rank's stream stays in the same state.
    """
    w = world_size()
    if w == 1:
        return torch.randn(tuple(shape), generator=generator, dtype=dtype)
    full = torch.randn((shape[0] * w,) + tuple(shape[1:]), generator=generator, dtype=dtype)
    return shard_rows(full)


# ---- gradients, weights and buffers ----------------------------------------------------------------
def _buckets(tensors: Sequence[Tensor]) -> Iterable[List[Tensor]]:
    """Consecutive groups of tensors sharing a device and dtype, each at most BUCKET_ELEMENTS long
    (a single larger tensor forms its own bucket)."""
    group: List[Tensor] = []
    size = 0
    for t in tensors:
        if group and (t.device != group[0].device or t.dtype != group[0].dtype or size + t.numel() > BUCKET_ELEMENTS):
            yield group
            group, size = [], 0
        group.append(t)
        size += t.numel()
    if group:
        yield group


def _all_reduce_mean_list(tensors: Sequence[Tensor]) -> None:
    """Average each tensor over the ranks in place, one flat all-reduce per bucket."""
    dist, w = _dist(), world_size()
    for bucket in _buckets(tensors):
        flat = _flatten_dense_tensors(bucket)
        dist.all_reduce(flat, group=_group_for(flat))
        flat.div_(w)
        for t, avg in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            t.copy_(avg)


def optimizer_params(opt: Any) -> List[Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


def average_gradients(params: Sequence[Tensor]) -> None:
    """``p.grad ← mean over ranks of p.grad`` for every parameter that has a gradient.

    Every rank runs the same code on the same model, so the same parameters have gradients
    everywhere; the averaged result is bit-identical on all ranks (an all-reduce hands every rank
    the same sums), which keeps the weights identical after the optimizer step.
    """
    if world_size() == 1:
        return
    _all_reduce_mean_list([p.grad for p in params if p.grad is not None])


def average_buffers(*modules: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks.

    Each rank's BatchNorm sees only its own rows; averaging the running mean after every step
    gives exactly the global batch's running mean (the update is linear in the batch mean), the
    running variance the mean of the per-rank variances. Integer buffers (``num_batches_tracked``)
    are identical on every rank already. Afterwards every rank (and hence the EMA copy) holds the
    same buffers.
    """
    if world_size() == 1:
        return
    bufs = [b for m in modules for b in m.buffers() if b.is_floating_point()]
    if bufs:
        _all_reduce_mean_list(bufs)


def broadcast_module(*modules: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (what DDP does at construction)."""
    if world_size() == 1:
        return
    dist = _dist()
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                dist.broadcast(t.data, src=src)


class _AllReduceMean(torch.autograd.Function):
    """y = mean over ranks of x, differentiable.

    With the trainer averaging parameter gradients over ranks afterwards, the gradient reaching x
    on each rank must be the mean over ranks of the gradients reaching y (derivation in
    docs/scaling.md); so the backward pass is the same all-reduce mean.
    """

    @staticmethod
    def forward(ctx: Any, *xs: Tensor) -> Tuple[Tensor, ...]:  # type: ignore[override]
        out = [x.detach().clone() for x in xs]
        _all_reduce_mean_list(out)
        return tuple(out)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Tuple[Tensor, ...]:  # type: ignore[override]
        out = [g.clone() if g is not None else None for g in grads]
        _all_reduce_mean_list([g for g in out if g is not None])
        return tuple(out)  # type: ignore[return-value]


def all_reduce_mean_autograd(tensors: Sequence[Tensor]) -> List[Tensor]:
    """Mean over ranks of each tensor, keeping the autograd graph (identity in one process)."""
    tensors = list(tensors)
    if world_size() == 1 or not tensors:
        return tensors
    return list(_AllReduceMean.apply(*tensors))


# ---- rank 0 does, everyone learns the outcome -------------------------------------------------------
def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank.

    If ``fn`` raises on rank 0, rank 0 re-raises the error and the other ranks raise
    :class:`PeerFailed` (so nobody waits forever in the next collective). In a single process this
    is just ``fn()``.
    """
    if world_size() == 1:
        return fn()
    result: Any = None
    failure: Optional[str] = None
    error: Optional[BaseException] = None
    if is_main():
        try:
            result = fn()
        except Exception as exc:  # re-raised below, after the others have been told
            error, failure = exc, f"{type(exc).__name__}: {exc}"
    failure, result = broadcast_object((failure, result if failure is None else None))
    if error is not None:
        raise error
    if failure is not None:
        raise PeerFailed(f"rank 0 failed: {failure}")
    return result  # type: ignore[return-value]


def peer_rng_states(device: torch.device) -> Dict[str, Tensor]:
    """The global RNG states of ranks 1..W-1 (``rng.torch.rankR``, and ``rng.cuda.rankR`` on CUDA),
    gathered on every rank; rank 0's are saved under the single-process keys by the trainer."""
    if world_size() == 1:
        return {}
    mine = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(device)
    out: Dict[str, Tensor] = {}
    for r, states in enumerate(all_gather_object(mine)):
        if r > 0:
            out.update({f"rng.{k}.rank{r}": v for k, v in states.items()})
    return out


__all__ = [
    "World", "PeerFailed", "init", "cleanup", "current", "is_initialized", "rank", "world_size", "local_rank",
    "is_main", "env_world_size", "env_rank", "device_for_rank", "all_reduce_", "any_rank",
    "broadcast_object", "all_gather_object", "all_gather_cat", "shard_range", "shard_rows", "shard_randn",
    "average_gradients", "average_buffers", "broadcast_module", "all_reduce_mean_autograd", "run_on_main",
    "optimizer_params", "peer_rng_states",
]
