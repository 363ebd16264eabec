"""Regularisers that compose with every objective: the Bayesian view of GANs in practice
(Filippone & Linhard 2025), plus the generator EMA.

Configured in the ``regularizers:`` section of a run config, one entry per regulariser with its
parameters (an entry is on when present; ``true`` means "with defaults", ``false``/``null`` off)::

    regularizers:
      relaxation: {sigma: 0.1, schedule: linear, decay_steps: 2000}   # relaxation.py
      param_grad: {weight: 0.01}                                       # gradient.py
      sam: {rho: 0.5}                                                  # sam.py
      mc_dropout: {p: 0.1, n_mcd: 2}                                   # dropout.py
      sharpness: {every: 100}                                          # sharpness.py (a probe)
      path_length: {weight: 2, every: 4}                               # pathlength.py (generators with w)
      grow: {start: 7, stable: 1000, fade: 1000}                       # grow.py (progressive growing)
      recon: {weight: 1}                                               # reconstruction.py (FastGAN's D)

or from the command line: ``statgan train regularizers.sam.rho=0.5 regularizers.r1.weight=10``.
The trainer drives them only through the hooks of :class:`~statgan.regularizers.base.Regularizer`
(see base.py); it knows no regulariser or objective by name. Formulas: docs/regularizers.md.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..objectives import Objective
from ..registry import PLUGIN_GROUPS, Registry

REGULARIZERS = Registry("regularizer", named_classes=True, group=PLUGIN_GROUPS["regularizer"])

from .base import LossContext, ProbeContext, Regularizer, RegularizerSet  # noqa: E402
from . import dropout, gradient, relaxation, sam, sharpness  # noqa: E402,F401  (register members)
from . import augment  # noqa: E402,F401  (registers augment)
from . import pathlength  # noqa: E402,F401  (registers path_length)
from . import grow  # noqa: E402,F401  (registers grow)
from . import reconstruction  # noqa: E402,F401  (registers recon)
from .augment import DiffAugment  # noqa: E402
from .dropout import MCDropout, mc_dropout  # noqa: E402
from .ema import EMA  # noqa: E402
from .grow import ProgressiveGrowing  # noqa: E402
from .gradient import InterpolateGradPenalty, ParamGradPenalty, R1Penalty, R2Penalty, SampleGradPenalty  # noqa: E402
from .pathlength import PathLengthPenalty  # noqa: E402
from .reconstruction import SelfSupervisedReconstruction  # noqa: E402
from .relaxation import Relaxation  # noqa: E402
from .sam import SAM, SharpnessAware  # noqa: E402
from .sharpness import SharpnessProbe, fixed_batch_sharpness, top_hessian_eigenvalue  # noqa: E402


def get(name: str, **params: Any) -> Regularizer:
    """Build the regulariser registered as ``name``; one-line ConfigError on bad names or values."""
    return REGULARIZERS.build(name, **params)


def build(section: Optional[Mapping[str, Mapping[str, Any]]], objective: Optional[Objective] = None) -> RegularizerSet:
    """A :class:`RegularizerSet` from the config's ``regularizers`` mapping (name -> parameters);
    with ``objective``, each regulariser checks that it can work with it."""
    regs = RegularizerSet([get(name, **dict(params or {})) for name, params in (section or {}).items()])
    if objective is not None:
        regs.check(objective)
    return regs


def names() -> list:
    return REGULARIZERS.names()


__all__ = [
    "REGULARIZERS",
    "Regularizer",
    "RegularizerSet",
    "LossContext",
    "ProbeContext",
    "get",
    "build",
    "names",
    "EMA",
    "DiffAugment",
    "Relaxation",
    "PathLengthPenalty",
    "ParamGradPenalty",
    "SampleGradPenalty",
    "R1Penalty",
    "R2Penalty",
    "InterpolateGradPenalty",
    "SAM",
    "SharpnessAware",
    "SharpnessProbe",
    "top_hessian_eigenvalue",
    "fixed_batch_sharpness",
    "MCDropout",
    "mc_dropout",
]
