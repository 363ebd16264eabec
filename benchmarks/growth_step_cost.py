"""What a training step's network passes cost at each growth of progressive growing, against the plain
networks in the same run.

For the default DCGAN networks (mnist5k, width 32, D without BatchNorm, batch 64) built with and
without ``progressive``, times one generator pass + backward and one discriminator pass on a
generated and a real batch + backward (the networks' share of a step: no optimiser, data or
regulariser) at growth 0 (7×7), 0.5 (fading into 14×14), 1 (14×14), 1.5 (fading into 28×28) and 2
(full size), in interleaved rounds; prints the median milliseconds and the ratio to the plain
networks. One torch thread.

    python benchmarks/growth_step_cost.py --repeats 5 --reps 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Dict, List

import torch

from statgan.nets import build_discriminator, build_generator

SHAPE = (1, 28, 28)
GROWTHS = (0.0, 0.5, 1.0, 1.5, 2.0)


def pass_ms(G: torch.nn.Module, D: torch.nn.Module, z: torch.Tensor, real: torch.Tensor, reps: int) -> float:
    """Median milliseconds of G forward/backward plus D forward/backward on a fake and a real batch."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fake = G(z)
        (D(fake).mean() + D(real).mean()).backward()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds over the arms")
    ap.add_argument("--reps", type=int, default=20, help="timed passes per arm and round")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    plain = (build_generator("dcgan", SHAPE, 100, width=32), build_discriminator("dcgan", SHAPE, width=32, norm="none"))
    grown = (build_generator("dcgan", SHAPE, 100, width=32, progressive=True),
             build_discriminator("dcgan", SHAPE, width=32, norm="none", progressive=True))
    z, real = torch.randn(a.batch, 100), torch.rand(a.batch, *SHAPE) * 2 - 1
    print(f"load average at start: {os.getloadavg()}", flush=True)
    results: Dict[str, List[float]] = {}
    for _ in range(a.repeats):
        results.setdefault("plain", []).append(pass_ms(*plain, z, real, a.reps))
        for g in GROWTHS:
            for net in grown:
                net.set_growth(g)
            results.setdefault(f"growth {g:g}", []).append(pass_ms(*grown, z, real, a.reps))
    print(f"load average at end: {os.getloadavg()}")
    ref = statistics.median(results["plain"])
    print("arm | resolution | median ms (G + D passes) | ratio to plain")
    sides = {0.0: "7x7", 0.5: "7x7 -> 14x14", 1.0: "14x14", 1.5: "14x14 -> 28x28", 2.0: "28x28"}
    for name, values in results.items():
        med = statistics.median(values)
        side = "28x28" if name == "plain" else sides[float(name.split()[1])]
        print(f"{name} | {side} | {med:.1f} | {med / ref:.2f}")


if __name__ == "__main__":
    main()
