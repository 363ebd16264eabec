"""Where statgan caches derived files (reference statistics, verified folder listings, converted
weights): ``$STATGAN_CACHE``, else ``~/.cache/statgan``. Never inside the installed package
(site-packages may be read-only and is shared between users)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """The cache root; not created here (whoever writes creates its own sub-folder)."""
    root = os.environ.get("STATGAN_CACHE", "").strip()
    return Path(root).expanduser() if root else Path.home() / ".cache" / "statgan"
