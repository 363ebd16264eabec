"""``statgan audit`` and ``statgan invert``: the audit of a trained run, from its run directory only.

::

    from statgan.audit.run import AuditSettings, audit_run, invert_split
    summary = audit_run("runs/default")                        # writes runs/default/audit/{report.html, ...}
    summary = audit_run("runs/default", AuditSettings.quick())  # a smoke test in seconds
    result = invert_split("runs/default", "test", n=100)       # per-image errors + latents

Like ``statgan eval``, everything comes from the run directory: the generator from its latest
checkpoint (EMA weights by default, :func:`statgan.rundir.run.load_generator`), the data from the
dataset named in the checkpoint's config. The image sets ("splits"):

* ``train``     -- ``n`` random training images;
* ``test``      -- ``n`` random images of the dataset's test split;
* ``valid``     -- ``n_valid`` *other* test-split images (disjoint from ``test``): sigma is chosen on
                   them and they give the bootstrap of the OOD typicality test;
* ``generated`` -- ``n`` generator outputs G(z), z ~ N(0, I) (noise-free: on the GAN manifold);
* OOD sets      -- :func:`statgan.data.ood.ood_sets` built from the test split (``n_ood`` each);
* model samples -- ``bdmc_images`` draws x = G(z) + sigma * eps from the density model (the BDMC
                   run): the reference for the model's typical set.

Every random choice draws from its own generator seeded by (seed, purpose), so the image sets of
``statgan invert RUN --split test`` are those of ``statgan audit RUN`` with the same seed and n.

The pipeline: inversion of every set (Adam + cosine LR, the best of ``restarts``) -> sigma by the
held-out AIS likelihood (unless given) -> AIS log-likelihood of every set, each chain started from
the image's inverted latent (the valid ``init=`` path of :func:`statgan.audit.ais`) -> BDMC on
simulated data with the same settings (bounds the estimator's error) -> local variance, AUROCs,
correlations, typicality tests -> verdicts (:mod:`statgan.audit.verdicts`) -> report.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .. import __version__
from ..errors import ConfigError, StatganError

__all__ = ["AuditSettings", "LOSSES", "audit_run", "invert_split", "load_run", "split_images"]

#: ``--loss`` choices of ``statgan invert`` / ``statgan audit``: pixel MSE, or squared distance of
#: statgan's MNIST LeNet features (MNIST-like data only).
LOSSES = ("l2", "lenet")
#: In-distribution image sets; OOD sets are named by :data:`statgan.data.ood.OOD_SETS` /
#: ``EXTERNAL_SETS`` or all together as ``ood``.
SPLITS = ("train", "test", "generated")
Log = Callable[[str], None]


# ==== settings ======================================================================================
@dataclass(frozen=True)
class AuditSettings:
    """Knobs of :func:`audit_run`. The defaults finish in ~2.5 min on 2 idle CPU cores for the
    default MNIST run (~10 min when other jobs share the cores); docs/audit.md explains each."""

    n: int = 100                      # images of train, test and generated
    n_valid: int = 50                 # held-out images for sigma and the OOD bootstrap
    n_ood: int = 50                   # images per OOD set
    ood: Optional[Tuple[str, ...]] = None  # None: built-in sets + fashion-mnist/svhn when found locally
    restarts: int = 2                 # inversion: random starts per image
    steps: int = 300                  # inversion: Adam steps per start
    lr: float = 0.1                   # inversion: peak learning rate (cosine-annealed)
    loss: str = "l2"                  # "l2" (pixel MSE) or "lenet" (LeNet feature distance)
    sigma: Optional[float] = None     # observation noise std; None: chosen on the valid images
    sigma_candidates: Tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    sigma_images: int = 32            # valid images used to choose sigma
    sigma_steps: int = 100            # AIS steps per candidate
    ais_steps: int = 200              # AIS annealing steps T
    chains: int = 1                   # AIS chains per image K
    leapfrog: int = 5                 # HMC leapfrog steps L
    step_size: float = 0.03           # initial HMC step (adapted toward 0.65 acceptance)
    init_scale: float = 0.2           # AIS starts from q = N(z_inverted, init_scale^2 I)
    bdmc_images: int = 50             # simulated images: BDMC gap and the model's typical set
    typicality_batch: int = 5         # M, images per typicality-test batch
    alpha: float = 0.01               # typicality test level
    n_bootstrap: int = 1000           # typicality bootstrap batches
    seed: int = 0

    @classmethod
    def quick(cls, **changes: Any) -> "AuditSettings":
        """Tiny settings for a smoke test (seconds; the numbers mean little)."""
        base = dict(n=24, n_valid=16, n_ood=12, restarts=1, steps=40, sigma_images=8, sigma_steps=10,
                    ais_steps=20, bdmc_images=12, typicality_batch=4, n_bootstrap=200)
        base.update(changes)
        return cls(**base)

    def validate(self) -> "AuditSettings":
        ints = {"n": 1, "n_valid": 2, "n_ood": 1, "restarts": 1, "steps": 0, "sigma_images": 1, "sigma_steps": 1,
                "ais_steps": 1, "chains": 1, "leapfrog": 1, "bdmc_images": 2, "typicality_batch": 1,
                "n_bootstrap": 1, "seed": 0}
        for name, minimum in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ConfigError(f"{name} must be an integer >= {minimum}, got {v!r}")
        for name in ("lr", "step_size", "init_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        if self.sigma is not None and not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"sigma must be a positive number, got {self.sigma!r}")
        if not self.sigma_candidates or any(not (math.isfinite(c) and c > 0) for c in self.sigma_candidates):
            raise ConfigError(f"sigma candidates must be positive numbers, got {self.sigma_candidates!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; expected one of: {', '.join(LOSSES)}")
        if self.bdmc_images < 2 * self.typicality_batch:
            raise ConfigError(f"bdmc_images ({self.bdmc_images}) must be at least twice the typicality batch "
                              f"({self.typicality_batch}): half estimates the entropy, half gives the bootstrap")
        for name in ("n", "n_ood"):
            if getattr(self, name) < self.typicality_batch:
                raise ConfigError(f"{name} ({getattr(self, name)}) must be at least the typicality batch size "
                                  f"({self.typicality_batch})")
        return self


# ==== the run: generator, data, seeded image sets ==================================================
def _rng(seed: int, purpose: str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + zlib.crc32(purpose.encode())) % (2**63))
    return g


def _derived_seed(seed: int, purpose: str) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=_rng(seed, purpose)).item())


def _take(data: Any, idx: Tensor) -> Tensor:
    if torch.is_tensor(data):
        return data[idx].to(torch.float32)
    return torch.stack([torch.as_tensor(data[int(i)]) for i in idx]).to(torch.float32)


class RunData:
    """A run's generator and data, loaded once, handing out the seeded image sets."""

    def __init__(self, run_dir: Union[str, Path], seed: int = 0, checkpoint: Optional[Union[str, Path]] = None,
                 ema: bool = True, device: str = "cpu") -> None:
        from ..rundir.run import load_generator

        self.run_dir, self.seed = Path(run_dir), int(seed)
        if checkpoint is None and not (self.run_dir / "config.yaml").is_file() and not (self.run_dir / "checkpoints").is_dir():
            raise StatganError(f"{str(self.run_dir)!r} is not a statgan run directory (no config.yaml or checkpoints/)")
        self.G, self.meta = load_generator(self.run_dir, Path(checkpoint) if checkpoint else None, ema=ema, device=device)
        self.device = next(self.G.parameters()).device
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
            from .. import data as datasets

            self._cache[split] = datasets.load(self.dataset, split, self.root, **self.options)
        return self._cache[split]

    def _g(self, purpose: str) -> torch.Generator:
        return _rng(self.seed, purpose)

    def train(self, n: int) -> Tensor:
        """``n`` training images: the first of a seeded permutation."""
        data = self._data("train")
        return _take(data, torch.randperm(len(data), generator=self._g("train"))[: min(n, len(data))])

    def test_and_valid(self, n: int, n_valid: int = 0) -> Tuple[Tensor, Optional[Tensor]]:
        """``n`` test images (the first of a seeded permutation) and ``n_valid`` others (its last)."""
        data = self._data("test")
        N = len(data)
        if n_valid and n + n_valid > N:
            raise ConfigError(f"{self.dataset}'s test split has {N} images: n ({n}) + n_valid ({n_valid}) must not exceed it")
        perm = torch.randperm(N, generator=self._g("test"))
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
        z = torch.randn(n, self.latent_dim, generator=self._g("generated"))
        with torch.no_grad():
            x = torch.cat([self.G(z[i: i + batch_size].to(self.device)).float().cpu() for i in range(0, n, batch_size)])
        return x, z

    def ood(self, n: int, names: Optional[Sequence[str]]) -> Dict[str, Tensor]:
        from ..data.ood import ood_sets

        if not self.is_image:
            raise StatganError(f"OOD sets need image data, but {self.dataset!r} has samples of shape {list(self.data_shape)}")
        return ood_sets(self.reference(), n, seed=_derived_seed(self.seed, "ood") % (2**31), names=names)


