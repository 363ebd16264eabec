r"""Streaming feature statistics (mean and covariance) and their on-disk cache.

FID needs the mean :math:`\mu` and covariance :math:`\Sigma` of tens of thousands of 2,048-d feature
vectors. :class:`FeatureStats` accumulates them batch by batch in float64 with the parallel
(pairwise) update of Chan, Golub & LeVeque (1979, "Updating formulae and a pairwise algorithm for
computing sample variances"): every batch is reduced to ``(n_b, mean_b, M2_b)`` with
:math:`M2_b = \sum_i (x_i - \bar x_b)(x_i - \bar x_b)^\top` computed from *centred* data, and two
partial results combine exactly as

.. math:: n = n_a + n_b,\quad \delta = \bar x_b - \bar x_a,\quad
          \bar x = \bar x_a + \delta\, n_b / n,\quad
          M2 = M2_a + M2_b + \delta\delta^\top\, n_a n_b / n .

Why not a running sum of :math:`x x^\top`: :math:`\mathrm{Cov} = E[xx^\top] - \mu\mu^\top` cancels
catastrophically when :math:`|\mu| \gg \sigma` (features with mean 1e4 and std 1 lose 8 of float64's
16 digits and *all* of float32's 7). Centring each batch first keeps every summand of the order of
the variance. The same merge combines shards computed on different workers (:meth:`FeatureStats.merge`).

Reference statistics (a dataset's features) are cached content-addressed: :func:`stats_cache_key`
hashes everything that determines them (extractor, preprocessing, dataset, split, N, ...) and
:func:`cached_stats` stores ``<key>.npz`` under :func:`cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch

from ..runtime.cache import cache_home
from ..errors import ConfigError, StatganError

ArrayLike = Union[torch.Tensor, np.ndarray]

__all__ = ["FeatureStats", "cache_dir", "stats_cache_key", "cached_stats"]


# --- input conversion shared by the metric modules ------------------------------------------------
def as_numpy(x: Any, name: str = "features", ndim: int = 2) -> np.ndarray:
    """``x`` (torch tensor or array-like of real numbers) as a numpy array of ``ndim`` dimensions.

    Keeps float32/float64 as they are (callers decide where to upcast, so that a 50,000 x 2,048
    float32 feature matrix is not copied to float64 as a whole); float16/bfloat16 and integer
    input become float32. Raises a one-line :class:`ConfigError` on a wrong shape or dtype and a
    :class:`StatganError` on NaN/inf, which would otherwise silently poison every metric.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex() or t.dtype == torch.bool:
            raise ConfigError(f"{name}: expected real-valued features, got dtype {t.dtype}")
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float32)
        arr = t.cpu().numpy()
    else:
        arr = np.asarray(x)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ConfigError(f"{name}: expected real-valued features, got dtype {arr.dtype}")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
    if arr.ndim != ndim:
        want = {1: "(D,)", 2: "(N, D)"}.get(ndim, f"{ndim}-d")
        raise ConfigError(f"{name}: expected a {ndim}-d array {want}, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise StatganError(f"{name}: contains NaN or inf values (shape {tuple(arr.shape)})")
    return arr


# --- streaming statistics -------------------------------------------------------------------------
class FeatureStats:
    """Streaming float64 mean and (unbiased) covariance of feature vectors.

    >>> fs = FeatureStats()
    >>> for batch in batches:           # (B, D) tensors or arrays, any float dtype
    ...     fs.update(batch)
    >>> fs.mean, fs.cov, fs.n

    Internally keeps ``n``, the float64 mean and the float64 centred scatter matrix ``M2``
    (``cov = M2 / (n - 1)``); see the module docstring for the update formula.
    """

    def __init__(self, dim: Optional[int] = None) -> None:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1):
            raise ConfigError(f"FeatureStats: dim must be a positive integer or None, got {dim!r}")
        self.dim: Optional[int] = None if dim is None else int(dim)
        self.n: int = 0
        self._mean: Optional[np.ndarray] = None
        self._m2: Optional[np.ndarray] = None
        if self.dim is not None:
            self._mean = np.zeros(self.dim, dtype=np.float64)
            self._m2 = np.zeros((self.dim, self.dim), dtype=np.float64)

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim})"

    # -- accumulation --
    def _check_dim(self, d: int, what: str) -> None:
        if self.dim is not None and d != self.dim:
            raise ConfigError(f"FeatureStats: {what} has feature dimension {d}, expected {self.dim}")

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        """Chan et al.'s pairwise merge of ``(n_b, mean_b, M2_b)`` into ``self`` (in place)."""
        if n_b == 0:
            return
        if self.n == 0:
            self.dim = mean_b.shape[0]
            self.n, self._mean, self._m2 = n_b, mean_b.copy(), m2_b.copy()
            return
        assert self._mean is not None and self._m2 is not None
        n_a = self.n
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        # M2 += M2_b + delta delta^T n_a n_b / n   (all terms O(variance): no cancellation)
        self._m2 = self._m2 + m2_b
        self._m2 += np.multiply.outer(delta, delta * (n_a * n_b / n))
        self.n = n

    def update(self, feats: ArrayLike) -> None:
        """Add a batch of feature vectors ``feats`` of shape (B, D)."""
        x = as_numpy(feats, "FeatureStats.update(feats)", ndim=2)
        self._check_dim(x.shape[1], f"a batch of shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return
        x = x.astype(np.float64, copy=False)
        mean_b = x.mean(axis=0)
        xc = x - mean_b  # centre *before* the outer products: the numerically important step
        m2_b = xc.T @ xc
        self._combine(x.shape[0], mean_b, m2_b)

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """A new :class:`FeatureStats` for the union of the samples behind ``self`` and ``other``.

        Exact up to rounding (the same formula as :meth:`update`); neither operand is modified.
        """
        if not isinstance(other, FeatureStats):
            raise ConfigError(f"FeatureStats.merge: expected a FeatureStats, got {type(other).__name__}")
        if self.dim is not None and other.dim is not None and self.dim != other.dim:
            raise ConfigError(f"FeatureStats.merge: feature dimensions differ ({self.dim} vs {other.dim})")
        out = FeatureStats(self.dim if self.dim is not None else other.dim)
        for part in (self, other):
            if part.n:
                assert part._mean is not None and part._m2 is not None
                out._combine(part.n, part._mean, part._m2)
        return out

    # -- results --
    @property
    def mean(self) -> np.ndarray:
        """The sample mean, shape (D,), float64."""
        if self.n < 1 or self._mean is None:
            raise StatganError("FeatureStats.mean: no features were added (n = 0)")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """The unbiased sample covariance ``M2 / (n - 1)``, shape (D, D), float64."""
        if self.n < 2 or self._m2 is None:
            raise StatganError(f"FeatureStats.cov: needs at least 2 feature vectors, got n = {self.n}")
        # M2 is symmetric by construction only up to rounding of xc.T @ xc; make it exact.
        m2 = 0.5 * (self._m2 + self._m2.T)
        return m2 / (self.n - 1)

    # -- persistence --
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write ``mu``, ``sigma`` (unbiased covariance) and ``n`` to the .npz file ``path``.

        The layout (``mu``/``sigma``) is the one of pytorch-fid's precomputed statistics. The file is
        written to a temporary name in the same folder and moved into place with ``os.replace``, so
        a crash or a concurrent reader never sees a half-written file.
        """
        if self.n < 1 or self._mean is None or self._m2 is None:
            raise StatganError(f"FeatureStats.save: nothing to save to {os.fspath(path)} (n = 0)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sigma = 0.5 * (self._m2 + self._m2.T) / max(self.n - 1, 1)  # n = 1: M2 = 0, sigma = 0
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, mu=self._mean, sigma=sigma, n=np.int64(self.n))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "FeatureStats":
        """Read a file written by :meth:`save` (or any .npz with ``mu``, ``sigma`` and ``n``)."""
        where = os.fspath(path)
        try:
            z = np.load(where, allow_pickle=False)
            if not hasattr(z, "files"):  # a plain .npy loads as an array, not an NpzFile
                raise StatganError(f"feature statistics file {where} is not an .npz archive: expected mu, sigma, n")
            with z:
                found = list(z.files)
                missing = [key for key in ("mu", "sigma", "n") if key not in found]
                if missing:
                    raise StatganError(
                        f"feature statistics file {where} lacks {missing}: expected an .npz with mu, sigma, n, found {found}"
                    )
                mu = np.asarray(z["mu"], dtype=np.float64)
                sigma = np.asarray(z["sigma"], dtype=np.float64)
                n_arr = np.asarray(z["n"])
        except FileNotFoundError:
            raise StatganError(f"feature statistics file not found: {where}") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise StatganError(
                f"corrupt feature statistics file {where}: expected an .npz with mu, sigma, n ({type(e).__name__}: {e})"
            ) from None
        if n_arr.shape != () or not np.issubdtype(n_arr.dtype, np.integer) or int(n_arr) < 1:
            raise StatganError(f"corrupt feature statistics file {where}: n must be a positive integer, got {n_arr!r}")
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]) or mu.shape[0] == 0:
            raise StatganError(
                f"corrupt feature statistics file {where}: mu {mu.shape} and sigma {sigma.shape} do not match (D,) and (D, D)"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise StatganError(f"corrupt feature statistics file {where}: mu/sigma contain NaN or inf")
        n = int(n_arr)
        fs = cls(mu.shape[0])
        fs.n, fs._mean, fs._m2 = n, mu, sigma * max(n - 1, 1)
        return fs


# --- content-addressed cache ----------------------------------------------------------------------
def cache_dir() -> Path:
    """The folder for cached statistics: ``$STATGAN_CACHE/stats``, else ``~/.cache/statgan/stats``.

    Never inside the installed package (site-packages may be read-only and is shared between users).
    The folder is not created here; :func:`cached_stats` creates it when it writes.
    """
    return cache_home() / "stats"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(type(obj).__name__)


def stats_cache_key(**parts: Any) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of ``parts``.

    Canonical: keys sorted, no whitespace, so the key depends only on the values (and not on the
    keyword order). Pass everything the statistics depend on, e.g.
    ``stats_cache_key(extractor="inception-v3-compat", preprocess="tf-resize-299", dataset="cifar10",
    split="train", n=50000)``. Values must be JSON-serialisable (numbers, strings, lists, dicts;
    numpy scalars and paths are converted).
    """
    try:
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_json_default)
    except (TypeError, ValueError) as e:
        bad = [k for k, v in parts.items() if not _serialisable(v)]
        raise ConfigError(
            f"stats_cache_key: part(s) {bad or list(parts)} are not JSON-serialisable ({e}); expected numbers, strings, lists or dicts"
        ) from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _serialisable(v: Any) -> bool:
    try:
        json.dumps(v, default=_json_default)
        return True
    except (TypeError, ValueError):
        return False


