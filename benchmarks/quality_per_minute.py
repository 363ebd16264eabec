"""Sample quality per CPU-minute: lenet-FID of training recipes at fixed compute budgets.

Each recipe trains with ``train.steps`` large; a callback watches the process's CPU time and, when
it passes a budget (in minutes of two fully busy cores: CPU seconds / 2 / 60, so a busy shared
machine does not shrink the budget the way wall-clock time would), writes a named checkpoint
``budget-<m>min``. After the last budget the run stops. Every budget checkpoint is then evaluated:
lenet-FID of 10,000 samples (EMA weights) against the mnist5k training split, next to the
real-vs-real floor (test split vs train split) measured in the same run.

    python benchmarks/quality_per_minute.py                                  # the core recipes, 3 seeds, 2.5/5/10/20 min
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
from statgan.rundir.files import atomic_write_text
from statgan.train.trainer import Trainer, TrainingInterrupted

#: DCGAN networks (D without BatchNorm, which R1/R2 assume), relativistic pairing loss, rare lazy R1/R2,
#: Adam with beta1 = 0 and the ramped EMA: the base of the sweep over learning rate and batch size
RPGAN_LAZY: List[str] = [
    "objective.name=rpgan", "model.discriminator={width: 32, norm: none}", "train.betas=[0.0, 0.99]",
    "regularizers.r1={weight: 0.1, every: 16}", "regularizers.r2={weight: 0.1, every: 16}",
    "train.ema_halflife_kimg=10", "train.ema_rampup=0.05",
]


def _lr(lr: str) -> List[str]:
    return [f"train.lr_g={lr}", f"train.lr_d={lr}"]


#: the winner: the preset mnist5k-dcgan-rpgan, today's default (tests/test_config.py pins that preset to a copy
#: of these overrides: change both together)
WINNER: List[str] = [*RPGAN_LAZY, *_lr("2e-3"), "regularizers.r1={weight: 1, every: 16}",
                     "regularizers.r2={weight: 1, every: 16}"]


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
    # the cheap end: the default networks with the pairing loss, rare lazy R1/R2 and the ramped EMA (lr 2e-4)
    "dcgan-rpgan-lazy": RPGAN_LAZY,
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
    # --- candidates of the 2026-11-30 sweeps (docs/quality.md, "The default recipe"); a later override of
    # the same key wins, so the variants below append to their base ---
    "dcgan64-ns": ["model.generator={width: 64}", "model.discriminator={width: 64}"],
    "dcgan-ns-d64": ["model.discriminator={width: 64}"],
    "dcgan-ns-lr5": _lr("5e-4"),
    "dcgan-ns-b32": ["train.batch_size=32"],
    # the two-time-scale rule (Heusel et al. 2017): D learns 4x faster than G
    "dcgan-ns-ttur": ["train.lr_g=1e-4", "train.lr_d=4e-4"],
    "dcgan64-rpgan-lazy": [*RPGAN_LAZY, "model.generator={width: 64}", "model.discriminator={width: 64, norm: none}"],
    "dcgan-rpgan-lazy-d64": [*RPGAN_LAZY, "model.discriminator={width: 64, norm: none}"],
    "dcgan-rpgan-lazy-lr5": [*RPGAN_LAZY, *_lr("5e-4")],
    "dcgan-rpgan-lazy-lr5-b32": [*RPGAN_LAZY, *_lr("5e-4"), "train.batch_size=32"],
    "dcgan-rpgan-lazy-lr1e3": [*RPGAN_LAZY, *_lr("1e-3")],
    "dcgan-rpgan-lazy-lr1e3-b32": [*RPGAN_LAZY, *_lr("1e-3"), "train.batch_size=32"],
    "dcgan-rpgan-lazy-lr2e3": [*RPGAN_LAZY, *_lr("2e-3")],
    "dcgan-rpgan-lazy-lr2e3-b32": [*RPGAN_LAZY, *_lr("2e-3"), "train.batch_size=32"],
    "dcgan-rpgan-lazy-lr4e3": [*RPGAN_LAZY, *_lr("4e-3")],
    "dcgan-rpgan-lazy-lr2e3-g1": WINNER,  # today's default (WINNER above)
    "dcgan-rpgan-lazy-lr2e3-d64": [*RPGAN_LAZY, *_lr("2e-3"), "model.discriminator={width: 64, norm: none}"],
    # --- the winner with both networks twice as wide (added 2026-11-30; a candidate for the long preset) ---
    "dcgan64-rpgan-lazy-lr2e3-g1": [*WINNER, "model.generator={width: 64}", "model.discriminator={width: 64, norm: none}"],
    # --- the levers of issue 31 on top of the winner (added 2026-12-07) ---
    # progressive growing: 7x7, fade, 14x14, fade, then 28x28 from step 4,000 (resp. 8,000)
    "grow-1k": [*WINNER, "regularizers.grow={stable: 1000, fade: 1000}"],
    "grow-2k": [*WINNER, "regularizers.grow={stable: 2000, fade: 2000}"],
    # FastGAN's self-supervised D: it also decodes its features of real images (every step, or lazily)
    "recon": [*WINNER, "regularizers.recon={weight: 1}"],
    "recon-lazy4": [*WINNER, "regularizers.recon={weight: 1, every: 4}"],
    # bf16 autocast (weights, optimiser and EMA stay fp32)
    "bf16": [*WINNER, "train.precision=bf16"],
    # channels-last memory format (NHWC: oneDNN's preferred layout for CPU convolutions), alone and with bf16
    "channels-last": [*WINNER, "train.channels_last=true"],
    "bf16-cl": [*WINNER, "train.precision=bf16", "train.channels_last=true"],
    # both networks twice as wide under bf16 (where bf16 gains more: 1.65x images/s at width 64, 1.54x at 32)
    "bf16-w64": [*WINNER, "train.precision=bf16", "model.generator={width: 64}",
                 "model.discriminator={width: 64, norm: none}"],
    # only the discriminator twice as wide under bf16: at the recipe's plateau (FID 27-28) D barely tells
    # real from generated digits (AUROC 0.67) and ranks malformed samples no lower than good ones
    "bf16-dw64": [*WINNER, "train.precision=bf16", "model.discriminator={width: 64, norm: none}"],
    # one 3x3 convolution at 7x7 before D's linear read-out (its nonlinear features see 18x18 pixels, not
    # 10x10): the default run mnist5k-dcgan-rpgan-deepd
    "dbase1": [*WINNER, "model.discriminator={width: 32, norm: none, base_convs: 1}"],
    "bf16-dbase1": [*WINNER, "train.precision=bf16", "model.discriminator={width: 32, norm: none, base_convs: 1}"],
    # one 3x3 convolution at 7x7 in G as well (after the projection of z): the long preset mnist5k-dcgan-rpgan-deep-long
    "base1": [*WINNER, "model.generator={width: 32, base_convs: 1}",
              "model.discriminator={width: 32, norm: none, base_convs: 1}"],
    "bf16-base1": [*WINNER, "train.precision=bf16", "model.generator={width: 32, base_convs: 1}",
                   "model.discriminator={width: 32, norm: none, base_convs: 1}"],
    # DiffAugment's translation + cutout on both of D's inputs at a low fixed probability (no colour: MNIST
    # strokes are one grey level), the small-data remedy of Zhao et al. 2020 without ADA's controller
    "diffaug-tc-p02": [*WINNER, 'regularizers.augment={policy: "translation,cutout", p: 0.2}'],
    "diffaug-tc-p05": [*WINNER, 'regularizers.augment={policy: "translation,cutout", p: 0.5}'],
}


def cpu_minutes() -> float:
    """Minutes of two fully busy cores this process has used."""
    return time.process_time() / 2 / 60


def budgets_reached(run_dir: Path) -> List[float]:
    """The CPU-minute budgets whose checkpoints ``run_dir`` already holds (``budget-<m>min.json``)."""
    names = (p.name[len("budget-"):-len("min.json")] for p in (run_dir / "checkpoints").glob("budget-*min.json"))
    return sorted(float(m) for m in names)


def train_recipe(name: str, seed: int, budgets: List[float], out: Path, threads: int = 2,
                 data: List[str] = (), resume: bool = False) -> Path:
    """Train one recipe and seed, writing a checkpoint at each CPU-minute budget.

    With ``resume``, a run directory that an earlier call stopped after its last budget continues from
    that checkpoint (the same batches and random streams as a run that never stopped) with its clock at
    that budget, so a longer budget costs only the difference; the budgets it already reached are kept
    as they are."""
    run_dir = out / f"{name}-seed{seed}"
    overrides = [*RECIPES[name], *data, f"run.seed={seed}", "train.steps=10000000", "train.progress=false",
                 "train.checkpoint_every=0", "train.sample_every=2000", "train.keep_checkpoints=1", f"train.threads={threads}"]
    reached = budgets_reached(run_dir) if resume else []
    pending = sorted(b for b in budgets if b not in reached)
    if reached and pending and pending[0] < reached[-1]:
        raise SystemExit(f"{name} seed {seed}: budget {pending[0]:g} is below the {reached[-1]:g} CPU-minutes "
                         f"{run_dir} already trained for; resume only adds longer budgets")
    if reached:
        newest = json.loads((run_dir / "checkpoints" / f"budget-{reached[-1]:g}min.json").read_text())["step"]
        print(f"  {name} seed {seed}: resuming at {reached[-1]:g} CPU-min (step {newest})", file=sys.stderr, flush=True)
        if not pending:
            return run_dir
    trainer = Trainer(config.load("mnist5k-dcgan", overrides), run_dir, resume=bool(reached))
    if reached and trainer.step != newest:
        # the run went on after its last budget (a later stop): its clock at the newest checkpoint is unknown
        raise SystemExit(f"{name} seed {seed}: the newest checkpoint of {run_dir} is at step {trainer.step}, not at "
                         f"the {reached[-1]:g} CPU-minute budget's step {newest}; cannot resume its clock")
    start = cpu_minutes() - (reached[-1] if reached else 0.0)

    def at_budget(tr: Trainer, step: int) -> None:
        used = cpu_minutes() - start
        while pending and used >= pending[0]:
            tr.save_checkpoint(name=f"budget-{pending.pop(0):g}min")
            print(f"  {name} seed {seed}: {used:.2f} CPU-min at step {step}", file=sys.stderr, flush=True)
        if not pending:
            tr.request_stop(reason="every CPU-minute budget reached")

    trainer.callbacks.append(at_budget)
    try:
        trainer.fit()
    except TrainingInterrupted:
        pass  # the stop after the last budget (or a signal: checked below)
    if pending:
        # stopped by a signal or a training fault before every budget was reached: nothing to evaluate
        raise SystemExit(f"{name} seed {seed}: training stopped before the {pending[0]:g} CPU-minute budget "
                         f"(see {run_dir}); no results written for it")
    return run_dir


#: the recipes of the issue-13 table; the other entries of RECIPES are sweep candidates, run only when named
CORE_RECIPES = ("default-dcgan-ns", "dcgan-rpgan-lazy", "dcgan-rpgan-aug", "resnet-rpgan-aug", "stylegan-ns-r1")
assert set(CORE_RECIPES) <= set(RECIPES)

#: what each dataset is judged by: lenet-FID against the training split, or StackedMNIST mode coverage
DATA_OVERRIDES: Dict[str, List[str]] = {"mnist5k": [], "stacked-mnist": ["data.name=stacked-mnist"]}


def evaluate_budget(data: str, run_dir: Path, ckpt: Path, n: int) -> Dict[str, float]:
    """lenet-FID (mnist5k) or modes covered and KL to uniform (stacked-mnist) of one budget's EMA generator."""
    if data == "stacked-mnist":
        res = evaluate_run(run_dir, metrics=["modes"], n=max(n, 26_000), checkpoint=ckpt, write=False)
        return {"modes": res.metrics["modes"], "kl": res.metrics["modes_kl"]}
    res = evaluate_run(run_dir, metrics=["fid"], n=n, extractor="lenet", checkpoint=ckpt, write=False)
    return {"fid": res.metrics["fid"]}


