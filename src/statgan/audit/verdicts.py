"""Plain-language verdicts on Friedman & Weiss's (2024) findings, computed from an audit summary.

Every verdict is one of :data:`VERDICTS` -- "holds", "partly holds", "does not hold" or
"unresolved" -- and rests on a test with its uncertainty (:mod:`statgan.audit.uncertainty`): a
confidence interval, a rank test, a binomial count. "Unresolved" means the estimator's own
uncertainty (the BDMC gap of the likelihoods, a confidence interval) is larger than the effect, so
the data cannot say. Likelihood differences count only where they exceed the median BDMC gap g:
the true difference of two sets lies (roughly) within the shift's interval widened by g.
Each :class:`~statgan.audit.summary.Finding` states its ``statistic``, ``test`` and ``uncertainty``
and its paragraph quotes the summary's own numbers, ending in "Verdict: LABEL -- reason.", so the
text cannot disagree with the tables or the label. docs/audit.md tabulates the rules.

Findings (Friedman & Weiss, "Unmasking the GAN manifold", arXiv 2402.14098):

(a) the GAN does not pass through its training images: their inversion error is about an order of
    magnitude above that of generated images;
(b) the GAN passes as close to OOD images as to in-distribution ones (inversion-error AUROC ~ 0.5);
(c) OOD images get higher likelihood than training images, and likelihood is anti-correlated with
    local image variance;
(d) training images fall outside the GAN's typical set;
plus memorisation: the generator copies its training images (train vs held-out AUROCs, the
likelihood shift, and Meehan et al.'s data-copying test C_T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from .summary import AuditSummary, Finding, SetCorrelation, ShiftTest

__all__ = ["THRESHOLDS", "Thresholds", "VERDICTS", "findings", "verdict_of"]

#: the four verdicts, in the report's colours: green, amber, red, grey
VERDICTS = ("holds", "partly holds", "does not hold", "unresolved")


@dataclass(frozen=True)
class Thresholds:
    """Every threshold a verdict uses (docs/audit.md tabulates them)."""

    # (a) median inversion error, train / generated: its 95 % interval against these
    a_holds_ratio: float = 10.0
    a_partly_ratio: float = 3.0
    # (b) an OOD set is "as close as" in-distribution images when the 95 % interval of its
    # inversion-error AUROC (held-out test images vs the set) lies at or below this, "farther" above it
    b_close_auroc: float = 0.6
    # (c) within-set Spearman rho of log-likelihood and local variance: "anti-correlated" when its
    # interval is below 0 and the estimate at most c_anti_rho; "not anti-correlated" when the interval
    # excludes c_anti_rho from above
    c_anti_rho: float = -0.3
    # (d) the rejections of training batches must exceed the false-alarm rate (binomial p below
    # d_p); "holds" when the interval of their rate starts at d_holds_rate; "does not hold" needs the
    # interval to end below it (with few batches it does not: unresolved)
    d_holds_rate: float = 0.5
    d_p: float = 0.01
    # memorisation: train-vs-test AUROC interval above 0.5 with Mann-Whitney p below memo_p; C_T's
    # one-sided p below memo_p; "does not hold" needs the AUROC interval below memo_auroc
    memo_auroc: float = 0.6
    memo_p: float = 0.01


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


def _gap(s: AuditSummary) -> float:
    """The median BDMC gap (nats): how far the likelihood estimator may be off."""
    g = s.bdmc.gap.median
    return math.inf if g is None or not math.isfinite(g) else max(0.0, g)


def _median_error(s: AuditSummary, name: str) -> float:
    err = s.splits[name].inversion_error
    assert err is not None, f"{name} images are inverted"  # only the model samples are not
    return err.median


def _close(text: str, verdict: str, reason: str) -> str:
    return f"{text}Verdict: {verdict} -- {reason}"


# ==== (a) ===========================================================================================
def _finding_a(s: AuditSummary, t: Thresholds) -> Finding:
    tr, te, ge = (_median_error(s, k) for k in ("train", "test", "generated"))
    inv = s.inversion
    ratio = inv.train_over_generated
    lo, hi = _bounds(*(inv.train_over_generated_ci or (ratio, ratio)))
    if lo >= t.a_holds_ratio:
        verdict, reason = "holds", f"the whole interval is at or above {_f(t.a_holds_ratio)}."
    elif lo >= t.a_partly_ratio:
        verdict, reason = "partly holds", (f"training images lie clearly farther from the manifold than generated ones "
                                           f"(interval at or above {_f(t.a_partly_ratio)}), but an order of magnitude "
                                           f"is {'not reached' if hi < t.a_holds_ratio else 'not established'}.")
    elif hi < t.a_partly_ratio:
        verdict, reason = "does not hold", f"the whole interval is below {_f(t.a_partly_ratio)}."
    else:
        verdict, reason = "unresolved", f"the interval straddles {_f(t.a_partly_ratio)}."
    text = (
        f"The median inversion error ({s.error_unit}) of training images is {_f(tr)}, against {_f(ge)} for images "
        f"the generator produced itself: a ratio of {_f(ratio)}, 95% bootstrap interval {_ci(lo, hi)} (Mann-Whitney "
        f"p = {_f(inv.pvalue_train_vs_generated)}; held-out test images: {_f(te)}). "
    )
    text += (f"Friedman & Weiss report about an order of magnitude; the finding holds when the interval lies at or "
             f"above {_f(t.a_holds_ratio)}, partly from {_f(t.a_partly_ratio)}. ")
    text += ("Generated images are exactly on the manifold, so their error measures only how well the optimiser "
             "converges; more inversion steps lower it and raise the ratio. ")
    return Finding(id="a", title="The GAN does not pass through its training images", verdict=verdict,
                   text=_close(text, verdict, reason),
                   numbers={"median_train": tr, "median_generated": ge, "median_test": te, "ratio": ratio,
                            "ratio_ci": [lo, hi]},
                   statistic="median inversion error, training / generated images",
                   test=f"Mann-Whitney U, training vs generated errors (p = {_f(inv.pvalue_train_vs_generated)})",
                   uncertainty=f"95% percentile-bootstrap interval of the ratio {_ci(lo, hi)}")


# ==== (b) ===========================================================================================
def _finding_b(s: AuditSummary, t: Thresholds) -> Finding:
    close, far, open_ = [], [], []
    listing = []
    for k, v in s.auroc.items():
        lo, hi = v.auroc_inversion_ci or (v.auroc_inversion, v.auroc_inversion)
        listing.append(f"{k} {_f(v.auroc_inversion)} {_ci(lo, hi)}")
        (close if hi <= t.b_close_auroc else far if lo > t.b_close_auroc else open_).append(k)
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
    return Finding(id="b", title="The GAN passes as close to OOD images as to in-distribution ones", verdict=verdict,
                   text=_close(text, verdict, reason),
                   numbers={"auroc_inversion": {k: v.auroc_inversion for k, v in s.auroc.items()}, "close": close,
                            "far": far, "unresolved": open_},
                   statistic="AUROC of the inversion error, held-out test images vs each OOD set",
                   test=f"DeLong 95% interval of each AUROC against {_f(t.b_close_auroc)}",
                   uncertainty="; ".join(listing))


# ==== (c) ===========================================================================================
def _shift_side(st: Optional[ShiftTest], point: float, gap: float) -> str:
    """'higher' / 'lower' / 'open': the shift's interval widened by the gap, against 0."""
    lo, hi = _bounds(st.lo, st.hi) if st is not None else (point, point)
    if lo - gap > 0:
        return "higher"
    if hi + gap < 0:
        return "lower"
    return "open"


