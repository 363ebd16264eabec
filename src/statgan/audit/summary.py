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
``_INLINE`` writes a dict's items beside the object's other fields (a typicality test group). A
field missing from a file takes its default, or, when its metadata has ``"absent"``, that value:
what a file written before the field existed ran with (a settings knob added with a new default).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import StatganError
from ..generator_source import GeneratorIdentity
from .settings import AuditSettings, InvertSettings

__all__ = [
    "AUDIT_FORMAT", "INVERT_FORMAT", "AuditPaths", "AuditSummary", "BDMCSummary", "BinomialCI", "CorrelationEnvelope",
    "Correlations", "DataCopying", "RejectionCount", "SigmaMargin", "Finding", "RunFID", "ShiftTest",
    "InvertSummary", "InvertedSet", "InversionRatios", "Machine", "Memorisation", "OODScores", "SetCorrelation",
    "SetSummary", "SigmaChoice", "Stats", "TypicalityGroup", "TypicalitySummary", "TypicalityTestSummary", "Versions",
    "from_json", "median", "missing_reason", "to_json",
]

AUDIT_FORMAT = "statgan-audit/1"
#: /2: ``settings`` is the whole :class:`InvertSettings` (it gained ``loss``).
INVERT_FORMAT = "statgan-invert/2"

#: field options (``field(metadata=...)``) read by the codec
_OMIT_NONE = {"omit_none": True}
_INLINE = {"inline": True}

T = TypeVar("T")

#: the image sets an audit may lack -- a generator from elsewhere has only those it is given -- by
#: name: (what they are in prose, the flag that gives them)
OPTIONAL_SETS = {"train": ("training images", "--train SET"), "test": ("test images", "--test SET")}


def missing_reason(names: Sequence[str]) -> str:
    """Why something that needs the sets ``names`` was not run, naming the flags that give them:
    'no training images (give --train SET)', 'no training or test images (give --train SET and
    --test SET)'. One wording for summary.json, the verdicts and the report."""
    names = [n for n in OPTIONAL_SETS if n in names]
    if not names:
        return ""
    words = [OPTIONAL_SETS[n][0].split()[0] for n in names]
    flags = " and ".join(OPTIONAL_SETS[n][1] for n in names)
    return f"no {' or '.join(words)} images (give {flags})"


def median(values: Any) -> float:
    """The audit's one median (``numpy.median``: the mean of the two middle values for even n), NaN
    for no values. Tables, plots, ratios and verdicts all use it."""
    if torch.is_tensor(values):
        values = values.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(values, dtype=np.float64).ravel()
    return float(np.median(a)) if a.size else math.nan


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
        a = torch.as_tensor(values).detach().double().cpu().flatten().numpy()
        # numpy's linear quantiles: the median is :func:`median`'s (torch.median would take the lower
        # middle value for even n, and a plot would disagree with its table)
        q = np.quantile(a, [0.25, 0.5, 0.75]).tolist() if a.size else [math.nan] * 3
        return cls(n=int(a.size), mean=float(a.mean()), std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
                   q25=q[0], median=median(a), q75=q[2], min=float(a.min()), max=float(a.max()))


@dataclass(slots=True, kw_only=True)
class ShiftTest:
    """Location shift of ``b`` over ``a``: the Hodges-Lehmann estimate (median of all differences
    b_j - a_i), its ``level`` confidence interval (``None``: unbounded, samples too small for that level), and the
    two-sided Mann-Whitney p-value."""

    shift: float
    lo: Optional[float]
    hi: Optional[float]
    pvalue: float
    n_a: int
    n_b: int
    level: float = 0.95
    method: str = "Mann-Whitney U (two-sided); Hodges-Lehmann shift, distribution-free CI"


@dataclass(slots=True, kw_only=True)
class BinomialCI:
    """``k`` of ``n``: the rate, its Clopper-Pearson interval, and the one-sided binomial p-value of
    a rate above ``null`` (the test's nominal false-alarm rate)."""

    k: int
    n: int
    rate: float
    lo: float
    hi: float
    pvalue_above_null: float



@dataclass(slots=True, kw_only=True)
class DataCopying:
    """Meehan, Chaudhuri & Dasgupta's (2020) three-sample data-copying test
    (:func:`statgan.audit.memorisation.data_copying_test`). ``c_t``: the held-out-mass weighted mean of
    the per-cell Mann-Whitney z-scores (``cell_z``, weights ``cell_weights``) of generated samples'
    vs held-out samples' distances to their nearest training image; ``null_sd`` = sqrt(sum w^2), its
    standard deviation when nothing is copied, ``pvalue`` = Phi(c_t / null_sd) (one-sided: copying).
    C_T << 0: copying; >> 0: underfitting. ``neighbours``: where a point's nearest training image is
    looked for -- ``"within cell"`` (Meehan et al.'s reference code, the audit since it follows it)
    or ``"anywhere"`` (summaries written before)."""

    c_t: float
    null_sd: float
    pvalue: float
    space: str = "pixels"
    n_train: int
    n_test: int
    n_generated: int
    # the cells: how many, how many had enough samples, and each used cell's z-score and weight
    n_cells: int
    cells_used: int
    min_per_cell: int = 5
    cell_z: Tuple[float, ...] = ()
    cell_weights: Tuple[float, ...] = ()
    neighbours: str = field(default="within cell", metadata={"absent": "anywhere"})


