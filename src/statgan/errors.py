"""User-facing errors.

Every mistake a user can make (bad config value, missing dataset, corrupt checkpoint) raises a
:class:`StatganError` whose message is one line naming the offending value and what was expected.
The CLI prints it as ``statgan: error: <message>`` and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Optional


class StatganError(Exception):
    """An error caused by user input, reported as a single line without a traceback."""


class ConfigError(StatganError, ValueError):
    """A configuration key, type or value is invalid."""


class DatasetError(StatganError, FileNotFoundError):
    """A dataset is missing or malformed."""


class CheckpointError(StatganError):
    """A checkpoint is missing, corrupt or incompatible."""


class TrainingInterrupted(StatganError):
    """Raised after a checkpoint has been written in response to SIGINT/SIGTERM or a stop request
    (the CLI exits with 128 + the signal number)."""

    def __init__(self, signum: int, step: int, checkpoint: Path, reason: Optional[str] = None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        why = reason or f"{signal.Signals(signum).name} received"
        super().__init__(f"{why}: checkpoint written at step {step} ({checkpoint}); continue with: statgan train --resume {checkpoint.parent.parent}")
