"""Preconditioned HMC in the audit's AIS against unit mass in the same run: the lower bound on real
images, paired per image, and on model samples with the proposal at the true latent's mode.

Arms (each the audit's defaults with one change, same images, inversions and seeds):

* ``unit mass``: ``precondition=False`` with the old initial step 0.03;
* ``precond``: ``precondition=True``, but no noise annealing in the proposal's Adam steps;
* ``default``: the current defaults (``precondition=True``, ``posterior_sigma_from=1.0``).

Part 1 prints, per image set (``--n`` test and training images), the median AIS log-likelihood of
each arm and the paired differences precond - unit mass and default - precond (median, mean, how
many images rose). The lower bound is a stochastic *lower* bound, so a higher value is a better
estimate. Part 2 runs forward AIS on ``--bdmc-images`` model samples with a proposal built at each
image's true latent (an oracle: it isolates the annealing from the mode search), unit mass against
preconditioned, at ``--steps`` AIS steps. Only lower bounds: BDMC's reverse chain starts at the
true latent, and a proposal built from it voids the reverse chain's upper bound.

    python benchmarks/audit_precondition.py RUN_DIR --sigma 0.1
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

from statgan.audit import stages
from statgan.audit.ais import ais
from statgan.audit.posterior import LaplaceOptions, laplace_proposal
from statgan.audit.rundata import load_run
from statgan.audit.settings import AuditSettings

ARMS = {"unit mass": dict(precondition=False, step_size=0.03, posterior_sigma_from=None),
        "precond": dict(posterior_sigma_from=None), "default": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--n", type=int, default=32, help="test and training images (part 1)")
    ap.add_argument("--bdmc-images", type=int, default=16, help="model samples (part 2)")
    ap.add_argument("--steps", default="100,400", help="AIS steps of part 2")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"load average at start: {os.getloadavg()}")
    run = load_run(a.run_dir, 0)
    base = AuditSettings(n=a.n)
    sets = stages.image_sets(run, base)
    x = {k: sets.scored[k][:a.n] for k in ("test", "train")}
    inv = {k: stages.invert_images(run, v, base, k, ("l2", None)) for k, v in x.items()}
    ll = {}
    for arm, kw in ARMS.items():
        t0 = time.process_time()
        ll[arm] = stages.likelihoods(run, x, inv, a.sigma, replace(base, **kw)).log_likelihood
        print(f"{arm:>9}: median AIS log-likelihood " + ", ".join(f"{k} {v.median():.1f}" for k, v in ll[arm].items())
              + f" nats ({time.process_time() - t0:.0f} s CPU)", flush=True)
    for k in x:
        for hi, lo in (("precond", "unit mass"), ("default", "precond")):
            d = ll[hi][k] - ll[lo][k]
            print(f"{k}: {hi} - {lo}: median paired difference {d.median():+.1f} nats, mean {d.mean():+.1f}, "
                  f"higher on {(d > 0).sum().item()} of {d.numel()} images", flush=True)

    s = AuditSettings()
    options = LaplaceOptions(jacobians=s.posterior_jacobians, newton_steps=s.posterior_steps, weights=s.mode_weights,
                             max_scale=s.init_scale)
    g = torch.Generator().manual_seed(7)
    z = torch.randn(a.bdmc_images, run.latent_dim, generator=g)
    with torch.no_grad():
        mean = run.G.eval()(z)
    xs = mean + a.sigma * torch.randn(mean.shape, generator=g)
    q = laplace_proposal(run.G, xs, z.unsqueeze(1), a.sigma, options)  # at the true latent's own mode
    print(f"forward AIS on {a.bdmc_images} model samples from a proposal at the true latent's mode (oracle), "
          f"sigma {a.sigma}: median lower bound (valid: q is normalised whatever it was built from; a reverse "
          f"chain from z would not give an upper bound, since q depends on z)")
    for steps in (int(v) for v in a.steps.split(",")):
        lows = {}
        for pre, eps in ((False, 0.03), (True, s.step_size)):
            t0 = time.process_time()
            r = ais(run.G, xs, run.latent_dim, a.sigma, n_steps=steps, n_chains=1, leapfrog=s.leapfrog, step_size=eps, proposal=q, precondition=pre, seed=8)
            lows[pre] = r.log_likelihood
            print(f"  {steps:4d} steps, {'preconditioned' if pre else 'unit mass':>14}: median {r.log_likelihood.median():7.1f} nats, "
                  f"acceptance {r.acceptance.mean():.2f} ({time.process_time() - t0:.0f} s CPU)", flush=True)
        d = lows[True] - lows[False]
        print(f"  {steps:4d} steps: preconditioned - unit mass per image: median {d.median():+.1f}, "
              f"higher on {(d > 0).sum().item()} of {d.numel()}", flush=True)


if __name__ == "__main__":
    main()
