"""One family of checks for values that come from users (configs, command lines, API calls).

Every check returns the value in its canonical type or raises a one-line
:class:`~statgan.errors.ConfigError` (a ``ValueError``) naming the offending value and what was
expected. Two message shapes, chosen by ``owner``:

* ``check_int("width", 0, owner="dcgan generator")`` → ``dcgan generator: width=0 must be an integer >= 1``
  (config sections, where the owner is the section or network);
* ``check_int("n_steps", 0)`` → ``n_steps must be an integer >= 1, got 0`` (function arguments).

Bools are rejected wherever a number is expected, although Python counts them as ints: ``true`` for
a width is a config mistake.

Parameters whose allowed values are a statement rather than a type (``renyi: alpha=1 is not allowed
(must be > 0 and != 1)``) use :func:`check_real` or raise :func:`not_allowed` directly.
"""

from __future__ import annotations

import difflib
import math
from numbers import Integral, Real
from typing import Any, Iterable, Optional, Sequence, Tuple

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


def check_shape(key: str, value: Any, *, owner: Optional[str] = None) -> Tuple[int, ...]:
    """``value`` as a non-empty tuple of positive ints (configs may hand over a list)."""
    try:
        shape = tuple(value)
    except TypeError:
        raise _fail(key, value, "must be a sequence of positive integers", owner) from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in shape):
        raise _fail(key, value, "must be a sequence of positive integers", owner)
    return tuple(int(s) for s in shape)


def not_allowed(key: str, value: Any, allowed: str, *, owner: Optional[str] = None) -> ConfigError:
    """The error (to raise) for a value outside a rule stated in words:
    ``renyi: alpha=1 is not allowed (must be > 0 and != 1)``."""
    shown = repr(value) if isinstance(value, str) else str(value)
    return ConfigError(f"{owner + ': ' if owner is not None else ''}{key}={shown} is not allowed ({allowed})")


def check_real(
    key: str,
    value: Any,
    *,
    gt: Optional[float] = None,
    ge: Optional[float] = None,
    allowed: Optional[str] = None,
    owner: Optional[str] = None,
) -> float:
    """``value`` as a finite float, optionally ``> gt`` or ``>= ge``; ``allowed`` replaces the
    generated description of the rule in the message."""
    # Numeric strings are accepted because YAML 1.1 reads ``1e-3`` (no dot) as a string.
    x: Optional[float] = None
    if isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            pass
    elif isinstance(value, Real) and not isinstance(value, bool):
        x = float(value)
    if x is None:
        raise not_allowed(key, value, allowed or "expected a real number", owner=owner)
    if not math.isfinite(x):
        raise not_allowed(key, value, allowed or "expected a finite number", owner=owner)
    if gt is not None and not x > gt:
        raise not_allowed(key, value, allowed or f"must be > {gt:g}", owner=owner)
    if ge is not None and not x >= ge:
        raise not_allowed(key, value, allowed or f"must be >= {ge:g}", owner=owner)
    return x


def did_you_mean(key: str, options: Sequence[str]) -> str:
    """``"; did you mean 'steps'?"`` for the closest of ``options`` to a mistyped ``key``, else ``""``."""
    close = difflib.get_close_matches(key, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
