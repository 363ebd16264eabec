"""Audit precision: the BDMC gap of the audit's likelihood estimator, old proposal against new, and
the wall time of the whole ``statgan audit`` with each, in one run on one machine.

Arms (both the current code, same seed, same images):

* ``legacy``: ``AuditSettings.LEGACY`` -- AIS from N(z_inverted, 0.2^2 I), 200 steps, 1 chain, 5
  leapfrog steps (the defaults before the Laplace proposal; the old audit also ran a second,
  prior-path BDMC and reported a biased per-image minimum of the two upper bounds, which is gone);
* ``new``: the current defaults (Laplace mixture at the distinct inversion optima, see
  statgan.audit.posterior).

For each arm the whole audit (``statgan.audit.run.audit_run``: every stage, the report and files) runs
and is timed, in wall-clock seconds and in the process's CPU seconds (with one torch thread the CPU time
is what the audit costs on an idle core: robust to other jobs on a shared machine, which inflate the
wall time); its summary gives the BDMC bounds on ``bdmc_images`` model samples at the chosen sigma. Then,
for the new settings, the BDMC gap at a few fixed sigma values (``--sigmas``; stage
``bdmc_bounds`` only). Prints medians and the ratios new / legacy.

The sigma table has a third row per sigma, ``oracle``: forward AIS on the same simulated images with
the new settings, but with each image's true latent z added to the proposal's inversion restarts (a
diagnostic, not an estimator: real images have no z). q then depends on z, which leaves the forward
estimate a valid stochastic lower bound (q is normalised whatever it was built from) but voids the
reverse chain's upper bound (it starts at z, where q is large by construction), so only the lower
bound is printed, with its paired difference to ``new``'s: a lower bound on how far below the truth
the audit's estimate is.

    python benchmarks/audit_precision.py RUN_DIR                  # e.g. the default run
    python benchmarks/audit_precision.py RUN_DIR --sigmas 0.05,0.1,0.2 --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import torch

from statgan.audit import stages
from statgan.audit.ais import ais
from statgan.audit.run import audit_run
from statgan.audit.rundata import load_run
from statgan.audit.settings import AuditSettings
from statgan.runtime.seeding import derived_seed

def timed_audit(run_dir: str, settings: AuditSettings) -> tuple:
    """(wall seconds, CPU seconds, AuditSummary) of one whole audit (audit_run, report and files included)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = audit_run(run_dir, settings, out_dir=tmp, log=None)
        return time.perf_counter() - t0, time.process_time() - c0, summary


def oracle_lower(run, sigma: float, s: AuditSettings, bounds: "stages.BDMCBounds"):
    """Forward AIS on ``bounds``' simulated images from the settings' proposal built with each image's
    true latent added to its inversion restarts: (B,) lower bounds (no upper bound: see the module
    docstring)."""
    x, z_true = bounds.result.data, bounds.result.latents
    inv = stages.invert_images(run, x, s, "model-samples", ("l2", None))
    inv = replace(inv, restart_z=torch.cat([inv.restart_z, z_true.unsqueeze(1).to(inv.restart_z)], 1))
    q = stages.proposal(run, x, inv, sigma, s)
    return ais(run.G, x, run.latent_dim, sigma, stages.sampler_options(s), proposal=q,
               seed=derived_seed(s.seed, "audit:bdmc-oracle")).log_likelihood.cpu()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sigmas", default="0.05,0.1,0.2", help="sigma values of the gap table (new settings); '' for no table")
    ap.add_argument("--sigma-images", type=int, default=16, help="simulated images per sigma in the table")
    ap.add_argument("--skip-audits", action="store_true", help="only the sigma table")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"load average at start: {os.getloadavg()}")
    rows = {}
    if not a.skip_audits:
        for name, settings in (("legacy", replace(AuditSettings(), **AuditSettings.LEGACY)), ("new", AuditSettings())):
            wall, cpu, summ = timed_audit(a.run_dir, settings)
            b = summ.bdmc
            rows[name] = (wall, cpu, b.gap.median)
            print(f"{name:>7}: audit {wall:7.1f} s wall, {cpu:7.1f} s CPU (load average now {os.getloadavg()[0]:.1f})  sigma {summ.sigma.chosen}  BDMC median lower {b.lower.median:8.1f}  "
                  f"upper {b.upper.median:8.1f}  gap {b.gap.median:8.1f} nats  stages {summ.timing}", flush=True)
        (wl, cl, gl), (wn, cn, gn) = rows["legacy"], rows["new"]
        print(f"ratio new / legacy: CPU time {cn / cl:.3f} (target <= 1), wall time {wn / wl:.3f}, median BDMC gap {gn / gl:.4f} "
              f"(target: new gap <= 1 nat; got {gn:.1f})", flush=True)
    if not a.sigmas.strip():
        return
    run = load_run(a.run_dir, 0)
    s = AuditSettings(bdmc_images=a.sigma_images)
    print(f"sigma | BDMC on {a.sigma_images} model samples (new settings): median lower, upper, gap; IS median ESS")
    for sg in (float(v) for v in a.sigmas.split(",")):
        t0 = time.perf_counter()
        for name, st in (("legacy", replace(s, **AuditSettings.LEGACY)), ("new", s)):
            b = new = stages.bdmc_bounds(run, sg, st)
            gap = b.upper - b.lower
            print(f"{sg:5.2f} {name:>7} | {b.lower.median():8.1f} {b.upper.median():8.1f} {gap.median():8.1f} | "
                  f"ESS {b.is_ess.median():.1f} of {st.is_samples} | {time.perf_counter() - t0:.0f} s", flush=True)
        o = oracle_lower(run, sg, s, new)
        d = o - new.lower
        print(f"{sg:5.2f} {'oracle':>7} | {o.median():8.1f}      n/a      n/a | true z among q's candidates: forward bound only; "
              f"oracle - new per image: median {d.median():+.1f}, higher on {(d > 0).sum().item()} of {d.numel()} | "
              f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
