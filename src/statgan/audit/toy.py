"""``statgan audit`` on 2-D toy runs: AIS and BDMC beside log p(x) by quadrature.

For a generator G: R^d -> R^2 the audit's density model is (:mod:`statgan.audit.ais`)

    z ~ N(0, I_d),   x | z ~ N(G(z), sigma^2 I_2),   p(x) = \\int N(x; G(z), sigma^2 I) N(z; 0, I) dz.

When d = 2 this integral is computed deterministically (:mod:`statgan.audit.quadrature`, a 1024^2
midpoint grid on [-6, 6]^2 with its own error estimate), so the Monte-Carlo estimators the image
audit must trust -- AIS from the prior (a stochastic lower bound) and BDMC's bracket
[lower, upper] on simulated data -- can be checked against the truth:

* held-out points: ``n`` points of the run's test split (the toy density), AIS vs quadrature;
* simulated points: ``bdmc_images`` points x = G(z) + sigma * eps, BDMC's lower (= forward AIS) and
  upper bounds vs quadrature.

sigma: ``--sigma``, else :data:`DEFAULT_SIGMA` = 0.05 (not chosen from data: the check is of the
sampler at a fixed, hard-enough noise level). 0.05 is the scale of the registered toys' finest
structure (8gaussians modes have std 0.02, 25gaussians 0.05, the ring 0.1), so the density model
still resolves their modes, while the posterior width sigma / ||J_G|| stays above the quadrature's
grid step (0.0117) wherever ||J_G|| < 4 -- for the preset 8gaussians generator (toy-8gaussians,
3000 steps) at 90% of prior samples (measured: the 90% quantile of J_G's largest singular value is
4.2); the quadrature's error estimate covers the rest.

The verdict (:func:`verdict`) carries its uncertainty. It compares only the points whose
quadrature error estimate is <= :data:`RESOLUTION_NATS` (0.1 nats; "converged"), and a set with
fewer than half of its points converged is not compared (a held-out point far from anything G
reaches has its posterior beyond the grid). AIS and BDMC's bounds are stochastic: by
Markov's inequality a correct lower bound exceeds log p(x) by more than b nats with probability
< e^{-b}, and likewise the upper bound falls below it. With b = :data:`SLACK_NATS` = log 20 each
side fails with probability < 0.05, so on simulated points the number of points whose quadrature
value (widened by its own error estimate) lies outside [lower - b, upper + b] is at most
Binomial(n, 0.1) under a correct sampler; on held-out points, AIS above quadrature + b at most
Binomial(n, 0.05). Either count significant at :data:`LEVEL` = 0.01 is a disagreement; so is AIS
falling further short of quadrature on held-out points than on simulated ones (one-sided
Mann-Whitney at 0.01, and a shift of the medians above :data:`RESOLUTION_NATS`): the BDMC gap
measured on simulated data then does not carry over to the data. "agrees" needs none of these,
both sets compared, a median BDMC gap <= :data:`GAP_RESOLVED` nats (looser bounds cannot confirm
anything), and the median |AIS - quadrature| on both sets within the median BDMC spread
|upper - lower| plus the quadrature error (the spread rather than the signed gap: with well-mixed
chains the signed gap is noise around 0 and may be negative); otherwise "unresolved", saying which.
Without a 2-D latent the quadrature is not run (verdict "unresolved", the BDMC gap still reported).

Every call to :func:`statgan.audit.ais.ais` / :func:`~statgan.audit.ais.bdmc` is in
:func:`_estimates`.
"""

from __future__ import annotations

import dataclasses
import html
import io
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from safetensors.torch import save
from torch import Tensor, nn

from .. import __version__
from ..data.toy import get_density
from ..errors import ConfigError
from ..rundir.files import atomic_write_bytes, atomic_write_text
from ..runtime.lazy import scipy_stats
from ..runtime.seeding import derived_seed
from ..viz import png_data_uri
from .ais import ais, bdmc
from .quadrature import DEFAULT_GRID, DEFAULT_RADIUS, quadrature
from .rundata import RunData
from .settings import AuditSettings
from .summary import median, to_json
from .uncertainty import binomial_ci

__all__ = ["DEFAULT_SIGMA", "TOY_FORMAT", "ToyAuditSummary", "ToyPaths", "ToySet", "is_toy", "toy_audit", "verdict"]

