"""Hyper-parameter schedules: the formula, the config section, and what the trainer does with them."""

from __future__ import annotations

import math

import pytest

from statgan import config
from statgan.errors import ConfigError
from statgan.rundir.run import read_metrics
from statgan.train.schedules import Schedule
from statgan.train.trainer import Trainer

from conftest import toy_overrides


def test_linear_and_cosine_values_against_the_closed_form():
    lin = Schedule("k", 1.0, 3.0, "linear")
    cos = Schedule("k", 2e-4, 5e-5, "cosine")
    for step in (0, 25, 50, 75, 100):
        u = step / 100
        assert lin.at(step, 100) == pytest.approx(1.0 + 2.0 * u)
        assert cos.at(step, 100) == pytest.approx(2e-4 + (5e-5 - 2e-4) * (1 - math.cos(math.pi * u)) / 2)
    ramp = Schedule("k", 0.9, 0.99, "linear", begin=0.2, end=0.4)
    assert ramp.at(10, 100) == 0.9 and ramp.at(30, 100) == pytest.approx(0.945) and ramp.at(90, 100) == pytest.approx(0.99)


def test_the_section_takes_dotted_and_nested_keys_and_omits_itself_when_empty():
    cfg = config.load("mnist5k-dcgan", ["schedules.train.lr_g.to=5e-5", "schedules.train.lr_g.kind=cosine",
                             "schedules={regularizers.r1.weight: {to: 0.1, end: 0.5}}"])
    assert cfg.schedules == {"train.lr_g": {"to": 5e-5, "kind": "cosine", "begin": 0.0, "end": 1.0},
                             "regularizers.r1.weight": {"to": 0.1, "kind": "linear", "begin": 0.0, "end": 0.5}}
    assert config.from_dict(cfg.to_dict()).schedules == cfg.schedules  # round trip through config.yaml
    assert "schedules" not in config.load("mnist5k-dcgan").to_dict()


@pytest.mark.parametrize("override, fragment", [
    ("schedules.train.lr_g.too=1", "expected a schedule such as"),
    ("schedules.train.lr_g={to: 1, speed: 2}", "unknown field 'speed'"),
    ("schedules.train.lr_g={to: 1, kind: step}", "kind='step' is not one of: linear, cosine"),
    ("schedules.train.lr_g={to: 1, begin: 0.5, end: 0.5}", "must satisfy 0 <= begin < end <= 1"),
    ("schedules.train.lr_g={to: fast}", "to='fast' must be a finite number"),
])
def test_bad_schedules_are_one_line_errors(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        config.load("mnist5k-dcgan", [override])


def _toy(tmp_path, **extra):
    return config.load("mnist5k-dcgan", toy_overrides(tmp_path, **{"train.steps": 20, "train.log_every": 5, **extra}))


def test_the_trainer_moves_learning_rate_betas_and_a_regularizer_weight(tmp_path):
    cfg = _toy(tmp_path, **{"regularizers.r1.weight": 1.0,
                            "schedules": "{train.lr_g: {to: 0.0, kind: cosine}, train.betas.1: {from: 0.9, to: 0.99, end: 0.5},"
                                         " regularizers.r1.weight: {to: 0.25}}"})
    tr = Trainer(cfg, tmp_path / "toy")
    tr.fit()
    recs = [r for r in read_metrics(tmp_path / "toy") if "lr_g" in r]
    base = cfg.train.lr_g
    for r in recs:  # the record of step s was written after the step that used the value of step s-1
        u = (r["step"] - 1) / 20
        assert r["lr_g"] == pytest.approx(base * (1 + math.cos(math.pi * u)) / 2)
        assert r["lr_d"] == cfg.train.lr_d
        assert r["schedule.train.betas.1"] == pytest.approx(0.9 + 0.09 * min(u / 0.5, 1.0))
    assert all(g["betas"][1] == pytest.approx(0.99) for g in tr.opt_D.param_groups)
    assert tr.regularizers["r1"].weight == pytest.approx(1.0 + (0.25 - 1.0) * 19 / 20)


@pytest.mark.parametrize("key, fragment", [
    ("train.steps", "cannot be scheduled"),
    ("regularizers.sam.rho", "regularizer 'sam' is not switched on"),
    ("objective.nope", "is not a number this run can change"),
])
def test_an_unknown_target_fails_before_the_run_directory_exists(tmp_path, key, fragment):
    cfg = _toy(tmp_path, **{"schedules": f"{{{key}: {{from: 1, to: 0}}}}"})
    with pytest.raises(ConfigError, match=fragment):
        Trainer(cfg, tmp_path / "toy")
    assert not (tmp_path / "toy").exists()


def test_without_schedules_the_log_is_as_before(tmp_path):
    Trainer(_toy(tmp_path), tmp_path / "toy").fit()
    recs = [r for r in read_metrics(tmp_path / "toy") if "lr_g" in r]
    assert recs and all(r["lr_g"] == 2e-4 and r["lr_d"] == 2e-4 for r in recs)
    assert not any(k.startswith("schedule.") for r in recs for k in r)
