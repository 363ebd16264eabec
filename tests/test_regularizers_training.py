"""Regularisers inside the trainer: every regulariser with the paper's three objectives, their
composition, bit-identical resume, Monte-Carlo averaging, the sharpness probe, `sample --mc-dropout`."""

import math

import pytest
import torch
from safetensors.torch import load_file

from statgan import config, objectives
from statgan.cli import main
from statgan.errors import ConfigError
from statgan.objectives.base import Objective
from statgan.rundir.run import read_metrics
from statgan.train.trainer import Trainer

from conftest import tiny_dcgan_overrides, toy_overrides

OBJECTIVES = ("wgan-div", "ragan", "gmmn")
REGULARIZERS = {
    "relaxation": "{sigma: 0.3, schedule: linear, sigma_min: 0.1, decay_steps: 4, instance_noise: true}",
    "param_grad": "{weight: 0.5}",
    "sample_grad": "{weight: 5.0}",
    "r1": "{weight: 10}",
    "r2": "{weight: 10}",
    "gp": "{weight: 10}",
    "sam": "{rho: 0.5}",
    "mc_dropout": "{p: 0.3, n_mcd: 2}",
    "sharpness": "{every: 2, iters: 4}",
}
DISCRIMINATOR_ONLY = {"r1", "r2", "gp"}
#: what each one writes into the periodic metrics.jsonl records
LOGGED = {"relaxation": "sigma", "param_grad": "penalty.param_grad", "sample_grad": "penalty.sample_grad",
          "r1": "penalty.r1", "r2": "penalty.r2", "gp": "penalty.gp"}


def _run(tmp_path, name, **extra):
    items = {"run.name": name, "train.steps": 4, "train.batch_size": 16, "train.log_every": 2,
             "train.sample_every": 0, "train.checkpoint_every": 0, "model.generator": "{hidden: 8, depth: 2}",
             "model.discriminator": "{hidden: 8, depth: 2, activation: elu}", **extra}
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path, **items))
    trainer = Trainer(cfg, tmp_path / name)
    trainer.fit()
    return trainer


def _weights(trainer):
    return torch.cat([p.detach().reshape(-1) for p in trainer.G.parameters()])


_BASELINES = {}


def _baseline(tmp_path_factory, objective):
    if objective not in _BASELINES:
        _BASELINES[objective] = _weights(_run(tmp_path_factory.mktemp("base"), "base", **{"objective.name": objective}))
    return _BASELINES[objective]


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("reg", sorted(REGULARIZERS))
def test_each_regularizer_trains_with_the_papers_objectives(tmp_path, tmp_path_factory, one_thread, reg, objective):
    extra = {"objective.name": objective, f"regularizers.{reg}": REGULARIZERS[reg]}
    if objective == "gmmn" and reg in DISCRIMINATOR_ONLY:
        with pytest.raises(ConfigError, match="trains none"):
            _run(tmp_path, "run", **extra)
        return
    trainer = _run(tmp_path, "run", **extra)
    records = read_metrics(tmp_path / "run")
    periodic = [r for r in records if "g_loss" in r]
    assert [r["step"] for r in periodic] == [2, 4]
    assert all(math.isfinite(r["g_loss"]) and math.isfinite(r["d_loss"]) for r in periodic)
    if reg in LOGGED:
        assert all(math.isfinite(r[LOGGED[reg]]) for r in periodic)
    base = _baseline(tmp_path_factory, objective)
    if reg == "sharpness":  # a probe: logged every k steps, training untouched (bit-identical)
        probes = [r for r in records if "sharpness" in r]
        assert [r["step"] for r in probes] == [2, 4] and all(math.isfinite(r["sharpness"]) for r in probes)
        assert torch.equal(_weights(trainer), base)
    else:  # every regulariser changes what is learned
        assert not torch.equal(_weights(trainer), base)
    if reg == "relaxation":
        assert [r["sigma"] for r in periodic] == pytest.approx([0.25, 0.15])  # σ(t) of steps t = 1, 3


COMBINED = {
    "regularizers.sam": "{rho: 0.5}",
    "regularizers.param_grad": "{weight: 0.1}",
    "regularizers.mc_dropout": "{p: 0.2, n_mcd: 2}",
    "regularizers.relaxation": "{sigma: 0.1, instance_noise: true}",
    "regularizers.sharpness": "{every: 3, iters: 3}",
    "train.ema": "true",
    "train.ema_decay": 0.5,
}


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_regularizers_compose_and_resume_bit_identically(tmp_path, one_thread, objective):
    """SAM + gradient penalties + MC dropout + relaxation + EMA (+ probe): a run cut at step 3 and
    resumed equals an uninterrupted one (SAM state, noise RNG, dropout RNG all restored)."""
    extra = {"objective.name": objective, **COMBINED}
    if objective != "gmmn":
        extra["regularizers.r1"] = "{weight: 1}"
    straight = _run(tmp_path, "straight", **extra, **{"train.steps": 6})
    _run(tmp_path, "cut", **extra, **{"train.steps": 3})
    cfg = config.load(tmp_path / "cut" / "config.yaml", ["train.steps=6"])
    resumed = Trainer(cfg, tmp_path / "cut", resume=True)
    assert resumed.step == 3
    resumed.fit()
    for a, b in ((straight.G, resumed.G), (straight.D, resumed.D), (straight.ema.module, resumed.ema.module)):
        for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), k
    for k, v in straight.opt_G.state_dict()["state"][0].items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(resumed.opt_G.state_dict()["state"][0][k]))
    assert type(straight.opt_G).__name__ == "SAM"
    straight_log = [r for r in read_metrics(tmp_path / "straight") if "sharpness" in r]
    resumed_log = [r for r in read_metrics(tmp_path / "cut") if "sharpness" in r]
    assert straight_log == resumed_log and [r["step"] for r in straight_log] == [3, 6]


