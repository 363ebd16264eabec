"""The audit's typed results and their one JSON form.

:func:`statgan.audit.run.audit_run` returns an :class:`AuditSummary` and writes it as
``summary.json``; :func:`statgan.audit.run.invert_split` returns an :class:`InvertSummary`. Both are
dataclasses all the way down, so a misspelt field fails where it is misspelt (an ``AttributeError``)
instead of reading a missing key later; ``slots=True`` makes misspelt *assignments* fail too.

:func:`to_json` / :func:`from_json` are the only serialisation, driven by the fields' type hints:
dataclasses become objects, tuples lists, and non-finite floats ``null`` (JSON has no NaN/inf; the
report shows n/a), so ``from_json(to_json(s)) == s`` for every summary whose floats are finite. Two
field options keep ``summary.json`` in its established shape (``format`` ``statgan-audit/1``):
``_OMIT_NONE`` leaves a ``None`` field out (e.g. model samples have no inversion error), and
``_INLINE`` writes a dict's items beside the object's other fields (a typicality test group).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar, Union

import torch
from torch import Tensor

from ..errors import StatganError
from .settings import AuditSettings, InvertSettings

__all__ = [
    "AUDIT_FORMAT", "INVERT_FORMAT", "AuditPaths", "AuditSummary", "BDMCSummary", "Correlations", "Finding",
    "InvertSummary", "InvertedSet", "InversionRatios", "Machine", "Memorisation", "OODScores", "SetCorrelation",
    "SetSummary", "SigmaChoice", "Stats", "TypicalityGroup", "TypicalitySummary", "TypicalityTestSummary", "Versions",
    "from_json", "to_json",
]

AUDIT_FORMAT = "statgan-audit/1"
#: /2: ``settings`` is the whole :class:`InvertSettings` (it gained ``loss``).
INVERT_FORMAT = "statgan-invert/2"

#: field options (``field(metadata=...)``) read by the codec
_OMIT_NONE = {"omit_none": True}
_INLINE = {"inline": True}

T = TypeVar("T")


# ==== the pieces ====================================================================================
@dataclass(slots=True, kw_only=True)
class Stats:
    """Distribution of per-image values: count, mean, std (ddof 1), quartiles, extremes."""

    n: int
    mean: float
    std: float
    q25: float
    median: float
    q75: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Tensor) -> "Stats":
        a = torch.as_tensor(values).detach().double().cpu().flatten()
        q = torch.quantile(a, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist() if a.numel() else [math.nan] * 3
        return cls(n=int(a.numel()), mean=float(a.mean()), std=float(a.std()) if a.numel() > 1 else 0.0,
                   q25=q[0], median=q[1], q75=q[2], min=float(a.min()), max=float(a.max()))


@dataclass(slots=True, kw_only=True)
class SetSummary:
    """One image set's row. ``kind``: train, test, generated, ood, held-out (valid) or model (the
    model samples, which are not inverted and have no local variance)."""

    n: int
    kind: str
    inversion_error: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    inversion_mse: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    log_likelihood: Stats
    bits_per_dim: Stats
    ais_acceptance: Optional[float] = field(default=None, metadata=_OMIT_NONE)
    local_variance: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    # importance sampling from AIS's proposal: log p^ (nats), ESS of the is_samples weights, and the
    # proposal's distinct posterior modes per image (absent in summaries written before the Laplace proposal)
    log_likelihood_importance_sampling: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    importance_ess: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    proposal_modes: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)


@dataclass(slots=True, kw_only=True)
class SigmaChoice:
    """The observation noise and how it was chosen (``candidates`` empty when given)."""

    chosen: float
    method: str
    candidates: Tuple[float, ...] = ()
    mean_log_likelihood: Tuple[float, ...] = ()
    ais_steps: Optional[int] = field(default=None, metadata=_OMIT_NONE)


@dataclass(slots=True, kw_only=True)
class BDMCSummary:
    """BDMC on ``n_images`` model samples with the audit's own estimator: ``lower`` (forward AIS from
    the ``proposal``), ``upper`` (reverse AIS from the exact latent back to the same proposal),
    ``gap`` = upper - lower; importance sampling from that proposal (its lower bound and ESS) and
    the proposal's distinct modes per image.

    Summaries written before the Laplace proposal have no ``proposal``/importance fields; instead
    ``upper`` there is the per-image minimum of two reverse runs (biased low: a minimum of two
    stochastic upper bounds), kept in ``upper_inversion_path`` / ``upper_prior_path``, with
    ``lower_prior_path``. They are read back as written and never produced now.
    """

    n_images: int
    lower: Stats
    upper: Stats
    gap: Stats
    proposal: Optional[str] = field(default=None, metadata=_OMIT_NONE)
    lower_importance_sampling: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    importance_ess: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    proposal_modes: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    upper_inversion_path: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    lower_prior_path: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)
    upper_prior_path: Optional[Stats] = field(default=None, metadata=_OMIT_NONE)


@dataclass(slots=True, kw_only=True)
class InversionRatios:
    """Median inversion error of train / test images over that of generated ones (inf when the
    generated median is 0; ``None`` once read back from JSON)."""

    train_over_generated: Optional[float]
    test_over_generated: Optional[float]


@dataclass(slots=True, kw_only=True)
class OODScores:
    """One OOD set against in-distribution images: AUROCs (1 = the OOD set scores higher), median
    log-likelihood minus the training images', and the typicality test's rejection rate."""

    auroc_inversion: float
    auroc_likelihood: float
    auroc_likelihood_vs_train: float
    median_ll_minus_train: float
    typicality_rejection: float


@dataclass(slots=True, kw_only=True)
class Memorisation:
    """Training vs held-out test images: AUROCs, Mann-Whitney p-values, gaps."""

    auroc_inversion: float
    p_inversion: float
    auroc_likelihood: float
    p_likelihood: float
    mean_ll_gap: float
    median_error_ratio: float


@dataclass(slots=True, kw_only=True)
class SetCorrelation:
    """Correlation of log-likelihood with local variance over the images of ``sets``."""

    r: float
    pvalue: float
    n: int
    method: str
    sets: Tuple[str, ...]


@dataclass(slots=True, kw_only=True)
class Correlations:
    pooled: SetCorrelation
    test: SetCorrelation


@dataclass(slots=True, kw_only=True)
class TypicalityTestSummary:
    """One set's batches against one typical set (:class:`statgan.audit.TypicalityResult`)."""

    entropy: float
    epsilon: float
    n_batches: int
    rejection_rate: float
    batch_mean_nll: Stats
    statistic: Stats


