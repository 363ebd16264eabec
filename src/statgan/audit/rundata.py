"""A generator as the audit sees it: the network, its data, and the seeded image sets.

The generator is any GENERATOR (:mod:`statgan.generator_source`): a run directory (its latest
checkpoint, EMA weights by default), ``FILE.py:NAME``, or a TorchScript / torch.export file. The
data: ``--train SET`` / ``--test SET`` where given (any image set ``statgan eval`` reads: a folder,
an ``.npz``, ``data:NAME:SPLIT``), else, for a run, the dataset named in its checkpoint's config;
a generator from elsewhere has only the sets it is given (:attr:`RunData.has_train`,
:attr:`RunData.has_test`). The sets:

* ``train``     -- ``n`` random training images;
* ``test``      -- ``n`` random images of the dataset's test split;
* ``valid``     -- ``n_valid`` *other* test-split images (disjoint from ``test``);
* ``generated`` -- ``n`` generator outputs G(z), z ~ N(0, I) (noise-free: on the GAN manifold);
* OOD sets      -- :func:`statgan.data.ood.ood_sets` built from the test split (without one, from
  generated images: the blurred and inverted sets need a picture of the data), at the generator's
  image size and channels.

Every random choice draws from its own generator seeded by
:func:`statgan.runtime.seeding.derived_seed` (seed, ``"audit:"`` + purpose) -- the scheme training uses
-- so the image sets of ``statgan invert RUN --split test`` are those of ``statgan audit RUN`` with
the same seed and n.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .. import data as datasets
from ..data.ood import EXTERNAL_SETS, OOD_SETS, ood_sets
from ..errors import ConfigError, StatganError
from ..generator_source import GeneratorOptions, LoadedGenerator, load_generator_source
from ..metrics.sources import check_image_shape, load_image_source
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
    """A generator and its data, loaded once, handing out the seeded image sets.

    ``sets``: ``{"train": SET, "test": SET}`` image sets given by the user (either may be left out);
    they replace a run's own splits."""

    def __init__(self, source: LoadedGenerator, seed: int = 0, sets: Optional[Dict[str, Optional[str]]] = None) -> None:
        self.source, self.seed = source, int(seed)
        self.G = source.module
        self.run_dir: Optional[Path] = source.run_dir
        self.meta = source.meta
        self.device = source.device
        ident = source.identity
        self.step, self.weights = ident.step, ident.weights
        self.latent_dim = ident.latent_dim
        self.data_shape = tuple(ident.data_shape)
        self.given = {k: v for k, v in (sets or {}).items() if v is not None}
        unknown = set(self.given) - {"train", "test"}
        if unknown:
            raise ConfigError(f"image sets are given for train and test only, not {sorted(unknown)}")
        self.dataset: str = "no image sets given"
        self.root: Optional[str] = None
        self.options: Dict[str, Any] = {}
        if self.meta is not None:
            cfg_data = dict(self.meta.data_record)
            self.dataset, self.root = cfg_data.pop("name"), cfg_data.pop("root", None)
            self._registered = self.dataset  # the run's dataset, by its registered name
            self.options = cfg_data.pop("options", None) or {}
            self.options.update(cfg_data)
        if self.given:  # what the sets are, as the summary and the report name them
            named = [f"{k} {v}" for k, v in self.given.items()]
            self.dataset = ", ".join(named) if self.meta is None else f"{self.dataset} ({', '.join(named)})"
        self._cache: Dict[str, Any] = {}

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    @property
    def has_train(self) -> bool:
        return "train" in self.given or self.meta is not None

    @property
    def has_test(self) -> bool:
        return "test" in self.given or self.meta is not None

    def _data(self, split: str) -> Any:
        if split not in self._cache:
            if split in self.given:
                data = load_image_source(self.given[split])
                check_image_shape(data, self.data_shape, f"--{split} {self.given[split]}")
                self._cache[split] = data
            elif self.meta is not None:
                self._cache[split] = datasets.load(self._registered, split, self.root, **self.options)
            else:
                raise ConfigError(f"no {split} images: this generator is not a statgan run, so give --{split} SET "
                                  "(a folder, an .npz file or data:NAME:SPLIT)")
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
        """Images the blurred / inverted OOD sets are made from: the test split, or without one the
        generator's own samples (seeded apart from the ``generated`` set)."""
        if not self.has_test:
            z = torch.randn(min(limit, 500), self.latent_dim, generator=seeded_generator(self.seed, "audit:ood-reference"))
            return self._generate(z)
        data = self._data("test")
        if torch.is_tensor(data):
            return data.to(torch.float32)
        return _take(data, torch.arange(min(limit, len(data))))

    def generated(self, n: int, batch_size: int = 256) -> Tuple[Tensor, Tensor]:
        """(G(z), z) for n latents z ~ N(0, I) from the seeded stream."""
        z = torch.randn(n, self.latent_dim, generator=seeded_generator(self.seed, "audit:generated"))
        return self._generate(z, batch_size), z

    def _generate(self, z: Tensor, batch_size: int = 256) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.G(z[i: i + batch_size].to(self.device)).float().cpu()
                              for i in range(0, z.shape[0], batch_size)])

    def ood(self, n: int, names: Optional[Sequence[str]]) -> Dict[str, Tensor]:
        """``n`` images of each OOD set (``names=None``: the built-in ones + local external ones).

        An entry ``NAME=SET`` adds the user's own set (a folder, an .npz, ``data:NAME:SPLIT``, with
        the generator's image shape): ``n`` of its images, a seeded random choice. Given only such
        entries, the built-in sets are kept beside them; with built-in names too, only those."""
        if not self.is_image:
            raise StatganError(f"OOD sets need image data, but {self.dataset!r} has samples of shape {list(self.data_shape)}")
        user = dict(parse_user_ood(e) for e in (names or ()) if "=" in e)
        builtin = [e for e in (names or ()) if "=" not in e]
        # ood_sets takes a 31-bit seed
        sets = ood_sets(self.reference(), n, seed=derived_seed(self.seed, "audit:ood") % (2**31),
                        names=builtin or None)  # only user sets (or none named): the built-in ones too
        for name, spec in user.items():
            if name in sets:
                raise ConfigError(f"--ood {name}={spec}: {name!r} is already an OOD set's name; choose another")
            sets[name] = self._user_set(name, spec, n)
        return sets

    def _user_set(self, name: str, spec: str, n: int) -> Tensor:
        """``n`` images of the user's OOD set ``spec`` (all when it has fewer), a seeded choice."""
        data = load_image_source(spec)
        check_image_shape(data, self.data_shape, f"--ood {name}={spec}")
        perm = torch.randperm(len(data), generator=seeded_generator(self.seed, f"audit:ood:{name}"))
        return _take(data, perm[: min(n, len(data))])


