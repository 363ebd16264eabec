"""statgan.rundir.catalog / status files / loss curves: runs described from their files alone."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
import torch
import yaml

from statgan.errors import StatganError
from statgan.rundir import catalog
from statgan.rundir import checkpoint as ckpt
from statgan.rundir.run import read_metrics, read_status, write_status
from statgan.viz import loss_curves_png


def _make_run(root, name, *, steps=100, done=100, objective="ns", regs=None, status=None, evals=(), fid=None):
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    cfg = {"run": {"seed": 0}, "data": {"name": "mnist5k"}, "model": {"arch": "dcgan", "latent_dim": 8},
           "objective": {"name": objective}, "train": {"steps": steps, "batch_size": 4}, "regularizers": regs or {}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    if done:
        ckpt.save_checkpoint(run / "checkpoints", done, {"w": torch.zeros(2)}, {}, keep=3)
    recs = [{"step": s, "d_loss": 1.0 / s, "g_loss": float(s)} for s in range(10, done + 1, 10)]
    if fid is not None:
        recs.append({"step": done, "fid": fid, "fid_extractor": "lenet-x"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 9')  # a cut line
    for i, value in enumerate(evals):
        (run / "eval").mkdir(exist_ok=True)
        (run / "eval" / f"e{i}.json").write_text(json.dumps(
            {"metrics": {"fid": value}, "labels": {"fid": "FID (lenet-x)"}, "generated": {"step": done}}))
    if status is not None:
        write_status(run, status, done, "boom" if status == "failed" else "")
    return run


def test_status_round_trip_and_refuses_unknown_states(tmp_path):
    s = write_status(tmp_path, "diverged", 7, "loss went NaN")
    assert read_status(tmp_path) == s and s.state == "diverged" and s.step == 7
    with pytest.raises(ValueError, match="'bogus' is not one of"):
        write_status(tmp_path, "bogus", 1)
    (tmp_path / "status.json").write_text("{not json")
    assert read_status(tmp_path) is None


def test_read_metrics_skips_a_line_cut_by_a_crash(tmp_path):
    run = _make_run(tmp_path, "a", done=30)
    assert [r["step"] for r in read_metrics(run)] == [10, 20, 30]


def test_describe_runs_status_step_and_latest_eval(tmp_path):
    _make_run(tmp_path, "a-finished", evals=(30.0, 12.5))
    _make_run(tmp_path, "b-interrupted", steps=100, done=40, regs={"r1": {"weight": 1.0}, "sam": {}})
    _make_run(tmp_path, "c-diverged", done=20, status="diverged")
    _make_run(tmp_path, "d-failed", done=0, status="failed")
    _make_run(tmp_path, "e-fid", done=50, steps=50, fid=33.3)
    (tmp_path / "not-a-run").mkdir()
    runs = {r.name: r for r in catalog.find_runs(tmp_path)}
    assert sorted(runs) == ["a-finished", "b-interrupted", "c-diverged", "d-failed", "e-fid"]
    a, b, c, d, e = (runs[k] for k in sorted(runs))
    assert (a.status, a.step, a.total) == ("finished", 100, 100)
    assert a.latest_eval == "FID (lenet-x) 12.5"  # the newest file wins
    assert (b.status, b.step, b.regularizers) == ("interrupted", 40, "r1,sam")
    assert c.status == "diverged" and d.status == "failed" and d.message == "boom" and d.step == 0
    assert e.latest_eval == "FID (lenet-x) 33.3 @ 50"
    table = catalog.format_runs_table(list(runs.values()))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["name", "data", "arch"] and len(lines) == 2 + 5
    assert "40/100" in table and "diverged" in table and "r1,sam" in table


def test_find_runs_errors_are_one_line(tmp_path):
    with pytest.raises(StatganError, match="is not a folder"):
        catalog.find_runs(tmp_path / "missing")
    with pytest.raises(StatganError, match="no config.yaml"):
        catalog.describe_run(tmp_path)
    (tmp_path / "config.yaml").write_text("train: [unclosed")
    with pytest.raises(StatganError, match="not valid YAML"):
        catalog.describe_run(tmp_path)


def test_compare_lists_only_differences_and_results(tmp_path):
    a = _make_run(tmp_path, "a", objective="ns", evals=(20.0,))
    b = _make_run(tmp_path, "b", objective="hinge", regs={"r1": {"weight": 0.5}}, evals=(10.0,))
    c = catalog.compare_runs([a, b])
    diffs = dict(c.differences)
    assert diffs["objective.name"] == ("ns", "hinge")
    assert diffs["regularizers.r1.weight"] == (None, 0.5)
    assert "model.arch" not in diffs  # equal values are not differences
    cfg = yaml.safe_load((a / "config.yaml").read_text())
    cfg["train"]["new_key"] = None  # a key newer configs write as null, older ones lack
    (a / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert "train.new_key" not in dict(catalog.compare_runs([a, b]).differences)
    assert dict(c.results)["FID (lenet-x)"] == (20.0, 10.0)
    text = catalog.format_comparison(c)
    assert "objective.name" in text and "hinge" in text and "FID (lenet-x)" in text
    page = catalog.comparison_html(c, {"a/curves": "data:image/png;base64,AAAA"})
    assert page.startswith("<!doctype html>") and "data:image/png;base64,AAAA" in page and "no pictures" in page
    with pytest.raises(StatganError, match="at least two"):
        catalog.compare_runs([a])


def _png_size(blob: bytes):
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", blob[16:24])
    return w, h


def test_loss_curves_png_has_one_panel_per_logged_quantity(tmp_path):
    run = _make_run(tmp_path, "a", fid=5.0)
    two = loss_curves_png([("a", read_metrics(run))])
    three = loss_curves_png([("a", read_metrics(run)), ("b", [{"step": 1, "d_loss": 0.5, "g_loss": 0.7}])])
    w2, _ = _png_size(two)
    w_no_fid, _ = _png_size(loss_curves_png([("b", [{"step": 1, "d_loss": 0.5, "g_loss": 0.7}])]))
    assert w2 > w_no_fid  # the FID panel is there only when FID was logged
    assert _png_size(three)[0] == w2
    empty = loss_curves_png([("x", [])])
    assert zlib.crc32(empty) != zlib.crc32(two)
