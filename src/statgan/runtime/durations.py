"""Durations as people read them in projections ("~40 s", "~7.5 min", "~3.2 h")."""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """Seconds below 90, minutes below 90, hours beyond."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
