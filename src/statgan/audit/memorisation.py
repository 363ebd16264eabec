"""Memorisation tests: does the generator reproduce its training images?

Two views, side by side in the audit (:func:`statgan.audit.stages.memorisation`):

* *train vs held-out* -- a generator that memorised its training set reconstructs (inverts) and scores
  (log-likelihood) training images better than held-out ones: AUROCs and Mann-Whitney tests;
* *data copying* -- :func:`data_copying_test`, the three-sample test C_T of Meehan, Chaudhuri &
  Dasgupta, "A non-parametric test to detect data-copying in generative models" (AISTATS 2020).
  It asks whether *generated* samples lie closer to the training set than genuinely new samples
  (held-out images) do, locally: a generator can copy in some regions and underfit in others, which
  a global comparison averages away.

C_T as in Meehan et al.'s reference code. With T the training images, P the held-out images and Q
the generated ones:

1. partition the space into k cells by k-means on T (each point belongs to its nearest centre);
   T_c are the training images of cell c, and d_c(x) = min_{t in T_c} ||x - t|| (Euclidean, here on
   flattened pixels) the distance of a point of cell c to its nearest training image *in the same
   cell* -- the paper's local comparison: a point near a cell's border may have a nearer training
   image across it, and measuring to that one (summaries before this followed it, ``neighbours``
   "anywhere") mixes the cells the test keeps apart;
2. in each cell c with at least ``min_per_cell`` held-out *and* generated samples, compare the
   distances {d_c(q)} of the cell's generated samples with {d_c(p)} of its held-out samples by the
   Mann-Whitney U statistic U_c = #{(q, p): d(q) > d(p)} (ties 1/2), as a z-score
   Z_c = (U_c - m n / 2) / sqrt(m n (m + n + 1) / 12);
3. C_T = sum_c w_c Z_c with w_c the fraction of (used cells') held-out samples in cell c.

Without copying every Z_c is ~N(0, 1) and independent, so C_T ~ N(0, sum_c w_c^2): the summary
reports that null standard deviation and the one-sided p-value Phi(C_T / sd). C_T << 0: generated
samples sit closer to training images than new data would (copying); C_T >> 0: they are farther
(underfitting). The paper flags copying at C_T < -3 (with its default many-cell setting, where the
null sd is well below 1).
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import StatganError
from ..runtime.lazy import scipy_stats
from .summary import DataCopying

__all__ = ["data_copying_test", "nearest_distances"]


def _flat(name: str, x: Any) -> Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.dim() < 2 or t.shape[0] == 0:
        raise StatganError(f"{name} must hold at least one sample of shape (N, ...), got shape {tuple(t.shape)}")
    return t.flatten(1)


def _nearest(x: Tensor, reference: Tensor, batch: int) -> Tuple[Tensor, Tensor]:
    """(distances, indices) of each row of ``x``'s nearest row of ``reference``, ``batch`` rows of
    the distance matrix at a time (memory: batch x len(reference))."""
    parts = [torch.cdist(x[i: i + batch], reference).min(1) for i in range(0, x.shape[0], batch)]
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def nearest_distances(x: Tensor, reference: Tensor, batch: int = 256) -> Tensor:
    """(N,) Euclidean distance of each row of ``x`` to its nearest row of ``reference``."""
    return _nearest(x, reference, batch)[0]


def _nearest_centre(x: Tensor, centres: Tensor) -> Tensor:
    return _nearest(x, centres, 256)[1]


def data_copying_test(train: Any, held_out: Any, generated: Any, n_cells: Optional[int] = None,
                      min_per_cell: int = 5, seed: int = 0, space: str = "pixels") -> DataCopying:
    """Meehan et al.'s (2020) C_T of ``generated`` against ``held_out``, relative to ``train``.

    Args:
        train, held_out, generated: (N, ...) samples (flattened; images on one scale).
        n_cells: k-means cells on ``train``; ``None``: n_held_out // 25, between 1 and 10 (about 25
            held-out samples per cell, so that most cells pass ``min_per_cell``).
        min_per_cell: a cell counts only with at least this many held-out and generated samples.
        seed: seeds k-means' initialisation.
        space: a label for the summary (what the distances are measured in).

    Raises StatganError when no cell has enough samples (too few held-out or generated samples).
    """
    t, p, q = _flat("train", train), _flat("held_out", held_out), _flat("generated", generated)
    if not t.shape[1] == p.shape[1] == q.shape[1]:
        raise StatganError(f"train, held_out and generated must have the same size per sample, got "
                           f"{t.shape[1]}, {p.shape[1]} and {q.shape[1]}")
    k = n_cells if n_cells is not None else max(1, min(10, p.shape[0] // 25))
    k = max(1, min(int(k), t.shape[0]))
    if k > 1:
        # heavy (scipy.cluster imports scipy's linear algebra): only this test needs it
        from scipy.cluster.vq import kmeans2

        centres_np, _ = kmeans2(t.numpy(), k, minit="++", seed=np.random.default_rng(seed))
        centres = torch.from_numpy(np.asarray(centres_np, dtype=np.float64))
        cell_t, cell_p, cell_q = (_nearest_centre(x, centres) for x in (t, p, q))
    else:
        cell_t, cell_p, cell_q = (torch.zeros(x.shape[0], dtype=torch.long) for x in (t, p, q))
    zs: List[float] = []
    counts: List[int] = []
    for c in range(k):
        in_t, in_q, in_p = cell_t == c, cell_q == c, cell_p == c
        m, n = int(in_q.sum()), int(in_p.sum())
        if m < min_per_cell or n < min_per_cell or not bool(in_t.any()):
            continue
        a, b = nearest_distances(q[in_q], t[in_t]).numpy(), nearest_distances(p[in_p], t[in_t]).numpy()
        # U = #{(q, p): d(q) > d(p)} + ties / 2, i.e. scipy's U of the generated sample
        u = float(scipy_stats().mannwhitneyu(a, b, alternative="two-sided").statistic)
        zs.append((u - m * n / 2.0) / math.sqrt(m * n * (m + n + 1) / 12.0))
        counts.append(n)
    if not zs:
        raise StatganError(f"data-copying test: no cell has {min_per_cell} held-out and {min_per_cell} generated samples "
                           f"({p.shape[0]} held-out, {q.shape[0]} generated in {k} cells); use more images")
    w = np.asarray(counts, dtype=np.float64) / sum(counts)
    c_t = float(np.dot(w, zs))
    sd = float(math.sqrt(np.square(w).sum()))
    return DataCopying(c_t=c_t, null_sd=sd, pvalue=float(scipy_stats().norm.cdf(c_t / sd)), n_cells=k,
                       cells_used=len(zs), min_per_cell=int(min_per_cell), n_train=int(t.shape[0]),
                       n_test=int(p.shape[0]), n_generated=int(q.shape[0]), cell_z=tuple(float(z) for z in zs),
                       cell_weights=tuple(float(x) for x in w), space=space, neighbours="within cell")
