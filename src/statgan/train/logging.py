"""Run logging: one JSON object per logging step in ``metrics.jsonl``; TensorBoard when installed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..errors import ConfigError


def tensorboard_writer_class(required: bool) -> Optional[type]:
    """torch's SummaryWriter if TensorBoard is installed; ConfigError if ``required`` and it is not."""
    try:
        # optional dependency, and slow to import: only when a run logs to TensorBoard
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    except ImportError:
        if required:
            raise ConfigError(
                "train.tensorboard=true but TensorBoard is not installed; pip install 'statgan[tensorboard]' or set train.tensorboard=auto"
            ) from None
        return None


class MetricsLog:
    """Append-only JSONL log that survives resume: records after the resume step are dropped first,
    so an interrupted run that logged past its last checkpoint does not end up with duplicates."""

    def __init__(self, run_dir: Path, resume_step: Optional[int] = None, tensorboard: Union[bool, str] = "auto") -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard is not False:
            writer = tensorboard_writer_class(required=tensorboard is True)
            if writer is not None:
                self._tb = writer(log_dir=str(Path(run_dir) / "tensorboard"))

    def _truncate(self, step: int) -> None:
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if isinstance(rec, dict) and rec.get("step", 0) <= step:
                kept.append(line)
        self.path.write_text("".join(l + "\n" for l in kept))

    def rewind(self, step: int) -> None:
        """Drop the records after ``step`` (a NaN rollback to ``step``: they belong to a discarded path)."""
        self._fh.close()
        self._truncate(step)
        self._fh = open(self.path, "a", encoding="utf-8")

    def log(self, record: Dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._fh.write(json.dumps(clean) + "\n")
        self._fh.flush()
        if self._tb is not None:
            step = int(record["step"])
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


class NullLog:
    """What ranks other than 0 log to: nothing."""

    def log(self, record: Dict[str, Any]) -> None:
        pass

    def rewind(self, step: int) -> None:
        pass

    def close(self) -> None:
        pass
