"""What R1/R2 cost per training step, and how much lazy regularisation (``every: 16``) saves.

DCGAN (width 32, 28×28 mnist5k, batch 64, latent 100) trained with ``rpgan``, three arms timed in
one process and interleaved over ``--repeats`` rounds so that machine drift hits all alike:

* ``none``   — no penalty;
* ``r1r2``   — R1 + R2 on every discriminator step (R3GAN's recipe: γ/2·(R1 + R2));
* ``lazy16`` — R1 + R2 every 16th discriminator step with weight 16·γ (StyleGAN2's lazy
               regularisation, ``regularizers.r1: {every: 16}``).

One step is what the trainer does with n_critic = 1: ``begin_batch``, the objective's discriminator
loss + the penalties (through :class:`statgan.regularizers.RegularizerSet`), an Adam step on D,
then the generator loss and an Adam step on G. Prints the median seconds per step of each arm and
the ratios to ``none``.

    python benchmarks/r1_cost.py                         # 48 steps x 5 rounds per arm (~3 min on 2 cores)
    python benchmarks/r1_cost.py --steps 16 --repeats 3  # quick look
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List, Optional

import torch

from statgan import data, nets, objectives, regularizers
from statgan.regularizers import LossContext

ARMS: Dict[str, Optional[dict]] = {
    "none": None,
    "r1r2": {"r1": {"weight": 0.05}, "r2": {"weight": 0.05}},
    "lazy16": {"r1": {"weight": 0.05, "every": 16}, "r2": {"weight": 0.05, "every": 16}},
}


class Arm:
    """One model + optimizers + regularisers, advanced step by step."""

    def __init__(self, section: Optional[dict], train: torch.Tensor, batch: int, width: int, seed: int) -> None:
        torch.manual_seed(seed)
        shape = tuple(train.shape[1:])
        self.G = nets.build_generator("dcgan", shape, 100, width=width)
        self.D = nets.build_discriminator("dcgan", shape, width=width)
        self.opt_g = torch.optim.Adam(self.G.parameters(), 2e-4, betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), 2e-4, betas=(0.0, 0.99))
        self.obj = objectives.get("rpgan")
        self.regs = regularizers.build(section, self.obj)
        self.train, self.batch, self.step_no = train, batch, 0
        self.gen = torch.Generator().manual_seed(seed)

    def step(self) -> None:
        idx = torch.randint(0, self.train.shape[0], (self.batch,), generator=self.gen)
        real = self.train[idx]
        z = torch.randn(self.batch, 100, generator=self.gen)
        fake = self.G(z)
        self.regs.begin_batch(real, fake, self.step_no)
        real_in, fake_in = self.regs.transform_real(real), self.regs.transform_fake(fake.detach())
        self.opt_d.zero_grad(set_to_none=True)
        loss = self.obj.discriminator_loss(self.D, real_in, fake_in)
        loss = self.regs.add_penalties(LossContext("discriminator", loss, real_in, fake_in, self.G, self.D, self.step_no))
        loss.backward()
        self.opt_d.step()
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        self.obj.generator_loss(self.D, real_in, self.regs.transform_fake(fake)).backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.step_no += 1


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=48, help="timed steps per arm and round (default 48, a multiple of 16)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train = data.load("mnist5k")
    arms = {name: Arm(section, train, args.batch, args.width, seed=0) for name, section in ARMS.items()}
    for arm in arms.values():  # warm-up: allocator, oneDNN kernels, the first lazy penalty
        for _ in range(2):
            arm.step()
    per_step: Dict[str, List[float]] = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, arm in arms.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                arm.step()
            per_step[name].append((time.perf_counter() - t0) / args.steps)
    base = statistics.median(per_step["none"])
    print(f"DCGAN width {args.width}, 28x28 mnist5k, batch {args.batch}, rpgan, {torch.get_num_threads()} threads, "
          f"{args.steps} steps x {args.repeats} rounds")
    for name, times in per_step.items():
        med = statistics.median(times)
        print(f"{name:>7}: {med * 1000:8.1f} ms/step   x{med / base:.2f} of none")
    lazy, full = statistics.median(per_step["lazy16"]), statistics.median(per_step["r1r2"])
    print(f"penalty overhead: every step +{(full / base - 1) * 100:.0f} %, lazy every 16 +{(lazy / base - 1) * 100:.0f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
