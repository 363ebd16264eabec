"""One family of checks for values that come from users (configs, command lines, API calls).

Every check returns the value in its canonical type or raises a one-line
:class:`~statgan.errors.ConfigError` (a ``ValueError``) naming the offending value and what was
expected. Two message shapes, chosen by ``owner``:

* ``check_int("width", 0, owner="dcgan generator")`` → ``dcgan generator: width=0 must be an integer >= 1``
  (config sections, where the owner is the section or network);
* ``check_int("n_steps", 0)`` → ``n_steps must be an integer >= 1, got 0`` (function arguments).

Bools are rejected wherever a number is expected, although Python counts them as ints: ``true`` for
a width is a config mistake.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Iterable, Optional

from ..errors import ConfigError


def _fail(key: str, value: Any, expected: str, owner: Optional[str]) -> ConfigError:
    if owner is not None:
        return ConfigError(f"{owner}: {key}={value!r} {expected}")
    return ConfigError(f"{key} {expected}, got {value!r}")


def check_int(key: str, value: Any, minimum: int = 1, *, owner: Optional[str] = None) -> int:
    """``value`` as an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise _fail(key, value, f"must be an integer >= {minimum}", owner)
    return int(value)


def check_positive(key: str, value: Any, allow_zero: bool = False, *, owner: Optional[str] = None) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``)."""
    kind = "non-negative" if allow_zero else "positive"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _fail(key, value, f"must be a {kind} number", owner) from None
    if isinstance(value, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise _fail(key, value, f"must be a finite {kind} number", owner)
    return v


def check_rate(key: str, value: Any, *, owner: Optional[str] = None) -> float:
    """A probability ``0 <= p < 1`` (a dropout rate of 1 would zero every activation)."""
    # ``not (0 <= p < 1)`` also catches NaN
    if isinstance(value, bool) or not isinstance(value, Real) or not (0.0 <= float(value) < 1.0):
        raise _fail(key, value, f"must be a number with 0 <= {key} < 1", owner)
    return float(value)


def check_choice(key: str, value: Any, choices: Iterable[str], *, owner: Optional[str] = None) -> str:
    """``value`` lower-cased if it is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value.lower() not in choices:
        raise _fail(key, value, f"is not one of: {', '.join(choices)}", owner)
    return value.lower()


def check_bool(key: str, value: Any, *, owner: Optional[str] = None) -> bool:
    """``value`` if it is a bool (``1`` or ``"yes"`` are config mistakes)."""
    if not isinstance(value, bool):
        raise _fail(key, value, "must be true or false", owner)
    return value
