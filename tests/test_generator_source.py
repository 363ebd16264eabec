"""statgan.generator_source: a generator from a run, a Python file or module, or a TorchScript /
torch.export file, behind one contract (flat N(0, I) latents -> samples on [-1, 1]), each mistake one
line; and the commands that take GENERATOR (sample, interpolate, eval, invert, audit, export)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from statgan.cli import main
from statgan.errors import StatganError
from statgan.generator_source import (
    GeneratorOptions,
    export_generator,
    load_generator_source,
    parse_latent_shape,
    parse_output_range,
    source_kind,
)

from conftest import tiny_dcgan_overrides

HERE = Path(__file__).resolve().parent
FOREIGN = HERE / "foreign_generators.py"


def spec(name: str) -> str:
    return f"{FOREIGN}:{name}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("source")
    assert main(["train", "mnist5k-dcgan", *tiny_dcgan_overrides(root)]) == 0
    return root / "dcgan"


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    assert main(["export", str(run_dir), "--out", str(out / "g.pt")]) == 0
    assert main(["export", str(run_dir), "--out", str(out / "g.pt2")]) == 0
    return out


# ---- parsing ------------------------------------------------------------------------------------------
def test_latent_shape_and_output_range_parse_or_say_what_is_expected():
    assert parse_latent_shape("100") == (100,)
    assert parse_latent_shape("100, 1, 1") == (100, 1, 1)
    assert parse_latent_shape(None) is None
    assert parse_output_range("0,1") == (0.0, 1.0) and parse_output_range("-1,1") == (-1.0, 1.0)
    for bad in ("", "0", "100,x", "1.5", "-3"):
        with pytest.raises(StatganError, match="--latent-shape"):
            parse_latent_shape(bad)
    for bad in ("1", "1,0", "a,b", "0,nan", "1,2,3"):
        with pytest.raises(StatganError, match="--output-range"):
            parse_output_range(bad)


def test_kinds(run_dir, exported):
    assert source_kind(run_dir) == "run"
    assert source_kind(exported / "g.pt") == "torchscript"
    assert source_kind(exported / "g.pt2") == "export"
    assert source_kind(spec("make_dcgan64")) == "module"
    assert source_kind("package.module:NAME") == "module"


# ---- a network from a Python file ------------------------------------------------------------------
def test_a_factory_in_a_file_meets_the_contract_and_is_named():
    g = load_generator_source(spec("make_dcgan64"), GeneratorOptions(latent_shape=(100, 1, 1)))
    ident = g.identity
    assert ident.kind == "module" and ident.latent_shape == (100, 1, 1) and g.latent_dim == 100
    assert ident.data_shape == (3, 64, 64) and g.run_dir is None and g.meta is None
    # the file's sha256, computed independently; the parameter count of the network
    assert ident.sha256 == hashlib.sha256(FOREIGN.read_bytes()).hexdigest()
    import foreign_generators as fg

    net = fg.make_dcgan64().eval()
    assert ident.parameters == sum(p.numel() for p in net.parameters())
    z = torch.randn(5, 100)
    with torch.no_grad():
        assert torch.equal(g.module(z), net(z.reshape(5, 100, 1, 1)))
        # eval mode: BatchNorm is a fixed function, so a sample does not depend on its batch
        assert torch.allclose(g.module(z[:1]), g.module(z)[:1], atol=1e-6)
    assert not any(m.training for m in g.module.modules())


def test_a_module_on_the_python_path_and_a_declared_latent_size():
    g = load_generator_source("foreign_generators:Declares", GeneratorOptions(output_range=(0.0, 1.0)))
    assert g.identity.latent_shape == (6,) and g.identity.data_shape == (1, 8, 8)
    net = g.module.net
    z = torch.randn(4, 6)
    with torch.no_grad():  # [0, 1] mapped affinely onto [-1, 1]
        assert torch.allclose(g.module(z), 2 * net(z) - 1, atol=1e-6)


def test_a_uniform_latent_is_fed_the_probability_integral_transform_of_z():
    g = load_generator_source("foreign_generators:Declares", GeneratorOptions(latent="uniform", output_range=(0.0, 1.0)))
    z = torch.linspace(-3, 3, 6).reshape(1, 6)
    u = torch.as_tensor(2 * stats.norm.cdf(z.double().numpy()) - 1, dtype=torch.float32)  # scipy: an independent CDF
    with torch.no_grad():
        assert torch.allclose(g.module(z), 2 * g.module.net(u) - 1, atol=1e-5)
    # the pushforward of N(0, 1) is U(-1, 1): a KS test on many draws (p-value, not a fixed tolerance)
    draws = (2 * torch.special.ndtr(torch.randn(20000, generator=torch.Generator().manual_seed(1))) - 1).numpy()
    assert stats.kstest(draws, stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3


@pytest.mark.parametrize("name, options, fragment", [
    ("missing_name", {}, "has no 'missing_name'; it has"),
    ("not_a_module", {}, "'not_a_module' is a int, expected an nn.Module"),
    ("make_dcgan64", {}, "declares no latent shape; give --latent-shape"),
    ("make_dcgan64", {"latent_shape": (100,)}, "failed on latents of shape (2, 100)"),
    ("Flat", {}, "returned shape (2, 64) for 2 latents; expected (2, C, H, W) images"),
    ("Loud", {}, "far outside its declared output range [-1, 1]; give --output-range"),
    ("NaNs", {}, "non-finite values"),
    ("TutorialDCGAN", {"latent_shape": (100, 1, 1), "latent": "cauchy"}, "--latent 'cauchy'"),
])
def test_bad_generators_are_one_line(name, options, fragment):
    with pytest.raises(StatganError) as info:
        load_generator_source(spec(name), GeneratorOptions(**options))
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg, msg


def test_missing_files_and_modules_are_one_line(tmp_path):
    for text, fragment in [(f"{tmp_path}/nope.py:G", "no file"), ("no_such_package_xyz.mod:G", "no module 'no_such_package_xyz.mod'"),
                           (str(tmp_path / "nope.pt"), "no such file"), (str(tmp_path / "runs" / "x"), "no such run directory or file")]:
        with pytest.raises(StatganError, match=fragment):
            load_generator_source(text)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a zip archive")
    with pytest.raises(StatganError, match="not a readable TorchScript"):
        load_generator_source(broken)
    raising = tmp_path / "raising.py"
    raising.write_text("def G():\n    raise RuntimeError('weights file missing')\n")
    with pytest.raises(StatganError, match="RuntimeError: weights file missing"):
        load_generator_source(f"{raising}:G")


# ---- TorchScript and torch.export files ------------------------------------------------------------
def test_exported_files_reproduce_the_run_and_need_no_options(run_dir, exported):
    run = load_generator_source(run_dir)
    z = torch.randn(7, run.latent_dim)
    with torch.no_grad():
        ref = run.module(z)
        for name in ("g.pt", "g.pt2"):
            g = load_generator_source(exported / name)
            assert g.identity.latent_shape == (run.latent_dim,) and g.identity.data_shape == run.data_shape
            assert g.identity.weights_sha256 == run.identity.weights_sha256  # the same weights, whatever the file
            assert g.identity.sha256 == hashlib.sha256((exported / name).read_bytes()).hexdigest()
            assert torch.allclose(g.module(z), ref, atol=1e-6), name


def test_a_plain_torchscript_file_needs_its_latent_shape(tmp_path):
    import foreign_generators as fg

    net = fg.make_dcgan64().eval()
    path = tmp_path / "user.pt"
    with pytest.warns(FutureWarning):  # torch 2.14 deprecates TorchScript; users still have such files
        torch.jit.save(torch.jit.trace(net, torch.randn(2, 100, 1, 1)), str(path))
    with pytest.raises(StatganError, match="declares no latent shape"):
        load_generator_source(path)
    g = load_generator_source(path, GeneratorOptions(latent_shape=(100, 1, 1)))
    z = torch.randn(3, 100)
    with torch.no_grad():
        assert torch.allclose(g.module(z), net(z.reshape(3, 100, 1, 1)), atol=1e-6)


def test_export_refuses_other_suffixes_and_leaves_nothing(run_dir, tmp_path):
    with pytest.raises(StatganError, match="expected a file ending in .pt, .ts, .pt2"):
        export_generator(load_generator_source(run_dir), tmp_path / "g.onnx")
    assert list(tmp_path.iterdir()) == []


# ---- the commands ------------------------------------------------------------------------------------
def test_sample_writes_pngs_npz_and_a_grid_from_a_file(tmp_path, capsys):
    common = [spec("make_dcgan64"), "--latent-shape", "100,1,1", "-n", "5"]
    assert main(["sample", *common, "--out", f"{tmp_path}/pngs/"]) == 0
    files = sorted((tmp_path / "pngs").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    with Image.open(files[0]) as im:
        assert im.size == (64, 64) and im.mode == "RGB"
        first = np.asarray(im)
    assert main(["sample", *common, "--out", str(tmp_path / "x.npz")]) == 0
    arr = np.load(tmp_path / "x.npz")["images"]
    assert arr.shape == (5, 64, 64, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr[0], first)  # the same seed, the same samples, in both formats
    # and the uint8 values are the samples' [-1, 1] mapped to [0, 255], rounded (an independent computation)
    g = load_generator_source(spec("make_dcgan64"), GeneratorOptions(latent_shape=(100, 1, 1)))
    from statgan.runtime.seeding import stream_generator

    with torch.no_grad():
        x = g.module(torch.randn(5, 100, generator=stream_generator("cli_latents", 0))).numpy()
    assert np.abs(arr.astype(float) - np.clip(np.rint((x.transpose(0, 2, 3, 1) + 1) * 127.5), 0, 255)).max() <= 1
    assert main(["interpolate", *common[:3], "--out", str(tmp_path / "walk.png"), "--steps", "3"]) == 0
    assert (tmp_path / "walk.png").is_file()
    assert main(["sample", *common, "--truncation", "0.5", "--out", str(tmp_path / "t.png")]) == 2
    assert "stylegan" in capsys.readouterr().err


def test_eval_of_an_exported_generator_equals_eval_of_its_run(run_dir, exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("statgan.metrics.evaluate.PROJECTION_MIN_SECONDS", 0.0)  # say it, however cheap
    common = ["--metrics", "fid", "--n", "200", "--no-progress"]
    assert main(["eval", str(run_dir), "--reference", "test", *common, "--out", str(tmp_path / "a.json")]) == 0
    assert main(["eval", str(exported / "g.pt"), "--reference", "data:mnist5k:test", *common,
                 "--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ab")
    assert a["metrics"]["fid"] == b["metrics"]["fid"]
    assert b["generated"]["generator"]["kind"] == "torchscript" and "step" not in b["generated"]  # no run, no step
    assert a["generated"]["generator"]["weights_sha256"] == b["generated"]["generator"]["weights_sha256"]
    err = capsys.readouterr().err  # the cost, said before the feature passes
    assert err.count("projected ~") == 2 and "features of 200 generated + up to 1,000 reference images" in err
    assert main(["eval", str(exported / "g.pt"), *common]) == 2  # no run: the reference must be named
    err = capsys.readouterr().err
    assert "is not a statgan run" in err and "--reference SET" in err and err.count("\n") == 1
    assert main(["eval", str(exported / "g.pt"), "--reference", "data:cifar10-like-missing:test", *common]) == 2


def test_eval_of_a_file_generator_writes_beside_it(exported, capsys):
    assert main(["eval", str(exported / "g.pt"), "--reference", "data:mnist5k:test", "--metrics", "fid", "--n", "50",
                 "--no-progress"]) == 0
    written = list((exported / "g-eval").glob("*.json"))
    assert len(written) == 1 and "data_mnist5k_test" in written[0].name


def test_invert_of_an_exported_generator_equals_invert_of_its_run(run_dir, exported, tmp_path):
    common = ["--split", "test", "--n", "6", "--steps", "8", "--restarts", "1", "--threads", "1"]
    assert main(["invert", str(run_dir), *common, "--out", str(tmp_path / "a.safetensors")]) == 0
    assert main(["invert", str(exported / "g.pt"), *common, "--test", "data:mnist5k:test",
                 "--out", str(tmp_path / "b.safetensors")]) == 0
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert torch.equal(a["test.images"], b["test.images"])
    assert torch.allclose(a["test.errors"], b["test.errors"], rtol=1e-5, atol=1e-7)
    js = json.loads((tmp_path / "b.json").read_text())
    assert js["generator"]["kind"] == "torchscript" and js["step"] is None


def test_invert_without_the_set_it_needs_is_one_line(exported, capsys):
    assert main(["invert", str(exported / "g.pt"), "--split", "train", "--n", "4", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "give --train SET" in err and err.count("\n") == 1


def test_a_set_of_the_wrong_shape_is_one_line(exported, tmp_path, capsys):
    np.savez(tmp_path / "rgb.npz", images=np.zeros((4, 32, 32, 3), np.uint8))
    assert main(["invert", str(exported / "g.pt"), "--split", "test", "--n", "4", "--steps", "2",
                 "--test", str(tmp_path / "rgb.npz")]) == 2
    err = capsys.readouterr().err
    assert "its images are 3x32x32, but the generator makes 1x28x28" in err and err.count("\n") == 1


_NOT_NUMBERS = {"timing", "time", "seconds", "machine", "paths", "run", "generator", "dataset", "step", "weights", "fid",
                "projected"}


def _numbers(obj, path=""):
    """Every leaf of a summary.json but who was audited, when, where and how fast: (path, value) pairs."""
    if isinstance(obj, dict):
        return [p for k in sorted(obj) if k not in _NOT_NUMBERS for p in _numbers(obj[k], f"{path}/{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _numbers(v, f"{path}[{i}]")]
    return [(path, obj)]


def test_audit_of_an_exported_generator_equals_audit_of_its_run(run_dir, exported, tmp_path, capsys):
    """issue 28's equivalence test: the same seed, the same data given by hand -> the same numbers."""
    assert main(["audit", str(run_dir), "--quick", "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    assert main(["audit", str(exported / "g.pt"), "--quick", "--threads", "1", "--train", "data:mnist5k:train",
                 "--test", "data:mnist5k:test", "--out", str(tmp_path / "file")]) == 0
    a, b = (json.loads((tmp_path / k / "summary.json").read_text()) for k in ("run", "file"))
    assert len(_numbers(a)) > 200  # the findings' numbers, every set's statistics, BDMC, typicality...
    assert _numbers(a) == _numbers(b)
    assert b["generator"]["kind"] == "torchscript" and b["generator"]["weights_sha256"] == a["generator"]["weights_sha256"]
    assert set(a["projected"]) == {"inversion", "sigma", "ais", "bdmc"}
    out = capsys.readouterr().err
    assert "a generator pass (forward+backward, one latent) takes" in out and "projected: inversion" in out


