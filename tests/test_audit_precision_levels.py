"""``statgan audit --precision quick|default|certified``: what each level changes, the expected gap it
prints from the measured curve, and the one-line refusals."""

from __future__ import annotations

import math

import pytest

from statgan.audit_settings import GAP_CURVES, PRECISIONS, AuditSettings, GapCurve, expected_gap_line
from statgan.cli import main
from statgan.errors import ConfigError


def test_levels_change_what_they_say_and_flags_still_win():
    assert PRECISIONS == tuple(AuditSettings.LEVELS)
    assert AuditSettings.at_precision("default") == AuditSettings()
    assert AuditSettings.at_precision("quick") == AuditSettings.quick()
    cert = AuditSettings.at_precision("certified", chains=2)
    assert cert.ais_steps == AuditSettings.CERTIFIED["ais_steps"] and cert.chains == 2
    assert cert.validate() is cert
    with pytest.raises(ConfigError, match="unknown precision 'exact'; expected one of: quick, default, certified"):
        AuditSettings.at_precision("exact")


def test_gap_curve_is_a_power_law_that_inverts():
    c = GapCurve(proposal="prior", sigma=0.3, scale=1000.0, slope=-0.5, fit_from=100, measured_to=1000, seconds_per_step=0.01)
    assert math.isclose(c.gap(400), 50.0) and math.isclose(c.steps_for(50.0), 400.0)
    assert all(k.slope < 0 for k in GAP_CURVES)  # more steps, a smaller gap


def test_expected_gap_line_names_sigma_steps_and_extrapolation():
    c = GAP_CURVES[0]
    line = expected_gap_line(c.measured_to * 10, c.sigma, c.proposal)
    assert f"sigma {c.sigma:g}" in line and "(extrapolated)" in line and "10 nats would take" in line
    assert f"from the {c.proposal} proposal" in line
    assert "no measured curve for sigma 0.037, proposal laplace" in expected_gap_line(100, 0.037)
    assert "no measured curve for proposal isotropic" in expected_gap_line(100, None, "isotropic")
    both = expected_gap_line(100, None, "laplace")
    assert all(f"sigma {k.sigma:g}" in both for k in GAP_CURVES if k.proposal == "laplace")


def test_cli_refuses_quick_beside_another_precision(capsys):
    assert main(["audit", "nowhere", "--quick", "--precision", "certified"]) == 2
    err = capsys.readouterr().err
    assert "--quick is --precision quick; it contradicts --precision certified" in err and "Traceback" not in err


def test_the_prior_path_runs_through_the_whole_audit(tmp_path):
    """``proposal="prior"`` (what certified uses): no proposal is built, HMC runs with unit mass, and
    BDMC brackets with chains that start from the prior; the summary says which path ran."""
    from statgan.audit.run import audit_run
    from statgan.generator_source import load_generator_source
    from test_audit_missing_sets import OPTIONS, _npz, _spec

    s = AuditSettings.quick(n=8, n_valid=4, n_ood=4, ood=("glyphs",), proposal="prior", step_size=0.03)
    cert = AuditSettings.at_precision("certified")
    assert cert.proposal == "prior" and cert.ais_steps > AuditSettings().ais_steps
    summary = audit_run(load_generator_source(_spec(), OPTIONS), s, out_dir=tmp_path, log=None,
                        test=_npz(tmp_path / "test.npz", seed=1))
    assert summary.settings.proposal == "prior"
    # sigma: every candidate from one run along the noise level, the same candidates and margins as ever
    assert "one run along the noise level" in summary.sigma.method
    assert summary.sigma.candidates == s.sigma_candidates and len(summary.sigma.margins) == len(s.sigma_candidates) - 1
    assert all(math.isfinite(v) for v in summary.sigma.mean_log_likelihood)
    b = summary.bdmc
    assert math.isfinite(b.lower.median) and math.isfinite(b.upper.median) and len(b.gaps) == s.bdmc_images
    assert b.proposal_modes.median == 1  # no mixture: one "mode", the prior
    assert (tmp_path / "summary.json").exists()
