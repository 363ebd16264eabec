"""Plain-language verdicts on Friedman & Weiss's (2024) findings, computed from an audit summary.

Each verdict is "holds", "partly holds" or "does not hold" by the thresholds below (documented in
docs/audit.md), and its paragraph quotes the summary's own numbers, so the text can never disagree
with the tables. Memorisation (train vs held-out) gets "signal", "weak signal" or "no signal".

Findings (Friedman & Weiss, "Unmasking the GAN manifold", arXiv 2402.14098):

(a) the GAN does not pass through its training images: their inversion error is about an order of
    magnitude above that of generated images;
(b) the GAN passes as close to OOD images as to in-distribution ones (inversion-error AUROC ~ 0.5);
(c) OOD images get higher likelihood than training images, and likelihood is anti-correlated with
    local image variance;
(d) training images fall outside the GAN's typical set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, List

from .summary import AuditSummary, Finding

__all__ = ["THRESHOLDS", "Thresholds", "findings"]


@dataclass(frozen=True)
class Thresholds:
    """Every threshold a verdict uses (docs/audit.md tabulates them)."""

    # (a) median inversion error, train / generated
    a_holds_ratio: float = 10.0
    a_partly_ratio: float = 3.0
    # (b) an OOD set is "as close as" in-distribution images when its inversion-error AUROC
    # (held-out test images vs the set; 1 = perfectly separable by distance) is at most this
    b_close_auroc: float = 0.6
    # (c) likelihood-vs-local-variance: Spearman rho at most this, with p below c_p
    c_anti_rho: float = -0.3
    c_weak_rho: float = -0.1
    c_p: float = 0.01
    # (d) fraction of training-image batches outside the model's typical set
    d_holds_rate: float = 0.5
    d_not_rate: float = 0.1
    # memorisation: AUROC (train vs test) at least this, with Mann-Whitney p below memo_p
    memo_auroc: float = 0.6
    memo_p: float = 0.01


THRESHOLDS = Thresholds()


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if x == float("inf"):
            return "inf"
        if abs(x) >= 1000 or (abs(x) < 1e-3 and x != 0):
            return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.3e}"
        return f"{x:.{digits}g}"
    return str(x)


def _count(rate: Any, n: int) -> str:
    """'3 of 20 (15%)' from a rejection rate and the number of batches."""
    if rate is None:
        return f"n/a of {n}"
    return f"{int(round(rate * n))} of {n} ({rate:.0%})"


def _median_error(s: AuditSummary, name: str) -> float:
    err = s.splits[name].inversion_error
    assert err is not None, f"{name} images are inverted"  # only the model samples are not
    return err.median


def _finding_a(s: AuditSummary, t: Thresholds) -> Finding:
    tr, te, ge = (_median_error(s, k) for k in ("train", "test", "generated"))
    ratio = s.inversion.train_over_generated
    if ratio is not None and ratio >= t.a_holds_ratio:
        verdict = "holds"
    elif ratio is not None and ratio >= t.a_partly_ratio:
        verdict = "partly holds"
    else:
        verdict = "does not hold"
    unit = s.error_unit
    text = (
        f"The median inversion error ({unit}) of training images is {_f(tr)}, against {_f(ge)} for images the "
        f"generator produced itself: a ratio of {_f(ratio)} (held-out test images: {_f(te)}). "
        f"Friedman & Weiss report about an order of magnitude; the finding counts as holding at a ratio of "
        f"at least {_f(t.a_holds_ratio)}, partly from {_f(t.a_partly_ratio)}. "
    )
    if verdict == "holds":
        text += "Here it holds: the GAN manifold does not pass through its training images."
    elif verdict == "partly holds":
        text += ("Here it partly holds: training images lie clearly farther from the manifold than generated ones, "
                 "but by less than an order of magnitude.")
    else:
        text += "Here it does not hold: training images are reconstructed almost as well as generated ones."
    text += (" Generated images are exactly on the manifold, so their error measures only how well the "
             "optimiser converges; more inversion steps lower it and raise the ratio.")
    return Finding(id="a", title="The GAN does not pass through its training images", verdict=verdict, text=text,
                   numbers={"median_train": tr, "median_generated": ge, "median_test": te, "ratio": ratio})


def _finding_b(s: AuditSummary, t: Thresholds) -> Finding:
    au = {k: v.auroc_inversion for k, v in s.auroc.items()}
    close = [k for k, v in au.items() if v is not None and v <= t.b_close_auroc]
    far = [k for k in au if k not in close]
    if au and len(close) == len(au):
        verdict = "holds"
    elif close:
        verdict = "partly holds"
    else:
        verdict = "does not hold"
    listing = ", ".join(f"{k} {_f(v)}" for k, v in au.items())
    text = (
        f"AUROC of the inversion error for telling each OOD set from held-out test images (0.5 = no better than "
        f"chance, 1 = OOD images always farther from the manifold): {listing}. A set counts as being as close as "
        f"in-distribution images at an AUROC of at most {_f(t.b_close_auroc)}. "
    )
    if verdict == "holds":
        text += "Here it holds for every OOD set: distance to the GAN manifold does not reveal OOD images."
    elif verdict == "partly holds":
        text += (f"Here it partly holds: the manifold passes as close to {', '.join(close)} as to test images, "
                 f"but {', '.join(far)} {'is' if len(far) == 1 else 'are'} clearly farther away.")
    else:
        text += "Here it does not hold: every OOD set lies farther from the manifold than in-distribution images."
    return Finding(id="b", title="The GAN passes as close to OOD images as to in-distribution ones", verdict=verdict,
                   text=text, numbers={"auroc_inversion": au, "close": close})


def _finding_c(s: AuditSummary, t: Thresholds) -> Finding:
    sp = s.splits
    train_med = sp["train"].log_likelihood.median
    higher = [k for k, v in s.auroc.items() if v.median_ll_minus_train is not None and v.median_ll_minus_train > 0]
    c = s.correlation.pooled
    rho, p = c.r, c.pvalue
    if rho is not None and p is not None and rho <= t.c_anti_rho and p < t.c_p:
        corr = "anti"
    elif rho is not None and p is not None and rho <= t.c_weak_rho and p < t.c_p:
        corr = "weak"
    else:
        corr = "none"
    parts = int(bool(higher)) + int(corr == "anti")
    verdict = "holds" if parts == 2 else ("partly holds" if parts == 1 or corr == "weak" else "does not hold")
    meds = ", ".join(f"{k} {_f(sp[k].log_likelihood.median, 4)}" for k in s.auroc)
    text = (
        f"Median AIS log-likelihood (nats; sigma = {_f(s.sigma.chosen)}) of training images {_f(train_med, 4)}; "
        f"of the OOD sets: {meds}. "
    )
    gap = s.bdmc.gap.median
    if higher:
        text += (f"{', '.join(higher)} {'gets' if len(higher) == 1 else 'get'} a higher median likelihood than the "
                 f"training images (AUROC of -log p vs training images: "
                 + ", ".join(f"{k} {_f(s.auroc[k].auroc_likelihood_vs_train)}" for k in higher) + "). ")
        diffs = [s.auroc[k].median_ll_minus_train for k in higher]
        if gap is not None and all(v < gap for v in diffs):
            text += (f"But the difference ({', '.join(_f(v, 3) for v in diffs)} nats) is smaller than the median BDMC "
                     f"gap of the estimator ({_f(gap, 3)} nats on model samples), so it is within the AIS "
                     f"uncertainty at this budget. ")
    else:
        text += "No OOD set gets a higher median likelihood than the training images. "
    text += (f"Spearman correlation of log-likelihood with local variance (mean coefficient of variation of 8x8 "
             f"patches) over {c.n} train, test and OOD images: rho = {_f(rho)} (p = {_f(p)}); the threshold for "
             f"anti-correlation is rho <= {_f(t.c_anti_rho)} with p < {_f(t.c_p)}. ")
    tc = s.correlation.test
    text += f"Within the test images alone: rho = {_f(tc.r)} (p = {_f(tc.pvalue)}). "
    summary = {
        "holds": "Here both parts hold.",
        "partly holds": "Here the finding partly holds: "
        + ("some OOD sets are more likely than training data, " if higher else "no OOD set is more likely than training data, ")
        + {"anti": "and likelihood is anti-correlated with local variance.",
           "weak": "and likelihood is only weakly anti-correlated with local variance.",
           "none": "and likelihood is not anti-correlated with local variance."}[corr],
        "does not hold": "Here neither part holds.",
    }[verdict]
    text += summary + " AIS values are stochastic lower bounds (see the BDMC gap)."
    return Finding(id="c", title="OOD images get higher likelihood; likelihood falls with local variance",
                   verdict=verdict, text=text,
                   numbers={"higher_than_train": higher, "rho": rho, "p": p, "correlation": corr})


def _finding_d(s: AuditSummary, t: Thresholds) -> Finding:
    typ = s.typicality
    tr, te = typ.model_typical_set.sets["train"], typ.model_typical_set.sets["test"]
    rate = tr.rejection_rate
    if rate is not None and rate >= t.d_holds_rate:
        verdict = "holds"
    elif rate is not None and rate > t.d_not_rate:
        verdict = "partly holds"
    else:
        verdict = "does not hold"
    H = tr.entropy
    nll = tr.batch_mean_nll.median
    direction = "more" if nll < H else "less"
    M = typ.batch_size
    text = (
        f"The model's typical set is estimated from its own samples x = G(z) + sigma*eps: entropy estimate "
        f"H = {_f(H, 4)} nats, threshold epsilon = {_f(tr.epsilon, 4)} nats (level alpha = "
        f"{_f(typ.alpha)}, bootstrap batches of M = {M}). {_count(rate, tr.n_batches)} batches "
        f"of training images fall outside it (test images: {_count(te.rejection_rate, te.n_batches)}); their "
        f"median batch NLL is {_f(nll, 4)} nats, so training images are {direction} likely than typical model "
        f"samples. The finding counts as holding when at least {_f(t.d_holds_rate)} of the training batches "
        f"are rejected, and as not holding at {_f(t.d_not_rate)} or fewer. "
    )
    text += {"holds": "Here it holds.", "partly holds": "Here it partly holds.",
             "does not hold": "Here it does not hold: training images look typical for the model."}[verdict]
    gap = s.bdmc.gap.median
    if gap is not None and H is not None and nll is not None:
        diff = abs(nll - H)
        text += (f" Caveat: training images and model samples are scored by the same AIS lower bound, whose median "
                 f"BDMC gap on model samples is {_f(gap, 3)} nats; the {_f(diff, 3)}-nat difference is "
                 + ("larger than that." if diff > gap else "within it, so it may reflect how loose the bound is on "
                    "real images rather than the model.")
                 )
    return Finding(id="d", title="Training images fall outside the GAN's typical set", verdict=verdict, text=text,
                   numbers={"rejection_rate_train": rate, "rejection_rate_test": te.rejection_rate, "entropy": H})


def _memorisation(s: AuditSummary, t: Thresholds) -> Finding:
    m = s.memorisation
    strong = [(m.auroc_inversion, m.p_inversion), (m.auroc_likelihood, m.p_likelihood)]
    if any(a is not None and p is not None and a >= t.memo_auroc and p < t.memo_p for a, p in strong):
        verdict = "signal"
    elif any(a is not None and p is not None and a > 0.5 and p < t.memo_p for a, p in strong):
        verdict = "weak signal"
    else:
        verdict = "no signal"
    sp = s.splits
    text = (
        f"A generator that memorised its training set reconstructs and scores training images better than "
        f"held-out ones. Median inversion error: train {_f(_median_error(s, 'train'))}, test "
        f"{_f(_median_error(s, 'test'))} (AUROC {_f(m.auroc_inversion)}, Mann-Whitney p = "
        f"{_f(m.p_inversion)}); mean log-likelihood: train {_f(sp['train'].log_likelihood.mean, 4)}, test "
        f"{_f(sp['test'].log_likelihood.mean, 4)} nats (gap {_f(m.mean_ll_gap, 3)}; AUROC "
        f"{_f(m.auroc_likelihood)}, p = {_f(m.p_likelihood)}). An AUROC above 0.5 means test images are "
        f"farther / less likely; a signal needs AUROC >= {_f(t.memo_auroc)} with p < {_f(t.memo_p)}. "
    )
    text += {"signal": "Here there is a memorisation signal.",
             "weak signal": "Here there is a weak, statistically detectable preference for training images.",
             "no signal": "Here there is no memorisation signal: training and held-out images are treated alike."}[verdict]
    return Finding(id="memorisation", title="Memorisation: training vs held-out images", verdict=verdict, text=text,
                   numbers=asdict(m))


def findings(summary: AuditSummary, thresholds: Thresholds = THRESHOLDS) -> List[Finding]:
    """Verdicts (a)-(d) and memorisation, in that order."""
    return [fn(summary, thresholds) for fn in (_finding_a, _finding_b, _finding_c, _finding_d, _memorisation)]
