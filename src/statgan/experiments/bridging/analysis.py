"""The statistics of the Bridging report, computed from typed cell records: the finished runs
(:class:`Results`), whether an objective can test a claim at all (:func:`not_learned`,
:data:`DEVIATIONS`), the claim families (:func:`fid_family`, :func:`flatness_family`,
:func:`batch_family`) and the latent-dimension sweep (:func:`latent_sweep`).

The families return :class:`~statgan.experiments.bridging.effects.Effect` lists, Holm-adjusted;
:func:`~statgan.experiments.bridging.effects.verdict` turns one into a verdict.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, TypeVar

from ..stats import Welch, cell_mean_spearman, mean_std, welch_test
from .specs import (GAN_GRADIENT_REGULARISER, GRADIENT_REGULARISERS, OBJECTIVES, TOY_DENSITY_INFO, TREATMENTS, Budget,
                    ImageCell, ToyCell, ToyDensity)
from .effects import Effect, correlation_effect, welch_effect, with_holm
from .records import CellRecord, Floor, ImageResult, ToyResult

#: a baseline whose FID is above this multiple of the real-vs-real floor has not learned the data
NOT_LEARNED_FACTOR = 10.0


# ---- typed runs -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class _Run:
    """What every cell records: its seed, and the one-line error if it failed (metrics then ``nan``/None)."""

    seed: int
    error: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class ImageRun(_Run):
    """One cell of the regulariser grid as the report reads it."""

    objective: str
    cell: str
    fid: float = math.nan
    #: on the fixed evaluation batch, eval mode (:func:`~statgan.experiments.bridging.running.eval_sharpness`)
    sharpness: Optional[float] = None
    #: the in-training probe on the last training batch (the old statistic; for comparison only)
    sharpness_last_batch: Optional[float] = None
    cpu_s: float = math.nan

    @classmethod
    def from_record(cls, rec: CellRecord, spec: ImageCell) -> "ImageRun":
        res = rec.result if isinstance(rec.result, ImageResult) else ImageResult()
        # records written before CPU times were kept have only the wall-clock time
        cpu_s = rec.cpu_s if rec.cpu_s is not None else rec.wall_s
        return cls(objective=spec.objective, cell=spec.cell, seed=spec.seed, fid=res.fid, sharpness=res.sharpness,
                   sharpness_last_batch=res.sharpness_last_batch, cpu_s=math.nan if cpu_s is None else cpu_s,
                   error=rec.error)


@dataclass(frozen=True, kw_only=True)
class ToyRun(_Run):
    """One cell of the latent-dimension sweep as the report reads it."""

    density: str
    latent_dim: int
    chi2_rms: Optional[float] = None
    logp_mean: float = math.nan
    logp_data: float = math.nan
    in_support: float = math.nan
    kde_test_ll: float = math.nan

    @classmethod
    def from_record(cls, rec: CellRecord, spec: ToyCell) -> "ToyRun":
        res = rec.result if isinstance(rec.result, ToyResult) else ToyResult()
        return cls(density=spec.density, latent_dim=spec.latent_dim, seed=spec.seed, error=rec.error,
                   chi2_rms=res.chi2_rms, logp_mean=res.logp_mean, logp_data=res.logp_data, in_support=res.in_support,
                   kde_test_ll=res.kde_test_ll)


@dataclass(frozen=True)
class Results:
    """The finished cells of a grid, typed; looked up by their fields, never by key strings."""

    images: Tuple[ImageRun, ...]
    toys: Tuple[ToyRun, ...]
    floor: Optional[Floor]
    #: cell key -> error, for every failed or diverged cell
    failed: Dict[str, str]

    @classmethod
    def from_records(cls, records: Iterable[CellRecord]) -> "Results":
        images: List[ImageRun] = []
        toys: List[ToyRun] = []
        floor: Optional[Floor] = None
        failed: Dict[str, str] = {}
        for rec in sorted(records, key=lambda r: r.key):
            if rec.error is not None:
                failed[rec.key] = rec.error
            match rec.spec:
                case ImageCell():
                    images.append(ImageRun.from_record(rec, rec.spec))
                case ToyCell():
                    toys.append(ToyRun.from_record(rec, rec.spec))
                case _ if rec.error is None and isinstance(rec.result, Floor):
                    floor = rec.result
        return cls(tuple(images), tuple(toys), floor, failed)


Run = TypeVar("Run", ImageRun, ToyRun)


def runs_where(runs: Iterable[Run], **fields: Any) -> List[Run]:
    """The finished runs whose fields equal ``fields`` (e.g. ``objective="ragan", cell="mcd"``)."""
    return [r for r in runs if r.error is None and all(getattr(r, k) == v for k, v in fields.items())]


def finite(values: Iterable[Optional[float]]) -> List[float]:
    """The finite ones of ``values`` (e.g. ``finite(r.fid for r in runs)``), as floats."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def fids(typed: Results, objective: str, cell: str) -> List[float]:
    """The finite FIDs of one objective's cell."""
    return finite(r.fid for r in runs_where(typed.images, objective=objective, cell=cell))


