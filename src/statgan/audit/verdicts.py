"""Plain-language verdicts on Friedman & Weiss's (2024) findings, computed from an audit summary.

Every verdict is one of :data:`VERDICTS` -- "holds", "partly holds", "does not hold",
"unresolved" or "not run" -- and is only as strong as its weakest uncertainty:

* **holds / partly holds** need the effect to clear its confidence interval *and* the estimator's
  own error for the sets compared (for likelihoods: the bounds' error allowance, below);
* **does not hold** needs *positive evidence against* the claim -- an interval, widened by the
  estimator's error, that excludes the claimed effect -- never just a test that found nothing;
* **unresolved** is everything else, and then the finding says what would resolve it
  (``Finding.to_resolve``): the images, or the likelihood precision, the design would need;
* **not run**: the audit lacks the images the finding compares (a generator from elsewhere, given
  no ``--train SET`` or ``--test SET``). Its text says which set is missing, ``to_resolve`` names
  the flag, and it is never computed from a stand-in set. (a) and (d) need training images, (b)
  test images, memorisation both; (c)'s part 1 needs training images, its part 2 (within-set
  correlations) runs on the sets there are, so (c) runs with part 1 marked not run.

Each :class:`~statgan.audit.summary.Finding` states its ``statistic``, ``test``, ``uncertainty``, what
it ``rests_on`` beyond the measured numbers, and ``to_resolve``; its paragraph quotes the summary's
own numbers, ending in "Verdict: LABEL -- reason.", so the text cannot disagree with the tables or
the label. docs/audit.md tabulates the rules; tests/test_audit_verdict_calibration.py checks them on
simulated summaries whose truth is known.

**The likelihood's error allowance.** AIS gives stochastic *lower* bounds. BDMC measures, on model
samples (whose latent is an exact posterior sample), how loose they are, image by image; the verdicts
take a high quantile of those per-image gaps (:data:`Thresholds.gap_quantile`, 0.9) as the error
allowance e -- a median-based statistic moves by at most about e when no more than 10 % of the images
are looser. How loose the bounds are on *real* and *OOD* images is not measured (no exact posterior
sample exists to start the reverse chain); verdicts that use e for them say that they rest on it
being no larger there. Where it matters which side is loose, only that side's error enters: a set is
"more likely" than another only if its lower bound clears the other's bound plus e.

Findings (Friedman & Weiss, "Unmasking the GAN manifold", arXiv 2402.14098):

(a) the GAN does not pass through its training images: their inversion error is about an order of
    magnitude above that of generated images;
(b) the GAN passes as close to OOD images as to in-distribution ones (inversion-error AUROC ~ 0.5);
(c) OOD images get higher likelihood than training images, and likelihood is anti-correlated with
    local image variance;
(d) training images fall outside the GAN's typical set;
plus memorisation: the generator copies its training images (train vs held-out AUROCs and rank
tests -- train and test images are exchangeable when nothing is memorised, so plain rank tests are
valid there, with no allowance -- and Meehan et al.'s data-copying test C_T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, NamedTuple, Optional, Tuple

from .summary import (OPTIONAL_SETS, AuditSummary, CorrelationEnvelope, Finding, SetCorrelation, ShiftTest,
                      TypicalityTestSummary, missing_reason)
from .uncertainty import GAP_QUANTILE, Z95, gap_allowance

__all__ = ["THRESHOLDS", "Thresholds", "VERDICTS", "error_allowance", "findings", "verdict_of"]

#: the verdicts, in the report's colours: green, amber, red, grey, and a paler grey for "not run"
#: (the finding needs images the audit did not have)
VERDICTS = ("holds", "partly holds", "does not hold", "unresolved", "not run")


@dataclass(frozen=True)
class Thresholds:
    """Every threshold a verdict uses (docs/audit.md tabulates them)."""

    # (a) median inversion error, train / generated, 95 % interval: "holds" from a_holds_ratio (an
    # order of magnitude); "partly holds" when the interval lies above a_direction_ratio (training
    # images significantly farther) but short of a_holds_ratio; "does not hold" when the interval
    # excludes a_holds_ratio without lying above a_direction_ratio
    a_holds_ratio: float = 10.0
    a_direction_ratio: float = 1.0
    # (b) an OOD set is "as close as" in-distribution images when the 95 % interval of its
    # inversion-error AUROC (held-out test images vs the set) lies at or below this, "farther" above it
    b_close_auroc: float = 0.6
    # (c) within-set Spearman rho of log-likelihood and local variance, its interval widened by the
    # likelihood's error (the envelope): "anti-correlated" when it lies below 0 with rho at most
    # c_anti_rho at every error pattern; "not anti-correlated" when it lies above c_anti_rho
    c_anti_rho: float = -0.3
    # (d) flagged training batches in excess of their calibrated null (p below d_p) and a shift that
    # clears the error allowance; "holds" when the rate's interval starts at d_holds_rate
    d_holds_rate: float = 0.5
    d_p: float = 0.01
    # memorisation: a signal is an AUROC / rank test with p below memo_p toward the training images,
    # or C_T's one-sided p below memo_p; "does not hold" needs both AUROC intervals below memo_auroc
    # and C_T's interval above memo_copying_ct (Meehan et al. flag copying at C_T < -3)
    memo_auroc: float = 0.6
    memo_p: float = 0.01
    memo_copying_ct: float = -3.0
    # the quantile of the per-image BDMC gaps taken as the likelihood's error allowance
    gap_quantile: float = GAP_QUANTILE


THRESHOLDS = Thresholds()


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if abs(x) >= 1000 or (abs(x) < 1e-3 and x != 0):
            return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.3e}"
        return f"{x:.{digits}g}"
    return str(x)


def _ci(lo: Any, hi: Any, digits: int = 3) -> str:
    return f"[{_f(lo, digits)}, {_f(hi, digits)}]"


def _bounds(lo: Optional[float], hi: Optional[float]) -> Tuple[float, float]:
    """An interval read back from JSON: ``None`` ends are unbounded."""
    return (-math.inf if lo is None else lo), (math.inf if hi is None else hi)


def _close(text: str, verdict: str, reason: str) -> str:
    return f"{text}Verdict: {verdict} -- {reason}"


def _images_needed(n: int, half_width: float, distance: float) -> Optional[int]:
    """Images for an interval of today's shape to shrink (as 1/sqrt(n)) until it clears a threshold
    ``distance`` from the estimate; ``None`` when the estimate sits on the threshold."""
    if not (distance > 0 and math.isfinite(half_width)):
        return None
    return max(n + 1, math.ceil(n * (half_width / distance) ** 2))


def _more_images(n: int, half_width: float, distance: float, what: str) -> str:
    need = _images_needed(n, half_width, distance)
    if need is None:
        return f"{what}: the estimate sits on the threshold, so no number of images resolves it"
    return f"{what}: about {need:,} images per set at today's estimate (now {n})"


# ==== the likelihood's error allowance ==============================================================
@dataclass(frozen=True)
class _Allowance:
    """e (nats) and how it was obtained."""

    value: float
    how: str

    def __str__(self) -> str:
        return f"{_f(self.value, 4)} nats ({self.how})"


def _allowance(s: AuditSummary, t: Thresholds) -> _Allowance:
    b = s.bdmc
    if b.gaps:
        return _Allowance(gap_allowance(b.gaps, t.gap_quantile),
                          f"the {_f(t.gap_quantile)} quantile of the per-image BDMC gaps of {len(b.gaps)} model samples; "
                          f"median {_f(b.gap.median, 4)}")
    g = b.gap.max
    return _Allowance(math.inf if g is None or not math.isfinite(g) else max(0.0, g),
                      "the largest BDMC gap: this summary predates per-image gaps")


def error_allowance(s: AuditSummary, t: Thresholds = THRESHOLDS) -> float:
    """The likelihoods' error allowance e (nats) the verdicts use for summary ``s``."""
    return _allowance(s, t).value


