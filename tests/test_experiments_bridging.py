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
from statgan.errors import StatganError, TrainingInterrupted
from statgan import config
from statgan.experiments import bridging, grid
from statgan.experiments.bridging import running
from statgan.experiments.stats import (cell_mean_spearman, chi2_decile_rms, holm, mean_std, ranks, spearman,
                                       spearman_exact, spearman_interval, welch, welch_test)
from statgan.regularizers.sharpness import fixed_batch_sharpness, top_hessian_eigenvalue


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
            assert math.isfinite(res["sharpness_last_batch"]) and res["sharpness_n"] == 256
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
    # a smoke test: it says so and judges nothing (issue 14: three points gave "holds ... p < 0.001")
    assert "**Smoke test: no verdicts at the tiny budget**" in text
    assert text.count("**smoke test: no verdicts at the tiny budget**") == 5  # claims 1, 2 (+ SAM alone), 3; the sweep
    for word in ("**holds", "**partly holds", "**does not hold", "**unresolved", "significantly worse:"):
        assert word not in text, word
    assert "Baselines have not learned" in text  # 4 steps: FID hundreds of times the floor
    assert "Spearman on 3 cell means (3 runs; exact permutation p)" in text
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


def test_committed_records_rebuild_the_report(tiny_run, tmp_path):
    # OUT/records.jsonl holds every finished cell; --collect writes the same report from it alone
    # (no run directories), and ignores records of cells whose spec changed; a bad file is one line
    _, out = tiny_run
    assert main(["reproduce", "bridging", "--budget", "tiny", "--out", str(out), "--report-only",
                 "--report", str(tmp_path / "from-cells.md")]) == 0
    records = grid.records_path(out)
    lines = records.read_text().splitlines()
    assert len(lines) == 9 and all(json.loads(line)["spec_hash"] for line in lines)
    stale = json.loads(lines[0]) | {"spec_hash": "0" * 16}
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps(stale) + "\n")
    assert main(["reproduce", "bridging", "--budget", "tiny", "--collect", str(records), str(extra),
                 "--report", str(tmp_path / "from-records.md")]) == 0

    def body(path):  # the report without its command line
        return [line for line in path.read_text().splitlines() if not line.startswith("- command:")]

    assert body(tmp_path / "from-records.md") == body(tmp_path / "from-cells.md")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1, 2]\n")
    assert main(["reproduce", "bridging", "--budget", "tiny", "--collect", str(bad)]) == 2


def test_five_seeds_are_accepted(tmp_path):
    # --seeds takes any number of distinct seeds; the report-only path builds the whole grid without running it
    out = tmp_path / "o"
    assert main(["reproduce", "bridging", "--budget", "tiny", "--seeds", "0", "1", "2", "3", "4", "--out", str(out),
                 "--report-only"]) == 0
    text = (out / "bridging.md").read_text()
    assert "- seeds: 0, 1, 2, 3, 4" in text and "cells finished: 0 of 41" in text  # floor + 5 × (6 image + 2 toy)
    assert bridging.BUDGETS["small"].seeds == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "nope"], "unknown reproduction 'nope'; choose one of: bridging"),
    (["reproduce", "bridging", "--budget", "huge"], "unknown budget 'huge' for bridging; choose one of: tiny, small, medium, full"),
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
    assert len(mnist) == 3 * 8 * 5  # at least 5 seeds (issue 14)
    assert {c.spec["objective"] for c in mnist} == {"wgan-div", "ragan", "gmmn"}
    # the cells the claims compare come first for every seed, then the toys, then the rest (seed-major)
    assert cells[0].spec["kind"] == "floor"
    cells = cells[1:]
    groups = [c.spec.get("cell") in bridging.PRIORITY_CELLS for c in cells]
    n_first = sum(groups)
    assert n_first == 3 * 4 * 5 and all(groups[:n_first]) and not any(groups[n_first:])
    for part in (cells[:n_first], [c for c in cells[n_first:] if c.spec["kind"] == "mnist"]):
        assert [c.spec["seed"] for c in part] == sorted(c.spec["seed"] for c in part)
    by = {c.key: c.spec["config"] for c in mnist}
    base, small, large = (by[f"mnist/ragan/{k}/s0"]["train"] for k in ("baseline", "batch_small", "batch_large"))
    # the batch pair sees the same number of images as the baseline (equal epochs)
    assert base["steps"] * base["batch_size"] == small["steps"] * small["batch_size"] == large["steps"] * large["batch_size"]
    assert "sample_grad" in by["mnist/gmmn/gradreg/s0"]["regularizers"]
    assert "param_grad" in by["mnist/wgan-div/sam_gradreg/s0"]["regularizers"]
    assert by["mnist/ragan/mcd/s0"]["regularizers"]["mc_dropout"] == {"p": 0.1, "n_mcd": 2}
    # every cell's sharpness on the same fixed evaluation batch
    assert {json.dumps(c.spec["sharpness"], sort_keys=True) for c in mnist} == {json.dumps(
        {"method": "fixed-batch-eval", "n": 1024, "iters": 20, "seed": bridging.SHARPNESS_SEED}, sort_keys=True)}
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