def _correlation_side(c: Optional[SetCorrelation], t: Thresholds) -> str:
    """'anti' / 'weak' / 'none' / 'open' from a correlation's 95 % interval."""
    if c is None or c.r is None:
        return "open"
    lo, hi = _bounds(c.lo, c.hi) if c.lo is not None or c.hi is not None else (c.r, c.r)
    if hi < 0:
        return "anti" if c.r <= t.c_anti_rho else "weak"
    if lo > t.c_anti_rho:
        return "none"
    return "open"


def _finding_c(s: AuditSummary, t: Thresholds) -> Finding:
    sp, gap = s.splits, _gap(s)
    sides = {k: _shift_side(v.likelihood_vs_train, v.median_ll_minus_train, gap) for k, v in s.auroc.items()}
    higher = [k for k, v in sides.items() if v == "higher"]
    part1 = "yes" if higher else ("no" if all(v == "lower" for v in sides.values()) else "open")
    corr = s.correlation.stratified or s.correlation.pooled
    side = _correlation_side(corr, t)
    part2 = {"anti": "yes", "weak": "weak", "none": "no", "open": "open"}[side]
    parts = (part1, part2)
    if parts == ("yes", "yes"):
        verdict = "holds"
    elif "yes" in parts or "weak" in parts:
        verdict = "partly holds"
    elif parts == ("no", "no"):
        verdict = "does not hold"
    else:
        verdict = "unresolved"

    def shift(k: str) -> str:
        st = s.auroc[k].likelihood_vs_train
        if st is None:
            return f"{k} {_f(s.auroc[k].median_ll_minus_train, 4)}"
        return f"{k} {_f(st.shift, 4)} {_ci(st.lo, st.hi, 4)} (p = {_f(st.pvalue)})"

    shifts = "; ".join(shift(k) for k in s.auroc)
    text = (
        f"Part 1: log-likelihood (nats; sigma = {_f(s.sigma.chosen)}) of each OOD set over the training images "
        f"(median {_f(sp['train'].log_likelihood.median, 4)}): Hodges-Lehmann shift with its 95% interval and "
        f"Mann-Whitney p: {shifts}. A set counts as more likely only when its interval lies above the median BDMC "
        f"gap ({_f(gap, 3)} nats: the estimator may be off by that much), and as less likely when it lies below "
        f"minus the gap. "
    )
    if higher:
        text += f"More likely than the training images: {', '.join(higher)}. "
    unresolved_sets = [k for k, v in sides.items() if v == "open"]
    if unresolved_sets:
        text += f"Within the gap (unresolved): {', '.join(unresolved_sets)}. "
    text += (f"Part 2: Spearman correlation of log-likelihood with local variance (mean coefficient of variation of "
             f"8x8 patches) within sets, combined over {', '.join(corr.sets)} (n = {corr.n}): rho = {_f(corr.r)}, "
             f"95% interval {_ci(corr.lo, corr.hi)} (p = {_f(corr.pvalue)}); per set: "
             + ", ".join(f"{k} {_f(c.r)}" for k, c in s.correlation.per_set.items())
             + f". Anti-correlated means an interval below 0 with rho <= {_f(t.c_anti_rho)}. Pooling the sets "
             f"instead gives rho = {_f(s.correlation.pooled.r)}, which mixes the differences between sets with "
             f"the relation within them. ")
    p1 = {"yes": "some OOD sets are more likely than training images",
          "no": "every OOD set is less likely than training images",
          "open": "no OOD set is resolved as more likely (differences within the uncertainty)"}[part1]
    p2 = {"yes": "likelihood is anti-correlated with local variance",
          "weak": "likelihood is only weakly anti-correlated with local variance",
          "no": "likelihood is not anti-correlated with local variance",
          "open": "the correlation is unresolved"}[part2]
    return Finding(id="c", title="OOD images get higher likelihood; likelihood falls with local variance",
                   verdict=verdict, text=_close(text, verdict, f"{p1}; {p2}."),
                   numbers={"higher_than_train": higher, "unresolved_sets": unresolved_sets, "rho": corr.r,
                            "rho_ci": [corr.lo, corr.hi], "p": corr.pvalue, "correlation": side, "gap": gap},
                   statistic="Hodges-Lehmann shift of log-likelihood (OOD over training); within-set Spearman rho",
                   test="Mann-Whitney U per OOD set; Spearman per set, combined by Fisher z",
                   uncertainty=f"95% intervals, widened by the median BDMC gap ({_f(gap, 3)} nats) for likelihoods")