#: what a likelihood verdict assumes about the bounds of images BDMC cannot measure
_ASSUMED = ("the likelihood bounds of real and OOD images are no looser than those of the model samples at the "
            "allowance's quantile (not measured: a real image has no exact posterior sample to start BDMC's "
            "reverse chain from)")


# ==== findings the audit lacks the images for ========================================================
def _not_run(s: AuditSummary, id_: str, title: str, statistic: str, what: str,
             needs: Tuple[str, ...]) -> Optional[Finding]:
    """Finding ``id_`` with the verdict "not run" when the audit lacks a set in ``needs`` (else
    ``None``): ``what`` it compares, which set is missing, and (``to_resolve``) the flag that gives it."""
    lacking = s.lacks(*needs)
    if not lacking:
        return None
    why = missing_reason(lacking)
    flags = " and ".join(OPTIONAL_SETS[k][1] for k in lacking)
    text = (f"This finding compares {what}. This audit had {why.partition(' (')[0]}, so it was not run: no other set "
            "stands in for them. ")
    return Finding(id=id_, title=title, verdict="not run", text=_close(text, "not run", why + "."),
                   numbers={"missing": list(lacking)}, statistic=statistic,
                   to_resolve=f"audit again with {flags} (a folder, an .npz file or data:NAME:SPLIT)")


# ==== (a) ===========================================================================================
def _median_error(s: AuditSummary, name: str) -> Optional[float]:
    """The set's median inversion error (``None``: the audit has no such set)."""
    if name not in s.splits:
        return None
    err = s.splits[name].inversion_error
    assert err is not None, f"{name} images are inverted"  # only the model samples are not
    return err.median


_A_TITLE = "The GAN does not pass through its training images"
_A_STATISTIC = "median inversion error, training / generated images"


