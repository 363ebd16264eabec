"""The audit in fixed blocks of images (statgan.audit.sharding): a block's numbers do not depend on
what else runs or where, the blocks are dealt over ranks and gathered in order, and
``torchrun --nproc-per-node 2 -m statgan audit`` writes the summary.json of one process (2 gloo
ranks on the CPU), from rank 0 alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from statgan.audit import sharding, stages
from statgan.audit.settings import AuditSettings
from statgan.audit.sharding import BLOCK, Block, block_seed, busiest_share, make_blocks, map_blocks, run_blocks
from statgan.cli import main
from statgan.runtime import distributed

from conftest import tiny_dcgan_overrides

#: summary.json fields that differ between any two audits, dropped before comparing:
#: ``timing`` and ``seconds`` (measured wall times), ``projected`` (projected from a generator
#: pass timed at the start, and divided over the processes), ``time`` (wall clock at the end),
#: ``machine.load_average_at_start`` (the machine's load) and ``paths`` (the two audits write to
#: two folders)
VARYING = ("timing", "seconds", "projected", "time", "paths")
#: the smallest audit that still runs every stage with several blocks to deal: --quick with few images
#: (9 sets, 4 sigma candidates, one BDMC block) and one thread per process
AUDIT = ["--quick", "-n", "6", "--n-valid", "4", "--n-ood", "3", "--threads", "1"]


# ==== blocks, seeds, dealing ========================================================================
def test_blocks_cover_the_images_and_each_has_its_own_seed():
    seeds = lambda i: block_seed(7, "audit:test", i)  # noqa: E731
    blocks = make_blocks(2 * BLOCK + 5, seeds, "a")
    assert [(b.index, b.start, b.stop) for b in blocks] == [(0, 0, BLOCK), (1, BLOCK, 2 * BLOCK), (2, 2 * BLOCK, 2 * BLOCK + 5)]
    assert [b.seed for b in blocks] == [seeds(i) for i in range(3)] and len({b.seed for b in blocks}) == 3
    from statgan.runtime.seeding import derived_seed
    assert blocks[1].seed == derived_seed(7, "audit:test:block1")
    # a part of a larger set keeps its blocks' numbers and seeds
    assert make_blocks(5, seeds, first=2)[0] == Block("", 2, 0, 5, seeds(2))
    assert make_blocks(0, seeds) == [] and sharding.block_sizes(2 * BLOCK + 5) == [BLOCK, BLOCK, 5]
    assert busiest_share([BLOCK, BLOCK, 5], 2) == pytest.approx((BLOCK + 5) / (2 * BLOCK + 5))
    assert busiest_share([BLOCK], 4) == 1.0 and busiest_share([3, 3], 1) == 1.0
    with pytest.raises(ValueError, match="n_images must be >= 0"):
        make_blocks(-1, seeds)


def test_one_process_runs_every_block_in_order_and_nested_calls_stay_local():
    done = []

    def fn(b: Block):
        inner = map_blocks(b.size, lambda i: i, lambda c: c.size)  # a nested call (BDMC's inversion) runs here
        return b.index, b.start, b.stop, b.seed, inner

    out = map_blocks(BLOCK + 3, lambda i: 100 + i, fn, progress=done.append)
    assert out == [(0, 0, BLOCK, 100, [BLOCK]), (1, BLOCK, BLOCK + 3, 101, [3])]
    assert sum(done) == BLOCK + 3


def _as_rank(monkeypatch, rank, world, gather):
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(sharding, "_all_gather", gather)


def test_ranks_run_every_world_size_th_block_and_gather_them_in_order(monkeypatch):
    blocks = make_blocks(5 * BLOCK - 1, lambda i: 10 * i)
    fn = lambda b: (b.index, b.seed, b.size)  # noqa: E731
    single = run_blocks(blocks, fn)
    payloads, ran = {}, {0: [], 1: []}

    class Stop(Exception):
        pass

    def capture(rank):
        def gather(obj):
            payloads[rank] = obj
            raise Stop

        return gather

    def counted(rank):
        return lambda b: ran[rank].append(b.index) or fn(b)

    _as_rank(monkeypatch, 1, 2, capture(1))
    with pytest.raises(Stop):
        run_blocks(blocks, counted(1))
    _as_rank(monkeypatch, 0, 2, lambda obj: [obj, payloads[1]])
    told = []
    assert run_blocks(blocks, counted(0), progress=told.append) == single
    assert ran == {0: [0, 2, 4], 1: [1, 3]} and sum(told) == 5 * BLOCK - 1

    # a rank whose block fails: it raises its own error, every other rank a PeerFailed naming it
    _as_rank(monkeypatch, 0, 2, lambda obj: [obj, ("ValueError: bad block", None)])
    with pytest.raises(distributed.PeerFailed, match="rank 1 failed: ValueError: bad block"):
        run_blocks(blocks, fn)
    _as_rank(monkeypatch, 1, 2, lambda obj: [(None, {}), obj])
    with pytest.raises(ValueError, match="bad block"):
        run_blocks(blocks, lambda b: (_ for _ in ()).throw(ValueError("bad block")))


# ==== the stages' blocks ============================================================================
@pytest.fixture
def tiny():
    """A generator of 4x4 images from a 3-d latent, seen as the stages see a run."""
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Unflatten(1, (1, 4, 4))).eval()
    run = SimpleNamespace(G=G, latent_dim=3, device=torch.device("cpu"))
    s = AuditSettings.quick(proposal="isotropic", precondition=False, steps=5, ais_steps=3, sigma_steps=3,
                            is_samples=4, bdmc_images=BLOCK + 4)
    x = torch.tanh(torch.randn(BLOCK + 4, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield run, s, x
    torch.set_num_threads(n)


def test_a_block_gets_the_same_numbers_alone_as_in_its_set(tiny):
    run, s, x = tiny
    feature = ("l2", None)
    whole = stages.invert_images(run, x, s, "test", feature)
    head = stages.invert_images(run, x[:BLOCK], s, "test", feature)
    tail = stages.invert_images(run, x[BLOCK:], s, "test", feature, first_block=1)
    for f in ("z", "errors", "mse", "restart_z", "reconstructions"):
        assert torch.equal(getattr(whole, f), torch.cat([getattr(head, f), getattr(tail, f)])), f
    # invert_sets deals the blocks of all sets at once: the same numbers as one set at a time
    sets = stages.ImageSets(train=None, test=x, valid=x[:5], generated=x[:7], ood={"noise": x[3:9]})
    inv = stages.invert_sets(run, sets, s, feature)
    assert torch.equal(inv["test"].z, whole.z) and torch.equal(inv["noise"].z, stages.invert_images(run, x[3:9], s, "noise", feature).z)

    lik = stages.likelihoods(run, {"test": x}, {"test": whole}, 0.2, s)
    first = stages.likelihoods(run, {"test": x[:BLOCK]}, {"test": head}, 0.2, s)
    assert lik.log_likelihood["test"].shape == (BLOCK + 4,)
    for field in ("log_likelihood", "is_log_likelihood", "is_ess", "n_modes"):
        assert torch.equal(getattr(lik, field)["test"][:BLOCK], getattr(first, field)["test"]), field

    sigma = stages.choose_sigma(run, x, whole, s)
    assert sigma.candidates == tuple(s.sigma_candidates) and len(sigma.margins) == len(s.sigma_candidates) - 1
    assert sigma.chosen == sigma.candidates[max(range(len(sigma.candidates)), key=lambda i: sigma.mean_log_likelihood[i])]


def test_bdmc_blocks_join_into_one_result(tiny):
    run, s, _ = tiny
    b = stages.bdmc_bounds(run, 0.2, s)
    one = stages.bdmc_bounds(run, 0.2, replace(s, bdmc_images=BLOCK))
    n = s.bdmc_images
    r = b.result
    assert b.lower.shape == b.upper.shape == b.is_lower.shape == b.n_modes.shape == (n,)
    assert r.data.shape == (n, 1, 4, 4) and r.latents.shape == (n, 3) and r.forward.acceptance.shape == (n,)
    assert r.forward.step_sizes.shape[1] == r.reverse.betas.shape[1] == n and r.proposal.n_images == n
    assert torch.equal(b.lower[:BLOCK], one.lower) and torch.equal(r.data[:BLOCK], one.result.data)
    # the proposals' inversion is block i of "model-samples": invert_images on the data repeats it
    inv = stages.invert_images(run, r.data, s, "model-samples", ("l2", None))
    assert torch.equal(r.proposal.mean, inv.z)


def test_to_cpu_copies_proposals_and_dataclasses():
    q = stages.IsotropicGaussian(torch.zeros(2, 3), 0.5)
    out = sharding.to_cpu((q, {"a": torch.ones(1)}, [None, 3]))
    assert out[0] is not q and out[0].scale == 0.5 and torch.equal(out[0].mean, q.mean)
    assert torch.equal(out[1]["a"], torch.ones(1)) and out[2] == [None, 3]


# ==== torchrun ======================================================================================
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    n = torch.get_num_threads()
    root = tmp_path_factory.mktemp("shard")
    try:
        assert main(["train", "mnist5k-dcgan", *tiny_dcgan_overrides(root, **{"train.steps": 4})]) == 0
    finally:
        torch.set_num_threads(n)
    return root / "dcgan"


#: logs, per rank, every file a process opens for writing or renames into $SHARD_WATCH (an audit
#: hook, installed at start-up by ``sitecustomize`` in every process torchrun starts)
WATCH = textwrap.dedent("""
    import os, sys
    _dir = os.environ.get("SHARD_WATCH")
    if _dir and "RANK" in os.environ:
        _log = os.path.join(os.environ["SHARD_LOG"], "rank" + os.environ["RANK"])
        _writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

        def _hook(event, args):
            if event == "open" and isinstance(args[0], str) and args[0].startswith(_dir) and (
                    (args[1] is not None and any(c in args[1] for c in "wax+"))
                    or (args[1] is None and isinstance(args[2], int) and args[2] & _writes)):
                path = args[0]
            elif event == "os.rename" and str(args[1]).startswith(_dir):
                path = str(args[1])
            else:
                return
            with open(_log, "a") as fh:
                fh.write(os.path.basename(path) + "\\n")

        sys.addaudithook(_hook)