@dataclass(slots=True, kw_only=True)
class TypicalityGroup:
    """Tests against one typical set: what estimated it, and the tested sets by name."""

    reference: str
    sets: Dict[str, TypicalityTestSummary] = field(default_factory=dict, metadata=_INLINE)


@dataclass(slots=True, kw_only=True)
class TypicalitySummary:
    batch_size: int
    alpha: float
    n_bootstrap: int
    model_typical_set: TypicalityGroup
    ood_test: TypicalityGroup


@dataclass(slots=True, kw_only=True)
class Finding:
    """One verdict (:mod:`statgan.audit.verdicts`). ``numbers`` are the values the text quotes, for
    readers of summary.json; the code reads the typed summary, never them."""

    id: str
    title: str
    verdict: str
    text: str
    numbers: Dict[str, Any]


@dataclass(slots=True, kw_only=True)
class Machine:
    threads: int
    cpu_count: Optional[int]
    device: str
    platform: str
    load_average_at_start: Optional[Tuple[float, ...]]


@dataclass(slots=True, kw_only=True)
class Versions:
    statgan: str
    torch: str
    numpy: str
    python: str


@dataclass(slots=True, kw_only=True)
class AuditPaths:
    report: str
    summary: str
    per_image: str


# ==== the results ===================================================================================
@dataclass(slots=True, kw_only=True)
class _RunResult:
    """What every result file about a run starts with: its format, and which weights of which run."""

    format: str
    run: str
    step: int
    weights: str