TOY_FORMAT = "statgan-toy-audit/1"
#: sigma without ``--sigma`` (see the module docstring)
DEFAULT_SIGMA = 0.05
#: b: a stochastic bound is off by more than b nats with probability < e^{-b} = 0.05 (Markov)
SLACK_NATS = math.log(20.0)
#: level of the binomial and Mann-Whitney tests of the verdict
LEVEL = 0.01
#: nats below which a difference is negligible here (quadrature error, shift of medians)
RESOLUTION_NATS = 0.1
#: median BDMC gap (nats) above which the bounds are too loose to confirm agreement
GAP_RESOLVED = 1.0

Log = Callable[[str], None]


def is_toy(run: RunData) -> bool:
    """Whether the toy audit applies: the generator's samples are 2-D points."""
    return tuple(run.data_shape) == (2,)


# ==== results =======================================================================================
@dataclass
class ToySet:
    """One set of points (``held-out`` or ``simulated``), in nats (densities on the data's units).

    ``quadrature_*``/``median_abs_diff``/``median_shortfall``: None without quadrature (d != 2);
    ``quadrature_mean``/``quadrature_median`` over the converged points, ``quadrature_error_*``
    over all (inf, written null: a posterior entirely beyond the grid).
    ``n_converged``: points whose quadrature error estimate is <= RESOLUTION_NATS; every comparison
    with the estimates (differences, bounds, counts, p-values) uses those points only.
    ``median_shortfall``: median of (quadrature - AIS), >= 0 in expectation (AIS is a lower bound).
    ``bdmc_*``, ``inside_fraction`` (quadrature within [lower - err, upper + err]), ``outside_*``
    (beyond the bounds by more than b + err, b = SLACK_NATS): simulated points only.
    ``ais_above`` (AIS > quadrature + err + b): held-out points only. ``*_p``: the binomial
    p-values of those counts under a correct sampler (module docstring).
    ``data_log_density_mean``: held-out points' exact mean log p_data(x), where the run's dataset is
    a registered toy density (mean log p_data - mean quadrature log p estimates KL(p_data || p_model)).
    """

    name: str
    n: int
    ais_mean: float
    ais_median: float
    n_converged: Optional[int] = None
    quadrature_mean: Optional[float] = None
    quadrature_median: Optional[float] = None
    quadrature_error_median: Optional[float] = None
    quadrature_error_max: Optional[float] = None
    median_abs_diff: Optional[float] = None
    median_shortfall: Optional[float] = None
    bdmc_gap_median: Optional[float] = None
    bdmc_abs_gap_median: Optional[float] = None
    bdmc_gap_max: Optional[float] = None
    bdmc_upper_median: Optional[float] = None
    inside_fraction: Optional[float] = None
    outside_below: Optional[int] = None
    outside_above: Optional[int] = None
    outside_p: Optional[float] = None
    ais_above: Optional[int] = None
    ais_above_p: Optional[float] = None
    data_log_density_mean: Optional[float] = None


@dataclass
class ToyPaths:
    report: str
    summary: str
    per_point: str


@dataclass
class ToyAuditSummary:
    """What :func:`toy_audit` returns and writes as ``summary.json``.

    ``verdict``: "agrees" | "disagrees" | "unresolved"; ``verdict_text``: why, with the numbers.
    ``quadrature``: whether it ran; ``quadrature_note`` says why not (latent dimension d != 2).
    ``heldout``: None when the generator has no test split. ``shift_p``: one-sided Mann-Whitney
    p-value that AIS falls further short of quadrature on held-out than on simulated points.
    """

    run: str
    step: Optional[int]
    weights: Optional[str]
    dataset: str
    data_shape: Tuple[int, ...]
    latent_dim: int
    sigma: float
    sigma_method: str
    settings: Dict[str, Any]
    quadrature: bool
    quadrature_note: str
    n_grid: Optional[int]
    radius: Optional[float]
    grid_step: Optional[float]
    simulated: ToySet
    heldout: Optional[ToySet]
    shift_p: Optional[float]
    verdict: str
    verdict_text: str
    timing: Dict[str, float]
    seconds: float
    versions: Dict[str, str]
    time: str
    format: str = TOY_FORMAT
    paths: Optional[ToyPaths] = None

    def console_lines(self) -> List[str]:
        """What ``statgan audit`` prints for a toy run (before the file names)."""
        lines = [f"toy audit (sigma {self.sigma:g}, {self.sigma_method}): {self.verdict}", f"  {self.verdict_text}"]
        if not self.quadrature:
            lines.append(f"  quadrature not run: {self.quadrature_note}")
        return lines


