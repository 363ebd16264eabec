"""Checkpoints: safetensors + JSON, atomic, verified by hash, last K kept, never unpickled."""

import json
import os

import pytest
import torch

from statgan.errors import CheckpointError
from statgan.rundir import checkpoint as ckpt


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(4, 3, generator=g), "b": torch.arange(5), "rng": torch.get_rng_state()}


def test_roundtrip(tmp_path):
    t = _tensors()
    js = ckpt.save_checkpoint(tmp_path, 12, t, {"note": "x"}, keep=3)
    assert js.name == "step-000012.json" and (tmp_path / "step-000012.safetensors").exists()
    loaded, meta = ckpt.load_checkpoint(js)
    assert meta["step"] == 12 and meta["note"] == "x"
    for k in t:
        assert torch.equal(loaded[k], t[k])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_keeps_last_k(tmp_path):
    for step in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(tmp_path, step, _tensors(), {}, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000004.json", "step-000004.safetensors", "step-000005.json", "step-000005.safetensors"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000005.json"


def test_corrupt_tensor_file_is_refused_by_name(tmp_path):
    js = ckpt.save_checkpoint(tmp_path, 3, _tensors(), {}, keep=3)
    st = tmp_path / "step-000003.safetensors"
    blob = bytearray(st.read_bytes())
    blob[-1] ^= 0xFF
    st.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="step-000003.safetensors.*corrupt or truncated"):
        ckpt.load_checkpoint(js)


def test_truncated_files_are_refused(tmp_path):
    js = ckpt.save_checkpoint(tmp_path, 3, _tensors(), {}, keep=3)
    st = tmp_path / "step-000003.safetensors"
    st.write_bytes(st.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ckpt.load_checkpoint(js)
    js.write_text(js.read_text()[:20])
    with pytest.raises(CheckpointError, match="step-000003.json.*not valid JSON"):
        ckpt.load_checkpoint(js)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    ckpt.atomic_write_bytes(target, b"old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ckpt.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "step-000001.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not a statgan checkpoint"):
        ckpt.load_checkpoint(p)


def test_optimizer_state_roundtrip_continues_identically(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.9))
    x = torch.randn(8, 3)
    for _ in range(3):
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()
    tensors, meta = ckpt.pack_optimizer("opt", opt)
    tensors.update(ckpt.pack_module("net", net))
    js = ckpt.save_checkpoint(tmp_path, 3, tensors, {"opt": meta}, keep=1)
    loaded, m = ckpt.load_checkpoint(js)
    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.5)
    ckpt.unpack_module("net", net2, loaded, "x")
    ckpt.unpack_optimizer("opt", opt2, loaded, m["opt"], "x")
    assert opt2.param_groups[0]["lr"] == 1e-2
    assert tuple(opt2.param_groups[0]["betas"]) == (0.5, 0.9)
    for o, n in ((opt, net), (opt2, net2)):
        o.zero_grad()
        n(x).pow(2).sum().backward()
        o.step()
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)


def test_module_mismatch_names_source(tmp_path):
    tensors = ckpt.pack_module("G", torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match="src.json: weights for 'G' do not fit"):
        ckpt.unpack_module("G", torch.nn.Linear(4, 2), tensors, "src.json")


def test_atomic_write_gives_ordinary_file_permissions(tmp_path):
    import os
    import stat

    from statgan.rundir.files import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    # not mkstemp's private 0600: what open() would have made under umask 022
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
