"""The command line: exit codes, one-line errors, train -> sample -> resume."""

import subprocess
import sys

from safetensors.torch import load_file

from statgan.cli import main

from conftest import toy_overrides


def test_train_then_sample(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "done: step 20" in out and "step-000020.png" in out
    grid = tmp_path / "grid.png"
    assert main(["sample", str(tmp_path / "toy"), "-n", "16", "--out", str(grid), "--seed", "1"]) == 0
    assert grid.read_bytes()[:4] == b"\x89PNG"
    tensors = tmp_path / "s.safetensors"
    assert main(["sample", str(tmp_path / "toy"), "-n", "5", "--out", str(tensors)]) == 0
    s = load_file(str(tensors))
    assert s["samples"].shape == (5, 2) and s["z"].shape == (5, 4)


def test_user_errors_are_one_line_with_status_2(tmp_path, capsys):
    cases = [
        ["train", "train.steps=-3"],
        ["train", "no/such/config.yaml"],
        ["sample", str(tmp_path)],
        ["train", "--resume", str(tmp_path / "nothing")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("statgan: error: ") and "\n" not in err, err
        assert "Traceback" not in err


def test_resume_refuses_changed_config_unless_forced(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0
    rd = str(tmp_path / "toy")
    assert main(["train", "--resume", rd, "train.lr_g=0.1"]) == 2
    assert "changed config (train.lr_g: 0.0002 -> 0.1)" in capsys.readouterr().err
    assert main(["train", "--resume", rd, "train.steps=25"]) == 0
    # the sharpness probe only reads the model, so switching it on is not a config change that blocks
    assert main(["train", "--resume", rd, "train.steps=26", "regularizers.sharpness=true"]) == 0
    assert main(["train", "--resume", rd, "train.lr_g=0.1", "train.steps=30", "--force"]) == 0
    out = capsys.readouterr()
    assert "done: step 30" in out.out and "train.lr_g" in out.err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mnist5k" in out and "dcgan" in out and "ns" in out


def test_module_entry_point_reports_errors_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "statgan", "train", "train.stepz=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown key 'train.stepz'" in proc.stderr and "Traceback" not in proc.stderr
