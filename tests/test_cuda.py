"""The GPU switches: bf16 and fp16 (gradient scaling, with SAM too), TF32, channels-last and
torch.compile on CUDA, and two NCCL processes when the machine has two GPUs. Skipped without a GPU
(the only skip in the suite); the CPU side of every switch is tested in test_faults.py."""

import os
import subprocess
import sys

import pytest
import torch

from statgan import config
from statgan.rundir import checkpoint as ckpt
from statgan.rundir.run import read_metrics
from statgan.rundir.run import load_generator
from statgan.train.trainer import Trainer

from conftest import tiny_dcgan_overrides

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cfg(tmp_path, name, **extra):
    items = {"run.name": name, "run.device": "cuda", "train.steps": 8, "train.log_every": 2,
             "train.checkpoint_every": 4, **extra}
    return config.load("mnist5k-dcgan", tiny_dcgan_overrides(tmp_path, **items))


def _finite_run(tmp_path, name, **extra):
    tr = Trainer(_cfg(tmp_path, name, **extra), tmp_path / name)
    before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    tr.fit()
    recs = [r for r in read_metrics(tmp_path / name) if "d_loss" in r]
    assert len(recs) == 4 and all(r["d_loss"] is not None and r["g_loss"] is not None for r in recs)
    assert all(torch.isfinite(p).all() for p in tr.G.parameters())
    assert any(not torch.equal(before[k], v) for k, v in tr.G.state_dict().items() if k.endswith("weight"))
    return tr


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_fp32_weights(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    tr = _finite_run(tmp_path, precision, **{"train.precision": precision})
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())
    _, meta = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / precision / "checkpoints"))
    if precision == "fp16":  # the gradient scalers are checkpointed, and restored on resume
        assert set(meta["grad_scalers"]) == {"generator", "discriminator"}
        more = config.load(tmp_path / precision / "config.yaml", ["train.steps=10"])
        resumed = Trainer(more, tmp_path / precision, resume=True)
        assert resumed.scalers["generator"].get_scale() == meta["grad_scalers"]["generator"]["scale"]
        resumed.fit()


def test_fp16_with_sam_and_r1(tmp_path):
    _finite_run(tmp_path, "sam16", **{"train.precision": "fp16", "regularizers.sam.rho": 0.5,
                                      "regularizers.r1.weight": 1.0})


def test_tf32_channels_last_and_compile(tmp_path):
    tr = _finite_run(tmp_path, "fast", **{"train.tf32": True, "train.channels_last": True, "train.compile": True,
                                          "train.precision": "bf16" if torch.cuda.is_bf16_supported() else "fp32"})
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert tr.G._compiled_call_impl is not None
    G, _ = load_generator(tmp_path / "fast")  # a plain, eager, fp32 generator loads the checkpoint
    assert torch.isfinite(G(torch.randn(2, 8))).all()


def test_cuda_run_matches_cpu_run_in_fp32(tmp_path):
    """fp32 on the GPU follows the CPU trajectory closely (no switch changes the maths)."""
    plain = {"model.generator": "{width: 4, norm: batch}", "model.discriminator": "{width: 4, norm: batch}"}  # no dropout:
    gpu = Trainer(_cfg(tmp_path, "gpu", **{"train.tf32": False, **plain}), tmp_path / "gpu")  # CUDA has its own RNG
    gpu.fit()
    cpu = Trainer(_cfg(tmp_path, "cpu", **{"run.device": "cpu", **plain}), tmp_path / "cpu")
    cpu.fit()
    for (k, a), b in zip(gpu.G.state_dict().items(), cpu.G.state_dict().values()):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_nccl_processes(tmp_path):
    items = tiny_dcgan_overrides(tmp_path, **{"run.name": "nccl", "run.device": "cuda", "train.steps": 4,
                                              "train.log_every": 2, "train.checkpoint_every": 2})
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "statgan", "train", "mnist5k-dcgan", *items], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("done: step 4") == 1
    assert [r["step"] for r in read_metrics(tmp_path / "nccl") if "d_loss" in r] == [2, 4]
