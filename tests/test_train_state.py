"""The training state on its own (no Trainer): capture/restore, checkpoint round trips, rollback."""

import pytest
import torch
from torch import nn

from statgan import objectives, regularizers
from statgan.errors import CheckpointError
from statgan.regularizers.ema import EMA
from statgan.rundir import checkpoint as ckpt
from statgan.train.faults import Divergence, Rollback
from statgan.train.state import TrainingState

DATA_SHAPE = (2,)


def _state(seed=0, ema=True, rank=0):
    """A small but complete state: BatchNorm buffers, EMA, Adam moments, an RNG-owning regulariser."""
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    D = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 1))
    regs = regularizers.build({"relaxation": {"sigma": 0.1}}, objectives.get("ns"))
    regs.bind(seed, torch.device("cpu"))
    state = TrainingState(
        G, D, EMA(G, decay=0.9) if ema else None,
        torch.optim.Adam(G.parameters(), lr=1e-2), torch.optim.Adam(D.parameters(), lr=1e-2),
        {"generator": None, "discriminator": None}, latents=torch.Generator().manual_seed(seed + 1),
        regularizers=regs, data_shape=DATA_SHAPE, device=torch.device("cpu"), seed=seed, rank=rank,
    )
    _train(state)  # the optimizers have moments, the EMA differs from G
    return state


def _train(state, steps=2):
    """Change everything the state covers, the way training does."""
    for _ in range(steps):
        z = torch.randn(8, 3, generator=state.latents)
        fake = state.G(z)
        state.regularizers.begin_batch(fake, fake, state.step)
        real = torch.randn(8, 2)  # the global RNG
        for opt, loss in ((state.opt_D, lambda: state.D(state.regularizers.transform_fake(fake.detach())).mean()
                           - state.D(real).mean()),
                          (state.opt_G, lambda: -state.D(state.regularizers.transform_fake(state.G(z))).mean())):
            opt.zero_grad()
            loss().backward()
            opt.step()
        state.step += 1
        if state.ema is not None:
            state.ema.update(state.step)
    state.best_fid = float(state.step)
    state.lr_scale *= 0.5


def _fingerprint(state):
    """Everything observable about a state, including the next numbers each RNG stream will give."""
    out = {}
    for prefix, module in (("G", state.G), ("D", state.D), ("E", state.ema.module if state.ema else None)):
        if module is not None:
            out.update({f"{prefix}.{k}": v.clone() for k, v in module.state_dict().items()})
    for name, opt in (("oG", state.opt_G), ("oD", state.opt_D)):
        for i, st in opt.state_dict()["state"].items():
            out.update({f"{name}.{i}.{k}": torch.as_tensor(v).clone() for k, v in st.items()})
    out["rng.torch"] = torch.get_rng_state()
    out["rng.latent"] = state.latents.get_state()
    out.update({k: v.clone() for k, v in state.regularizers.state_tensors().items()})
    out["scalars"] = torch.tensor([state.step, state.best_fid or -1.0, state.lr_scale], dtype=torch.float64)
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def _differs(a, b):
    return {k for k in a if not torch.equal(a[k], b.get(k, torch.tensor(float("nan"))))}


def test_restore_returns_to_the_snapshot_bit_for_bit_and_the_snapshot_stays_reusable():
    state = _state()
    before = _fingerprint(state)
    snap = state.snapshot()
    for _ in range(2):
        _train(state)
        changed = _differs(before, _fingerprint(state))
        # the perturbation reached every part of the state, so the comparison below can fail
        assert {"G.0.weight", "G.1.running_mean", "E.0.weight", "D.0.weight", "oG.0.exp_avg", "oD.0.step",
                "rng.torch", "rng.latent", "reg.relaxation.rng", "scalars"} <= changed
        state.restore(snap)
        _assert_same(before, _fingerprint(state))


def test_snapshot_is_a_copy_and_capture_aliases_the_live_state():
    state = _state()
    snap, live = state.snapshot(), state.capture()
    weight = state.G[0].weight
    with torch.no_grad():
        weight.add_(1.0)
    assert torch.equal(live.tensors["G.0.weight"], weight)
    assert torch.equal(snap.tensors["G.0.weight"] + 1.0, weight)
    assert snap.step == state.step and snap.meta.data_shape == tuple(DATA_SHAPE)


