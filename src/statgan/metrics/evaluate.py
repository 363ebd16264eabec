"""``statgan eval``: sample-quality metrics for a run (or for two image sets), written as JSON.

Flow: a *source* (a trained run's generator, a dataset split, an image folder or an .npz file)
yields batches of images in [-1, 1]; one pass through a feature extractor accumulates what the
requested metrics need — streaming float64 statistics (FID), the features themselves (KID, PRDC)
and class logits (IS). Reference statistics are cached by content (extractor id, preprocessing,
dataset, split, N) so a second evaluation against the same data skips that pass for FID.
``max_reference`` caps the reference set at a seeded random subset (:func:`~statgan.metrics.sources.reference_subset`;
the cap and the subset are part of the cache key and of the result), and ``progress`` shows a tqdm
bar with an ETA on stderr for each feature pass (off by default; ``statgan eval`` turns it on).

Every result names its extractor: "FID (lenet-1a2b3c4d)" is a Fréchet distance in the feature
space of statgan's MNIST classifier and is **not** comparable with Inception FID.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import __version__
from ..errors import ConfigError, StatganError
from ..registry import Registry
from ..generator_source import GeneratorOptions, LoadedGenerator, load_generator_source
from ..rundir.files import atomic_write_json
from ..runtime.durations import human_duration
from ..runtime.seeding import seeded_generator
from .frechet import frechet_distance
from .inception_score import inception_score
from .kid import kid
from .modes import MIN_SAMPLES as MODES_MIN_SAMPLES, modes_from_logits
from .prdc import prdc
from .result import EvaluationResult, ExtractorInfo, GeneratedInfo, ReferenceInfo
from .sources import (
    FeatureSet,
    build_extractor,
    check_image_shape,
    check_needs,
    check_max_reference,
    default_extractor,
    extract,
    generator_batches,
    load_image_source,
    reference_data,
    reference_features,
    reference_subset,
    tensor_batches,
)


# ---- metrics registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """A metric: ``compute(reference, generated) -> {key: value}`` and what it needs of each side."""

    name: str
    label: str
    needs: FrozenSet[str]  # subset of {"stats", "features", "logits"}
    compute: Callable[[FeatureSet, FeatureSet], Dict[str, float]]
    needs_reference: bool = True
    extractor: Optional[str] = None  # the extractor the metric is defined with, used when none is given
    min_reference: int = 2  # the fewest reference / generated samples the metric is defined for
    min_generated: int = 2


METRICS = Registry("metric")


def _metric(name: str, label: str, needs: Sequence[str], needs_reference: bool = True, extractor: Optional[str] = None,
            min_reference: int = 2, min_generated: int = 2):
    def deco(fn: Callable[[FeatureSet, FeatureSet], Dict[str, float]]):
        spec = MetricSpec(name, label, frozenset(needs), fn, needs_reference, extractor, min_reference, min_generated)
        METRICS.register(name)(lambda: spec)
        return fn

    return deco


@_metric("fid", "FID", ["stats"])
def _fid(ref: FeatureSet, gen: FeatureSet) -> Dict[str, float]:
    return {"fid": frechet_distance(ref.stats.mean, ref.stats.cov, gen.stats.mean, gen.stats.cov, n=min(ref.n, gen.n))}


@_metric("kid", "KID", ["features"])
def _kid(ref: FeatureSet, gen: FeatureSet) -> Dict[str, float]:
    mean, std = kid(ref.features, gen.features)
    return {"kid": mean, "kid_std": std}


#: neighbours: improved precision/recall at k = 3 (Kynkäänniemi et al. 2019), density/coverage at k = 5 (Naeem et al. 2020)
PRDC_K, PR_K = 5, 3


@_metric("prdc", "PRDC", ["features"], min_reference=PRDC_K + 1, min_generated=PR_K + 1)
def _prdc(ref: FeatureSet, gen: FeatureSet) -> Dict[str, float]:
    return {k: float(v) for k, v in prdc(ref.features, gen.features, k=PRDC_K, pr_k=PR_K).items()}


#: the Inception score's splits (Salimans et al. 2016)
IS_SPLITS = 10


@_metric("is", "IS", ["logits"], needs_reference=False, min_generated=IS_SPLITS)
def _is(ref: FeatureSet, gen: FeatureSet) -> Dict[str, float]:
    mean, std = inception_score(gen.logits, splits=IS_SPLITS)
    return {"is": mean, "is_std": std}


#: a sample counts as recognisable when the classifier gives its most likely class at least this probability
RECOGNISABLE_P = 0.9


@_metric("recognisable", "recognisable", ["logits"], needs_reference=False, min_generated=1)
def _recognisable(ref: FeatureSet, gen: FeatureSet) -> Dict[str, float]:
    r"""The fraction of samples the extractor's classifier recognises: :math:`\hat p = \frac1n \sum_i
    [\max_k \operatorname{softmax}(\ell_i)_k \ge 0.9]`, with its binomial standard error
    :math:`\sqrt{\hat p (1 - \hat p) / n}`. A count of the malformed digits of a sample grid that a
    reader can take from thousands of samples instead of 64 (mnist5k's own images: 0.986 with the
    shipped LeNet). It is a classifier's confidence, not a judgement of shape: a classifier can be
    confidently wrong on an image unlike any digit, so it complements FID rather than replacing it."""
    top = torch.softmax(gen.logits.double(), dim=1).max(dim=1).values
    p = float((top >= RECOGNISABLE_P).double().mean())
    return {"recognisable": p, "recognisable_se": math.sqrt(p * (1.0 - p) / gen.n)}


@_metric("modes", "modes", ["logits"], needs_reference=False, extractor="stacked-lenet", min_generated=MODES_MIN_SAMPLES)
def _modes(ref: FeatureSet, gen: FeatureSet) -> Dict[str, float]:
    # StackedMNIST mode coverage (metrics/modes.py): at least 26,000 samples, else a one-line error
    return modes_from_logits(gen.logits)


def metric_specs(names: Sequence[str]) -> List[MetricSpec]:
    return [METRICS[n]() for n in names]


def check_sample_counts(specs: Sequence[MetricSpec], n_reference: Optional[int], n_generated: int) -> None:
    """Before any work: one ConfigError listing every requested metric the sample counts cannot
    support (``n_reference`` None: the reference side is not known yet and not checked)."""
    short = []
    for spec in specs:
        if spec.needs_reference and n_reference is not None and n_reference < spec.min_reference:
            short.append(f"{spec.name} needs at least {spec.min_reference} reference samples, got {n_reference}")
        if n_generated < spec.min_generated:
            short.append(f"{spec.name} needs at least {spec.min_generated} generated samples, got {n_generated}")
    if short:
        raise ConfigError("; ".join(short) + "; drop those metrics (--metrics) or use more samples")


def _extractor_name(given: Optional[str], specs: List[MetricSpec], data_shape: Sequence[int]) -> str:
    """The extractor asked for, else the one a requested metric is defined with, else the default."""
    return given or next((s.extractor for s in specs if s.extractor), None) or default_extractor(data_shape)


# ---- the whole evaluation --------------------------------------------------------------------------
#: ``reference`` values that name a split of a run's own dataset (anything else is an image set)
RUN_SPLITS = ("train", "test")


def evaluate_run(
    run_dir: Union[str, Path, LoadedGenerator],
    metrics: Sequence[str] = ("fid", "kid", "prdc"),
    n: int = 10_000,
    extractor: Optional[str] = None,
    reference: str = "train",
    seed: int = 0,
    batch_size: int = 500,
    device: str = "cpu",
    ema: bool = True,
    checkpoint: Optional[Union[str, Path]] = None,
    cache: bool = True,
    write: bool = True,
    max_reference: Optional[int] = None,
    progress: bool = False,
    out: Optional[Union[str, Path]] = None,
    options: Optional[GeneratorOptions] = None,
    log: Optional[Callable[[str], None]] = None,
) -> EvaluationResult:
    """Evaluate a generator against reference images; writes ``RUN_DIR/eval/<...>.json``.

    ``run_dir``: any GENERATOR (:mod:`statgan.generator_source`: a run directory, ``FILE.py:NAME``,
    a TorchScript file; or one already loaded), read with ``options``. ``reference``: ``train`` or
    ``test`` (a run's own dataset split), or any image set (a folder, an ``.npz``,
    ``data:NAME:SPLIT``), which a generator from elsewhere needs. The JSON goes to ``out`` if
    given, else to the run's ``eval/`` folder (another generator: beside its file, in ``NAME-eval/``).

    ``max_reference``: use at most this many reference images (an int >= 2; a seeded random
    subset, the same for every run and seed; all of them when the split is not larger, which the
    result's ``reference.note`` says). ``progress``: tqdm bars with an ETA on stderr while features
    of the generated images and of the reference split (when its statistics are not cached) are
    extracted. ``log``: where to say, before the feature passes start, what they will cost on this
    device (a batch of :data:`PROJECTION_BATCH` timed; ``statgan eval`` prints it).
    """
    if n < 2:
        raise ConfigError(f"--n must be at least 2, got {n}")
    max_reference = check_max_reference(max_reference)
    t0 = time.perf_counter()
    specs = metric_specs(metrics)
    check_sample_counts(specs, None, n)  # the generated side now, the reference side once it is loaded
    if isinstance(run_dir, LoadedGenerator):
        loaded = run_dir
    else:
        o = options or GeneratorOptions()
        loaded = load_generator_source(run_dir, dataclasses.replace(
            o, checkpoint=str(checkpoint) if checkpoint else None, ema=ema, device=device))
    ident = loaded.identity
    data_shape = tuple(ident.data_shape)
    if any(s.needs_reference for s in specs):
        ext, ref = _reference_side(loaded, specs, extractor, reference, n, batch_size, cache, max_reference, progress,
                                   log)
    else:
        ext = build_extractor(_extractor_name(extractor, specs, data_shape), data_shape, device)
        check_needs(ext, frozenset().union(*(s.needs for s in specs)))
        _project_features(ext, loaded, n, 0, log)
        ref = FeatureSet("none", 0, info={"max_reference": max_reference})
    gen_needs = frozenset().union(*(s.needs for s in specs))
    where = f"{ident.spec} (step {ident.step})" if ident.kind == "run" else ident.spec
    gen = extract(where, generator_batches(loaded.module, loaded.latent_dim, n, batch_size, seed), ext, gen_needs,
                  total=n, progress=progress, desc="eval: generated features")
    values, failures = _compute(specs, ref, gen)
    result = _result(values, failures, ext, ref, gen, time.perf_counter() - t0)
    result.generated = dataclasses.replace(result.generated, run=ident.spec, step=ident.step, weights=ident.weights,
                                           seed=seed, generator=ident)
    result.reference.split = reference
    if write:
        path = Path(out) if out is not None else loaded.output_dir("eval") / _result_name(ext.id, specs, reference, n, seed,
                                                                                         max_reference, ident)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, result.to_dict())
        result.path = str(path)
    return result


def _reference_side(loaded: LoadedGenerator, specs: List["MetricSpec"], extractor: Optional[str], reference: str,
                    n: int, batch_size: int, cache: bool, max_reference: Optional[int],
                    progress: bool, log: Optional[Callable[[str], None]] = None) -> Tuple[Any, FeatureSet]:
    """The extractor and the reference features: a run's own split (``train``/``test``, statistics
    cached), a registered dataset's split (``data:NAME:SPLIT``, cached alike), or an image set."""
    data_shape = tuple(loaded.data_shape)
    if reference in RUN_SPLITS:
        if loaded.meta is None:
            raise ConfigError(f"--reference {reference}: {loaded.identity.spec} is not a statgan run, so it has no "
                              f"{reference} split; give --reference SET (a folder, an .npz file or data:NAME:SPLIT)")
        cfg_data, split = loaded.meta.data_record, reference
    elif str(reference).startswith("data:") and len(str(reference).split(":")) == 3:
        _, name, split = str(reference).split(":")
        cfg_data = {"name": name}
    else:
        cfg_data, split = None, reference
    ref_data = reference_data(cfg_data, split) if cfg_data is not None else load_image_source(reference)
    check_image_shape(ref_data, data_shape, f"--reference {reference}")
    n_ref = len(ref_data) if max_reference is None else min(len(ref_data), max_reference)
    check_sample_counts(specs, n_ref, n)
    ext = build_extractor(_extractor_name(extractor, specs, data_shape), data_shape, str(loaded.device))
    check_needs(ext, frozenset().union(*(s.needs for s in specs)))  # a missing capability before any pass
    _project_features(ext, loaded, n, n_ref, log)
    ref_needs = frozenset().union(*(s.needs for s in specs if s.needs_reference))
    if cfg_data is not None:
        return ext, reference_features(cfg_data, split, ext, ref_needs, batch_size, cache, data=ref_data,
                                       max_reference=max_reference, progress=progress)
    data, subset_info = reference_subset(ref_data, max_reference)
    ref = extract(str(reference), tensor_batches(data, None, batch_size), ext, ref_needs - {"logits"},
                  total=len(data), progress=progress, desc="eval: reference features")
    ref.info.update(subset_info)
    return ext, ref


#: images generated and passed through the extractor to project eval's cost
PROJECTION_BATCH = 8
#: a projection below this many seconds is not worth a line (LeNet on MNIST: well under a second)
PROJECTION_MIN_SECONDS = 5.0


def _project_features(ext: Any, loaded: LoadedGenerator, n: int, n_ref: int,
                      log: Optional[Callable[[str], None]]) -> None:
    """Say what the feature passes will cost on this device: a batch generated and extracted once to
    warm up (weights onto the device, kernels chosen), then timed; the reference side is an upper
    bound, since cached statistics skip it."""
    if log is None:
        return
    z = torch.randn(PROJECTION_BATCH, loaded.latent_dim, generator=seeded_generator(0, "eval:projection"))
    z = z.to(loaded.device)
    with torch.no_grad():
        ext.extract(loaded.module(z).float())
        t0 = time.perf_counter()
        x = loaded.module(z).float()
        t1 = time.perf_counter()
        ext.extract(x)
        t2 = time.perf_counter()
    per_gen, per_feat = (t1 - t0) / PROJECTION_BATCH, (t2 - t1) / PROJECTION_BATCH
    total = n * (per_gen + per_feat) + n_ref * per_feat
    if total < PROJECTION_MIN_SECONDS:
        return
    ref = f" + up to {n_ref:,} reference images (none when their statistics are cached)" if n_ref else ""
    log(f"eval: {ext.id} features of {n:,} generated{ref}: projected ~{human_duration(total)} on {loaded.device} "
        f"({per_feat * 1e3:.3g} ms an image; generating {per_gen * 1e3:.3g} ms)")


def _result_name(ext_id: str, specs: List["MetricSpec"], reference: str, n: int, seed: int,
                 max_reference: Optional[int], ident: Any) -> str:
    """Every setting that changes the numbers is in the name, so no evaluation overwrites another."""
    ref_tag = reference if any(s.needs_reference for s in specs) else "noref"
    ref_tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in ref_tag)  # a path or data:NAME:SPLIT
    if max_reference is not None and ref_tag != "noref":
        ref_tag += f"-max{max_reference}"
    tag = "-".join(s.name for s in specs)
    if ident.kind == "run":
        return f"{ext_id}-{tag}-{ref_tag}-n{n}-seed{seed}-{str(ident.weights).lower()}-step{ident.step:06d}.json"
    return f"{ext_id}-{tag}-{ref_tag}-n{n}-seed{seed}-{ident.weights_sha256[:12]}.json"


def evaluate_paths(
    reference: Union[str, Path],
    generated: Union[str, Path],
    metrics: Sequence[str] = ("fid", "kid", "prdc"),
    extractor: Optional[str] = None,
    batch_size: int = 500,
    device: str = "cpu",
    out: Optional[Union[str, Path]] = None,
    max_reference: Optional[int] = None,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate two image sets (folders, .npz files or ``data:NAME:SPLIT``) against each other.

    ``max_reference`` caps the *reference* (first) set as in :func:`evaluate_run`; ``progress``:
    tqdm bars with an ETA on stderr for both feature passes."""
    t0 = time.perf_counter()
    specs = metric_specs(metrics)
    max_reference = check_max_reference(max_reference)
    a, b = load_image_source(reference), load_image_source(generated)
    shape_a = tuple(a.shape[1:]) if torch.is_tensor(a) else tuple(a.shape)
    a, subset_info = reference_subset(a, max_reference)
    check_sample_counts(specs, len(a), len(b))
    ext = build_extractor(_extractor_name(extractor, specs, shape_a), shape_a, device)
    needs = frozenset().union(*(s.needs for s in specs))
    of = f" ({len(a)} of {subset_info['n_available']})" if subset_info["subset"] != "all" else ""
    ref = extract(str(reference), tensor_batches(a, None, batch_size), ext, needs - {"logits"},
                  total=len(a), progress=progress, desc=f"eval: reference features{of}")
    ref.info.update(subset_info)
    gen = extract(str(generated), tensor_batches(b, None, batch_size), ext, needs,
                  total=len(b), progress=progress, desc="eval: generated features")
    result = _result(*_compute(specs, ref, gen), ext, ref, gen, time.perf_counter() - t0)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out), result.to_dict())
        result.path = str(out)
    return result


def _compute(specs: List[MetricSpec], ref: FeatureSet, gen: FeatureSet) -> Tuple[Dict[str, float], Dict[str, str]]:
    """Every metric that can be computed, and for each one that cannot, its one-line reason: a
    failing metric never throws away the others (their features took the time)."""
    values: Dict[str, float] = {}
    failures: Dict[str, str] = {}
    for spec in specs:
        try:
            values.update({k: float(v) for k, v in spec.compute(ref, gen).items()})
        except (StatganError, ValueError) as exc:
            failures[spec.name] = str(exc)
    if not values:
        raise StatganError("no metric could be computed: " + "; ".join(f"{k}: {v}" for k, v in failures.items()))
    return values, failures


_LABELS = {"fid": "FID", "kid": "KID", "kid_std": "KID std", "is": "IS", "is_std": "IS std",
           "modes": "modes covered (of 1000)", "modes_kl": "KL(modes || uniform)", "modes_n": "samples classified",
           "recognisable": "recognisable (top class p >= 0.9)", "recognisable_se": "recognisable std error",
           "precision": "precision (k=3)", "recall": "recall (k=3)", "density": "density (k=5)", "coverage": "coverage (k=5)"}


def _result(values: Dict[str, float], failures: Dict[str, str], ext: Any, ref: FeatureSet, gen: FeatureSet,
            seconds: float) -> EvaluationResult:
    labels = {k: f"{_LABELS.get(k, k)} ({ext.id})" for k in values}
    return EvaluationResult(
        metrics=values, labels=labels, failures=failures,
        extractor=ExtractorInfo(name=ext.name, id=ext.id, dim=ext.dim, preprocessing=ext.preprocessing,
                                weights_sha256=getattr(ext, "sha256", None)),
        reference=ReferenceInfo(source=ref.source, n=ref.n, **ref.info),
        generated=GeneratedInfo(source=gen.source, n=gen.n),
        versions={"statgan": __version__, "torch": torch.__version__, "numpy": np.__version__,
                  "python": platform.python_version()},
        time=time.strftime("%Y-%m-%dT%H:%M:%S"), seconds=round(seconds, 3))


def format_table(result: EvaluationResult) -> str:
    rows = [(result.labels[k], v) for k, v in result.metrics.items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
    lines += [f"{label:<{width}}  {value:.6g}" for label, value in rows]
    lines.append(f"reference: {result.reference.source} (n={result.reference.n}), "
                 f"generated: {result.generated.source} (n={result.generated.n}), {result.seconds:.1f} s")
    return "\n".join(lines)