# ==== the estimators: the one place that calls ais / bdmc ===========================================
@dataclass
class _Estimates:
    heldout_ais: Optional[Tensor]  # (n,) float64
    sim_x: Tensor                  # (m, 2) simulated points G(z) + sigma * eps
    sim_z: Tensor                  # (m, d) their exact latents
    sim_lower: Tensor              # (m,) forward AIS from the prior: the AIS estimate, a stochastic lower bound
    sim_upper: Tensor              # (m,) reverse AIS from the exact latent: a stochastic upper bound


def _estimates(G: nn.Module, latent_dim: int, x_heldout: Optional[Tensor], sigma: float,
               s: AuditSettings) -> _Estimates:
    """AIS from the prior on the held-out points and BDMC on ``s.bdmc_images`` simulated points.

    The only calls to :func:`statgan.audit.ais.ais` and :func:`statgan.audit.ais.bdmc` in the toy
    audit. Prior start (no proposal): the path f_beta = p(z) p(x|z)^beta, K = ``s.chains`` chains,
    T = ``s.ais_steps``, L = ``s.leapfrog`` (keyword changes of :class:`~statgan.audit.ais.SamplerOptions`).
    """
    knobs = dict(n_steps=s.ais_steps, n_chains=s.chains, leapfrog=s.leapfrog)
    heldout = None
    if x_heldout is not None:
        res = ais(G, x_heldout, latent_dim, sigma, seed=derived_seed(s.seed, "audit:toy:ais"), **knobs)
        heldout = res.log_likelihood
    b = bdmc(G, latent_dim, sigma, n_images=s.bdmc_images, seed=derived_seed(s.seed, "audit:toy:bdmc"), **knobs)
    return _Estimates(heldout_ais=heldout, sim_x=b.data.detach(), sim_z=b.latents.detach(), sim_lower=b.lower,
                      sim_upper=b.upper)


# ==== statistics and verdict ========================================================================
def _f(t: Tensor) -> float:
    return float(t.double().mean()) if t.numel() else math.nan


def _binom_p(k: int, n: int, p: float) -> float:
    """P[Binomial(n, p) >= k]."""
    return binomial_ci(k, n, p).pvalue_above_null


def _sim_set(lower: Tensor, upper: Tensor, quad: Optional[Tensor], err: Optional[Tensor]) -> ToySet:
    gap = upper - lower
    out = ToySet(name="simulated", n=int(lower.numel()), ais_mean=_f(lower), ais_median=median(lower),
                 bdmc_gap_median=median(gap), bdmc_abs_gap_median=median(gap.abs()), bdmc_gap_max=float(gap.max()),
                 bdmc_upper_median=median(upper))
    if quad is None or err is None:
        return out
    ok = err <= RESOLUTION_NATS  # the comparisons use the points whose quadrature converged
    q, e, lo, up = quad[ok], err[ok], lower[ok], upper[ok]
    below = int((q < lo - e - SLACK_NATS).sum())
    above = int((q > up + e + SLACK_NATS).sum())
    return dataclasses.replace(
        out, n_converged=int(ok.sum()), quadrature_mean=_f(q), quadrature_median=median(q),
        quadrature_error_median=median(err), quadrature_error_max=float(err.max()),
        median_abs_diff=median((lo - q).abs()), median_shortfall=median(q - lo),
        inside_fraction=_f(((q >= lo - e) & (q <= up + e)).double()), outside_below=below, outside_above=above,
        outside_p=_binom_p(below + above, int(ok.sum()), 2 * math.exp(-SLACK_NATS)))


def _heldout_set(est: Tensor, quad: Optional[Tensor], err: Optional[Tensor], data_lp: Optional[float]) -> ToySet:
    out = ToySet(name="held-out", n=int(est.numel()), ais_mean=_f(est), ais_median=median(est),
                 data_log_density_mean=data_lp)
    if quad is None or err is None:
        return out
    ok = err <= RESOLUTION_NATS
    q, e, a = quad[ok], err[ok], est[ok]
    k = int((a > q + e + SLACK_NATS).sum())
    return dataclasses.replace(
        out, n_converged=int(ok.sum()), quadrature_mean=_f(q), quadrature_median=median(q),
        quadrature_error_median=median(err), quadrature_error_max=float(err.max()),
        median_abs_diff=median((a - q).abs()), median_shortfall=median(q - a), ais_above=k,
        ais_above_p=_binom_p(k, int(ok.sum()), math.exp(-SLACK_NATS)))


