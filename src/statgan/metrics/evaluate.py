"""``statgan eval``: sample-quality metrics for a run (or for two image sets), written as JSON.

Flow: a *source* (a trained run's generator, a dataset split, an image folder or an .npz file)
yields batches of images in [-1, 1]; one pass through a feature extractor accumulates what the
requested metrics need — streaming float64 statistics (FID), the features themselves (KID, PRDC)
and class logits (IS). Reference statistics are cached by content (extractor id, preprocessing,
dataset, split, N) so a second evaluation against the same data skips that pass for FID.

Every result names its extractor: "FID (lenet-1a2b3c4d)" is a Fréchet distance in the feature
space of statgan's MNIST classifier and is **not** comparable with Inception FID.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import __version__
from ..errors import ConfigError, StatganError
from ..registry import Registry

Batches = Iterable[torch.Tensor]


# ---- metrics registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """A metric: ``compute(reference, generated) -> {key: value}`` and what it needs of each side."""

    name: str
    label: str
    needs: FrozenSet[str]  # subset of {"stats", "features", "logits"}
    compute: Callable[["FeatureSet", "FeatureSet"], Dict[str, float]]
    needs_reference: bool = True


METRICS = Registry("metric")


def _metric(name: str, label: str, needs: Sequence[str], needs_reference: bool = True):
    def deco(fn: Callable[["FeatureSet", "FeatureSet"], Dict[str, float]]):
        spec = MetricSpec(name, label, frozenset(needs), fn, needs_reference)
        METRICS.register(name)(lambda: spec)
        return fn

    return deco


@_metric("fid", "FID", ["stats"])
def _fid(ref: "FeatureSet", gen: "FeatureSet") -> Dict[str, float]:
    from .frechet import frechet_distance

    return {"fid": frechet_distance(ref.stats.mean, ref.stats.cov, gen.stats.mean, gen.stats.cov, n=min(ref.n, gen.n))}


@_metric("kid", "KID", ["features"])
def _kid(ref: "FeatureSet", gen: "FeatureSet") -> Dict[str, float]:
    from .kid import kid

    mean, std = kid(ref.features, gen.features)
    return {"kid": mean, "kid_std": std}


@_metric("prdc", "PRDC", ["features"])
def _prdc(ref: "FeatureSet", gen: "FeatureSet") -> Dict[str, float]:
    from .prdc import prdc

    # improved precision/recall at k = 3 (Kynkäänniemi et al. 2019), density/coverage at k = 5 (Naeem et al. 2020)
    return {k: float(v) for k, v in prdc(ref.features, gen.features, k=5, pr_k=3).items()}


@_metric("is", "IS", ["logits"], needs_reference=False)
def _is(ref: "FeatureSet", gen: "FeatureSet") -> Dict[str, float]:
    from .inception_score import inception_score

    mean, std = inception_score(gen.logits)
    return {"is": mean, "is_std": std}


def metric_specs(names: Sequence[str]) -> List[MetricSpec]:
    return [METRICS[n]() for n in names]


# ---- feature extraction over a source --------------------------------------------------------------
@dataclass
class FeatureSet:
    """What one pass over a source produced."""

    source: str
    n: int
    stats: Any = None  # FeatureStats
    features: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    info: Dict[str, Any] = field(default_factory=dict)


def extract(source: str, batches: Batches, extractor: Any, needs: FrozenSet[str]) -> FeatureSet:
    """One pass: streaming float64 stats always; features / logits kept only when needed."""
    from .stats import FeatureStats

    if "logits" in needs and not extractor.has_logits:
        raise ConfigError(f"extractor {extractor.name!r} has no class logits, so the Inception score cannot be computed with it")
    stats = FeatureStats()
    feats: List[torch.Tensor] = []
    logits: List[torch.Tensor] = []
    n = 0
    for batch in batches:
        if "logits" in needs:
            f, lg = extractor.extract(batch, logits=True)
            logits.append(lg)
        else:
            f = extractor.extract(batch)
        stats.update(f)
        if "features" in needs:
            feats.append(f)
        n += f.shape[0]
    if n < 2:
        raise StatganError(f"{source}: need at least 2 images to compute statistics, got {n}")
    return FeatureSet(
        source,
        n,
        stats=stats,
        features=torch.cat(feats) if feats else None,
        logits=torch.cat(logits) if logits else None,
    )


def tensor_batches(data: Any, n: Optional[int], batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of the first ``n`` items (all when None) of a tensor or a Dataset."""
    total = len(data) if n is None else min(n, len(data))
    if torch.is_tensor(data):
        for i in range(0, total, batch_size):
            yield data[i : min(i + batch_size, total)]
        return
    # a private generator: creating a DataLoader iterator otherwise draws from the global RNG,
    # which would perturb a training run that evaluates FID every k steps
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(total)), batch_size=batch_size,
                                         generator=torch.Generator().manual_seed(0))
    yield from loader