def test_sam_and_dropout_on_a_batchnorm_dcgan_resume_bit_identically(tmp_path, one_thread):
    """Dropout2d + BatchNorm + SAM on both networks + R1 + noise, on the tiny DCGAN."""
    extra = {"model.generator": "{width: 4, norm: batch}", "model.discriminator": "{width: 4, norm: batch}",
             "objective.name": "ragan", "regularizers.sam": "{rho: 0.5}", "regularizers.mc_dropout": "{p: 0.2}",
             "regularizers.r1": "{weight: 1}", "regularizers.relaxation": "{sigma: 0.1}", "train.batch_size": 8}
    runs = {}
    for name, steps in (("straight", 4), ("cut", 2)):
        cfg = config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **extra, **{"run.name": name, "train.steps": steps}))
        runs[name] = Trainer(cfg, tmp_path / name)
        runs[name].fit()
    resumed = Trainer(config.load(tmp_path / "cut" / "config.yaml", ["train.steps=4"]), tmp_path / "cut", resume=True)
    resumed.fit()
    assert any(isinstance(m, torch.nn.Dropout2d) for m in resumed.G.modules())
    for (k, x), (_, y) in zip(runs["straight"].G.state_dict().items(), resumed.G.state_dict().items()):
        assert torch.equal(x, y), k  # includes BatchNorm running statistics


class _Counting(Objective):
    """Counts loss evaluations; the loss depends on D and G so every network is exercised."""

    def __init__(self):
        self.d_calls = self.g_calls = 0

    def discriminator_loss(self, D, real, fake):
        self.d_calls += 1
        return (D(fake) - D(real)).mean()

    def generator_loss(self, D, real, fake):
        self.g_calls += 1
        return -D(fake).mean()


objectives.OBJECTIVES.register("_test_counting_regularizers")(_Counting)


@pytest.mark.parametrize("regs, d_per_step, g_per_step", [
    ({}, 1, 1),
    ({"regularizers.mc_dropout": "{p: 0.2, n_mcd: 3}"}, 3, 3),
    ({"regularizers.mc_dropout": "{p: 0.2, n_mcd: 3, nets: g}"}, 1, 3),
    ({"regularizers.sam": "{rho: 0.1}"}, 2, 2),
    ({"regularizers.sam": "{rho: 0.1, nets: g}", "regularizers.mc_dropout": "{p: 0.2, n_mcd: 2}"}, 2, 4),
])
def test_loss_evaluations_per_update(tmp_path, one_thread, regs, d_per_step, g_per_step):
    trainer = _run(tmp_path, "count", **{"objective.name": "_test_counting_regularizers", "train.n_critic": 2, **regs})
    assert trainer.objective.d_calls == 4 * 2 * d_per_step
    assert trainer.objective.g_calls == 4 * g_per_step


def test_sample_with_mc_dropout(tmp_path, capsys):
    items = toy_overrides(tmp_path, **{"train.steps": 4, "regularizers.mc_dropout.p": 0.5})
    assert main(["train", "mnist5k-dcgan", *items]) == 0
    run = str(tmp_path / "toy")
    outs = {}
    for name, flags in (("plain", []), ("mc", ["--mc-dropout"]), ("mc2", ["--mc-dropout"]), ("mc_seed", ["--mc-dropout", "--seed", "1"])):
        path = tmp_path / f"{name}.safetensors"
        seed_flags = [] if "--seed" in flags else ["--seed", "0"]
        assert main(["sample", run, "-n", "8", "--out", str(path), *seed_flags, *flags]) == 0
        outs[name] = load_file(str(path))["samples"]
    assert "MC dropout" in capsys.readouterr().out
    assert not torch.equal(outs["plain"], outs["mc"])  # dropout really on at test time
    assert torch.equal(outs["mc"], outs["mc2"])  # masks seeded by --seed
    assert not torch.equal(outs["mc"], outs["mc_seed"])

    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path, **{"run.name": "nodrop", "train.steps": 2})]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "nodrop"), "--mc-dropout", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("statgan: error: the generator has no dropout layers") and "\n" not in err
