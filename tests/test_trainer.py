"""The trainer: run directory layout, determinism, bit-identical resume, interruption, errors."""

import json
import os
import signal

import pytest
import torch

from statgan import config, objectives
from statgan.errors import CheckpointError, ConfigError, StatganError
from statgan.objectives.base import Objective
from statgan.rundir import checkpoint as ckpt
from statgan.train.batches import BatchOrder
from statgan.rundir.run import read_metrics
from statgan.rundir.run import load_generator
from statgan.train.trainer import Trainer, TrainingInterrupted

from conftest import tiny_dcgan_overrides, toy_overrides


def _state(trainer):
    s = {f"G.{k}": v.clone() for k, v in trainer.G.state_dict().items()}
    s.update({f"D.{k}": v.clone() for k, v in trainer.D.state_dict().items()})
    s.update({f"E.{k}": v.clone() for k, v in trainer.ema.module.state_dict().items()})
    for name, opt in (("oG", trainer.opt_G), ("oD", trainer.opt_D)):
        for i, st in opt.state_dict()["state"].items():
            for k, v in st.items():
                s[f"{name}.{i}.{k}"] = v.clone() if torch.is_tensor(v) else torch.tensor(v)
    return s


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def test_run_directory_layout(tmp_path):
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path))
    result = Trainer(cfg, tmp_path / "toy").fit()
    rd = tmp_path / "toy"
    assert result.step == 20
    assert config.load(rd / "config.yaml") == cfg
    recs = read_metrics(rd)
    assert [r["step"] for r in recs] == [5, 10, 15, 20]
    for r in recs:
        assert {"d_loss", "g_loss", "lr_g", "lr_d", "images_per_s", "elapsed_s"} <= r.keys()
        assert r["images_per_s"] > 0
    assert sorted(p.name for p in (rd / "samples").iterdir()) == ["step-000010.png", "step-000020.png"]
    assert [s for s, _ in ckpt.list_checkpoints(rd / "checkpoints")] == [10, 20]
    assert (rd / "samples" / "step-000020.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_weights_and_different_seed_differs(tmp_path):
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **{"run.name": name, "run.seed": seed, "train.steps": 6}))
        tr = Trainer(cfg, tmp_path / name)
        tr.fit()
        runs.append(_state(tr))
    _assert_identical(runs[0], runs[1])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0] if k.startswith("G."))


def test_interrupted_by_sigterm_then_resumed_is_bit_identical(tmp_path):
    """A run stopped by SIGTERM at step 9 and resumed to step 24 equals an uninterrupted run."""
    straight_cfg = config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **{"run.name": "straight"}))
    straight = Trainer(straight_cfg, tmp_path / "straight")
    straight.fit()

    cfg = config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **{"run.name": "cut", "train.checkpoint_every": 5}))

    def send_sigterm(trainer, step):
        if step == 9:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as info:
        Trainer(cfg, tmp_path / "cut", callbacks=[send_sigterm]).fit()
    assert info.value.step == 9 and info.value.signum == signal.SIGTERM
    assert info.value.checkpoint.name == "step-000009.json"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the trainer restored the handler

    resumed = Trainer(cfg, tmp_path / "cut", resume=True)
    assert resumed.step == 9
    resumed.fit()
    assert resumed.step == 24
    _assert_identical(_state(straight), _state(resumed))
    # metrics have no duplicated steps after the resume
    steps = [r["step"] for r in read_metrics(tmp_path / "cut")]
    assert steps == sorted(set(steps)) == [4, 8, 12, 16, 20, 24]


def test_a_stop_requested_by_code_says_why_not_sigterm(tmp_path):
    cfg = config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **{"run.name": "budget"}))

    def stop_at_3(trainer, step):
        if step == 3:
            trainer.request_stop(reason="CPU budget reached")

    with pytest.raises(TrainingInterrupted) as info:
        Trainer(cfg, tmp_path / "budget", callbacks=[stop_at_3]).fit()
    assert info.value.step == 3 and str(info.value).startswith("CPU budget reached: checkpoint written at step 3")
    assert "SIGTERM" not in str(info.value)