@dataclass(slots=True, kw_only=True)
class AuditSummary(_RunResult):
    """Everything :func:`statgan.audit.run.audit_run` measured; ``summary.json`` is its JSON form.

    ``splits`` and ``auroc`` are keyed by image set (``splits`` also holds ``valid`` and
    ``model_samples``), ``timing`` by stage; ``paths`` is ``None`` when nothing was written."""

    format: str = AUDIT_FORMAT  # redeclared for its default; it keeps its place first in the JSON
    dataset: str
    data_shape: Tuple[int, ...]
    latent_dim: int
    settings: AuditSettings
    error_unit: str
    likelihood_unit: str
    sigma: SigmaChoice
    bdmc: BDMCSummary
    splits: Dict[str, SetSummary]
    ood_sets: Tuple[str, ...]
    inversion: InversionRatios
    auroc: Dict[str, OODScores]
    memorisation: Memorisation
    correlation: Correlations
    typicality: TypicalitySummary
    timing: Dict[str, float]
    machine: Machine
    versions: Versions
    time: str
    findings: List[Finding] = field(default_factory=list)
    seconds: float = 0.0
    paths: Optional[AuditPaths] = field(default=None, metadata=_OMIT_NONE)


@dataclass(slots=True, kw_only=True)
class InvertedSet:
    n: int
    error: Stats
    mse: Stats


@dataclass(slots=True, kw_only=True)
class InvertSummary(_RunResult):
    """What :func:`statgan.audit.run.invert_split` did; its ``.json`` file (beside ``tensors``) is
    the JSON form, ``path`` its location (not written into the file)."""

    format: str = INVERT_FORMAT  # redeclared for its default; it keeps its place first in the JSON
    split: str
    loss: str
    error_unit: str
    settings: InvertSettings
    sets: Dict[str, InvertedSet]
    tensors: str
    seconds: float
    versions: Versions
    path: Optional[str] = field(default=None, metadata=_OMIT_NONE)


# ==== JSON ==========================================================================================
def _encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            if f.metadata.get("inline"):
                out.update({k: _encode(v) for k, v in value.items()})
            else:
                out[f.name] = _encode(value)
        return out
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def to_json(summary: Union[AuditSummary, InvertSummary]) -> str:
    """``summary`` as indented JSON, newline-terminated."""
    return json.dumps(_encode(summary), indent=1, allow_nan=False) + "\n"


def _decode(tp: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as type ``tp``."""
    if value is None or tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:  # Optional[X]: value is not None here
        return _decode(next(a for a in args if a is not type(None)), value)
    if origin in (tuple, list):
        item = args[0] if args else Any
        items = [_decode(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value)
    if tp is float:
        return float(value)
    return value


def _decode_dataclass(cls: Type[T], data: Dict[str, Any]) -> T:
    """Strict: a key that is no field (a misspelling, another schema) and a missing field are errors."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    inline = [f.name for f in fields if f.metadata.get("inline")]
    direct = {f.name for f in fields} - set(inline)
    kwargs = {k: _decode(hints[k], v) for k, v in data.items() if k in direct}
    rest = {k: v for k, v in data.items() if k not in direct}
    if inline:  # the other keys are the inlined dict's
        kwargs[inline[0]] = _decode(hints[inline[0]], rest)
    elif rest:
        raise StatganError(f"{cls.__name__} has no field {', '.join(map(repr, sorted(rest)))}")
    missing = [f.name for f in fields if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise StatganError(f"{cls.__name__} lacks {', '.join(map(repr, missing))}")
    return cls(**kwargs)


def from_json(text: str, cls: Type[T] = AuditSummary) -> T:  # type: ignore[assignment]
    """The ``cls`` (:class:`AuditSummary` or :class:`InvertSummary`) that :func:`to_json` wrote."""
    data = json.loads(text)
    want = next(f.default for f in dataclasses.fields(cls) if f.name == "format")  # type: ignore[arg-type]
    if not isinstance(data, dict) or data.get("format") != want:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise StatganError(f"not a {want} summary (format {got!r})")
    return _decode_dataclass(cls, data)
