"""Several processes (gloo on CPU, 2 ranks): identical weights on every rank, equivalence with one
process at the same global batch, regularisers that differentiate twice, SAM, a stop + resume
under DDP, sharded feature extraction, and the real ``torchrun -m statgan train`` path.

The ranks are spawned once for the whole module (one worker runs every scenario) to keep the
start-up cost of two fresh interpreters to a single payment.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from statgan import config
from statgan.rundir.run import read_metrics
from statgan.train.trainer import Trainer, TrainingInterrupted

from conftest import LinearW, tiny_dcgan_overrides, toy_overrides

WORLD = 2
STEPS = 6

# name -> overrides of the toy MLP GAN (no BatchNorm, no dropout: a 2-rank run must equal one
# process at the same global batch up to the order of float sums)
EQUIVALENT = {
    "plain": {},
    # double back-propagation: R1 on D (input gradients), param_grad on G (all-reduced parameter gradient)
    "double_backprop": {"regularizers.r1.weight": 1.0, "regularizers.param_grad.weight": 0.5},
    # SAM's two passes on both networks, observation noise drawn for the global batch, sample_grad (scaled by 1/W)
    "sam": {"regularizers.sam.rho": 0.2, "regularizers.sam.adaptive": "false",
            "regularizers.relaxation.sigma": 0.2, "regularizers.sample_grad.weight": 2.0},
}


def _toy(tmp, name, **extra):
    items = {"run.name": name, "train.steps": STEPS, "train.batch_size": 32, "train.log_every": 3,
             "train.lr_g": 2e-3, "train.lr_d": 2e-3,
             "train.sample_every": 0, "train.checkpoint_every": 0, "train.ema_decay": 0.5, **extra}
    return config.load("mnist5k-dcgan", toy_overrides(tmp, **items))


def _dcgan(tmp, name, **extra):
    # BatchNorm (buffers averaged over the ranks) and dropout with Monte-Carlo averaging (per-rank masks)
    items = {"run.name": name, "train.steps": STEPS, "train.batch_size": 8, "train.log_every": 2,
             "model.generator": "{width: 4, norm: batch}", "model.discriminator": "{width: 4, norm: batch}",
             "regularizers.mc_dropout.p": 0.2, "regularizers.mc_dropout.n_mcd": 2, **extra}
    return config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp, **items))


def _state(tr):
    out = {f"G.{k}": v.detach().clone() for k, v in tr.G.state_dict().items()}
    out.update({f"D.{k}": v.detach().clone() for k, v in tr.D.state_dict().items()})
    out.update({f"E.{k}": v.detach().clone() for k, v in tr.ema.module.state_dict().items()})
    for name, opt in (("oG", tr.opt_G), ("oD", tr.opt_D)):
        for i, st in opt.state_dict()["state"].items():
            out.update({f"{name}.{i}.{k}": v.clone() for k, v in st.items() if torch.is_tensor(v)})
    return out


def _path_length_draws(rows):
    """Two lazy evaluations of the path-length penalty with ``rows`` fake rows on this rank: the
    drawn latents of each and the running mean after it."""
    from statgan import regularizers
    from statgan.regularizers.base import LossContext

    reg = regularizers.get("path_length", weight=2.0, every=1, decay=0.5, batch_shrink=1)
    reg.bind(7, torch.device("cpu"))
    G, fake = LinearW(seed=0), torch.zeros(rows, 1, 2, 2)
    out = {}
    for step in (0, 1):
        reg.penalty(LossContext("generator", torch.zeros(()), fake, fake, G, None, step))
        out[f"z{step}"], out[f"mean{step}"] = reg._cache[0].clone(), reg.mean.clone()
    return out


def _worker(rank, port, tmp):
    """One rank: every scenario in turn; results saved as tmp/<scenario>.rank<r>.pt."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    tmp = Path(tmp)
    from statgan.metrics.features import get_extractor
    from statgan.metrics.monitor import generated_features
    from statgan.nets import build_generator
    from statgan.runtime import distributed

    def save(name, obj):
        torch.save(obj, tmp / f"{name}.rank{rank}.pt")

    for name, extra in EQUIVALENT.items():
        tr = Trainer(_toy(tmp, name, **extra), tmp / name)
        tr.fit()
        save(name, _state(tr))

    # uninterrupted DCGAN run, and the same run stopped after step 3 (requested on rank 1 only) and resumed
    straight = Trainer(_dcgan(tmp, "straight"), tmp / "straight")
    straight.fit()
    save("straight", _state(straight))

    def stop_on_rank1(trainer, step):
        if step == 3 and rank == 1:
            trainer.request_stop()

    cfg = _dcgan(tmp, "cut")
    try:
        Trainer(cfg, tmp / "cut", callbacks=[stop_on_rank1]).fit()
        stopped = None
    except TrainingInterrupted as exc:
        stopped = exc.step
    resumed = Trainer(cfg, tmp / "cut", resume=True)
    start = resumed.step
    resumed.fit()
    save("resumed", {"stopped": stopped, "start": start, "state": _state(resumed)})

    # path-length penalty: each rank draws its rows of one global batch; the running mean is global
    save("path_length", _path_length_draws(4))

    # FID features: each rank generates and embeds its share, gathered in sample order
    torch.manual_seed(0)
    G = build_generator("mlp", (2,), 3, hidden=8, depth=1)
    feats = generated_features(G, 3, 37, 10, 5, get_extractor("pixels", shape=(2,)))
    save("features", feats)
    distributed.cleanup()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    ctx = mp.spawn(_worker, args=(_free_port(), str(tmp)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 300  # a collective that never completes must fail the test, not hang it
    while not ctx.join(timeout=5):  # raises if a rank raised
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the ranks did not finish within 300 s (a deadlock in a collective?)")

    def load(name):
        return [torch.load(tmp / f"{name}.rank{r}.pt") for r in range(WORLD)]

    return tmp, load


def _assert_same(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), f"{k} differs"
        else:
            # one process differs by ~1e-7 (order of float sums); dropping any of the corrections
            # (gradient averaging, param_grad's all-reduce, sample_grad's 1/W, sharded noise) gives > 5e-5
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("name", list(EQUIVALENT))
def test_ranks_hold_identical_weights_equal_to_one_process(ranks, tmp_path, one_thread, name):
    tmp, load = ranks
    r0, r1 = load(name)
    _assert_same(r0, r1)  # bit-identical on every rank (EMA included)
    single = Trainer(_toy(tmp_path, name, **EQUIVALENT[name]), tmp_path / name)
    single.fit()
    ref = _state(single)
    _assert_same(r0, ref, exact=False)  # the same global batch in one process, up to float rounding
    # and training happened: the weights moved away from their initial values
    init = _state(Trainer(_toy(tmp_path, name + "-init", **EQUIVALENT[name]), tmp_path / "unused"))
    assert all(not torch.allclose(r0[k], init[k]) for k in r0 if k.startswith("G.") and k.endswith("weight"))


def test_only_rank0_writes_and_logs_global_losses(ranks):
    tmp, _ = ranks
    rd = tmp / "plain"
    assert sorted(p.name for p in rd.iterdir()) == ["checkpoints", "config.yaml", "curves.png", "metrics.jsonl", "samples",
                                                   "status.json"]
    steps = [r["step"] for r in read_metrics(rd)]
    assert steps == [3, 6]  # one writer: no duplicated records
    meta = (rd / "checkpoints" / "step-000006.json").read_text()
    assert '"world_size": 2' in meta


def test_batchnorm_dropout_and_mc_averaging_stay_identical_across_ranks(ranks):
    _, load = ranks
    r0, r1 = load("straight")
    _assert_same(r0, r1)
    assert any("running_mean" in k for k in r0)  # buffers are compared too


def test_stop_requested_on_one_rank_stops_all_and_resume_is_bit_identical(ranks):
    _, load = ranks
    straight = load("straight")
    for r, res in enumerate(load("resumed")):
        assert res["stopped"] == 3 and res["start"] == 3
        _assert_same(res["state"], straight[r])  # per-rank RNG streams restored: same dropout masks


def test_path_length_draws_one_global_batch_and_keeps_one_running_mean(ranks):
    _, load = ranks
    r0, r1 = load("path_length")
    single = _path_length_draws(8)  # one process, the global batch of both ranks
    for step in (0, 1):
        assert not torch.equal(r0[f"z{step}"], r1[f"z{step}"])  # the ranks do not repeat each other's latents
        assert torch.equal(torch.cat([r0[f"z{step}"], r1[f"z{step}"]]), single[f"z{step}"])
        assert torch.equal(r0[f"mean{step}"], r1[f"mean{step}"])  # a checkpointed mean identical on every rank
        torch.testing.assert_close(r0[f"mean{step}"], single[f"mean{step}"], rtol=1e-12, atol=0)
    assert single["mean1"] != single["mean0"]  # the mean moved: the second comparison is not trivial


def test_sharded_feature_extraction_equals_one_process(ranks):
    from statgan.metrics.sources import generator_batches
    from statgan.metrics.features import get_extractor
    from statgan.nets import build_generator

    _, load = ranks
    f0, f1 = load("features")
    torch.manual_seed(0)
    G = build_generator("mlp", (2,), 3, hidden=8, depth=1)
    single = get_extractor("pixels", shape=(2,)).extract(generator_batches(G, 3, 37, 10, 5))
    assert f0.shape == (37, 2)
    assert torch.equal(f0, f1)
    torch.testing.assert_close(f0, single)


def test_torchrun_cli_trains_with_one_writer(tmp_path):
    """The real launcher: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m statgan train``."""
    items = toy_overrides(tmp_path, **{"train.steps": 4, "train.log_every": 2, "train.sample_every": 0,
                                       "train.checkpoint_every": 2})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "statgan", "train", "mnist5k-dcgan", *items], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("done: step 4") == 1  # rank 0 alone prints
    assert "x 2 processes" in proc.stderr
    rd = tmp_path / "toy"
    assert [r["step"] for r in read_metrics(rd)] == [2, 4]
    assert sorted(p.name for p in (rd / "checkpoints").iterdir()) == [
        "step-000002.json", "step-000002.safetensors", "step-000004.json", "step-000004.safetensors"]
