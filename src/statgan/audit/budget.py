"""What an audit will cost on this device, said before the long stages start.

A 64x64 RGB DCGAN costs 20-50x the default MNIST generator per pass; a user should learn that the
default audit takes hours on their laptop before it has taken them, and what to cut. The audit's
stages are counted in two units, each timed on the generator itself just before they run:

* a **pass**: forward and backward through G for one latent (the unit of inversion steps, HMC
  leapfrog steps and Gauss-Newton steps), timed on a batch of :data:`PROBE_BATCH` latents;
* a **Jacobian**: the (D, d) Jacobian of G at one latent (``torch.func.vmap(jacfwd)``, the
  Laplace proposal's dominant cost), timed on :data:`JACOBIAN_PROBE` latents.

Counts per stage (n_s images in set s, R restarts, S inversion steps, T AIS steps, K chains,
L leapfrog steps; the Laplace proposal's A Adam steps, J Jacobian rounds and N Gauss-Newton steps):

    inversion   sum_s n_s * R * (S + 1)                                passes
    proposal    n * R * (A + 1 + J * N) passes + n * R * J Jacobians   per set it is built for
    sigma       m * (proposal + c * (T_sigma - 1) * K * L)             m = sigma_images, c candidates
    ais         sum_s [proposal + n_s * (T - 1) * K * L] + IS draws    IS: one forward (1/3 pass) each
    bdmc        B * (R * (S + 1) + proposal + 2 * (T - 1) * K * L)     B model samples, both directions

These are what the code runs (:mod:`statgan.audit.stages`); the projection multiplies them by the
measured unit times, so it misses only what is not a pass (data loading, typicality tests: seconds).
Checked against measured stage times in ``tests/test_audit_budget.py`` and docs/audit.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence

import torch
from torch import nn

from ..runtime.durations import human_duration
from ..runtime.seeding import seeded_generator
from .posterior import jacobian
from .settings import AuditSettings

__all__ = ["JACOBIAN_PROBE", "PROBE_BATCH", "StageCost", "UnitCosts", "cut_hints", "measure_units", "plan"]

#: latents per timed forward+backward pass: the size of the stages' own batches (128 images x 2
#: restarts), since the time per latent falls with the batch (at 64 latents the default audit's
#: stages were projected 1.4x too slow, measured on the default DCGAN, 2026-12-07)
PROBE_BATCH = 256
#: latents whose Jacobians are timed
JACOBIAN_PROBE = 2
#: one forward pass as a share of a forward+backward pass (importance-sampling draws)
FORWARD_SHARE = 1.0 / 3.0


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per latent of one forward+backward pass, and of one Jacobian, on this device now."""

    pass_seconds: float
    jacobian_seconds: float


@dataclass(frozen=True)
class StageCost:
    """One stage's counted work and its projected seconds."""

    stage: str
    passes: float
    jacobians: float
    seconds: float