#: a user's OOD set name: letters, digits, - and _ (it names tensors, JSON keys and report rows)
_OOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: names the audit's own sets use
_RESERVED = (*SPLITS, "valid", "model_samples", "ood")


def parse_user_ood(entry: str) -> Tuple[str, str]:
    """``NAME=SET`` of ``--ood`` -> (name, set spec); one line when the name is unusable."""
    name, _, spec = entry.partition("=")
    name, spec = name.strip(), spec.strip()
    if not _OOD_NAME.match(name) or name.lower() in _RESERVED or not spec:
        raise ConfigError(f"--ood {entry!r}: expected NAME=SET with NAME made of letters, digits, - and _ (not one of "
                          f"{', '.join(_RESERVED)}) and SET a folder, an .npz file or data:NAME:SPLIT")
    return name, spec


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


def load_run(generator: Union[str, Path, LoadedGenerator], seed: int = 0, checkpoint: Optional[Union[str, Path]] = None,
             ema: bool = True, device: str = "cpu", *, options: Optional[GeneratorOptions] = None,
             train: Optional[str] = None, test: Optional[str] = None) -> RunData:
    """The audit's view of GENERATOR (a spec, or one already loaded) with its image sets.

    ``options`` says how to read a generator from elsewhere (:class:`GeneratorOptions`; its
    checkpoint, ema and device are replaced by the arguments of the same name)."""
    if not isinstance(generator, LoadedGenerator):
        o = options or GeneratorOptions()
        o = dataclasses.replace(o, checkpoint=str(checkpoint) if checkpoint else None, ema=ema, device=device)
        generator = load_generator_source(generator, o)
    return RunData(generator, seed, {"train": train, "test": test})


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
