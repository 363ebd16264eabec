r"""Inception Score (Salimans, Goodfellow, Zaremba, Cheung, Radford & Chen 2016, "Improved Techniques
for Training GANs", NeurIPS).

.. math:: \mathrm{IS} = \exp\Big( \mathbb{E}_x\, \mathrm{KL}\big(p(y\mid x)\,\|\,p(y)\big) \Big),
          \qquad p(y) = \mathbb{E}_x\, p(y \mid x),

from a classifier's logits. As in the original code and torch-fidelity, the N samples are cut into
``splits`` contiguous chunks (chunk i = rows ``i*N//splits`` to ``(i+1)*N//splits``), the score is
computed within each chunk (its own marginal p(y)), and the mean and population std (``ddof = 0``) over
chunks are returned. IS lies in [1, C] for C classes: 1 when every prediction equals the marginal,
C when predictions are confident and the classes evenly used.

Numerics: everything in float64; :math:`\log p(y|x)` by ``log_softmax`` and :math:`\log p(y)` by a
``logsumexp`` over the chunk of :math:`\log p(y|x)` (minus log n), so confident predictions whose
probabilities underflow to 0 never produce ``log 0``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Tuple

import numpy as np
import torch

from ..errors import ConfigError
from .stats import as_numpy

__all__ = ["inception_score"]


def inception_score(logits: Any, splits: int = 10) -> Tuple[float, float]:
    """(mean, std) of the Inception Score over ``splits`` contiguous chunks of ``logits`` (N, C).

    ``logits`` are unnormalised class scores (log-probabilities work too: log_softmax ignores a
    per-row constant). Passing probabilities instead of logits is a common mistake and gives a
    score close to 1; it triggers a warning.
    """
    arr = as_numpy(logits, "inception_score(logits)")
    n, c = arr.shape
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ConfigError(f"inception_score: splits must be a positive integer, got {splits!r}")
    if n < splits:
        raise ConfigError(f"inception_score: {n} samples cannot be cut into splits = {splits} non-empty chunks")
    if c < 2:
        raise ConfigError(f"inception_score: expected logits over at least 2 classes, got shape {arr.shape}")
    if c > 2 and arr.min() >= 0 and arr.max() <= 1 and np.allclose(arr.sum(1), 1.0, atol=1e-3):
        warnings.warn(
            "inception_score: the input rows look like probabilities (non-negative, summing to 1); "
            "pass logits or log-probabilities",
            RuntimeWarning,
            stacklevel=2,
        )
    log_p = torch.log_softmax(torch.from_numpy(arr).to(torch.float64), dim=1)
    scores = []
    for i in range(int(splits)):
        lp = log_p[i * n // splits : (i + 1) * n // splits]
        log_marg = torch.logsumexp(lp, dim=0) - math.log(lp.shape[0])  # log p(y) of this chunk
        kl = (lp.exp() * (lp - log_marg)).sum(1)  # KL(p(y|x) || p(y)) per sample
        scores.append(math.exp(float(kl.mean())))
    s = np.asarray(scores)
    return float(s.mean()), float(s.std())
