"""`eval`'s reference cap (``max_reference``) and its progress bars (``progress``)."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from statgan import config
from statgan.errors import ConfigError
from statgan.metrics.evaluate import evaluate_paths, evaluate_run
from statgan.metrics.sources import reference_subset
from statgan.metrics.stats import cache_dir
from statgan.train.trainer import Trainer

from conftest import toy_overrides


def _fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))


def _ordered_sets(tmp_path):
    """A reference set ordered by class (500 images near -0.5, then 500 near +0.5) and a generated
    set drawn from the same two-class mixture, as 1x2x2 float images in [-1, 1]."""
    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.normal(-0.5, 0.1, (500, 1, 2, 2)), rng.normal(0.5, 0.1, (500, 1, 2, 2))]).clip(-1, 1)
    gen = (np.where(rng.random((600, 1, 1, 1)) < 0.5, -0.5, 0.5) + rng.normal(0, 0.1, (600, 1, 2, 2))).clip(-1, 1)
    np.savez(tmp_path / "ref.npz", images=ref.astype(np.float32))
    np.savez(tmp_path / "gen.npz", images=gen.astype(np.float32))
    return ref.reshape(1000, -1).astype(np.float32), gen.reshape(600, -1).astype(np.float32)


def test_cap_is_a_seeded_random_subset_stated_in_the_result(tmp_path):
    ref, gen = _ordered_sets(tmp_path)
    res = evaluate_paths(tmp_path / "ref.npz", tmp_path / "gen.npz", metrics=["fid"], extractor="pixels",
                         max_reference=200, out=tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())["reference"]
    assert saved["n"] == 200 and saved["max_reference"] == 200 and saved["n_available"] == 1000
    assert saved["subset"] == "random" and saved["subset_seed"] == 0 and len(saved["subset_sha256"]) == 16
    # the same cap picks the same images every time
    again = evaluate_paths(tmp_path / "ref.npz", tmp_path / "gen.npz", metrics=["fid"], extractor="pixels", max_reference=200)
    assert again.reference.subset_sha256 == saved["subset_sha256"]
    assert again.metrics["fid"] == pytest.approx(res.metrics["fid"], rel=1e-12)
    # it is the FID of exactly 200 distinct reference images ...
    sub, _ = reference_subset(torch.from_numpy(ref), 200)
    assert torch.unique(sub, dim=0).shape[0] == 200
    assert res.metrics["fid"] == pytest.approx(_fid(sub.double().numpy(), gen.astype(np.float64)), rel=1e-5)
    # ... drawn from both classes of the class-ordered set (the first 200 would all be near -0.5)
    assert 60 < int((sub[:, 0] > 0).sum()) < 140
    assert res.metrics["fid"] < 0.1 < _fid(ref[:200].astype(np.float64), gen.astype(np.float64))


def test_cap_above_the_set_uses_all_and_says_so(tmp_path):
    _ordered_sets(tmp_path)
    full = evaluate_paths(tmp_path / "ref.npz", tmp_path / "gen.npz", metrics=["fid"], extractor="pixels")
    big = evaluate_paths(tmp_path / "ref.npz", tmp_path / "gen.npz", metrics=["fid"], extractor="pixels", max_reference=1000)
    assert full.reference.max_reference is None and full.reference.subset == "all"
    assert big.reference.n == 1000 and big.reference.max_reference == 1000 and big.reference.subset == "all"
    assert "all of them were used" in big.reference.note and full.reference.note is None
    assert big.metrics["fid"] == full.metrics["fid"]


@pytest.mark.parametrize("bad", [1, 0, -5, 2.5, True, "100"])
def test_bad_caps_are_one_line_errors_naming_the_value(tmp_path, bad):
    with pytest.raises(ConfigError) as e:
        evaluate_paths(tmp_path / "nowhere.npz", tmp_path / "nowhere.npz", metrics=["fid"], max_reference=bad)
    msg = str(e.value)
    assert "\n" not in msg and "--max-reference" in msg and repr(bad) in msg
    with pytest.raises(ConfigError, match="--max-reference must be an integer >= 2, got 1"):
        evaluate_run(tmp_path / "nowhere", metrics=["fid"], max_reference=1)


def test_cap_below_a_metrics_minimum_is_refused_before_any_work(tmp_path):
    _ordered_sets(tmp_path)
    with pytest.raises(ConfigError, match="prdc needs at least 6 reference samples, got 5"):
        evaluate_paths(tmp_path / "ref.npz", tmp_path / "gen.npz", metrics=["prdc"], extractor="pixels", max_reference=5)


def test_run_cache_never_mixes_capped_and_whole_split_statistics(tmp_path, monkeypatch):
    monkeypatch.setenv("STATGAN_CACHE", str(tmp_path / "cache"))
    Trainer(config.load("mnist5k-dcgan", toy_overrides(tmp_path)), tmp_path / "toy").fit()
    kw = dict(metrics=["fid"], n=400, write=False)
    full = evaluate_run(tmp_path / "toy", **kw)
    capped = evaluate_run(tmp_path / "toy", max_reference=300, **kw)
    assert full.reference.cached is False and capped.reference.cached is False
    assert capped.reference.n == 300 and capped.reference.max_reference == 300
    assert full.reference.n == full.reference.n_available == capped.reference.n_available > 300
    assert capped.metrics["fid"] != full.metrics["fid"]
    # each is served from its own cache file afterwards
    capped2 = evaluate_run(tmp_path / "toy", max_reference=300, **kw)
    full2 = evaluate_run(tmp_path / "toy", **kw)
    assert capped2.reference.cached is True and capped2.metrics["fid"] == capped.metrics["fid"]
    assert full2.reference.cached is True and full2.metrics["fid"] == full.metrics["fid"]
    assert evaluate_run(tmp_path / "toy", max_reference=200, **kw).reference.cached is False
    assert len(list(cache_dir().glob("*.npz"))) == 3
    # a cap at or above the split's size is the whole split: same statistics, same cache file
    big = evaluate_run(tmp_path / "toy", max_reference=10**9, **kw)
    assert big.reference.cached is True and big.metrics["fid"] == full.metrics["fid"]
    assert "all of them were used" in big.reference.note
    # written results: the cap is in the file name, so a capped evaluation never overwrites the other
    a = evaluate_run(tmp_path / "toy", metrics=["fid"], n=400)
    b = evaluate_run(tmp_path / "toy", metrics=["fid"], n=400, max_reference=300)
    assert a.path != b.path and "-train-max300-" in b.path
    assert json.loads(open(b.path).read())["reference"]["max_reference"] == 300


def test_progress_bars_go_to_stderr_only_when_asked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STATGAN_CACHE", str(tmp_path / "cache"))
    Trainer(config.load("mnist5k-dcgan", toy_overrides(tmp_path)), tmp_path / "toy").fit()
    capsys.readouterr()
    evaluate_run(tmp_path / "toy", metrics=["fid"], n=400, write=False, cache=False)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    evaluate_run(tmp_path / "toy", metrics=["fid"], n=400, write=False, max_reference=300, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "eval: generated features" in err and "/400" in err and "img" in err
    assert "eval: reference statistics 8gaussians:train (300 of" in err and "/300" in err
    # statistics from the cache: no pass over the reference, so no bar for it
    evaluate_run(tmp_path / "toy", metrics=["fid"], n=400, write=False, max_reference=300, progress=True)
    err = capsys.readouterr().err
    assert "eval: generated features" in err and "reference" not in err
    _ordered_sets(tmp_path)
    evaluate_paths(tmp_path / "ref.npz", tmp_path / "gen.npz", metrics=["fid"], extractor="pixels", progress=True)
    err = capsys.readouterr().err
    assert "eval: reference features" in err and "/1000" in err and "eval: generated features" in err and "/600" in err
    evaluate_paths(tmp_path / "ref.npz", tmp_path / "gen.npz", metrics=["fid"], extractor="pixels")
    assert capsys.readouterr().err == ""