def _shift_p(heldout_short: Tensor, sim_short: Tensor) -> float:
    """One-sided Mann-Whitney p-value that held-out shortfalls (quadrature - AIS) exceed simulated ones."""
    if heldout_short.numel() < 2 or sim_short.numel() < 2:
        return math.nan
    return float(scipy_stats().mannwhitneyu(heldout_short.numpy(), sim_short.numpy(), alternative="greater").pvalue)


def _checkable(t: Optional[ToySet]) -> bool:
    """Whether the quadrature converged on enough of a set's points (half, and 2) to compare."""
    return t is not None and t.n_converged is not None and t.n_converged >= max(2, t.n / 2)


def _num(value: Optional[float]) -> float:
    """A summary number, NaN for a value that was not computed."""
    return math.nan if value is None else float(value)


def verdict(sim: ToySet, held: Optional[ToySet], shift_p: Optional[float], quad_note: str = "") -> Tuple[str, str]:
    """("agrees" | "disagrees" | "unresolved", the reason with its numbers); rules in the module docstring.

    Every comparison uses the points whose quadrature error estimate is <= RESOLUTION_NATS; a set with
    fewer than half of its points converged is not compared (a held-out point far from anything G
    reaches has its posterior beyond the grid), and an unchecked set leaves the verdict "unresolved".
    """
    gap = _num(sim.bdmc_gap_median)
    if sim.quadrature_median is None:
        return "unresolved", (f"quadrature not run ({quad_note}); the BDMC gap on simulated points (median {gap:.3g} "
                              "nats) is the only bound on the sampler's error")
    if not _checkable(sim):
        return "unresolved", (f"the quadrature converged on {sim.n_converged} of {sim.n} simulated points only (median "
                              f"error estimate {_num(sim.quadrature_error_median):.3g} nats > {RESOLUTION_NATS:g}): "
                              "the posteriors are narrower than its grid or lie beyond it")
    h = held if held is not None and _checkable(held) else None  # the held-out set, where it can be compared
    sets = [sim] + ([h] if h is not None else [])
    unchecked = ""
    if held is not None and held.quadrature_median is not None and h is None:
        unchecked = (f"held-out points not checked: the quadrature converged on {held.n_converged} of {held.n} only "
                     "(their posteriors lie beyond the grid: G reaches nothing near them)")
    # the compared points' errors are at most RESOLUTION_NATS each
    err = min(max(_num(t.quadrature_error_median) for t in sets), RESOLUTION_NATS)
    problems = []
    if sim.outside_p is not None and sim.outside_p < LEVEL:
        problems.append(f"on {sim.outside_below} simulated point(s) quadrature lies more than {SLACK_NATS:.1f} nats "
                        f"below BDMC's lower bound (AIS overestimates) and on {sim.outside_above} more than that "
                        f"above its upper bound, of {sim.n_converged} (p = {sim.outside_p:.2g} under a correct "
                        "sampler)")
    if h is not None and h.ais_above_p is not None and h.ais_above_p < LEVEL:
        problems.append(f"on {h.ais_above} of {h.n_converged} held-out points AIS exceeds quadrature by more than "
                        f"{SLACK_NATS:.1f} nats (p = {h.ais_above_p:.2g}): not a lower bound")
    shift = _num(h.median_shortfall) - _num(sim.median_shortfall) if h is not None else math.nan
    if shift_p is not None and shift_p < LEVEL and shift > RESOLUTION_NATS:  # NaN compares False
        problems.append(f"AIS falls further short of quadrature on held-out points (median "
                        f"{_num(h.median_shortfall if h else None):.3g} nats) than on simulated ones "
                        f"({_num(sim.median_shortfall):.3g}; Mann-Whitney p = {shift_p:.2g}): the BDMC gap (median "
                        f"{gap:.3g}) does not carry over to the data")
    if problems:
        return "disagrees", "; ".join(problems + ([unchecked] if unchecked else []))
    diffs = ", ".join(f"{t.name} {_num(t.median_abs_diff):.3g}" for t in sets)
    tail = f"; {unchecked}" if unchecked else ""
    if gap > GAP_RESOLVED:
        return "unresolved", (f"no significant disagreement, but the BDMC gap (median {gap:.3g} nats > "
                              f"{GAP_RESOLVED:g}) is too loose to confirm agreement (median |AIS - quadrature|: "
                              f"{diffs}); raise --ais-steps or --chains{tail}")
    # the bounds' spread |upper - lower| (the signed gap of well-mixed chains is noise around 0, and may be < 0)
    spread = _num(sim.bdmc_abs_gap_median)
    allowed = spread + err
    if max(_num(t.median_abs_diff) for t in sets) > allowed:
        return "unresolved", (f"no significant disagreement, but median |AIS - quadrature| ({diffs} nats) exceeds the "
                              f"median BDMC |upper - lower| plus quadrature error ({allowed:.3g}){tail}")
    agree = (f"median |AIS - quadrature| {diffs} nats <= median BDMC |upper - lower| {spread:.3g} + quadrature "
             f"error {err:.2g} (median gap {gap:.3g}); quadrature inside the BDMC bounds on "
             f"{_num(sim.inside_fraction):.0%} of simulated points")
    if unchecked:
        return "unresolved", f"AIS agrees with quadrature on simulated points ({agree}), but {unchecked}"
    return "agrees", "AIS agrees with quadrature within the BDMC gap: " + agree