def _finding_a(s: AuditSummary, t: Thresholds) -> Finding:
    skipped = _not_run(s, "a", _A_TITLE, _A_STATISTIC, "the inversion errors of training images with those of "
                       "images the generator made itself", ("train",))
    if skipped is not None:
        return skipped
    tr, te, ge = (_median_error(s, k) for k in ("train", "test", "generated"))
    inv = s.inversion
    ratio = inv.train_over_generated
    lo, hi = _bounds(*(inv.train_over_generated_ci or (ratio, ratio)))
    to_resolve = ""
    if lo >= t.a_holds_ratio:
        verdict, reason = "holds", f"the whole interval is at or above {_f(t.a_holds_ratio)}."
    elif lo > t.a_direction_ratio:
        verdict, reason = "partly holds", (
            f"training images lie significantly farther from the manifold than generated ones (the interval lies above "
            f"{_f(t.a_direction_ratio)}), but an order of magnitude is "
            + (f"not reached (the interval lies below {_f(t.a_holds_ratio)})." if hi < t.a_holds_ratio
               else f"not established (the interval reaches below {_f(t.a_holds_ratio)})."))
    elif hi < t.a_holds_ratio:
        verdict, reason = "does not hold", (f"the interval excludes an order of magnitude (it lies below "
                                            f"{_f(t.a_holds_ratio)}) and does not show training images farther from the "
                                            f"manifold than generated ones at all (it reaches {_f(t.a_direction_ratio)}).")
    else:
        verdict, reason = "unresolved", (f"the interval reaches both {_f(t.a_direction_ratio)} and "
                                         f"{_f(t.a_holds_ratio)}.")
    if verdict == "unresolved" and ratio is not None and lo > 0 and math.isfinite(hi):
        half = (math.log(hi) - math.log(lo)) / 2
        n = s.splits["train"].n
        # clearing either threshold decides it; the interval shrinks around the estimate, so the
        # threshold farther from it is cleared first
        far = max(abs(math.log(ratio) - math.log(x)) for x in (t.a_direction_ratio, t.a_holds_ratio))
        to_resolve = _more_images(n, half, far, f"an interval clear of {_f(t.a_direction_ratio)} or "
                                                f"{_f(t.a_holds_ratio)}")
    text = (
        f"The median inversion error ({s.error_unit}) of training images is {_f(tr)}, against {_f(ge)} for images "
        f"the generator produced itself: a ratio of {_f(ratio)}, 95% bootstrap interval {_ci(lo, hi)} (Mann-Whitney "
        f"p = {_f(inv.pvalue_train_vs_generated)}; held-out test images: "
        f"{_f(te) if te is not None else 'not run, ' + missing_reason(['test'])}). "
        f"Friedman & Weiss report about an order of magnitude; the finding holds when the interval lies at or above "
        f"{_f(t.a_holds_ratio)}, partly when it lies above {_f(t.a_direction_ratio)} (training images significantly "
        "farther) but not at 10. "
    )
    rests_on = ("generated images lie exactly on the manifold, so their inversion error is the optimiser's error alone "
                f"(median {_f(ge)}): a better inversion lowers it and raises the ratio, so the ratio is only as large as "
                "the inversion is good")
    return Finding(id="a", title=_A_TITLE, verdict=verdict,
                   text=_close(text, verdict, reason),
                   numbers={"median_train": tr, "median_generated": ge, "median_test": te, "ratio": ratio,
                            "ratio_ci": [lo, hi]},
                   statistic=_A_STATISTIC,
                   test=f"Mann-Whitney U, training vs generated errors (p = {_f(inv.pvalue_train_vs_generated)})",
                   uncertainty=f"95% percentile-bootstrap interval of the ratio {_ci(lo, hi)}",
                   rests_on=rests_on, to_resolve=to_resolve)


# ==== (b) ===========================================================================================
_B_TITLE = "The GAN passes as close to OOD images as to in-distribution ones"
_B_STATISTIC = "AUROC of the inversion error, held-out test images vs each OOD set"


def _finding_b(s: AuditSummary, t: Thresholds) -> Finding:
    skipped = _not_run(s, "b", _B_TITLE, _B_STATISTIC, "how far OOD images lie from the manifold with how far held-out "
                       "test images do (inversion errors)", ("test",))
    if skipped is not None:
        return skipped
    close, far, open_ = [], [], []
    listing, needs = [], []
    for k, v in s.auroc.items():
        lo, hi = v.auroc_inversion_ci or (v.auroc_inversion, v.auroc_inversion)
        listing.append(f"{k} {_f(v.auroc_inversion)} {_ci(lo, hi)}")
        (close if hi <= t.b_close_auroc else far if lo > t.b_close_auroc else open_).append(k)
        if k in open_:
            n = min(s.splits[k].n, s.splits["test"].n)
            needs.append(_more_images(n, (hi - lo) / 2, abs(v.auroc_inversion - t.b_close_auroc), k))
    if close and not far and not open_:
        verdict, reason = "holds", "every OOD set is as close to the manifold as held-out images."
    elif close:
        verdict = "partly holds"
        reason = f"the manifold passes as close to {', '.join(close)} as to held-out images"
        reason += f"; {', '.join(far)} {'is' if len(far) == 1 else 'are'} clearly farther away" if far else ""
        reason += f"; {', '.join(open_)} unresolved" if open_ else ""
        reason += "."
    elif open_:
        verdict, reason = "unresolved", (f"no set is resolved as close; the intervals of {', '.join(open_)} "
                                         f"straddle {_f(t.b_close_auroc)}.")
    else:
        verdict, reason = "does not hold", "every OOD set lies clearly farther from the manifold than held-out images."
    text = " ".join([
        "AUROC of the inversion error for telling each OOD set from held-out test images (0.5 = no better than",
        f"chance, 1 = OOD images always farther from the manifold), with DeLong 95% intervals: {'; '.join(listing)}.",
        "A set counts as being as close as in-distribution images when its interval lies at or below",
        f"{_f(t.b_close_auroc)}, as farther when it lies above. ",
    ])
    return Finding(id="b", title=_B_TITLE, verdict=verdict,
                   text=_close(text, verdict, reason),
                   numbers={"auroc_inversion": {k: v.auroc_inversion for k, v in s.auroc.items()}, "close": close,
                            "far": far, "unresolved": open_},
                   statistic=_B_STATISTIC,
                   test=f"DeLong 95% interval of each AUROC against {_f(t.b_close_auroc)}",
                   uncertainty="; ".join(listing),
                   rests_on=("the inversion error bounds each image's distance to the manifold from above, with the "
                             "same optimiser for every set (a set that is harder to invert looks farther)"),
                   to_resolve=("an interval clear of " + _f(t.b_close_auroc) + " for " + "; ".join(needs)) if needs else "")


