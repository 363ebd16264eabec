"""The compute device named in a config or on the command line."""

from __future__ import annotations

import torch

from ..errors import StatganError


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; a named device that is absent is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StatganError(f"run.device={name!r} but CUDA is not available on this machine; use run.device=auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StatganError("run.device='mps' but Apple MPS is not available on this machine; use run.device=auto or cpu")
    return torch.device(name)
