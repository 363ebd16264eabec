"""`statgan sample`: output formats, upscaled grids, falling back past a corrupt checkpoint."""

from __future__ import annotations

import struct

import pytest
import torch
from safetensors.torch import load_file

from statgan.cli import main
from statgan.rundir import checkpoint as ckpt

from conftest import tiny_dcgan_overrides


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    argv = ["train", "mnist5k-dcgan", *tiny_dcgan_overrides(root, **{"train.steps": 8, "train.checkpoint_every": 4})]
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
    (["--out", "x.txt"], "--out 'x.txt': expected a file ending in .png, .safetensors, .npz"),
    (["--out", "grid"], "or a folder DIR/ (one PNG per sample)"),
    (["--scale", "0"], "--scale must be an integer >= 1, got 0"),
    (["-n", "0"], "-n must be an integer >= 1, got 0"),
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


# ---- w-space pictures: --truncation, --style-mix, statgan interpolate ----------------------------
@pytest.fixture(scope="module")
def style_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    argv = ["train", "mnist5k-dcgan", *tiny_dcgan_overrides(root, **{
        "run.name": "sg", "model.arch": "stylegan", "model.generator": "{width: 4, max_width: 8, w_dim: 8, mapping_layers: 2}",
        "model.discriminator": "{width: 4, max_width: 8}", "train.steps": 4, "train.batch_size": 8})]
    assert main(argv) == 0
    return root / "sg"


def test_truncation_psi_0_gives_one_image_and_psi_1_the_plain_samples(style_run, tmp_path, capsys):
    assert main(["sample", str(style_run), "-n", "3", "--truncation", "0", "--out", str(tmp_path / "t0.safetensors")]) == 0
    assert main(["sample", str(style_run), "-n", "3", "--truncation", "1", "--out", str(tmp_path / "t1.safetensors")]) == 0
    assert main(["sample", str(style_run), "-n", "3", "--out", str(tmp_path / "plain.safetensors")]) == 0
    t0, t1, plain = (load_file(str(tmp_path / f"{n}.safetensors"))["samples"] for n in ("t0", "t1", "plain"))
    assert torch.allclose(t0, t0[:1].expand_as(t0), atol=1e-6) and torch.equal(t1, plain)
    assert not torch.allclose(plain[0], plain[1])
    assert "truncation psi=0" in capsys.readouterr().out


def test_style_mix_grid_and_latent_walks_are_pngs_of_the_expected_size(style_run, tmp_path):
    assert main(["sample", str(style_run), "--style-mix", "--mix-grid", "2x3", "--out", str(tmp_path / "mix.png")]) == 0
    assert _png_size(tmp_path / "mix.png") == (4 * 28 + 5 * 2, 3 * 28 + 4 * 2)  # sources + 2x3 mixes, padding 2
    for space in ("z", "w"):
        out = tmp_path / f"walk-{space}.png"
        assert main(["interpolate", str(style_run), "--space", space, "--steps", "3", "-n", "2", "--out", str(out)]) == 0
        assert _png_size(out) == (3 * 28 + 4 * 2, 2 * 28 + 3 * 2)


def test_z_walk_works_for_any_arch(run, tmp_path):
    assert main(["interpolate", str(run), "--steps", "4", "-n", "1", "--out", str(tmp_path / "walk.png")]) == 0
    assert _png_size(tmp_path / "walk.png") == (4 * 28 + 5 * 2, 28 + 2 * 2)


@pytest.mark.parametrize("which, argv, fragment", [
    ("dcgan", ["sample", "--truncation", "0.5"], "--truncation needs an intermediate latent w"),
    ("dcgan", ["sample", "--style-mix"], "--style-mix needs an intermediate latent w"),
    ("dcgan", ["interpolate", "--space", "w"], "--space w needs an intermediate latent w"),
    ("style", ["sample", "--style-mix", "--mix-grid", "0x3"], "--mix-grid '0x3': expected ROWSxCOLS"),
    ("style", ["sample", "--style-mix", "--out", "m.safetensors"], "--style-mix draws a picture"),
    ("style", ["sample", "--style-mix", "--crossover", "9"], "--crossover 9: expected a layer in 1..5"),
    ("style", ["sample", "--truncation", "nan"], "--truncation nan: expected a finite number"),
    ("style", ["interpolate", "--steps", "1"], "--steps must be at least 2"),
    ("style", ["interpolate", "--out", "walk.jpg"], "--out 'walk.jpg': expected a file ending in .png"),
])
def test_bad_w_space_arguments_are_one_line_errors(run, style_run, tmp_path, capsys, monkeypatch, which, argv, fragment):
    monkeypatch.chdir(tmp_path)
    target = run if which == "dcgan" else style_run
    assert main([argv[0], str(target), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("statgan: error:") and fragment in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written
