"""Can the Bridging reproduction's baselines learn at the ``small`` budget with another training recipe?

Trains the ``baseline`` cell of ``statgan reproduce bridging --budget small`` (DCGAN width 16,
batch 64, the budget's steps per objective) under a few optimiser / network variants and prints the
lenet-FID of each (2,000 EMA samples against the mnist5k test split, exactly as the reproduction
scores its cells) and its ratio to the paper's recipe trained in the same run, per objective and seed.

Recipes (each is the reproduction's baseline config with the named changes):

* ``paper``: the paper's Adam (lr 1e-3, betas (0.5, 0.999)) and BatchNorm in G and D (the reference);
* ``d-nonorm``: no BatchNorm in D;
* ``beta0``: Adam betas (0, 0.99) and no BatchNorm in D (issue 13's optimiser settings);
* ``beta0-lr2e3``: ``beta0`` at lr 2e-3 (issue 13's winning learning rate).

    python benchmarks/bridging_baselines.py --seeds 0 --out docs/reproductions/bridging-baselines.jsonl

``--budget medium --at STEPS...`` instead trains the ``medium`` budget's own baseline cell (its
recipe, unchanged) for the largest of STEPS and scores its EMA generator at each of them (one run:
the medium recipe's EMA has a half-life in images and no schedule depends on the run's length, so
the checkpoint at step k is the k-step run), with the CPU seconds used up to each:

    python benchmarks/bridging_baselines.py --budget medium --objectives ragan --at 4000 6000 8000 10000 12000 --out OUT.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

from statgan import config
from statgan.experiments import bridging
from statgan.train.trainer import Trainer
from statgan.metrics.evaluate import evaluate_run


def _no_d_norm(cfg: Dict[str, Any]) -> None:
    cfg["model"]["discriminator"]["norm"] = "none"


def _beta0(cfg: Dict[str, Any]) -> None:
    _no_d_norm(cfg)
    cfg["train"]["betas"] = [0.0, 0.99]


def _beta0_lr2e3(cfg: Dict[str, Any]) -> None:
    _beta0(cfg)
    cfg["train"]["lr_g"] = cfg["train"]["lr_d"] = 2e-3


#: recipe name -> in-place change of the baseline's config (the reference first)
RECIPES: Dict[str, Callable[[Dict[str, Any]], None]] = {
    "paper": lambda cfg: None, "d-nonorm": _no_d_norm, "beta0": _beta0, "beta0-lr2e3": _beta0_lr2e3}


def baseline_spec(objective: str, seed: int, budget: str = "small") -> Dict[str, Any]:
    """The reproduction's own ``baseline`` cell spec at ``budget``."""
    for cell in bridging.cells(budget, seeds=[seed]):
        s = cell.spec
        if s.get("kind") == "mnist" and s["objective"] == objective and s["cell"] == "baseline":
            return s
    raise KeyError(objective)


def train_and_score(objective: str, recipe: str, seed: int) -> Dict[str, Any]:
    spec = copy.deepcopy(baseline_spec(objective, seed))
    RECIPES[recipe](spec["config"])
    spec["config"]["regularizers"].pop("sharpness", None)  # not part of the question; costs CPU
    with tempfile.TemporaryDirectory() as tmp:
        c0 = time.process_time()
        bridging._train(spec, Path(tmp))
        ev = evaluate_run(Path(tmp) / "run", metrics=["fid"], n=spec["fid_n"], extractor="lenet",
                          reference=bridging.FID_SPLIT, seed=0, write=False)
        return {"objective": objective, "recipe": recipe, "seed": seed, "fid": ev.metrics["fid"],
                "cpu_s": round(time.process_time() - c0, 1)}


def score_along(objective: str, seed: int, at: List[int], budget: str = "medium") -> List[Dict[str, Any]]:
    """Train ``budget``'s baseline cell for ``max(at)`` steps; lenet-FID (as the grid scores it) of the
    EMA generator at each step count in ``at``, with the process's CPU seconds of training up to it."""
    spec = copy.deepcopy(baseline_spec(objective, seed, budget))
    cfg = spec["config"]
    cfg["regularizers"].pop("sharpness", None)
    cfg["train"]["steps"] = max(at)
    cpu_at: Dict[int, float] = {}
    saved: Dict[int, Path] = {}
    c0 = time.process_time()

    def at_step(trainer: Trainer, step: int) -> None:
        if step in at:
            cpu_at[step] = time.process_time() - c0
            saved[step] = trainer.save_checkpoint(name=f"at-{step}")  # not step-*: that is the pruned rotation

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = config.from_dict(cfg)
        config.validate(run_cfg)
        Trainer(run_cfg, Path(tmp) / "run", callbacks=[at_step]).fit()
        for step in sorted(at):
            e0 = time.process_time()
            ckpt = saved[step]
            ev = evaluate_run(Path(tmp) / "run", metrics=["fid"], n=spec["fid_n"], extractor="lenet",
                              reference=bridging.FID_SPLIT, seed=0, write=False, checkpoint=ckpt)
            rows.append({"budget": budget, "objective": objective, "seed": seed, "steps": step,
                         "fid": ev.metrics["fid"], "train_cpu_s": round(cpu_at[step], 1),
                         "eval_cpu_s": round(time.process_time() - e0, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--objectives", nargs="+", default=list(bridging.OBJECTIVES))
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="JSON lines of every run (appended)")
    ap.add_argument("--budget", default="small", choices=["small", "medium"],
                    help="small: the recipe comparison; medium: the medium budget's baseline scored --at steps")
    ap.add_argument("--at", type=int, nargs="+", default=[4000, 6000, 8000, 10000, 12000],
                    help="(--budget medium) generator steps at which the baseline is scored")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.budget == "medium":
        print(f"load average at start: {os.getloadavg()}", flush=True)
        for seed in a.seeds:
            for obj in a.objectives:
                for row in score_along(obj, seed, a.at):
                    print(json.dumps(row), flush=True)
                    if a.out:
                        with open(a.out, "a") as f:
                            f.write(json.dumps(row) + "\n")
        print(f"load average at end: {os.getloadavg()}")
        return
    recipes = ["paper"] + [r for r in a.recipes if r != "paper"]  # the reference always runs
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows = []
    for seed in a.seeds:
        for obj in a.objectives:
            for recipe in recipes:
                row = train_and_score(obj, recipe, seed)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if a.out:
                    with open(a.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    print(f"load average at end: {os.getloadavg()}")
    print("objective | recipe | median FID over seeds | ratio to paper (same seeds) | n")
    for obj in a.objectives:
        ref = statistics.median(r["fid"] for r in rows if r["objective"] == obj and r["recipe"] == "paper")
        for recipe in recipes:
            fids = [r["fid"] for r in rows if r["objective"] == obj and r["recipe"] == recipe]
            med = statistics.median(fids)
            print(f"{obj} | {recipe} | {med:.1f} | {med / ref:.2f} | {len(fids)}")


if __name__ == "__main__":
    main()
