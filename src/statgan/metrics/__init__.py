"""Sample-quality metrics: FID, KID, Inception score, precision/recall and density/coverage.

Features come from a registered extractor (:mod:`statgan.metrics.features`: ``lenet`` shipped with
the package, ``inception`` through torch-fidelity, ``pixels``); statistics are streamed in float64
and cached by content (:mod:`statgan.metrics.stats`); ``statgan eval`` is
:func:`statgan.metrics.evaluate.evaluate_run` / :func:`~statgan.metrics.evaluate.evaluate_paths`.
"""

# Imported eagerly so that ``statgan.metrics.kid`` etc. are the functions, not their submodules.
from .frechet import frechet_distance, frechet_distance_from_stats
from .inception_score import inception_score
from .kid import kid
from .prdc import prdc
from .stats import FeatureStats, cache_dir, cached_stats
from .features import EXTRACTORS, FeatureExtractor, get_extractor
from .evaluate import METRICS, evaluate_paths, evaluate_run, format_table
from .result import EvaluationResult

__all__ = [
    "EXTRACTORS", "EvaluationResult", "FeatureExtractor", "FeatureStats", "METRICS", "cache_dir", "cached_stats",
    "evaluate_paths", "evaluate_run", "format_table", "frechet_distance", "frechet_distance_from_stats",
    "get_extractor", "inception_score", "kid", "prdc",
]
