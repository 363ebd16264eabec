"""The inversion's search: today's settings against screening prior draws and Levenberg-Marquardt
refinement, on the audit's own train and generated images, with the ratio finding (a) reads.

Generated images G(z) lie exactly on the generator's manifold, so their inversion error measures the
optimiser; finding (a) compares training images' median error with theirs. Each arm inverts both sets
with the audit's seeds (``statgan.audit.stages.invert_images``) and reports the median pixel MSE per
set, the ratio train / generated, the share of generated images below 1e-4, and the process's CPU
seconds (one torch thread by default), with the ratio of CPU time to the first arm.

    python benchmarks/inversion_search.py runs/default -n 50
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

from statgan.audit import stages
from statgan.audit.rundata import load_run
from statgan.audit.settings import AuditSettings

ARMS = {
    "today": dict(),
    "screen 500": dict(screen=500),
    "screen 500 + LM 20": dict(screen=500, refine=20),
    "LM 20": dict(refine=20),
    "200 steps + screen 500 + LM 10": dict(steps=200, screen=500, refine=10),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("-n", type=int, default=50, help="images per set")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arms", default=",".join(ARMS))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = load_run(a.run_dir, 0)
    sets = {"train": run.train(a.n), "generated": run.generated(a.n)[0]}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    base_cpu = None
    for name in a.arms.split(","):
        s = replace(AuditSettings(), **ARMS[name]).validate()
        c0 = time.process_time()
        mse = {k: stages.invert_images(run, x, s, k, ("l2", None)).mse.cpu() for k, x in sets.items()}
        cpu = time.process_time() - c0
        base_cpu = base_cpu or cpu
        tr, ge = mse["train"].median().item(), mse["generated"].median().item()
        print(f"{name:>30}: median MSE train {tr:.2e}, generated {ge:.2e} (below 1e-4: {(mse['generated'] < 1e-4).double().mean():.2f}), "
              f"ratio (a) {tr / ge:.2f} | CPU {cpu:.1f} s, x{cpu / base_cpu:.2f} | load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
