"""Likelihood samplers at equal compute: the BDMC gap of AIS (today's sigmoid schedule), AIS along an
adaptive schedule, and SMC (resampled particles, adaptive or sigmoid schedule) on the same simulated
images of a run, each arm given about the same number of generator passes.

Every arm is the audit's BDMC (as ``statgan.audit.stages.bdmc_bounds`` of 2026-12-07 ran it: one
seed for all images) with the sampler's options replaced: the simulated images, their inversion and
the Laplace proposal are the same for all arms (same seed), so the bounds are paired image by image. K chains for T steps cost about K * T
transitions, so the arms hold K * T fixed (``--budget``, in chain-steps per image). CPU time is the
process's (one torch thread by default), and the search (inversion + proposal) is counted once per
arm like the annealing, since each arm rebuilds it.

    python benchmarks/likelihood_samplers.py runs/default --sigma 0.1 --budget 1600 --out docs/likelihood-samplers.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict

import torch

from statgan.audit import stages
from statgan.audit.ais import bdmc
from statgan.audit.rundata import load_run
from statgan.audit.settings import AuditSettings
from statgan.runtime.seeding import derived_seed

#: arm name -> (chains K, sampler option changes); T = budget // K. ``prior``: no proposal -- the
#: chains start from the prior, which is the noise-level continuation path (Huang et al. 2020):
#: p(z) p(x|z)^beta is the posterior at noise sigma / sqrt(beta), so beta 0 -> 1 anneals sigma from
#: infinity down (no mass matrix without a proposal)
ARMS: Dict[str, tuple] = {
    "ais-sigmoid": (1, dict()),
    "ais-prior": (1, dict(precondition=False, step_size=0.03)),
    "ais-adaptive": (1, dict(schedule="adaptive")),
    "smc-adaptive-8": (8, dict(schedule="adaptive", resample=0.5)),
    "smc-sigmoid-8": (8, dict(resample=0.5)),
    "ais-sigmoid-8": (8, dict()),
}


def run_arm(run, sigma: float, budget: int, name: str, n_images: int, seed: int) -> Dict:
    chains, changes = ARMS[name]
    s = replace(AuditSettings(), ais_steps=max(budget // chains, 2), chains=chains, bdmc_images=n_images, seed=seed)
    options = replace(stages.sampler_options(s), **changes)

    def build(x):  # the audit's proposal from the simulated images' own inversion (stages.bdmc_bounds)
        if name.endswith("prior"):
            return None
        return stages.proposal(run, x, stages.invert_images(run, x, s, "model-samples", ("l2", None)), sigma, s)

    c0, t0 = time.process_time(), time.perf_counter()
    b = bdmc(run.G, run.latent_dim, sigma, n_images, options, proposal=build, seed=derived_seed(seed, "audit:bdmc"))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    gaps = (b.upper - b.lower).tolist()
    return dict(arm=name, sigma=sigma, budget=budget, chains=chains, steps=s.ais_steps, changes=changes, n_images=n_images,
                lower_median=statistics.median(b.lower.tolist()), upper_median=statistics.median(b.upper.tolist()),
                gap_median=statistics.median(gaps), gaps=gaps, lower=b.lower.tolist(), upper=b.upper.tolist(),
                cpu_s=cpu, wall_s=wall, threads=torch.get_num_threads(), load_at_end=os.getloadavg()[0],
                when=time.strftime("%Y-%m-%dT%H:%M:%S"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--budget", type=int, default=1600, help="chains x steps per image, equal across arms")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="append one JSON record per arm to this file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = load_run(a.run_dir, a.seed)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    results = []
    for name in a.arms.split(","):
        r = run_arm(run, a.sigma, a.budget, name, a.images, a.seed)
        results.append(r)
        if a.out:
            with Path(a.out).open("a") as f:
                f.write(json.dumps(r) + "\n")
        print(f"{name:>16} K {r['chains']:2d} T {r['steps']:5d}: lower {r['lower_median']:8.1f} upper {r['upper_median']:8.1f} "
              f"gap {r['gap_median']:8.1f} | CPU {r['cpu_s']:7.1f} s | load {r['load_at_end']:.2f}", flush=True)
    ref = results[0]
    for r in results[1:]:
        paired = [g - h for g, h in zip(r["gaps"], ref["gaps"])]
        print(f"{r['arm']} vs {ref['arm']}: gap ratio of medians {r['gap_median'] / ref['gap_median']:.3f}, "
              f"paired median difference {statistics.median(paired):+.1f} nats, CPU ratio {r['cpu_s'] / ref['cpu_s']:.2f}")


if __name__ == "__main__":
    main()
