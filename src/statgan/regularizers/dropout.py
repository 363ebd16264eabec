r"""Monte-Carlo dropout (Gal & Ghahramani 2016) in the generator and discriminator.

Training: the networks get dropout of rate p in their dropout slots — whole-channel
``nn.Dropout2d`` after the middle DCGAN blocks (Filippone & Linhard: after the 2nd and 3rd blocks at
64 px), element-wise ``nn.Dropout`` after every hidden MLP layer — and each update averages
``n_mcd`` loss evaluations with fresh masks,

.. math:: L = \frac1{n}\sum_{m=1}^{n} L(\text{mask}_m).

As in the reference code, the discriminator step re-evaluates D on the same real and generated
batch (fresh D masks); the generator step re-runs G(z) on the same latents (fresh G and D masks).

Sampling: a network trained this way is read as an approximate Bayesian posterior over weights;
``statgan sample RUN --mc-dropout`` keeps dropout on at test time with one fresh mask per image —
dropout layers draw an independent mask for every sample of a batch (``Dropout2d`` a
(B, C, 1, 1) channel mask, ``Dropout`` a (B, F) one) — while BatchNorm stays in eval mode (running
statistics), so an image does not depend on the others in its batch.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional

import torch
from torch import nn

from ..errors import StatganError
from ..objectives.base import Objective
from ..runtime.seeding import seed_global
from ..runtime.validation import check_int, check_rate
from . import REGULARIZERS
from .base import DISCRIMINATOR, Regularizer, check_nets, require_discriminator

#: every torch dropout layer (Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout)
DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)


def dropout_modules(net: nn.Module) -> List[nn.Module]:
    """The dropout layers of ``net`` (with a rate > 0)."""
    return [m for m in net.modules() if isinstance(m, DROPOUT_TYPES) and getattr(m, "p", 0.0) > 0]


@contextlib.contextmanager
def mc_dropout(net: nn.Module, seed: Optional[int] = None) -> Iterator[nn.Module]:
    """Sample with dropout on: ``net`` in eval mode except its dropout layers.

    With ``seed`` the masks come from a forked global RNG seeded from it (reproducible, and the
    caller's RNG is untouched). Restores every module's train/eval flag afterwards. Raises
    StatganError when ``net`` has no dropout layer.
    """
    layers = dropout_modules(net)
    if not layers:
        raise StatganError(
            "the generator has no dropout layers; train with regularizers.mc_dropout.p=0.1 (or model.generator.dropout) to sample with MC dropout"
        )
    flags = [(m, m.training) for m in net.modules()]
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    devices = [device] if device.type == "cuda" else []
    try:
        net.eval()
        for m in layers:
            m.train()
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                seed_global("mc_dropout", seed)
            yield net
    finally:
        for m, flag in flags:
            m.training = flag


@REGULARIZERS.register()
class MCDropout(Regularizer):
    """Dropout of rate ``p`` in the networks' dropout slots and ``n_mcd`` Monte-Carlo loss
    evaluations averaged per update.

    Args:
        p: dropout rate, 0 ≤ p < 1 (default 0.1, the paper's CIFAR-10 example). Sets
            ``model.generator.dropout`` / ``model.discriminator.dropout`` (so do not set those too).
        n_mcd: masks (loss evaluations) averaged per update, ≥ 1 (default 1).
        nets: ``both`` (default), ``g`` or ``d``: where dropout goes.
    """

    name = "mc_dropout"
    network_keys = ("dropout",)

    def __init__(self, p: float = 0.1, n_mcd: int = 1, nets: str = "both") -> None:
        what = "regularizers.mc_dropout"
        self.p = check_rate("p", p, owner=what)
        self.n_mcd = check_int("n_mcd", n_mcd, owner=what)
        self.nets = check_nets(what, nets)

    def check(self, objective: Objective) -> None:
        if self.nets == (DISCRIMINATOR,):
            require_discriminator("regularizers.mc_dropout with nets=d", objective)

    def network_params(self, family: str) -> Dict[str, Any]:
        return {"dropout": self.p} if family in self.nets else {}

    def evaluations(self, net: str) -> int:
        if self.p == 0.0:
            return 1
        # D's loss varies only with D's masks (its inputs are fixed); G's with G's and D's masks
        if net == DISCRIMINATOR:
            return self.n_mcd if DISCRIMINATOR in self.nets else 1
        return self.n_mcd

    def extra_repr(self) -> str:
        return f"p={self.p:g}, n_mcd={self.n_mcd}, nets={self.nets}"


__all__ = ["DROPOUT_TYPES", "dropout_modules", "mc_dropout", "MCDropout"]