def generator_batches(G: torch.nn.Module, latent_dim: int, n: int, batch_size: int, seed: int,
                      rows: Optional[Tuple[int, int]] = None) -> Iterator[torch.Tensor]:
    """``n`` samples of G in eval mode from a private latent stream (never the global RNG).

    With ``rows=(start, stop)`` only samples ``start … stop-1`` are generated (one rank's share);
    the latents are drawn exactly as for all ``n``, so sample i is the same either way.
    """
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    lo, hi = rows if rows is not None else (0, n)
    with torch.inference_mode():
        for i in range(0, min(n, hi), batch_size):
            z = torch.randn(min(batch_size, n - i), latent_dim, generator=gen)
            a, b = max(lo - i, 0), min(hi - i, z.shape[0])
            if a < b:
                yield G(z[a:b].to(device)).float()


# ---- sources ---------------------------------------------------------------------------------------
def _image_folder(path: Path) -> Any:
    from PIL import Image

    from ..data.images import ImageFiles, _list_images

    files = _list_images(path)
    if not files:
        raise StatganError(f"no images found in folder {str(path)!r}")
    with Image.open(files[0]) as im:
        size = min(im.size)
        channels = 1 if im.mode in ("L", "LA", "I", "I;16", "1") else 3
    return ImageFiles(files, name=str(path), image_size=size, channels=channels)


def _npz_images(path: Path) -> torch.Tensor:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise StatganError(f"{str(path)!r}: expected an array named 'images' (or a single array), found {keys}")
            arr = z[key]
    except (OSError, ValueError) as exc:
        raise StatganError(f"cannot read {str(path)!r} as .npz: {exc}") from None
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise StatganError(f"{str(path)!r}: expected images shaped (N,H,W), (N,H,W,C) or (N,C,H,W), got {arr.shape}")
    if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr)).float().div(127.5).sub(1.0)
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if x.numel() and (x.min() < -1.001 or x.max() > 1.001):
        raise StatganError(f"{str(path)!r}: float images must be in [-1, 1] (found [{x.min():.3g}, {x.max():.3g}]); store uint8 0–255 instead")
    return x


def load_image_source(path: Union[str, Path]) -> Any:
    """A folder of images, an .npz file, or ``data:NAME:SPLIT`` (a registered dataset's split, e.g.
    ``data:mnist:test``) as a tensor / Dataset in [-1, 1]."""
    text = str(path)
    if text.startswith("data:"):
        from .. import data as datasets

        parts = text.split(":")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise StatganError(f"{text!r}: expected data:NAME:SPLIT, e.g. data:mnist5k:test")
        return datasets.load(parts[1], parts[2])
    p = Path(path)
    if p.is_dir():
        return _image_folder(p)
    if p.suffix == ".npz" and p.is_file():
        return _npz_images(p)
    raise StatganError(f"{str(p)!r} is neither a run directory, an image folder, an .npz file nor data:NAME:SPLIT")


def default_extractor(data_shape: Sequence[int]) -> str:
    """lenet for one-channel images, inception for RGB, raw pixels for vectors (toy data)."""
    if len(data_shape) == 3:
        return "lenet" if data_shape[0] == 1 else "inception"
    return "pixels"


def _build_extractor(name: str, data_shape: Sequence[int], device: str) -> Any:
    from .features import get_extractor

    if name == "pixels":
        return get_extractor("pixels", device=device, shape=tuple(data_shape))
    return get_extractor(name, device=device)


# ---- the whole evaluation --------------------------------------------------------------------------
def _reference(
    cfg_data: Dict[str, Any], split: str, extractor: Any, specs: List[MetricSpec], batch_size: int, cache: bool
) -> FeatureSet:
    from .. import data as datasets
    from .stats import cached_stats

    name, root = cfg_data["name"], cfg_data.get("root")
    options = {k: v for k, v in cfg_data.items() if k not in ("name", "root")}
    needs = frozenset().union(*(s.needs for s in specs if s.needs_reference)) - {"logits"}
    data = datasets.load(name, split, root, **options)
    source = f"{name}:{split}"
    key = {
        "extractor": extractor.id,
        "preprocessing": extractor.preprocessing,
        "dataset": name,
        "split": split,
        "root": str(Path(root).expanduser().resolve()) if root else None,
        "options": options,
        "n": len(data),
    }
    if needs <= {"stats"}:
        holder: Dict[str, FeatureSet] = {}

        def compute():
            holder["fs"] = extract(source, tensor_batches(data, None, batch_size), extractor, frozenset({"stats"}))
            return holder["fs"].stats

        stats = cached_stats(key, compute, cache=cache)
        return FeatureSet(source, stats.n, stats=stats, info={"cached": "fs" not in holder})
    fs = extract(source, tensor_batches(data, None, batch_size), extractor, needs)
    return fs