# ==== (c) ===========================================================================================
def _shift_side(st: Optional[ShiftTest], point: float, error_low: float, error_high: float) -> str:
    """'higher' / 'lower' / 'open' for a shift of set B's lower bounds over set A's: B is higher only
    when the interval clears A's error (A's true values may be that much above its bounds), lower
    only when it clears B's."""
    lo, hi = _bounds(st.lo, st.hi) if st is not None else (point, point)
    if lo - error_low > 0:
        return "higher"
    if hi + error_high < 0:
        return "lower"
    return "open"


def _correlation_side(lo: Optional[float], hi: Optional[float], r_max: Optional[float], r_min: Optional[float],
                      t: Thresholds) -> str:
    """'anti' / 'weak' / 'none' / 'open' from a correlation's (widened) interval and its extremes."""
    if lo is None or hi is None or r_max is None or r_min is None:
        return "open"
    if hi < 0:
        return "anti" if r_max <= t.c_anti_rho else "weak"
    if lo > t.c_anti_rho:
        return "none"
    return "open"


def _envelope_side(env: CorrelationEnvelope, t: Thresholds) -> str:
    return _correlation_side(env.lo, env.hi, env.r_max, env.r_min, t)


_CORRELATION_WORDS = {"anti": "anti-correlated", "weak": "weakly anti-correlated", "none": "not anti-correlated"}


def _part2(corr: Optional[SetCorrelation], e: _Allowance, t: Thresholds) -> Tuple[str, str, str]:
    """(side, interval shown, to resolve) of (c)'s part 2: the envelope at the allowance (an error
    of 0 only when the allowance is 0)."""
    if corr is None or corr.r is None:
        return "open", "n/a", "more images per set (fewer than 4 in every set)"
    plain = _correlation_side(corr.lo, corr.hi, corr.r, corr.r, t)
    if e.value == 0.0:
        return plain, _ci(corr.lo, corr.hi), ""
    covering = [env for env in corr.envelope if env.allowance >= e.value * (1 - 1e-9)]
    if not covering:
        return "open", f"{_ci(corr.lo, corr.hi)} without the error (no envelope at this allowance in the summary)", \
            "an audit that records the correlation's envelope at this error allowance"
    full = min(covering, key=lambda env: env.allowance)
    side = _envelope_side(full, t)
    shown = (f"{_ci(full.lo, full.hi)} with every image's bound loose by up to {_f(full.allowance, 4)} nats "
             f"(rho from {_f(full.r_min)} to {_f(full.r_max)}); without that error {_ci(corr.lo, corr.hi)}")
    if side != "open":
        return side, shown, ""
    resolved = [env for env in corr.envelope if _envelope_side(env, t) != "open" and env.allowance < e.value]
    if resolved:
        best = max(resolved, key=lambda env: env.allowance)
        return side, shown, (f"part 2: a bound error of at most {_f(best.allowance, 3)} nats would decide it "
                             f"({_CORRELATION_WORDS[_envelope_side(best, t)]})")
    # the interval (half-width Z95 sqrt(1.06 / (n - 3)) in Fisher z) decides once it clears 0 or the
    # anti-correlation threshold; the one farther from the estimate is cleared first
    z = math.atanh(max(-0.999999, min(0.999999, corr.r)))
    far = max(abs(z), abs(z - math.atanh(t.c_anti_rho)))
    n_need = 3 + math.ceil(1.06 * (Z95 / far) ** 2)
    return side, shown, ("part 2: even an exact likelihood leaves the interval across the thresholds"
                         + f"; about {n_need:,} images in all at today's rho (now {corr.n})")


@dataclass(frozen=True)
class _Part1:
    """(c)'s part 1: its label ("yes", "no", "open" or "not run"), its sentences, the sets resolved
    as more likely and those within the error, and what would resolve it."""

    label: str
    text: str
    higher: List[str]
    unresolved: List[str]
    to_resolve: List[str]


