"""Where the images come from, and one pass of them through a feature extractor.

A *source* yields batches of images in [-1, 1]: a trained generator (:func:`generator_batches`, from
a private latent stream), a dataset split or a tensor (:func:`tensor_batches`), an image folder or an
``.npz`` file (:func:`load_image_source`). :func:`extract` makes one pass and keeps what the metrics
need — streaming float64 statistics (FID), the features themselves (KID, PRDC) and class logits (IS),
with an optional tqdm bar (images done, rate, ETA) on stderr. :func:`reference_features` does that
for a dataset split, caching the statistics by content; :func:`reference_subset` caps a reference
set at ``max_reference`` images (a seeded simple random sample, see there).

Used by ``statgan eval`` (:mod:`statgan.metrics.evaluate`) and by FID during training
(:mod:`statgan.metrics.monitor`).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .. import data as datasets
from ..data.images import ImageFiles, list_images
from ..errors import ConfigError, StatganError
from ..runtime.seeding import stream_generator
from ..runtime import seeding, threads
from ..runtime.validation import check_int
from .features import FeatureExtractor, get_extractor
from .stats import FeatureStats, cached_stats

Batches = Iterable[torch.Tensor]


# ---- one pass over a source --------------------------------------------------------------
@dataclass
class FeatureSet:
    """What one pass over a source produced."""

    source: str
    n: int
    stats: Any = None  # FeatureStats
    features: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    info: Dict[str, Any] = field(default_factory=dict)


def check_needs(extractor: FeatureExtractor, needs: FrozenSet[str]) -> None:
    """One line when the metrics need class logits that ``extractor`` does not give (before any pass)."""
    if "logits" in needs and not extractor.has_logits:
        why = f" ({extractor.no_logits_reason})" if extractor.no_logits_reason else ""
        raise ConfigError(f"extractor {extractor.name!r} has no class logits{why}, so the metrics that need them "
                          f"(is, recognisable) cannot be computed with it")


def extract(source: str, batches: Batches, extractor: FeatureExtractor, needs: FrozenSet[str], *,
            total: Optional[int] = None, progress: bool = False, desc: Optional[str] = None) -> FeatureSet:
    """One pass: streaming float64 stats always; features / logits kept only when needed.

    ``progress``: a tqdm bar on stderr (images done of ``total``, rate and ETA; labelled ``desc``,
    default the source). Off by default, so library calls, tests and the reproduction grids stay
    quiet; ``statgan eval`` turns it on. It draws whenever asked (also when stderr is not a
    terminal, e.g. captured by a test), so callers decide.
    """
    check_needs(extractor, needs)
    stats = FeatureStats()
    feats: List[torch.Tensor] = []
    logits: List[torch.Tensor] = []
    n = 0
    bar = tqdm(total=total, desc=desc or f"features: {source}", unit="img", file=sys.stderr, disable=not progress,
               leave=False, dynamic_ncols=True, mininterval=0.5)
    try:
        threads.loop_start(f"features: {source}")  # a command's thread tuner, if any, times each batch
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
            bar.update(f.shape[0])
            threads.loop_tick()
    finally:
        bar.close()
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
                                         generator=stream_generator("eval_loader"))
    yield from loader


def generator_batches(G: torch.nn.Module, latent_dim: int, n: int, batch_size: int, seed: int,
                      rows: Optional[Tuple[int, int]] = None) -> Iterator[torch.Tensor]:
    """``n`` samples of G in eval mode from a private latent stream (never the global RNG).

    With ``rows=(start, stop)`` only samples ``start … stop-1`` are generated (one rank's share);
    the latents are drawn exactly as for all ``n``, so sample i is the same either way.
    """
    device = next(G.parameters()).device
    gen = stream_generator("eval_latents", seed)
    lo, hi = rows if rows is not None else (0, n)
    with torch.inference_mode():
        for i in range(0, min(n, hi), batch_size):
            z = torch.randn(min(batch_size, n - i), latent_dim, generator=gen)
            a, b = max(lo - i, 0), min(hi - i, z.shape[0])
            if a < b:
                yield G(z[a:b].to(device)).float()


# ---- sources ---------------------------------------------------------------------------------------
def _image_folder(path: Path) -> Any:
    files = list_images(path)
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


def check_image_shape(data: Any, expected: Sequence[int], label: str) -> None:
    """One line, led by ``label`` (the flag and its value), when the images of ``data`` (a tensor or
    a Dataset) do not have the generator's shape ``expected``."""
    shape = tuple(data.shape[1:]) if torch.is_tensor(data) else tuple(torch.as_tensor(data[0]).shape)
    if shape != tuple(expected):
        raise ConfigError(f"{label}: its images are {'x'.join(map(str, shape))}, but the generator makes "
                          f"{'x'.join(map(str, expected))}")


def load_image_source(path: Union[str, Path]) -> Any:
    """A folder of images, an .npz file, or ``data:NAME:SPLIT`` (a registered dataset's split, e.g.
    ``data:mnist:test``) as a tensor / Dataset in [-1, 1]."""
    text = str(path)
    if text.startswith("data:"):
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


def build_extractor(name: str, data_shape: Sequence[int], device: str) -> FeatureExtractor:
    """The extractor ``name`` for images (or vectors) of ``data_shape`` on ``device``."""
    if name == "pixels":
        return get_extractor("pixels", device=device, shape=tuple(data_shape))
    return get_extractor(name, device=device)



# ---- a dataset split as reference --------------------------------------------------------------
def _loader_options(cfg_data: Dict[str, Any]) -> Dict[str, Any]:
    """The dataset loader's own options in a run's ``data`` config section."""
    return {k: v for k, v in cfg_data.items() if k not in ("name", "root")}


def reference_data(cfg_data: Dict[str, Any], split: str) -> Any:
    """The split of the dataset a run's ``data`` config section names."""
    return datasets.load(cfg_data["name"], split, cfg_data.get("root"), **_loader_options(cfg_data))


#: the seed of the reference subset :func:`reference_subset` draws. Fixed (not the evaluation's
#: ``--seed``), so every capped evaluation against the same data compares with the same images and
#: their cached statistics are shared; the generated side's seed varies on its own.
REFERENCE_SUBSET_SEED = 0


def check_max_reference(max_reference: Optional[int]) -> Optional[int]:
    """``max_reference`` as an int >= 2 (None: no cap), else a one-line ConfigError naming it."""
    if max_reference is None:
        return None
    return check_int("--max-reference", max_reference, minimum=2)


def reference_subset(data: Any, max_reference: Optional[int]) -> Tuple[Any, Dict[str, Any]]:
    """At most ``max_reference`` items of ``data`` (a tensor or a Dataset), and what was done.

    The subset is a **simple random sample without replacement** (seeded from
    :data:`REFERENCE_SUBSET_SEED` through :func:`statgan.runtime.seeding.seeded_generator`, indices
    kept in ascending order for sequential reads), not the first N: image folders are listed sorted
    by path, i.e. grouped by class sub-folder, and other datasets may be stored ordered, so the
    first N images can cover a few classes only and bias every reference statistic. A simple random
    sample's feature mean and covariance are unbiased estimates of the whole set's, whatever its
    order. The info dict (merged into the result's ``reference`` section) holds ``max_reference``,
    ``n_available`` (the size of the whole set), ``subset`` ("all" or "random"), ``subset_seed`` and
    ``subset_sha256`` (16 hex digits of the chosen indices) for a random subset, and a ``note``
    when the cap is not below the set's size (then the whole set is used).
    """
    cap = check_max_reference(max_reference)
    total = len(data)
    info: Dict[str, Any] = {"max_reference": cap, "n_available": total, "subset": "all"}
    if cap is None:
        return data, info
    if cap >= total:
        info["note"] = f"max_reference {cap} is not below the {total} reference images available; all of them were used"
        return data, info
    g = seeding.seeded_generator(REFERENCE_SUBSET_SEED, "eval:max_reference")
    idx = torch.randperm(total, generator=g)[:cap].sort().values
    digest = hashlib.sha256(idx.to(torch.int64).numpy().tobytes()).hexdigest()[:16]
    info.update(subset="random", subset_seed=REFERENCE_SUBSET_SEED, subset_sha256=digest)
    subset = data[idx] if torch.is_tensor(data) else torch.utils.data.Subset(data, idx.tolist())
    return subset, info


def reference_features(
    cfg_data: Dict[str, Any], split: str, extractor: Any, needs: FrozenSet[str], batch_size: int, cache: bool,
    data: Any = None, max_reference: Optional[int] = None, progress: bool = False,
) -> FeatureSet:
    """One pass over a split of the dataset a run's ``data`` config section names (``data``: that
    split, if already loaded), capped at ``max_reference`` images by :func:`reference_subset`. When
    only statistics are needed they are cached by content (extractor, preprocessing, dataset,
    split, N, and for a capped subset the cap and the digest of its indices: the statistics of the
    whole split are never served for a capped request, nor the reverse). ``progress``: a tqdm bar
    while features are extracted (not when the statistics come from the cache)."""
    name, root = cfg_data["name"], cfg_data.get("root")
    needs = frozenset(needs) - {"logits"}
    if data is None:
        data = reference_data(cfg_data, split)
    data, subset_info = reference_subset(data, max_reference)
    source = f"{name}:{split}"
    key = {
        "extractor": extractor.id,
        "preprocessing": extractor.preprocessing,
        "dataset": name,
        "split": split,
        "root": str(Path(root).expanduser().resolve()) if root else None,
        "options": _loader_options(cfg_data),
        "n": len(data),
    }
    if subset_info["subset"] != "all":
        # only for a true subset: a cap at or above the split's size uses the whole split, whose
        # statistics (and cache file, same key as before caps existed) are exactly the same
        key.update(max_reference=subset_info["max_reference"], subset=subset_info["subset_sha256"])
    what = "statistics" if needs <= {"stats"} else "features"
    desc = f"eval: reference {what} {source}" + (f" ({len(data)} of {subset_info['n_available']})" if subset_info["subset"] != "all" else "")

    def run(kinds: FrozenSet[str]) -> FeatureSet:
        return extract(source, tensor_batches(data, None, batch_size), extractor, kinds,
                       total=len(data), progress=progress, desc=desc)

    if needs <= {"stats"}:
        holder: Dict[str, FeatureSet] = {}

        def compute():
            holder["fs"] = run(frozenset({"stats"}))
            return holder["fs"].stats

        stats = cached_stats(key, compute, cache=cache)
        return FeatureSet(source, stats.n, stats=stats, info={"cached": "fs" not in holder, **subset_info})
    fs = run(needs)
    fs.info.update(subset_info)
    return fs
