"""`statgan invert` for every split, the image sets it shares with `statgan audit`, and the
one-line errors of both commands."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from statgan.audit import run as audit_run_module
from statgan.audit.rundata import load_run, run_fid, split_images
from statgan.audit.run import invert_file_name
from statgan.audit.settings import AuditSettings, InvertSettings
from statgan.audit.summary import AuditSummary, InvertSummary, from_json
from statgan.cli import main
from statgan.rundir.run import load_generator
from statgan.viz import (INVERSION_CASES, inversion_pairs_png, inversion_picture_skip, median_and_worst,
                         save_inversion_pairs)

from conftest import tiny_dcgan_overrides, toy_overrides

FAST = ["--n", "4", "--steps", "5", "--restarts", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    n = torch.get_num_threads()
    root = tmp_path_factory.mktemp("invert")
    try:
        assert main(["train", "mnist5k-dcgan", *tiny_dcgan_overrides(root, **{"train.steps": 8})]) == 0
    finally:
        torch.set_num_threads(n)
    return root / "dcgan"


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("split, sets", [
    ("train", ["train"]), ("test", ["test"]), ("generated", ["generated"]),
    ("ood", ["glyphs", "noise", "constant", "blurred", "inverted"]), ("Glyphs", ["glyphs"]),
])
def test_invert_writes_errors_and_latents_for_each_split(run_dir, split, sets, capsys):
    assert main(["invert", str(run_dir), "--split", split, *FAST]) == 0
    out = capsys.readouterr().out
    key = split.lower()
    path = run_dir / "audit" / invert_file_name(key, InvertSettings(n=4, restarts=1, steps=5))
    tensors = load_file(str(path))
    summary = json.loads(path.with_suffix(".json").read_text())
    assert list(summary["sets"]) == sets and summary["split"] == key and summary["step"] == 8
    assert summary["format"] == "statgan-invert/2" and summary["settings"]["n"] == 4 and "path" not in summary
    for name in sets:
        assert tensors[f"{name}.z"].shape == (4, 8) and tensors[f"{name}.errors"].shape == (4,)
        assert tensors[f"{name}.images"].shape == tensors[f"{name}.reconstructions"].shape == (4, 1, 28, 28)
        # l2 errors are the per-pixel MSE of the reconstruction
        mse = (tensors[f"{name}.reconstructions"] - tensors[f"{name}.images"]).square().flatten(1).mean(1)
        assert torch.allclose(mse, tensors[f"{name}.errors"], rtol=1e-4, atol=1e-6)
        assert summary["sets"][name]["error"]["median"] == pytest.approx(float(tensors[f"{name}.errors"].double().quantile(0.5)), rel=1e-6)
        assert name in out
    assert "wrote" in out
    # the picture beside them: one block per set, one row of all 4 images (n <= 8), x above G(z*)
    assert summary["picture"] == str(path.with_suffix(".png")) and "picture_note" not in summary
    with Image.open(path.with_suffix(".png")) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.width >= 4 * 56
        assert im.height > len(sets) * 2 * 56


def test_invert_reruns_with_other_settings_keep_their_files(run_dir, capsys):
    # the default file name carries every knob that changes the result
    names = set()
    for extra in (["--steps", "5"], ["--steps", "6"], ["--steps", "5", "--restarts", "2"], ["--steps", "5", "--lr", "0.05"]):
        assert main(["invert", str(run_dir), "--split", "test", "--n", "4", "--restarts", "1", "--threads", "1", *extra]) == 0
        names.add(capsys.readouterr().out.split("wrote ")[1].split(",")[0])  # "wrote TENSORS, JSON and PNG"
    assert len(names) == 4 and all(os.path.isfile(n) for n in names)


def test_invert_with_lenet_features_and_custom_out(run_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "inv.safetensors"
    assert main(["invert", str(run_dir), "--split", "test", "--loss", "lenet", "--out", str(out), *FAST]) == 0
    s = from_json(out.with_suffix(".json").read_text(), InvertSummary)
    t = load_file(str(out))
    assert s.loss == s.settings.loss == "lenet" and s.error_unit == "LeNet feature MSE" and s.path is None
    assert s.sets["test"].error.median == pytest.approx(float(t["test.errors"].double().quantile(0.5)), rel=1e-6)
    mse = (t["test.reconstructions"] - t["test.images"]).square().flatten(1).mean(1)
    assert torch.allclose(t["test.mse"], mse, rtol=1e-4) and not torch.allclose(t["test.errors"], mse)


def test_image_sets_are_seeded_and_test_and_valid_are_disjoint(run_dir):
    run = load_run(run_dir, seed=3)
    a = split_images(run, "test", 6)["test"]
    b = split_images(load_run(run_dir, seed=3), "test", 6)["test"]
    c = split_images(load_run(run_dir, seed=4), "test", 6)["test"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    test, valid = run.test_and_valid(6, 10)
    assert torch.equal(test, a)  # `statgan invert --split test` sees the audit's test images
    flat_t, flat_v = test.flatten(1), valid.flatten(1)
    assert not any(torch.equal(x, y) for x in flat_t for y in flat_v)
    g1, z1 = run.generated(5)
    g2, z2 = load_run(run_dir, seed=3).generated(5)
    assert torch.equal(z1, z2) and torch.allclose(g1, g2)


def test_invert_on_toy_data_works_except_for_ood(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    assert main(["invert", str(tmp_path / "toy"), "--split", "train", *FAST]) == 0
    capsys.readouterr()
    # 2-D points: a scatter picture of originals joined to their reconstructions
    js = tmp_path / "toy" / "audit" / invert_file_name("train", InvertSettings(n=4, restarts=1, steps=5)).replace(
        ".safetensors", ".json")
    s = from_json(js.read_text(), InvertSummary)
    assert s.picture == str(js.with_suffix(".png")) and s.picture_note is None
    with Image.open(s.picture) as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert main(["invert", str(tmp_path / "toy"), "--split", "ood", *FAST]) == 2
    assert "OOD sets need image data" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "toy"), "--quick"]) == 0  # 2-D points: the toy audit (latent 4: no quadrature)
    assert "quadrature not run: latent dimension d = 4 != 2" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["invert", "{run}", "--split", "validation"], "unknown split 'validation'"),
    (["invert", "{run}", "--split", "train", "--n", "0"], "n must be an integer >= 1"),
    (["invert", "{run}", "--split", "train", "--out", "x.npz"], "--out must end in .safetensors"),
    (["invert", "{run}", "--split", "train", "--steps", "-1"], "steps must be an integer >= 1"),
    (["invert", "{run}", "--split", "train", "--steps", "0"], "steps must be an integer >= 1, got 0"),
    (["invert", "{run}", "--split", "train", "--restarts", "0"], "restarts must be an integer >= 1, got 0"),
    (["audit", "{run}", "--quick", "--steps", "0"], "steps must be an integer >= 1, got 0"),
    (["invert", "{run}", "--split", "train", "--threads", "0"], "--threads must be an integer >= 1"),
    (["invert", "{missing}", "--split", "train"], "no such run directory or file"),
    (["audit", "{missing}"], "no such run directory or file"),
    (["audit", "{tmp}"], "is not a statgan run directory"),
    (["audit", "{run}", "--n", "0"], "n must be an integer >= 1"),
    (["audit", "{run}", "--quick", "--ood", "glyphs,nope"], "unknown OOD set 'nope'"),
    (["audit", "{run}", "--quick", "--sigma", "-1"], "sigma must be a finite positive number"),
    (["audit", "{run}", "--quick", "--n-valid", "1"], "n_valid must be an integer >= 2"),
])
def test_bad_input_is_one_line_error(run_dir, tmp_path, capsys, argv, fragment):
    argv = [a.format(run=run_dir, missing=tmp_path / "nowhere", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("statgan: error: ") and fragment in err and err.count("\n") == 1, err


def test_cli_defaults_and_help_come_from_the_settings_classes(capsys):
    from dataclasses import fields

    from statgan.audit.settings import AuditSettings, InvertSettings
    from statgan.cli import build_parser

    from statgan.audit.settings import flag_fields
    from statgan.cli._common import settings_from_args

    args = build_parser().parse_args(["invert", "RUN", "--split", "test"])
    assert settings_from_args(InvertSettings, args) == InvertSettings()  # nothing typed: the settings' defaults
    args = build_parser().parse_args(["invert", "RUN", "--split", "test", "-n", "7", "--lr", "0.5", "--loss", "lenet"])
    assert settings_from_args(InvertSettings, args) == InvertSettings(n=7, lr=0.5, loss="lenet")
    # every knob that declares a help text is a flag of audit, generated from the field
    args = build_parser().parse_args(["audit", "RUN", "--ood", "glyphs, noise", "--sigma", "0.2", "--is-samples", "3"])
    assert settings_from_args(AuditSettings, args, quick=True) == AuditSettings.quick(ood=("glyphs", "noise"), sigma=0.2,
                                                                                      is_samples=3)
    assert {f.name for f in flag_fields(AuditSettings)} >= {f.name for f in fields(InvertSettings)}
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    quick = AuditSettings.quick()
    for flag, name in (("--n N", "n"), ("--ais-steps AIS_STEPS", "ais_steps"), ("--steps STEPS", "steps")):
        after = help_text.rsplit(flag, 1)[1]  # the flag's own line (the first mention is the usage line)
        assert after.split(")")[0].endswith(f"(default {getattr(AuditSettings, name)}; --quick {getattr(quick, name)}")
    assert f"AIS chains per image (default {AuditSettings.chains})" in help_text  # --quick keeps it: not quoted
    assert build_parser().parse_args(["audit", "RUN"]).precondition is None  # None: the settings' default (True)
    assert build_parser().parse_args(["audit", "RUN", "--no-precondition"]).precondition is False


def test_quick_settings_are_the_defaults_with_the_quick_changes():
    from dataclasses import asdict

    from statgan.audit.settings import AuditSettings

    q = AuditSettings.quick(n=30)
    changed = {k for k, v in asdict(q).items() if v != asdict(AuditSettings())[k]}
    assert changed == set(AuditSettings.QUICK) and q.n == 30 and q.steps == AuditSettings.QUICK["steps"]
    with pytest.raises(ValueError, match="bdmc_images must be an integer >= 2"):
        AuditSettings.quick(bdmc_images=1).validate()


def _tiny_folder(root, n=30, size=12):
    """``n`` gray images of random bright rectangles on black (every 10th sorted file is a test image)."""
    import numpy as np
    from PIL import Image

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = np.zeros((size, size), np.uint8)
        y, x = rng.integers(0, size - 4, 2)
        h, w = rng.integers(3, 8, 2)
        a[y:y + h, x:x + w] = rng.integers(120, 256)
        Image.fromarray(a, "L").save(root / f"{i:02d}.png")


def test_a_folder_of_thirty_images_can_be_audited(tmp_path, capsys, monkeypatch):
    """30 images -> 27 train, 3 test: the audit splits the 3 between test (2) and valid (1), tests
    typicality batches of 2, skips the data-copying test with its reason, and writes its report."""
    pics = tmp_path / "pics"
    _tiny_folder(pics)
    over = tiny_dcgan_overrides(tmp_path, **{"train.steps": 2, "data.name": "folder", "data.root": str(pics),
                                             "data.image_size": 28, "data.channels": 1, "train.batch_size": 8})
    assert main(["train", "mnist5k-dcgan", *over]) == 0
    capsys.readouterr()
    bars = []

    class Bar:  # records what the audit's progress bars are told (tqdm itself draws only on a terminal)
        def __init__(self, total=None, desc="", **kwargs):
            self.total, self.desc, self.done = total, desc, 0
            bars.append(self)

        def update(self, n):
            self.done += n

        def close(self):
            pass

    monkeypatch.setattr(audit_run_module, "tqdm", Bar)
    assert main(["audit", str(tmp_path / "dcgan"), "--quick", "--n", "30", "--n-ood", "4", "--ood", "glyphs,noise",
                 "--steps", "5", "--ais-steps", "4"]) == 0
    # one bar per long stage, counting images to its total: train 27, test 2, generated 30, glyphs 4,
    # noise 4, valid 1 inverted, then scored
    by_stage = {b.desc: b for b in bars}
    assert by_stage["audit: inversion"].total == by_stage["audit: inversion"].done == 27 + 2 + 30 + 4 + 4 + 1
    assert by_stage["audit: ais"].total == by_stage["audit: ais"].done == 68
    out = capsys.readouterr().out
    s = from_json((tmp_path / "dcgan" / "audit" / "summary.json").read_text(), AuditSummary)
    assert (s.splits["train"].n, s.splits["test"].n, s.splits["valid"].n) == (27, 2, 1)
    assert s.typicality.batch_size == 2 and s.typicality.batch_size_requested == AuditSettings.QUICK["typicality_batch"]
    assert s.memorisation.data_copying is None and "no cell has 5 held-out" in s.memorisation.data_copying_skipped
    assert s.correlation.per_set["test"].r is None  # 2 images: no correlation, and no crash
    assert [f.verdict for f in s.findings] and "report:" in out
    assert "typicality" in (tmp_path / "dcgan" / "audit" / "report.html").read_text()


def test_a_test_split_of_one_image_is_a_clear_error(tmp_path, capsys):
    pics = tmp_path / "pics"
    _tiny_folder(pics, n=12)  # 11 train, 1 test
    over = tiny_dcgan_overrides(tmp_path, **{"train.steps": 1, "data.name": "folder", "data.root": str(pics),
                                             "data.image_size": 28, "data.channels": 1, "train.batch_size": 4})
    assert main(["train", "mnist5k-dcgan", *over]) == 0
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "dcgan"), "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("statgan: error: ") and "needs at least 2 held-out images" in err and err.count("\n") == 1


def test_run_fid_reads_the_newest_eval_of_the_audited_step(tmp_path):
    ev = tmp_path / "eval"
    ev.mkdir()
    assert run_fid(tmp_path, 8) is None
    rec = {"metrics": {"fid": 12.5, "kid": 0.1}, "extractor": {"id": "lenet-x"}, "generated": {"n": 1000, "step": 8}}
    (ev / "a.json").write_text(json.dumps(rec))
    (ev / "b.json").write_text(json.dumps({**rec, "metrics": {"fid": 30.0}, "generated": {"n": 500, "step": 4}}))
    (ev / "c.json").write_text(json.dumps({"metrics": {"kid": 1.0}}))  # no FID: ignored
    f = run_fid(tmp_path, 8)
    assert (f.value, f.extractor, f.n, f.step) == (12.5, "lenet-x", 1000, 8) and f.path.endswith("a.json")
    assert run_fid(tmp_path, 99).value in (12.5, 30.0)  # no result for that step: the newest of any


def test_run_fid_prefers_the_weights_the_audit_reads(tmp_path):
    ev = tmp_path / "eval"
    ev.mkdir()
    rec = {"metrics": {"fid": 42.2}, "extractor": {"id": "lenet-x"}, "generated": {"n": 100, "step": 8, "weights": "ema"}}
    (ev / "ema.json").write_text(json.dumps(rec))
    os.utime(ev / "ema.json", (1, 1))  # older than the raw result, so "newest of the step" alone picks raw
    (ev / "raw.json").write_text(json.dumps({**rec, "metrics": {"fid": 46.6}, "generated": {**rec["generated"], "weights": "raw"}}))
    assert run_fid(tmp_path, 8, "EMA").value == 42.2 and run_fid(tmp_path, 8, "EMA").weights == "ema"
    assert run_fid(tmp_path, 8, "raw").value == 46.6
    assert run_fid(tmp_path, 8).value == 46.6  # weights not asked for: the newest, and it says which
    (ev / "raw.json").unlink()
    f = run_fid(tmp_path, 8, "raw")  # none with those weights: the other generator's, named as such
    assert (f.value, f.weights) == (42.2, "ema")


def test_a_stylegan_run_is_evaluated_and_audited_as_z_to_x(tmp_path, capsys):
    """Issue 15: eval and audit read a StyleGAN run through the same z -> x interface (truncation off,
    the eval-mode fixed noise making G deterministic, which inversion and AIS need)."""
    pics = tmp_path / "pics"
    _tiny_folder(pics)
    over = [f"run.out_dir={tmp_path}", "run.name=sg", "model.arch=stylegan", "model.latent_dim=8",
            "model.generator={width: 4, max_width: 8, w_dim: 8, mapping_layers: 2}",
            "model.discriminator={width: 4, max_width: 8}", "train.steps=2", "train.batch_size=8",
            "train.sample_every=0", "train.checkpoint_every=0", "train.progress=false", "train.tensorboard=false",
            "data.name=folder", f"data.root={pics}", "data.image_size=28", "data.channels=1"]
    assert main(["train", "mnist5k-dcgan", *over]) == 0
    G, _ = load_generator(tmp_path / "sg")
    z = torch.randn(3, 8)
    assert torch.equal(G(z), G(z))  # deterministic in eval mode: one image per latent
    assert main(["eval", str(tmp_path / "sg"), "--metrics", "fid", "--n", "40", "--extractor", "pixels"]) == 0
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "sg"), "--quick", "--n", "30", "--n-ood", "4", "--ood", "glyphs,noise",
                 "--steps", "5", "--ais-steps", "4"]) == 0
    s = from_json((tmp_path / "sg" / "audit" / "summary.json").read_text(), AuditSummary)
    assert s.splits["train"].n == 27 and [f.verdict for f in s.findings]
    assert all(math.isfinite(v) for v in (s.bdmc.lower.median, s.bdmc.upper.median))


# ==== the picture of `statgan invert` ===============================================================
@pytest.mark.parametrize("n, k", [(1, 8), (2, 8), (7, 3), (8, 8), (10, 4), (11, 1), (50, 8), (51, 8)])
def test_median_and_worst_pick_the_middle_ranks_and_the_largest_errors(n, k):
    errors = torch.randperm(n, generator=torch.Generator().manual_seed(n)).double() / 10  # distinct values
    med, worst = median_and_worst(errors, k)
    ranks = torch.argsort(torch.argsort(errors)).tolist()  # 0 = smallest error
    m = min(n, k)
    assert len(med) == len(worst) == m and len(set(med)) == len(set(worst)) == m
    # worst: exactly the m largest, the largest first
    assert sorted(ranks[i] for i in worst) == list(range(n - m, n))
    assert [errors[i] for i in worst] == sorted((errors[i] for i in worst), reverse=True)
    # median: m consecutive middle ranks, lowest error first, centred on the median rank(s)
    r = [ranks[i] for i in med]
    assert r == list(range(r[0], r[0] + m)) and r[0] == (n - m) // 2
    assert abs((r[0] + r[-1]) - (n - 1)) <= 1
    if n % 2 and m % 2:  # odd n and odd k: the median image itself is the middle one
        assert errors[med[m // 2]] == errors.median()


def test_median_and_worst_take_nan_as_worst_and_keep_ties_in_index_order():
    med, worst = median_and_worst(torch.tensor([0.5, float("nan"), 0.1, 0.5, 0.9]), 1)
    assert worst == [1] and med == [3]  # ascending: 0.1, 0.5 (index 0), 0.5 (index 3), 0.9, NaN
    assert median_and_worst(torch.tensor([1.0, 1.0, 1.0]), 2) == ([0, 1], [2, 1])
    assert median_and_worst(torch.tensor([]), 8) == ([], [])


def _blobs(mask):
    from scipy import ndimage

    return ndimage.label(mask)[1]


def test_inversion_picture_has_a_labelled_pair_per_case(tmp_path):
    # originals all white, reconstructions all black: each drawn pair is one white and one black tile
    def pairs(n, shape=(1, 12, 12)):
        return torch.ones(n, *shape), -torch.ones(n, *shape), torch.rand(n, generator=torch.Generator().manual_seed(n))

    path = save_inversion_pairs(tmp_path / "p.png", {"big": pairs(30), "small": pairs(5)}, error_unit="pixel MSE")
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB")).astype(np.int64)
    white, black = (a == 255).all(-1), (a == 0).all(-1)
    k = INVERSION_CASES
    # "big": a row of the k median cases and a row of the k worst; "small" (5 <= k): one row of all 5
    assert _blobs(white) == _blobs(black) == 2 * k + 5
    # 12 px images are drawn at 4x (48 px): the widest row, k tiles of 48 px with gaps, sets the width
    assert a.shape[1] > k * 48 and white.sum() == black.sum() == (2 * k + 5) * 48 * 48
    rgb = inversion_pairs_png({"c": (torch.zeros(3, 3, 8, 8), torch.zeros(3, 3, 8, 8), torch.ones(3))})
    assert rgb[:8] == b"\x89PNG\r\n\x1a\n"


def test_inversion_picture_of_points_and_a_note_for_other_shapes(tmp_path):
    x = torch.randn(20, 2)
    path = save_inversion_pairs(tmp_path / "pts.png", {"train": (x, x + 0.1, torch.rand(20))})
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert inversion_picture_skip((1, 28, 28)) is None and inversion_picture_skip((3, 8, 8)) is None
    assert inversion_picture_skip((2,)) is None
    for shape in [(5,), (1,), (2, 8, 8), (4, 4)]:
        note = inversion_picture_skip(shape)
        assert note.startswith("no picture: samples of shape") and "\n" not in note
        with pytest.raises(ValueError, match="no picture"):
            inversion_pairs_png({"s": (torch.zeros(3, *shape), torch.zeros(3, *shape), torch.zeros(3))})
    with pytest.raises(ValueError, match="do not match"):
        inversion_pairs_png({"s": (torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(3))})


def test_invert_writes_a_note_instead_of_a_picture_for_undrawable_data(run_dir, tmp_path, monkeypatch):
    # no run of vector data with more than 2 dimensions exists: make the (drawable) images undrawable
    monkeypatch.setattr(audit_run_module, "inversion_picture_skip", lambda shape: "no picture: test note")
    out = tmp_path / "inv.safetensors"
    res = audit_run_module.invert_split(run_dir, "test", InvertSettings(n=2, restarts=1, steps=2), out=out)
    assert res.picture is None and res.picture_note == "no picture: test note"
    assert not out.with_suffix(".png").exists()
    assert json.loads(out.with_suffix(".json").read_text())["picture_note"] == "no picture: test note"
    assert from_json(out.with_suffix(".json").read_text(), InvertSummary).picture_note == res.picture_note
