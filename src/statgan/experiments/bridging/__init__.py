"""``statgan reproduce bridging``: the claims of Filippone & Linhard (2025, arXiv 2507.00651,
"Bridging GANs and Bayesian neural networks"), checked on mnist5k and 2-D toy densities.

Two grids, one report:

* **Regularisers** (issue item 6). For each objective of the paper's code — WGAN-div
  (``wgan-div``, n_critic 5), relativistic average GAN (``ragan``) and fixed-kernel MMD (``gmmn``) —
  and each seed, eight cells: ``baseline``; ``relaxation`` (σ = 0.1 decaying linearly to 0 over the
  run); ``gradreg`` (the paper's λ‖∇_ψ L_G‖², ``param_grad``, for the GANs; λ·mean‖∂MMD²/∂x̃‖,
  ``sample_grad``, for gmmn); ``sam`` (adaptive SAM, ρ = 0.5, on G and D); ``mcd`` (MC dropout,
  p = 0.1, n_mcd = 2); ``sam_gradreg`` (both); and a batch-size pair ``batch_small`` /
  ``batch_large`` (¼× and 2× the baseline batch) at an *equal number of epochs* — the setting of
  Keskar et al. (2017) in which large batches are said to reach sharper minima — so both see the
  same images and cost about the same compute. Every run is scored by FID in the feature space of
  statgan's MNIST LeNet (EMA generator vs the 1,000-image mnist5k test split, 2,000 generated
  samples in ``small``) and by the final sharpness, the top Hessian eigenvalue of L_G with respect
  to the (raw) generator's parameters on one fixed evaluation batch of training images and latents
  (the same for every cell, chosen by :data:`SHARPNESS_SEED`), with every network in eval mode
  (:func:`statgan.regularizers.sharpness.fixed_batch_sharpness`). The in-training probe's value
  on the last training batch is kept as ``sharpness_last_batch`` for comparison only: it grows as
  the batch shrinks by construction.
* **Latent dimension** (item 7). The paper proves that a partially stochastic generator
  approximates any absolutely continuous density once its latent dimension is large enough; here
  MLP generators with latent dimension 1, 2, 4, 8 are trained (``gmmn`` with kernel length scales
  0.07–2.2) on 2-D densities with an exact log-density: the paper's toy (200 points from N(0, I₂)),
  ``8gaussians`` and ``checkerboard``. Scores from 10,000 samples of the EMA generator: the chi-square decile RMS on
  squared norms (Gaussian, the paper's score), the mean exact log-density log p_data of the samples
  (floored at −20 so that samples off the checkerboard's support count as −20, not −∞; a precision
  score that a collapsed generator can also do well on) and the held-out log-likelihood of the 2,000
  test points under a Gaussian KDE of the samples (bandwidth chosen on 2,000 training points; a
  coverage score).

The report's verdicts are computed from the numbers, never typed by hand (:func:`verdict`): Welch
t-tests over seeds with 95% intervals, Spearman correlation of *cell means* (seeds of a cell are
not independent draws of the between-cell relation, so n is the number of cells), Holm's
correction within each family of comparisons (every claim, 3 and 4 included), and one of holds /
partly holds / does not hold / unresolved -- or *not tested at this budget* when no objective can
test the claim: its baseline has not learned (above :data:`NOT_LEARNED_FACTOR` × the FID floor) or
its treatment deviates from the paper's released code in a way that can flip the sign
(:data:`DEVIATIONS`). An unresolved claim says what the design could detect. The claim families
are :func:`fid_family`, :func:`flatness_family` and :func:`batch_family`;
tests/test_experiments_bridging_calibration.py checks their verdicts on simulated cells. The
``tiny`` budget is a smoke test and prints no verdicts.

The package, imports flowing downward:

* :mod:`.specs` -- the budgets, the treatments, the toy densities and the typed cell specs (the grid);
* :mod:`.records` -- what a finished cell measured, parsed from and written to its JSON record;
* :mod:`.running` -- running one cell (:func:`run_cell`, the grid runner's entry point);
* :mod:`.effects` -- one test of a claim (:class:`Effect`), Holm's correction and the verdict rules;
* :mod:`.analysis` -- the typed runs (:class:`Results`), the claim families and the latent sweep;
* :mod:`.report` -- the markdown report as a list of section functions (:func:`write_report`).

This package is the ``bridging`` member of :data:`statgan.experiments.REPRODUCTIONS`: its module-level
``NAME``, ``BUDGETS``, :func:`cells`, :func:`run_cell` and :func:`write_report` are
:class:`statgan.experiments.protocol.Reproduction`.
"""

from __future__ import annotations

from .analysis import (DEVIATIONS, NOT_LEARNED_FACTOR, ImageRun, LatentSweep, Results, SweepComparison, ToyRun,
                       batch_family, fid_family, flatness_family, latent_sweep, not_learned, score_comparisons)
from .specs import (BUDGETS, CELL_LABELS, CELLS, FID_SPLIT, FLOOR_KEY, IMAGE_DATA, KDE_VALID_N, LOGP_FLOOR, OBJECTIVES,
                    PRIORITY_CELLS, SHARPNESS_SEED, TOY_BANDWIDTHS, TOY_DENSITIES, TREATMENTS, Budget, CellSpec, FloorCell,
                    ImageCell, SharpnessProbe, ToyCell, Treatment, cells, parse_spec, plan)
from .effects import (NOT_TESTED, P_THRESHOLD, POWER, SMOKE_TEST, Effect, correlation_effect, critical_spearman, verdict,
                      welch_effect, with_holm)
from .records import CellRecord, Floor, ImageResult, ToyResult
from .report import CIFAR10_TRAIN, MNIST_TRAIN, learned_note, sweep_summary, write_report
from .running import _train, eval_sharpness, kde_log_likelihood, run_cell, sharpness_batch, train

#: the name ``statgan reproduce`` knows this reproduction by
NAME = "bridging"

__all__ = ["NAME", "BUDGETS", "Budget", "CELLS", "CELL_LABELS", "TREATMENTS", "Treatment", "DEVIATIONS", "NOT_TESTED",
           "OBJECTIVES", "IMAGE_DATA", "FID_SPLIT", "FLOOR_KEY", "PRIORITY_CELLS", "SHARPNESS_SEED", "TOY_DENSITIES",
           "TOY_BANDWIDTHS", "LOGP_FLOOR", "KDE_VALID_N", "P_THRESHOLD", "POWER", "SMOKE_TEST", "NOT_LEARNED_FACTOR",
           "MNIST_TRAIN", "CIFAR10_TRAIN",
           "CellSpec", "FloorCell", "ImageCell", "ToyCell", "SharpnessProbe", "parse_spec", "plan", "cells",
           "CellRecord", "Floor", "ImageResult", "ToyResult",
           "train", "run_cell", "sharpness_batch", "eval_sharpness", "kde_log_likelihood",
           "Effect", "verdict", "with_holm", "welch_effect", "correlation_effect", "critical_spearman",
           "ImageRun", "ToyRun", "Results", "SweepComparison", "LatentSweep", "latent_sweep", "not_learned",
           "fid_family", "flatness_family", "batch_family", "score_comparisons",
           "learned_note", "sweep_summary", "write_report"]
