"""The registry of reproductions, ``statgan reproduce NAME``'s names: each member is checked against
:class:`~statgan.experiments.protocol.Reproduction` as it is registered here."""

from __future__ import annotations

from . import bridging
from .protocol import ReproductionRegistry

REPRODUCTIONS = ReproductionRegistry("reproduction")
REPRODUCTIONS.register()(bridging)  # its NAME, "bridging"


__all__ = ["REPRODUCTIONS"]
