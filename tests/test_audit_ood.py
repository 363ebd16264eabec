"""OOD scores (AUROC, local variance, correlation) and the download-free OOD image sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from statgan import audit
from statgan.data import ood
from statgan.errors import ConfigError, DatasetError

# one torch thread: small models run fastest so, and timings stay steady on a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")


def pairwise_auroc(a, b) -> float:
    """Independent O(n^2) definition: P(out > in) + P(out == in) / 2."""
    a, b = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    return float(((b > a) + 0.5 * (b == a)).mean())


@pytest.mark.parametrize("seed", range(4))
def test_auroc_matches_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    s_in = rng.integers(0, 6, size=37).astype(float)  # many ties, within and across groups
    s_out = rng.integers(2, 9, size=23).astype(float)
    assert audit.auroc(s_in, s_out) == pytest.approx(pairwise_auroc(s_in, s_out), abs=1e-12)
    assert audit.auroc(torch.tensor(s_in), torch.tensor(s_out)) == pytest.approx(pairwise_auroc(s_in, s_out), abs=1e-12)


def test_auroc_extremes_and_sklearn():
    assert audit.auroc([0, 1, 2], [3, 4]) == 1.0
    assert audit.auroc([3, 4], [0, 1, 2]) == 0.0
    assert audit.auroc([1, 1], [1, 1, 1]) == 0.5
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(0.5, size=150)
    ref = metrics.roc_auc_score(np.r_[np.zeros(200), np.ones(150)], np.r_[a, b])
    assert audit.auroc(a, b) == pytest.approx(ref, abs=1e-12)


def test_auroc_errors():
    with pytest.raises(ValueError, match=r"scores_in must be a non-empty 1-D tensor or array, got shape \(0,\)"):
        audit.auroc([], [1.0])
    with pytest.raises(ValueError, match="scores_out contains NaN"):
        audit.auroc([1.0], [float("nan")])


def test_local_variance_definition():
    # constant images: every patch has std 0 -> 0
    assert torch.equal(audit.local_variance(torch.full((2, 1, 16, 16), 0.3)), torch.zeros(2, dtype=torch.float64))
    # one 8x8 patch, half at u=0 and half at u=1: mean 0.5, std 0.5 -> CV = 0.5 / (0.5 + eps)
    x = -torch.ones(1, 1, 8, 8)
    x[..., :4] = 1.0
    assert audit.local_variance(x, eps=1e-2).item() == pytest.approx(0.5 / 0.51)
    # 28 px: the central 24 x 24 (3 x 3 patches); the 2-px border is ignored
    y = -torch.ones(1, 1, 28, 28)
    y[..., :2, :] = 1.0
    assert audit.local_variance(y).item() == 0.0
    # 3 channels are averaged to gray first; a colour-constant image scores 0
    c = torch.stack([torch.full((16, 16), v) for v in (-1.0, 0.0, 1.0)])[None]
    assert audit.local_variance(c).item() == 0.0
    # a brute-force reference on random images
    z = torch.rand(3, 1, 16, 16) * 2 - 1
    u = (z.double() + 1) / 2
    ref = []
    for img in u[:, 0]:
        cvs = [(p.std(unbiased=False) / (p.mean() + 1e-2)).item()
               for p in (img[i:i + 8, j:j + 8] for i in (0, 8) for j in (0, 8))]
        ref.append(sum(cvs) / 4)
    assert torch.allclose(audit.local_variance(z), torch.tensor(ref, dtype=torch.float64))


def test_local_variance_errors():
    with pytest.raises(ValueError, match=r"images must be a float tensor \(N, C, H, W\)"):
        audit.local_variance(torch.zeros(4, 28, 28))
    with pytest.raises(ValueError, match="smaller than one 8x8 patch"):
        audit.local_variance(torch.zeros(1, 1, 4, 4))


def test_correlation():
    x = np.arange(20.0)
    r = audit.correlation(x, x**3)
    assert r.r == pytest.approx(1.0) and r.method == "spearman" and r.n == 20 and r.pvalue < 1e-6
    assert audit.correlation(x, -x, method="pearson").r == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same length, got 20 and 3"):
        audit.correlation(x, [1, 2, 3])
    with pytest.raises(ValueError, match="method must be 'spearman' or 'pearson', got 'kendall'"):
        audit.correlation(x, x, method="kendall")


# ---- OOD image sets ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference():
    g = torch.Generator().manual_seed(0)
    x = -torch.ones(50, 1, 28, 28)
    x[:, :, 8:20, 10:18] = torch.rand(50, 1, 12, 8, generator=g) * 2 - 1  # "strokes"
    return x


def test_builtin_sets_shape_range_and_determinism(reference):
    sets = ood.ood_sets(reference, 30, seed=0, names=list(ood.OOD_SETS))
    assert list(sets) == list(ood.OOD_SETS)
    for name, x in sets.items():
        assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32, name
        assert x.min() >= -1 and x.max() <= 1, name
    again = ood.ood_sets(reference, 30, seed=0, names=["inverted", "glyphs"])
    assert torch.equal(again["glyphs"], sets["glyphs"]) and torch.equal(again["inverted"], sets["inverted"])
    assert not torch.equal(ood.ood_sets(reference, 30, seed=1, names=["glyphs"])["glyphs"], sets["glyphs"])
    # glyphs: light ink on a dark background; constants are constant; inverted flips references
    g = sets["glyphs"]
    assert (g.flatten(1).median(1).values == -1).all() and (g.flatten(1).max(1).values > 0.5).all()
    c = sets["constant"].flatten(1)
    assert torch.equal(c.min(1).values, c.max(1).values)
    assert all(any(torch.equal(-img, r) for r in reference) for img in sets["inverted"][:5])
    # blurred images are smoother than the references: less total variation
    tv = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert tv(sets["blurred"]) < 0.5 * tv(reference)


def test_colour_reference_and_more_images_than_reference():
    ref = torch.rand(4, 3, 32, 32) * 2 - 1
    sets = ood.ood_sets(ref, 10, names=["glyphs", "blurred", "noise"])
    assert all(x.shape == (10, 3, 32, 32) for x in sets.values())


def test_default_names_skip_missing_external_sets_but_explicit_names_raise(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("STATGAN_DATA", str(tmp_path))  # nothing there
    sets = ood.ood_sets(reference, 5)
    assert set(sets) == set(ood.OOD_SETS)
    with pytest.raises(DatasetError, match="fashion-mnist: no IDX file t10k-images-idx3-ubyte"):
        ood.ood_sets(reference, 5, names=["fashion-mnist"], root=str(tmp_path))


def test_external_set_from_local_idx_files(reference, tmp_path):
    import gzip
    import struct

    imgs = np.random.default_rng(0).integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">IIII", 0x803, 12, 28, 28) + imgs.tobytes())
    sets = ood.ood_sets(torch.zeros(2, 3, 32, 32), 5, names=["fashion-mnist"], root=str(tmp_path))
    assert sets["fashion-mnist"].shape == (5, 3, 32, 32)


def test_ood_set_errors(reference):
    with pytest.raises(ConfigError, match="unknown OOD set 'stripes'; expected one of: glyphs"):
        ood.ood_sets(reference, 5, names=["stripes"])
    with pytest.raises(ConfigError, match=r"reference images must be a float tensor \(N, C, H, W\)"):
        ood.ood_sets(torch.zeros(5, 28, 28), 5)
    with pytest.raises(ConfigError, match="n must be a positive integer, got 0"):
        ood.ood_sets(reference, 0)
