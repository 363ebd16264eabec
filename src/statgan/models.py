"""What a config describes: the generator and discriminator, the objective and the regularisers.

Used by the trainer (to train them) and by :mod:`statgan.rundir.run` (to rebuild a saved run's
generator before loading its weights), so both build exactly the same networks. This is where the
parameter *values* of a config's components are validated (``config.validate`` checks names only):
the trainer builds everything before it creates the run directory, so a bad value leaves nothing
on disk.
"""

from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import nn

from . import nets, objectives, regularizers
from .config import Config
from .objectives import Objective
from .regularizers import RegularizerSet


def build_models(cfg: Config, data_shape: Tuple[int, ...]) -> Tuple[nn.Module, nn.Module]:
    """G and D of a config, with the regularisers' network parameters (e.g. MC dropout's rate);
    the networks' and regularisers' parameter values are validated here (one-line ConfigError)."""
    regs = regularizers.build(cfg.regularizers)
    g_params = regs.network_params("generator", cfg.model.generator)
    d_params = regs.network_params("discriminator", cfg.model.discriminator)
    G = nets.build_generator(cfg.model.arch, data_shape, cfg.model.latent_dim, **g_params)
    D = nets.build_discriminator(cfg.model.arch, data_shape, **d_params)
    return G, D


def data_shape_of(data: Any) -> Tuple[int, ...]:
    """The shape of one example of a dataset (a tensor (N, ...) or an indexable dataset)."""
    if torch.is_tensor(data):
        return tuple(data.shape[1:])
    shape = getattr(data, "shape", None)
    return tuple(shape) if shape is not None else tuple(data[0].shape)


def build_objective(cfg: Config) -> Objective:
    """The objective of a config; its constructor validates the parameter values (one-line ConfigError)."""
    return objectives.get(cfg.objective.name, **cfg.objective.params)


def build_regularizers(cfg: Config, objective: Objective) -> RegularizerSet:
    """The regularisers of a config (values validated), each checked against the objective it must
    work with (e.g. ``r1`` refuses ``gmmn``, which trains no discriminator)."""
    return regularizers.build(cfg.regularizers, objective)