# ==== (d) ===========================================================================================
def _finding_d(s: AuditSummary, t: Thresholds) -> Finding:
    typ, gap = s.typicality, _gap(s)
    tr, te = typ.model_typical_set.sets["train"], typ.model_typical_set.sets["test"]
    rej = tr.rejected
    k = rej.k if rej is not None else int(round((tr.rejection_rate or 0.0) * tr.n_batches))
    lo, hi = (rej.lo, rej.hi) if rej is not None else (tr.rejection_rate, tr.rejection_rate)
    p = rej.pvalue_above_null if rej is not None else None
    H, nll = tr.entropy, tr.batch_mean_nll.median
    effect = abs(nll - H) if H is not None and nll is not None else math.nan
    if p is not None and p >= t.d_p and hi >= t.d_holds_rate:
        # no excess of rejections, but too few batches to rule out that most are outside
        verdict, reason = "unresolved", (f"no more training batches are flagged than alpha allows (binomial p = {_f(p)}), "
                                         f"but {tr.n_batches} batches cannot rule out a majority outside the typical set "
                                         f"(interval {_ci(lo, hi)} reaches {_f(t.d_holds_rate)}).")
    elif p is not None and p >= t.d_p:
        verdict, reason = "does not hold", ("training batches are flagged no more often than the test's false-alarm "
                                            f"rate alpha = {_f(typ.alpha)} allows (binomial p = {_f(p)}).")
    elif not effect > gap:
        verdict, reason = "unresolved", (f"the batches' distance from the entropy ({_f(effect, 3)} nats) is within the "
                                         f"median BDMC gap ({_f(gap, 3)} nats), so the rejections may come from how "
                                         "loose the likelihood bound is on real images rather than from the model.")
    elif lo >= t.d_holds_rate:
        verdict, reason = "holds", f"most training batches are outside the typical set (interval from {_f(lo)})."
    else:
        verdict, reason = "partly holds", (f"training batches are flagged more often than alpha, but not clearly a "
                                           f"majority (interval {_ci(lo, hi)}).")
    direction = "less" if nll is not None and H is not None and nll > H else "more"
    text = (
        f"The model's typical set is estimated from its own samples x = G(z) + sigma*eps: entropy estimate "
        f"H = {_f(H, 4)} nats. A batch of M = {typ.batch_size} images is outside it when its mean NLL differs from H "
        f"more than a {typ.calibration} test at level alpha = {_f(typ.alpha)} allows (the permutation test also "
        f"accounts for the uncertainty of H). "
    )
    text += (f"{k} of {tr.n_batches} batches of training images are flagged (rate {_f(tr.rejection_rate)}, 95% "
             f"Clopper-Pearson interval {_ci(lo, hi)}, binomial p = {_f(p)} against alpha; test images: "
             f"{_f(te.rejection_rate)}); their median batch NLL is {_f(nll, 4)} nats, so training images are "
             f"{direction} likely than typical model samples, by {_f(effect, 3)} nats against a median BDMC gap of "
             f"{_f(gap, 3)} nats. ")
    return Finding(id="d", title="Training images fall outside the GAN's typical set", verdict=verdict,
                   text=_close(text, verdict, reason),
                   numbers={"rejection_rate_train": tr.rejection_rate, "rejection_ci": [lo, hi], "pvalue": p,
                            "rejection_rate_test": te.rejection_rate, "entropy": H, "effect": effect, "gap": gap},
                   statistic="fraction of training batches outside the model's typical set; |median batch NLL - H|",
                   test=f"typicality test ({typ.calibration}, alpha = {_f(typ.alpha)}); binomial test of the "
                        f"rejections against alpha (p = {_f(p)})",
                   uncertainty=f"Clopper-Pearson 95% {_ci(lo, hi)}; median BDMC gap {_f(gap, 3)} nats vs effect "
                               f"{_f(effect, 3)} nats")


