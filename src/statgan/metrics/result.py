"""What ``statgan eval`` measured, typed: :class:`EvaluationResult` and its parts.

The JSON file (``RUN/eval/*.json``, or ``--out``) is :meth:`EvaluationResult.to_dict`; its keys are
those the result files always had (``metrics``, ``labels``, ``failures``, ``extractor``,
``reference``, ``generated``, ``versions``, ``time``, ``seconds``), with optional fields left out
when unset, so readers of older files (:func:`statgan.audit.rundata.run_fid`,
:mod:`statgan.rundir.catalog`) read new ones unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ..generator_source import GeneratorIdentity

__all__ = ["EvaluationResult", "ExtractorInfo", "GeneratedInfo", "ReferenceInfo"]


def _optional() -> Any:
    """A field left out of the JSON while it is None (as the files written before this type had it)."""
    return field(default=None, metadata={"omit_none": True})


@dataclass(slots=True, kw_only=True)
class ExtractorInfo:
    """The feature space: every metric is labelled with ``id`` (e.g. ``lenet-1a2b3c4d``)."""

    name: str
    id: str
    dim: int
    preprocessing: str
    weights_sha256: Optional[str] = None


@dataclass(slots=True, kw_only=True)
class ReferenceInfo:
    """The images the samples were compared with."""

    source: str
    n: int
    split: Optional[str] = _optional()  # ``--reference`` as given (a run's split or an image set)
    max_reference: Optional[int] = None  # None: no cap (written as null, as always)
    n_available: Optional[int] = _optional()
    subset: Optional[str] = _optional()  # "all" or "random" (a seeded subset of ``max_reference`` images)
    subset_seed: Optional[int] = _optional()
    subset_sha256: Optional[str] = _optional()
    note: Optional[str] = _optional()
    cached: Optional[bool] = _optional()  # the statistics came from the cache


@dataclass(slots=True, kw_only=True)
class GeneratedInfo:
    """The samples: from a generator (which one, seed) or an image set (``source`` only)."""

    source: str
    n: int
    run: Optional[str] = _optional()  # the GENERATOR as given
    step: Optional[int] = _optional()  # a run's checkpoint step
    weights: Optional[str] = _optional()  # a run's "EMA" or "raw"
    seed: Optional[int] = _optional()
    generator: Optional[GeneratorIdentity] = _optional()


@dataclass(slots=True, kw_only=True)
class EvaluationResult:
    """One evaluation: ``metrics`` by name (``labels`` name each with its feature space),
    ``failures`` the metrics that could not be computed and why; ``path`` the JSON written, if any."""

    metrics: Dict[str, float]
    labels: Dict[str, str]
    failures: Dict[str, str]
    extractor: ExtractorInfo
    reference: ReferenceInfo
    generated: GeneratedInfo
    versions: Dict[str, str]
    time: str
    seconds: float
    path: Optional[str] = field(default=None)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form (without ``path``, which is where it was written): optional fields that
        are unset are left out, as in the files written before this type (a run's step and seed for
        two image sets, a note nobody needed)."""
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "path":
                continue
            value = getattr(self, f.name)
            out[f.name] = _plain(value) if dataclasses.is_dataclass(value) else value
        return out


def _plain(obj: Any) -> Dict[str, Any]:
    """A dataclass as a dict, its unset optional fields left out (nested dataclasses, e.g. the
    generator's identity, in full)."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None and f.metadata.get("omit_none"):
            continue
        out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out
