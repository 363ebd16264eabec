"""What a trained discriminator sees of its generator's mistakes: for each checkpoint, how well D's logit
separates real training images from EMA samples, and whether it ranks the samples that the shipped
LeNet does not recognise lower than those it does.

Per checkpoint, on ``--n`` EMA samples (latents from ``--seed``) and the first ``--n`` training images:

* ``recognisable``: the share of samples whose top LeNet class has probability >= 0.9 (the
  ``recognisable`` metric of ``statgan eval``; mnist5k's own images: 0.986);
* ``AUROC real/fake``: P(D(real) > D(fake)), the Mann–Whitney U statistic over n·n pairs
  (0.5: D cannot tell them apart);
* ``AUROC good/bad fake``: the same between recognised samples and samples whose top class has
  probability < 0.5 (0.5: D does not rank malformed samples lower);
* ``Spearman(D, LeNet confidence)`` over the samples, with its two-sided p-value;
* ``class TV``: the total variation distance between LeNet's class histograms of the samples and of
  the training images (0: the classes come in the data's proportions).

A generator improves only where D's logit tells it how: a D whose logit does not follow the
samples' recognisability gives it no direction towards recognisable digits.

    python benchmarks/discriminator_sight.py RUN/checkpoints/step-052502.json [...] --n 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List

import numpy as np
import torch
from scipy import stats

from statgan import data
from statgan.metrics.evaluate import RECOGNISABLE_P
from statgan.metrics.features import load_lenet
from statgan.models import build_models
from statgan.rundir import checkpoint as ckpt
from statgan.rundir.run import CheckpointMeta


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + P(pos = neg)/2 from the Mann–Whitney U statistic."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def sight(path: Path, n: int, seed: int, lenet: torch.nn.Module) -> List[str]:
    tensors, meta = ckpt.load_checkpoint(path)
    info = CheckpointMeta.from_record(meta, path)
    G, D = build_models(info.config, info.data_shape)
    ckpt.unpack_module("G_ema" if info.ema else "G", G, tensors, str(path))
    ckpt.unpack_module("D", D, tensors, str(path))
    G.eval(), D.eval()
    real = data.load(info.config.data.name, "train")[:n]
    with torch.no_grad():
        fake = G(torch.randn(n, info.latent_dim, generator=torch.Generator().manual_seed(seed)))
        d_fake, d_real = D(fake).double().numpy(), D(real).double().numpy()
        probs = torch.softmax(lenet(fake).double(), dim=1)
        real_classes = lenet(real).argmax(dim=1).numpy()
    confidence, classes = probs.max(dim=1).values.numpy(), probs.argmax(dim=1).numpy()
    good, bad = confidence >= RECOGNISABLE_P, confidence < 0.5
    rho, p = stats.spearmanr(d_fake, confidence)
    k = probs.shape[1]
    tv = 0.5 * np.abs(np.bincount(classes, minlength=k) / n - np.bincount(real_classes, minlength=k) / len(real)).sum()
    return [str(path), f"{info.step:,}", f"{good.mean():.3f}", f"{auroc(d_real, d_fake):.3f}",
            f"{auroc(d_fake[good], d_fake[bad]):.3f} ({good.sum()} / {bad.sum()})", f"{rho:+.3f} (p = {p:.2g})", f"{tv:.3f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint .json files of image runs with a DCGAN-style D")
    ap.add_argument("--n", type=int, default=2000, help="samples and real images per checkpoint")
    ap.add_argument("--seed", type=int, default=1, help="seed of the latents")
    a = ap.parse_args()
    torch.set_num_threads(1)
    lenet, _ = load_lenet()  # once: it is the same network for every checkpoint
    print("checkpoint | step | recognisable | AUROC real/fake | AUROC good/bad fake (n good / bad) | Spearman(D, LeNet confidence) | class TV")
    for path in a.checkpoints:
        print(" | ".join(sight(path, a.n, a.seed, lenet)), flush=True)


if __name__ == "__main__":
    main()
