"""Training throughput of the stylegan arch against the default DCGAN, in one process.

Both arms run ``Trainer.fit()`` on mnist5k (28 px, batch 64, latent 100, non-saturating loss, Adam)
with EMA on and logging, samples and checkpoints pushed to the end, so the steps themselves are
timed. ``dcgan`` is the default run's network (width 32, BatchNorm); ``stylegan`` is the arch's
defaults (width 8 at 28 px up to 32 channels, mapping 8 × 64 at lr × 0.01, style mixing 0.9,
minibatch-stddev D), plus ``--stylegan-extra`` overrides (e.g. lazy R1, path length). The arms are
interleaved over ``--repeats`` rounds so that machine drift hits both alike; prints images/s per arm
(median over rounds) and the ratio stylegan / dcgan.

    python benchmarks/stylegan_throughput.py --threads 1             # 30 steps x 3 rounds
    python benchmarks/stylegan_throughput.py --threads 2 --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import List

import torch

from statgan import config
from statgan.train.trainer import Trainer

ARMS = {
    "dcgan": ["model.arch=dcgan", "model.generator={width: 32, norm: batch}", "model.discriminator={width: 32, norm: batch}"],
    "stylegan": ["model.arch=stylegan", "model.generator={}", "model.discriminator={}"],
}


def images_per_s(overrides: List[str], steps: int, root: Path, name: str) -> float:
    common = [f"run.out_dir={root}", f"run.name={name}", f"train.steps={steps}", "train.log_every=100000",
              "train.sample_every=0", "train.checkpoint_every=0", "train.progress=false", "train.tensorboard=false",
              "run.device=cpu"]
    t = Trainer(config.load("mnist5k-dcgan", common + overrides), root / name)
    t0 = time.perf_counter()
    t.fit()  # the final grid and checkpoint are in the time: the same small cost for both arms
    return steps * t.cfg.train.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stylegan-extra", nargs="*", default=["regularizers.r1={weight: 1, every: 16}"],
                    help="overrides added to the stylegan arm (default: lazy R1, its native regulariser)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    arms = {k: list(v) for k, v in ARMS.items()}
    arms["stylegan"] += args.stylegan_extra
    rates = {k: [] for k in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, overrides in arms.items():
                rates[name].append(images_per_s(overrides, args.steps, Path(tmp), f"{name}-{r}"))
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in rates.items():
        print(f"{k:9s} images/s median {med[k]:8.1f}   rounds {', '.join(f'{x:.1f}' for x in v)}")
    print(f"threads {args.threads}, {args.steps} steps x {args.repeats} rounds; stylegan extra: {' '.join(args.stylegan_extra)}")
    print(f"ratio stylegan / dcgan = {med['stylegan'] / med['dcgan']:.3f}")


if __name__ == "__main__":
    main()