def _interrupted_runner(spec, wd):
    CALLS.append(spec["x"])
    if spec.get("interrupt"):
        # what the trainer raises after its checkpoint when SIGINT/SIGTERM arrives mid-cell
        raise TrainingInterrupted(15, 460, wd / "run" / "checkpoints" / "step-000460.json")
    return {"y": spec["x"]}


def test_a_signal_during_a_cell_stops_the_grid(tmp_path):
    # before, the interrupted cell was logged as a failed cell and the grid went on to the next one,
    # so a grid could not be stopped with Ctrl-C or SIGTERM while a cell trained
    CALLS.clear()
    cells = [grid.Cell("a/s0", {"x": 1}), grid.Cell("b/s0", {"x": 2, "interrupt": True}), grid.Cell("c/s0", {"x": 3})]
    with pytest.raises(TrainingInterrupted):
        grid.run_grid(cells, tmp_path, _interrupted_runner, log=lambda s: None)
    assert CALLS == [1, 2]  # c never started
    assert grid.result_path(tmp_path, "a/s0").exists() and not grid.result_path(tmp_path, "b/s0").exists()


def test_an_interrupted_cell_continues_from_its_checkpoint_to_the_same_result(tmp_path, monkeypatch, one_thread):
    """A signal at step 2 of a tiny image cell stops the grid; the next run continues that cell from
    the trainer's checkpoint (not from scratch) and records what an uninterrupted run records,
    with the CPU time of both attempts."""
    spec = next(c for c in bridging.cells("tiny") if c.key == "mnist/ragan/baseline/s0")
    straight = grid.run_grid([spec], tmp_path / "straight", bridging.run_cell, log=lambda s: None)
    real_trainer = running.Trainer

    class StopsOnce(real_trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.callbacks.append(lambda tr, step: step == 2 and tr.request_stop(reason="test stop"))

    monkeypatch.setattr(running, "Trainer", StopsOnce)
    with pytest.raises(TrainingInterrupted, match="test stop"):
        grid.run_grid([spec], tmp_path / "cut", bridging.run_cell, log=lambda s: None)
    wd = grid.work_dir(tmp_path / "cut", spec.key)
    marker = json.loads((wd / grid.ATTEMPT_FILE).read_text())
    assert marker["spec_hash"] == spec.spec_hash and marker["cpu_s"] > 0
    monkeypatch.undo()
    starts = []
    monkeypatch.setattr(running, "Trainer", lambda cfg, run_dir, resume=False: starts.append(resume)
                        or real_trainer(cfg, run_dir, resume=resume))
    resumed = grid.run_grid([spec], tmp_path / "cut", bridging.run_cell, log=lambda s: None)
    assert starts == [True] and not (wd / grid.ATTEMPT_FILE).exists()
    a, b = straight[spec.key], resumed[spec.key]
    assert a["result"]["fid"] == b["result"]["fid"] and a["result"]["sharpness"] == b["result"]["sharpness"]
    assert b["result"]["steps"] == a["result"]["steps"] and b["cpu_s"] > marker["cpu_s"]


#: trains the tiny baseline cell as a grid in a process of its own, with a checkpoint every 2 steps and
#: the attempt file refreshed every 0.05 s, and kills that process (SIGKILL: no handler, no finally)
#: right after the checkpoint of step 4
_KILLED_ATTEMPT = """
import os, signal, sys
import torch
from statgan.experiments import bridging, grid
from statgan.experiments.bridging import running
torch.set_num_threads(1)
grid.HEARTBEAT_S = 0.05
running.CELL_CHECKPOINT_EVERY = 2
real_trainer = running.Trainer

class KilledAfterStep4(real_trainer):
    def save_checkpoint(self, name=None):
        path = super().save_checkpoint(name)
        if self.step == 4:
            import time; time.sleep(0.3)  # the heartbeat has written the seconds spent by now
            os.kill(os.getpid(), signal.SIGKILL)
        return path

running.Trainer = KilledAfterStep4
spec = next(c for c in bridging.cells("tiny") if c.key == "mnist/ragan/baseline/s0")
grid.run_grid([spec], sys.argv[1], bridging.run_cell, log=lambda s: None)
"""


def test_a_cell_killed_without_warning_continues_from_its_last_periodic_checkpoint(tmp_path, monkeypatch, one_thread):
    """SIGKILL (or a lost machine, or a --jobs worker stopped with the grid) gives the trainer no chance
    to checkpoint: the cell's periodic checkpoints and the attempt file are what the next run continues
    from, to the result of an uninterrupted run, with the killed attempt's seconds in the record."""
    import subprocess
    import sys
    spec = next(c for c in bridging.cells("tiny") if c.key == "mnist/ragan/baseline/s0")
    assert spec.spec["config"]["train"]["steps"] < running.CELL_CHECKPOINT_EVERY
    plain = grid.run_grid([spec], tmp_path / "plain", bridging.run_cell, log=lambda s: None)[spec.key]
    monkeypatch.setattr(running, "CELL_CHECKPOINT_EVERY", 2)
    straight = grid.run_grid([spec], tmp_path / "straight", bridging.run_cell, log=lambda s: None)[spec.key]
    # checkpoints every 2 steps change nothing that is learned or measured
    timings = ("train_s", "sharpness_s", "eval_s")
    assert {k: v for k, v in plain["result"].items() if k not in timings} == {k: v for k, v in straight["result"].items() if k not in timings}
    killed = subprocess.run([sys.executable, "-c", _KILLED_ATTEMPT, str(tmp_path / "cut")], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    wd = grid.work_dir(tmp_path / "cut", spec.key)
    marker = json.loads((wd / grid.ATTEMPT_FILE).read_text())
    assert marker["spec_hash"] == spec.spec_hash and marker["cpu_s"] > 0 and marker["wall_s"] > 0
    assert [p.name for p in (wd / "run" / "checkpoints").glob("*.json")] == ["step-000004.json"]
    starts = []
    real_trainer = running.Trainer
    monkeypatch.setattr(running, "Trainer", lambda cfg, run_dir, resume=False: starts.append(resume)
                        or real_trainer(cfg, run_dir, resume=resume))
    resumed = grid.run_grid([spec], tmp_path / "cut", bridging.run_cell, log=lambda s: None)[spec.key]
    assert starts == [True] and not (wd / grid.ATTEMPT_FILE).exists()
    assert {k: v for k, v in resumed["result"].items() if k not in timings} == {k: v for k, v in straight["result"].items() if k not in timings}
    assert resumed["cpu_s"] > marker["cpu_s"] and resumed["wall_s"] > marker["wall_s"]
    # killed after training, while measuring: the rerun loads the last checkpoint, trains no step, measures
    grid.result_path(tmp_path / "cut", spec.key).unlink()
    (wd / grid.ATTEMPT_FILE).write_text(json.dumps({"spec_hash": spec.spec_hash, "cpu_s": 1.0, "wall_s": 1.0}))
    measured = grid.run_grid([spec], tmp_path / "cut", bridging.run_cell, log=lambda s: None)[spec.key]
    assert starts == [True, True]
    assert {k: v for k, v in measured["result"].items() if k not in timings} == {k: v for k, v in straight["result"].items() if k not in timings}


def test_a_cell_killed_before_its_first_checkpoint_starts_again(tmp_path, one_thread):
    """An attempt file but no checkpoint in the run directory: the runner clears the run and trains from step 0."""
    spec = next(c for c in bridging.cells("tiny") if c.key == "mnist/ragan/baseline/s0")
    wd = grid.work_dir(tmp_path, spec.key)
    (wd / "run").mkdir(parents=True)
    (wd / "run" / "config.yaml").write_text("left by a killed attempt\n")
    (wd / grid.ATTEMPT_FILE).write_text(json.dumps({"spec_hash": spec.spec_hash, "cpu_s": 7.0, "wall_s": 9.0}))
    rec = grid.run_grid([spec], tmp_path, bridging.run_cell, log=lambda s: None)[spec.key]
    assert rec["result"]["steps"] == spec.spec["config"]["train"]["steps"]
    assert rec["cpu_s"] > 7.0 and rec["wall_s"] > 9.0


def test_the_work_of_a_crashed_attempt_or_another_spec_is_cleared(tmp_path):
    CALLS.clear()
    cell = grid.Cell("a/s0", {"x": 1})
    wd = grid.work_dir(tmp_path, cell.key)
    wd.mkdir(parents=True)
    (wd / "stale").write_text("x")
    (wd / grid.ATTEMPT_FILE).write_text(json.dumps({"spec_hash": "another spec", "cpu_s": 5.0, "wall_s": 5.0}))
    rec = grid.run_grid([cell], tmp_path, _runner, log=lambda s: None)[cell.key]
    assert not (wd / "stale").exists() and rec["cpu_s"] < 5.0
    # a crash (not a signal) leaves no attempt file: the rerun starts afresh
    boom = grid.Cell("b/s0", {"x": 2, "fail": True})
    grid.run_grid([boom], tmp_path, _runner, log=lambda s: None)
    assert not (grid.work_dir(tmp_path, boom.key) / grid.ATTEMPT_FILE).exists()


def test_periodic_cell_checkpoints_change_nothing_that_is_learned():
    for c in bridging.cells("medium")[:3] + bridging.cells("small")[:3]:
        if "config" in c.spec:
            cfg = config.from_dict(c.spec["config"])
            periodic = running._with_periodic_checkpoints(cfg)
            assert periodic.train.checkpoint_every == running.CELL_CHECKPOINT_EVERY
            assert config.diff(cfg, periodic) == [f"train.checkpoint_every: 0 -> {running.CELL_CHECKPOINT_EVERY}"]
            assert config.resume_blockers(cfg, periodic) == []


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


def _effect(label, estimate, p, expected=-1):
    return bridging.Effect(label, "Δ FID", estimate, estimate - 10, estimate + 10, "Welch t(4.0) = 1.00", p, p,
                           expected)


def test_verdicts_follow_the_numbers():
    sig_better, sig_worse = _effect("a", -5.0, 0.01), _effect("b", 5.0, 0.01)
    ns_better, ns_worse = _effect("c", -5.0, 0.2), _effect("d", 94.4, 0.238)
    assert [e.outcome for e in (sig_better, sig_worse, ns_better, ns_worse)] == ["supports", "contradicts", "n.s.", "n.s."]
    assert bridging.verdict([sig_better, _effect("e", -1.0, 0.001)]).startswith("**holds**")
    assert bridging.verdict([sig_better, ns_better]).startswith("**partly holds**")
    mixed = bridging.verdict([sig_better, sig_worse])
    assert mixed.startswith("**partly holds**") and "significantly the other way for b" in mixed
    assert bridging.verdict([sig_worse, ns_better]).startswith("**does not hold**")
    assert bridging.verdict([ns_better, ns_worse]).startswith("**unresolved**")
    assert bridging.verdict([_effect("x", math.nan, math.nan)]).startswith("**unresolved**: nothing testable")
    # a positive claim (ρ > 0 predicted)
    assert bridging.verdict([_effect("r", 0.9, 0.001, expected=+1)]).startswith("**holds**")


def test_verdict_names_wrong_direction_estimates():
    sam = _effect("wgan-div", 94.4, 0.238)
    assert sam.wrong_way and not _effect("ragan", -24.2, 0.12).wrong_way
    text = bridging.verdict([sam, _effect("ragan", -24.2, 0.12)])
    assert "point estimates in the wrong direction (not significant): wgan-div (Δ FID +94.4)" in text
    line = sam.describe()
    assert line.startswith("wgan-div: Δ FID +94.4 [95% CI +84.4, +104.4], Welch t(4.0) = 1.00, p 0.238")
    assert line.endswith("the wrong direction, not significant")
    assert _effect("b", 5.0, 0.01).describe().endswith("the wrong direction, significant")


def test_holm_changes_a_verdict():
    # three objectives with raw p 0.04, 0.3, 0.5: significant alone, not after Holm (0.04·3 = 0.12)
    effects = bridging.with_holm([_effect("a", -5.0, 0.04), _effect("b", -1.0, 0.3), _effect("c", -1.0, 0.5)])
    assert [e.p_adj for e in effects] == pytest.approx([0.12, 0.6, 0.6])
    assert bridging.verdict(effects).startswith("**unresolved**")


def test_no_verdicts_at_a_smoke_test_budget():
    assert not bridging.BUDGETS["tiny"].verdicts and bridging.BUDGETS["small"].verdicts
    text = bridging.verdict([_effect("a", -5.0, 0.001)], verdicts=False)
    assert text == "**smoke test: no verdicts at the tiny budget**"
    sweep = [("gaussian", "χ² RMS", 2, _effect("z = 1", 0.1, 0.001, expected=+1))]
    lines = bridging.sweep_summary(sweep, 1, verdicts=False)
    assert any("smoke test: no verdicts" in line for line in lines) and not any("significantly worse" in line for line in lines)


def test_sweep_summary_is_holm_corrected():
    # four comparisons with p 0.01, 0.02, 0.03, 0.2: Holm 0.04, 0.06, 0.06, 0.2 -> only the first is worse
    sweep = [("gaussian", "χ² RMS", 2, _effect("z = 1", 0.5, 0.01, expected=+1)),
             ("gaussian", "χ² RMS", 2, _effect("z = 4", 0.1, 0.02, expected=+1)),
             ("gaussian", "KDE test LL", 2, _effect("z = 1", -0.2, 0.03)),
             ("gaussian", "KDE test LL", 2, _effect("z = 4", -0.1, 0.2))]
    text = "\n".join(bridging.sweep_summary(sweep, 1))
    assert "Holm-adjusted over all 4 pairwise comparisons" in text
    assert "- gaussian, χ² RMS: best z = 2; significantly worse: z = 1 (+0.50, Holm p 0.040)" in text
    assert "- gaussian, KDE test LL: best z = 2; significantly worse: none" in text
    assert "significantly worse than the best dimension on 1 of 2 scores" in text


def test_report_says_when_baselines_have_not_learned():
    floor = bridging.Floor(4.23, "lenet-x", "test", "train")
    runs = tuple(bridging.ImageRun(objective="wgan-div", cell="baseline", seed=s, fid=f) for s, f in enumerate([350.0, 367.6]))
    ok = tuple(bridging.ImageRun(objective="gmmn", cell="baseline", seed=s, fid=f) for s, f in enumerate([20.0, 22.0]))
    note = bridging.learned_note(bridging.Results(runs + ok, (), floor, {}), ["wgan-div", "gmmn"])
    # one decimal near the line: 21.0 / 4.23 = 4.96, 40.3 / 4.23 = 9.53 (not "10x", which would read as on the line)
    assert note.startswith("**Baselines have not learned**: wgan-div FID 358.8 = 85×floor; gmmn FID 21.0 = 5.0×floor")
    near = (bridging.ImageRun(objective="ragan", cell="baseline", seed=0, fid=40.3),)
    assert "ragan FID 40.3 = 9.5×floor" in bridging.learned_note(bridging.Results(near, (), floor, {}), ["ragan"])
    assert "for wgan-div)" in note
    good = bridging.learned_note(bridging.Results(ok, (), floor, {}), ["gmmn"])
    assert good.startswith("Baselines within 10× the real-vs-real floor of 4.23")


def test_kde_log_likelihood_single_kernel_is_a_gaussian():
    x = torch.tensor([[0.3, -0.2], [1.0, 1.0]], dtype=torch.float64)
    h = 0.7
    got = bridging.kde_log_likelihood(torch.zeros(1, 2), x, [h, 2 * h])
    for value, bw in zip(got, (h, 2 * h)):
        expected = sps.multivariate_normal(mean=[0, 0], cov=bw**2 * np.eye(2)).logpdf(x.numpy()).mean()
        assert value == pytest.approx(expected, abs=1e-10)


# ---- issue 14: sharpness on a fixed evaluation batch ----------------------------------------------
def _least_squares(n, d, top, rest, seed=0):
    """x with second moment exactly diag(top, rest, ..., rest) (whitened, then scaled), so the
    full-data Hessian of ½·mean (xᵀw − y)² is that matrix: its top eigenvalue is ``top``, in closed form."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    e, v = torch.linalg.eigh(x.T @ x / n)
    x = x @ v @ torch.diag(e.rsqrt()) @ v.T
    scale = torch.full((d,), rest, dtype=torch.float64)
    scale[0] = top
    x = x * scale.sqrt()
    y = x @ torch.randn(d, 1, generator=g, dtype=torch.float64) + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, y


def _old_and_new_sharpness(x, y, batch, eval_n=1024, steps=30):
    """Train a linear model by SGD at ``batch``; return (old, new) estimates: the old one on the
    last training batch (what the in-training probe measured), the new one on the fixed
    evaluation batch of :func:`bridging.sharpness_batch` with the module in eval mode."""
    torch.manual_seed(1)
    model = torch.nn.Linear(x.shape[1], 1, bias=False).double()
    order = torch.Generator().manual_seed(2)
    for _ in range(steps):  # plain SGD, lr 1 (by hand: torch.optim's first import costs seconds)
        idx = torch.randperm(len(x), generator=order)[:batch]
        model.zero_grad()
        (0.5 * ((model(x[idx]) - y[idx]) ** 2).mean()).backward()
        with torch.no_grad():
            model.weight -= model.weight.grad
    last = 0.5 * ((model(x[idx]) - y[idx]) ** 2).mean()
    old = top_hessian_eigenvalue(last, list(model.parameters()), 20, 1e-3, torch.Generator().manual_seed(3))
    xy, _ = bridging.sharpness_batch(torch.cat([x, y], 1), eval_n, latent_dim=1)
    xe, ye = xy[:, :-1], xy[:, -1:]
    new = fixed_batch_sharpness(lambda: 0.5 * ((model(xe) - ye) ** 2).mean(), list(model.parameters()), [model], 20,
                                generator=torch.Generator().manual_seed(3))
    return old, new


def test_fixed_batch_sharpness_does_not_depend_on_training_batch_size():
    # Least squares: the Hessian is X_Bᵀ X_B / b whatever the weights, so any dependence of an
    # estimate on the training batch size is the estimator's. Full-data top eigenvalue λ = 0.01
    # (a spike over 19 directions of 0.0025, d = 20, n = 4,096).
    lam = 0.01
    x, y = _least_squares(4096, 20, lam, 0.0025)
    est = {b: _old_and_new_sharpness(x, y, b) for b in (16, 128, 4096)}
    news = [new for _, new in est.values()]
    # the same evaluation batch for every training batch size: the same value
    assert max(news) == pytest.approx(min(news), rel=1e-9)
    # ≈ λ: the 1,024-row evaluation batch's top eigenvalue has relative sd ≈ sqrt(2/m)·sqrt(1 − m/n)
    # = 0.038 (a sample mean of x₁²; finite-population correction) and a spiked-model bias of
    # (d/m)·rest/(λ − rest) = 0.65%: 15% is about four standard deviations
    for b, (_, new) in est.items():
        assert new == pytest.approx(lam, rel=0.15), b
    # the old estimate (last training batch) at batch 16 is outside that tolerance: the test fails with it
    assert est[16][0] > 1.15 * lam
    assert est[4096][0] == pytest.approx(lam, rel=1e-3)  # the full data: exact up to the power-iteration tolerance


def test_old_sharpness_grows_as_the_batch_shrinks_new_one_does_not():
    # The isotropic case (d = 200, λ = 0.01): the b-sample Hessian's top eigenvalue is about
    # λ(1 + sqrt(d/b))² (Marchenko–Pastur), 20× λ at b = 16; the fixed evaluation batch has the same
    # finite-batch bias λ(1 + sqrt(200/1024))² ≈ 1.9λ for every run, so comparisons are fair.
    lam = 0.01
    x, y = _least_squares(4096, 200, lam, lam)
    est = {b: _old_and_new_sharpness(x, y, b) for b in (16, 128, 4096)}
    assert est[16][0] > 10 * est[4096][0]
    news = [new for _, new in est.values()]
    assert max(news) == pytest.approx(min(news), rel=1e-9)
    assert lam < news[0] < lam * (1 + math.sqrt(200 / 1024)) ** 2 * 1.1


def test_fixed_batch_sharpness_uses_eval_mode_and_restores_the_modules():
    # BatchNorm (affine=False) with set running statistics, then dropout, then a linear layer: in
    # eval mode the Hessian w.r.t. the linear weight is ZᵀZ/m with Z = (x − μ)/sqrt(v + eps),
    # independently computed with numpy; dropout off, so two calls agree exactly.
    torch.manual_seed(0)
    d, m = 6, 64
    net = torch.nn.Sequential(torch.nn.BatchNorm1d(d, affine=False), torch.nn.Dropout(0.5),
                              torch.nn.Linear(d, 1, bias=False)).double()
    bn = net[0]
    bn.running_mean.copy_(torch.linspace(-1, 1, d))
    bn.running_var.copy_(torch.linspace(0.5, 2, d))
    x = torch.randn(m, d, dtype=torch.float64) * torch.linspace(0.5, 3, d) + 0.3
    y = torch.randn(m, 1, dtype=torch.float64)
    net.train()
    buffers = [b.clone() for b in net.buffers()]
    loss = lambda: 0.5 * ((net(x) - y) ** 2).mean()  # noqa: E731
    weight = [net[2].weight]
    got = [fixed_batch_sharpness(loss, weight, [net], 200, 1e-10, torch.Generator().manual_seed(0)) for _ in range(2)]
    z = ((x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)).numpy()
    expected = np.linalg.eigvalsh(z.T @ z / m)[-1]
    assert got[0] == got[1] == pytest.approx(expected, rel=1e-6)
    assert all(mod.training for mod in net.modules())  # train mode restored
    assert all(torch.equal(a, b) for a, b in zip(buffers, net.buffers()))  # running statistics untouched
    # train mode (batch statistics, dropout on) measures a different function
    train_value = top_hessian_eigenvalue(loss(), weight, 200, 1e-10, torch.Generator().manual_seed(0))
    assert abs(train_value - expected) > 0.05 * expected


def test_sharpness_batch_is_fixed_by_its_seed():
    data = torch.arange(100.0).reshape(50, 2)
    a, za = bridging.sharpness_batch(data, 16, 3)
    b, zb = bridging.sharpness_batch(data, 16, 3)
    assert torch.equal(a, b) and torch.equal(za, zb) and za.shape == (16, 3)
    assert len(set(a[:, 0].tolist())) == 16  # distinct rows
    c, _ = bridging.sharpness_batch(data, 16, 3, seed=1)
    assert not torch.equal(a, c)
    assert len(bridging.sharpness_batch(data, 500, 3)[0]) == 50  # at most the whole data


# ---- issue 14: statistics of the verdicts ---------------------------------------------------------
def test_holm_against_hand_computed_values():
    # sorted p: 0.005, 0.01, 0.03, 0.04 (m = 4) -> ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04, then
    # running maximum: 0.02, 0.03, 0.06, 0.06; nan is not counted in m
    got = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15) and math.isnan(got[4])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02]


def test_welch_interval_matches_scipy():
    a, b = [10.0, 12.0, 11.5], [15.0, 14.0, 18.0, 16.5]
    w = welch_test(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (w.lo, w.hi) == pytest.approx((ci.low, ci.high)) and w.p == pytest.approx(ref.pvalue)
    assert math.isnan(welch_test([1.0], [2.0, 3.0]).lo)


def test_spearman_on_cell_means_counts_cells():
    # 4 cells of 2 runs; the cell means are (1, 1), (2, 3), (3, 2), (4, 4): ρ = 1 − 6·2/(4·15) = 0.8.
    # Within each cell the runs go the other way (x up, y down), which a pooled correlation would mix in.
    cells = [([0.5, 1.5], [1.5, 0.5]), ([1.5, 2.5], [3.5, 2.5]), ([2.5, 3.5], [2.5, 1.5]), ([3.5, 4.5], [4.5, 3.5])]
    c = cell_mean_spearman(cells)
    assert (c.n, c.n_runs) == (4, 8) and c.rho == pytest.approx(0.8)
    # exact two-sided p: pairings with |ρ| ≥ 0.8 are those with Σd² ∈ {0, 2, 18, 20}: 1 + 3 + 3 + 1 of 24
    assert c.p == pytest.approx(8 / 24)
    pooled = spearman([v for xs, _ in cells for v in xs], [v for _, ys in cells for v in ys])[0]
    assert pooled != pytest.approx(c.rho)
    assert -1 < c.lo < c.rho < c.hi < 1 and c.hi - c.lo > 1  # n − 3 = 1: a very wide interval
    # three points in perfect order: exactly 2 of the 3! pairings are as extreme (the t approximation says p ≈ 0)
    assert spearman_exact([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx((1.0, 1 / 3))


def test_spearman_interval_hand_computed():
    # ρ = 0.5, n = 10: z = artanh 0.5 = 0.54931, se = sqrt(1.125/7) = 0.40089, half = 1.95996·se = 0.78573
    lo, hi = spearman_interval(0.5, 10)
    assert lo == pytest.approx(math.tanh(0.54931 - 0.78573), abs=1e-4)
    assert hi == pytest.approx(math.tanh(0.54931 + 0.78573), abs=1e-4)
    assert math.isnan(spearman_interval(0.5, 3)[0])


def _synthetic_records(base_fid: float, shift: dict, noise: dict, seed: int = 0, budget: str = "small") -> tuple:
    """Made-up records of the whole grid of ``budget``: FID = base + the cell's shift + normal noise
    (sd 0.5 unless ``noise`` says otherwise); floor 4.23."""
    cells = bridging.cells(budget)
    rng = np.random.default_rng(seed)
    records = {}
    for c in cells:
        spec = c.spec
        if spec["kind"] == "floor":
            res = {"fid": 4.23, "fid_extractor": "lenet-x", "fid_reference": "test", "fid_generated": "train"}
        elif spec["kind"] == "mnist":
            fid = base_fid + shift.get(spec["cell"], 0.0) + rng.normal(0, noise.get(spec["cell"], 0.5))
            res = {"fid": fid, "sharpness": 1.0 + 0.01 * fid + rng.normal(0, 0.1), "sharpness_last_batch": 5.0}
        else:
            res = {"chi2_rms": 0.1 + 0.5 * (spec["latent_dim"] == 1) + rng.normal(0, 0.01), "logp_mean": -3.0,
                   "logp_data": -2.85, "in_support": 1.0, "kde_test_ll": -3.0 - (spec["latent_dim"] == 1)
                   + rng.normal(0, 0.01)}
        records[c.key] = {"key": c.key, "spec": spec, "result": res, "wall_s": 1.0, "cpu_s": 1.0,
                          "finished": "2026-01-01T00:00:00"}
    return cells, records


def _claims(text: str) -> list:
    claims = text.split("## The paper's claims, checked")[1]
    return [claims.split(f"\n{i}. ")[1].split(f"\n{i + 1}. ")[0] for i in (1, 2, 3, 4)]


def test_small_report_from_synthetic_results(tmp_path):
    # the report's verdict path (not reached by the tiny budget), on made-up cell records of learned
    # baselines (FID 30 = 7x the floor): MC dropout lowers FID by 5 (sd 0.5 over 5 seeds: significant),
    # SAM & gradient reg. raises it by 9.4 with sd 30 (the wrong direction, not significant)
    cells, records = _synthetic_records(30.0, {"mcd": -5.0, "sam_gradreg": 9.4}, {"sam_gradreg": 30.0})
    text = bridging.write_report("small", cells, records, tmp_path / "r.md", "cmd", 1.0, "machine")
    claims = text.split("## The paper's claims, checked")[1]
    assert claims.count("\n1. **MC dropout helps on small data**") == 1
    claim1, claim2, claim3, claim4 = _claims(text)
    assert "**holds**: significant in the predicted direction for all 3" in claim1
    # the GANs' gradient regulariser deviates from the paper's code: only gmmn tests claim 2's combination
    assert claim2.index("**unresolved**") < claim2.index("SAM alone")
    head2 = claim2.split("SAM alone")[0]
    assert "not tested: wgan-div (its gradient regulariser is differentiable here" in head2
    assert "point estimates in the wrong direction (not significant): gmmn (Δ FID +" in head2
    assert "detectable at this design (80% power, p < 0.05/1, Holm's first level): gmmn |Δ FID| ≥" in head2
    assert "Spearman on 8 cell means (40 runs; exact permutation p)" in claim3
    assert "Baselines within 10× the real-vs-real floor" in claims and "have not learned" not in claims
    assert "Holm-adjusted over all 24 pairwise comparisons" in text  # 4 scores (gaussian 2, the others 1 each) × 6 pairs
    assert "significantly worse than the best dimension on 4 of 4 scores" in text
    assert "smoke test" not in text


def test_report_does_not_judge_baselines_that_have_not_learned(tmp_path):
    # the same effects on baselines at 300 (71x the floor): every image claim is "not tested at this budget"
    cells, records = _synthetic_records(300.0, {"mcd": -5.0, "sam": 50.0}, {})
    text = bridging.write_report("small", cells, records, tmp_path / "r.md", "cmd", 1.0, "machine")
    assert "**Baselines have not learned**" in text and "71×floor" in text
    for claim in _claims(text):
        assert f"**{bridging.NOT_TESTED}**: wgan-div — its baseline has not learned: FID" in claim
    assert "**does not hold**" not in text and "**holds**" not in text.split("## Latent dimension")[0]


# ---- the medium budget: the paper's cells on a recipe whose baselines learn -------------------------
def test_medium_cells_are_the_recipe_plus_one_treatment():
    """Every medium cell trains with the recipe (D without BatchNorm, Adam 2e-3 (0, 0.99), R1/R2, ramped
    EMA) and differs from the baseline only by its treatment; the paper's budgets keep the paper's recipe."""
    specs = {s.cell: s for s in bridging.plan("medium", seeds=[0]) if isinstance(s, bridging.ImageCell)}
    assert set(specs) == set(bridging.CELLS) and {s.objective for s in specs.values()} == {"ragan"}
    base = specs["baseline"].config
    assert base["model"]["discriminator"]["norm"] == "none" and base["model"]["generator"]["norm"] == "batch"
    assert base["train"]["lr_g"] == base["train"]["lr_d"] == 2e-3 and base["train"]["betas"] == [0.0, 0.99]
    assert base["regularizers"]["r1"] == base["regularizers"]["r2"] == {"weight": 1.0, "every": 16}
    assert "ema_decay" not in base["train"] and base["train"]["ema_halflife_kimg"] == 10.0
    for name, spec in specs.items():
        cfg = spec.config
        config.validate(config.from_dict(cfg))  # every cell is a valid run
        assert cfg["model"]["discriminator"]["norm"] == "none" and cfg["regularizers"]["r1"] == {"weight": 1.0, "every": 16}
        added = set(cfg["regularizers"]) - set(base["regularizers"])
        expected = set(bridging.TREATMENTS[name].regularizers("ragan", 1, 1)) - {"sharpness"}
        assert added == expected, name
        steps = spec.steps * spec.batch_size
        assert steps == base["train"]["steps"] * base["train"]["batch_size"], name  # equal epochs
    for budget in ("tiny", "small", "full"):
        for spec in bridging.plan(budget, seeds=[0]):
            if isinstance(spec, bridging.ImageCell):
                assert "r1" not in spec.config["regularizers"] and spec.config["train"]["betas"] == [0.5, 0.999]


def test_medium_report_from_synthetic_results(tmp_path):
    # learned baselines (FID 30) with MC dropout 5 lower: the claims are judged on one objective, the
    # setup names the recipe, and there is no toy section (the medium budget has no toys)
    cells, records = _synthetic_records(30.0, {"mcd": -5.0}, {}, budget="medium")
    assert not any(c.spec["kind"] == "toy" for c in cells)
    text = bridging.write_report("medium", cells, records, tmp_path / "r.md", "cmd", 1.0, "machine")
    assert "**Not the paper's training recipe** but the `modern` one" in text
    assert "## Latent dimension" not in text and "### ragan" in text and "### gmmn" not in text
    claim1 = _claims(text)[0]
    assert "**holds**: significant in the predicted direction for the one test (ragan)" in claim1
    assert "Baselines within 10× the real-vs-real floor" in text


def test_report_projects_the_missing_cells_from_finished_cells_of_their_treatment(tmp_path):
    # every finished cell took 1 CPU-s except MC dropout's (3 CPU-hours): dropping two MC dropout records
    # and one SAM record and every record of the large-batch cells leaves 2 * 3 h + 1 s projected, the
    # large-batch cells unknown
    cells, records = _synthetic_records(30.0, {}, {}, budget="medium")
    for key, rec in records.items():
        if "/mcd/" in key:
            rec["cpu_s"] = 3 * 3600.0
    dropped = [k for k in records if "/mcd/" in k][:2] + [k for k in records if "/sam/" in k][:1]
    large = [k for k in records if "/batch_large/" in k]
    for k in dropped + large:
        del records[k]
    text = bridging.write_report("medium", cells, records, tmp_path / "r.md", "cmd", 1.0, "machine")
    line = next(t for t in text.splitlines() if t.startswith("- projected for"))
    assert line.startswith("- projected for the 3 missing cells whose treatment has finished cells")
    assert ": 6.0 CPU-hours, ≈ 3.0 h with `--jobs 2`" in line
    assert line.endswith(f"; {len(large)} more missing cells of treatments not yet run are not in that sum")
    full = _synthetic_records(30.0, {}, {}, budget="medium")[1]
    assert "- projected for" not in bridging.write_report("medium", cells, full, tmp_path / "f.md", "cmd", 1.0, "machine")


# ---- sharding a grid over processes or machines ----------------------------------------------------
def test_shards_partition_the_grid_in_order():
    cells = [grid.Cell(f"c{i}/s0", {"x": i}) for i in range(7)]
    for n in range(1, 5):
        parts = [grid.shard_cells(cells, (i, n)) for i in range(n)]
        keys = [c.key for p in parts for c in p]
        assert sorted(keys) == sorted(c.key for c in cells) and len(keys) == len(set(keys))
        assert all([c.key for c in p] == [c.key for c in cells if c in p] for p in parts)  # the grid's order
    assert grid.shard_cells(cells, None) == cells
    assert grid.parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/3", "1", "a/b", "1/0"):
        with pytest.raises(StatganError, match=r"--shard .*expected i/N with 0 <= i < N"):
            grid.parse_shard(bad)


def test_shards_sharing_a_folder_run_each_cell_once_and_report_them_all(tmp_path, monkeypatch):
    import types

    from statgan.experiments import runner

    reports = []
    fake = types.SimpleNamespace(
        BUDGETS={"tiny": types.SimpleNamespace(threads=None)},
        cells=lambda budget, seeds: [grid.Cell(f"c{i}/s0", {"x": i}) for i in range(5)],
        run_cell=_runner,
        write_report=lambda budget, cells, done, report, command, seconds, machine: reports.append(sorted(done)))
    monkeypatch.setattr(runner, "_module", lambda name: fake)
    CALLS.clear()
    for i in range(2):
        res = runner.run("fake", budget="tiny", out=tmp_path, shard=(i, 2), log=lambda s: None)
    assert sorted(CALLS) == [0, 1, 2, 3, 4]  # every cell once, over both shards
    assert res["finished"] == 5 and reports[-1] == [f"c{i}/s0" for i in range(5)]  # the last shard sees all
    shard0 = (tmp_path / "records-shard-0-of-2.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in shard0] == ["c0/s0", "c2/s0", "c4/s0"]
    # on separate machines: the shards' records files give the whole report
    collected = runner.run("fake", budget="tiny", out=tmp_path / "elsewhere", log=lambda s: None,
                           collect=sorted(tmp_path.glob("records-shard-*.jsonl")))
    assert collected["finished"] == 5 and len(CALLS) == 5  # collecting runs nothing