def _timed(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` calls (after one warm-up call): the cost without a neighbour's noise."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_units(generator: nn.Module, latent_dim: int, device: torch.device, jacobians: bool = True) -> UnitCosts:
    """Time a forward+backward pass and (with ``jacobians``) a Jacobian of ``generator``, per latent."""
    gen = seeded_generator(0, "audit:budget")
    z = torch.randn(PROBE_BATCH, latent_dim, generator=gen).to(device)

    def fb() -> None:
        zz = z.detach().requires_grad_(True)
        out = generator(zz)
        (g,) = torch.autograd.grad(out.square().sum(), zz)
        if g.device.type == "cuda":
            torch.cuda.synchronize()

    was = generator.training
    generator.eval()
    try:
        with torch.inference_mode(False):
            per_pass = _timed(fb) / PROBE_BATCH
            per_jac = 0.0
            if jacobians:
                zj = z[:JACOBIAN_PROBE].detach()
                per_jac = _timed(lambda: jacobian(generator, zj), repeats=1) / JACOBIAN_PROBE
    finally:
        generator.train(was)
    return UnitCosts(pass_seconds=per_pass, jacobian_seconds=per_jac)


def _proposal(s: AuditSettings, n: float) -> Dict[str, float]:
    """Passes and Jacobians of building the settings' proposal for ``n`` images (none: isotropic)."""
    if s.proposal != "laplace":
        return {"passes": 0.0, "jacobians": 0.0}
    per_restart = s.posterior_adam_steps + 1 + s.posterior_jacobians * s.posterior_steps
    return {"passes": n * s.restarts * per_restart, "jacobians": n * s.restarts * s.posterior_jacobians}


def _inversion(s: AuditSettings, n: float) -> Dict[str, float]:
    """Passes and Jacobians of inverting ``n`` images: the restarts' Adam steps, the screened prior draws
    (forward only) and, at most, one Jacobian per refinement step (one is recomputed after each kept
    step) plus the first."""
    return {"passes": n * (s.restarts * (s.steps + 1) + s.screen * FORWARD_SHARE + s.refine),
            "jacobians": n * (s.refine + 1) if s.refine else 0.0}


def plan(s: AuditSettings, sizes: Mapping[str, int], units: UnitCosts, sigma_given: bool = False) -> List[StageCost]:
    """Projected cost of each long stage, for image sets of ``sizes`` (every inverted set, ``valid``
    included), in the order the audit runs them."""
    inverted = float(sum(sizes.values()))
    hmc = lambda steps: max(steps - 1, 0) * s.chains * s.leapfrog  # noqa: E731  (passes of one annealing path)
    counts: Dict[str, Dict[str, float]] = {"inversion": _inversion(s, inverted)}
    if not sigma_given:
        m, c = float(min(s.sigma_images, sizes.get("valid", 0))), len(s.sigma_candidates)
        p = _proposal(s, m * c)
        # the prior path reads every candidate off one run (its schedule holds their betas too)
        annealing = m * hmc(s.sigma_steps + c) if s.proposal == "prior" else m * c * hmc(s.sigma_steps)
        counts["sigma"] = {"passes": p["passes"] + annealing, "jacobians": p["jacobians"]}
    p = _proposal(s, inverted)
    counts["ais"] = {"passes": p["passes"] + inverted * (hmc(s.ais_steps) + s.is_samples * FORWARD_SHARE),
                     "jacobians": p["jacobians"]}
    b = float(s.bdmc_images)
    p = _proposal(s, b)
    inv = _inversion(s, b)
    counts["bdmc"] = {"passes": inv["passes"] + p["passes"] + 2 * b * hmc(s.ais_steps),
                      "jacobians": inv["jacobians"] + p["jacobians"]}
    return [StageCost(stage=k, passes=v["passes"], jacobians=v["jacobians"],
                      seconds=v["passes"] * units.pass_seconds + v["jacobians"] * units.jacobian_seconds)
            for k, v in counts.items()]


def cut_hints(costs: Sequence[StageCost], s: AuditSettings, device: torch.device) -> str:
    """How to make the audit cheaper, aimed at its most expensive stage."""
    worst = max(costs, key=lambda c: c.seconds)
    hints = {"inversion": f"--steps {max(s.steps // 3, 1)} or --restarts 1",
             "sigma": "--sigma 0.1 (skips the choice)",
             "ais": f"--ais-steps {max(s.ais_steps // 2, 2)}",
             "bdmc": f"--bdmc-images {max(s.bdmc_images // 2, 2)}"}
    parts = [f"--quick (a smoke test)", f"--n {max(s.n // 4, 1)}", hints[worst.stage]]
    if device.type == "cpu" and torch.cuda.is_available():
        parts.append("--device cuda")
    elif device.type == "cpu":
        parts.append("a GPU (--device cuda)")
    return f"to cut it: {', '.join(parts)}"


def projection_lines(costs: Sequence[StageCost], units: UnitCosts, s: AuditSettings, device: torch.device) -> List[str]:
    """The lines the audit prints before its long stages: unit costs, each stage, the total, the cuts."""
    total = sum(c.seconds for c in costs)
    jac = f", a Jacobian {units.jacobian_seconds * 1e3:.3g} ms" if units.jacobian_seconds else ""
    lines = [f"audit: a generator pass (forward+backward, one latent) takes {units.pass_seconds * 1e3:.3g} ms{jac} "
             f"on {device} with {torch.get_num_threads()} thread(s); projected: "
             + ", ".join(f"{c.stage} {human_duration(c.seconds)}" for c in costs) + f"; total ~{human_duration(total)}"]
    if total > 600:
        lines.append(f"audit: {cut_hints(costs, s, device)}")
    return lines