def _part1(s: AuditSummary, e: _Allowance) -> _Part1:
    """OOD sets' log-likelihoods over the training images' (not run without training images)."""
    if s.lacks("train"):
        why = missing_reason(["train"])
        return _Part1("not run", f"Part 1 (each OOD set's log-likelihood over the training images'): not run -- {why}. ",
                      [], [], [f"part 1: audit again with {OPTIONAL_SETS['train'][1]} (a folder, an .npz file or "
                               "data:NAME:SPLIT)"])
    sides = {k: _shift_side(v.likelihood_vs_train, v.median_ll_minus_train, e.value, e.value) for k, v in s.auroc.items()}
    higher = [k for k, v in sides.items() if v == "higher"]
    label = "yes" if higher else ("no" if all(v == "lower" for v in sides.values()) else "open")

    def shift(k: str) -> str:
        st = s.auroc[k].likelihood_vs_train
        if st is None:
            return f"{k} {_f(s.auroc[k].median_ll_minus_train, 4)}"
        return f"{k} {_f(st.shift, 4)} {_ci(st.lo, st.hi, 4)} (p = {_f(st.pvalue)})"

    resolve = []
    for k, v in sides.items():
        st = s.auroc[k].likelihood_vs_train
        if v != "open" or st is None:
            continue
        lo, hi = _bounds(st.lo, st.hi)
        if lo > 0:
            resolve.append(f"{k} counts as more likely with training-image bounds loose by less than {_f(lo, 3)} nats")
        elif hi < 0:
            resolve.append(f"{k} counts as less likely with its own bounds loose by less than {_f(-hi, 3)} nats")
        else:
            resolve.append(f"{k}: the interval straddles 0 even with exact likelihoods (more images)")
    text = (
        f"Part 1: log-likelihood (nats; sigma = {_f(s.sigma.chosen)}) of each OOD set over the training images "
        f"(median {_f(s.splits['train'].log_likelihood.median, 4)}): Hodges-Lehmann shift with its 95% interval and "
        f"Mann-Whitney p: {'; '.join(shift(k) for k in s.auroc)}. These are lower bounds, each possibly too low by up "
        f"to the error allowance e = {e}: a set counts as more likely only when its interval lies above e (the "
        f"training images' bounds may be that much too low), as less likely when it lies below -e. "
    )
    if higher:
        text += f"More likely than the training images: {', '.join(higher)}. "
    unresolved = [k for k, v in sides.items() if v == "open"]
    if unresolved:
        text += f"Within the error (unresolved): {', '.join(unresolved)}. "
    return _Part1(label, text, higher, unresolved, resolve)


def _finding_c(s: AuditSummary, t: Thresholds) -> Finding:
    """Part 1 needs training images; part 2 runs on the sets there are (the OOD sets at least). A part
    that was not run counts like an unresolved one: the other part alone gives at most "partly holds"."""
    e = _allowance(s, t)
    one = _part1(s, e)
    corr = s.correlation.stratified or s.correlation.pooled
    side, shown, resolve2 = _part2(corr, e, t)
    part2 = {"anti": "yes", "weak": "weak", "none": "no", "open": "open"}[side]
    parts = (one.label, part2)
    if parts == ("yes", "yes"):
        verdict = "holds"
    elif "yes" in parts or "weak" in parts:
        verdict = "partly holds"
    elif parts == ("no", "no"):
        verdict = "does not hold"
    else:
        verdict = "unresolved"
    text = one.text
    if corr is not None:
        text += (f"Part 2: Spearman correlation of log-likelihood with local variance (mean coefficient of variation "
                 f"of 8x8 patches) within sets, combined over {', '.join(corr.sets)} (n = {corr.n}): rho = "
                 f"{_f(corr.r)} (p = {_f(corr.pvalue)}), 95% interval {shown}; per set: "
                 + ", ".join(f"{k} {_f(c.r)}" for k, c in s.correlation.per_set.items())
                 + f". Anti-correlated means an interval below 0 with rho <= {_f(t.c_anti_rho)} whatever the error "
                 f"pattern; not anti-correlated an interval above {_f(t.c_anti_rho)}. Pooling the sets instead gives "
                 f"rho = {_f(s.correlation.pooled.r)}, which mixes the differences between sets with the relation "
                 "within them. ")
    p1 = {"yes": "some OOD sets are more likely than training images beyond the error",
          "no": "every OOD set is less likely than training images beyond the error",
          "open": "no OOD set is resolved as more likely (differences within the error)",
          "not run": f"part 1 was not run: {missing_reason(['train'])}"}[one.label]
    p2 = {"yes": "likelihood is anti-correlated with local variance",
          "weak": "likelihood is only weakly anti-correlated with local variance",
          "no": "likelihood is not anti-correlated with local variance",
          "open": "the correlation is unresolved once the likelihood's error is allowed for"}[part2]
    numbers = {"higher_than_train": one.higher, "unresolved_sets": one.unresolved,
               "rho": corr.r if corr else None, "rho_ci": [corr.lo, corr.hi] if corr else None,
               "p": corr.pvalue if corr else None, "correlation": side, "allowance": e.value}
    if one.label == "not run":
        numbers["not_run"] = ["part 1"]
    return Finding(id="c", title="OOD images get higher likelihood; likelihood falls with local variance",
                   verdict=verdict, text=_close(text, verdict, f"{p1}; {p2}."), numbers=numbers,
                   statistic="Hodges-Lehmann shift of log-likelihood (OOD over training); within-set Spearman rho",
                   test="Mann-Whitney U per OOD set; Spearman per set, combined by Fisher z",
                   uncertainty=f"95% intervals; likelihoods' error allowance e = {e}",
                   rests_on=_ASSUMED, to_resolve="; ".join(one.to_resolve + ([resolve2] if resolve2 else [])))


