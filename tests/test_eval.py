"""`statgan eval` and FID during training, checked against an independent numpy/scipy computation."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from statgan import config
from statgan.cli import main
from statgan.metrics.evaluate import evaluate_paths, evaluate_run
from statgan.rundir.run import read_metrics
from statgan.train.trainer import Trainer

from conftest import tiny_dcgan_overrides, toy_overrides


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The classic pytorch-fid formula with scipy's sqrtm, on float64 features."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_two_npz_sets_match_an_independent_fid(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(300, 4, 4, 1), dtype=np.uint8)             # NHWC uint8
    b = (rng.random((250, 1, 4, 4)) * 1.6 - 0.9).astype(np.float32)           # NCHW float in [-1, 1]
    np.savez(tmp_path / "a.npz", images=a)
    np.savez(tmp_path / "b.npz", b)
    res = evaluate_paths(tmp_path / "a.npz", tmp_path / "b.npz", metrics=["fid", "kid"], extractor="pixels",
                         out=tmp_path / "r.json")
    fa = (a.transpose(0, 3, 1, 2).reshape(300, -1).astype(np.float64) / 127.5) - 1.0
    fb = b.reshape(250, -1).astype(np.float64)
    assert res.metrics["fid"] == pytest.approx(_reference_fid(fa, fb), rel=1e-5)
    assert res.extractor.id.startswith("pixels")
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["fid"] == res.metrics["fid"]
    assert res.labels["fid"] == f"FID ({res.extractor.id})"


def test_run_evaluation_writes_json_and_caches_reference(tmp_path):
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path))
    Trainer(cfg, tmp_path / "toy").fit()
    res = evaluate_run(tmp_path / "toy", metrics=["fid", "kid", "prdc"], n=400)
    m = res.metrics
    assert {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage"} <= m.keys()
    assert all(np.isfinite(v) for v in m.values())
    saved = json.loads(open(res.path).read())
    assert saved["generated"]["n"] == 400 and saved["generated"]["step"] == 20
    assert saved["reference"]["source"] == "8gaussians:train" and saved["extractor"]["id"] == "pixels-2"
    assert saved["extractor"]["weights_sha256"] is None  # raw pixels: no weights
    # a second evaluation with other settings gets its own file instead of overwriting the first
    other = evaluate_run(tmp_path / "toy", metrics=["fid"], n=400, reference="test")
    assert other.path != res.path and json.loads(open(res.path).read()) == saved
    # FID alone needs only statistics: the second time they come from the cache, same value
    first = evaluate_run(tmp_path / "toy", metrics=["fid"], n=400, write=False)
    again = evaluate_run(tmp_path / "toy", metrics=["fid"], n=400, write=False)
    assert again.reference.cached is True
    assert again.metrics["fid"] == pytest.approx(first.metrics["fid"], rel=1e-12)
    # and it is the FID of the generated points against the training split, computed independently
    from statgan import data
    from statgan.rundir.run import load_generator

    G, _ = load_generator(tmp_path / "toy")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = torch.cat([G(torch.randn(min(500, 400 - i), 4, generator=gen)) for i in range(0, 400, 500)])
    expected = _reference_fid(data.load("8gaussians", "train").double().numpy(), x.double().numpy())
    assert first.metrics["fid"] == pytest.approx(expected, rel=1e-5)


def test_cli_eval_and_its_errors(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "toy"), "--metrics", "fid,kid", "--n", "300"]) == 0
    out = capsys.readouterr().out
    assert "FID (pixels-2)" in out and "wrote" in out
    for argv, fragment in [
        (["eval", str(tmp_path / "toy"), "--metrics", "fid,nope"], "unknown metric 'nope'"),
        (["eval", str(tmp_path / "nowhere")], "no such run directory or file"),
        (["eval", str(tmp_path / "toy"), "--reference", str(tmp_path / "none.npz")], "neither a run directory"),
        (["eval", str(tmp_path / "toy"), "--n", "1"], "--n must be at least 2"),
        (["eval", str(tmp_path / "toy"), "--metrics", "is"], "no class logits"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("statgan: error:") and fragment in err and "\n" not in err, err


def test_fid_during_training_keeps_best_and_leaves_training_unchanged(tmp_path):
    plain = Trainer(config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **{"run.name": "plain", "train.steps": 8})), tmp_path / "plain")
    plain.fit()
    watched = Trainer(config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **{
        "run.name": "watched", "train.steps": 8, "train.eval_every": 4, "train.eval_n": 64,
        "train.eval_extractor": "pixels"})), tmp_path / "watched")
    watched.fit()
    for p, q in zip(plain.G.parameters(), watched.G.parameters()):
        assert torch.equal(p, q)  # evaluating must not consume the training run's randomness
    fids = [r for r in read_metrics(tmp_path / "watched") if "fid" in r]
    assert [r["step"] for r in fids] == [4, 8]
    assert all(r["fid"] > 0 and r["fid_extractor"].startswith("pixels") for r in fids)
    best = json.loads((tmp_path / "watched" / "checkpoints" / "best.json").read_text())
    assert best["best_fid"] == min(r["fid"] for r in fids)
    assert best["step"] == min(fids, key=lambda r: r["fid"])["step"]


def test_dataset_splits_as_image_sets(tmp_path):
    """data:NAME:SPLIT sources: two samples of the same density are closer than different densities."""
    same = evaluate_paths("data:8gaussians:train", "data:8gaussians:test", metrics=["fid"], extractor="pixels")
    other = evaluate_paths("data:8gaussians:train", "data:25gaussians:test", metrics=["fid"], extractor="pixels")
    assert 0 <= same.metrics["fid"] < 0.05 and other.metrics["fid"] > 1.0
    with pytest.raises(Exception, match="expected data:NAME:SPLIT"):
        evaluate_paths("data:8gaussians", "data:ring:test", metrics=["fid"], extractor="pixels")


def test_lenet_eval_of_two_dataset_splits_names_the_weights_and_matches_scipy(tmp_path):
    """data:NAME:SPLIT sources with the shipped lenet: FID equals the scipy formula on the same
    features, the result carries the weights' sha256, and IS uses the classifier's logits."""
    from statgan import data
    from statgan.metrics.features import LENET_SHA256, get_extractor

    test = data.load("mnist5k", "test")[:400]
    np.savez(tmp_path / "test.npz", images=test.numpy())
    res = evaluate_paths(tmp_path / "test.npz", "data:mnist5k:train", metrics=["fid", "is"], extractor="lenet")
    assert res.extractor.weights_sha256 == LENET_SHA256
    assert res.labels["fid"] == f"FID ({res.extractor.id})" and res.extractor.id == "lenet-" + LENET_SHA256[:8]
    ext = get_extractor("lenet")
    fa = ext.extract(test).double().numpy()
    fb = ext.extract(data.load("mnist5k", "train")).double().numpy()
    assert res.metrics["fid"] == pytest.approx(_reference_fid(fa, fb), rel=1e-5)
    # real digits from ten balanced classes: the classifier is confident and diverse, IS near 10
    assert 8.0 < res.metrics["is"] <= 10.0


def test_sample_counts_are_checked_for_every_metric_before_any_work(tmp_path, capsys, monkeypatch):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    capsys.readouterr()
    import statgan.metrics.evaluate as ev

    monkeypatch.setattr(ev, "extract", lambda *a, **k: pytest.fail("features were extracted before the counts were checked"))
    assert main(["eval", str(tmp_path / "toy"), "--metrics", "fid,prdc,is", "--n", "3", "--extractor", "pixels"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("statgan: error:") and "\n" not in err
    assert "prdc needs at least 4 generated samples, got 3" in err and "is needs at least 10 generated samples" in err
    assert "fid" not in err.split("error:")[1].split(";")[0]  # fid is fine with 3


def test_a_failing_metric_keeps_the_others_and_warns(tmp_path, capsys, monkeypatch):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    capsys.readouterr()
    import statgan.metrics.evaluate as ev
    from statgan.errors import ConfigError

    def broken(ref, gen):
        raise ConfigError("prdc: something only the computation finds")

    spec = ev.METRICS["prdc"]()
    monkeypatch.setitem(ev.METRICS._items, "prdc", lambda: ev.MetricSpec(**{**spec.__dict__, "compute": broken}))
    assert main(["eval", str(tmp_path / "toy"), "--metrics", "fid,prdc,kid", "--n", "300"]) == 0
    out, err = capsys.readouterr()
    assert "FID (pixels-2)" in out and "KID (pixels-2)" in out
    assert "statgan: warning: prdc was not computed (the other metrics were kept): prdc: something only the computation finds" in err.splitlines()
    saved = json.loads(open(out.split("wrote ")[1].strip()).read())
    assert set(saved["metrics"]) == {"fid", "kid", "kid_std"}
    assert saved["failures"] == {"prdc": "prdc: something only the computation finds"}


def test_python_warnings_are_statgan_warning_lines(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    capsys.readouterr()
    # 2 samples of 2-D points: singular covariances, which the Fréchet distance warns about
    assert main(["eval", str(tmp_path / "toy"), "--metrics", "fid", "--n", "2"]) == 0
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines and all(l.startswith("statgan: warning: ") for l in lines), err


def test_recognisable_counts_samples_whose_top_class_reaches_0_9():
    """Closed form: with logit a on one of 10 classes and 0 on the others the top probability is
    e^a / (e^a + 9), ≥ 0.9 exactly when a ≥ ln 81 ≈ 4.39; 30 rows at a = 5 (0.943), 10 at a = 4 (0.858)."""
    import math
    import statgan.metrics.evaluate as ev
    from statgan.metrics.sources import FeatureSet
    logits = torch.zeros(40, 10)
    logits[:30, 3], logits[30:, 7] = 5.0, 4.0
    out = ev.METRICS["recognisable"]().compute(None, FeatureSet("gen", 40, logits=logits))
    assert out["recognisable"] == 0.75
    assert out["recognisable_se"] == pytest.approx(math.sqrt(0.75 * 0.25 / 40), rel=1e-12)
    # at the threshold itself (a = ln 81: p = 0.9 up to rounding) it counts; just below it does not
    edge = torch.zeros(2, 10)
    edge[0, 0], edge[1, 0] = math.log(81.0) + 1e-9, math.log(81.0) - 1e-6
    assert ev.METRICS["recognisable"]().compute(None, FeatureSet("gen", 2, logits=edge))["recognisable"] == 0.5


def test_real_digits_are_recognisable_and_an_extractor_without_logits_is_named(tmp_path, capsys):
    from statgan import data

    test = data.load("mnist5k", "test")[:400]
    np.savez(tmp_path / "test.npz", images=test.numpy())
    res = evaluate_paths("data:mnist5k:train", tmp_path / "test.npz", metrics=["recognisable"], extractor="lenet")
    # 98.7 % of the 1,000 test digits reach 0.9 with the shipped LeNet; 400 of them: SE ≈ 0.006
    assert res.metrics["recognisable"] > 0.95 and 0 < res.metrics["recognisable_se"] < 0.02
    assert main(["eval", "data:mnist5k:train", str(tmp_path / "test.npz"), "--metrics", "recognisable", "--extractor", "pixels"]) == 2
    assert "has no class logits" in capsys.readouterr().err
