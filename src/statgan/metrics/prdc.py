r"""Precision, recall, density and coverage of generated samples, by k-nearest-neighbour balls.

Naeem, Oh, Uh, Choi & Yoo 2020, "Reliable Fidelity and Diversity Metrics for Generative Models"
(ICML), building on the improved precision and recall of Kynkäänniemi, Karras, Laine, Lehtinen &
Aila 2019 (NeurIPS). With real features :math:`X_1..X_N`, fake features :math:`Y_1..Y_M` and
:math:`B(x, r) = \{y : \|y - x\| < r\}`:

* :math:`r_i = \mathrm{NND}_k(X_i)`: distance from :math:`X_i` to its k-th nearest neighbour among the
  other real points (self excluded); likewise :math:`s_j = \mathrm{NND}_k(Y_j)` among the fakes.
* precision :math:`= \frac1M \sum_j 1[\exists i: Y_j \in B(X_i, r_i)]` (fake inside the real manifold);
* recall :math:`= \frac1N \sum_i 1[\exists j: X_i \in B(Y_j, s_j)]` (real inside the fake manifold);
* density :math:`= \frac{1}{kM} \sum_j \sum_i 1[Y_j \in B(X_i, r_i)]`;
* coverage :math:`= \frac1N \sum_i 1[\exists j: Y_j \in B(X_i, r_i)]`.

Precision and recall use ``pr_k`` neighbours when given (Kynkäänniemi et al. use k = 3), density
and coverage use ``k`` (Naeem et al. use k = 5); with ``pr_k=None`` all four use ``k``, like the
``prdc`` reference package. Balls are open (strict ``<``), as in that package.

For identical continuous distributions, E[density] = 1 exactly and
E[coverage] = 1 - prod_{t<k} (N-1-t)/(N+M-1-t) (→ 1 - 2^-k for N = M → ∞), whatever the dimension.

Computation is blocked on both sides: only ``block_size x block_size`` distance tiles exist at any
time (never an N x M matrix), the k smallest distances per row are kept in a running
``(block_size, k)`` buffer merged with each tile by ``torch.topk``, and the four statistics are
accumulated tile by tile in O(N + M) vectors. Peak extra memory is a few ``block_size²`` tiles
(4096² float32 = 64 MiB each).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, StatganError

__all__ = ["prdc"]


def _as_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ConfigError(f"prdc: {name} must be real-valued, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or t.dtype == torch.bool:
        raise ConfigError(f"prdc: {name} must be real-valued, got dtype {t.dtype}")
    if t.ndim != 2:
        raise ConfigError(f"prdc: {name} must be a 2-d array (N, D), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise StatganError(f"prdc: {name} contains NaN or inf values")
    return t


def _sq_dists(a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of ``a`` (p, d) and ``b`` (q, d): a (p, q) tile.

    ‖a‖² + ‖b‖² − 2 a·b as *one* matrix product of augmented rows ``[a, ‖a‖², 1] · [−2b, 1, ‖b‖²]``, so
    the tile is written once by BLAS instead of being swept again by broadcast additions (the
    augmentation costs O((p + q) d), the product O(p q d)); clamped at 0 against rounding. The only
    function that allocates a pairwise tile (the memory test counts on that).
    """
    one_a = torch.ones_like(a_sq)[:, None]
    one_b = torch.ones_like(b_sq)[:, None]
    lhs = torch.cat([a, a_sq[:, None], one_a], dim=1)
    rhs = torch.cat([b * -2.0, one_b, b_sq[:, None]], dim=1)
    return torch.mm(lhs, rhs.T).clamp_(min=0.0)


def _knn_sq_radii(x: Tensor, x_sq: Tensor, kmax: int, bs: int) -> Tensor:
    """(n, kmax) ascending squared distances to the kmax nearest *other* rows of ``x``, blocked."""
    n = x.shape[0]
    out = torch.empty(n, kmax, dtype=x.dtype, device=x.device)
    for i0 in range(0, n, bs):
        i1 = min(i0 + bs, n)
        best: Optional[Tensor] = None
        for j0 in range(0, n, bs):
            j1 = min(j0 + bs, n)
            tile = _sq_dists(x[i0:i1], x[j0:j1], x_sq[i0:i1], x_sq[j0:j1])
            if i0 == j0:  # same (square) block: exclude each point from its own neighbours
                tile.diagonal().fill_(float("inf"))
            # k smallest of the tile first (one pass, row-wise topk is fast on contiguous rows), then
            # merge with the running best in a tiny (rows, 2k) buffer: no copy of the tile.
            cand = torch.topk(tile, min(kmax, tile.shape[1]), dim=1, largest=False, sorted=False).values
            del tile
            if best is not None:
                cand = torch.cat([best, cand], dim=1)
            best = torch.topk(cand, min(kmax, cand.shape[1]), dim=1, largest=False, sorted=True).values
        assert best is not None and best.shape[1] == kmax
        out[i0:i1] = best
    return out


