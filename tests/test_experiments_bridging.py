"""statgan reproduce bridging: the tiny budget end to end, resume, bad input, and the statistics
behind the report's verdicts (checked against scipy and known cases)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from statgan.cli import main
from statgan.experiments import bridging, grid
from statgan.experiments.stats import chi2_decile_rms, mean_std, ranks, spearman, welch


# ---- end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bridging-tiny")
    rc = main(["reproduce", "bridging", "--budget", "tiny", "--out", str(out)])
    return rc, out


def test_tiny_writes_report_and_finite_cells(tiny_run):
    rc, out = tiny_run
    assert rc == 0
    cells = bridging.cells("tiny")
    assert len(cells) == 9 and cells[0].key == bridging.FLOOR_KEY  # the FID floor, then 8 training cells
    for cell in cells:
        key = cell.key
        rec = json.loads(grid.result_path(out, key).read_text())
        assert "error" not in rec, rec.get("error")
        res = rec["result"]
        if cell.spec["kind"] == "floor":
            assert 0 < res["fid"] < 20 and res["fid_extractor"].startswith("lenet-")
            continue
        if cell.spec["kind"] == "mnist":
            assert math.isfinite(res["fid"]) and res["fid"] > 0
            assert res["sharpness"] is not None and math.isfinite(res["sharpness"])
            assert res["fid_extractor"].startswith("lenet-")
        else:
            for k in ("chi2_rms", "logp_mean", "kde_test_ll", "logp_data"):
                assert math.isfinite(res[k]), (key, k)
        assert rec["wall_s"] >= 0 and rec["cpu_s"] >= 0
    text = (out / "bridging.md").read_text()
    assert "statgan reproduce bridging --budget tiny" in text
    assert "## The paper's claims, checked" in text
    assert "MC dropout helps on small data" in text and "Flatter minima" in text
    assert "cells finished: 9 of 9" in text and "Missing cells" not in text
    assert "| χ² RMS |" in text
    # measured, not typed: the floor from its cell, the image counts from the data
    floor = json.loads(grid.result_path(out, bridging.FLOOR_KEY).read_text())["result"]["fid"]
    assert f"the floor (data:mnist5k:test (n=1000) vs data:mnist5k:train (n=4000), measured) is {floor:.2f}" in text
    assert "the 4,000-image training split" in text


def test_tiny_resume_skips_finished_cells(tiny_run, capsys):
    rc, out = tiny_run
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*.json")}
    # a leftover of an interrupted cell is cleared when that cell runs again
    victim = grid.result_path(out, "mnist/gmmn/mcd/s0")
    victim.unlink()
    capsys.readouterr()
    assert main(["reproduce", "bridging", "--budget", "tiny", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "8 already finished (skipped), 1 to run" in err
    for p, t in before.items():
        if p != victim:
            assert p.stat().st_mtime_ns == t, p  # untouched
    assert victim.is_file()


def test_report_only_marks_missing_cells(tiny_run, tmp_path):
    _, out = tiny_run
    report = tmp_path / "partial.md"
    grid.result_path(out, "mnist/ragan/mcd/s0").rename(tmp_path / "aside.json")
    try:
        assert main(["reproduce", "bridging", "--budget", "tiny", "--out", str(out), "--report-only",
                     "--report", str(report)]) == 0
    finally:
        (tmp_path / "aside.json").rename(grid.result_path(out, "mnist/ragan/mcd/s0"))
    text = report.read_text()
    assert "cells finished: 8 of 9" in text and "**missing: 1**" in text
    assert "- `mnist/ragan/mcd/s0`" in text


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "nope"], "unknown reproduction 'nope'; choose one of: bridging"),
    (["reproduce", "bridging", "--budget", "huge"], "unknown budget 'huge' for bridging; choose one of: tiny, small, full"),
    (["reproduce", "bridging", "--budget", "tiny", "--jobs", "0"], "--jobs must be at least 1"),
    (["reproduce", "bridging", "--budget", "tiny", "--seeds", "1", "1"], "--seeds must be distinct integers"),
])
def test_bad_input_is_one_line_error(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("statgan: error: ") and message in err and "\n" not in err


def test_small_grid_is_complete_and_seed_major():
    cells = bridging.cells("small")
    mnist = [c for c in cells if c.key.startswith("mnist/")]
    assert len(mnist) == 3 * 8 * 3
    assert {c.spec["objective"] for c in mnist} == {"wgan-div", "ragan", "gmmn"}
    # the cells the claims compare come first for every seed, then the toys, then the rest (seed-major)
    assert cells[0].spec["kind"] == "floor"
    cells = cells[1:]
    groups = [c.spec.get("cell") in bridging.PRIORITY_CELLS for c in cells]
    n_first = sum(groups)
    assert n_first == 3 * 4 * 3 and all(groups[:n_first]) and not any(groups[n_first:])
    for part in (cells[:n_first], [c for c in cells[n_first:] if c.spec["kind"] == "mnist"]):
        assert [c.spec["seed"] for c in part] == sorted(c.spec["seed"] for c in part)
    by = {c.key: c.spec["config"] for c in mnist}
    base, small, large = (by[f"mnist/ragan/{k}/s0"]["train"] for k in ("baseline", "batch_small", "batch_large"))
    # the batch pair sees the same number of images as the baseline (equal epochs)
    assert base["steps"] * base["batch_size"] == small["steps"] * small["batch_size"] == large["steps"] * large["batch_size"]
    assert "sample_grad" in by["mnist/gmmn/gradreg/s0"]["regularizers"]
    assert "param_grad" in by["mnist/wgan-div/sam_gradreg/s0"]["regularizers"]
    assert by["mnist/ragan/mcd/s0"]["regularizers"]["mc_dropout"] == {"p": 0.1, "n_mcd": 2}
    toys = {(c.spec["density"], c.spec["latent_dim"]) for c in cells if c.key.startswith("toy/")}
    assert {d for _, d in toys} == {1, 2, 4, 8} and ("gaussian", 1) in toys
    assert next(c for c in cells if c.key == "toy/gaussian/z2/s0").spec["config"]["data"]["n"] == 200


# ---- the grid runner -----------------------------------------------------------------------------
CALLS: list = []


def _runner(spec, wd):
    CALLS.append(spec["x"])
    (wd / "marker").write_text("x")
    if spec.get("fail"):
        raise RuntimeError("boom")
    return {"y": spec["x"] * 2}


def test_grid_caches_by_spec_and_does_not_cache_crashes(tmp_path):
    CALLS.clear()
    cells = [grid.Cell("a/s0", {"x": 1}), grid.Cell("b/s0", {"x": 2, "fail": True})]
    done = grid.run_grid(cells, tmp_path, _runner, log=lambda s: None)
    assert set(done) == {"a/s0"} and done["a/s0"]["result"] == {"y": 2}
    assert not grid.result_path(tmp_path, "b/s0").exists()
    # rerun: a is cached, b (crashed) is tried again
    grid.run_grid(cells, tmp_path, _runner, log=lambda s: None)
    assert CALLS == [1, 2, 2]
    # a changed spec under the same key is a different cell: rerun
    grid.run_grid([grid.Cell("a/s0", {"x": 5})], tmp_path, _runner, log=lambda s: None)
    assert CALLS[-1] == 5
    assert json.loads(grid.result_path(tmp_path, "a/s0").read_text())["result"] == {"y": 10}


# ---- statistics ----------------------------------------------------------------------------------
def test_chi2_decile_rms_known_cases():
    rng = np.random.default_rng(0)
    exact = rng.standard_normal((10_000, 2))
    assert chi2_decile_rms(exact) < 0.1  # ≈ sqrt(9/n) = 0.03 expected
    assert chi2_decile_rms(np.zeros((10_000, 2))) == pytest.approx(3.0)  # collapsed: all in the first bin
    assert chi2_decile_rms(0.5 * exact) > 0.5  # too narrow
    assert chi2_decile_rms(2.0 * exact) > 0.5  # too wide
    # bins are the χ²₂ deciles: one point exactly inside each decile gives a perfect score
    q = (np.arange(10) + 0.5) / 10
    r = np.sqrt(-2 * np.log1p(-q))
    assert chi2_decile_rms(np.stack([r, np.zeros(10)], 1)) == 0.0
    with pytest.raises(ValueError):
        chi2_decile_rms(np.zeros((5, 3)))


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, 30).astype(float)  # many ties
    y = x + rng.normal(0, 2, 30)
    rho, p = spearman(x, y)
    ref = sps.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)
    assert ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert math.isnan(spearman([1, 2], [2, 1])[0])


def test_welch_matches_scipy_and_mean_std():
    a, b = [10.0, 12.0, 11.5], [15.0, 14.0, 18.0, 16.5]
    d, t, p = welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert d == pytest.approx(np.mean(a) - np.mean(b))
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert math.isnan(welch([1.0], [2.0, 3.0])[2])
    m, s = mean_std([1.0, 2.0, 3.0])
    assert (m, s) == (2.0, 1.0)
    assert math.isnan(mean_std([4.0])[1])


def test_verdicts_follow_the_numbers():
    assert bridging.classify(-5.0, 0.01) == "better"
    assert bridging.classify(5.0, 0.01) == "worse"
    assert bridging.classify(-5.0, 0.2) == "n.s."
    assert bridging.verdict({"a": "better", "b": "better", "c": "n.s."}).startswith("**holds**")
    assert bridging.verdict({"a": "better", "b": "n.s."}).startswith("**holds only for a**")
    assert bridging.verdict({"a": "worse", "b": "worse", "c": "n.s."}).startswith("**does not hold**")
    assert bridging.verdict({"a": "worse", "b": "n.s."}).startswith("**not supported**")
    assert bridging.verdict({"a": "better", "b": "worse"}).startswith("**mixed**")
    assert bridging.verdict({"a": "n.s."}).startswith("**inconclusive")


def test_kde_log_likelihood_single_kernel_is_a_gaussian():
    x = torch.tensor([[0.3, -0.2], [1.0, 1.0]], dtype=torch.float64)
    h = 0.7
    got = bridging.kde_log_likelihood(torch.zeros(1, 2), x, [h, 2 * h])
    for value, bw in zip(got, (h, 2 * h)):
        expected = sps.multivariate_normal(mean=[0, 0], cov=bw**2 * np.eye(2)).logpdf(x.numpy()).mean()
        assert value == pytest.approx(expected, abs=1e-10)