# ==== (d) ===========================================================================================
def _count_p(tr: TypicalityTestSummary) -> Tuple[Optional[float], str]:
    """The p-value of the number of flagged batches, and what it is."""
    if tr.calibrated is not None:
        c = tr.calibrated
        return c.pvalue, f"simulated null of the count ({c.n_null} replicates; shared H and pool)"
    if tr.rejected is not None:
        return tr.rejected.pvalue_above_null, "binomial (this summary predates the calibrated null: it treats batches as independent)"
    return None, "none"


_D_TITLE = "Training images fall outside the GAN's typical set"
_D_STATISTIC = "flagged training batches; Hodges-Lehmann shift of training over model-sample log-likelihoods"


class _DEvidence(NamedTuple):
    """Finding (d)'s numbers: the flag count with its interval and p-value, and the training images'
    log-likelihood shift over the model samples', alone and widened by the error allowance."""

    k: int  # flagged training batches
    lo: Optional[float]  # Clopper-Pearson interval of the rate
    hi: Optional[float]
    p: Optional[float]  # p-value of the count
    p_how: str
    shift: float
    shift_lo: float
    shift_hi: float
    shift_text: str
    w_lo: float  # the shift's interval widened by the allowance on both sides
    w_hi: float


def _d_evidence(tr: TypicalityTestSummary, e: _Allowance) -> _DEvidence:
    rej = tr.rejected
    k = rej.k if rej is not None else int(round((tr.rejection_rate or 0.0) * tr.n_batches))
    lo, hi = (rej.lo, rej.hi) if rej is not None else (tr.rejection_rate, tr.rejection_rate)
    p, p_how = _count_p(tr)
    # the training images' log-likelihoods over the model samples' (negative: less likely)
    if tr.shift is not None:
        sh, sh_lo, sh_hi = tr.shift.shift, *_bounds(tr.shift.lo, tr.shift.hi)
        shift_txt = f"{_f(sh, 4)} nats, 95% interval {_ci(sh_lo, sh_hi, 4)}"
    else:  # older summaries: the batches' median distance from H, without an interval
        sh = sh_lo = sh_hi = tr.entropy - tr.batch_mean_nll.median
        shift_txt = f"{_f(sh, 4)} nats (median batch; no interval in this summary)"
    # the model samples' bounds may be too low by e, the training images' too
    return _DEvidence(k, lo, hi, p, p_how, sh, sh_lo, sh_hi, shift_txt, sh_lo - e.value, sh_hi + e.value)


def _d_decision(v: _DEvidence, tr: TypicalityTestSummary, e: _Allowance, t: Thresholds) -> Tuple[str, str, str]:
    """(verdict, reason, what would resolve it) of finding (d): a claim either way needs the count
    beyond its null *and* a shift that clears the error, or a shift inside the test's tolerance."""
    eps, p = tr.epsilon, v.p
    excess = p is not None and p < t.d_p
    robust = v.w_lo > 0 or v.w_hi < 0
    typical = -eps < v.w_lo and v.w_hi < eps
    if excess and robust and v.lo >= t.d_holds_rate:
        return "holds", (f"training batches are flagged beyond the null (p = {_f(p)}), most of them (interval "
                         f"from {_f(v.lo)}), and their shift clears the likelihood's error."), ""
    if excess and robust:
        return "partly holds", (f"training batches are flagged beyond the null (p = {_f(p)}) and their shift clears the "
                                f"likelihood's error, but not clearly a majority (interval {_ci(v.lo, v.hi)})."), ""
    if typical and not excess:
        return "does not hold", (f"even with the likelihood's error the shift lies within the test's tolerance "
                                 f"(+-{_f(eps, 4)} nats): training images are as typical as the test can tell."), ""
    if excess:
        need = v.shift_lo if v.shift_lo > 0 else (-v.shift_hi if v.shift_hi < 0 else None)
        return "unresolved", (
            f"more training batches are flagged than the null allows (p = {_f(p)}), but the shift widened by the "
            f"error ({_ci(v.w_lo, v.w_hi, 4)}) includes 0: the flags may come from how loose the bounds are on real "
            "images rather than from the model."), (
            f"a likelihood error allowance below {_f(need, 3)} nats (now {_f(e.value, 4)})" if need
            else "more training images: the shift's own interval includes 0")
    if tr.calibrated is not None and v.k > 0 and p is not None and p <= 1.0 / (1 + tr.calibrated.n_null):
        return "unresolved", (f"{v.k} of {tr.n_batches} batches are flagged, as many as the null simulation can judge: "
                              f"its {tr.calibrated.n_null} replicates give no p-value below {_f(p)}, not below "
                              f"{_f(t.d_p)}."), f"more null replicates (at least {math.ceil(1 / t.d_p)}; settings.typicality_null)"
    need = min(eps + v.shift_lo, eps - v.shift_hi)
    return "unresolved", (
        f"the count of flagged batches is not beyond its null (p = {_f(p)}), but the shift widened by the error "
        f"({_ci(v.w_lo, v.w_hi, 4)}) reaches beyond the test's tolerance (+-{_f(eps, 4)} nats), so the test could not "
        "have shown the training images typical."), (
        f"a likelihood error allowance below {_f(need, 3)} nats (now {_f(e.value, 4)}) would show training "
        "batches typical" if need > 0 else
        "the shift's own interval reaches the tolerance: more training images, or a larger batch M")


