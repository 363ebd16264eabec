"""Sample quality per CPU-minute: lenet-FID of training recipes at fixed compute budgets.

Each recipe trains with ``train.steps`` large; a callback watches the process's CPU time and, when
it passes a budget (in minutes of two fully busy cores: CPU seconds / 2 / 60, so a busy shared
machine does not shrink the budget the way wall-clock time would), writes a named checkpoint
``budget-<m>min``. After the last budget the run stops. Every budget checkpoint is then evaluated:
lenet-FID of 10,000 samples (EMA weights) against the mnist5k training split, next to the
real-vs-real floor (test split vs train split) measured in the same run.

    python benchmarks/quality_per_minute.py                                  # all recipes, 3 seeds, 2.5/5/10/20 min
    python benchmarks/quality_per_minute.py --recipes default-dcgan-ns resnet-rpgan-aug --seeds 0 --budgets 2.5 5 10

Writes ``OUT/results.json`` (one record per recipe, seed and budget) and prints a table; the
committed table in docs/quality.md states the command, the machine and how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

from statgan import config
from statgan.metrics.evaluate import evaluate_paths, evaluate_run
from statgan.train.trainer import Trainer, TrainingInterrupted

#: the recipes compared: config overrides on top of the mnist5k-dcgan preset
RECIPES: Dict[str, List[str]] = {
    # today's default (the published numbers): DCGAN width 32, non-saturating loss, EMA 0.999
    "default-dcgan-ns": [],
    # the same networks with the relativistic pairing loss, lazy R1/R2, ADA-driven augmentation, ramped EMA
    "dcgan-rpgan-aug": [
        "objective.name=rpgan", "model.discriminator={width: 64, norm: none}", "train.betas=[0.0, 0.99]",
        "regularizers.r1={weight: 0.1, every: 4}", "regularizers.r2={weight: 0.1, every: 4}",
        "regularizers.augment={ada_target: 0.6}", "train.ema_halflife_kimg=10", "train.ema_rampup=0.05",
    ],
    # the cheap end: the default networks (D without BatchNorm, which R1/R2 assume) with the pairing loss,
    # rare lazy R1/R2 and the ramped EMA, no augmentation
    "dcgan-rpgan-lazy": [
        "objective.name=rpgan", "model.discriminator={width: 32, norm: none}", "train.betas=[0.0, 0.99]",
        "regularizers.r1={weight: 0.1, every: 16}", "regularizers.r2={weight: 0.1, every: 16}",
        "train.ema_halflife_kimg=10", "train.ema_rampup=0.05",
    ],
    # R3GAN-style normalisation-free ResNets with the same loss and regularisers
    "resnet-rpgan-aug": [
        "model.arch=resnet", "model.generator={width: 8}", "model.discriminator={width: 8}", "objective.name=rpgan",
        "train.betas=[0.0, 0.99]", "regularizers.r1={weight: 0.1, every: 4}", "regularizers.r2={weight: 0.1, every: 4}",
        "regularizers.augment={ada_target: 0.6}", "train.ema_halflife_kimg=10", "train.ema_rampup=0.05",
    ],
    # a small StyleGAN2 with its native recipe: ns + lazy R1, style mixing 0.9 (a generator option), StyleGAN2's
    # Adam (lr 0.002, betas 0/0.99, for which the equalised learning rate is tuned), ramped EMA; no path length
    "stylegan-ns-r1": [
        "model.arch=stylegan", "model.latent_dim=64", "model.generator={width: 8, max_width: 32, style_mixing: 0.9}",
        "model.discriminator={width: 8, max_width: 32, mbstd: true}", "train.lr_g=0.002", "train.lr_d=0.002",
        "train.betas=[0.0, 0.99]", "regularizers.r1={weight: 0.1, every: 16}", "train.ema_halflife_kimg=10",
        "train.ema_rampup=0.05",
    ],
}


def cpu_minutes() -> float:
    """Minutes of two fully busy cores this process has used."""
    return time.process_time() / 2 / 60


def train_recipe(name: str, seed: int, budgets: List[float], out: Path) -> Path:
    run_dir = out / f"{name}-seed{seed}"
    overrides = [*RECIPES[name], f"run.seed={seed}", "train.steps=10000000", "train.progress=false",
                 "train.checkpoint_every=0", "train.sample_every=2000", "train.keep_checkpoints=1", "train.threads=2"]
    trainer = Trainer(config.load(None, overrides), run_dir)
    start = cpu_minutes()
    pending = sorted(budgets)

    def at_budget(tr: Trainer, step: int) -> None:
        used = cpu_minutes() - start
        while pending and used >= pending[0]:
            tr.save_checkpoint(name=f"budget-{pending.pop(0):g}min")
            print(f"  {name} seed {seed}: {used:.2f} CPU-min at step {step}", file=sys.stderr, flush=True)
        if not pending:
            tr.stop_request.request()

    trainer.callbacks.append(at_budget)
    try:
        trainer.fit()
    except TrainingInterrupted:
        pass  # the stop after the last budget
    return run_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budgets", nargs="+", type=float, default=[2.5, 5.0, 10.0, 20.0], help="CPU-minutes (2 cores)")
    ap.add_argument("--n", type=int, default=10_000, help="generated samples per FID (default 10000)")
    ap.add_argument("--out", type=Path, default=Path("runs/quality"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    floor = evaluate_paths("data:mnist5k:test", "data:mnist5k:train", metrics=["fid"], extractor="lenet")["metrics"]["fid"]
    records = []
    for name in args.recipes:
        for seed in args.seeds:
            run_dir = train_recipe(name, seed, args.budgets, args.out)
            for b in sorted(args.budgets):
                ckpt = run_dir / "checkpoints" / f"budget-{b:g}min.json"
                res = evaluate_run(run_dir, metrics=["fid"], n=args.n, extractor="lenet", checkpoint=ckpt, write=False)
                step = json.loads(ckpt.read_text())["step"]
                records.append({"recipe": name, "seed": seed, "cpu_minutes": b, "step": step, "fid": res["metrics"]["fid"]})
                print(f"{name:<20} seed {seed}  {b:>5g} CPU-min  step {step:>6}  lenet-FID {res['metrics']['fid']:.2f}",
                      flush=True)
    result = {"floor": floor, "n": args.n, "load_average_at_start": load, "records": records}
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nfloor (mnist5k test vs train): {floor:.2f}; load average at start {load:.2f}")
    print(f"{'recipe':<20} {'CPU-min':>7}  {'median FID':>10}  {'x floor':>7}  seeds")
    for name in args.recipes:
        for b in sorted(args.budgets):
            fids = [r["fid"] for r in records if r["recipe"] == name and r["cpu_minutes"] == b]
            med = statistics.median(fids)
            print(f"{name:<20} {b:>7g}  {med:>10.2f}  {med / floor:>7.1f}  {len(fids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
