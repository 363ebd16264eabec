"""What a training step's network passes cost with more capacity, against the default networks in the
same run: base convolutions (``base_convs``), a wider discriminator, wider networks.

For the mnist5k DCGAN networks at batch 64, times one generator pass + backward and one
discriminator pass on a generated and a real batch + backward (the networks' share of a step: no
optimiser, data or regulariser), under the chosen precision (``bf16``: CPU autocast, as
``train.precision=bf16``), in interleaved rounds; prints the median milliseconds and the ratio to
the default networks (G width 32 with BatchNorm, D width 32 without). One torch thread.

    python benchmarks/arch_step_cost.py --precision bf16 --repeats 5 --reps 20
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

import torch

from statgan.nets import build_discriminator, build_generator

SHAPE = (1, 28, 28)

#: arm -> (generator parameters, discriminator parameters); the first is the reference
ARMS: Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]] = {
    "default (G 32, D 32)": ({"width": 32}, {"width": 32, "norm": "none"}),
    "D base_convs 1": ({"width": 32}, {"width": 32, "norm": "none", "base_convs": 1}),
    "G and D base_convs 1": ({"width": 32, "base_convs": 1}, {"width": 32, "norm": "none", "base_convs": 1}),
    "D width 64": ({"width": 32}, {"width": 64, "norm": "none"}),
    "G and D width 64": ({"width": 64}, {"width": 64, "norm": "none"}),
}


def pass_ms(G: torch.nn.Module, D: torch.nn.Module, z: torch.Tensor, real: torch.Tensor, reps: int,
            autocast: Callable[[], Any]) -> float:
    """Median milliseconds of G forward/backward plus D forward/backward on a fake and a real batch."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        with autocast():
            loss = D(G(z)).float().mean() + D(real).float().mean()
        loss.backward()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds over the arms")
    ap.add_argument("--reps", type=int, default=20, help="timed passes per arm and round")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    nets = {name: (build_generator("dcgan", SHAPE, 100, **g), build_discriminator("dcgan", SHAPE, **d))
            for name, (g, d) in ARMS.items()}
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.precision == "bf16"
                else contextlib.nullcontext)
    z, real = torch.randn(a.batch, 100), torch.rand(a.batch, *SHAPE) * 2 - 1
    print(f"precision {a.precision}; load average at start: {os.getloadavg()}", flush=True)
    results: Dict[str, List[float]] = {name: [] for name in nets}
    for _ in range(a.repeats):
        for name, (G, D) in nets.items():
            results[name].append(pass_ms(G, D, z, real, a.reps, autocast))
    print(f"load average at end: {os.getloadavg()}")
    ref = statistics.median(results[next(iter(ARMS))])
    print("arm | parameters G / D | median ms (G + D passes) | ratio to the default networks")
    for name, values in results.items():
        G, D = nets[name]
        count = lambda m: sum(p.numel() for p in m.parameters())
        med = statistics.median(values)
        print(f"{name} | {count(G):,} / {count(D):,} | {med:.1f} | {med / ref:.2f}")


if __name__ == "__main__":
    main()
