"""statgan.audit.budget: the projected cost of an audit counts the generator passes its stages
really make. Checked by counting the latents that go through a generator's forward during the
stages' own functions (inversion, AIS, the Laplace proposal) -- not from the formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from statgan.audit.ais import ais
from statgan.audit.budget import UnitCosts, measure_units, plan, projection_lines
from statgan.audit.inversion import invert
from statgan.audit.posterior import LaplaceOptions, laplace_proposal
from statgan.audit_settings import AuditSettings


class Counting(nn.Module):
    """A small image generator that counts the latents it is run on (outside forward-mode Jacobians,
    which run under vmap with a batch of one and are counted apart by the budget)."""

    def __init__(self, d: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 36), nn.Tanh(), nn.Unflatten(1, (1, 6, 6)))
        self.latents = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.latents += z.shape[0]
        return self.net(z)


def _images(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _units() -> UnitCosts:
    return UnitCosts(pass_seconds=1.0, jacobian_seconds=0.0)  # seconds = passes: the plan reads as counts


def test_inversion_passes_match_what_invert_runs():
    s = AuditSettings(restarts=3, steps=20)
    g, x = Counting(), _images(5)
    invert(g, x, 4, restarts=s.restarts, steps=s.steps, seed=0)
    counted = g.latents
    planned = next(c for c in plan(s, {"test": 5}, _units(), sigma_given=True) if c.stage == "inversion").passes
    # invert also recomputes each image's best restart once: 5 of 305 latents
    assert planned <= counted <= planned * 1.05


def test_annealing_passes_match_what_ais_runs():
    s = AuditSettings(ais_steps=30, chains=2, leapfrog=4, is_samples=0, proposal="isotropic")
    g, x = Counting(), _images(3)
    ais(g, x, 4, 0.3, n_steps=s.ais_steps, n_chains=s.chains, leapfrog=s.leapfrog, seed=0)
    counted = g.latents
    planned = next(c for c in plan(s, {"test": 3}, _units(), sigma_given=True) if c.stage == "ais").passes
    # AIS evaluates each chain once more at the start (3 x 2 of ~700 latents)
    assert planned <= counted <= planned * 1.05


def test_proposal_passes_match_what_the_laplace_proposal_runs():
    s = AuditSettings(restarts=2, posterior_adam_steps=15, posterior_jacobians=1, posterior_steps=4,
                      ais_steps=2, chains=1, leapfrog=1, is_samples=0)
    g, x = Counting(), _images(3)
    z0 = torch.randn(3, s.restarts, 4, generator=torch.Generator().manual_seed(1))
    laplace_proposal(g, x, z0, 0.3, LaplaceOptions(jacobians=s.posterior_jacobians, newton_steps=s.posterior_steps,
                                                    adam_steps=s.posterior_adam_steps), seed=0)
    counted = g.latents
    ais_stage = next(c for c in plan(s, {"test": 3}, _units(), sigma_given=True) if c.stage == "ais")
    proposal_passes = ais_stage.passes - 3 * (s.ais_steps - 1) * s.chains * s.leapfrog
    assert ais_stage.jacobians == 3 * s.restarts * s.posterior_jacobians
    # the Jacobians' own vmapped forward passes see a batch of one per call: a few latents more
    assert proposal_passes <= counted <= proposal_passes * 1.1 + 10


def test_measured_units_are_positive_and_the_lines_say_what_to_cut():
    g = Counting(8)
    units = measure_units(g, 8, torch.device("cpu"))
    assert units.pass_seconds > 0 and units.jacobian_seconds > 0
    s = AuditSettings()
    costs = plan(s, {"train": 100, "test": 100, "valid": 50, "generated": 100, "glyphs": 50}, UnitCosts(1e-2, 1e-1))
    assert [c.stage for c in costs] == ["inversion", "sigma", "ais", "bdmc"]
    lines = projection_lines(costs, UnitCosts(1e-2, 1e-1), s, torch.device("cpu"))
    assert "projected: inversion" in lines[0] and "total ~" in lines[0]
    assert len(lines) == 2 and "--quick" in lines[1] and "--n 25" in lines[1]
    assert len(projection_lines(plan(AuditSettings.quick(), {"test": 4}, UnitCosts(1e-6, 1e-6)), UnitCosts(1e-6, 1e-6),
                                AuditSettings.quick(), torch.device("cpu"))) == 1  # cheap: no advice