# ---- who can test a claim -------------------------------------------------------------------------
#: treatments that deviate from the paper's released code in a way that can flip the sign of a
#: claim's effect: cell -> objective -> why. The gradient regulariser of the GAN objectives
#: (``param_grad``) is differentiable here; the paper's code computes it from ``.grad`` and sends no
#: gradient, so its "regularised" cell trains like the unregularised one -- a regulariser that acts
#: can help or hurt, so our sign says nothing about theirs.
DEVIATIONS: Dict[str, Dict[str, str]] = {
    cell: {obj: ("its gradient regulariser is differentiable here, while the paper's code sends no gradient "
                 "through it, which can flip the sign") for obj in OBJECTIVES
           if GRADIENT_REGULARISERS.get(obj, GAN_GRADIENT_REGULARISER) == GAN_GRADIENT_REGULARISER}
    for cell, treatment in TREATMENTS.items() if treatment.gradreg
}


def not_learned(typed: Results, objective: str) -> Optional[str]:
    """Why ``objective``'s comparisons cannot test the paper's claims about trained GANs (its baseline
    is above :data:`NOT_LEARNED_FACTOR` × the floor, or that cannot be told yet), or ``None``."""
    if typed.floor is None:
        return "the FID floor is not measured, so whether its baseline has learned is unknown"
    m = mean_std(fids(typed, objective, "baseline"))[0]
    if not math.isfinite(m):
        return "its baseline has not finished"
    ratio = m / typed.floor.fid
    if ratio > NOT_LEARNED_FACTOR:
        return f"its baseline has not learned: FID {m:.1f} = {ratio:.0f}× the floor, above {NOT_LEARNED_FACTOR:g}×"
    return None


def why_not_tested(typed: Results, objective: str, cell: Optional[str] = None) -> Optional[str]:
    """Every reason ``objective`` (in ``cell``) cannot test a claim, or None."""
    reasons = [r for r in (not_learned(typed, objective), DEVIATIONS.get(cell or "", {}).get(objective)) if r]
    return "; ".join(reasons) or None


# ---- the claim families ---------------------------------------------------------------------------
def fid_family(typed: Results, b: Budget, cell: str) -> List[Effect]:
    """Claims 1 and 2: Δ FID of ``cell`` over the baseline per objective (Welch), Holm over the tested ones."""
    out = []
    for obj in b.objectives:
        out.append(welch_effect(obj, "Δ FID", fids(typed, obj, cell), fids(typed, obj, "baseline"), expected=-1,
                                not_tested=why_not_tested(typed, obj, cell)))
    return with_holm(out)


def flatness_family(typed: Results, b: Budget) -> List[Effect]:
    """Claim 3: Spearman's ρ of the cell means of sharpness and FID per objective, Holm over the tested ones."""
    out = []
    for obj in b.objectives:
        per_cell = [(finite(r.sharpness for r in rs), finite(r.fid for r in rs)) for cell in b.cells
                    if (rs := [r for r in runs_where(typed.images, objective=obj, cell=cell)
                               if r.sharpness is not None and math.isfinite(r.sharpness) and math.isfinite(r.fid)])]
        out.append(correlation_effect(obj, cell_mean_spearman(per_cell), expected=+1,
                                      not_tested=why_not_tested(typed, obj)))
    return with_holm(out)


def batch_family(typed: Results, b: Budget) -> List[Effect]:
    """Claim 4: Δ sharpness of the large batch over the small one per objective, Holm over the tested ones."""
    out = []
    for obj in b.objectives:
        small = finite(r.sharpness for r in runs_where(typed.images, objective=obj, cell="batch_small"))
        large = finite(r.sharpness for r in runs_where(typed.images, objective=obj, cell="batch_large"))
        out.append(welch_effect(obj, "Δ sharpness", large, small, expected=+1, not_tested=why_not_tested(typed, obj)))
    return with_holm(out)


def batch_fid_differences(typed: Results, b: Budget) -> List[Tuple[str, Welch]]:
    """FID of the large batch minus the small one per objective (context for claim 4; not judged)."""
    return [(obj, welch_test(fids(typed, obj, "batch_large"), fids(typed, obj, "batch_small"))) for obj in b.objectives]


# ---- the latent-dimension sweep -------------------------------------------------------------------
@dataclass(frozen=True)
class ToyScore:
    """One score of the toy sweep: its label, its value in a run, and whether higher is better;
    ``compared``: its dimensions are tested against each other (the sweep's Holm family)."""

    label: str
    value: Callable[[ToyRun], Optional[float]]
    higher: bool
    compared: bool


