"""Posterior modes on model samples: does the audit's mode search reach the mode holding the true z?

Simulates x = G(z) + sigma eps (z ~ N(0, I), as BDMC does), then for several mode searches builds
the Laplace mixture (statgan.audit.posterior) and prints, medians over the images:

* the distance from z to the nearest mode found, and to the mode of z's own basin (Gauss-Newton
  ascent started at z: the "oracle", which no real image has);
* log p(x, z*) - log p(x, z) at the best mode found, and its Laplace evidence minus the oracle's;
* the distinct modes kept per image;
* then the BDMC gap (upper - lower, 100 AIS steps, the audit's settings) with each proposal. For
  the oracle only the lower bound is printed: a proposal built from z makes the reverse chain,
  which starts at z, end where q is large by construction, so its "upper bound" is biased low and
  bounds nothing (the forward estimate stays a valid lower bound: q is normalised whatever it
  was built from).

Searches: the audit's default (pixel-MSE inversion, 2 restarts x 300 steps, then 100 Adam steps on
-log p(x, z)); long Adam on -log p(x, z) from random starts; the same with the noise level annealed
from 1 down to sigma (``LaplaceOptions.sigma_from``); the best of N prior samples (forward passes only).

    python benchmarks/posterior_modes.py RUN_DIR [--sigma 0.1 --images 16 --threads 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from dataclasses import replace
from typing import Callable, Dict

import torch

from statgan.audit import stages
from statgan.audit._common import frozen
from statgan.audit.ais import bdmc
from statgan.audit.posterior import LaplaceMixture, LaplaceOptions, laplace_proposal
from statgan.audit.rundata import load_run
from statgan.audit.settings import AuditSettings
from statgan.runtime.seeding import make_rng


def log_joint(G: torch.nn.Module, z: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """log p(x, z) up to the constant shared by every z: -|x - G(z)|^2 / 2 sigma^2 - |z|^2 / 2, (B,)."""
    with frozen(G), torch.no_grad():
        out = G(z.to(x.dtype))
    return -(out - x).flatten(1).square().sum(-1) / (2 * sigma**2) - 0.5 * z.double().square().sum(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"load average at start: {os.getloadavg()}")
    run = load_run(a.run_dir, 0)
    G, d, sg, n = run.G, run.latent_dim, a.sigma, a.images
    s = AuditSettings(bdmc_images=n)
    with torch.no_grad():  # on a copy: a train-mode pass updates BatchNorm's running statistics
        z0, probe = torch.randn(4, d), copy.deepcopy(G)
        bn_diff = float((probe.train()(z0) - probe.eval()(z0)).abs().max())
    print(f"G in eval mode after loading: {not G.training}; max |G_train(z) - G_eval(z)| = {bn_diff:.3f} "
          "(BatchNorm: every audit path runs G under frozen(), i.e. eval mode, simulation included)")
    # bdmc draws z from this generator first: the oracle below needs the same z
    z_true = torch.randn(n, d, generator=make_rng(a.seed, torch.device("cpu")))
    opts = LaplaceOptions(jacobians=s.posterior_jacobians, newton_steps=s.posterior_steps, weights=s.mode_weights,
                          max_scale=s.init_scale)

    def random_starts(x: torch.Tensor, r: int) -> torch.Tensor:
        return torch.randn(x.shape[0], r, d, generator=torch.Generator().manual_seed(a.seed + 1))

    searches: Dict[str, Callable[[torch.Tensor], LaplaceMixture]] = {
        "audit default": lambda x: stages.proposal(run, x, stages.invert_images(run, x, s, "model-samples", ("l2", None)), sg, s),
        "Adam on -log p(x,z), 2 x 1000": lambda x: laplace_proposal(G, x, random_starts(x, 2), sg, replace(opts, adam_steps=1000)),
        "sigma 1 -> 0.1 annealed, 4 x 800": lambda x: laplace_proposal(G, x, random_starts(x, 4), sg,
                                                                     replace(opts, adam_steps=800, sigma_from=1.0)),
        "oracle: from the true z": lambda x: laplace_proposal(G, x, z_true.unsqueeze(1), sg, opts),
    }
    # the simulated images, exactly as bdmc draws them
    with frozen(G), torch.no_grad():
        mean = G(z_true)
    rng = make_rng(a.seed, torch.device("cpu"))
    z_check = torch.randn(n, d, generator=rng)
    assert torch.equal(z_check, z_true)
    x = mean + sg * torch.randn(mean.shape, generator=rng)
    lj_true = log_joint(G, z_true, x, sg)
    oracle = searches["oracle: from the true z"](x)
    print(f"{n} model samples, sigma {sg}; medians over images")
    print("search | dist z -> nearest mode | nearest mode = oracle's (dist < 1) | log p(x,z*) - log p(x,z) | "
          "log Z best - log Z oracle | modes kept | s")
    for name, build in searches.items():
        t0 = time.perf_counter()
        q = build(x)
        wall = time.perf_counter() - t0
        means = q.means.double()
        near = (means - z_true.double().unsqueeze(1)).norm(dim=-1).masked_fill(~q.kept, float("inf")).min(1).values
        hit = (means - oracle.means[:, :1].double()).norm(dim=-1).masked_fill(~q.kept, float("inf")).min(1).values < 1
        best = q.log_evidence.masked_fill(~q.kept, -float("inf")).argmax(1)
        z_best = means[torch.arange(n), best]
        dlj = log_joint(G, z_best, x, sg) - lj_true
        dz = q.log_evidence[torch.arange(n), best] - oracle.log_evidence[:, 0]
        print(f"{name} | {near.median():.2f} | {int(hit.sum())}/{n} | {dlj.median():+.1f} | {dz.median():+.1f} | "
              f"{q.n_modes.double().median():.0f} | {wall:.0f}", flush=True)
    for N in (1000, 4000):
        zs = torch.randn(N, d, generator=torch.Generator().manual_seed(a.seed + 2))
        with frozen(G), torch.no_grad():
            out = torch.cat([G(zs[i:i + 500]) for i in range(0, N, 500)]).flatten(1)
        lj = -torch.cdist(x.flatten(1), out).square() / (2 * sg**2) - 0.5 * zs.square().sum(1)
        print(f"best of {N} prior samples | log p(x,z*) - log p(x,z) median {(lj.max(1).values - lj_true).median():+.1f}")
    print("proposal | BDMC median lower | median upper | median gap | images with gap <= 1 nat | s")
    for name in ("audit default", "sigma 1 -> 0.1 annealed, 4 x 800", "oracle: from the true z"):
        t0 = time.perf_counter()
        r = bdmc(G, d, sg, n_images=n, n_steps=s.ais_steps, n_chains=s.chains, leapfrog=s.leapfrog, step_size=s.step_size,
                 proposal=searches[name], batch_size=stages.BATCH, seed=a.seed)
        assert torch.equal(r.latents, z_true) and torch.equal(r.data, x)
        gap = r.upper - r.lower
        if name.startswith("oracle"):  # q depends on z: the reverse chain's estimate is no upper bound
            print(f"{name} | {r.lower.median():.1f} | n/a | n/a | n/a | {time.perf_counter() - t0:.0f}", flush=True)
            continue
        print(f"{name} | {r.lower.median():.1f} | {r.upper.median():.1f} | {gap.median():.1f} | {int((gap <= 1).sum())}/{n} | "
              f"{time.perf_counter() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main()
