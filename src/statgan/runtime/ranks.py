"""This process's rank under torchrun, read from the environment (no torch: the CLI asks before it
knows whether its command needs torch at all)."""

from __future__ import annotations

import os


def env_rank() -> int:
    """``RANK`` as torchrun sets it (0 when unset); readable before the process group exists."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0
