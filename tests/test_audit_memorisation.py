"""The data-copying test C_T (Meehan, Chaudhuri & Dasgupta 2020): strongly negative for a copier,
centred on 0 with its stated null spread for a fresh sampler of the same distribution."""

from __future__ import annotations

import math

import pytest
import torch

from statgan.audit.memorisation import data_copying_test, nearest_distances
from statgan.errors import StatganError

pytestmark = pytest.mark.usefixtures("one_thread")

D = 8


def mixture(n: int, g: torch.Generator) -> torch.Tensor:
    """A 4-component Gaussian mixture in D dimensions (k-means has cells to find)."""
    centres = torch.tensor([[4.0 * (i % 2), 4.0 * (i // 2)] + [0.0] * (D - 2) for i in range(4)])
    return centres[torch.randint(0, 4, (n,), generator=g)] + torch.randn(n, D, generator=g)


def test_nearest_distances_match_brute_force():
    g = torch.Generator().manual_seed(0)
    x, ref = torch.randn(30, D, generator=g, dtype=torch.float64), torch.randn(50, D, generator=g, dtype=torch.float64)
    brute = torch.tensor([min(float((a - b).norm()) for b in ref) for a in x], dtype=torch.float64)
    assert torch.allclose(nearest_distances(x, ref, batch=7), brute)


def test_a_copier_is_strongly_negative():
    g = torch.Generator().manual_seed(1)
    train, held = mixture(400, g), mixture(200, g)
    copies = train[torch.randint(0, 400, (200,), generator=g)] + 0.01 * torch.randn(200, D, generator=g)
    res = data_copying_test(train, held, copies, n_cells=4, seed=0)
    # each used cell compares ~50 near-zero distances with ~50 typical ones: Z_c ~ -sqrt(3 m n / (m + n + 1)) ~ -8.6
    assert res.cells_used == 4 and res.c_t < -6 and res.pvalue < 1e-9
    assert sum(res.cell_weights) == pytest.approx(1.0) and len(res.cell_z) == 4


def test_a_fresh_sampler_is_null_within_its_spread():
    # 150 replicates of a sampler that draws new points of the training distribution: C_T / null_sd
    # should be ~N(0, 1). Mean: se 1 / sqrt(150) = 0.08 -> |mean| < 0.33 (4 se); sd: the sample sd of
    # 150 normals has se ~ 1 / sqrt(300) = 0.058 -> within 0.75..1.25 (~4 se).
    g = torch.Generator().manual_seed(2)
    z = []
    for r in range(150):
        train, held, fresh = mixture(300, g), mixture(120, g), mixture(120, g)
        res = data_copying_test(train, held, fresh, n_cells=3, seed=r)
        z.append(res.c_t / res.null_sd)
    z = torch.tensor(z, dtype=torch.float64)
    assert abs(float(z.mean())) < 4 / math.sqrt(150)
    assert 0.75 < float(z.std()) < 1.25


def test_an_underfitting_sampler_is_positive_and_small_sets_fail_clearly():
    g = torch.Generator().manual_seed(3)
    train, held = mixture(300, g), mixture(100, g)
    blurry = 1.8 * mixture(100, g)  # spread out: farther from the training points than new data
    assert data_copying_test(train, held, blurry, n_cells=2).c_t > 3
    with pytest.raises(StatganError, match="no cell has 5 held-out and 5 generated samples"):
        data_copying_test(train, held[:3], blurry[:3])
    with pytest.raises(StatganError, match="same size per sample"):
        data_copying_test(train, held[:, :3], blurry)


def test_distances_are_to_the_nearest_training_image_of_the_same_cell():
    # Meehan et al.'s reference code: a point's distance is to the nearest training point *in its own
    # cell*. Recomputed by brute force from the cells k-means gives (the nearest of the returned
    # centres), the per-cell Mann-Whitney z-scores must be C_T's; points near a border whose nearest
    # training point lies across it make the two definitions differ.
    from scipy.cluster.vq import kmeans2
    from scipy.stats import mannwhitneyu
    import numpy as np

    g = torch.Generator().manual_seed(4)
    train, held, gen = (mixture(n, g).double() for n in (300, 120, 120))
    res = data_copying_test(train, held, gen, n_cells=4, seed=11)
    assert res.neighbours == "within cell"
    centres, _ = kmeans2(train.numpy(), 4, minit="++", seed=np.random.default_rng(11))
    centres = torch.from_numpy(np.asarray(centres, dtype=np.float64))

    def cell(x):
        return torch.cdist(x, centres).argmin(1)

    ct, cp, cq = cell(train), cell(held), cell(gen)
    zs, zs_anywhere = [], []
    for c in range(4):
        t, p, q = train[ct == c], held[cp == c], gen[cq == c]
        if len(p) < 5 or len(q) < 5:
            continue
        m, n = len(q), len(p)
        for out, ref in ((zs, t), (zs_anywhere, train)):
            dq = [min(float((a - b).norm()) for b in ref) for a in q]
            dp = [min(float((a - b).norm()) for b in ref) for a in p]
            u = mannwhitneyu(dq, dp, alternative="two-sided").statistic
            out.append((u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12))
    assert res.cell_z == pytest.approx(tuple(zs), abs=1e-9)
    assert tuple(zs_anywhere) != pytest.approx(tuple(zs), abs=1e-6)  # the old definition differs here
