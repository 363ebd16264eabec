"""FID during training: the trainer calls :class:`FIDMonitor` every ``train.eval_every`` steps.

Reference statistics come from the run's own dataset (cached by content, see
:func:`statgan.metrics.stats.cached_stats`); generated statistics from ``train.eval_n`` samples of
the sampling network (EMA when enabled) drawn from a fixed private latent stream, so successive
evaluations differ only through the weights and the training run's own randomness is untouched.

Under torchrun the generated samples are split over the ranks (rank r generates and embeds its
contiguous share of the ``eval_n`` samples, :func:`generated_features`), the features are gathered
in sample order, and rank 0 — the only rank that holds the reference statistics — computes the FID
and hands the value to every rank.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from ..runtime import distributed
from .frechet import frechet_distance_from_stats
from .sources import build_extractor, default_extractor, extract, generator_batches, reference_features
from .stats import FeatureStats


class FIDMonitor:
    def __init__(
        self,
        data_cfg: Dict[str, Any],
        data_shape: Sequence[int],
        n: int = 2000,
        extractor: Optional[str] = None,
        reference: str = "train",
        device: str = "cpu",
        batch_size: int = 500,
        seed: int = 12345,
        with_reference: bool = True,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.extractor = build_extractor(extractor or default_extractor(data_shape), data_shape, str(device))
        # under torchrun only rank 0 needs (and computes, and caches) the reference statistics
        self.reference = (reference_features(data_cfg, reference, self.extractor, frozenset({"stats"}), batch_size, cache=True)
                          if with_reference else None)

    @property
    def id(self) -> str:
        return self.extractor.id

    def __call__(self, G: torch.nn.Module, latent_dim: int) -> float:
        was_training = G.training
        G.eval()
        try:
            if distributed.world_size() == 1:
                stats = extract("generated", generator_batches(G, latent_dim, self.n, self.batch_size, self.seed),
                                self.extractor, frozenset({"stats"})).stats
            else:
                stats = FeatureStats()
                stats.update(generated_features(G, latent_dim, self.n, self.batch_size, self.seed, self.extractor))
        finally:
            G.train(was_training)
        fid = None
        if self.reference is not None:
            fid = frechet_distance_from_stats(self.reference.stats, stats)
        return float(distributed.broadcast_object(fid))


def generated_features(G: torch.nn.Module, latent_dim: int, n: int, batch_size: int, seed: int, extractor: Any) -> torch.Tensor:
    """(n, dim) features of G's first ``n`` samples from the latent stream ``seed``, in sample order.

    Under torchrun each rank generates and embeds only its contiguous share and the shares are
    gathered on every rank, so the result equals one process extracting all ``n`` (up to the float
    rounding of differently sized batches); in a single process it is that extraction.
    """
    rows = distributed.shard_range(n)
    local = extractor.extract(generator_batches(G, latent_dim, n, batch_size, seed, rows=rows), batch_size=batch_size)
    return distributed.all_gather_cat(local)