def load_run(run_dir: Union[str, Path], seed: int = 0, checkpoint: Optional[Union[str, Path]] = None, ema: bool = True,
             device: str = "cpu") -> RunData:
    return RunData(run_dir, seed, checkpoint, ema, device)


def _parse_split(split: str) -> Tuple[str, Optional[List[str]]]:
    """'train' | 'test' | 'generated' | 'ood' (every OOD set) | an OOD set's name -> (kind, OOD names)."""
    from ..data.ood import EXTERNAL_SETS, OOD_SETS

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
    kind, names = _parse_split(split)
    if kind == "train":
        return {"train": run.train(n)}
    if kind == "test":
        return {"test": run.test_and_valid(n)[0]}
    if kind == "generated":
        return {"generated": run.generated(n)[0]}
    return run.ood(n, names)


# ==== inversion =====================================================================================
def _feature_fn(loss: str, run: RunData):
    """(invert's loss name, feature_fn) for ``--loss``."""
    if loss == "l2":
        return "l2", None
    if loss == "lenet":
        if not run.is_image or run.data_shape[0] not in (1, 3):
            raise ConfigError(f"--loss lenet needs 1- or 3-channel images, but {run.dataset!r} has shape {list(run.data_shape)}")
        from .inversion import lenet_feature_fn

        return "feature", lenet_feature_fn(device=run.device)
    raise ConfigError(f"unknown loss {loss!r}; expected one of: {', '.join(LOSSES)}")