# ==== memorisation ==================================================================================
def _memorisation(s: AuditSummary, t: Thresholds) -> Finding:
    m, gap = s.memorisation, _gap(s)
    lo, hi = m.auroc_inversion_ci or (m.auroc_inversion, m.auroc_inversion)
    inv_signal = lo > 0.5 and m.p_inversion is not None and m.p_inversion < t.memo_p
    inv_clear = hi < t.memo_auroc  # a strong preference for training images is ruled out
    ls = m.likelihood_shift  # test over train: negative = training images more likely
    ll_signal = ls is not None and _shift_side(ls, 0.0, gap) == "lower"
    ct = m.data_copying
    ct_signal = ct is not None and ct.pvalue < t.memo_p
    signals: List[str] = [name for name, on in (("inversion AUROC", inv_signal), ("likelihood", ll_signal),
                                                 ("C_T", ct_signal)) if on]
    if ct_signal and (inv_signal or ll_signal):
        verdict, reason = "holds", f"signals from {', '.join(signals)}."
    elif signals:
        verdict, reason = "partly holds", f"a signal from {', '.join(signals)} only."
    elif inv_clear and ct is not None:
        verdict, reason = "does not hold", ("no copying signal: C_T is not below its null, and a strong preference for "
                                            "training images is ruled out by the AUROC interval.")
    else:
        verdict, reason = "unresolved", ("no signal, but the tests cannot rule memorisation out "
                                         + ("(no data-copying test)." if ct is None else "(the AUROC interval is wide)."))
    sp = s.splits
    text = (
        f"A generator that memorised its training set reconstructs and scores training images better than held-out "
        f"ones, and its samples sit closer to training images than new data do. Median inversion error: train "
        f"{_f(_median_error(s, 'train'))}, test {_f(_median_error(s, 'test'))} (AUROC test vs train {_f(m.auroc_inversion)}, "
        f"DeLong 95% {_ci(lo, hi)}, Mann-Whitney p = {_f(m.p_inversion)}). Log-likelihood: train median "
        f"{_f(sp['train'].log_likelihood.median, 4)}, test {_f(sp['test'].log_likelihood.median, 4)} nats"
    )
    if ls is not None:
        text += (f" (shift test over train {_f(ls.shift, 3)}, 95% {_ci(ls.lo, ls.hi, 3)}, p = {_f(ls.pvalue)}; counts "
                 f"only beyond the median BDMC gap of {_f(gap, 3)} nats)")
    text += ". "
    if ct is not None:
        text += (f"Data-copying test C_T (Meehan et al. 2020; {ct.cells_used} of {ct.n_cells} k-means cells of "
                 f"{ct.n_train} training images, {ct.n_generated} generated vs {ct.n_test} held-out images, "
                 f"{ct.space}): C_T = {_f(ct.c_t)} (null sd {_f(ct.null_sd)}, one-sided p = {_f(ct.pvalue)}); "
                 f"C_T << 0 means copying, >> 0 underfitting. ")
    else:
        text += f"The data-copying test C_T was not run ({m.data_copying_skipped or 'not part of this summary'}). "
    return Finding(id="memorisation", title="The generator memorises its training images", verdict=verdict,
                   text=_close(text, verdict, reason),
                   numbers={"auroc_inversion": m.auroc_inversion, "auroc_inversion_ci": [lo, hi],
                            "p_inversion": m.p_inversion, "auroc_likelihood": m.auroc_likelihood,
                            "c_t": ct.c_t if ct else None, "c_t_pvalue": ct.pvalue if ct else None,
                            "signals": signals},
                   statistic="AUROC of inversion error and of -log p, test vs training; C_T",
                   test="Mann-Whitney U (train vs test); Meehan et al.'s C_T (per-cell Mann-Whitney z)",
                   uncertainty=f"DeLong 95% {_ci(lo, hi)}; C_T null sd {_f(ct.null_sd) if ct else 'n/a'}; "
                               f"BDMC gap {_f(gap, 3)} nats")


def findings(summary: AuditSummary, thresholds: Thresholds = THRESHOLDS) -> List[Finding]:
    """Verdicts (a)-(d) and memorisation, in that order."""
    return [fn(summary, thresholds) for fn in (_finding_a, _finding_b, _finding_c, _finding_d, _memorisation)]


def verdict_of(text: str) -> Optional[str]:
    """The label a finding's text ends with ("Verdict: LABEL -- ..."), for checks."""
    tail = text.rpartition("Verdict: ")[2]
    return next((v for v in sorted(VERDICTS, key=len, reverse=True) if tail.startswith(v + " --")), None)