def _finding_d(s: AuditSummary, t: Thresholds) -> Finding:
    skipped = _not_run(s, "d", _D_TITLE, _D_STATISTIC, "batches of training images with the model's typical set "
                       "(estimated from its own samples)", ("train",))
    if skipped is not None:
        return skipped
    typ, e = s.typicality, _allowance(s, t)
    tr, te = typ.model_typical_set.sets["train"], typ.model_typical_set.sets.get("test")
    v = _d_evidence(tr, e)
    verdict, reason, to_resolve = _d_decision(v, tr, e, t)
    H, nll, eps, rej = tr.entropy, tr.batch_mean_nll.median, tr.epsilon, tr.rejected
    text = (
        f"The model's typical set is estimated from its own samples x = G(z) + sigma*eps: entropy estimate "
        f"H = {_f(H, 4)} nats. A batch of M = {typ.batch_size} images is outside it when its mean NLL differs from H "
        f"more than a {typ.calibration} test at level alpha = {_f(typ.alpha)} allows (tolerance epsilon = "
        f"{_f(eps, 4)} nats). "
        f"{v.k} of {tr.n_batches} batches of training images are flagged (rate {_f(tr.rejection_rate)}, 95% "
        f"Clopper-Pearson interval {_ci(v.lo, v.hi)}; p = {_f(v.p)} from the {v.p_how}"
        + (f"; the binomial test, which treats the batches as independent, says {_f(rej.pvalue_above_null)}"
           if rej is not None and tr.calibrated is not None else "")
        + f"; test images: {_f(te.rejection_rate) if te is not None else 'not run, ' + missing_reason(['test'])}). "
        f"Training images' log-likelihoods over the model samples': "
        f"{v.shift_text} (median batch NLL {_f(nll, 4)}); allowing every bound to be loose by up to e = {e}, the shift "
        f"lies in {_ci(v.w_lo, v.w_hi, 4)}. "
    )
    return Finding(id="d", title=_D_TITLE, verdict=verdict,
                   text=_close(text, verdict, reason),
                   numbers={"rejection_rate_train": tr.rejection_rate, "rejection_ci": [v.lo, v.hi], "pvalue": v.p,
                            "rejection_rate_test": te.rejection_rate if te is not None else None, "entropy": H,
                            "epsilon": eps, "shift": v.shift, "shift_with_error": [v.w_lo, v.w_hi], "allowance": e.value},
                   statistic=_D_STATISTIC,
                   test=f"typicality test ({typ.calibration}, alpha = {_f(typ.alpha)}); the count of flags against "
                        f"its {v.p_how} (p = {_f(v.p)})",
                   uncertainty=f"Clopper-Pearson 95% {_ci(v.lo, v.hi)}; shift {_ci(v.shift_lo, v.shift_hi, 4)}, with the "
                               f"error {_ci(v.w_lo, v.w_hi, 4)}; tolerance +-{_f(eps, 4)} nats",
                   rests_on=("the model samples' bounds are loose by at most the allowance (measured by BDMC); "
                             + _ASSUMED.replace("real and OOD images", "training images")),
                   to_resolve=to_resolve)


# ==== memorisation ==================================================================================
_MEMO_TITLE = "The generator memorises its training images"
_MEMO_STATISTIC = "AUROC of inversion error and of -log p, test vs training; C_T"


