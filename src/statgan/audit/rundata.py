"""A trained run as the audit sees it: its generator, its data, and the seeded image sets.

Everything comes from the run directory (like ``statgan eval``): the generator from its latest
checkpoint (EMA weights by default, :func:`statgan.rundir.run.load_generator`), the data from the
dataset named in the checkpoint's config. The sets:

* ``train``     -- ``n`` random training images;
* ``test``      -- ``n`` random images of the dataset's test split;
* ``valid``     -- ``n_valid`` *other* test-split images (disjoint from ``test``);
* ``generated`` -- ``n`` generator outputs G(z), z ~ N(0, I) (noise-free: on the GAN manifold);
* OOD sets      -- :func:`statgan.data.ood.ood_sets` built from the test split.

Every random choice draws from its own generator seeded by
:func:`statgan.runtime.seeding.derived_seed` (seed, ``"audit:"`` + purpose) -- the scheme training uses
-- so the image sets of ``statgan invert RUN --split test`` are those of ``statgan audit RUN`` with
the same seed and n.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .. import data as datasets
from ..data.ood import EXTERNAL_SETS, OOD_SETS, ood_sets
from ..errors import ConfigError, StatganError
from ..rundir.run import load_generator
from ..runtime.seeding import derived_seed, seeded_generator
from .inversion import lenet_feature_fn
from .settings import LOSSES
from .summary import RunFID

__all__ = ["FeatureLoss", "RunData", "SPLITS", "feature_loss", "load_run", "run_fid", "split_images"]

#: In-distribution image sets; OOD sets are named by :data:`statgan.data.ood.OOD_SETS` /
#: ``EXTERNAL_SETS`` or all together as ``ood``.
SPLITS = ("train", "test", "generated")

#: (loss name for :func:`statgan.audit.invert`, its feature_fn or None)
FeatureLoss = Tuple[str, Optional[Callable[[Tensor], Tensor]]]


def _take(data: Any, idx: Tensor) -> Tensor:
    if torch.is_tensor(data):
        return data[idx].to(torch.float32)
    return torch.stack([torch.as_tensor(data[int(i)]) for i in idx]).to(torch.float32)


class RunData:
    """A run's generator and data, loaded once, handing out the seeded image sets."""

    def __init__(self, run_dir: Union[str, Path], seed: int = 0, checkpoint: Optional[Union[str, Path]] = None,
                 ema: bool = True, device: str = "cpu") -> None:
        self.run_dir, self.seed = Path(run_dir), int(seed)
        if checkpoint is None and not (self.run_dir / "config.yaml").is_file() and not (self.run_dir / "checkpoints").is_dir():
            raise StatganError(f"{str(self.run_dir)!r} is not a statgan run directory (no config.yaml or checkpoints/)")
        self.G, self.meta = load_generator(self.run_dir, Path(checkpoint) if checkpoint else None, ema=ema, device=device)
        self.device = next(self.G.parameters()).device
        self.step = int(self.meta["step"])
        self.latent_dim = int(self.meta["latent_dim"])
        self.data_shape = tuple(int(s) for s in self.meta["data_shape"])
        self.weights = "EMA" if (ema and self.meta.get("ema")) else "raw"
        cfg_data = dict(self.meta["config"]["data"])
        self.dataset, self.root = cfg_data.pop("name"), cfg_data.pop("root", None)
        self.options = cfg_data.pop("options", None) or {}
        self.options.update(cfg_data)
        self._cache: Dict[str, Any] = {}

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    def _data(self, split: str) -> Any:
        if split not in self._cache:
            self._cache[split] = datasets.load(self.dataset, split, self.root, **self.options)
        return self._cache[split]

    def train(self, n: int) -> Tensor:
        """``n`` training images: the first of a seeded permutation."""
        data = self._data("train")
        perm = torch.randperm(len(data), generator=seeded_generator(self.seed, "audit:train"))
        return _take(data, perm[: min(n, len(data))])

    def test_and_valid(self, n: int, n_valid: int = 0) -> Tuple[Tensor, Optional[Tensor]]:
        """``n`` test images (the first of a seeded permutation) and ``n_valid`` others (its last).

        A test split too small for both keeps ``valid`` to at most half of it and gives ``test`` the
        rest, so a folder of a few dozen images (3 test images) can still be audited; it needs two
        images (one each)."""
        data = self._data("test")
        N = len(data)
        if n_valid and n + n_valid > N:
            if N < 2:
                raise ConfigError(f"{self.dataset}'s test split has {N} image(s); the audit needs at least 2 held-out "
                                  f"images (one test, one valid): add images or a test/ folder")
            n_valid = min(n_valid, N // 2)
            n = min(n, N - n_valid)
        perm = torch.randperm(N, generator=seeded_generator(self.seed, "audit:test"))
        test = _take(data, perm[: min(n, N)])
        valid = _take(data, perm[N - n_valid:]) if n_valid else None
        return test, valid

    def reference(self, limit: int = 2000) -> Tensor:
        """Held-out images the blurred / inverted OOD sets are made from (the test split)."""
        data = self._data("test")
        if torch.is_tensor(data):
            return data.to(torch.float32)
        return _take(data, torch.arange(min(limit, len(data))))

    def generated(self, n: int, batch_size: int = 256) -> Tuple[Tensor, Tensor]:
        """(G(z), z) for n latents z ~ N(0, I) from the seeded stream."""
        z = torch.randn(n, self.latent_dim, generator=seeded_generator(self.seed, "audit:generated"))
        with torch.no_grad():
            x = torch.cat([self.G(z[i: i + batch_size].to(self.device)).float().cpu() for i in range(0, n, batch_size)])
        return x, z

    def ood(self, n: int, names: Optional[Sequence[str]]) -> Dict[str, Tensor]:
        """``n`` images of each OOD set (``names=None``: the built-in ones + local external ones)."""
        if not self.is_image:
            raise StatganError(f"OOD sets need image data, but {self.dataset!r} has samples of shape {list(self.data_shape)}")
        # ood_sets takes a 31-bit seed
        return ood_sets(self.reference(), n, seed=derived_seed(self.seed, "audit:ood") % (2**31), names=names)


def run_fid(run_dir: Union[str, Path], step: Optional[int] = None, weights: Optional[str] = None) -> Optional[RunFID]:
    """The run's FID from ``statgan eval``'s ``eval/*.json``: the newest result of checkpoint ``step``
    and ``weights`` ("ema" or "raw", case-insensitive: the generator the audit reads) if there is
    one, else the newest of that step, else the newest of any step; ``None`` if the run was never
    evaluated. The result names its weights, so a fallback to the other generator is visible."""
    found = []
    for p in sorted((Path(run_dir) / "eval").glob("*.json"), key=lambda q: q.stat().st_mtime):
        try:
            rec = json.loads(p.read_text())
            value = float(rec["metrics"]["fid"])
        except (OSError, ValueError, KeyError, TypeError):  # another file, or no FID in it
            continue
        gen = rec.get("generated") or {}
        found.append(RunFID(value=value, extractor=str((rec.get("extractor") or {}).get("id", "?")),
                            n=gen.get("n") if isinstance(gen.get("n"), int) else None,
                            step=gen.get("step") if isinstance(gen.get("step"), int) else None, path=str(p),
                            weights=str(gen["weights"]).lower() if gen.get("weights") else None))
    same = [f for f in found if step is not None and f.step == step]
    same_weights = [f for f in same if weights is not None and f.weights == weights.lower()]
    return (same_weights or same or found or [None])[-1]


def load_run(run_dir: Union[str, Path], seed: int = 0, checkpoint: Optional[Union[str, Path]] = None, ema: bool = True,
             device: str = "cpu") -> RunData:
    return RunData(run_dir, seed, checkpoint, ema, device)


def parse_split(split: str) -> Tuple[str, Optional[List[str]]]:
    """'train' | 'test' | 'generated' | 'ood' (every OOD set) | an OOD set's name -> (kind, OOD names)."""
    s = str(split).strip().lower()
    if s in SPLITS:
        return s, None
    if s == "ood":
        return "ood", None
    if s in OOD_SETS or s in EXTERNAL_SETS:
        return "ood", [s]
    raise ConfigError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}, ood, "
                      f"or an OOD set ({', '.join([*OOD_SETS, *EXTERNAL_SETS])})")


def split_images(run: RunData, split: str, n: int) -> Dict[str, Tensor]:
    """``{set name: images}`` for one ``--split`` (several sets for ``ood``)."""
    kind, names = parse_split(split)
    if kind == "train":
        return {"train": run.train(n)}
    if kind == "test":
        return {"test": run.test_and_valid(n)[0]}
    if kind == "generated":
        return {"generated": run.generated(n)[0]}
    return run.ood(n, names)


def feature_loss(loss: str, run: RunData) -> FeatureLoss:
    """The inversion loss for ``--loss``: pixel MSE, or LeNet feature distance (1/3-channel images)."""
    if loss == "l2":
        return "l2", None
    if loss == "lenet":
        if not run.is_image or run.data_shape[0] not in (1, 3):
            raise ConfigError(f"--loss lenet needs 1- or 3-channel images, but {run.dataset!r} has shape {list(run.data_shape)}")
        return "feature", lenet_feature_fn(device=run.device)
    raise ConfigError(f"unknown loss {loss!r}; expected one of: {', '.join(LOSSES)}")
