"""GAN objectives, one class each, registered by name.

``statgan.objectives.get(name, **params)`` builds one; unknown names or parameters raise a
one-line :class:`statgan.errors.ConfigError`.
"""

from __future__ import annotations

from typing import Any

from ..registry import PLUGIN_GROUPS, Registry

OBJECTIVES = Registry("objective", named_classes=True, group=PLUGIN_GROUPS["objective"])

from .base import Objective  # noqa: E402
from . import ratio  # noqa: E402,F401  (registers members)
from . import fgan, ipm, lsgan, relativistic, mmd  # noqa: E402,F401  (register members)
from . import rpgan  # noqa: E402,F401  (registers rpgan)


def get(name: str, **params: Any) -> Objective:
    """Build the objective registered as ``name`` (or an alias) with ``params``; the instance's
    ``name`` is the canonical one its class declares."""
    return OBJECTIVES.build(name, **params)


def names() -> list:
    return OBJECTIVES.names()


__all__ = ["OBJECTIVES", "Objective", "get", "names"]
