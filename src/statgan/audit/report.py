"""The audit report: one self-contained HTML file (CSS inline, plots as base64 PNG data: URIs).

Nothing in the page refers to another file or the network (no scripts, fonts or style sheets), so it
can be mailed or archived as is. Plots use matplotlib's Agg backend; sample grids use torchvision.
:func:`render_report` takes the :class:`~statgan.audit.summary.AuditSummary` of
:func:`statgan.audit.run.audit_run` (every number in the text comes from it) and the stages'
per-image results (:class:`~statgan.audit.stages.PerImage`) for the plots.

An audit without training or test images (a generator from elsewhere, given no ``--train`` /
``--test``) renders too: a section that needs a missing set shows one short "not run: ..."
paragraph naming the flag instead of its table or plot, and a note under the title lists what is
missing.
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import fields
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..viz import png_data_uri, png_grid
from .stages import PerImage, errors
from .settings import AuditSettings
from .summary import OPTIONAL_SETS, AuditSummary, SigmaChoice, Stats, median, missing_reason
from .uncertainty import GAP_QUANTILE
from .verdicts import error_allowance

__all__ = ["render_report"]

#: verdict -> CSS class: green, amber, red, grey. "unresolved" (the data cannot say) is never the
#: green of "holds"; the labels of summaries written before verdicts carried their uncertainty
#: ("signal", "weak signal", "no signal") keep distinct colours too.
_VERDICT_CLASS = {"holds": "holds", "partly holds": "partly", "does not hold": "nothold", "unresolved": "unresolved",
                  "not run": "notrun", "signal": "holds", "weak signal": "partly", "no signal": "unresolved"}

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45;overflow-wrap:break-word}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em;display:block;max-width:100%;overflow-x:auto}
th,td{overflow-wrap:normal;word-break:normal}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}
.meta{color:#555;font-size:.92em}
.finding{border-left:6px solid #999;padding:.4em .9em;margin:1em 0;background:#fafafa}
.finding.holds{border-color:#2a7d2a}.finding.partly{border-color:#c98a00}.finding.nothold{border-color:#b22222}
.finding.unresolved{border-color:#777}.finding .how{color:#555;font-size:.88em;margin:.2em 0}
.finding.notrun{border-color:#bbb;border-left-style:dashed;background:#fcfcfc;color:#444}
p.notrun{color:#555;border-left:4px dashed #bbb;padding:.2em .8em;margin:.6em 0}
.missing{background:#fff8e5;border:1px solid #e6c66e;padding:.4em .9em}
.badge{display:inline-block;padding:0 .5em;border-radius:3px;color:#fff;font-size:.85em;margin-left:.4em}
.badge.holds{background:#2a7d2a}.badge.partly{background:#c98a00}.badge.nothold{background:#b22222}
.badge.unresolved{background:#777}.badge.notrun{background:#fff;color:#555;border:1px dashed #999}
.top{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.top img{width:320px}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em;max-width:900px}
img{max-width:100%;image-rendering:pixelated}
"""


# ==== helpers =======================================================================================
def _plt() -> Any:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib  # imported here, not at module level: heavy, and only the report's plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(figsize: Any, ncols: int = 1) -> Any:
    """(fig, axes) with constrained layout, so labels, titles and legends never overlap."""
    fig, axes = _plt().subplots(1, ncols, figsize=figsize, layout="constrained", squeeze=False)
    return fig, (axes[0, 0] if ncols == 1 else list(axes[0]))


def _fig_png(fig: Any) -> bytes:
    for ax in fig.axes:  # long tick labels (set names, symlog decades) slant instead of colliding
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.{digits}e}"
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"
    return html.escape(str(x))


def _e(text: Any) -> str:
    return html.escape(str(text))


