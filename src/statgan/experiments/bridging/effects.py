"""The verdict rules of the Bridging report: one test inside a claim (:class:`Effect`), Holm's
correction over a claim's family of tests (:func:`with_holm`), and one verdict per family
(:func:`verdict`): holds / partly holds / does not hold / unresolved / not tested at this budget.

Everything here is computed from numbers, never typed by hand; the calibration of the verdicts on
simulated cells is tests/test_experiments_bridging_calibration.py.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from ...runtime.lazy import scipy_stats
from ..stats import EXACT_SPEARMAN_N, Correlation, Welch, holm, welch_test

#: family-wise error rate of every claim (Holm-adjusted p below it counts)
P_THRESHOLD = 0.05
#: the verdict for a claim none of whose tests can be read at this budget
NOT_TESTED = "not tested at this budget"
#: the verdict printed instead of any verdict at a budget that is only a smoke test
SMOKE_TEST = "smoke test: no verdicts at the tiny budget"
#: power the "detectable" statements assume (the usual 80 %)
POWER = 0.8


def format_p(p: float) -> str:
    """A p-value as the report prints it (three decimals, "<0.001", "–" when undefined)."""
    return "–" if not math.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


@dataclass(frozen=True)
class Effect:
    """One test inside a claim (one objective, or one latent dimension against the best): its
    estimate with the interval and the test behind it, and the direction the claim predicts.

    ``p_adj`` is the p-value after Holm's correction over the claim's family of tests (the members
    that are tested); the outcome is read from it. ``expected`` is +1 when the claim predicts a
    positive estimate, −1 a negative one (e.g. Δ FID < 0: the regulariser lowers FID).
    ``not_tested``: why this member cannot test the claim at this budget (its baseline has not
    learned, or the treatment deviates from the paper's released code in a way that can flip the
    sign); such a member is reported but not judged. ``kind``/``n``/``se``/``dof`` say what the
    design can detect (:meth:`detectable`)."""

    label: str
    statistic: str
    estimate: float
    lo: float
    hi: float
    test: str
    p: float
    p_adj: float
    expected: int
    not_tested: Optional[str] = None
    #: "welch" (a difference of means over seeds) or "spearman" (a correlation of n cell means)
    kind: str = "welch"
    n: int = 0
    se: float = math.nan
    dof: float = math.nan

    @property
    def tested(self) -> bool:
        return self.not_tested is None and math.isfinite(self.estimate) and math.isfinite(self.p_adj)

    @property
    def outcome(self) -> str:
        """'supports' / 'contradicts' (significant at p_adj < 0.05, in / against the predicted
        direction), 'n.s.', 'untested' or 'not tested' (at this budget)."""
        if self.not_tested is not None:
            return "not tested"
        if not self.tested:
            return "untested"
        if self.p_adj >= P_THRESHOLD:
            return "n.s."
        return "supports" if self.estimate * self.expected > 0 else "contradicts"

    @property
    def wrong_way(self) -> bool:
        """The point estimate goes against the claim (significant or not)."""
        return math.isfinite(self.estimate) and self.estimate * self.expected < 0

    def detectable(self, level: float) -> Optional[float]:
        """The smallest |effect| this design detects at two-sided ``level``: for a Welch difference
        with POWER = 80 %, (t_{1-level/2} + t_POWER) · se on its degrees of freedom; for Spearman's ρ
        of n cell means, the smallest |ρ| whose exact p-value is below ``level`` (any power: the
        cell means are the data). ``None`` when undefined."""
        if self.kind == "spearman":
            return critical_spearman(self.n, level)
        if not (math.isfinite(self.se) and math.isfinite(self.dof) and self.dof > 0):
            return None
        st = scipy_stats().t
        return float((st.ppf(1 - level / 2, self.dof) + st.ppf(POWER, self.dof)) * self.se)

    def describe(self, digits: int = 1) -> str:
        if not math.isfinite(self.estimate):
            return f"{self.label}: no data"
        ci = (f" [95% CI {self.lo:+.{digits}f}, {self.hi:+.{digits}f}]" if math.isfinite(self.lo) else " [no interval]")
        holm = f"Holm p {format_p(self.p_adj)}" if self.not_tested is None else "not tested (see the verdict)"
        txt = f"{self.label}: {self.statistic} {self.estimate:+.{digits}f}{ci}, {self.test}, p {format_p(self.p)}, {holm}"
        if self.wrong_way and self.not_tested is None:
            txt += " — the wrong direction, " + ("significant" if self.outcome == "contradicts" else "not significant")
        return txt


@functools.lru_cache(maxsize=None)
def critical_spearman(n: int, level: float) -> Optional[float]:
    """The smallest |ρ| of n paired units whose two-sided Spearman p-value is below ``level``: exact
    (all n! rankings, as :func:`statgan.experiments.stats.spearman_exact`) up to
    :data:`EXACT_SPEARMAN_N` units, from the t approximation above; ``None`` when no |ρ| reaches it."""
    if n < 3:
        return None
    if n > EXACT_SPEARMAN_N:
        t = float(scipy_stats().t.ppf(1 - level / 2, n - 2))
        return t / math.sqrt(n - 2 + t * t)
    perms = np.asarray(list(itertools.permutations(range(n))), dtype=np.float64)
    rhos = 1 - 6 * ((perms - np.arange(n)) ** 2).sum(1) / (n * (n * n - 1))
    values = np.unique(np.round(np.abs(rhos), 12))
    for v in values:  # ascending: the first |ρ| whose tail share is below the level
        if float((np.abs(rhos) >= v - 1e-12).mean()) < level:
            return float(v)
    return None


def with_holm(effects: Sequence[Effect]) -> List[Effect]:
    """``effects`` with ``p_adj`` set by Holm's correction over the members that are tested (one
    family); members not tested at this budget keep ``p_adj`` = nan."""
    live = [i for i, e in enumerate(effects) if e.not_tested is None]
    adj = holm([effects[i].p for i in live])
    out = [dataclasses.replace(e, p_adj=math.nan) for e in effects]
    for i, a in zip(live, adj):
        out[i] = dataclasses.replace(effects[i], p_adj=a)
    return out


def welch_effect(label: str, statistic: str, a: Sequence[float], b: Sequence[float], expected: int,
                 not_tested: Optional[str] = None) -> Effect:
    """Mean(a) − mean(b) by Welch's t-test over seeds (``p_adj`` = p until :func:`with_holm`)."""
    w: Welch = welch_test(a, b)
    test = f"Welch t({w.dof:.1f}) = {w.t:.2f}, {len(a)} vs {len(b)} seeds" if math.isfinite(w.t) else "Welch (undefined)"
    se = w.diff / w.t if math.isfinite(w.t) and w.t != 0 else math.nan
    return Effect(label, statistic, w.diff, w.lo, w.hi, test, w.p, w.p, expected, not_tested=not_tested, kind="welch",
                  n=min(len(a), len(b)), se=abs(se), dof=w.dof)