# ==== the audit =====================================================================================
def _data_log_density(run: RunData, x: Tensor) -> Optional[float]:
    """Mean exact log p_data(x) when the run's data are a registered toy density (else None)."""
    if run.meta is None or "test" in run.given:
        return None
    try:
        density = get_density(str(run.meta.data_record["name"]))
    except (ConfigError, KeyError):
        return None
    lp = density.log_prob(x.double())
    return float(lp.mean()) if bool(torch.isfinite(lp).all()) else -math.inf


def toy_audit(
    run: RunData,
    settings: AuditSettings,
    *,
    out_dir: Optional[Union[str, Path]] = None,
    log: Optional[Log] = None,
    write: bool = True,
    n_grid: int = DEFAULT_GRID,
    radius: float = DEFAULT_RADIUS,
) -> ToyAuditSummary:
    """The toy audit of a loaded run with 2-D samples (see the module docstring).

    Uses ``settings``' seed, n (held-out points), sigma, ais_steps, chains, leapfrog and bdmc_images.
    Writes ``OUT/summary.json`` (:func:`to_json`), ``OUT/report.html`` (self-contained) and
    ``OUT/per_point.safetensors``, OUT = ``out_dir`` or ``RUN/audit``; ``summary.paths`` names them.
    """
    if not is_toy(run):
        raise ConfigError(f"the toy audit needs 2-D points, but {run.dataset!r} has samples of shape "
                          f"{list(run.data_shape)}")
    s = settings.validate()
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    timing: Dict[str, float] = {}
    sigma = float(s.sigma) if s.sigma is not None else DEFAULT_SIGMA
    method = "--sigma" if s.sigma is not None else f"fixed toy default {DEFAULT_SIGMA:g}"
    d = int(run.latent_dim)
    say(f"audit: {run.source.identity.describe()}; toy audit, sigma {sigma:g} ({method})")

    tick = time.perf_counter()
    x_held = run.test_and_valid(s.n, 0)[0].to(run.device) if run.has_test else None
    est = _estimates(run.G, d, x_held, sigma, s)
    timing["ais_bdmc"] = round(time.perf_counter() - tick, 2)
    say(f"audit: AIS and BDMC done in {timing['ais_bdmc']:.1f} s")

    note = "" if d == 2 else f"latent dimension d = {d} != 2"
    quad, err = _quadrature_stage(run, x_held, est, sigma, n_grid, radius, timing, say) if d == 2 else (None, None)
    if d != 2:
        say(f"audit: quadrature not run ({note}); AIS and BDMC only")

    n_held = 0 if x_held is None else x_held.shape[0]
    lower, upper = est.sim_lower.cpu(), est.sim_upper.cpu()
    q_sim = quad[n_held:] if quad is not None else None
    e_sim = err[n_held:] if err is not None else None
    sim = _sim_set(lower, upper, q_sim, e_sim)
    held = shift = None
    if x_held is not None and est.heldout_ais is not None:
        h_est = est.heldout_ais.cpu()
        q_h = quad[:n_held] if quad is not None else None
        e_h = err[:n_held] if err is not None else None
        held = _heldout_set(h_est, q_h, e_h, _data_log_density(run, x_held.cpu()))
        if q_h is not None and q_sim is not None and e_h is not None and e_sim is not None:
            ok_h, ok_s = e_h <= RESOLUTION_NATS, e_sim <= RESOLUTION_NATS  # converged points only
            shift = _shift_p((q_h - h_est)[ok_h], (q_sim - lower)[ok_s])
    v, text = verdict(sim, held, shift, note)
    summary = ToyAuditSummary(
        run=run.source.identity.spec, step=run.step, weights=run.weights, dataset=run.dataset,
        data_shape=tuple(run.data_shape), latent_dim=d, sigma=sigma, sigma_method=method,
        settings={k: getattr(s, k) for k in ("seed", "n", "ais_steps", "chains", "leapfrog", "bdmc_images")},
        quadrature=quad is not None, quadrature_note=note,
        n_grid=n_grid if quad is not None else None, radius=radius if quad is not None else None,
        grid_step=2 * radius / n_grid if quad is not None else None,
        simulated=sim, heldout=held, shift_p=shift, verdict=v, verdict_text=text, timing=timing,
        seconds=round(time.perf_counter() - t0, 2),
        versions={"statgan": __version__, "torch": torch.__version__, "numpy": np.__version__,
                  "python": platform.python_version()},
        time=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    say(f"audit: toy verdict: {v}: {text}")
    if write:
        _write(summary, Path(out_dir) if out_dir is not None else run.source.output_dir("audit"), est, x_held, quad, err, t0)
        say(f"audit: wrote {summary.paths.report} and {summary.paths.summary} ({summary.seconds:.0f} s)")
    return summary


def _quadrature_stage(run: RunData, x_held: Optional[Tensor], est: _Estimates, sigma: float, n_grid: int, radius: float,
                      timing: Dict[str, float], say: Callable[[str], None]) -> Tuple[Tensor, Tensor]:
    """log p(x) by quadrature and its error estimate at the held-out points, then the simulated ones (CPU)."""
    tick = time.perf_counter()
    pts = est.sim_x if x_held is None else torch.cat([x_held, est.sim_x.to(x_held.dtype)])
    q = quadrature(run.G, pts, sigma, latent_dim=2, n_grid=n_grid, radius=radius)
    timing["quadrature"] = round(time.perf_counter() - tick, 2)
    say(f"audit: quadrature ({n_grid}^2 grid on [-{radius:g}, {radius:g}]^2) done in {timing['quadrature']:.1f} s")
    return q.log_px.cpu(), q.error.cpu()


def _write(summary: ToyAuditSummary, out: Path, est: _Estimates, x_held: Optional[Tensor], quad: Optional[Tensor],
           err: Optional[Tensor], t0: float) -> None:
    """The toy audit's files in ``out``: per-point tensors, the report, then summary.json (atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    summary.paths = ToyPaths(report=str(out / "report.html"), summary=str(out / "summary.json"),
                             per_point=str(out / "per_point.safetensors"))
    n_held = 0 if x_held is None else x_held.shape[0]
    tensors = {"simulated.x": est.sim_x, "simulated.z": est.sim_z, "simulated.lower": est.sim_lower.cpu(),
               "simulated.upper": est.sim_upper.cpu()}
    if x_held is not None and est.heldout_ais is not None:
        tensors.update({"heldout.x": x_held, "heldout.ais": est.heldout_ais})
    if quad is not None and err is not None:
        tensors.update({"simulated.quadrature": quad[n_held:], "simulated.quadrature_error": err[n_held:]})
        if n_held:
            tensors.update({"heldout.quadrature": quad[:n_held], "heldout.quadrature_error": err[:n_held]})
    atomic_write_bytes(Path(summary.paths.per_point),
                       save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata={"format": TOY_FORMAT}))
    atomic_write_text(Path(summary.paths.report), render_toy_report(summary, tensors))
    summary.seconds = round(time.perf_counter() - t0, 2)
    atomic_write_text(Path(summary.paths.summary), to_json(summary))


# ==== the report ====================================================================================
_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.meta{color:#555;font-size:.92em}
.finding{border-left:6px solid #777;padding:.4em .9em;margin:1em 0;background:#fafafa}
.finding.agrees{border-color:#2a7d2a}.finding.disagrees{border-color:#b22222}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}img{max-width:100%}code{font-size:.95em}
"""


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "n/a" if math.isnan(x) else str(x)
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def _plot(summary: ToyAuditSummary, t: Dict[str, Tensor]) -> bytes:
    """Left: estimate vs quadrature on the points whose quadrature converged (without quadrature: BDMC
    lower vs upper); right: the points in the data plane coloured by quadrature - AIS (grey: not
    converged)."""
    import matplotlib  # heavy: loaded for the report only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

    def arr(key: str) -> np.ndarray:
        return t[key].detach().double().cpu().numpy()

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    lo, up = arr("simulated.lower"), arr("simulated.upper")
    held = "heldout.ais" in t
    # (name, points, estimate, quadrature or None, converged mask, marker, colour)
    sets = [("simulated", arr("simulated.x"), lo, None, np.ones(len(lo), bool), "o", "tab:orange")]
    if held:
        ah = arr("heldout.ais")
        sets.append(("held-out", arr("heldout.x"), ah, None, np.ones(len(ah), bool), "s", "tab:blue"))
    if summary.quadrature:
        for i, (name, key) in enumerate((("simulated", "simulated"), ("held-out", "heldout"))[: len(sets)]):
            q, e = arr(f"{key}.quadrature"), arr(f"{key}.quadrature_error")
            sets[i] = (*sets[i][:3], q, e <= RESOLUTION_NATS, *sets[i][5:])
        ok = sets[0][4]
        ax.vlines(sets[0][3][ok], lo[ok], up[ok], color="tab:orange", alpha=0.35, lw=1,
                  label="simulated: BDMC [lower, upper]")
        shown, hidden = [], 0
        for name, _, est, q, ok, m, c in sets:
            label = "simulated: AIS (BDMC lower)" if name == "simulated" else "held-out: AIS"
            ax.scatter(q[ok], est[ok], s=14, marker=m, color=c, alpha=0.8, label=label)
            shown += [q[ok], est[ok]]
            hidden += int((~ok).sum())
        shown.append(up[sets[0][4]])
        v = np.concatenate(shown)
        v = v[np.isfinite(v)]
        if v.size:
            a, b = float(v.min()), float(v.max())
            pad = 0.05 * (b - a + 1e-9)
            ax.plot([a - pad, b + pad], [a - pad, b + pad], color="k", lw=0.8, label="y = x")
        ax.set_xlabel("log p(x) by quadrature (nats)")
        ax.set_ylabel("Monte-Carlo estimate (nats)")
        ax.set_title("estimate vs quadrature" + (f" ({hidden} unconverged points not shown)" if hidden else ""))
    else:
        ax.scatter(lo, up, s=14, color="tab:orange", label="simulated points")
        v = np.concatenate([lo, up])
        v = v[np.isfinite(v)]
        a, b = float(v.min()), float(v.max())
        ax.plot([a, b], [a, b], color="k", lw=0.8, label="y = x (zero gap)")
        ax.set_xlabel("BDMC lower bound (nats)")
        ax.set_ylabel("BDMC upper bound (nats)")
        ax.set_title(f"BDMC bounds (no quadrature: {summary.quadrature_note})")
    ax.legend(fontsize=8)
    # the data plane
    if summary.quadrature:
        short = [q - est for _, _, est, q, _, _, _ in sets]
        vals = np.concatenate([s[ok] for s, (_, _, _, _, ok, _, _) in zip(short, sets)])
        lim = max(float(np.nanmax(np.abs(vals))) if vals.size else 0.0, 1e-3)
        sc = None
        for s, (name, pts, _, _, ok, m, _) in zip(short, sets):
            if (~ok).any():
                bx.scatter(pts[~ok, 0], pts[~ok, 1], s=18, marker=m, color="0.7",
                           label=f"{name}: quadrature not converged")
            sc = bx.scatter(pts[ok, 0], pts[ok, 1], c=s[ok], cmap="coolwarm", vmin=-lim, vmax=lim, s=18, marker=m,
                            label=name, edgecolors="none")
        fig.colorbar(sc, ax=bx, label="quadrature - AIS (nats)")
        bx.set_title("points, coloured by how far AIS falls short")
    else:
        for name, pts, _, _, _, m, c in sets:
            bx.scatter(pts[:, 0], pts[:, 1], s=14, marker=m, color=c, label=name)
        bx.set_title("points")
    bx.set_aspect("equal", adjustable="datalim")
    bx.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def render_toy_report(summary: ToyAuditSummary, tensors: Dict[str, Tensor]) -> str:
    """The toy audit's self-contained HTML page (the plot inline as a base64 PNG)."""
    s = summary
    e = html.escape
    sets = [x for x in (s.heldout, s.simulated) if x is not None]
    rows = [
        ("points", [str(x.n) for x in sets]),
        (f"quadrature converged (error estimate ≤ {RESOLUTION_NATS:g} nats): the points compared below",
         [_fmt(x.n_converged) for x in sets]),
        ("mean log p(x), quadrature (converged points)", [_fmt(x.quadrature_mean) for x in sets]),
        ("mean AIS estimate (all points)", [_fmt(x.ais_mean) for x in sets]),
        ("median |AIS − quadrature|", [_fmt(x.median_abs_diff) for x in sets]),
        ("median (quadrature − AIS)", [_fmt(x.median_shortfall) for x in sets]),
        ("quadrature error estimate: median / max",
         [f"{_fmt(x.quadrature_error_median, 2)} / {_fmt(x.quadrature_error_max, 2)}" for x in sets]),
        ("median BDMC gap upper − lower / median |upper − lower|",
         [f"{_fmt(x.bdmc_gap_median)} / {_fmt(x.bdmc_abs_gap_median)}" if x.bdmc_gap_median is not None else "n/a"
          for x in sets]),
        ("quadrature inside [lower − err, upper + err]",
         [_fmt(x.inside_fraction) if x.inside_fraction is None else f"{x.inside_fraction:.0%}" for x in sets]),
        (f"beyond the bounds by > {SLACK_NATS:.1f} nats + err (below / above; p)",
         [f"{x.outside_below} / {x.outside_above}; p = {_fmt(x.outside_p, 2)}" if x.outside_below is not None else "n/a"
          for x in sets]),
        (f"AIS above quadrature by > {SLACK_NATS:.1f} nats + err (p)",
         [f"{x.ais_above}; p = {_fmt(x.ais_above_p, 2)}" if x.ais_above is not None else "n/a" for x in sets]),
        ("mean exact log p_data(x)", [_fmt(x.data_log_density_mean) for x in sets]),
    ]
    head = "".join(f"<th>{e(x.name)}</th>" for x in sets)
    body = "".join(f'<tr><td class="l">{e(name)}</td>' + "".join(f"<td>{v}</td>" for v in vals) + "</tr>"
                   for name, vals in rows)
    quad_line = (f"Quadrature: {s.n_grid}×{s.n_grid} midpoint grid on [−{_fmt(s.radius)}, {_fmt(s.radius)}]², "
                 f"step h = {_fmt(s.grid_step)}; its error estimate adds the largest difference to the four step-2h "
                 "sub-grids and the share of the integral next to the box's edge (a posterior beyond the box)."
                 if s.quadrature else f"Quadrature not run: {e(s.quadrature_note)}.")
    shift = (f" One-sided Mann–Whitney p that AIS falls further short on held-out than on simulated points: "
             f"{_fmt(s.shift_p, 2)}." if s.shift_p is not None else "")
    settings = ", ".join(f"{k} {v}" for k, v in s.settings.items())
    png = _plot(s, tensors)
    caption = ("Left: each point's Monte-Carlo estimate against its quadrature value (simulated points with their "
               "BDMC bracket; points whose quadrature did not converge are left out); on the diagonal, the estimate "
               "is exact. Right: the same points in the data plane, coloured by quadrature − AIS (red: AIS falls "
               "short; grey: quadrature not converged)." if s.quadrature else
               "Left: BDMC's lower against its upper bound on each simulated point (on the diagonal, the bounds "
               "meet). Right: the held-out and simulated points in the data plane.")
    return "\n".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>statgan toy audit: {e(s.run)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Toy audit of <code>{e(s.run)}</code></h1>",
        f'<p class="meta">step {e(str(s.step))} ({e(str(s.weights))} weights), data {e(s.dataset)} '
        f"{e(str(list(s.data_shape)))}, latent dimension {s.latent_dim}; sigma = {_fmt(s.sigma)} "
        f"({e(s.sigma_method)}); {e(settings)}; statgan {e(s.versions['statgan'])}, torch "
        f"{e(s.versions['torch'])}; {e(s.time)}; {_fmt(s.seconds)} s.</p>",
        f'<div class="finding {e(s.verdict)}"><b>Verdict: {e(s.verdict)}.</b> {e(s.verdict_text)}.</div>',
        "<p>The generator is read as a density model, z ~ N(0, I<sub>d</sub>), x | z ~ N(G(z), σ<sup>2</sup> I). "
        "For d = 2 its marginal log p(x) = log ∫ N(x; G(z), σ<sup>2</sup>I) N(z; 0, I) dz is computed by quadrature "
        "(log h² + logsumexp over the grid of the log-integrand, in float64) and compared with AIS from the prior "
        "(a stochastic lower bound) on held-out points of the data and, on points simulated from the model, with "
        "BDMC's stochastic bounds [lower, upper]. A correct sampler's bound misses by more than b nats with "
        f"probability &lt; e<sup>−b</sup>; b = {SLACK_NATS:.2f} here, and counts of such misses are tested against "
        f"that rate at level {LEVEL:g}. {quad_line}{shift}</p>",
        f"<table><tr><th class=\"l\"></th>{head}</tr>{body}</table>",
        f'<figure><img src="{png_data_uri(png)}" alt="estimate vs quadrature">'
        f"<figcaption>{caption}</figcaption></figure>",
        "</body></html>",
    ])