@dataclass(slots=True, kw_only=True)
class RunFID:
    """The run's FID as read from its ``eval/*.json`` (``statgan eval``), newest first."""

    value: float
    extractor: str
    n: Optional[int]
    step: Optional[int]
    path: str
    weights: Optional[str] = None  # "ema" or "raw" as ``statgan eval`` recorded it (None: not recorded)


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
class SigmaMargin:
    """How far the chosen sigma's lower bounds lie above one other candidate's, image by image: the
    median of the paired differences (chosen - candidate, nats) with its distribution-free 95 %
    interval (order statistics, :func:`statgan.audit.uncertainty.median_ci`) over ``n`` images."""

    candidate: float
    median: float
    lo: Optional[float]
    hi: Optional[float]
    n: int


@dataclass(slots=True, kw_only=True)
class SigmaChoice:
    """The observation noise and how it was chosen (``candidates`` empty when given); ``margins``:
    the chosen sigma against each other candidate (absent in files written before them)."""

    chosen: float
    method: str
    candidates: Tuple[float, ...] = ()
    mean_log_likelihood: Tuple[float, ...] = ()
    ais_steps: Optional[int] = field(default=None, metadata=_OMIT_NONE)
    margins: Tuple[SigmaMargin, ...] = ()


@dataclass(slots=True, kw_only=True)
class BDMCSummary:
    """BDMC on ``n_images`` model samples with the audit's own estimator: ``lower`` (forward AIS from
    the ``proposal``), ``upper`` (reverse AIS from the exact latent back to the same proposal),
    ``gap`` = upper - lower (``gaps``: per image, in image order; empty in files written before
    they were kept); importance sampling from that proposal (its lower bound and ESS) and the
    proposal's distinct modes per image.

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
    gaps: Tuple[float, ...] = ()


@dataclass(slots=True, kw_only=True)
class InversionRatios:
    """Median inversion error of train / test images over that of generated ones (inf when the
    generated median is 0; ``None`` once read back from JSON, and when the audit lacks that set)."""

    train_over_generated: Optional[float]
    test_over_generated: Optional[float]
    #: 95 % percentile-bootstrap interval of train_over_generated, and the Mann-Whitney p (two-sided)
    #: of training vs generated errors (absent in files written before they existed)
    train_over_generated_ci: Optional[Tuple[Optional[float], Optional[float]]] = None
    pvalue_train_vs_generated: Optional[float] = None


@dataclass(slots=True, kw_only=True)
class OODScores:
    """One OOD set against in-distribution images: AUROCs (1 = the OOD set scores higher), median
    log-likelihood minus the training images', and the typicality test's rejection rate. ``*_ci``:
    DeLong 95 % intervals of the AUROCs; ``likelihood_vs_train``: Mann-Whitney test and
    Hodges-Lehmann shift of the set's log-likelihoods over the training images'. A score whose
    in-distribution set the audit lacks (no test images: the AUROCs vs test; no training images:
    those vs train; either: the typicality test) is ``None`` and left out of the file
    (:attr:`AuditSummary.missing_sets` says why)."""

    auroc_inversion: Optional[float] = field(default=None, metadata=_OMIT_NONE)
    auroc_likelihood: Optional[float] = field(default=None, metadata=_OMIT_NONE)
    auroc_likelihood_vs_train: Optional[float] = field(default=None, metadata=_OMIT_NONE)
    median_ll_minus_train: Optional[float] = field(default=None, metadata=_OMIT_NONE)
    typicality_rejection: Optional[float] = field(default=None, metadata=_OMIT_NONE)
    auroc_inversion_ci: Optional[Tuple[float, float]] = None
    auroc_likelihood_ci: Optional[Tuple[float, float]] = None
    auroc_likelihood_vs_train_ci: Optional[Tuple[float, float]] = None
    likelihood_vs_train: Optional[ShiftTest] = None


@dataclass(slots=True, kw_only=True)
class Memorisation:
    """Training vs held-out test images: AUROCs (with DeLong 95 % intervals), Mann-Whitney p-values,
    gaps, the Hodges-Lehmann shift of test over training log-likelihoods, and the data-copying test
    C_T of generated vs held-out images (Meehan et al. 2020)."""

    auroc_inversion: float
    p_inversion: float
    auroc_likelihood: float
    p_likelihood: float
    mean_ll_gap: float
    median_error_ratio: float
    auroc_inversion_ci: Optional[Tuple[float, float]] = None
    auroc_likelihood_ci: Optional[Tuple[float, float]] = None
    likelihood_shift: Optional[ShiftTest] = None
    data_copying: Optional[DataCopying] = None
    #: why the data-copying test did not run (e.g. too few held-out images)
    data_copying_skipped: Optional[str] = field(default=None, metadata=_OMIT_NONE)


@dataclass(slots=True, kw_only=True)
class CorrelationEnvelope:
    """What the likelihood estimator's error can do to a correlation with log-likelihood: with every
    image's lower bound allowed to be loose by anything in [0, ``allowance``] nats, the smallest and
    largest rho reached by the error patterns tried (:func:`statgan.audit.uncertainty.spearman_envelope`)
    and the 95 % interval ends around them (``lo`` below ``r_min``, ``hi`` above ``r_max``)."""

    allowance: float
    r_min: float
    r_max: float
    lo: float
    hi: float


@dataclass(slots=True, kw_only=True)
class SetCorrelation:
    """Correlation of log-likelihood with local variance over the images of ``sets``; ``lo``/``hi``
    its 95 % Fisher-z interval (``None`` when too few images); ``envelope``: the interval widened by
    the likelihood estimator's error, at increasing allowances (the last the audit's; empty when not
    computed)."""

    r: Optional[float]
    pvalue: Optional[float]
    n: int
    method: str
    sets: Tuple[str, ...]
    lo: Optional[float] = None
    hi: Optional[float] = None
    envelope: Tuple[CorrelationEnvelope, ...] = ()


@dataclass(slots=True, kw_only=True)
class Correlations:
    """``pooled`` over sets (kept for reference: sets with different means make it misleading),
    ``test`` (``None`` without test images), ``per_set`` (every scored set but the generated one),
    and ``stratified``: the within-set correlation combined over ``per_set`` (what the verdict uses)."""

    pooled: SetCorrelation
    test: Optional[SetCorrelation] = field(default=None, metadata=_OMIT_NONE)
    per_set: Dict[str, SetCorrelation] = field(default_factory=dict)
    stratified: Optional[SetCorrelation] = None


@dataclass(slots=True, kw_only=True)
class RejectionCount:
    """The number of flagged batches ``k`` of ``n_batches`` against its simulated null distribution
    (:func:`statgan.audit.typicality.rejection_null`: ``counts[j]`` of ``n_null`` replicates flagged
    j batches), which accounts for the H^ and pool all batches share; ``pvalue`` = P(K >= k)."""

    k: int
    n_batches: int
    counts: Tuple[int, ...]
    n_null: int
    pvalue: float

    def p_value(self, k: Optional[int] = None) -> float:
        """P(K >= k) under the simulated null, (1 + #{K_r >= k}) / (1 + R); ``k`` defaults to the
        observed count."""
        k = self.k if k is None else int(k)
        return (1.0 + sum(self.counts[max(k, 0):])) / (1.0 + self.n_null)

    def critical_k(self, level: float) -> Optional[int]:
        """The smallest count whose p-value is at most ``level`` (``None``: no count is)."""
        return next((j for j in range(self.n_batches + 1) if self.p_value(j) <= level), None)


@dataclass(slots=True, kw_only=True)
class TypicalityTestSummary:
    """One set's batches against one typical set (:class:`statgan.audit.TypicalityResult`)."""

    entropy: float
    epsilon: float
    n_batches: int
    rejection_rate: float
    batch_mean_nll: Stats
    statistic: Stats
    #: the rejections with their Clopper-Pearson interval and the binomial p of "more than alpha"
    #: (which treats the batches as independent: shown for comparison)
    rejected: Optional[BinomialCI] = None
    #: the rejections against their simulated null (what the verdicts read)
    calibrated: Optional[RejectionCount] = None
    #: Hodges-Lehmann shift of the set's log-likelihoods over the reference values H^ came from
    #: (and the pool's), with its interval: how far the set sits from the typical set, per image
    shift: Optional[ShiftTest] = None


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
    #: Nalisnick et al.'s OOD test (H from training images, valid images in the pool); ``None`` when
    #: the audit lacks training or test images (then the OOD sets join ``model_typical_set``)
    ood_test: Optional[TypicalityGroup] = field(default=None, metadata=_OMIT_NONE)
    #: how epsilon was calibrated (:data:`statgan.audit.typicality.CALIBRATIONS`); files written
    #: before the choice existed used Nalisnick et al.'s fixed-entropy bootstrap
    calibration: str = "fixed-entropy"
    #: the batch size asked for, when the sets were too small for it (``batch_size`` is what ran)
    batch_size_requested: Optional[int] = field(default=None, metadata=_OMIT_NONE)


@dataclass(slots=True, kw_only=True)
class Finding:
    """One verdict (:mod:`statgan.audit.verdicts`). ``numbers`` are the values the text quotes, for
    readers of summary.json; the code reads the typed summary, never them."""

    id: str
    title: str
    verdict: str
    text: str
    numbers: Dict[str, Any]
    #: what the verdict measures, how it is tested, and how uncertain it is (one line each)
    statistic: str = ""
    test: str = ""
    uncertainty: str = ""
    #: what the verdict assumes beyond the measured numbers, and what would resolve or sharpen it
    rests_on: str = ""
    to_resolve: str = ""


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
    """What every result file about a generator starts with: its format, the GENERATOR as given
    (``run``: a run directory, ``FILE.py:NAME``, a TorchScript file), a run's checkpoint step and
    weights (None for a generator from elsewhere), and what was loaded (:class:`GeneratorIdentity`:
    file sha256, weights fingerprint, parameter count, latent shape; absent in older files)."""

    format: str
    run: str
    step: Optional[int]
    weights: Optional[str]
    generator: Optional[GeneratorIdentity] = field(default=None, metadata=_OMIT_NONE)


@dataclass(slots=True, kw_only=True)
class AuditSummary(_RunResult):
    """Everything :func:`statgan.audit.run.audit_run` measured; ``summary.json`` is its JSON form.

    ``splits`` and ``auroc`` are keyed by image set (``splits`` also holds ``valid`` and
    ``model_samples``), ``timing`` by stage; ``paths`` is ``None`` when nothing was written.

    A generator from elsewhere may come without training or test images: ``missing_sets`` then
    names each missing set with the flag that gives it, ``splits`` has no entry for it (no test
    images: no ``test`` and no ``valid``), and what needs it is ``None`` (``memorisation``,
    ``typicality.ood_test``, ``correlation.test``, :class:`InversionRatios` and :class:`OODScores`
    fields) or, for a finding, has the verdict "not run". A full audit writes none of this."""

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
    memorisation: Optional[Memorisation] = field(default=None, metadata=_OMIT_NONE)  # needs train and test
    correlation: Correlations
    typicality: TypicalitySummary
    timing: Dict[str, float]
    machine: Machine
    versions: Versions
    time: str
    findings: List[Finding] = field(default_factory=list)
    seconds: float = 0.0
    fid: Optional[RunFID] = field(default=None, metadata=_OMIT_NONE)
    #: projected seconds of the long stages, from a timed generator pass (:mod:`statgan.audit.budget`),
    #: said before they ran; compare with ``timing``
    projected: Optional[Dict[str, float]] = field(default=None, metadata=_OMIT_NONE)
    paths: Optional[AuditPaths] = field(default=None, metadata=_OMIT_NONE)
    #: the sets this audit lacks, each with why and the flag that gives it (None: it had both)
    missing_sets: Optional[Dict[str, str]] = field(default=None, metadata=_OMIT_NONE)

    def lacks(self, *names: str) -> Tuple[str, ...]:
        """Which of the sets ``names`` this audit has no images of (in ``names``' order)."""
        return tuple(n for n in names if n not in self.splits)


@dataclass(slots=True, kw_only=True)
class InvertedSet:
    n: int
    error: Stats
    mse: Stats


@dataclass(slots=True, kw_only=True)
class InvertSummary(_RunResult):
    """What :func:`statgan.audit.run.invert_split` did; its ``.json`` file (beside ``tensors`` and
    ``picture``) is the JSON form, ``path`` its location (not written into the file)."""

    format: str = INVERT_FORMAT  # redeclared for its default; it keeps its place first in the JSON
    split: str
    loss: str
    error_unit: str
    settings: InvertSettings
    sets: Dict[str, InvertedSet]
    tensors: str
    #: the PNG of originals beside their reconstructions (:func:`statgan.viz.save_inversion_pairs`), or
    #: ``None`` with ``picture_note`` saying why none was drawn (data neither images nor 2-D points)
    picture: Optional[str] = field(default=None, metadata=_OMIT_NONE)
    picture_note: Optional[str] = field(default=None, metadata=_OMIT_NONE)
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


def to_json(summary: Any) -> str:
    """``summary`` (an :class:`AuditSummary`, an :class:`InvertSummary` or another result dataclass, e.g. the
    toy audit's) as indented JSON, newline-terminated; non-finite floats are written as null."""
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
    for f in fields:  # older files: what they ran with, not today's default
        if f.name not in kwargs and "absent" in f.metadata:
            kwargs[f.name] = f.metadata["absent"]
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