def cached_stats(
    key_parts: Dict[str, Any], compute: Callable[[], FeatureStats], cache: bool = True
) -> FeatureStats:
    """Statistics for ``key_parts``: loaded from ``cache_dir()/<key>.npz`` if present, else computed.

    ``compute()`` is called only on a cache miss (or with ``cache=False``). A corrupt or unreadable
    cache file is reported with a warning and recomputed (then overwritten), never fatal; a cache
    folder that cannot be written to only costs a warning.
    """
    if not cache:
        return _checked(compute())
    key = stats_cache_key(**key_parts)
    path = cache_dir() / f"{key}.npz"
    if path.exists():
        try:
            return FeatureStats.load(path)
        except StatganError as e:
            warnings.warn(f"ignoring unreadable cached statistics, recomputing: {e}", RuntimeWarning, stacklevel=2)
    stats = _checked(compute())
    try:
        stats.save(path)
    except (OSError, StatganError) as e:
        warnings.warn(f"could not write cached statistics to {path}: {e}", RuntimeWarning, stacklevel=2)
    return stats


def _checked(stats: Any) -> FeatureStats:
    if not isinstance(stats, FeatureStats):
        raise StatganError(f"cached_stats: compute() must return a FeatureStats, got {type(stats).__name__}")
    return stats