def test_ood_name_equals_set_adds_the_users_own(run_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", images=rng.integers(0, 256, (9, 28, 28), dtype=np.uint8))
    out = tmp_path / "audit"
    assert main(["audit", str(run_dir), "--quick", "--threads", "1", "--ood", f"mine={tmp_path / 'mine.npz'}",
                 "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert "mine" in s["ood_sets"] and "glyphs" in s["ood_sets"]  # added beside the built-in sets
    assert s["splits"]["mine"]["n"] == 9  # all of a set smaller than --n-ood
    capsys.readouterr()
    for entry, fragment in [("test=x.npz", "expected NAME=SET"), ("glyphs,x y=a.npz", "expected NAME=SET"),
                            (f"big={tmp_path / 'rgb.npz'}", "its images are 3x8x8")]:
        np.savez(tmp_path / "rgb.npz", images=np.zeros((3, 8, 8, 3), np.uint8))
        assert main(["audit", str(run_dir), "--quick", "--ood", entry, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert fragment in err and err.count("statgan: error") == 1, err


def test_invert_and_eval_of_a_file_generator_with_and_without_sets(tmp_path, capsys):
    common = [spec("make_dcgan64"), "--latent-shape", "100,1,1"]
    # no data at all: the generated set needs only the generator
    assert main(["invert", *common, "--split", "generated", "--n", "3", "--steps", "3", "--restarts", "1",
                 "--out", str(tmp_path / "inv.safetensors")]) == 0
    js = json.loads((tmp_path / "inv.json").read_text())
    assert js["generator"]["kind"] == "module" and js["sets"]["generated"]["n"] == 3
    assert Image.open(tmp_path / "inv.png").size[0] > 64  # originals above reconstructions, 64x64 RGB
    # a reference set of its shape: eval in pixel space (Inception would be the RGB default)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ref.npz", images=rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8))
    assert main(["eval", *common, "--reference", str(tmp_path / "ref.npz"), "--extractor", "pixels", "--metrics", "kid",
                 "--n", "40", "--no-progress", "--out", str(tmp_path / "ev.json")]) == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["reference"]["n"] == 40 and ev["generated"]["generator"]["data_shape"] == [3, 64, 64]
    assert math.isfinite(ev["metrics"]["kid"])