""")


def _comparable(path):
    summary = json.loads(path.read_text())
    for k in VARYING:
        summary.pop(k)
    summary["machine"].pop("load_average_at_start")
    return summary


def test_torchrun_two_ranks_write_the_summary_of_one_process(run_dir, tmp_path):
    one, two, logs, site = tmp_path / "one", tmp_path / "two", tmp_path / "writes", tmp_path / "site"
    logs.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(WATCH)
    n = torch.get_num_threads()
    try:
        assert main(["audit", str(run_dir), *AUDIT, "--out", str(one)]) == 0
    finally:
        torch.set_num_threads(n)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SHARD_WATCH": str(two), "SHARD_LOG": str(logs),
           "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "statgan", "audit", str(run_dir), *AUDIT, "--out", str(two)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _comparable(two / "summary.json") == _comparable(one / "summary.json")
    a, b = load_file(str(one / "per_image.safetensors")), load_file(str(two / "per_image.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # rank 0 alone wrote the three files (each through a temporary file it renamed), and logged
    assert sorted(p.name for p in logs.iterdir()) == ["rank0"]
    written = set((logs / "rank0").read_text().split())
    assert {"summary.json", "report.html", "per_image.safetensors"} <= written
    assert sorted(p.name for p in two.iterdir()) == ["per_image.safetensors", "report.html", "summary.json"]
    assert proc.stderr.count("audit: wrote") == 1 and "divided over 2 processes" in proc.stderr
    assert proc.stderr.count("audit: inversion done") == 1
