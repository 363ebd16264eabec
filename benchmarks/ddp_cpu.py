"""Data-parallel training on CPU: 2 gloo ranks against one process, same global batch.

The default run's DCGAN (mnist5k, 28 px, width 32, batch 64) for ``--steps`` generator steps in
three arms, each timed around ``Trainer.fit()`` only (process start-up and imports excluded):

* ``1 proc x 1 thread``  — the reference;
* ``1 proc x 2 threads`` — the same cores as two ranks, used by intra-op threading instead;
* ``2 ranks x 1 thread`` — ``torchrun``-style data parallelism over gloo (each rank 32 rows of the
                           global 64, one gradient all-reduce per closure).

Prints images/s per arm (median over ``--repeats`` rounds, arms interleaved) and the ratios
against the reference. On a GPU node the interesting comparison is N GPUs against one; this
script only shows the overhead of the machinery (the all-reduces, BatchNorm buffer averaging,
the per-step stop-flag check) on the cores at hand.

    python benchmarks/ddp_cpu.py                    # 100 steps x 3 rounds
    python benchmarks/ddp_cpu.py --steps 30 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

OVERRIDES = ["train.progress=false", "train.tensorboard=false", "train.log_every=50", "train.sample_every=0",
             "train.checkpoint_every=0", "train.ema=true"]


def _run(steps: int, workdir: str, name: str, threads: int) -> float:
    from statgan import config
    from statgan.train.trainer import Trainer

    torch.set_num_threads(threads)
    cfg = config.load("mnist5k-dcgan", [f"train.steps={steps}", f"run.out_dir={workdir}", f"run.name={name}", *OVERRIDES])
    trainer = Trainer(cfg, Path(workdir) / name)
    t0 = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - t0


def _rank(rank: int, world: int, port: int, steps: int, workdir: str, name: str, out: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from statgan.runtime import distributed

    seconds = _run(steps, workdir, name, threads=1)
    if rank == 0:
        Path(out).write_text(str(seconds))
    distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(world: int, steps: int, workdir: str, name: str) -> float:
    out = os.path.join(workdir, f"{name}.seconds")
    mp.spawn(_rank, args=(world, _free_port(), steps, workdir, name, out), nprocs=world, join=True)
    return float(Path(out).read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="generator steps per arm and round (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    args = ap.parse_args(argv)
    batch = 64
    arms = {"1 proc x 1 thread": [], "1 proc x 2 threads": [], "2 ranks x 1 thread": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            arms["1 proc x 1 thread"].append(_run(args.steps, tmp, f"one1-{r}", threads=1))
            arms["1 proc x 2 threads"].append(_run(args.steps, tmp, f"one2-{r}", threads=2))
            arms["2 ranks x 1 thread"].append(_ranks(2, args.steps, tmp, f"ddp-{r}"))
    rate = {k: args.steps * batch / statistics.median(v) for k, v in arms.items()}
    ref = rate["1 proc x 1 thread"]
    print(f"DCGAN mnist5k, global batch {batch}, {args.steps} steps, median of {args.repeats}; "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    for k, v in rate.items():
        print(f"  {k:<20s} {v:8.1f} images/s   x{v / ref:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
