"""Training throughput: the statgan trainer against a plain hand-written PyTorch loop.

Same DCGAN (the default run's: mnist5k, 28 px, width 32, latent 100), same batch size, objective
(non-saturating logistic), optimizer (Adam 2e-4, betas 0.5/0.999) and in-memory data, all timed in
one process. Three arms, interleaved over ``--repeats`` rounds so that machine drift hits all alike:

* ``plain``   — the loop a researcher would write by hand (PyTorch DCGAN tutorial style);
* ``statgan`` — ``Trainer.fit()`` with the default bookkeeping: EMA every step, metrics.jsonl every
                50 steps, a sample grid every 500, a checkpoint every 1000, progress bar;
* ``bare``    — ``Trainer.fit()`` with EMA off and logging/sampling/checkpoints pushed to the end,
                to separate the cost of bookkeeping from differences in the loop itself.

Prints images/s per arm (median over rounds) and the ratios statgan/plain and statgan/bare.
The target of the foundation issue: statgan/plain ≥ 0.95 on CPU.

    python benchmarks/train_throughput.py                 # 1000 steps x 3 rounds (~6 min on 2 cores)
    python benchmarks/train_throughput.py --steps 200 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from statgan import config, data, nets
from statgan.train.trainer import Trainer


def plain_loop(cfg, train, steps: int) -> float:
    """The hand-written reference; returns seconds for ``steps`` generator steps."""
    torch.manual_seed(cfg.run.seed)
    shape = tuple(train.shape[1:])
    G = nets.build_generator("dcgan", shape, cfg.model.latent_dim, **cfg.model.generator)
    D = nets.build_discriminator("dcgan", shape, **cfg.model.discriminator)
    B, nz = cfg.train.batch_size, cfg.model.latent_dim
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=tuple(cfg.train.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=tuple(cfg.train.betas))
    n = train.shape[0]
    perm, pos = torch.randperm(n), 0
    t0 = time.perf_counter()
    for _ in range(steps):
        if pos + B > n:
            perm, pos = torch.randperm(n), 0
        real = train[perm[pos : pos + B]]
        pos += B
        fake = G(torch.randn(B, nz))
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-D(fake)).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    return time.perf_counter() - t0


def trainer_run(overrides, steps: int, workdir: Path, name: str) -> float:
    cfg = config.load("mnist5k-dcgan", [f"train.steps={steps}", f"run.out_dir={workdir}", f"run.name={name}", *overrides])
    trainer = Trainer(cfg, workdir / name)
    t0 = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000, help="generator steps per arm and round (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config.load("mnist5k-dcgan")
    train = data.load(cfg.data.name, "train")
    B = cfg.train.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {cfg.data.name} {tuple(train.shape)}, "
          f"dcgan {cfg.model.generator}, batch {B}, {args.steps} steps x {args.repeats} rounds", flush=True)
    bare = ["train.ema=false", "train.log_every=1000000", "train.sample_every=0", "train.checkpoint_every=0",
            "train.progress=false"]
    times = {"plain": [], "statgan": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain_loop(cfg, train, 20)  # warm-up (allocator, oneDNN kernels)
        for r in range(args.repeats):
            times["plain"].append(plain_loop(cfg, train, args.steps))
            times["statgan"].append(trainer_run([], args.steps, work, f"statgan{r}"))
            times["bare"].append(trainer_run(bare, args.steps, work, f"bare{r}"))
            print("round", r + 1, {k: f"{args.steps * B / v[-1]:.0f} img/s" for k, v in times.items()}, flush=True)
    ips = {k: args.steps * B / statistics.median(v) for k, v in times.items()}
    print()
    print(f"{'arm':<10}{'images/s (median)':>20}")
    for k, v in ips.items():
        print(f"{k:<10}{v:>20.0f}")
    ratio = ips["statgan"] / ips["plain"]
    print(f"\nratio statgan/plain = {ratio:.3f}   (target >= 0.95)")
    print(f"ratio statgan/bare  = {ips['statgan'] / ips['bare']:.3f}   (cost of EMA, logging, samples, checkpoints)")
    return 0 if ratio >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