def _colors(names: Sequence[str]) -> Dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _img(png: bytes, alt: str, caption: str) -> str:
    return (f'<figure><img src="{png_data_uri(png)}" alt="{_e(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _not_run(reason: str) -> str:
    """The one paragraph a section shows instead of its table or plot when it lacks a set."""
    return f'<p class="notrun"><b>Not run:</b> {_e(reason)}.</p>'


def _table(header: List[str], rows: List[List[Any]], left: int = 1) -> str:
    th = "".join(f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = []
    for r in rows:
        tds = "".join(f'<td class="l">{v if isinstance(v, str) else _fmt(v)}</td>' if i < left
                      else f"<td>{v if isinstance(v, str) else _fmt(v)}</td>" for i, v in enumerate(r))
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ==== plots =========================================================================================
def _linthresh(values: Any) -> float:
    """Linear range of a symlog axis for log-likelihoods: ~1 % of the largest magnitude, rounded up to
    a power of ten (so tick labels near 0 do not crowd), between 10 and 1000 nats."""
    spread = max(float(v.abs().max()) for v in values) + 1.0
    return float(10 ** math.ceil(math.log10(max(10.0, min(1000.0, spread / 100)))))


def _symlog_ticks(values: Any, linthresh: float) -> List[float]:
    """0 and +-10^k outside the linear range, within the data: matplotlib's own symlog locator also
    puts decades inside the linear range, where their labels overlap."""
    vals = [v.double() for v in values]
    lo, hi = min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)
    k0 = int(round(math.log10(linthresh)))
    ticks = [0.0]
    for k in range(k0, 12):
        if 10**k <= hi * 1.5 or k == k0:
            ticks.append(float(10**k))
        if -(10**k) >= lo * 1.5 or k == k0:
            ticks.append(-float(10**k))
    return sorted(set(ticks))


def _plot_inversion(errors: Dict[str, Tensor], unit: str) -> bytes:
    names = list(errors)
    col = _colors(names)
    fig, ax = _figure((8, 3.8))
    vals = {k: torch.log10(v.double().clamp_min(1e-12)) for k, v in errors.items()}
    lo = min(float(v.min()) for v in vals.values())
    hi = max(float(v.max()) for v in vals.values())
    bins = torch.linspace(lo, hi + 1e-9, 41).numpy()
    for k in names:
        ax.hist(vals[k].numpy(), bins=bins, histtype="step", lw=1.8 if k in ("train", "test", "generated") else 1.2,
                color=col[k], label=f"{k} (median {_fmt(median(errors[k]))})", density=True)
    ax.set_xlabel(f"log10 inversion error ({unit})")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Distance to the GAN manifold")
    return _fig_png(fig)


def _plot_loglik(ll: Dict[str, Tensor]) -> bytes:
    plt = _plt()
    names = list(ll)
    col = _colors(names)
    fig, ax = _figure((8, 0.45 * len(names) + 1.6))
    data = [ll[k].double().numpy() for k in names]
    # "orientation" replaced "vert" in matplotlib 3.10 (and "vert" warns from 3.11)
    version = tuple(int(p) for p in plt.matplotlib.__version__.split(".")[:2])
    horizontal = {"orientation": "horizontal"} if version >= (3, 10) else {"vert": False}
    bp = ax.boxplot(data, showfliers=True, patch_artist=True, widths=0.6, flierprops={"markersize": 2}, **horizontal)
    for patch, k in zip(bp["boxes"], names):
        patch.set_facecolor(col[k])
        patch.set_alpha(0.6)
    ax.set_yticks(range(1, len(names) + 1))
    ax.set_yticklabels(names)
    lt = _linthresh(ll.values())
    ax.set_xscale("symlog", linthresh=lt)
    ax.set_xticks(_symlog_ticks(ll.values(), lt))
    ax.set_xlabel("AIS log-likelihood, nats (symmetric log scale; higher = more likely)")
    ax.set_title("Log-likelihood under the GAN + Gaussian observation model")
    ax.grid(axis="x", alpha=0.3)
    return _fig_png(fig)


def _plot_variance(ll: Dict[str, Tensor], lv: Dict[str, Tensor], rho: Any, p: Any) -> bytes:
    names = list(lv)
    col = _colors(names)
    fig, ax = _figure((7.5, 4.6))
    for k in names:
        ax.scatter(lv[k].numpy(), ll[k].numpy(), s=9, color=col[k], label=k, alpha=0.75)
    lt = _linthresh(ll[k] for k in names)
    ax.set_yscale("symlog", linthresh=lt)
    ax.set_yticks(_symlog_ticks([ll[k] for k in names], lt))
    ax.set_xlabel("local variance (mean coefficient of variation of 8x8 patches)")
    ax.set_ylabel("AIS log-likelihood (nats)")
    ax.set_title(f"Likelihood vs local variance\nwithin-set Spearman rho = {_fmt(rho)} (p = {_fmt(p)})", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    return _fig_png(fig)


def _plot_typicality(panels: List[Any]) -> bytes:
    """panels: (title, TypicalityResult-by-set dict); bootstrap histogram, epsilon, batch statistics."""
    fig, axes = _figure((6.2 * len(panels), 4.4), ncols=len(panels))
    for ax, (title, results) in zip(axes if len(panels) > 1 else [axes], panels):
        first = next(iter(results.values()))
        boot = first.bootstrap.double().numpy()
        eps = first.epsilon
        allv = [boot] + [r.statistics.double().numpy() for r in results.values()]
        hi = max(float(v.max()) for v in allv if v.size) + 1e-9
        lin = max(eps, 1e-6)
        ax.set_xscale("symlog", linthresh=lin)
        bins = np.concatenate([np.linspace(0, lin, 15), np.geomspace(lin, max(hi, lin * 1.01), 30)[1:]])
        ax.hist(boot, bins=bins, color="0.7", label="null distribution (reference values)", density=False)
        ax.axvline(eps, color="k", ls="--", lw=1.2, label=f"epsilon = {eps:.3g}")
        col = _colors(list(results))
        ymax = ax.get_ylim()[1]
        for j, (k, r) in enumerate(results.items()):
            s = r.statistics.double().numpy()
            y = ymax * (0.95 - 0.08 * j) * np.ones_like(s)
            ax.scatter(s, y, marker="|", s=120, color=col[k], label=f"{k}: {r.rejection_rate:.2f} rejected")
        ax.set_xlabel("|mean batch NLL - H|, nats")
        ax.set_ylabel("resampled batches")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    return _fig_png(fig)


def _plot_sigma(sigma: SigmaChoice) -> bytes:
    fig, ax = _figure((4.5, 3))
    ax.plot(sigma.candidates, sigma.mean_log_likelihood, "o-")
    ax.axvline(sigma.chosen, color="k", ls="--", lw=1)
    ax.set_xscale("log")
    # the candidates themselves as ticks, and no minor-tick labels (log axes label 3e-1, 4e-1 ... on top
    # of each other)
    ax.set_xticks(list(sigma.candidates), labels=[_fmt(c) for c in sigma.candidates])
    ax.xaxis.set_minor_formatter(_plt().NullFormatter())
    ax.set_yscale("symlog", linthresh=100)
    ax.set_xlabel("sigma")
    ax.set_ylabel("mean valid log-lik (nats)")
    ax.set_title("Observation noise choice", fontsize=10)
    return _fig_png(fig)


# ==== the page ======================================================================================
def _ci(lo: Any, hi: Any) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def _est(value: Any, ci: Any) -> str:
    """'0.512 [0.43, 0.59]' (the estimate and its interval, when there is one)."""
    return _fmt(value) if ci is None else f"{_fmt(value)} {_ci(*ci)}"


def _settings_rows(s: AuditSummary) -> List[List[str]]:
    """(setting, value, "default" or "chosen"): a ``None`` knob shows what it meant in this run
    (sigma: the chosen value; OOD sets: the sets built; cells: automatic) instead of "None"."""
    defaults = AuditSettings()
    copying = s.memorisation.data_copying if s.memorisation is not None else None
    meaning = {"sigma": (f"chosen on held-out images: {_fmt(s.sigma.chosen)}" if s.sigma.candidates
                         else f"{_fmt(s.sigma.chosen)}, {s.sigma.method}"),
               "ood": f"built-in + local external sets: {', '.join(s.ood_sets)}",
               "copying_cells": "automatic" + (f": {copying.n_cells}" if copying else "")}
    rows = []
    for f in fields(s.settings):
        v = getattr(s.settings, f.name)
        shown = meaning.get(f.name, "n/a") if v is None else (", ".join(map(_fmt, v)) if isinstance(v, tuple) else _fmt(v))
        rows.append([_e(f.name), _e(shown) if v is None else shown, "default" if v == getattr(defaults, f.name) else "chosen"])
    return rows


def _generator_line(s: AuditSummary) -> str:
    """Which generator: a run's step and weights; one from elsewhere by kind, file hash and size."""
    g = s.generator
    if g is None or g.kind == "run":
        return f"step {s.step} ({_e(s.weights)} weights)"
    sha = f", sha256 {_e(g.sha256[:16])}…" if g.sha256 else ""
    return (f"a {_e(g.kind)} generator ({_e(g.file or g.spec)}{sha}; weights {_e(g.weights_sha256[:16])}…; "
            f"{g.parameters:,} parameters; latent {_e(g.latent)} {_e('x'.join(map(str, g.latent_shape)))}, "
            f"outputs on [{_fmt(g.output_range[0])}, {_fmt(g.output_range[1])}] mapped to [-1, 1])")


def _top(s: AuditSummary, per: PerImage) -> str:
    """The run's FID (from ``statgan eval``) and a grid of its samples, first thing on the page."""
    if s.fid is not None:
        f = s.fid
        weights = "" if f.weights is None else f", {_e(f.weights)} weights"
        other = f.weights is not None and s.weights is not None and f.weights != s.weights.lower()
        fid = (f"<p><b>FID {_fmt(f.value)}</b> ({_e(f.extractor)} features, n = {_fmt(f.n)}, step {_fmt(f.step)}{weights}"
               + ("" if f.step == s.step else f"; the audit read step {s.step}")
               + (f"; the audit read the {_e(s.weights)} weights" if other else "") + f"; from {_e(f.path)})</p>")
    elif s.step is not None:
        fid = (f"<p><b>FID: not evaluated.</b> Run <code>statgan eval {_e(s.run)}</code> and audit again to see it "
               "here.</p>")
    else:  # a generator from elsewhere: its FID is not kept anywhere the audit could read it
        fid = (f"<p><b>FID: not part of this audit.</b> <code>statgan eval {_e(s.run)} --reference SET</code> "
               "computes it.</p>")
    grid = png_grid(per.sets.generated[:32].float(), nrow=8, pad_value=0.5)
    return (f'<div class="top"><figure><img src="{png_data_uri(grid)}" alt="samples of the generator">'
            f"<figcaption>Samples G(z), z ~ N(0, I) (the audit's generated set).</figcaption></figure>"
            f"<div>{fid}</div></div>")



def _noise_free_note(s: AuditSummary) -> str:
    """Why the generator's noise-free images are (or are not) flagged in the model's typical set."""
    half_d = math.prod(s.data_shape) / 2
    gen = s.typicality.model_typical_set.sets.get("generated")
    eps = gen.epsilon if gen is not None else math.nan
    note = (f"The generator's noise-free images G(z) lie about D/2 = {_fmt(half_d)} nats above a typical model sample "
            "x = G(z) + sigma*eps in log-likelihood (the Gaussian's mode is not in its typical set), so their batches "
            "are expected outside the typical set whenever the tolerance epsilon is below that")
    if gen is None or not math.isfinite(eps):
        return note + "."
    if eps < half_d:
        return note + f" (here epsilon = {_fmt(eps)}: {_fmt(gen.rejection_rate)} of their batches are flagged)."
    return note + (f"; here epsilon = {_fmt(eps)} is wider, so not even they need be flagged ({_fmt(gen.rejection_rate)} "
                   "are): a tolerance that wide is a test with little power.")


def _sigma_margin(sg: SigmaChoice) -> str:
    """'; its lower bounds beat those of the closest other candidate ...': how sure the choice is (empty
    when sigma was given)."""
    if not sg.margins:
        return ""
    m = min(sg.margins, key=lambda x: x.median)
    return (f"; its lower bounds beat those of the closest other candidate, {_fmt(m.candidate)}, by a median "
            f"{_fmt(m.median)} nats per image, 95% interval {_ci(m.lo, m.hi)} -- lower bounds, whose looseness at the "
            "other candidates is not measured")


def _stat(stats: Optional[Stats], name: str) -> Optional[float]:
    """A statistic of a set that may not have it (model samples have no inversion error)."""
    return getattr(stats, name) if stats is not None else None


def _missing_note(s: AuditSummary) -> str:
    """Under the title: which sets the audit lacked, and that what needs them is marked not run
    (empty when it had both)."""
    lacking = s.lacks("train", "test")
    if not lacking:
        return ""
    reason, _, flags = missing_reason(lacking).partition(" (")
    skipped = [f"({f.id})" if len(f.id) == 1 else f.id for f in s.findings if f.verdict == "not run"]
    listed = f"findings {', '.join(skipped)} and " if skipped else ""
    return (f'<p class="missing"><b>This audit had {_e(reason)}</b> ({_e(flags.rstrip(")"))}: a folder, an .npz file or '
            f"data:NAME:SPLIT). What compares with {'them' if len(lacking) > 1 else 'it'} -- {_e(listed)}the sections "
            "below that say so -- is marked <i>not run</i>; what needs only the generator ran as usual: its samples, "
            "BDMC on model samples, the OOD sets and their typicality against the model's samples.</p>")


def _verdicts(s: AuditSummary) -> List[str]:
    """The colour key and one box per finding."""
    out = ["<h2>Verdicts</h2>"]
    not_run = any(f.verdict == "not run" for f in s.findings)
    out.append('<p class="meta">Colours: <span class="badge holds">holds</span><span class="badge partly">partly holds</span>'
               '<span class="badge nothold">does not hold</span><span class="badge unresolved">unresolved</span>'
               + ('<span class="badge notrun">not run</span>' if not_run else "") + " -- whether "
               "the finding holds for this run, not whether that is good. A verdict is only as strong as its weakest "
               "uncertainty: <i>does not hold</i> needs an interval, widened by the estimator's error, that excludes the "
               "claim; <i>unresolved</i> says what would resolve it"
               + ("; <i>not run</i>: the audit lacked the images the finding compares" if not_run else "")
               + ". Likelihoods are lower bounds, allowed to be loose by "
               f"up to {_fmt(error_allowance(s))} nats (the {_fmt(GAP_QUANTILE)} quantile of the per-image BDMC gaps).</p>")
    for f in s.findings:
        cls = _VERDICT_CLASS.get(f.verdict, "")
        label = f"({f.id}) " if len(f.id) == 1 else ""
        how = "".join(f'<p class="how"><b>{name}:</b> {_e(v)}</p>' for name, v in
                      (("statistic", f.statistic), ("test", f.test), ("uncertainty", f.uncertainty),
                       ("rests on", f.rests_on), ("to resolve", f.to_resolve)) if v)
        out.append(f'<div class="finding {cls}" id="finding-{_e(f.id)}"><b>{_e(label + f.title)}</b>'
                   f'<span class="badge {cls}">{_e(f.verdict)}</span>{how}<p>{_e(f.text)}</p></div>')
    return out


def _inversion_section(s: AuditSummary, per: PerImage) -> List[str]:
    """The per-set table, the inversion-error histogram and example reconstructions."""
    sets, err = list(per.sets.scored), errors(per.inversions)
    out = ["<h2>Per image set</h2>"]
    rows = []
    for k, v in s.splits.items():
        inv = v.inversion_error
        rows.append([_e(k), v.n, _stat(inv, "median"), _stat(inv, "q25"), _stat(inv, "q75"), v.log_likelihood.mean,
                     v.log_likelihood.median, v.bits_per_dim.median, _stat(v.local_variance, "mean"), v.ais_acceptance])
    out.append(_table(["set", "n", "inv. error median", "q25", "q75", "log-lik mean", "log-lik median", "bits/dim median",
                       "local var. mean", "HMC accept"], rows))
    out.append(f'<p class="meta">Inversion error: {_e(s.error_unit)}. Log-likelihood: {_e(s.likelihood_unit)}. '
               "<i>valid</i>: held-out images used to choose sigma and for the OOD bootstrap; <i>model_samples</i>: "
               "x = G(z) + sigma eps, the reference for the model's typical set (BDMC forward run). "
               "<i>generated</i>: noise-free G(z)."
               + (f" No {_e(' or '.join(s.lacks('train', 'test')))} row: {_e(missing_reason(s.lacks('train', 'test')))}."
                  if s.lacks("train", "test") else "") + "</p>")
    out.append("<h2>Inversion errors</h2>")
    out.append(_img(_plot_inversion({k: err[k] for k in sets}, s.error_unit),
                    "inversion error histograms",
                    "Distribution of per-image inversion errors (log scale). Finding (a): training vs generated; "
                    "finding (b): test vs OOD sets."))
    out.append("<h3>Example reconstructions</h3><p class=\"meta\">For each set: 8 images (top) and G(z*) of their "
               "inverted latents (bottom).</p><table>")
    for k, images in per.sets.scored.items():
        x = images[:8]
        r = per.inversions[k].reconstructions[:8].detach().float().cpu()
        png = png_grid(torch.cat([x, r]), nrow=x.shape[0], pad_value=0.5)
        out.append(f'<tr><th class="l">{_e(k)}</th><td class="l"><img src="{png_data_uri(png)}" '
                   f'alt="{_e(k)} reconstructions" style="width:{min(8, x.shape[0]) * 60}px"></td></tr>')
    out.append("</table>")
    return out


def _likelihood_section(s: AuditSummary, per: PerImage) -> List[str]:
    """Log-likelihood boxes per set, likelihood against local variance, and the correlation table."""
    ll, lv = per.likelihoods.log_likelihood, per.local_variance
    out = ["<h2>Log-likelihoods</h2>"]
    ll_sets = {k: ll[k] for k in per.sets.inverted}
    ll_sets["model samples"] = per.bdmc.lower
    out.append(_img(_plot_loglik(ll_sets), "log-likelihood distributions",
                    "AIS log-likelihood per image set. Finding (c): do OOD sets score above the training images?"
                    + (f" (Not here: {_e(missing_reason(['train']))}.)" if s.lacks("train") else "")))
    cor = s.correlation
    c = cor.stratified or cor.pooled
    out.append(_img(_plot_variance({k: ll[k] for k in lv}, {k: v for k, v in lv.items() if k != "generated"}, c.r,
                                   c.pvalue),
                    "likelihood against local variance",
                    f"Log-likelihood against local image variance. Spearman rho within sets, combined = {_fmt(c.r)} "
                    f"(95% interval {_ci(c.lo, c.hi)}, p = {_fmt(c.pvalue)}, n = {c.n}); pooled over sets "
                    f"{_fmt(cor.pooled.r)} (misleading when the sets' means differ). Generated images are left out."))
    out.append(_table(["set", "n", "Spearman rho", "95% interval", "p"],
                      [[_e(k), v.n, v.r, _ci(v.lo, v.hi), v.pvalue] for k, v in cor.per_set.items()]
                      + ([[_e("within sets (combined)"), c.n, c.r, _ci(c.lo, c.hi), c.pvalue]] if cor.stratified else [])
                      + [[_e("pooled (for reference)"), cor.pooled.n, cor.pooled.r, _ci(cor.pooled.lo, cor.pooled.hi),
                          cor.pooled.pvalue]]))
    return out


def _typicality_section(s: AuditSummary, per: PerImage) -> List[str]:
    """The typicality tests: their plot (one panel per reference that ran) and table."""
    t = s.typicality
    out = ["<h2>Typicality tests</h2>"]
    panels = [(f"Model's typical set (H from model samples), batches of {t.batch_size}", per.typicality.model)]
    if t.ood_test is not None:
        panels.append((f"OOD test (H from training images), batches of {t.batch_size}", per.typicality.ood))
    where = ("Left: finding (d). Right: Nalisnick et al.'s OOD test. " if t.ood_test is not None else
             "Nalisnick et al.'s OOD test (H from training images) was not run, so the OOD sets are tested here, "
             "against the model's own samples" + ("; finding (d) reads the training images' batches. "
                                                   if "train" in t.model_typical_set.sets else ". "))
    out.append(_img(_plot_typicality(panels), "typicality bootstrap",
                    f"Null distribution of the typicality statistic from the reference values (grey; {_e(t.calibration)}), "
                    f"its (1 - alpha) quantile epsilon (alpha = "
                    f"{_fmt(t.alpha)}), and the statistic of each batch of each set (ticks). A batch right of epsilon is "
                    "outside the typical set (with the permutation test each batch is judged by its own p-value, so a "
                    "batch near epsilon may fall either way). " + where + _noise_free_note(s)))
    groups = [("model typical set", t.model_typical_set)] + ([("OOD test", t.ood_test)] if t.ood_test is not None else [])
    rows = [[_e(name), _e(k), v.n_batches, v.entropy, v.epsilon, v.batch_mean_nll.median, v.rejection_rate,
             _ci(v.rejected.lo, v.rejected.hi) if v.rejected else "n/a",
             v.calibrated.pvalue if v.calibrated else None,
             v.rejected.pvalue_above_null if v.rejected else None,
             _est(v.shift.shift, (v.shift.lo, v.shift.hi)) if v.shift else "n/a"]
            for name, group in groups for k, v in group.sets.items()]
    out.append(_table(["test", "batches of", "n batches", "H (nats)", "epsilon", "median batch NLL", "rejected",
                       "95% interval", "p (count, calibrated)", "p (binomial)", "log-lik shift over reference (HL)"],
                      rows, left=2))
    if t.ood_test is None:
        out.append(_not_run("Nalisnick et al.'s OOD test (H from training images, valid images in the pool): "
                            + missing_reason(s.lacks("train", "test"))))
    out.append(f'<p class="meta">Calibration: {_e(t.calibration)}; batches of M = {t.batch_size}'
               + (f" (asked for {t.batch_size_requested}; a set has fewer images)" if t.batch_size_requested else "")
               + ". Interval: Clopper-Pearson. p (count, calibrated): the number of flagged batches against its "
               "simulated null, in which H and the permutation pool are re-drawn too -- all batches share them, so "
               "their flags are dependent; the binomial p, which treats them as independent, is shown for comparison "
               "and is too small when several batches are flagged. Shift: Hodges-Lehmann estimate of the set's "
               "log-likelihoods over the reference values (those H and the pool come from), with its 95% interval.</p>")
    return out


def _auroc_rows(s: AuditSummary) -> List[Any]:
    """(header, rows) of the AUROC table: the columns whose in-distribution set the audit has."""
    t = s.typicality
    has_test, has_train, typ = not s.lacks("test"), not s.lacks("train"), t.ood_test is not None
    cols = [("OOD set", True, lambda k, v: _e(k)),
            ("AUROC inversion error", has_test, lambda k, v: _est(v.auroc_inversion, v.auroc_inversion_ci)),
            ("AUROC -log p (vs test)", has_test, lambda k, v: _est(v.auroc_likelihood, v.auroc_likelihood_ci)),
            ("AUROC -log p (vs train)", has_train,
             lambda k, v: _est(v.auroc_likelihood_vs_train, v.auroc_likelihood_vs_train_ci)),
            ("log-lik shift over train (HL)", has_train,
             lambda k, v: _est(v.likelihood_vs_train.shift, (v.likelihood_vs_train.lo, v.likelihood_vs_train.hi))
             if v.likelihood_vs_train else _fmt(v.median_ll_minus_train)),
            (f"typicality rejected (M={t.batch_size})", typ, lambda k, v: v.typicality_rejection)]
    kept = [c for c in cols if c[1]]
    return [[h for h, _, _ in kept], [[fn(k, v) for _, _, fn in kept] for k, v in s.auroc.items()]]


def _ood_section(s: AuditSummary) -> List[str]:
    """AUROCs of the OOD sets, and training against held-out images (memorisation)."""
    out = ["<h2>OOD detection (AUROC)</h2>"]
    lacking = s.lacks("train", "test")
    if not s.auroc:
        out.append(_not_run("AUROCs of the OOD sets against test and training images: " + missing_reason(lacking)))
    else:
        header, rows = _auroc_rows(s)
        out.append(_table(header, rows))
        if lacking:
            out.append(_not_run("the columns against " + " and ".join(OPTIONAL_SETS[k][0] for k in lacking)
                                + (" and the OOD typicality test" if s.typicality.ood_test is None else "") + ": "
                                + missing_reason(lacking)))
        out.append('<p class="meta">AUROC: probability that a random OOD image scores higher (farther from the manifold, '
                   "or less likely) than a random in-distribution image; 0.5 = chance, below 0.5 = OOD images look "
                   "<i>more</i> in-distribution. Brackets: DeLong 95% intervals. Log-likelihood shift: Hodges-Lehmann "
                   "estimate of the OOD set's log-likelihoods over the training images' with its distribution-free 95% "
                   "interval (Mann-Whitney); a difference counts only beyond the likelihoods' error allowance "
                   f"({_fmt(error_allowance(s))} nats).</p>")
    out.append("<h3>Train vs held-out</h3>")
    mm = s.memorisation
    if mm is None:
        out.append(_not_run("training images against held-out test images, and the data-copying test C_T: "
                            + missing_reason(lacking)))
        return out
    out.append(_table(["score", "AUROC (test vs train)", "Mann-Whitney p"],
                      [["inversion error", _est(mm.auroc_inversion, mm.auroc_inversion_ci), mm.p_inversion],
                       ["-log-likelihood", _est(mm.auroc_likelihood, mm.auroc_likelihood_ci), mm.p_likelihood]]))
    ct = mm.data_copying
    if ct is not None:
        out.append(f"<p>Data-copying test C_T (Meehan, Chaudhuri &amp; Dasgupta 2020): distances of {ct.n_generated} "
                   f"generated and {ct.n_test} held-out images to their nearest of {ct.n_train} training images "
                   f"({_e(ct.space)}; the nearest training image looked for {_e(ct.neighbours)}), "
                   f"compared by Mann-Whitney z within {ct.cells_used} of {ct.n_cells} k-means cells (at least "
                   f"{ct.min_per_cell} of each per cell), weighted by held-out mass: <b>C_T = {_fmt(ct.c_t)}</b> (null "
                   f"sd {_fmt(ct.null_sd)}, one-sided p = {_fmt(ct.pvalue)}). C_T &lt;&lt; 0: copying; &gt;&gt; 0: "
                   "underfitting.</p>")
        out.append(_table(["cell", "weight", "Z_U"],
                          [[str(i + 1), w, z] for i, (w, z) in enumerate(zip(ct.cell_weights, ct.cell_z))]))
    return out


def _checks_section(s: AuditSummary) -> List[str]:
    """sigma's choice, BDMC's bounds, the settings and the stages' times."""
    out = ["<h2>Likelihood estimator checks</h2>"]
    sg = s.sigma
    if sg.candidates:
        margins = {mg.candidate: mg for mg in sg.margins}
        out.append(_table(["sigma", "mean valid log-lik (nats)", "chosen minus this, per image: median [95% interval]"],
                          [[_fmt(c_), v, _est(margins[c_].median, (margins[c_].lo, margins[c_].hi)) if c_ in margins
                            else ("chosen" if c_ == sg.chosen else "n/a")]
                           for c_, v in zip(sg.candidates, sg.mean_log_likelihood)]))
        out.append(_img(_plot_sigma(sg), "sigma selection", f"sigma chosen: {_fmt(sg.chosen)} ({_e(sg.method)}, "
                        f"{sg.ais_steps} AIS steps). These are lower bounds: the chosen sigma's beat another's by the "
                        "margin shown (distribution-free interval of the median paired difference), but a candidate "
                        "whose bound is looser -- short AIS runs are looser for small sigma -- may be under-rated by "
                        "more than that, which favours larger sigma; only the chosen sigma's looseness is measured "
                        "(BDMC below)."))
    elif s.lacks("test") and s.settings.sigma is None:
        out.append(_not_run(f"choosing sigma on held-out images -- sigma is {sg.method}"))
    b = s.bdmc
    if b.proposal is not None:
        ess = b.importance_ess
        bounds = (f"Lower bound (the audit's estimator: forward AIS from the {_e(b.proposal)} proposal): mean "
                  f"{_fmt(b.lower.mean)} nats; upper bound (reverse AIS from the exact latent back to the same "
                  f"proposal): mean {_fmt(b.upper.mean)}. Importance sampling from the proposal alone: mean "
                  f"{_fmt(b.lower_importance_sampling.mean if b.lower_importance_sampling else math.nan)} nats"
                  f"{f', median ESS {_fmt(ess.median)} of {s.settings.is_samples}' if ess else ''}. ")
    else:  # a summary written before the Laplace proposal
        bounds = (f"Lower bound (started from inverted latents): mean {_fmt(b.lower.mean)} nats; upper bound: per "
                  f"image the smaller of two reverse runs (biased low), mean {_fmt(b.upper.mean)}. ")
    out.append(f"<p>BDMC on {b.n_images} images simulated from the model, with the audit's own AIS settings. {bounds}"
               f"Gap: mean {_fmt(b.gap.mean)}, median {_fmt(b.gap.median)}, "
               f"max {_fmt(b.gap.max)} nats; the verdicts' error allowance is its {_fmt(GAP_QUANTILE)} quantile, "
               f"{_fmt(error_allowance(s))} nats. The true log p(x) lies (stochastically) between the bounds, so the gap "
               "bounds the error of the audit's likelihoods on data like the simulated data; on real and OOD images it "
               "is not measured, and the verdicts that use the allowance there say so.</p>")
    out.append("<h3>Settings</h3>")
    out.append(_table(["setting", "value", ""], _settings_rows(s)))
    projected = s.projected or {}
    out.append(_table(["stage", "seconds", "projected before it ran"],
                      [[_e(k), v, _fmt(projected[k]) if k in projected else ""] for k, v in s.timing.items()]))
    return out


def render_report(summary: AuditSummary, per: PerImage) -> str:
    """The HTML page as a string."""
    s = summary
    parts: List[str] = []
    add = parts.append
    add("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">")
    add(f"<title>statgan audit: {_e(s.run)}</title><style>{_CSS}</style></head><body>")
    add(f"<h1>Audit of <code>{_e(s.run)}</code></h1>")
    m = s.machine
    add(f'<p class="meta">{_generator_line(s)}, data {_e(s.dataset)} '
        f'{_e(list(s.data_shape))}, latent {s.latent_dim}; statgan {_e(s.versions.statgan)}, torch '
        f'{_e(s.versions.torch)}; {s.time}; {_fmt(s.seconds)} s on {_e(m.device)} with {m.threads} '
        f'thread(s) of {m.cpu_count} CPUs.</p>')
    note = _missing_note(s)
    if note:
        add(note)
    add(_top(s, per))
    add("<p>The generator G is read as a density model: z ~ N(0, I), x | z ~ N(G(z), sigma<sup>2</sup> I) "
        f"with sigma = {_fmt(s.sigma.chosen)} ({_e(s.sigma.method)}{_e(_sigma_margin(s.sigma))}). Inversion finds, per image, the latent "
        "whose output is nearest; AIS estimates log p(x) (a stochastic lower bound). The verdicts test the findings of "
        "Friedman &amp; Weiss, <i>Unmasking the GAN manifold</i> (arXiv 2402.14098), with thresholds stated in each "
        "paragraph and in docs/audit.md.</p>")
    for section in (_verdicts(s), _inversion_section(s, per), _likelihood_section(s, per), _typicality_section(s, per),
                    _ood_section(s), _checks_section(s)):
        parts.extend(section)
    add("</body></html>")
    return "\n".join(parts)
