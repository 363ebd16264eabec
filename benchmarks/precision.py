"""Training images/s with the speed switches against plain fp32, in one process.

The default run's DCGAN (``--width`` 32, mnist5k 28 px, batch ``--batch`` 64) timed around
``Trainer.fit()`` for ``--steps`` steps per arm, arms interleaved over ``--repeats`` rounds
(median reported, with the ratio to fp32 of the same round set):

* always: ``fp32`` (reference), ``bf16`` (autocast), ``channels_last``;
* on CUDA also: ``fp16`` (autocast + GradScaler), ``tf32``, ``bf16+tf32+channels_last`` and, with
  ``--compile``, the same plus ``torch.compile`` (compile time is excluded by a warm-up run).

    python benchmarks/precision.py                      # CPU or the default GPU
    python benchmarks/precision.py --device cuda --width 64 --batch 256 --compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

BASE = ["train.progress=false", "train.tensorboard=false", "train.log_every=50", "train.sample_every=0",
        "train.checkpoint_every=0"]


def timed(overrides, steps: int, workdir: Path, name: str, warmup: int = 0) -> float:
    from statgan import config
    from statgan.train.trainer import Trainer

    cfg = config.load("mnist5k-dcgan", [f"train.steps={warmup + steps}", f"run.out_dir={workdir}", f"run.name={name}",
                             *BASE, *overrides])
    trainer = Trainer(cfg, workdir / name)
    if warmup:  # compile, cuDNN autotuning, allocator: not part of the steady state
        trainer.cfg.train.steps = warmup
        trainer.fit()
        trainer.cfg.train.steps = warmup + steps
        trainer.resume = True  # the second fit continues in the same run directory
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.fit()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--compile", action="store_true", help="add torch.compile arms (CUDA)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    common = [f"run.device={args.device}", f"train.batch_size={args.batch}",
              f"model.generator={{width: {args.width}, norm: batch}}",
              f"model.discriminator={{width: {args.width}, norm: batch}}"]
    arms = {"fp32": [], "bf16": ["train.precision=bf16"], "channels_last": ["train.channels_last=true"]}
    if cuda:
        arms.update({"fp16": ["train.precision=fp16"], "tf32": ["train.tf32=true"],
                     "bf16+tf32+channels_last": ["train.precision=bf16", "train.tf32=true", "train.channels_last=true"]})
        if args.compile:
            arms["bf16+tf32+channels_last+compile"] = [*arms["bf16+tf32+channels_last"], "train.compile=true"]
    times = {k: [] for k in arms}
    warmup = 10 if cuda else 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for k, ov in arms.items():
                times[k].append(timed([*common, *ov], args.steps, Path(tmp), f"{k}-{r}".replace("+", "_"), warmup))
    rate = {k: args.steps * args.batch / statistics.median(v) for k, v in times.items()}
    dev = torch.cuda.get_device_name() if cuda else f"CPU x {args.threads} thread(s)"
    print(f"DCGAN width {args.width}, batch {args.batch}, {args.steps} steps, median of {args.repeats}; "
          f"{dev}; torch {torch.__version__}")
    for k, v in rate.items():
        print(f"  {k:<34s} {v:9.1f} images/s   x{v / rate['fp32']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