def test_checkpoint_round_trip_gives_the_same_state(tmp_path):
    saved = _state(seed=0)
    path = saved.save_checkpoint(tmp_path / "ck", keep=2, extra_meta={"note": "x"})
    assert path.name == f"step-{saved.step:06d}.json"
    expected = _fingerprint(saved)
    _train(saved)
    continued = _fingerprint(saved)
    tensors, meta = ckpt.load_checkpoint(path)
    assert meta["note"] == "x" and meta["step"] == expected["scalars"][0] and meta["lr_scale"] == expected["scalars"][2]
    loaded = _state(seed=1)  # other weights, moments, streams (the global one included) and counters
    assert {"G.0.weight", "E.0.weight", "D.0.weight", "oG.0.exp_avg", "oD.0.exp_avg_sq", "rng.torch", "rng.latent",
            "reg.relaxation.rng"} <= _differs(expected, _fingerprint(loaded))
    loaded.load_checkpoint(tensors, meta, str(path))
    _assert_same(expected, _fingerprint(loaded))
    _train(loaded)  # and it continues as the saved state did
    _assert_same(continued, _fingerprint(loaded))


def test_a_named_checkpoint_is_kept_outside_the_step_sequence(tmp_path):
    state = _state()
    path = state.save_checkpoint(tmp_path, keep=1, extra_meta={}, name="best")
    assert path.name == "best.json" and ckpt.list_checkpoints(tmp_path) == []


def test_checkpoint_rng_of_another_rank_and_a_fresh_stream_for_a_rank_it_lacks(tmp_path):
    saved = _state()
    path = saved.save_checkpoint(tmp_path, keep=1, extra_meta={})
    tensors, meta = ckpt.load_checkpoint(path)
    rank1_stream = torch.Generator().manual_seed(123).get_state()
    rank1 = _state(rank=1)
    rank1.load_checkpoint({**tensors, "rng.torch.rank1": rank1_stream}, meta, "ck")
    assert torch.equal(torch.get_rng_state(), rank1_stream)
    assert torch.equal(rank1.latents.get_state(), tensors["rng.latent"])  # the latent stream is shared
    rank2 = _state(rank=2)
    rank2.load_checkpoint(tensors, meta, "ck")
    fresh = torch.get_rng_state()
    assert not torch.equal(fresh, tensors["rng.torch"]) and not torch.equal(fresh, rank1_stream)
    _state(rank=2).load_checkpoint(tensors, meta, "ck")
    assert torch.equal(torch.get_rng_state(), fresh)  # a pure function of (seed, rank, step)


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    tensors, meta = ckpt.load_checkpoint(_state(ema=False).save_checkpoint(tmp_path, keep=1, extra_meta={}))
    with pytest.raises(CheckpointError, match="ck: has no EMA weights but train.ema is on"):
        _state().load_checkpoint(tensors, meta, "ck")
    with pytest.raises(CheckpointError, match=r"ck: saved for data of shape \[2\], but the dataset gives \[3\]"):
        other = _state(ema=False)
        other.data_shape = (3,)
        other.load_checkpoint(tensors, meta, "ck")


def test_rollback_restores_the_last_commit_with_a_lower_learning_rate():
    state = _state()
    rollback = Rollback(state, max_retries=2, lr_factor=0.25)
    _train(state)
    rollback.commit()
    good = _fingerprint(state)
    good_scale = state.lr_scale
    _train(state, steps=3)
    scale = state.lr_scale
    rollback.roll_back(Divergence(state.step, ["d_loss"], [float("nan")]))
    assert state.lr_scale == scale * 0.25  # the current scale, lowered: repeated rollbacks compound
    state.lr_scale = good_scale  # everything else is exactly the committed state
    _assert_same(good, _fingerprint(state))
    assert rollback.retries == 1 and not rollback.exhausted


def test_rollback_retries_count_until_training_gets_past_the_divergence():
    state = _state()
    rollback = Rollback(state, max_retries=2, lr_factor=0.5)
    start = state.step
    diverged_at = start + 2
    for retries in (1, 2):
        _train(state, steps=3)
        rollback.roll_back(Divergence(diverged_at, ["g_loss"], [float("inf")]))
        assert state.step == start and rollback.retries == retries
    assert rollback.exhausted
    _train(state, steps=2)  # not yet past the step that diverged: the count stands
    rollback.commit()
    assert rollback.retries == 2 and rollback.good.step == start + 2
    _train(state, steps=1)
    rollback.commit()
    assert rollback.retries == 0 and not rollback.exhausted


def test_a_checkpoint_record_is_read_typed_and_a_mangled_one_is_one_line():
    from statgan.errors import CheckpointError
    from statgan.train.state import StateRecord

    rec = StateRecord(step=7, data_shape=(1, 28, 28), ema=True, optimizers={"opt_G": {}, "opt_D": {}}, lr_scale=0.5,
                      best_fid=3.25, grad_scalers={})
    assert StateRecord.from_record(rec.to_record(), "x.json") == rec  # the JSON round trip
    for broken in ({"data_shape": [1, 28, 28]}, {"step": "seven", "optimizers": {}}, {"step": 1, "optimizers": None}):
        with pytest.raises(CheckpointError, match="x.json: its metadata lacks or mangles"):
            StateRecord.from_record(broken, "x.json")
