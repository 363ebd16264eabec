"""FID during training: the trainer calls :class:`FIDMonitor` every ``train.eval_every`` steps.

Reference statistics come from the run's own dataset (cached by content, see
:func:`statgan.metrics.stats.cached_stats`); generated statistics from ``train.eval_n`` samples of
the sampling network (EMA when enabled) drawn from a fixed private latent stream, so successive
evaluations differ only through the weights and the training run's own randomness is untouched.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from .evaluate import _build_extractor, _reference, default_extractor, extract, generator_batches, metric_specs


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
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.extractor = _build_extractor(extractor or default_extractor(data_shape), data_shape, str(device))
        self.reference = _reference(data_cfg, reference, self.extractor, metric_specs(["fid"]), batch_size, cache=True)
        self.id = self.extractor.id

    def __call__(self, G: torch.nn.Module, latent_dim: int) -> float:
        from .frechet import frechet_distance

        was_training = G.training
        G.eval()
        try:
            gen = extract("generated", generator_batches(G, latent_dim, self.n, self.batch_size, self.seed),
                          self.extractor, frozenset({"stats"}))
        finally:
            G.train(was_training)
        ref = self.reference.stats
        return float(frechet_distance(ref.mean, ref.cov, gen.stats.mean, gen.stats.cov, n=min(self.n, ref.n)))