def evaluate_run(
    run_dir: Union[str, Path],
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
) -> Dict[str, Any]:
    """Evaluate a run's generator against its own dataset; writes ``RUN_DIR/eval/<...>.json``."""
    from ..rundir.files import atomic_write_bytes
    from ..rundir.run import load_generator

    if n < 2:
        raise ConfigError(f"--n must be at least 2, got {n}")
    t0 = time.perf_counter()
    specs = metric_specs(metrics)
    G, meta = load_generator(Path(run_dir), checkpoint, ema=ema, device=device)
    data_shape = tuple(meta["data_shape"])
    ext = _build_extractor(extractor or default_extractor(data_shape), data_shape, device)
    if any(s.needs_reference for s in specs):
        ref = _reference(meta["config"]["data"], reference, ext, specs, batch_size, cache)
    else:
        ref = FeatureSet("none", 0)
    gen_needs = frozenset().union(*(s.needs for s in specs))
    gen = extract(f"{run_dir} (step {meta['step']})", generator_batches(G, int(meta["latent_dim"]), n, batch_size, seed), ext, gen_needs)
    values = _compute(specs, ref, gen)
    result = _result(specs, values, ext, ref, gen, time.perf_counter() - t0)
    result["generated"].update({"run": str(run_dir), "step": meta["step"], "weights": "EMA" if (ema and meta.get("ema")) else "raw", "seed": seed})
    result["reference"]["split"] = reference
    if write:
        # every setting that changes the numbers is in the name, so no evaluation overwrites another
        ref_tag = reference if any(s.needs_reference for s in specs) else "noref"
        tag = "-".join(s.name for s in specs)
        weights = result["generated"]["weights"].lower()
        out = Path(run_dir) / "eval" / f"{ext.id}-{tag}-{ref_tag}-n{n}-seed{seed}-{weights}-step{meta['step']:06d}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
        result["path"] = str(out)
    return result


def evaluate_paths(
    reference: Union[str, Path],
    generated: Union[str, Path],
    metrics: Sequence[str] = ("fid", "kid", "prdc"),
    extractor: Optional[str] = None,
    batch_size: int = 500,
    device: str = "cpu",
    out: Optional[Union[str, Path]] = None,
) -> Dict[str, Any]:
    """Evaluate two image sets (folders or .npz files) against each other."""
    t0 = time.perf_counter()
    specs = metric_specs(metrics)
    a, b = load_image_source(reference), load_image_source(generated)
    shape_a = tuple(a.shape[1:]) if torch.is_tensor(a) else tuple(a.shape)
    ext = _build_extractor(extractor or default_extractor(shape_a), shape_a, device)
    needs = frozenset().union(*(s.needs for s in specs))
    ref = extract(str(reference), tensor_batches(a, None, batch_size), ext, needs - {"logits"})
    gen = extract(str(generated), tensor_batches(b, None, batch_size), ext, needs)
    result = _result(specs, _compute(specs, ref, gen), ext, ref, gen, time.perf_counter() - t0)
    if out is not None:
        from ..rundir.files import atomic_write_bytes

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(out), (json.dumps(result, indent=1) + "\n").encode())
        result["path"] = str(out)
    return result


def _compute(specs: List[MetricSpec], ref: FeatureSet, gen: FeatureSet) -> Dict[str, float]:
    values: Dict[str, float] = {}
    for spec in specs:
        values.update({k: float(v) for k, v in spec.compute(ref, gen).items()})
    return values


_LABELS = {"fid": "FID", "kid": "KID", "kid_std": "KID std", "is": "IS", "is_std": "IS std",
           "precision": "precision (k=3)", "recall": "recall (k=3)", "density": "density (k=5)", "coverage": "coverage (k=5)"}


def _result(specs: List[MetricSpec], values: Dict[str, float], ext: Any, ref: FeatureSet, gen: FeatureSet, seconds: float) -> Dict[str, Any]:
    labels = {k: f"{_LABELS.get(k, k)} ({ext.id})" for k in values}
    return {
        "metrics": values,
        "labels": labels,
        "extractor": {"name": ext.name, "id": ext.id, "dim": ext.dim, "preprocessing": ext.preprocessing,
                      "weights_sha256": getattr(ext, "sha256", None)},
        "reference": {"source": ref.source, "n": ref.n, **ref.info},
        "generated": {"source": gen.source, "n": gen.n},
        "versions": {"statgan": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(seconds, 3),
    }


def format_table(result: Dict[str, Any]) -> str:
    rows = [(result["labels"][k], v) for k, v in result["metrics"].items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
    lines += [f"{label:<{width}}  {value:.6g}" for label, value in rows]
    lines.append(f"reference: {result['reference']['source']} (n={result['reference']['n']}), "
                 f"generated: {result['generated']['source']} (n={result['generated']['n']}), {result['seconds']:.1f} s")
    return "\n".join(lines)