def _invert(run: RunData, x: Tensor, s: AuditSettings, purpose: str, feature: Tuple[str, Any]):
    from .inversion import invert

    return invert(run.G, x.to(run.device), run.latent_dim, restarts=s.restarts, steps=s.steps, lr=s.lr,
                  loss=feature[0], feature_fn=feature[1], batch_size=128, seed=_derived_seed(s.seed, f"invert:{purpose}"))


def _describe(values: Union[Tensor, np.ndarray]) -> Dict[str, float]:
    a = torch.as_tensor(values).detach().double().cpu().flatten()
    q = torch.quantile(a, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist() if a.numel() else [math.nan] * 3
    return {"n": int(a.numel()), "mean": float(a.mean()), "std": float(a.std()) if a.numel() > 1 else 0.0,
            "q25": q[0], "median": q[1], "q75": q[2], "min": float(a.min()), "max": float(a.max())}


def _atomic_json(path: Path, obj: Any) -> None:
    from ..rundir.files import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def _atomic_tensors(path: Path, tensors: Dict[str, Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
    from safetensors.torch import save

    from ..rundir.files import atomic_write_bytes

    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, blob)


def _versions() -> Dict[str, str]:
    return {"statgan": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def invert_split(
    run_dir: Union[str, Path],
    split: str,
    n: int = 100,
    restarts: int = 2,
    steps: int = 300,
    lr: float = 0.1,
    loss: str = "l2",
    out: Optional[Union[str, Path]] = None,
    seed: int = 0,
    device: str = "cpu",
    checkpoint: Optional[Union[str, Path]] = None,
    ema: bool = True,
) -> Dict[str, Any]:
    """Invert the run's generator on one image set; write tensors (.safetensors) and a JSON summary.

    Tensors per set NAME: ``NAME.z`` (n, d), ``NAME.errors`` (n,) (the loss), ``NAME.mse`` (n,),
    ``NAME.images`` and ``NAME.reconstructions``. Default output:
    ``RUN/audit/invert-SPLIT-nN-LOSS.safetensors`` (+ ``.json``). Returns the JSON summary.
    """
    _parse_split(split)  # a bad split fails before anything is loaded
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--n must be an integer >= 1, got {n!r}")
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; expected one of: {', '.join(LOSSES)}")
    s = AuditSettings(restarts=restarts, steps=steps, lr=lr, loss=loss, seed=seed)
    s.validate()
    if out is not None and Path(out).suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors (the JSON summary is written next to it), got {str(out)!r}")
    t0 = time.perf_counter()
    run = load_run(run_dir, seed, checkpoint, ema, device)
    feature = _feature_fn(loss, run)
    sets = split_images(run, split, n)
    tensors: Dict[str, Tensor] = {}
    summary_sets: Dict[str, Any] = {}
    for name, x in sets.items():
        res = _invert(run, x, s, name, feature)
        tensors.update({f"{name}.z": res.z, f"{name}.errors": res.errors, f"{name}.mse": res.mse,
                        f"{name}.images": x, f"{name}.reconstructions": res.reconstructions.float()})
        summary_sets[name] = {"n": int(x.shape[0]), "error": _describe(res.errors), "mse": _describe(res.mse)}
    key = str(split).strip().lower()
    out = Path(out) if out is not None else Path(run_dir) / "audit" / f"invert-{key}-n{n}-{loss}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_tensors(out, tensors, {"format": "statgan-invert/1", "split": key, "loss": loss})
    summary = {
        "format": "statgan-invert/1", "run": str(run_dir), "step": int(run.meta["step"]), "weights": run.weights,
        "split": key, "loss": loss, "error_unit": "pixel MSE" if loss == "l2" else "LeNet feature MSE",
        "settings": {"n": n, "restarts": restarts, "steps": steps, "lr": lr, "seed": seed},
        "sets": summary_sets, "tensors": str(out), "seconds": round(time.perf_counter() - t0, 3),
        "versions": _versions(),
    }
    js = out.with_suffix(".json")
    _atomic_json(js, summary)
    summary["path"] = str(js)
    return summary


# ==== statistics ====================================================================================
def _mann_whitney_p(a: Tensor, b: Tensor) -> float:
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a.double().numpy(), b.double().numpy(), alternative="two-sided").pvalue)


def _typicality(train_ll: Tensor, valid_ll: Tensor, test_ll: Tensor, s: AuditSettings, purpose: str):
    from .typicality import typicality_test

    return typicality_test(train_ll, valid_ll, test_ll, s.typicality_batch, alpha=s.alpha, n_bootstrap=s.n_bootstrap,
                           seed=_derived_seed(s.seed, f"typicality:{purpose}"))


def _typ_summary(res: Any) -> Dict[str, Any]:
    return {"entropy": res.entropy, "epsilon": res.epsilon, "n_batches": int(res.statistics.numel()),
            "rejection_rate": res.rejection_rate, "batch_mean_nll": _describe(res.batch_mean_nll),
            "statistic": _describe(res.statistics)}


def _finite(obj: Any) -> Any:
    """JSON cannot hold NaN / inf: they become None (and the report shows n/a)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# ==== the audit =====================================================================================
def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def audit_run(
    run_dir: Union[str, Path],
    settings: Optional[AuditSettings] = None,
    *,
    checkpoint: Optional[Union[str, Path]] = None,
    ema: bool = True,
    device: str = "cpu",
    out_dir: Optional[Union[str, Path]] = None,
    log: Optional[Log] = _stderr,
    write: bool = True,
) -> Dict[str, Any]:
    """Audit a run: inversion, sigma, AIS, BDMC, typicality, AUROCs, correlation, verdicts.

    Writes ``OUT/report.html`` (self-contained), ``OUT/summary.json`` and ``OUT/per_image.safetensors``
    (per-image errors, log-likelihoods, local variances and latents), OUT = ``RUN/audit`` unless
    ``out_dir``; returns the summary dict (``summary["paths"]`` lists the files).
    """
    from . import verdicts
    from .ais import ais, bdmc, bits_per_dim, select_sigma
    from .ood import auroc, correlation, local_variance

    s = (settings or AuditSettings()).validate()
    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    timing: Dict[str, float] = {}
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None

    def lap(stage: str, t0: float) -> None:
        timing[stage] = round(time.perf_counter() - t0, 2)
        say(f"audit: {stage} done in {timing[stage]:.1f} s (total {time.perf_counter() - t_start:.0f} s)")

    run = load_run(run_dir, s.seed, checkpoint, ema, device)
    if not run.is_image or min(run.data_shape[1:]) < 8:
        raise StatganError(f"statgan audit needs image data of at least 8x8 pixels, but {run.dataset!r} has samples "
                           f"of shape {list(run.data_shape)} (statgan invert works on any data)")
    G, d = run.G, run.latent_dim
    D = int(math.prod(run.data_shape))
    feature = _feature_fn(s.loss, run)

    # ---- image sets
    t0 = time.perf_counter()
    train = run.train(s.n)
    test, valid = run.test_and_valid(s.n, s.n_valid)
    generated, _ = run.generated(s.n)
    ood = run.ood(s.n_ood, s.ood)
    if not ood:
        raise StatganError("no OOD set could be built; pass --ood with set names")
    images: Dict[str, Tensor] = {"train": train, "test": test, "generated": generated, **ood}
    ood_names = list(ood)
    for name, x in images.items():
        if x.shape[0] < s.typicality_batch:
            raise StatganError(f"the {name} set has {x.shape[0]} images, fewer than the typicality batch ({s.typicality_batch})")
    say(f"audit: {run.run_dir} step {run.meta['step']} ({run.weights} weights); sets: "
        + ", ".join(f"{k} {v.shape[0]}" for k, v in images.items()) + f", valid {valid.shape[0]}")
    lap("data", t0)

    # ---- inversion
    t0 = time.perf_counter()
    inv = {name: _invert(run, x, s, name, feature) for name, x in {**images, "valid": valid}.items()}
    lap("inversion", t0)

    # ---- sigma
    t0 = time.perf_counter()
    ais_opts = dict(step_size=s.step_size, init_scale=s.init_scale, batch_size=128)
    k = min(s.sigma_images, valid.shape[0])
    if s.sigma is None:
        sel = select_sigma(G, valid[:k].to(run.device), d, candidates=s.sigma_candidates, n_steps=s.sigma_steps,
                           n_chains=s.chains, leapfrog=s.leapfrog, init=inv["valid"].z[:k], seed=_derived_seed(s.seed, "sigma"),
                           **ais_opts)
        sigma = float(sel.sigma)
        sigma_info = {"chosen": sigma, "method": f"max mean AIS log-likelihood of {k} valid images",
                      "candidates": [float(c) for c in sel.candidates],
                      "mean_log_likelihood": [float(v) for v in sel.mean_log_likelihood], "ais_steps": s.sigma_steps}
    else:
        sigma = float(s.sigma)
        sigma_info = {"chosen": sigma, "method": "given (--sigma)", "candidates": [], "mean_log_likelihood": []}
    lap("sigma", t0)

    # ---- AIS log-likelihoods
    t0 = time.perf_counter()
    ll: Dict[str, Tensor] = {}
    acceptance: Dict[str, float] = {}
    for name, x in {"valid": valid, **images}.items():
        res = ais(G, x.to(run.device), d, sigma, s.ais_steps, s.chains, s.leapfrog, init=inv[name].z,
                  seed=_derived_seed(s.seed, f"ais:{name}"), **ais_opts)
        ll[name] = res.log_likelihood.cpu()
        acceptance[name] = float(res.acceptance.mean())
    lap("ais", t0)

    # ---- BDMC on simulated data = the model's own samples
    t0 = time.perf_counter()

    def init(x: Tensor) -> Tensor:
        return _invert(run, x, s, "model-samples", ("l2", None)).z

    bd_seed = _derived_seed(s.seed, "bdmc")
    bd = bdmc(G, d, sigma, n_images=s.bdmc_images, n_steps=s.ais_steps, n_chains=s.chains, leapfrog=s.leapfrog,
              step_size=s.step_size, init=init, init_scale=s.init_scale, batch_size=128, seed=bd_seed)
    # The reverse run of the inversion-started path must travel from the true z to q = N(z_inv, s^2 I),
    # and z_inv is often far from the true z (many latents give similar images), so its upper bound is
    # loose. Every reverse-AIS estimate is a stochastic upper bound on log p(x), whatever the path: the
    # prior path's (same seed -> same simulated images) is usually tighter, and the smaller one is kept.
    bd_prior = bdmc(G, d, sigma, n_images=s.bdmc_images, n_steps=s.ais_steps, n_chains=s.chains, leapfrog=s.leapfrog,
                    step_size=s.step_size, batch_size=128, seed=bd_seed)
    assert torch.equal(bd.data, bd_prior.data)
    upper = torch.minimum(bd.upper, bd_prior.upper).cpu()
    model_ll = bd.lower.cpu()
    gap = upper - model_ll
    lap("bdmc", t0)

    # ---- scores
    t0 = time.perf_counter()
    lv = {name: local_variance(x) for name, x in images.items()}
    err = {name: r.errors.detach().cpu() for name, r in inv.items()}
    mse = {name: r.mse.detach().cpu() for name, r in inv.items()}
    splits = {}
    for name in [*images, "valid"]:
        splits[name] = {
            "n": int(err[name].numel()),
            "kind": "ood" if name in ood else ("held-out" if name == "valid" else name),
            "inversion_error": _describe(err[name]),
            "inversion_mse": _describe(mse[name]),
            "log_likelihood": _describe(ll[name]),
            "bits_per_dim": _describe(bits_per_dim(ll[name], D)),
            "ais_acceptance": acceptance[name],
        }
        if name in lv:
            splits[name]["local_variance"] = _describe(lv[name])
    splits["model_samples"] = {"n": int(model_ll.numel()), "kind": "model", "log_likelihood": _describe(model_ll),
                               "bits_per_dim": _describe(bits_per_dim(model_ll, D))}

    table = {}
    for name in ood_names:
        table[name] = {
            "auroc_inversion": auroc(err["test"], err[name]),
            "auroc_likelihood": auroc(-ll["test"], -ll[name]),
            "auroc_likelihood_vs_train": auroc(-ll["train"], -ll[name]),
            "median_ll_minus_train": float(ll[name].median() - ll["train"].median()),
        }
    memo = {
        "auroc_inversion": auroc(err["train"], err["test"]),
        "p_inversion": _mann_whitney_p(err["test"], err["train"]),
        "auroc_likelihood": auroc(-ll["train"], -ll["test"]),
        "p_likelihood": _mann_whitney_p(ll["test"], ll["train"]),
        "mean_ll_gap": float(ll["train"].mean() - ll["test"].mean()),
        "median_error_ratio": float(err["test"].median() / err["train"].median()),
    }
    pooled = ["train", "test", *ood_names]
    corr_all = correlation(torch.cat([ll[k] for k in pooled]), torch.cat([lv[k] for k in pooled]))
    corr_test = correlation(ll["test"], lv["test"])
    correlations = {"pooled": {**corr_all._asdict(), "sets": pooled}, "test": {**corr_test._asdict(), "sets": ["test"]}}

    # typical set of the model: H from half of the model samples, bootstrap from the other half
    half = model_ll.numel() // 2
    typ_model = {name: _typicality(model_ll[:half], model_ll[half:], ll[name], s, "model")
                 for name in ("train", "test", "generated")}
    # Nalisnick et al.'s OOD test: H from training images, bootstrap from the held-out valid images
    typ_ood = {name: _typicality(ll["train"], ll["valid"], ll[name], s, "ood") for name in ["test", *ood_names]}
    for name in ood_names:
        table[name]["typicality_rejection"] = typ_ood[name].rejection_rate
    typicality = {
        "batch_size": s.typicality_batch, "alpha": s.alpha, "n_bootstrap": s.n_bootstrap,
        "model_typical_set": {"reference": f"{half} + {model_ll.numel() - half} model samples G(z) + sigma*eps",
                              **{k: _typ_summary(v) for k, v in typ_model.items()}},
        "ood_test": {"reference": f"train (entropy) + {valid.shape[0]} valid images (bootstrap)",
                     **{k: _typ_summary(v) for k, v in typ_ood.items()}},
    }
    ratio = float(err["train"].median() / err["generated"].median()) if float(err["generated"].median()) > 0 else math.inf
    lap("scores", t0)

    summary: Dict[str, Any] = {
        "format": "statgan-audit/1",
        "run": str(run_dir),
        "step": int(run.meta["step"]),
        "weights": run.weights,
        "dataset": run.dataset,
        "data_shape": list(run.data_shape),
        "latent_dim": d,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
        "error_unit": "pixel MSE ([-1, 1] scale)" if s.loss == "l2" else "LeNet feature MSE",
        "likelihood_unit": "nats (density on [-1, 1] pixels); bits/dim in 8-bit pixel units",
        "sigma": sigma_info,
        "bdmc": {"n_images": s.bdmc_images, "lower": _describe(model_ll), "upper": _describe(upper), "gap": _describe(gap),
                 "upper_inversion_path": _describe(bd.upper), "lower_prior_path": _describe(bd_prior.lower),
                 "upper_prior_path": _describe(bd_prior.upper)},
        "splits": splits,
        "ood_sets": ood_names,
        "inversion": {"train_over_generated": ratio,
                      "test_over_generated": float(err["test"].median() / err["generated"].median())
                      if float(err["generated"].median()) > 0 else math.inf},
        "auroc": table,
        "memorisation": memo,
        "correlation": correlations,
        "typicality": typicality,
        "timing": timing,
        "machine": {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "device": str(run.device),
                    "platform": platform.platform(), "load_average_at_start": list(load0) if load0 else None},
        "versions": _versions(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    summary["findings"] = verdicts.findings(summary)
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    summary = _finite(summary)

    if write:
        from .report import render_report

        t0 = time.perf_counter()
        out = Path(out_dir) if out_dir is not None else Path(run_dir) / "audit"
        out.mkdir(parents=True, exist_ok=True)
        arrays = {
            "images": images, "reconstructions": {k: inv[k].reconstructions.detach().float().cpu() for k in images},
            "errors": err, "log_likelihood": ll, "local_variance": lv, "model_ll": model_ll,
            "typicality_model": typ_model, "typicality_ood": typ_ood,
        }
        paths = {"report": str(out / "report.html"), "summary": str(out / "summary.json"),
                 "per_image": str(out / "per_image.safetensors")}
        summary["paths"] = paths
        tensors: Dict[str, Tensor] = {"model_samples.log_likelihood": model_ll, "bdmc.upper": upper}
        for name in [*images, "valid"]:
            tensors.update({f"{name}.errors": err[name], f"{name}.mse": mse[name], f"{name}.log_likelihood": ll[name],
                            f"{name}.z": inv[name].z.detach().cpu()})
            if name in lv:
                tensors[f"{name}.local_variance"] = lv[name]
        _atomic_tensors(Path(paths["per_image"]), tensors, {"format": "statgan-audit/1"})
        from ..rundir.files import atomic_write_bytes

        atomic_write_bytes(Path(paths["report"]), render_report(summary, arrays).encode("utf-8"))
        summary["timing"]["report"] = round(time.perf_counter() - t0, 2)
        summary["seconds"] = round(time.perf_counter() - t_start, 2)
        _atomic_json(Path(paths["summary"]), summary)
        say(f"audit: wrote {paths['report']} and {paths['summary']} ({summary['seconds']:.0f} s)")
    return summary