def test_extending_steps_on_resume_matches_a_longer_run(tmp_path):
    long_cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path, **{"run.name": "long", "train.steps": 30}))
    long = Trainer(long_cfg, tmp_path / "long")
    long.fit()
    short_cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path, **{"run.name": "short", "train.steps": 10}))
    Trainer(short_cfg, tmp_path / "short").fit()
    ext_cfg = config.load(tmp_path / "short" / "config.yaml", ["train.steps=30"])
    ext = Trainer(ext_cfg, tmp_path / "short", resume=True)
    ext.fit()
    for p, q in zip(long.G.parameters(), ext.G.parameters()):
        assert torch.equal(p, q)


def test_corrupt_checkpoint_is_refused_and_nothing_overwritten(tmp_path):
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path))
    Trainer(cfg, tmp_path / "toy").fit()
    st = tmp_path / "toy" / "checkpoints" / "step-000020.safetensors"
    st.write_bytes(st.read_bytes()[:-10])
    before = {p.name: p.read_bytes() for p in (tmp_path / "toy" / "checkpoints").iterdir()}
    with pytest.raises(CheckpointError, match="step-000020.safetensors.*corrupt or truncated"):
        Trainer(cfg, tmp_path / "toy", resume=True)
    after = {p.name: p.read_bytes() for p in (tmp_path / "toy" / "checkpoints").iterdir()}
    assert before == after


def test_existing_or_unwritable_run_directory_is_refused_before_training(tmp_path):
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path))
    Trainer(cfg, tmp_path / "toy").fit()
    with pytest.raises(StatganError, match="already exists; continue it with --resume"):
        Trainer(cfg, tmp_path / "toy").fit()
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(StatganError, match="cannot write to run directory"):
        Trainer(cfg, blocker / "run").fit()


@pytest.mark.parametrize("section, value, message", [
    ("objective", {"name": "wgan", "params": {"clip": -1.0}}, "wgan: clip"),
    ("regularizers", {"relaxation": {"sigma": -1.0}}, "regularizers.relaxation: sigma"),
])
def test_objective_and_regularizer_values_are_checked_first(tmp_path, monkeypatch, section, value, message):
    """The trainer's build is where these values are validated: before any data is loaded or file written."""
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path))
    if section == "objective":
        cfg.objective.name, cfg.objective.params = value["name"], value["params"]
    else:
        cfg.regularizers = value
    monkeypatch.setattr("statgan.data.load", lambda *a, **k: pytest.fail("data loaded before the config was checked"))
    with pytest.raises(ConfigError, match=message):
        Trainer(cfg, tmp_path / "toy")
    assert not (tmp_path / "toy").exists()


def test_resume_without_checkpoint(tmp_path):
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path))
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(cfg, tmp_path / "empty", resume=True)


class _Counting(Objective):
    """A made-up objective: the trainer must drive it through the hooks alone."""

    def __init__(self, with_d: bool = True):
        self.has_discriminator = with_d
        self.d_calls = self.g_calls = self.after = 0

    def discriminator_loss(self, D, real, fake):
        self.d_calls += 1
        assert not fake.requires_grad
        return (D(fake) - D(real)).mean()

    def generator_loss(self, D, real, fake):
        self.g_calls += 1
        return (fake - real).pow(2).mean()

    def after_discriminator_step(self, D):
        self.after += 1


objectives.OBJECTIVES.register("_test_counting")(_Counting)


