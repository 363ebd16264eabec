"""Cell records, typed: what a finished cell of the Bridging grid measured, read from and written to
the JSON records the grid runner keeps (``OUT/cells/<key>.json``, ``OUT/records.jsonl``, the committed
``docs/reproductions/bridging-small.jsonl``).

The JSON format does not change: :meth:`CellRecord.from_record` parses a record at the boundary and
:meth:`CellRecord.to_record` writes the same dictionary back (a record holding every field round-trips
exactly); everything after the boundary reads attributes. A record that lacks what its kind needs is
a one-line :class:`~statgan.errors.StatganError` naming the cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional, Type, Union

from ...errors import StatganError
from .specs import CellSpec, parse_spec


@dataclass(frozen=True)
class Floor:
    """The measured FID floor: the FID split against the training images, same extractor."""

    fid: float
    extractor: str
    reference: str
    generated: str

    def to_dict(self) -> Dict[str, Any]:
        return {"fid": self.fid, "fid_extractor": self.extractor, "fid_reference": self.reference,
                "fid_generated": self.generated}

    @classmethod
    def from_dict(cls, result: Mapping[str, Any]) -> "Floor":
        return cls(result["fid"], result["fid_extractor"], result["fid_reference"], result["fid_generated"])


class _Flat:
    """A result stored as a flat dictionary with one key per field. Absent metrics read as ``nan``
    (or None); ``to_dict`` writes every field, except optional ones that are None and marked
    ``omit`` (a metric only some cells have)."""

    _OMIT_IF_NONE: tuple = ()

    def to_dict(self) -> Dict[str, Any]:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self._OMIT_IF_NONE:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, result: Mapping[str, Any]) -> Any:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in result.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class ImageResult(_Flat):
    """What an image run measured (:func:`statgan.experiments.bridging.running.run_image`)."""

    fid: float = math.nan
    fid_extractor: Optional[str] = None
    fid_reference: Optional[str] = None
    #: top Hessian eigenvalue on the fixed evaluation batch, eval mode
    sharpness: Optional[float] = None
    sharpness_n: Optional[int] = None
    sharpness_s: Optional[float] = None
    #: the in-training probe on the last training batch (the old statistic; for comparison only)
    sharpness_last_batch: Optional[float] = None
    steps: Optional[int] = None
    batch_size: Optional[int] = None
    epochs: Optional[float] = None
    train_s: Optional[float] = None
    eval_s: Optional[float] = None


@dataclass(frozen=True, kw_only=True)
class ToyResult(_Flat):
    """What a toy run measured (:func:`statgan.experiments.bridging.running.run_toy`)."""

    _OMIT_IF_NONE = ("chi2_rms",)

    logp_mean: float = math.nan
    logp_data: float = math.nan
    in_support: float = math.nan
    kde_test_ll: float = math.nan
    kde_bandwidth: Optional[float] = None
    train_s: Optional[float] = None
    #: only for a standard-normal density
    chi2_rms: Optional[float] = None
    eval_s: Optional[float] = None


CellResult = Union[Floor, ImageResult, ToyResult]
#: the result type of each kind of cell
RESULTS: Mapping[str, Type[Any]] = {"floor": Floor, "mnist": ImageResult, "toy": ToyResult}


@dataclass(frozen=True)
class CellRecord:
    """One finished cell: its spec, what it measured (``result``) or why it failed (``error``),
    and its cost (wall-clock and CPU seconds, the time it finished)."""

    key: str
    spec: CellSpec
    spec_hash: Optional[str] = None
    result: Optional[CellResult] = None
    error: Optional[str] = None
    wall_s: Optional[float] = None
    cpu_s: Optional[float] = None
    #: ``%Y-%m-%dT%H:%M:%S`` local time
    finished: Optional[str] = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "CellRecord":
        """Parse a JSON record; a one-line StatganError when it lacks what its kind needs."""
        key = record.get("key", "?") if isinstance(record, Mapping) else "?"
        try:
            spec = parse_spec(record["spec"])
            raw = record.get("result")
            result = RESULTS[spec.kind].from_dict(raw) if raw is not None else None
            return cls(key=record["key"], spec=spec, spec_hash=record.get("spec_hash"), result=result,
                       error=record.get("error"), wall_s=record.get("wall_s"), cpu_s=record.get("cpu_s"),
                       finished=record.get("finished"))
        except KeyError as exc:
            raise StatganError(f"cell record {key!r}: no {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise StatganError(f"cell record {key!r}: {exc}") from None

    def to_record(self) -> Dict[str, Any]:
        """The JSON record (fields that are None left out, as the grid runner writes them)."""
        out: Dict[str, Any] = {"key": self.key, "spec": self.spec.to_spec()}
        extra = {"spec_hash": self.spec_hash, "result": None if self.result is None else self.result.to_dict(),
                 "error": self.error, "wall_s": self.wall_s, "cpu_s": self.cpu_s, "finished": self.finished}
        out.update({k: v for k, v in extra.items() if v is not None})
        return out


__all__ = ["Floor", "ImageResult", "ToyResult", "CellResult", "RESULTS", "CellRecord"]