CHI2_RMS = ToyScore("χ² RMS", lambda r: r.chi2_rms, higher=False, compared=True)
LOG_P = ToyScore("log p", lambda r: r.logp_mean, higher=True, compared=False)
KDE_TEST_LL = ToyScore("KDE test LL", lambda r: r.kde_test_ll, higher=True, compared=True)
# log p = −∞ off the support (the checkerboard's black squares): how many samples land on it
IN_SUPPORT = ToyScore("fraction in support", lambda r: r.in_support, higher=True, compared=False)


def toy_scores(density: ToyDensity) -> List[ToyScore]:
    """The scores of ``density``'s table, in its order."""
    return ([CHI2_RMS] if density.standard_normal else []) + [LOG_P, KDE_TEST_LL] + (
        [IN_SUPPORT] if density.bounded_support else [])


class SweepComparison(NamedTuple):
    """One latent dimension against the best one of its score."""

    density: str
    score: str
    best: int
    effect: Effect


@dataclass(frozen=True)
class ScoreRow:
    """One row of a density's table: a score's finite values per latent dimension."""

    score: ToyScore
    per_dim: Dict[int, List[float]]


@dataclass(frozen=True)
class DensitySweep:
    """One density's table, and the data's own mean log-density (the log p row's reference)."""

    density: ToyDensity
    rows: Tuple[ScoreRow, ...]
    logp_data: List[float]


@dataclass(frozen=True)
class LatentSweep:
    """Every density's table; each dimension against the best one of its compared scores, and the
    other pairs of dimensions (the rest of the Holm family, :func:`score_comparisons`)."""

    densities: Tuple[DensitySweep, ...]
    comparisons: Tuple[SweepComparison, ...]
    others: Tuple[Effect, ...]


def score_comparisons(per_dim: Dict[int, List[float]], label: str, higher: bool) -> Tuple[Optional[int], List[Effect], List[Effect]]:
    """One score of the latent sweep: the best dimension (by mean), each other dimension against it
    ("worse than the best" predicted), and every other pair of dimensions (smaller against larger).
    The best is chosen on the same data, so testing only against it would favour finding differences
    (a null sweep said "significantly worse" in ~6 % of simulations at a nominal 5 %); the other pairs
    join the Holm family (:func:`~statgan.experiments.bridging.report.sweep_summary`), which makes it
    every pre-specified pairwise test."""
    means = {d: mean_std(v)[0] for d, v in per_dim.items() if v}
    if not means:
        return None, [], []
    best = max(means, key=lambda d: means[d] if higher else -means[d])
    expected = -1 if higher else +1  # worse: lower when higher is better, and vice versa
    vs_best = [welch_effect(f"z = {d}", label, per_dim[d], per_dim[best], expected=expected)
               for d in means if d != best]
    others = [welch_effect(f"z = {a} vs z = {c}", label, per_dim[a], per_dim[c], expected=expected)
              for a, c in itertools.combinations(sorted(means), 2) if best not in (a, c)]
    return best, vs_best, others


def latent_sweep(typed: Results, b: Budget, densities: Mapping[str, ToyDensity] = TOY_DENSITY_INFO) -> LatentSweep:
    """The sweep's tables and comparisons over the budget's densities and latent dimensions."""
    tables: List[DensitySweep] = []
    comparisons: List[SweepComparison] = []
    others: List[Effect] = []
    for name in b.toy_densities:
        rows = []
        for score in toy_scores(densities[name]):
            per_dim = {d: finite(map(score.value, runs_where(typed.toys, density=name, latent_dim=d)))
                       for d in b.toy_dims}
            rows.append(ScoreRow(score, per_dim))
            if score.compared:
                best, vs_best, rest = score_comparisons(per_dim, score.label, score.higher)
                comparisons += [SweepComparison(name, score.label, best, e) for e in vs_best]  # type: ignore[arg-type]
                others += rest
        logp_data = finite(r.logp_data for r in runs_where(typed.toys, density=name))
        tables.append(DensitySweep(densities[name], tuple(rows), logp_data))
    return LatentSweep(tuple(tables), tuple(comparisons), tuple(others))


__all__ = ["NOT_LEARNED_FACTOR", "ImageRun", "ToyRun", "Results", "runs_where", "finite", "fids", "DEVIATIONS",
           "not_learned", "why_not_tested", "fid_family", "flatness_family", "batch_family", "batch_fid_differences",
           "ToyScore", "CHI2_RMS", "LOG_P", "KDE_TEST_LL", "IN_SUPPORT", "toy_scores", "SweepComparison", "ScoreRow", "DensitySweep", "LatentSweep", "score_comparisons",
           "latent_sweep"]
