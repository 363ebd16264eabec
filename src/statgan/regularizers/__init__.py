"""Regularisers that compose with every objective (EMA now; relaxation, gradient penalties, SAM and
MC dropout follow the Bayesian-view issue)."""

from .ema import EMA

__all__ = ["EMA"]
