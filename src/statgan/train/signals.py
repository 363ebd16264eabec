"""Stopping on SIGINT/SIGTERM: the first signal asks the loop to checkpoint and stop after the
current step; a second one stops at once (checkpoints are written atomically, so that is safe)."""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Iterator, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Whether, and by which signal, the training loop has been asked to stop."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        #: why the stop was asked for when it was not a signal (shown in the status and the error)
        self.reason: Optional[str] = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGTERM, reason: Optional[str] = None) -> None:
        """Ask for a stop after the current step (what the first SIGINT/SIGTERM does); a caller that
        is not a signal says why in ``reason``."""
        self.signum, self.reason = signum, reason

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum

    @contextlib.contextmanager
    def handlers(self) -> Iterator[None]:
        """SIGINT and SIGTERM handled by this object inside the block, the previous handlers after it.

        Python delivers signals to the main thread only, and only it may install handlers: in any
        other thread (a trainer run from a worker thread) this does nothing.
        """
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                previous[s] = signal.signal(s, self._handle)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


__all__ = ["STOP_SIGNALS", "StopRequest"]