def correlation_effect(label: str, c: Correlation, expected: int, not_tested: Optional[str] = None) -> Effect:
    """Spearman's ρ of cell means as an :class:`Effect` (n = cells)."""
    how = "exact permutation p" if c.n <= EXACT_SPEARMAN_N else "t approximation"
    return Effect(label, "ρ", c.rho, c.lo, c.hi, f"Spearman on {c.n} cell means ({c.n_runs} runs; {how})", c.p, c.p,
                  expected, not_tested=not_tested, kind="spearman", n=c.n)


def _detectable_note(tested: Sequence[Effect]) -> str:
    """What the design can detect, at Holm's first level (the one a test must pass when no other
    member of the family is significant), and how many seeds the observed effects would need."""
    level = P_THRESHOLD / len(tested)
    parts, seeds = [], []
    for e in tested:
        d = e.detectable(level)
        if d is None:
            continue
        if e.kind == "spearman":
            parts.append(f"{e.label} |ρ| ≥ {d:.2f} with {e.n} cells")
        else:
            parts.append(f"{e.label} |{e.statistic}| ≥ {d:.3g}")
            if e.n >= 2 and abs(e.estimate) > 0:
                seeds.append(f"{e.label} ≈ {max(e.n + 1, math.ceil(e.n * (d / abs(e.estimate)) ** 2))}")
    if not parts:
        return ""
    what = "80% power, " if any(e.kind == "welch" for e in tested) else ""
    txt = f"; detectable at this design ({what}p < {P_THRESHOLD:g}/{len(tested)}, Holm's first level): " + ", ".join(parts)
    if seeds:
        txt += "; seeds per cell the observed effects would need: " + ", ".join(seeds)
    return txt


