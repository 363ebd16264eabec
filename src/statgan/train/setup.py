"""What the trainer does before its first step, one function per concern: process-wide torch
settings, the checks that must fail before any process group or file exists, the networks (seeded,
placed, identical on every rank) and their optimizers."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import nn

from ..config import Config, TrainSection
from ..errors import StatganError
from ..models import build_models
from ..regularizers import RegularizerSet
from ..runtime import distributed
from ..runtime.distributed import World
from ..runtime.seeding import seed_global
from .logging import tensorboard_writer_class
from .precision import Precision

NETS = ("generator", "discriminator")


def configure_torch(t: TrainSection) -> None:
    """The process-wide torch settings of the ``train`` section (threads, deterministic kernels);
    TF32 is :class:`~statgan.train.precision.Precision`'s."""
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def check_startable(t: TrainSection, n_processes: int) -> None:
    """Checks that fail the same way on every rank, made before the process group exists (the CLI
    then lets rank 0 alone report them) and before anything is written."""
    if t.batch_size % n_processes:
        raise StatganError(f"train.batch_size={t.batch_size} is the global batch and must be divisible by the "
                           f"{n_processes} processes (each takes batch_size / {n_processes} rows)")
    if t.tensorboard is True:
        tensorboard_writer_class(required=True)


def build_networks(cfg: Config, data_shape: Tuple[int, ...], device: torch.device, precision: Precision,
                   world: World) -> Tuple[nn.Module, nn.Module]:
    """G and D initialised from ``run.seed``, on ``device`` in the precision's memory layout and
    the same on every rank. Afterwards the global RNG (dropout masks, penalty interpolation) is
    rank 0's continuation of ``run.seed``, and a stream of its own on every other rank."""
    seed_global("weights", cfg.run.seed)
    G, D = build_models(cfg, data_shape)
    G, D = G.to(device), D.to(device)
    precision.prepare(G, D, image_data=len(data_shape) == 3)
    if world.distributed:
        distributed.broadcast_module(G, D)  # same start everywhere, as DDP does
        if world.rank > 0:  # dropout masks and GP weights differ per rank, like their data
            seed_global("rank", cfg.run.seed, world.rank)
    return G, D


def build_optimizers(t: TrainSection, G: nn.Module, D: nn.Module, regularizers: RegularizerSet,
                     precision: Precision) -> Tuple[Any, Any, Dict[str, Any]]:
    """Adam for G and for D, each inside its fp16 gradient scaler (if any) and then inside the
    regularisers' wrapper (SAM), so that SAM's passes both see the scaled loss. Returns
    (opt_G, opt_D, {net: scaler or None})."""
    betas = tuple(t.betas)
    scalers = {net: precision.grad_scaler() for net in NETS}
    # the modules each update's loss runs through (D's loss sees only detached generated samples)
    opt_G = regularizers.wrap_optimizer("generator", precision.wrap_optimizer(
        torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=betas), scalers["generator"]), (G, D))
    opt_D = regularizers.wrap_optimizer("discriminator", precision.wrap_optimizer(
        torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=betas), scalers["discriminator"]), (D,))
    return opt_G, opt_D, scalers


__all__ = ["NETS", "configure_torch", "check_startable", "build_networks", "build_optimizers"]