def _memorisation(s: AuditSummary, t: Thresholds) -> Finding:
    skipped = _not_run(s, "memorisation", _MEMO_TITLE, _MEMO_STATISTIC, "training images with held-out test images "
                       "(inversion errors, likelihoods, and the generated images' distances to both)", ("train", "test"))
    if skipped is not None:
        return skipped
    m = s.memorisation
    assert m is not None, "an audit with training and test images compares them"  # stages.memorisation
    lo, hi = m.auroc_inversion_ci or (m.auroc_inversion, m.auroc_inversion)
    l_lo, l_hi = m.auroc_likelihood_ci or (m.auroc_likelihood, m.auroc_likelihood)
    inv_signal = lo > 0.5 and m.p_inversion is not None and m.p_inversion < t.memo_p
    # exchangeable sets: the rank test needs no allowance (the bounds' error is alike on both)
    ll_signal = m.auroc_likelihood > 0.5 and m.p_likelihood is not None and m.p_likelihood < t.memo_p
    ct = m.data_copying
    ct_signal = ct is not None and ct.pvalue < t.memo_p
    ct_clear = ct is not None and ct.c_t - Z95 * ct.null_sd > t.memo_copying_ct
    signals: List[str] = [name for name, on in (("inversion AUROC", inv_signal), ("likelihood rank test", ll_signal),
                                                 ("C_T", ct_signal)) if on]
    missing: List[str] = []
    if hi >= t.memo_auroc:
        missing.append(_more_images(min(s.splits["train"].n, s.splits["test"].n), (hi - lo) / 2,
                                    abs(m.auroc_inversion - t.memo_auroc), f"an inversion-AUROC interval below {_f(t.memo_auroc)}"))
    if l_hi >= t.memo_auroc:
        missing.append(_more_images(min(s.splits["train"].n, s.splits["test"].n), (l_hi - l_lo) / 2,
                                    abs(m.auroc_likelihood - t.memo_auroc), f"a likelihood-AUROC interval below {_f(t.memo_auroc)}"))
    if ct is None:
        missing.append("a data-copying test (" + (m.data_copying_skipped or "not part of this summary") + ")")
    elif not ct_clear:
        missing.append(f"C_T's interval above {_f(t.memo_copying_ct)} (more held-out and generated images)")
    if ct_signal and (inv_signal or ll_signal):
        verdict, reason = "holds", f"signals from {', '.join(signals)}."
    elif signals:
        verdict, reason = "partly holds", f"a signal from {', '.join(signals)} only."
    elif not missing:
        verdict, reason = "does not hold", (f"no copying signal, and the intervals rule a strong one out: both AUROCs below "
                                            f"{_f(t.memo_auroc)}, C_T above {_f(t.memo_copying_ct)}.")
    else:
        verdict, reason = "unresolved", "no signal, but the tests cannot rule memorisation out."
    sp = s.splits
    text = (
        f"A generator that memorised its training set reconstructs and scores training images better than held-out "
        f"ones, and its samples sit closer to training images than new data do. Median inversion error: train "
        f"{_f(_median_error(s, 'train'))}, test {_f(_median_error(s, 'test'))} (AUROC test vs train {_f(m.auroc_inversion)}, "
        f"DeLong 95% {_ci(lo, hi)}, Mann-Whitney p = {_f(m.p_inversion)}). Log-likelihood: train median "
        f"{_f(sp['train'].log_likelihood.median, 4)}, test {_f(sp['test'].log_likelihood.median, 4)} nats (AUROC of -log p, "
        f"test vs train, {_f(m.auroc_likelihood)} {_ci(l_lo, l_hi)}, Mann-Whitney p = {_f(m.p_likelihood)}"
    )
    if m.likelihood_shift is not None:
        ls = m.likelihood_shift
        text += f"; shift of test over train {_f(ls.shift, 3)}, 95% {_ci(ls.lo, ls.hi, 3)}"
    text += ("). Training and test images are exchangeable when nothing is memorised, so these rank tests are valid "
             "as they stand: the likelihood bounds' error is alike on both sets. ")
    if ct is not None:
        text += (f"Data-copying test C_T (Meehan et al. 2020; {ct.cells_used} of {ct.n_cells} k-means cells of "
                 f"{ct.n_train} training images, {ct.n_generated} generated vs {ct.n_test} held-out images, "
                 f"{ct.space}, nearest training image {ct.neighbours}): C_T = {_f(ct.c_t)} (null sd {_f(ct.null_sd)}, "
                 f"one-sided p = {_f(ct.pvalue)}); C_T << 0 means copying, >> 0 underfitting. ")
    else:
        text += f"The data-copying test C_T was not run ({m.data_copying_skipped or 'not part of this summary'}). "
    return Finding(id="memorisation", title=_MEMO_TITLE, verdict=verdict,
                   text=_close(text, verdict, reason),
                   numbers={"auroc_inversion": m.auroc_inversion, "auroc_inversion_ci": [lo, hi],
                            "p_inversion": m.p_inversion, "auroc_likelihood": m.auroc_likelihood,
                            "p_likelihood": m.p_likelihood, "c_t": ct.c_t if ct else None,
                            "c_t_pvalue": ct.pvalue if ct else None, "signals": signals},
                   statistic=_MEMO_STATISTIC,
                   test="Mann-Whitney U (train vs test); Meehan et al.'s C_T (per-cell Mann-Whitney z)",
                   uncertainty=f"DeLong 95% {_ci(lo, hi)} (inversion), {_ci(l_lo, l_hi)} (likelihood); C_T null sd "
                               f"{_f(ct.null_sd) if ct else 'n/a'}",
                   rests_on=("train and test images are exchangeable draws when nothing is memorised (the data set's "
                             "split is random); C_T measures pixel distances, so copies shifted or recoloured are missed"),
                   to_resolve="; ".join(missing) if verdict == "unresolved" else "")


def findings(summary: AuditSummary, thresholds: Thresholds = THRESHOLDS) -> List[Finding]:
    """Verdicts (a)-(d) and memorisation, in that order."""
    return [fn(summary, thresholds) for fn in (_finding_a, _finding_b, _finding_c, _finding_d, _memorisation)]


def verdict_of(text: str) -> Optional[str]:
    """The label a finding's text ends with ("Verdict: LABEL -- ..."), for checks."""
    tail = text.rpartition("Verdict: ")[2]
    return next((v for v in sorted(VERDICTS, key=len, reverse=True) if tail.startswith(v + " --")), None)