def _check_k(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ConfigError(f"prdc: {name} must be a positive integer, got {v!r}")
    return int(v)


def prdc(real: Any, fake: Any, k: int = 5, pr_k: Optional[int] = None, block_size: int = 4096) -> Dict[str, float]:
    """Precision, recall, density and coverage (see the module docstring for definitions).

    Args:
        real: real features (N, D); torch tensor (any device: computed there) or numpy array.
        fake: generated features (M, D).
        k: neighbours for density and coverage (and for precision/recall when ``pr_k`` is None).
        pr_k: neighbours for precision and recall (Kynkäänniemi et al.: 3).
        block_size: rows and columns per distance tile; memory is O(block_size²).

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as Python floats. Distances are computed
        in float64 if either input is float64, else float32.
    """
    k = _check_k("k", k)
    kp = k if pr_k is None else _check_k("pr_k", pr_k)
    bs = _check_k("block_size", block_size)
    xr = _as_tensor(real, "real")
    xf = _as_tensor(fake, "fake")
    if xr.shape[1] != xf.shape[1]:
        raise ConfigError(f"prdc: feature dimensions differ: real {tuple(xr.shape)} vs fake {tuple(xf.shape)}")
    n, m = xr.shape[0], xf.shape[0]
    if max(k, kp) > n - 1:
        raise ConfigError(f"prdc: k = {max(k, kp)} needs at least {max(k, kp) + 1} real samples, got {n}")
    if kp > m - 1:
        raise ConfigError(f"prdc: {'pr_k' if pr_k is not None else 'k'} = {kp} needs at least {kp + 1} fake samples, got {m}")

    dtype = torch.float64 if torch.float64 in (xr.dtype, xf.dtype) else torch.float32
    device = xr.device
    # Distances are translation invariant: centring on the real mean (computed in float64) removes a
    # common offset before the ‖a‖² + ‖b‖² − 2a·b expansion, which would otherwise cancel badly in float32.
    # (The sum is accumulated in float64 without a float64 copy of the features.)
    center = (xr.sum(0, dtype=torch.float64) / n).to(dtype)
    xr = (xr.to(dtype) - center).contiguous()
    xf = (xf.to(device, dtype) - center).contiguous()
    r_sq = (xr * xr).sum(1)
    f_sq = (xf * xf).sum(1)

    # k-NN radii (squared: comparisons of squared distances give the same answers, no sqrt needed).
    real_knn = _knn_sq_radii(xr, r_sq, max(k, kp), bs)
    real_rk = real_knn[:, k - 1].contiguous()
    real_rp = real_knn[:, kp - 1].contiguous()
    fake_rp = _knn_sq_radii(xf, f_sq, kp, bs)[:, kp - 1].contiguous()
    del real_knn

    in_real = torch.zeros(m, dtype=torch.bool, device=device)  # precision: fake j in some real pr_k-ball
    density_count = 0  # pairs (fake j, real i) with fake j inside real k-ball i (only the total is needed)
    covered = torch.zeros(n, dtype=torch.bool, device=device)  # coverage: real k-ball i holds some fake
    in_fake = torch.zeros(n, dtype=torch.bool, device=device)  # recall: real i in some fake pr_k-ball
    for f0 in range(0, m, bs):
        f1 = min(f0 + bs, m)
        rad_f = fake_rp[f0:f1, None]
        for r0 in range(0, n, bs):
            r1 = min(r0 + bs, n)
            tile = _sq_dists(xf[f0:f1], xr[r0:r1], f_sq[f0:f1], r_sq[r0:r1])  # (fake, real)
            inside_k = tile < real_rk[None, r0:r1]
            density_count += int(torch.count_nonzero(inside_k))  # (count_nonzero: far faster than bool .sum)
            covered[r0:r1] |= inside_k.any(0)
            inside_p = inside_k if kp == k else tile < real_rp[None, r0:r1]
            in_real[f0:f1] |= inside_p.any(1)
            in_fake[r0:r1] |= (tile < rad_f).any(0)
            del tile, inside_k, inside_p

    return {
        "precision": float(in_real.double().mean()),
        "recall": float(in_fake.double().mean()),
        "density": density_count / (k * m),
        "coverage": float(covered.double().mean()),
    }
