"""Whether a training step's numbers depend on the number of torch CPU threads.

``statgan train`` without ``train.threads`` moves between one and two threads while a run goes on
(:class:`statgan.runtime.threads.ThreadTuner`: one thread while a busy neighbour takes a core). That
is harmless only where the CPU kernels give the same bits with either count. On the machines the
project's CI ran on until then, the default networks' step did; on a 2-core AMD EPYC with AVX-512 BF16
(2026-12-07) the weight gradients of the one-channel convolutions (G's output layer, D's input layer)
differed in the eighth digit between one and two threads, so a tuned run's result would have
depended on the machine's load. :func:`step_depends_on_threads` checks the run's own networks before
the tuner is attached: one forward and backward pass of copies of G and D on a batch of the run's
shape with each thread count, every gradient compared bit for bit, under the run's own precision
(a bf16 run's autocast kernels are other kernels than fp32's). The networks, their BatchNorm
statistics and the global random state are left as they were; it costs two small steps.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Callable, ContextManager, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..runtime.seeding import seed_global, stream_generator

__all__ = ["step_depends_on_threads", "thread_tuner_for"]


def _grads(G: nn.Module, D: nn.Module, z: Tensor, x: Tensor, autocast: Callable[[], ContextManager[Any]]) -> List[Tensor]:
    """Gradients of a D-side and a G-side loss w.r.t. every parameter of fresh copies of G and D,
    forward passes under ``autocast()`` and backward outside it, as the trainer does (dropout masks
    from one fixed stream, so that each thread count draws the same ones)."""
    G, D = copy.deepcopy(G).train(), copy.deepcopy(D).train()
    params = [p for p in (*G.parameters(), *D.parameters()) if p.requires_grad]
    with torch.random.fork_rng(devices=[]):
        seed_global("thread_probe_masks")
        with autocast():
            loss = D(G(z)).float().mean() - D(x).float().mean()
        return list(torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True))


def step_depends_on_threads(G: nn.Module, D: nn.Module, z: Tensor, x: Tensor, counts: Sequence[int] = (1, 2),
                            autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> bool:
    """True when one forward/backward pass of G and D on latents ``z`` and real images ``x`` (forward
    passes under ``autocast()``: the run's precision) gives gradients that are not bit-identical
    across the torch thread ``counts``; the thread count in force before the call is restored."""
    before = torch.get_num_threads()
    results: List[Tuple[Tensor, ...]] = []
    try:
        for n in counts:
            torch.set_num_threads(n)
            results.append(tuple(_grads(G, D, z, x, autocast)))
    finally:
        torch.set_num_threads(before)
    first = results[0]
    return any(not all(torch.equal(a, b) for a, b in zip(first, other)) for other in results[1:])


def thread_tuner_for(trainer: Any, make_tuner: Callable[[], Any]) -> Optional[Any]:
    """``make_tuner()`` for a trainer whose numbers cannot change when the tuner switches threads:
    one on a GPU (the tuner leaves a GPU run's threads alone) or on a CPU where
    :func:`step_depends_on_threads` says no for the trainer's G and D at its per-rank batch size
    (under the trainer's ``precision``: its autocast and memory layout; random inputs of the run's
    shapes: the kernels' choice depends on shapes, not values); None otherwise. A tuner switched off
    (``STATGAN_THREAD_TUNER=0``) never switches, so it is returned without the check."""
    tuner = make_tuner()
    if trainer.device.type != "cpu" or not getattr(tuner, "enabled", True):
        return tuner
    g = stream_generator("thread_probe")
    n = max(1, trainer.cfg.train.batch_size // trainer.world.size)
    z = torch.randn(n, trainer.cfg.model.latent_dim, generator=g)
    x = torch.rand((n, *trainer.data_shape), generator=g) * 2 - 1
    precision = getattr(trainer, "precision", None)  # statgan.train.precision.Precision
    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext
    if precision is not None:
        x, autocast = precision.input(x), precision.autocast
    return None if step_depends_on_threads(trainer.G, trainer.D, z, x, autocast=autocast) else tuner