def print_table(result: Dict) -> None:
    records, floor = result["records"], result.get("floor")
    key = "fid" if "fid" in records[0] else "modes"
    recipes = list(dict.fromkeys(r["recipe"] for r in records))
    budgets = sorted({r["cpu_minutes"] for r in records})
    if floor is not None:
        print(f"floor (mnist5k test vs train): {floor:.2f}")
    w = max(24, *(len(r) for r in recipes))
    print(f"{'recipe':<{w}} {'CPU-min':>7}  {'median ' + key:>12}  {'range':>17}  {'x floor':>7}  seeds")
    for name in recipes:
        for b in budgets:
            vals = [r[key] for r in records if r["recipe"] == name and r["cpu_minutes"] == b]
            if not vals:
                continue
            med = statistics.median(vals)
            ratio = f"{med / floor:>7.1f}" if floor and key == "fid" else f"{'':>7}"
            print(f"{name:<{w}} {b:>7g}  {med:>12.2f}  {min(vals):>8.1f}–{max(vals):<8.1f}  {ratio}  {len(vals)}")


def plot(result: Dict, path: Path) -> None:
    """Median lenet-FID against CPU-minutes per recipe (seeds as dots), the floor as a line; log scales."""
    import matplotlib  # optional and heavy: only the plot needs it
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, floor = result["records"], result["floor"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for name in dict.fromkeys(r["recipe"] for r in records):
        rs = [r for r in records if r["recipe"] == name]
        budgets = sorted({r["cpu_minutes"] for r in rs})
        meds = [statistics.median(r["fid"] for r in rs if r["cpu_minutes"] == b) for b in budgets]
        (line,) = ax.plot(budgets, meds, marker="o", label=name)
        ax.scatter([r["cpu_minutes"] for r in rs], [r["fid"] for r in rs], s=8, color=line.get_color(), alpha=0.5)
    ax.axhline(floor, color="k", ls="--", lw=1, label=f"floor (test vs train) {floor:.1f}")
    # scales first: setting a log scale afterwards would bring back its own (overlapping) tick labels
    n, threads = result.get("n", 10_000), result.get("threads", 2)
    ax.set(xscale="log", yscale="log", xlabel=f"CPU-minutes (2 cores; runs on {threads} thread(s))",
           ylabel=f"lenet-FID vs mnist5k train ({n:,} samples)")
    ticks = sorted({r["cpu_minutes"] for r in records})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=list(CORE_RECIPES), choices=list(RECIPES),
                    help=f"default: the compared set {', '.join(CORE_RECIPES)}; the sweep candidates run only when named")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budgets", nargs="+", type=float, default=[2.5, 5.0, 10.0, 20.0], help="CPU-minutes (2 cores)")
    ap.add_argument("--data", choices=list(DATA_OVERRIDES), default="mnist5k",
                    help="mnist5k: lenet-FID; stacked-mnist: modes covered and KL (26,000 samples)")
    ap.add_argument("--n", type=int, default=10_000, help="generated samples per FID (default 10000)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2: the 2-core budget)")
    ap.add_argument("--out", type=Path, default=Path("runs/quality"))
    ap.add_argument("--tabulate", nargs="+", type=Path, metavar="RESULTS_JSON",
                    help="train nothing: merge these results.json files, print the table (and --plot)")
    ap.add_argument("--plot", type=Path, help="write FID against CPU-minutes as a PNG")
    ap.add_argument("--resume", action="store_true",
                    help="continue runs in OUT that stopped at their last budget, up to longer --budgets (only the "
                         "budgets named are evaluated; OUT/results.json keeps its other records)")
    args = ap.parse_args()
    if args.tabulate:
        parts = [json.loads(p.read_text()) for p in args.tabulate]
        result = {"floor": parts[0].get("floor"), "n": parts[0].get("n", 10_000), "threads": parts[0].get("threads", 2),
                  "records": [r for p in parts for r in p["records"]]}
        print_table(result)
        if args.plot:
            plot(result, args.plot)
        return 0
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    floor = None
    if args.data == "mnist5k":
        floor = evaluate_paths("data:mnist5k:test", "data:mnist5k:train", metrics=["fid"], extractor="lenet").metrics["fid"]
    records = []
    if args.resume and (args.out / "results.json").is_file():
        measured = {(name, seed, b) for name in args.recipes for seed in args.seeds for b in args.budgets}
        records = [r for r in json.loads((args.out / "results.json").read_text())["records"]
                   if (r["recipe"], r["seed"], r["cpu_minutes"]) not in measured]
    result = {"data": args.data, "floor": floor, "n": args.n, "threads": args.threads,
              "load_average_at_start": load, "records": records}
    for name in args.recipes:
        for seed in args.seeds:
            run_dir = train_recipe(name, seed, args.budgets, args.out, args.threads, DATA_OVERRIDES[args.data],
                                   resume=args.resume)
            for b in sorted(args.budgets):
                ckpt = run_dir / "checkpoints" / f"budget-{b:g}min.json"
                values = evaluate_budget(args.data, run_dir, ckpt, args.n)
                step = json.loads(ckpt.read_text())["step"]
                records.append({"recipe": name, "seed": seed, "cpu_minutes": b, "step": step, **values})
                shown = "  ".join(f"{k} {v:.3f}" for k, v in values.items())
                print(f"{name:<24} seed {seed}  {b:>5g} CPU-min  step {step:>6}  {shown}", flush=True)
                # written after every record: an interrupted sweep keeps what it measured
                result["load_average_at_end"] = os.getloadavg()[0]
                atomic_write_text(args.out / "results.json", json.dumps(result, indent=1) + "\n")
    print(f"\nload average at start {load:.2f}, at end {os.getloadavg()[0]:.2f}")
    print_table(result)
    if args.plot and floor is not None:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
