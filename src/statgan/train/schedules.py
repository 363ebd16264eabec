"""Hyper-parameter schedules: one mechanism that moves any scalar setting over the run.

A config's ``schedules`` section maps a dotted setting to how it moves (R3GAN, for example, lowers
the learning rate by a cosine, ramps Adam's β₂ up and the R1/R2 weight down)::

    schedules:
      train.lr_g: {to: 5.0e-5, kind: cosine}            # from the configured value to 5e-5
      train.betas.1: {from: 0.9, to: 0.99, end: 0.2}    # linear ramp over the first 20 % of the steps
      regularizers.r1.weight: {to: 0.1}

With t = step / train.steps and u = clip((t − begin) / (end − begin), 0, 1), the value is

.. math:: v(t) = v_0 + (v_1 - v_0)\\,s(u), \\qquad s(u) = u\\ \\text{(linear)} \\ \\text{or}\\ (1 - \\cos \\pi u)/2\\ \\text{(cosine)},

``v_0`` = ``from`` (default: the configured value) and ``v_1`` = ``to``; ``begin`` defaults to 0 and
``end`` to 1. The value is a pure function of the step, so resumed runs follow the same path.

What can be scheduled: ``train.lr_g``, ``train.lr_d``, ``train.betas.0``/``train.betas.1`` (both
optimizers), and any float attribute of the objective (``objective.PARAM``) or of a regulariser in
use (``regularizers.NAME.PARAM``). The trainer applies the values before every step through setters
that :class:`ScheduleTargets` resolves once, so an unknown target is a one-line error before the
run directory exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence

from ..config import Config
from ..errors import ConfigError

Setter = Callable[[float], None]


@dataclass(frozen=True)
class Schedule:
    """One scheduled setting (see the module docstring for the formula)."""

    key: str
    start_value: float
    end_value: float
    kind: str = "linear"
    begin: float = 0.0
    end: float = 1.0

    def at(self, step: int, total: int) -> float:
        """The value for the step that follows ``step`` completed steps of ``total``."""
        t = step / max(total, 1)
        u = min(max((t - self.begin) / (self.end - self.begin), 0.0), 1.0)
        shape = u if self.kind == "linear" else 0.5 * (1.0 - math.cos(math.pi * u))
        return self.start_value + (self.end_value - self.start_value) * shape


def configured_value(cfg: Config, key: str) -> float:
    """The value ``key`` has in the config (a schedule's default start); ConfigError if there is none."""
    node: Any = cfg.to_dict()
    for part in key.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ConfigError(f"schedules.{key}: the config does not set {key!r}, so the schedule needs an explicit 'from'")
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise ConfigError(f"schedules.{key}: {key}={node!r} is not a number")
    return float(node)


def build_schedules(cfg: Config) -> List[Schedule]:
    """The config's schedules (their specs were checked when the config was loaded)."""
    out = []
    for key, spec in cfg.schedules.items():
        start = float(spec["from"]) if "from" in spec else configured_value(cfg, key)
        out.append(Schedule(key, start, float(spec["to"]), spec.get("kind", "linear"),
                            float(spec.get("begin", 0.0)), float(spec.get("end", 1.0))))
    return out


class ScheduleTargets:
    """Setters for the live objects a schedule can move: learning rates (the trainer combines them
    with warm-up and rollback scaling), Adam's betas, and float attributes of the objective and
    the regularisers."""

    def __init__(self, lrs: Dict[str, float], optimizers: Sequence[Any], objective: Any, regularizers: Any) -> None:
        self.lrs = lrs
        self._optimizers = list(optimizers)
        self._objective = objective
        self._regularizers = regularizers

    def _set_beta(self, index: int) -> Setter:
        def set_beta(value: float) -> None:
            for opt in self._optimizers:
                for group in opt.param_groups:
                    betas = list(group["betas"])
                    betas[index] = value
                    group["betas"] = tuple(betas)
        return set_beta

    def _set_lr(self, name: str) -> Setter:
        def set_lr(value: float) -> None:
            self.lrs[name] = value
        return set_lr

    @staticmethod
    def _set_attribute(owner: Any, attr: str, key: str) -> Setter:
        if isinstance(getattr(owner, attr, None), bool) or not isinstance(getattr(owner, attr, None), float):
            raise ConfigError(f"schedules.{key}: {key} is not a number this run can change while it trains")

        def set_attribute(value: float) -> None:
            setattr(owner, attr, value)
        return set_attribute

    def setter(self, key: str) -> Setter:
        """The setter for ``key``; one-line ConfigError naming what can be scheduled otherwise."""
        section, _, rest = key.partition(".")
        if key in ("train.lr_g", "train.lr_d"):
            return self._set_lr(rest)
        if key in ("train.betas.0", "train.betas.1"):
            return self._set_beta(int(key[-1]))
        if section == "objective" and rest and "." not in rest:
            return self._set_attribute(self._objective, rest, key)
        if section == "regularizers" and rest.count(".") == 1:
            name, attr = rest.split(".")
            try:
                member = self._regularizers[name]
            except KeyError:
                raise ConfigError(f"schedules.{key}: regularizer {name!r} is not switched on in this run") from None
            return self._set_attribute(member, attr, key)
        raise ConfigError(f"schedules.{key}: cannot be scheduled; allowed: train.lr_g, train.lr_d, train.betas.0, "
                          "train.betas.1, objective.PARAM, regularizers.NAME.PARAM")


class ScheduleRunner:
    """Applies every schedule before each step."""

    def __init__(self, schedules: Sequence[Schedule], targets: ScheduleTargets, total: int) -> None:
        self.schedules = list(schedules)
        self.total = total
        self._setters = [(s, targets.setter(s.key)) for s in self.schedules]  # resolve (and check) all now

    def apply(self, step: int) -> Dict[str, float]:
        """Set every scheduled value for the step after ``step``; returns them (for the log)."""
        values = {}
        for schedule, setter in self._setters:
            values[schedule.key] = value = schedule.at(step, self.total)
            setter(value)
        return values