@pytest.mark.parametrize("with_d", [True, False])
def test_loop_uses_only_the_objective_hooks(tmp_path, with_d):
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path, **{"objective.name": "_test_counting", "objective.with_d": with_d,
                                                      "train.n_critic": 3, "train.steps": 4}))
    tr = Trainer(cfg, tmp_path / "toy")
    d_before = [p.clone() for p in tr.D.parameters()]
    tr.fit()
    obj = tr.objective
    assert obj.g_calls == 4
    assert (obj.d_calls, obj.after) == ((12, 12) if with_d else (0, 0))
    d_changed = any(not torch.equal(a, b) for a, b in zip(d_before, tr.D.parameters()))
    assert d_changed == with_d


def test_ema_follows_its_formula(tmp_path):
    from statgan.regularizers import EMA

    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.9, start=1)
    ema.update(1)  # before start: copies
    for p, q in zip(net.parameters(), ema.module.parameters()):
        assert torch.equal(p, q)
    old = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(2)
    for o, p, q in zip(old, net.parameters(), ema.module.parameters()):
        assert torch.allclose(q, 0.9 * o + 0.1 * p)


def test_batch_order_is_a_pure_function_of_the_counter():
    a, b = BatchOrder(10, 3, seed=1), BatchOrder(10, 3, seed=1)
    seq = [a.indices(i).tolist() for i in range(9)]
    assert seq == [b.indices(i).tolist() for i in reversed(range(9))][::-1]
    epoch0 = sum(seq[:3], [])
    assert len(set(epoch0)) == 9  # 3 full batches of a permutation, remainder dropped
    assert seq[:3] != seq[3:6]
    with pytest.raises(StatganError, match="batch_size=11 is larger than the training set"):
        BatchOrder(10, 11, seed=0)


def test_load_generator_gives_ema_weights(tmp_path):
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path))
    tr = Trainer(cfg, tmp_path / "toy")
    tr.fit()
    G, meta = load_generator(tmp_path / "toy")
    for p, q in zip(G.parameters(), tr.ema.module.parameters()):
        assert torch.equal(p, q)
    G_raw, _ = load_generator(tmp_path / "toy", ema=False)
    for p, q in zip(G_raw.parameters(), tr.G.parameters()):
        assert torch.equal(p, q)
    assert meta.step == 20 and meta.latent_dim == 4 and meta.config.model.latent_dim == 4


def test_lazy_dataset_path_trains_and_resumes_identically(tmp_path):
    """Folder datasets are read lazily through a DataLoader that follows the same batch order."""
    from PIL import Image

    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(40):
        arr = (torch.rand(20, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(img_dir / f"{i:03d}.png")
    extra = {"data.name": "folder", "data.root": str(img_dir), "data.image_size": 32, "data.channels": 1,
             "train.batch_size": 8}
    straight = Trainer(config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **extra, **{"run.name": "a", "train.steps": 6})),
                       tmp_path / "a")
    assert straight.data_shape == (1, 32, 32)
    straight.fit()
    cut_cfg = config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **extra, **{"run.name": "b", "train.steps": 2}))
    Trainer(cut_cfg, tmp_path / "b").fit()
    resumed = Trainer(config.load(tmp_path / "b" / "config.yaml", ["train.steps=6"]), tmp_path / "b", resume=True)
    resumed.fit()
    _assert_identical(_state(straight), _state(resumed))


def test_tensorboard_events_when_installed(tmp_path, monkeypatch):
    """With TensorBoard importable, every logged scalar also goes to a SummaryWriter in RUN_DIR/tensorboard."""
    import sys
    import types

    calls = []

    class FakeWriter:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            calls.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path, **{"train.tensorboard": "auto"}))
    Trainer(cfg, tmp_path / "toy").fit()
    assert calls[0] == ("init", str(tmp_path / "toy" / "tensorboard"))
    assert ("d_loss", 5) in calls and ("g_loss", 20) in calls and calls[-1] == ("close",)


def test_tensorboard_required_but_missing_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path, **{"train.tensorboard": "true"}))
    with pytest.raises(StatganError, match="TensorBoard is not installed"):
        Trainer(cfg, tmp_path / "toy").fit()
    assert not (tmp_path / "toy").exists()  # refused before the run directory was made