def verdict(effects: Sequence[Effect], verdicts: bool = True) -> str:
    """One verdict from a family of tests (p-values already Holm-adjusted over its tested members):

    * **holds**: significant in the predicted direction for every tested member;
    * **partly holds**: for some (those significantly the other way are named);
    * **does not hold**: significantly the other way for some, in the predicted direction for none;
    * **unresolved**: nothing significant — the seeds' spread (the intervals) is too wide for the
      effect, whichever way its point estimate goes; it says what the design could have detected;
    * **not tested at this budget**: no member can test the claim (baselines that have not learned,
      or a treatment that deviates from the paper's code in a way that can flip the sign).

    With ``verdicts`` False (a smoke-test budget) it says so instead of judging. Point estimates
    that go the wrong way, and members not tested, are always named."""
    if not verdicts:
        return f"**{SMOKE_TEST}**"
    skipped = [e for e in effects if e.not_tested is not None]
    tested = [e for e in effects if e.tested]
    not_tested = "; not tested: " + "; ".join(f"{e.label} ({e.not_tested})" for e in skipped) if skipped else ""
    if skipped and not tested:
        return f"**{NOT_TESTED}**: " + "; ".join(f"{e.label} — {e.not_tested}" for e in skipped)
    if not tested:
        return "**unresolved**: nothing testable (no finished cells, or fewer than two seeds per cell)" + not_tested
    pos = [e.label for e in tested if e.outcome == "supports"]
    neg = [e.label for e in tested if e.outcome == "contradicts"]
    rule = (f"Holm-adjusted p < {P_THRESHOLD} over the {len(tested)} tests" if len(tested) > 1
            else f"p < {P_THRESHOLD}, a single test")
    if pos and len(pos) == len(tested):
        which = f"all {len(tested)}" if len(tested) > 1 else f"the one test ({tested[0].label})"
        head = f"**holds**: significant in the predicted direction for {which} ({rule})"
    elif pos:
        head = (f"**partly holds**: significant in the predicted direction for {', '.join(pos)} only ({rule})"
                + (f"; significantly the other way for {', '.join(neg)}" if neg else ""))
    elif neg:
        head = f"**does not hold**: significantly the other way for {', '.join(neg)}, in the predicted direction for none ({rule})"
    else:
        head = (f"**unresolved**: no test is significant ({rule}); the intervals are wider than the effects"
                + _detectable_note(tested))
    wrong = [e for e in tested if e.wrong_way and e.outcome != "contradicts"]
    if wrong:
        head += ("; point estimates in the wrong direction (not significant): "
                 + ", ".join(f"{e.label} ({e.statistic} {e.estimate:+.3g})" for e in wrong))
    return head + not_tested


__all__ = ["P_THRESHOLD", "NOT_TESTED", "SMOKE_TEST", "POWER", "format_p", "Effect", "critical_spearman", "with_holm",
           "welch_effect", "correlation_effect", "verdict"]
