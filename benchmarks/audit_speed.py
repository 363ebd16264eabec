"""Audit speed: one AIS/HMC transition against plain generator forward+backward passes.

An HMC transition with L leapfrog steps needs L gradient evaluations of log p(x|z) (the gradient
at the start is carried over from the previous transition), each one generator forward+backward
on the batch of images x chains. The reference arm is what that costs at minimum: L + 1 plain
passes ``g = autograd.grad(((G(z) - x)**2).sum() / (2 sigma^2), z)`` of the same generator (eval
mode, frozen weights, x repeated per chain) on the same batch. The ratio

    time(one AIS transition) / time(L + 1 plain passes)         target <= 1.3

therefore measures everything the sampler adds on top of the unavoidable network work (energy
bookkeeping, momentum updates, Metropolis test, step-size adaptation). L/(L+1) ~ 0.91 is the
ideal. Also timed: a full ``ais()`` run per transition (includes its setup and weight updates)
and inversion throughput (images/s of ``invert``) against a plain Adam loop on the same latents,
and the Laplace proposal's Jacobian (``statgan.audit.posterior.jacobian``: ``vmap(jacfwd)``) against
the plain forward-mode reference (``torch.func.jvp`` on each latent repeated d times with the unit
tangents, what the audit used before), on ``--jac-latents`` latents: ratio < 1 is faster.

Model: the DCGAN 28-px generator of the default run (latent 100, width 32), randomly initialised
(speed does not depend on training). Arms are interleaved over ``--repeats`` rounds after a
warm-up; medians are reported.

    python benchmarks/audit_speed.py                       # 64 images x 4 chains, L = 10
    python benchmarks/audit_speed.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from statgan import nets
from statgan.audit import ais, invert
from statgan.audit._common import StandardNormal, frozen
from statgan.runtime.seeding import make_rng
from statgan.audit.annealing import hmc_kernel, make_evaluator
from statgan.audit.posterior import jacobian


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, n: int = 1) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64, help="images B (default 64)")
    ap.add_argument("--chains", type=int, default=4, help="AIS chains per image K (default 4)")
    ap.add_argument("--leapfrog", type=int, default=10, help="leapfrog steps L (default 10)")
    ap.add_argument("--width", type=int, default=32, help="DCGAN width (default 32, the default run's)")
    ap.add_argument("--latent", type=int, default=100, help="latent dimension (default 100)")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    ap.add_argument("--ais-steps", type=int, default=6, help="annealing steps of the full ais() arm (default 6)")
    ap.add_argument("--restarts", type=int, default=4, help="inversion restarts (default 4)")
    ap.add_argument("--inv-steps", type=int, default=50, help="inversion Adam steps (default 50)")
    ap.add_argument("--jac-latents", type=int, default=8, help="latents of the Jacobian comparison (default 8)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, K, L, d = args.images, args.chains, args.leapfrog, args.latent
    sigma = 0.1
    G = nets.build_generator("dcgan", (1, 28, 28), d, width=args.width, norm="batch").to(dev)
    gpu = f", {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()} "
          f"{platform.processor() or ''} ({os.cpu_count()} CPUs){gpu}, python {platform.python_version()}")
    print(f"dcgan 28 px, width {args.width}, latent {d}; {B} images x {K} chains = batch {B * K}; "
          f"L = {L} leapfrog steps; {args.repeats} rounds (median)", flush=True)

    with frozen(G), torch.no_grad():
        x = G(torch.randn(B, d, device=dev)) + sigma * torch.randn(B, 1, 28, 28, device=dev)
        x_rep = x.repeat_interleave(K, 0)
        evaluate = make_evaluator(G, x, sigma, StandardNormal(d), None)
        kernel = hmc_kernel(evaluate, L)
        half = torch.full((B,), 0.5, dtype=torch.float64, device=dev)
        rng = make_rng(0, dev)
        state = evaluate(torch.randn(B, K, d, generator=rng, device=dev))
        eps = torch.full((B, 1, 1), 0.05, device=dev)

        def transition():
            nonlocal state
            state, _ = kernel(state, half, eps, rng)

        z_ref = torch.randn(B * K, d, device=dev)

        def plain():
            for _ in range(L + 1):
                with torch.enable_grad():
                    z = z_ref.detach().requires_grad_(True)
                    loss = ((G(z) - x_rep) ** 2).sum() / (2 * sigma**2)
                    (g,) = torch.autograd.grad(loss, z)

        n_ais = args.ais_steps

        def full_ais():
            ais(G, x, d, sigma, n_steps=n_ais, n_chains=K, leapfrog=L, seed=0)

        # warm-up: allocator, oneDNN primitive caches
        for fn in (transition, plain, full_ais):
            fn()
        if dev.type == "cuda":  # the sampler must not wait on the GPU inside a transition
            torch.cuda.synchronize(dev)
            torch.cuda.set_sync_debug_mode("error")
            try:
                transition()
            finally:
                torch.cuda.set_sync_debug_mode(0)
            print("no host-device syncs inside an AIS transition: checked (sync debug mode 'error')")
        t_tr, t_ref, t_ais = [], [], []
        for _ in range(args.repeats):
            t_tr.append(_time(transition, dev))
            t_ref.append(_time(plain, dev))
            t_ais.append(_time(full_ais, dev))
    tr, ref = statistics.median(t_tr), statistics.median(t_ref)
    # ais() with T steps does T-1 transitions plus one initial evaluation (1/(L+1) of a reference)
    per_tr_ais = (statistics.median(t_ais) - ref / (L + 1)) / (n_ais - 1)
    print()
    print(f"one AIS transition (L={L})          {tr * 1e3:8.1f} ms")
    print(f"{L + 1} plain forward+backward passes    {ref * 1e3:8.1f} ms   ({ref / (L + 1) * 1e3:.1f} ms each)")
    print(f"full ais(), per transition          {per_tr_ais * 1e3:8.1f} ms   (T = {n_ais})")
    ratio = tr / ref
    print(f"\nratio transition / (L+1 passes) = {ratio:.3f}   (target <= 1.3; ideal L/(L+1) = {L / (L + 1):.3f})")
    print(f"ratio full-ais transition / (L+1 passes) = {per_tr_ais / ref:.3f}")

    # ---- inversion throughput -----------------------------------------------------------------
    R, S = args.restarts, args.inv_steps
    xs = x.detach()

    def run_invert():
        invert(G, xs, d, restarts=R, steps=S, seed=0)

    def plain_invert():
        with frozen(G):
            z = torch.randn(B * R, d, device=dev).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=0.05)
            xr = xs.repeat_interleave(R, 0)
            for _ in range(S):
                loss = ((G(z) - xr) ** 2).flatten(1).mean(1).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()

    run_invert()
    plain_invert()
    t_inv, t_pinv = [], []
    for _ in range(max(3, args.repeats // 2)):
        t_inv.append(_time(run_invert, dev))
        t_pinv.append(_time(plain_invert, dev))
    ti, tp = statistics.median(t_inv), statistics.median(t_pinv)
    print(f"\ninvert: {B} images x {R} restarts x {S} steps: {ti:.2f} s = {B / ti:.1f} images/s "
          f"({B * R * S / ti:.0f} latent-steps/s); plain Adam loop {tp:.2f} s; ratio {ti / tp:.3f}")

    # ---- the Laplace proposal's Jacobian ------------------------------------------------------
    zj = torch.randn(args.jac_latents, d, device=dev)
    eye = torch.eye(d, device=dev)

    def plain_jacobian():
        _, t = torch.func.jvp(G, (zj.repeat_interleave(d, 0),), (eye.repeat(len(zj), 1),))
        return t.reshape(len(zj), d, -1).transpose(1, 2)

    with frozen(G):
        diff = (jacobian(G, zj) - plain_jacobian()).abs().max().item()
        t_jac, t_pjac = [], []
        for _ in range(args.repeats):
            t_jac.append(_time(lambda: jacobian(G, zj), dev))
            t_pjac.append(_time(plain_jacobian, dev))
    tj, tpj = statistics.median(t_jac), statistics.median(t_pjac)
    print(f"\njacobian: {len(zj)} latents x {d} tangents: vmap(jacfwd) {tj * 1e3:.1f} ms, repeated jvp {tpj * 1e3:.1f} ms; "
          f"ratio {tj / tpj:.3f} (max |difference| {diff:.1e})")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
