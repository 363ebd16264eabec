"""How a run ends is recorded and usable: status.json, the real CLI's exit statuses on signals,
failed runs that may be reused, the discriminator-wins warning and the loss-curve picture."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from statgan.cli import main
from statgan.rundir import checkpoint as ckpt
from statgan.rundir.run import CURVES_FILE, read_status
from statgan.train.watch import DiscriminatorWinWatch

from conftest import toy_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_a_finished_run_says_so_and_draws_its_curves(tmp_path):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    status = read_status(tmp_path / "toy")
    assert status is not None and (status.state, status.step) == ("finished", 20)
    with Image.open(tmp_path / "toy" / CURVES_FILE) as im:
        assert im.width > im.height > 100


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_through_the_real_cli_checkpoint_and_exit_128_plus_signum(tmp_path, signum, code):
    argv = toy_overrides(tmp_path, **{"train.steps": 1_000_000, "train.progress": "true", "train.checkpoint_every": 0})
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "statgan", "train", "mnist5k-dcgan", *argv], stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    seen = b""
    try:
        # the progress bar appears once the signal handlers are installed: wait for it on the pipe (no sleeping)
        while b"train:" not in seen:
            chunk = proc.stderr.read1(4096)
            assert chunk, f"statgan exited before training started: {seen.decode(errors='replace')}"
            seen += chunk
        proc.send_signal(signum)
        rest = proc.communicate(timeout=300)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (seen + rest).decode(errors="replace")
    assert proc.returncode == code, err
    assert f"{signal.Signals(signum).name} received: checkpoint written" in err
    run = tmp_path / "toy"
    status = read_status(run)
    assert status is not None and status.state == "interrupted" and status.step > 0
    assert ckpt.latest_checkpoint(run / "checkpoints") is not None
    assert main(["train", "--resume", str(run), "train.steps=" + str(status.step + 2), "train.progress=false"]) == 0
    assert read_status(run).state == "finished"


def _folder(tmp_path, n_good):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n_good):
        Image.new("L", (8, 8), (i * 37) % 256).save(folder / f"{i:03d}.png")
    return folder


def _folder_argv(tmp_path, folder, **extra):
    return toy_overrides(tmp_path, **{"run.name": "f", "data.name": "folder", "data.root": str(folder),
                                       "data.image_size": 8, "data.channels": 1, "model.generator": "{hidden: 8, depth: 1}",
                                       "model.discriminator": "{hidden: 8, depth: 1}", "train.batch_size": 4,
                                       "train.sample_every": 0, **extra})


def test_a_crash_after_training_started_leaves_a_run_marked_failed_that_a_rerun_reuses(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path, 20)
    import statgan.data.images as images

    real = images.ImageFiles.__getitem__
    calls = {"n": 0}

    def flaky(self, i):  # the 13th item read fails, as a file going bad mid-run would
        calls["n"] += 1
        if calls["n"] == 13:
            raise images.DatasetError(f"folder: cannot read image {self.files[i]}: broken mid-run")
        return real(self, i)

    monkeypatch.setattr(images.ImageFiles, "__getitem__", flaky)
    argv = _folder_argv(tmp_path, folder, **{"train.checkpoint_every": 0})
    assert main(["train", "mnist5k-dcgan", *argv]) == 2
    err = capsys.readouterr().err
    assert "broken mid-run" in err
    status = read_status(tmp_path / "f")
    assert status.state == "failed" and "no checkpoint was written" in status.message and status.step >= 1
    monkeypatch.setattr(images.ImageFiles, "__getitem__", real)
    assert main(["train", "mnist5k-dcgan", *argv]) == 0  # the failed folder is reused, not a dead end
    assert "reusing" in capsys.readouterr().err and read_status(tmp_path / "f").state == "finished"


def test_a_crash_after_a_checkpoint_says_how_to_resume(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path, 20)
    import statgan.data.images as images

    real = images.ImageFiles.__getitem__
    calls = {"n": 0}

    def flaky(self, i):
        calls["n"] += 1
        if calls["n"] == 60:
            raise images.DatasetError("folder: cannot read image x.png: broken mid-run")
        return real(self, i)

    monkeypatch.setattr(images.ImageFiles, "__getitem__", flaky)
    argv = _folder_argv(tmp_path, folder, **{"train.checkpoint_every": 5})
    assert main(["train", "mnist5k-dcgan", *argv]) == 2
    status = read_status(tmp_path / "f")
    assert status.state == "failed" and "--resume" in status.message
    monkeypatch.setattr(images.ImageFiles, "__getitem__", real)
    assert main(["train", "mnist5k-dcgan", *argv]) == 2  # checkpoints exist: not silently thrown away
    assert "already exists; continue it with --resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "f")]) == 0


def test_discriminator_win_watch():
    w = DiscriminatorWinWatch(d_floor=0.05, patience=3)
    assert w.observe(50, 0.6, 1.0) is None  # healthy
    assert w.observe(100, 0.01, 3.0) is None and w.observe(150, 0.02, 2.0) is None  # g fell: the streak restarts
    assert w.observe(200, 0.01, 4.0) is None
    msg = w.observe(250, 0.005, 5.0)
    assert msg is not None and "step 250" in msg and "2 -> 5" in msg and "regularizers.r1" in msg
    assert w.observe(300, 0.001, 9.0) is None  # once per run
    critic = DiscriminatorWinWatch()
    assert all(critic.observe(s, -5.0, float(s)) is None for s in range(10))  # WGAN critic losses are negative
    no_d = DiscriminatorWinWatch(active=False)  # an objective without a discriminator logs d_loss = 0
    assert all(no_d.observe(s, 0.0, float(s)) is None for s in range(10))


def test_no_discriminator_warning_for_an_objective_without_a_discriminator(tmp_path, capsys):
    # a fixed-kernel MMD logs d_loss = 0 at every interval; with a barely moving G its g_loss wanders
    # up and down, and it used to be reported as "the discriminator is winning outright"
    argv = toy_overrides(tmp_path, **{"objective.name": "gmmn", "train.steps": 400, "train.log_every": 5,
                                      "train.lr_g": 1e-6, "train.checkpoint_every": 0, "train.sample_every": 0})
    assert main(["train", "mnist5k-dcgan", *argv]) == 0
    assert "discriminator is winning" not in capsys.readouterr().err


def test_the_warning_reaches_the_user_once(tmp_path, capsys):
    # a D far faster than G on a toy problem: it wins outright within a few intervals
    argv = toy_overrides(tmp_path, **{"train.steps": 400, "train.log_every": 20, "train.lr_d": 0.02, "train.lr_g": 1e-6,
                                      "train.checkpoint_every": 0, "train.sample_every": 0})
    assert main(["train", "mnist5k-dcgan", *argv]) == 0
    err = capsys.readouterr().err
    assert err.count("statgan: warning: the discriminator is winning outright") == 1


def test_resuming_a_finished_run_says_how_to_train_longer(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "toy")]) == 2
    err = capsys.readouterr().err.strip()
    assert "already finished its 20 steps" in err and "train.steps=N with N > 20" in err and "\n" not in err
    assert main(["train", "--resume", str(tmp_path / "toy"), "train.steps=25"]) == 0
    assert read_status(tmp_path / "toy").step == 25
