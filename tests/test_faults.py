"""Faults: NaN/Inf rollback with lower learning rates, TrainingDiverged, corrupt checkpoints with
--use-previous, no run directory left by a run that fails before its first step, and the
precision switches that can run on a CPU (bf16, channels-last, the fp16 and compile errors)."""

import pytest
import torch

from statgan import config, objectives
from statgan.cli import main
from statgan.errors import ConfigError, StatganError
from statgan.objectives.base import Objective
from statgan.rundir import checkpoint as ckpt
from statgan.rundir.run import read_metrics
from statgan.rundir.run import load_generator
from statgan.train import precision as precision_mod
from statgan.train.trainer import Trainer, TrainingDiverged

from conftest import tiny_dcgan_overrides, toy_overrides


class _NaNGradFn(torch.autograd.Function):
    """Adds zero to the loss and sends NaN back: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.new_zeros(())

    @staticmethod
    def backward(ctx, g):
        return torch.full(ctx.shape, float("nan"))


class _Faulty(Objective):
    """The non-saturating loss with an injected fault at the ``at``-th discriminator (or generator)
    loss evaluation: ``kind`` = "nan_loss" (D's loss is NaN) or "nan_grad" (G's gradient is NaN);
    only once, or from then on with ``persist``; "error" raises a user error instead."""

    def __init__(self, at: int = 5, kind: str = "nan_loss", persist: bool = False):
        self.ns = objectives.get("ns")
        self.at, self.kind, self.persist = at, kind, persist
        self.d_calls = self.g_calls = 0

    def _hit(self, calls):
        return calls == self.at or (self.persist and calls > self.at)

    def discriminator_loss(self, D, real, fake):
        self.d_calls += 1
        if self.kind == "error":
            raise StatganError("injected failure at the first step")
        loss = self.ns.discriminator_loss(D, real, fake)
        return loss * float("nan") if self.kind == "nan_loss" and self._hit(self.d_calls) else loss

    def generator_loss(self, D, real, fake):
        self.g_calls += 1
        loss = self.ns.generator_loss(D, real, fake)
        if self.kind == "nan_grad" and self._hit(self.g_calls):
            loss = loss + _NaNGradFn.apply(fake)
        return loss


objectives.OBJECTIVES.register("_test_faulty")(_Faulty)


def _faulty(tmp_path, **extra):
    items = {"objective.name": "_test_faulty", "train.steps": 12, "train.log_every": 2, "train.checkpoint_every": 4,
             "train.sample_every": 0, **extra}
    return config.load("mnist5k-dcgan", toy_overrides(tmp_path, **items))


def test_a_nan_loss_rolls_back_lowers_the_learning_rate_and_recovers(tmp_path, one_thread, capsys):
    cfg = _faulty(tmp_path, **{"objective.at": 7, "train.nan_retries": 2})
    tr = Trainer(cfg, tmp_path / "toy")
    result = tr.fit()
    assert result.step == 12 and tr.state.lr_scale == 0.5
    recs = read_metrics(tmp_path / "toy")
    events = [r for r in recs if r.get("event") == "nan_rollback"]
    # the check at step 8 found d_loss NaN at step 7 (and, through D's NaN weights, everything after
    # it in that step) and went back to the snapshot of step 6
    assert events == [{"step": 6, "event": "nan_rollback", "diverged": ["d_loss", "g_loss", "grad_norm_d", "grad_norm_g"],
                       "at_step": 7, "retry": 1, "lr_scale": 0.5}]
    assert [r["step"] for r in recs if "d_loss" in r] == [2, 4, 6, 8, 10, 12]  # the discarded path left no records
    lrs = {r["step"]: r["lr_g"] for r in recs if "lr_g" in r}
    assert lrs[6] == pytest.approx(2e-4) and lrs[8] == pytest.approx(1e-4) and lrs[12] == pytest.approx(1e-4)
    assert all(r["d_loss"] is not None for r in recs if "d_loss" in r)
    assert "rolled back to step 6" in capsys.readouterr().err
    # every checkpoint is finite, and the lowered learning rate survives a resume
    for _, js in ckpt.list_checkpoints(tmp_path / "toy" / "checkpoints"):
        tensors, meta = ckpt.load_checkpoint(js)
        assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())
    assert meta["lr_scale"] == 0.5
    more = config.load(tmp_path / "toy" / "config.yaml", ["train.steps=14"])
    resumed = Trainer(more, tmp_path / "toy", resume=True)
    assert resumed.state.lr_scale == 0.5


def test_a_persistent_nan_stops_with_what_and_when_after_the_retries(tmp_path, one_thread, capsys):
    cfg = _faulty(tmp_path, **{"objective.at": 7, "objective.persist": True, "train.nan_retries": 2})
    with pytest.raises(TrainingDiverged) as info:
        Trainer(cfg, tmp_path / "toy").fit()
    msg = str(info.value)
    assert msg.startswith("training diverged: d_loss=nan and g_loss=nan") and "at step 7 again after 2 rollback(s) to step 6" in msg
    assert "0.25x" in msg
    assert "train.nan_retries=2" in msg and "step-000004.json" in msg and "\n" not in msg
    events = [r for r in read_metrics(tmp_path / "toy") if r.get("event") == "nan_rollback"]
    assert [e["lr_scale"] for e in events] == [0.5, 0.25]
    # through the CLI: one line, status 2; the run directory (with its good checkpoint) stays
    capsys.readouterr()
    argv = ["train", "mnist5k-dcgan", *toy_overrides(tmp_path, **{"run.name": "cli", "objective.name": "_test_faulty", "objective.at": 3,
                                                 "objective.persist": True, "train.nan_retries": 0, "train.log_every": 2})]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and not err[0].startswith("statgan: error")  # the banner, then one error line
    assert err[1].startswith("statgan: error: training diverged: d_loss=nan") and "at step 3;" in err[1]


def test_a_nan_gradient_with_a_finite_loss_is_caught(tmp_path, one_thread):
    cfg = _faulty(tmp_path, **{"objective.at": 3, "objective.kind": "nan_grad", "train.nan_retries": 0})
    with pytest.raises(TrainingDiverged, match=r"grad_norm_g=nan at step 3; giving up \(train.nan_retries=0\)"):
        Trainer(cfg, tmp_path / "toy").fit()


def test_corrupt_checkpoint_is_refused_by_name_and_previous_is_used_on_request(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path, **{"train.checkpoint_every": 5, "train.steps": 10})]) == 0
    rd = tmp_path / "toy"
    st = rd / "checkpoints" / "step-000010.safetensors"
    st.write_bytes(st.read_bytes()[:-7])
    capsys.readouterr()
    assert main(["train", "--resume", str(rd), "train.steps=12"]) == 2
    err = capsys.readouterr().err
    assert "step-000010.safetensors" in err and "corrupt or truncated" in err and "--use-previous" in err
    assert main(["train", "--resume", str(rd), "train.steps=12", "--use-previous"]) == 0
    out = capsys.readouterr()
    assert "resuming" in out.err and "step-000005.json" in out.err and "done: step 12" in out.out
    names = sorted(p.name for p in (rd / "checkpoints").iterdir())
    assert "step-000010.safetensors.corrupt" in names and "step-000010.json.corrupt" in names
    assert [s for s, _ in ckpt.list_checkpoints(rd / "checkpoints")] == [5, 10, 12]  # step 10 written afresh
    assert main(["train", "--use-previous", *toy_overrides(tmp_path, **{"run.name": "x"})]) == 2


def test_a_run_that_fails_before_its_first_step_leaves_no_run_directory(tmp_path, capsys):
    argv = ["train", "mnist5k-dcgan", *toy_overrides(tmp_path, **{"objective.name": "_test_faulty", "objective.kind": "error"})]
    assert main(argv) == 2
    assert "injected failure" in capsys.readouterr().err
    assert not (tmp_path / "toy").exists()


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bfloat16_warns(native, monkeypatch, recwarn):
    # without AVX-512 BF16 / AMX autocast emulates bfloat16 (measured 2026-12-07 on an AVX2 EPYC: a
    # default-network step 20x slower than fp32), so the run is right but slow: a warning, not an error
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: native)
    precision_mod.Precision("bf16", torch.device("cpu"))
    slow = [w for w in recwarn if "without native bfloat16" in str(w.message)]
    assert len(slow) == (0 if native else 1)


@pytest.mark.parametrize("native,extra,hinted", [(True, {}, True), (False, {}, False),
                                                  (True, {"train.precision": "bf16"}, False)])
def test_a_new_fp32_image_run_on_a_native_bfloat16_cpu_is_told_about_bf16(native, extra, hinted, monkeypatch,
                                                                        tmp_path, capsys):
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: native)
    assert main(["train", "mnist5k-dcgan", *tiny_dcgan_overrides(tmp_path, **{"train.steps": 1, **extra})]) == 0
    err = capsys.readouterr().err
    assert ("hint: this CPU computes bfloat16 natively; train.precision=bf16" in err) == hinted
    # vector data (the toy MLPs): the gain was measured on convolutional networks, so no hint
    assert main(["train", "toy-8gaussians", *toy_overrides(tmp_path, **{"train.steps": 1})]) == 0
    assert "hint:" not in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:train.precision=bf16 on a CPU without native bfloat16")
def test_bf16_autocast_trains_on_cpu_with_finite_losses(tmp_path, one_thread):
    cfg = config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **{"train.precision": "bf16", "train.steps": 6,
                                                              "train.log_every": 2, "train.checkpoint_every": 6}))
    tr = Trainer(cfg, tmp_path / "dcgan")
    before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    tr.fit()
    recs = read_metrics(tmp_path / "dcgan")
    assert len(recs) == 3 and all(r["d_loss"] is not None and r["g_loss"] is not None for r in recs)
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())  # weights stay fp32; only the forward is bf16
    assert any(not torch.equal(before[k], v) for k, v in tr.G.state_dict().items() if k.endswith("weight"))
    G, meta = load_generator(tmp_path / "dcgan")
    assert meta.config.train.precision == "bf16" and torch.isfinite(G(torch.randn(2, 8))).all()


def test_channels_last_trains_and_its_checkpoint_loads_into_a_plain_model(tmp_path, one_thread):
    cfg = config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **{"train.channels_last": True, "train.steps": 3}))
    tr = Trainer(cfg, tmp_path / "dcgan")
    conv = next(p for p in tr.D.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    tr.fit()
    G, _ = load_generator(tmp_path / "dcgan")
    assert torch.isfinite(G(torch.randn(2, 8))).all()


def test_fp16_on_cpu_is_a_clear_error_before_anything_is_written(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path, **{"run.device": "cpu", "train.precision": "fp16"})]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("statgan: error: train.precision=fp16 needs a CUDA device") and "bf16" in err
    assert not (tmp_path / "toy").exists()
    with pytest.raises(ConfigError, match="train.precision"):
        config.load("mnist5k-dcgan", ["train.precision=fp8"])


def test_compile_is_in_place_and_refuses_double_backprop_clearly(tmp_path, one_thread, monkeypatch):
    # aot_eager: torch.compile's autograd path without code generation (seconds, not minutes, on a CPU)
    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: original(self, backend="aot_eager"))
    cfg = config.load("mnist5k-dcgan", toy_overrides(tmp_path, **{"train.compile": True, "regularizers.r1.weight": 1.0}))
    tr = Trainer(cfg, tmp_path / "toy")
    assert tr.G._compiled_call_impl is not None and tr.D._compiled_call_impl is not None
    assert tr.ema.module._compiled_call_impl is None  # the EMA copy stays eager
    assert set(tr.state.capture().tensors) >= {f"G.{k}" for k in tr.G.state_dict()}
    assert not any("_orig_mod" in k for k in tr.G.state_dict())  # checkpoints keep their keys
    with pytest.raises(ConfigError, match="train.compile=true cannot be combined with double back-propagation"):
        tr.fit()
    assert not (tmp_path / "toy").exists()  # it failed in the first step: nothing left behind
