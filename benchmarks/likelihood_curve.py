"""The likelihood's precision against its compute: the median BDMC gap (and both bounds) on simulated
images of a run, for annealing lengths T and chain counts K, at fixed sigma values.

Each point is the audit's own BDMC stage (``statgan.audit.stages.bdmc_bounds``: the simulated images
x = G(z) + sigma eps are inverted, the settings' proposal is built from that inversion, forward AIS
from it gives the lower bound, reverse AIS from the exact z back to it the upper bound) with
``ais_steps = T`` and ``chains = K``, everything else at today's defaults. The images are the same at
every point of one sigma (their seed does not depend on T or K), so the points are paired.

Cost is the process's CPU time (one torch thread by default, so CPU seconds are what the point costs
on an idle core, robust to other jobs on a shared machine) split into

* ``search``: inverting the simulated images and building the proposal (independent of T and K);
* ``anneal``: forward plus reverse AIS and the importance-sampling check. The two directions run the
  same number of generator passes, so the estimator on a real image costs search + anneal / 2.

One JSON record per point is appended to ``--out`` (a point already there is skipped, so an
interrupted curve resumes), and ``--plot`` draws the curve from the records.

    python benchmarks/likelihood_curve.py runs/default --out docs/likelihood-curve.jsonl \\
        --sigmas 0.1,0.2 --steps 100,400,1600,6400,10000 --chains 1
    python benchmarks/likelihood_curve.py runs/default --out docs/likelihood-curve.jsonl --plot docs/likelihood-curve.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from statgan.audit import stages
from statgan.audit.rundata import load_run
from statgan.audit.settings import AuditSettings


def point_key(rec: Dict) -> Tuple[float, int, int, str]:
    return (float(rec["sigma"]), int(rec["ais_steps"]), int(rec["chains"]), str(rec.get("sampler", "ais")))


def read_records(path: Path) -> List[Dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(run, sigma: float, steps: int, chains: int, n_images: int, seed: int) -> Dict:
    """One point: BDMC with T = ``steps``, K = ``chains`` on ``n_images`` simulated images."""
    s = replace(AuditSettings(), ais_steps=steps, chains=chains, bdmc_images=n_images, seed=seed)
    search = [0.0]
    build = stages.proposal

    def timed_proposal(*args, **kwargs):  # the search share of the cost (inversion happens inside bdmc's callback)
        c0 = time.process_time()
        try:
            return build(*args, **kwargs)
        finally:
            search[0] += time.process_time() - c0

    invert_images = stages.invert_images

    def timed_invert(*args, **kwargs):
        c0 = time.process_time()
        try:
            return invert_images(*args, **kwargs)
        finally:
            search[0] += time.process_time() - c0

    stages.proposal, stages.invert_images = timed_proposal, timed_invert
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        b = stages.bdmc_bounds(run, sigma, s)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    finally:
        stages.proposal, stages.invert_images = build, invert_images
    gaps = b.gaps.tolist()
    return dict(
        sampler="ais", sigma=sigma, ais_steps=steps, chains=chains, leapfrog=s.leapfrog, n_images=n_images, seed=seed,
        lower_median=statistics.median(b.lower.tolist()), upper_median=statistics.median(b.upper.tolist()),
        gap_median=statistics.median(gaps), gaps=gaps, lower=b.lower.tolist(), upper=b.upper.tolist(),
        acceptance=float(b.result.forward.acceptance.mean()),
        cpu_s=cpu, wall_s=wall, search_cpu_s=search[0], anneal_cpu_s=cpu - search[0],
        estimator_cpu_s_per_image=(search[0] + (cpu - search[0]) / 2) / n_images,
        threads=torch.get_num_threads(), load_at_end=os.getloadavg()[0],
        when=time.strftime("%Y-%m-%dT%H:%M:%S"), machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        torch=torch.__version__,
    )


def cost(r: Dict) -> float:
    """CPU seconds per image of one BDMC point: search, forward and reverse run (one core)."""
    return r["cpu_s"] / r["n_images"]


def fit(records: List[Dict], sigma: float, key: str = "cost", from_steps: int = 400) -> Tuple[float, float]:
    """log gap = a + b log x, least squares over the points of one sigma at one chain from ``from_steps``
    steps on; x is the cost (:func:`cost`) or, with ``key="steps"``, the annealing steps T: (a, b)."""
    pts = [(math.log(cost(r) if key == "cost" else r["ais_steps"]), math.log(r["gap_median"])) for r in records
           if r["sigma"] == sigma and r["chains"] == 1 and r["gap_median"] > 0 and r["ais_steps"] >= from_steps]
    if len(pts) < 2:
        return math.nan, math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return my - b * mx, b


def plot(records: List[Dict], out: Path, samplers: List[Dict] = ()) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for sigma in sorted({r["sigma"] for r in records}):
        for chains in sorted({r["chains"] for r in records if r["sigma"] == sigma}):
            pts = sorted((r for r in records if r["sigma"] == sigma and r["chains"] == chains and r.get("sampler", "ais") == "ais"),
                         key=cost)
            if not pts:
                continue
            x = [cost(r) for r in pts]
            label = f"sigma {sigma:g}, {chains} chain{'s' if chains > 1 else ''}"
            axes[0].loglog(x, [r["gap_median"] for r in pts], "o-", label=label)
            for r in pts:
                axes[0].annotate(f"T={r['ais_steps']}", (cost(r), r["gap_median"]), fontsize=7,
                                 textcoords="offset points", xytext=(4, 4))
            axes[1].semilogx(x, [r["lower_median"] for r in pts], "o-", label=f"{label}: lower")
            axes[1].semilogx(x, [r["upper_median"] for r in pts], "s--", label=f"{label}: upper")
    for arm in sorted({r["arm"] for r in samplers}):
        pts = sorted((r for r in samplers if r["arm"] == arm), key=lambda r: r["cpu_s"])
        x = [cost(r) for r in pts]
        axes[0].loglog(x, [r["gap_median"] for r in pts], "x--" if len(pts) > 1 else "x",
                       label=f"{arm} (sigma {pts[0]['sigma']:g})", ms=8)
    axes[0].set_xlabel("CPU seconds per image: search + forward + reverse (one core)")
    axes[0].set_ylabel("median BDMC gap (nats)")
    axes[0].axhline(10, color="grey", lw=0.8, ls=":")
    axes[0].legend(fontsize=7, loc="lower left")
    axes[0].set_title("gap against compute")
    axes[1].set_xlabel("CPU seconds per image: search + forward + reverse (one core)")
    axes[1].set_ylabel("median bound on log p(x) (nats)")
    axes[1].legend(fontsize=7)
    axes[1].set_title("both bounds")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True, help="JSON-lines file of the points (appended; existing points are skipped)")
    ap.add_argument("--sigmas", default="0.1,0.2")
    ap.add_argument("--steps", default="100,400,1600,6400,10000", help="annealing lengths T")
    ap.add_argument("--chains", default="1", help="chain counts K")
    ap.add_argument("--images", type=int, default=16, help="simulated images per point")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", default=None, help="draw the curve from --out into this PNG (and print the fits); no new points")
    ap.add_argument("--samplers", default=None, help="with --plot: also draw the arms of benchmarks/likelihood_samplers.py's records")
    a = ap.parse_args()
    out = Path(a.out)
    if a.plot:
        records = read_records(out)
        plot(records, Path(a.plot), read_records(Path(a.samplers)) if a.samplers else [])
        for sigma in sorted({r["sigma"] for r in records}):
            c, b = fit(records, sigma)
            cs, bs = fit(records, sigma, "steps")
            print(f"sigma {sigma:g}: gap ~ {math.exp(c):.4g} * cpu^{b:.3f} ~ {math.exp(cs):.4g} * T^{bs:.3f}; " + ", ".join(
                f"{g} nats at {math.exp((math.log(g) - c) / b):.4g} CPU s/image (T ~ {math.exp((math.log(g) - cs) / bs):,.0f})"
                for g in (100, 10, 1)))
        return
    torch.set_num_threads(a.threads)
    run = load_run(a.run_dir, a.seed)
    done = {point_key(r) for r in read_records(out)}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for steps in (int(v) for v in a.steps.split(",")):
        for sigma in (float(v) for v in a.sigmas.split(",")):
            for chains in (int(v) for v in a.chains.split(",")):
                if (sigma, steps, chains, "ais") in done:
                    continue
                rec = measure(run, sigma, steps, chains, a.images, a.seed)
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"sigma {sigma:g} T {steps:6d} K {chains:2d}: lower {rec['lower_median']:9.1f} upper {rec['upper_median']:9.1f} "
                      f"gap {rec['gap_median']:8.1f} | CPU {rec['cpu_s']:7.1f} s (search {rec['search_cpu_s']:.1f}), "
                      f"estimator {rec['estimator_cpu_s_per_image']:.2f} s/image | load {rec['load_at_end']:.2f}", flush=True)


if __name__ == "__main__":
    main()
