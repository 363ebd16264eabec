"""`statgan sample`: output formats, upscaled grids, falling back past a corrupt checkpoint."""

from __future__ import annotations

import struct

import pytest
from safetensors.torch import load_file

from statgan.cli import main
from statgan.rundir import checkpoint as ckpt

from conftest import tiny_dcgan_overrides


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    argv = ["train", *tiny_dcgan_overrides(root, **{"train.steps": 8, "train.checkpoint_every": 4})]
    assert main(argv) == 0
    return root / "dcgan"


def _png_size(path):
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", blob[16:24])


def test_grid_scale_enlarges_every_pixel(run, tmp_path, capsys):
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "a.png")]) == 0
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "b.png"), "--scale", "3"]) == 0
    assert _png_size(tmp_path / "a.png") == (2 * 28 + 3 * 2,) * 2  # 2x2 grid, padding 2
    assert _png_size(tmp_path / "b.png") == (2 * 84 + 3 * 2,) * 2
    assert main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "c.safetensors")]) == 0
    t = load_file(str(tmp_path / "c.safetensors"))
    assert t["samples"].shape == (2, 1, 28, 28) and t["z"].shape == (2, 8)


@pytest.mark.parametrize("argv, fragment", [
    (["--out", "x.txt"], "--out 'x.txt': expected a file ending in .png or .safetensors"),
    (["--out", "grid"], "expected a file ending in .png or .safetensors"),
    (["--scale", "0"], "--scale must be an integer >= 1, got 0"),
    (["-n", "0"], "-n must be at least 1"),
])
def test_bad_sample_arguments_are_one_line_errors(run, tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("statgan: error:") and fragment in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_use_previous_skips_a_corrupt_latest_checkpoint(run, tmp_path, capsys):
    steps = [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")]
    assert steps == [4, 8]
    latest = run / "checkpoints" / "step-000008.safetensors"
    good = latest.read_bytes()
    try:
        latest.write_bytes(good[: len(good) // 2])
        assert main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert "step-000008.safetensors" in err and "corrupt or truncated" in err and "--use-previous" in err
        assert main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "x.png"), "--use-previous"]) == 0
        out, err = capsys.readouterr()
        assert "step 4" in out and err.startswith("statgan: warning:") and "step-000004.json" in err
    finally:
        latest.write_bytes(good)
