"""Mistakes a new user made on a fresh clone, each once a traceback, a silently accepted value or a
message cut short: now one line naming the value and what was expected (and the spellings -n/--n
both work everywhere)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from statgan.cli import build_parser, main

from conftest import toy_overrides


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mistakes")
    assert main(["train", "toy-8gaussians", *toy_overrides(root)]) == 0
    return root / "toy"


def _one_line_error(capsys, *needles, after_notes=False):
    err = capsys.readouterr().err.strip()
    if after_notes:  # resuming prints the config changes first, one line each
        err = err.splitlines()[-1]
    assert err.startswith("statgan: error: ") and "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("argv, needles", [
    (["eval", "{run}", "--n", "100", "--batch-size", "0"], ["--batch-size must be an integer >= 1, got 0"]),
    (["eval", "{run}", "--n", "100", "--batch-size", "-4"], ["--batch-size must be an integer >= 1, got -4"]),
    (["sample", "{run}", "--nrow", "0", "--out", "{tmp}/x.png"], ["--nrow must be an integer >= 1, got 0"]),
    (["sample", "{run}", "-n", "100000000000", "--out", "{tmp}/x.safetensors"], ["-n 100000000000", "GiB", "smaller -n"]),
    (["sample", "{run}", "--threads", "0", "--out", "{tmp}/x.png"], ["--threads must be an integer >= 1, got 0"]),
    (["interpolate", "{run}", "--threads", "-2", "--out", "{tmp}/x.png"], ["--threads must be an integer >= 1, got -2"]),
    (["eval", "{run}", "--n", "100", "--threads", "0"], ["--threads must be an integer >= 1, got 0"]),
    (["train", "toy-8gaussians", "train.steps=99999999999999999999"], ["train.steps", "expected ≤ 1000000000"]),
    (["train", "toy-8gaussians", "run.name=../escape", "run.out_dir={tmp}"], ["run.name: '../escape' is not a folder name"]),
])
def test_bad_values_end_in_one_line(toy_run, tmp_path, capsys, argv, needles):
    argv = [a.format(run=toy_run, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path.parent / "escape").exists()


def test_n_is_spelt_both_ways_everywhere():
    p = build_parser()
    for argv in (["sample", "R"], ["interpolate", "R"], ["eval", "R"], ["invert", "R", "--split", "test"], ["audit", "R"]):
        for flag in ("-n", "--n"):
            assert p.parse_args([*argv, flag, "7"]).n == 7, (argv, flag)


def test_threads_is_an_option_of_every_command_that_runs_a_generator():
    p = build_parser()
    for argv in (["sample", "R"], ["interpolate", "R"], ["eval", "R"], ["invert", "R", "--split", "test"], ["audit", "R"]):
        assert p.parse_args(argv).threads is None, argv  # unset: torch's count with the thread tuner
        assert p.parse_args([*argv, "--threads", "3"]).threads == 3, argv


def test_command_threads_fixes_or_tunes_and_gives_the_count_back():
    torch = pytest.importorskip("torch")
    from statgan.cli._common import command_threads
    from statgan.runtime import threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with command_threads(1):
            assert torch.get_num_threads() == 1 and threads.installed() is None
        assert torch.get_num_threads() == 2
        with command_threads(None):
            tuner = threads.installed()
            assert isinstance(tuner, threads.ThreadTuner) and torch.get_num_threads() == 2
            torch.set_num_threads(1)  # as the tuner does beside a busy process
        assert threads.installed() is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_eval_takes_minus_n(toy_run, capsys):
    assert main(["eval", str(toy_run), "-n", "50", "--metrics", "fid"]) == 0
    assert "FID" in capsys.readouterr().out


def test_resume_cannot_change_the_network_even_with_force(toy_run, capsys):
    assert main(["train", "--resume", str(toy_run), "--force", "model.arch=dcgan"]) == 2
    _one_line_error(capsys, "model.arch: 'mlp' -> 'dcgan'", "cannot load (--force does not apply)")


def test_weights_that_do_not_fit_say_how_in_full(toy_run, capsys):
    # another width loads nothing: the message names the first tensor of another shape, not torch's
    # multi-line text cut at its first colon
    assert main(["train", "--resume", str(toy_run), "--force", "model.generator.hidden=24", "train.steps=30"]) == 2
    _one_line_error(capsys, "weights for 'G' do not fit the model:", "of another shape (e.g.", "checkpoint [",
                    after_notes=True)


def test_compare_ignores_an_empty_section_written_differently(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["train", "toy-8gaussians", *toy_overrides(tmp_path, **{"run.name": name})]) == 0
    cfg = tmp_path / "a" / "config.yaml"  # an older run whose config never wrote the empty section
    cfg.write_text("".join(line for line in cfg.read_text().splitlines(keepends=True)
                           if not line.startswith("regularizers:")))
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "regularizers" not in out and "run.name" in out


def test_interpolate_on_2d_data_draws_each_walk_as_a_coloured_path(toy_run, tmp_path):
    out = tmp_path / "walk.png"
    assert main(["interpolate", str(toy_run), "-n", "4", "--steps", "6", "--out", str(out)]) == 0
    rgb = np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3).astype(int)
    # matplotlib's tab10 blue, orange, green and red: one per walk (a scatter drew every point red)
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)):
        assert (np.abs(rgb - colour).sum(1) < 30).sum() > 20, colour


def test_config_explain_reads_the_validator_s_declarations(capsys):
    assert main(["config", "explain", "train.steps"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["train.steps: generator updates", "  type: an integer", "  default: 2500",
                                "  allowed: ≥ 1, ≤ 1000000000", "  on resume: may change"]
    assert main(["config", "explain", "train.tensorboard"]) == 0
    out = capsys.readouterr().out
    assert "type: true/false or a string\n" in out and "one of auto, true, false" in out  # no "or null": not optional
    assert main(["config", "explain", "train.stepz"]) == 2
    _one_line_error(capsys, "unknown key 'train.stepz'; did you mean 'steps'?")


@pytest.mark.parametrize("argv", [
    ["sample", "{run}", "--out", "{tmp}/x.png"],
    ["eval", "{run}", "--n", "100"],
    ["invert", "{run}", "--split", "generated", "--n", "4", "--out", "{tmp}/inv.json"],
    ["reproduce", "bridging", "--budget", "tiny", "--out", "{tmp}/grid"],
])
@pytest.mark.parametrize("rank", [0, 1])
def test_a_one_process_command_under_torchrun_refuses_instead_of_repeating_its_work(
        toy_run, tmp_path, capsys, monkeypatch, argv, rank):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    argv = [a.format(run=toy_run, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    if rank == 0:  # rank 0 speaks for both
        _one_line_error(capsys, f"statgan {argv[0]} runs in one process", "WORLD_SIZE=2", "without torchrun")
    else:
        assert capsys.readouterr().err == ""
    assert list(tmp_path.iterdir()) == []  # nothing written, by either rank


def test_only_train_and_audit_share_their_work_between_processes():
    p = build_parser()
    several = {a[0] for a in (["train"], ["audit", "R"], ["sample", "R"], ["eval", "R"], ["list"], ["export", "R", "--out", "g.pt"],
                              ["invert", "R", "--split", "test"], ["reproduce", "bridging"])
               if getattr(p.parse_args(a), "several_processes", False)}
    assert several == {"train", "audit"}


def test_a_world_size_that_is_not_a_number_is_named(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert main(["list"]) == 2
    _one_line_error(capsys, "WORLD_SIZE='two' is not an integer")
