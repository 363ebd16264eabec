"""Scores for out-of-distribution analysis: AUROC, local image variance, correlations.

Used to test Friedman & Weiss's (2024) findings that GAN likelihoods rank OOD images *above*
in-distribution ones and that likelihood is anti-correlated with local image variance.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..runtime.lazy import scipy_stats
from ..runtime.validation import check_int, check_positive

__all__ = ["Correlation", "auroc", "correlation", "local_variance"]


def _as_scores(name: str, values: Any) -> np.ndarray:
    if torch.is_tensor(values):
        values = values.detach().to("cpu", torch.float64).numpy()
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D tensor or array of numbers, got {type(values).__name__}") from None
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor or array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def auroc(scores_in: Any, scores_out: Any) -> float:
    """Area under the ROC curve for separating OOD (positives) from in-distribution (negatives).

    Convention: a *higher score means more OOD*. AUROC = P(s_out > s_in) + P(s_out = s_in) / 2 over
    independent pairs, computed from average ranks (Mann-Whitney U; ties get their mean rank, which
    is exactly the 1/2 rule) in O(n log n):

        AUROC = (sum of ranks of s_out - n_out (n_out + 1) / 2) / (n_in n_out).

    For likelihood-based detection pass scores = -log p(x); an AUROC below 0.5 then means OOD
    inputs receive *higher* likelihood than in-distribution inputs (Friedman & Weiss's finding).
    """
    a = _as_scores("scores_in", scores_in)
    b = _as_scores("scores_out", scores_out)
    ranks = scipy_stats().rankdata(np.concatenate([a, b]), method="average")
    n_in, n_out = a.size, b.size
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def local_variance(images: Tensor, patch: int = 8, eps: float = 1e-2) -> Tensor:
    """Mean coefficient of variation of non-overlapping ``patch`` x ``patch`` patches, per image.

    Friedman & Weiss's measure of local image variance. Precisely, for images in [-1, 1]:

    1. u = (x + 1) / 2 in [0, 1] (a CV needs a non-negative intensity scale); multi-channel images
       are averaged over channels first (gray level);
    2. the largest grid of whole patches is cut from the image centre (28 px, patch 8: the central
       24 x 24, 3 x 3 patches); incomplete border patches are dropped;
    3. per patch P: CV = std(P) / (mean(P) + eps), std with ddof = 0;
    4. the score is the mean CV over the image's patches.

    ``eps`` (in [0, 1] intensity units; default 0.01 ~ 2.5/255) keeps nearly black patches, where
    the CV is dominated by sensor or generator noise, from exploding; a constant patch scores 0.
    Returns (N,) float64.
    """
    if not torch.is_tensor(images) or images.dim() != 4 or not images.is_floating_point():
        got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a float tensor (N, C, H, W) in [-1, 1], got {got}")
    patch = check_int("patch", patch)
    eps = check_positive("eps", eps)
    n, _, h, w = images.shape
    if h < patch or w < patch:
        raise ValueError(f"images of size {h}x{w} are smaller than one {patch}x{patch} patch")
    u = ((images.detach().to(torch.float64) + 1.0) / 2.0).mean(1, keepdim=True)
    gh, gw = (h // patch) * patch, (w // patch) * patch
    top, left = (h - gh) // 2, (w - gw) // 2
    u = u[:, :, top : top + gh, left : left + gw]
    # (N, patch*patch, n_patches): each column one patch
    cols = F.unfold(u, kernel_size=patch, stride=patch)
    mean = cols.mean(1)
    std = cols.std(1, unbiased=False)
    return (std / (mean + eps)).mean(1)


class Correlation(NamedTuple):
    """``r`` (Spearman's rho or Pearson's r), two-sided ``pvalue``, ``n`` pairs, ``method``."""

    r: float
    pvalue: float
    n: int
    method: str


def correlation(x: Any, y: Any, method: str = "spearman") -> Correlation:
    """Spearman (rank; robust to the heavy tails of log-likelihoods) or Pearson correlation of two
    equally long 1-D score vectors, with scipy's two-sided p-value."""
    a = _as_scores("x", x)
    b = _as_scores("y", y)
    if a.size != b.size:
        raise ValueError(f"x and y must have the same length, got {a.size} and {b.size}")
    if a.size < 3:
        raise ValueError(f"correlation needs at least 3 pairs, got {a.size}")
    if method == "spearman":
        res = scipy_stats().spearmanr(a, b)
    elif method == "pearson":
        res = scipy_stats().pearsonr(a, b)
    else:
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    return Correlation(float(res.statistic), float(res.pvalue), int(a.size), method)
