"""This process's rank and the number of processes under torchrun, read from the environment (no
torch: the CLI asks before it knows whether its command needs torch at all)."""

from __future__ import annotations

import os

from ..errors import StatganError


def env_rank() -> int:
    """``RANK`` as torchrun sets it (0 when unset); readable before the process group exists."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise StatganError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None
