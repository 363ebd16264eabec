"""log p(x) by quadrature over a 2-D latent (statgan.audit.quadrature), and `statgan audit` on toy
runs (statgan.audit.toy): AIS and BDMC checked against it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.special import logsumexp

from statgan.audit.quadrature import log_marginal_quadrature, quadrature
from statgan.audit.run import audit_run
from statgan.audit.settings import AuditSettings
from statgan.audit.toy import RESOLUTION_NATS, SLACK_NATS, ToyAuditSummary, ToySet, verdict
from statgan.cli import main
from statgan.errors import StatganError

from conftest import toy_overrides


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ==== (a) the quadrature against closed forms ======================================================
W = torch.tensor([[1.5, 0.3], [-0.4, 0.8]], dtype=torch.float64)
B = torch.tensor([0.2, -0.1], dtype=torch.float64)


def linear(weight=W, bias=B) -> torch.nn.Linear:
    """G(z) = W z + b in float64 (float32 weights would put ~1e-5 nats of rounding into log p at sigma 0.05)."""
    G = torch.nn.Linear(2, 2).double()
    with torch.no_grad():
        G.weight.copy_(weight)
        G.bias.copy_(bias)
    return G


def exact_linear(x, sigma, weight=W, bias=B):
    """x ~ N(b, W W^T + sigma^2 I) exactly, for z ~ N(0, I) and x | z ~ N(W z + b, sigma^2 I)."""
    cov = weight @ weight.T + sigma**2 * torch.eye(2, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(bias, cov).log_prob(x)


def _points(sigma, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return z @ W.T + B + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("sigma", [0.5, 0.05])
def test_quadrature_matches_the_linear_gaussian_closed_form(sigma):
    # The posterior of z is Gaussian with smallest std w = sigma / s_max(W) (s_max = 1.6: w = 0.031 at
    # sigma 0.05, the peaked case). For a Gaussian integrand the equal-weight rule's error is
    # ~2 exp(-2 pi^2 w^2 / h^2) (Poisson summation): with h = 12 / 512 = 0.023 that is 4e-16, and
    # truncation to [-6, 6]^2 loses prior mass < 4e-9 -- only for posteriors reaching |z_i| = 6,
    # which these points' (|W^-1 (x - b)| < 4) do not. Hence 1e-9 nats, float64 rounding ~1e-13 included.
    x = _points(sigma)
    q = quadrature(linear(), x, sigma, n_grid=512)
    exact = exact_linear(x, sigma)
    assert q.log_px.dtype == torch.float64 and q.log_px.shape == (40,)
    assert (q.log_px - exact).abs().max() < 1e-9
    # the estimate is conservative: it is about the error of the step-2h sub-grids,
    # 2 exp(-2 pi^2 (w / 2h)^2) = 3e-4 at sigma 0.05, where the step-h rule's own is 1e-15
    assert (q.error < 1e-3).all() and (q.error + 1e-12 >= (q.log_px - exact).abs()).all()  # + float64 rounding
    assert torch.equal(log_marginal_quadrature(linear(), x, sigma, n_grid=512), q.log_px)


@pytest.mark.parametrize("sigma, n_grid", [(0.05, 256), (0.01, 512)])
def test_the_error_estimate_bounds_the_error_of_a_coarse_grid(sigma, n_grid):
    # under-resolved grids (posterior width w = sigma / 1.6 against h = 12 / n: w/h = 0.67 and 0.27):
    # the error is real, and the estimate (the four step-2h sub-grids) is at least as large on every point
    x = _points(sigma)
    q = quadrature(linear(), x, sigma, n_grid=n_grid)
    actual = (q.log_px - exact_linear(x, sigma)).abs()
    assert actual.max() > 1e-5  # the test is not vacuous
    assert (q.error >= actual).all(), (q.error - actual).min()


def test_the_error_estimate_flags_a_grid_far_too_coarse():
    # w/h = 0.13: the grid hardly samples the posterior; the estimate no longer bounds the error on
    # every point, but it flags every point that is off by more than RESOLUTION_NATS as not converged
    x = _points(0.01)
    q = quadrature(linear(), x, 0.01, n_grid=256)
    actual = (q.log_px - exact_linear(x, 0.01)).abs()
    assert (q.error[actual > RESOLUTION_NATS] > RESOLUTION_NATS).all()
    assert (actual > RESOLUTION_NATS).sum() > 30


def test_the_error_estimate_sees_a_posterior_beyond_the_grid():
    # G(z) = 0.1 z: for x = (3, 0) at sigma 0.05 the posterior mean is 24 along z_1, far outside
    # [-6, 6]^2, so the grid misses nearly all of the integral; the coset part alone would not say so
    G = linear(0.1 * torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    x = torch.tensor([[3.0, 0.0], [0.05, -0.02]], dtype=torch.float64)
    q = quadrature(G, x, 0.05, n_grid=256)
    exact = exact_linear(x, 0.05, 0.1 * torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    actual = (q.log_px - exact).abs()
    assert actual[0] > 10 and q.error[0] >= actual[0] and q.truncation[0] > 0.99
    assert actual[1] < 1e-9 and q.error[1] < 1e-5  # a point the generator reaches is fine


class Bent(torch.nn.Module):
    """A smooth nonlinear G: R^2 -> R^2 (float64): (z1 + 0.4 sin(1.5 z2), 0.8 z2 + 0.3 z1^2 - 0.6)."""

    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, z):
        z1, z2 = z[:, 0], z[:, 1]
        return self.scale * torch.stack([z1 + 0.4 * torch.sin(1.5 * z2), 0.8 * z2 + 0.3 * z1**2 - 0.6], 1)


def brute_force(x: np.ndarray, sigma: float, m: int = 2000, r: float = 7.0) -> np.ndarray:
    """The same integral, independently: numpy, another box ([-7, 7]^2) and a finer grid (h = 0.007)."""
    t = -r + (np.arange(m) + 0.5) * (2 * r / m)
    z1, z2 = np.meshgrid(t, t, indexing="ij")
    z1, z2 = z1.ravel(), z2.ravel()
    g1, g2 = z1 + 0.4 * np.sin(1.5 * z2), 0.8 * z2 + 0.3 * z1**2 - 0.6
    log_prior = -0.5 * (z1**2 + z2**2) - np.log(2 * np.pi)
    out = []
    for p in x:
        ll = -((p[0] - g1) ** 2 + (p[1] - g2) ** 2) / (2 * sigma**2) - np.log(2 * np.pi * sigma**2)
        out.append(logsumexp(ll + log_prior) + 2 * np.log(2 * r / m))
    return np.array(out)


@pytest.mark.parametrize("sigma", [0.1, 0.05])
def test_quadrature_matches_a_brute_force_grid_for_a_nonlinear_generator(sigma):
    G = Bent()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        x = G(z) + sigma * torch.randn(8, 2, generator=g, dtype=torch.float64)
    x = torch.cat([x, torch.tensor([[0.5, 0.5], [-2.0, 1.0]], dtype=torch.float64)])  # two points off the curve
    q = quadrature(G, x, sigma, n_grid=512)
    ref = torch.from_numpy(brute_force(x.numpy(), sigma))
    # The reference resolves every posterior here (width >= sigma / ||J|| >= 0.05 / 2.2 = 0.023, three
    # of its steps: error ~exp(-2 pi^2 * 3.3^2) ~ 0). The quadrature's own estimate must cover its error
    # (plus float64 rounding), and with its step h = 0.023 <= the width its error is < 2 exp(-2 pi^2)
    # = 5e-9 (Poisson summation; measured: 5e-14).
    diff = (q.log_px - ref).abs()
    assert (diff <= q.error + 1e-12).all(), (diff, q.error)
    assert diff.max() < 1e-8


def test_quadrature_needs_a_2d_latent_and_an_even_grid():
    class ThreeD(torch.nn.Module):
        latent_dim = 3

        def forward(self, z):
            return z[:, :2]

    x = torch.zeros(4, 2)
    for call in (lambda: quadrature(ThreeD(), x, 0.1), lambda: quadrature(linear(), x, 0.1, latent_dim=3),
                 lambda: log_marginal_quadrature(ThreeD(), x, 0.1)):
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert "latent dimension 2" in msg and "latent_dim=3" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="n_grid must be even"):
        quadrature(linear(), x.double(), 0.1, n_grid=255)
    with pytest.raises(ValueError, match="sigma"):
        quadrature(linear(), x.double(), 0.0)


def test_verdict_names_what_disagrees():
    sim = ToySet(name="simulated", n=20, ais_mean=0.0, ais_median=0.0, n_converged=20, quadrature_mean=0.0,
                 quadrature_median=0.0, quadrature_error_median=1e-4, quadrature_error_max=1e-3, median_abs_diff=0.2,
                 median_shortfall=0.1, bdmc_gap_median=0.3, bdmc_abs_gap_median=0.35, bdmc_gap_max=1.0,
                 inside_fraction=0.8, outside_below=0, outside_above=0, outside_p=1.0)
    assert verdict(sim, None, None)[0] == "agrees"
    bad = ToySet(**{**sim.__dict__, "outside_below": 9, "outside_p": 1e-5})
    v, text = verdict(bad, None, None)
    assert v == "disagrees" and "below BDMC's lower bound" in text
    loose = ToySet(**{**sim.__dict__, "bdmc_gap_median": 5.0})
    assert verdict(loose, None, None)[0] == "unresolved"
    assert verdict(ToySet(name="simulated", n=5, ais_mean=0.0, ais_median=0.0, bdmc_gap_median=2.0), None, None,
                   "latent dimension d = 4 != 2")[0] == "unresolved"
    held = ToySet(**{**sim.__dict__, "name": "held-out", "median_abs_diff": 0.25, "median_shortfall": 0.2,
                     "ais_above": 0, "ais_above_p": 1.0})
    assert verdict(sim, held, 0.5)[0] == "agrees"
    v, text = verdict(sim, ToySet(**{**held.__dict__, "median_shortfall": 4.0}), 1e-6)
    assert v == "disagrees" and "does not carry over" in text
    v, text = verdict(sim, ToySet(**{**held.__dict__, "ais_above": 12, "ais_above_p": 1e-9}), 0.5)
    assert v == "disagrees" and "not a lower bound" in text
    v, text = verdict(sim, ToySet(**{**held.__dict__, "n_converged": 3}), None)
    assert v == "unresolved" and "held-out points not checked" in text


# ==== (c) the toy audit end to end =================================================================
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A tiny MLP GAN on 8gaussians with a 2-D latent (20 steps: a second or two)."""
    root = tmp_path_factory.mktemp("toy-audit")
    n = torch.get_num_threads()
    try:
        assert main(["train", "mnist5k-dcgan", *toy_overrides(root, **{"model.latent_dim": 2})]) == 0
    finally:
        torch.set_num_threads(n)
    return root / "toy"


def test_toy_audit_cli_checks_ais_and_bdmc_against_quadrature(toy_run, capsys):
    assert main(["audit", str(toy_run), "--quick", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    folder = toy_run / "audit"
    assert f"report: {folder / 'report.html'}" in out and f"summary: {folder / 'summary.json'}" in out
    assert "toy audit (sigma 0.05" in out
    s = json.loads((folder / "summary.json").read_text())
    assert s["format"] == "statgan-toy-audit/1" and s["latent_dim"] == 2 and s["quadrature"] is True
    assert s["sigma"] == 0.05 and s["settings"]["bdmc_images"] == 12 and s["verdict"] in ("agrees", "unresolved")
    sim = s["simulated"]
    for key in ("ais_mean", "quadrature_mean", "quadrature_error_median", "median_abs_diff", "bdmc_gap_median",
                "bdmc_abs_gap_median", "inside_fraction", "outside_p"):
        assert isinstance(sim[key], float) and math.isfinite(sim[key]), key
    assert sim["n"] == sim["n_converged"] == 12 and s["heldout"]["n"] == 24
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "median |AIS − quadrature|" in html and s["verdict"] in html

    t = load_file(str(folder / "per_point.safetensors"))
    q, e = t["simulated.quadrature"], t["simulated.quadrature_error"]
    lo, up = t["simulated.lower"], t["simulated.upper"]
    assert (e <= RESOLUTION_NATS).all()  # simulated points lie on the generator's range: the grid converges
    # A correct sampler's stochastic lower bound exceeds log p(x) by more than b nats with probability
    # < e^-b, and its upper bound falls short likewise (Markov); b = log 20. A broken AIS or reverse
    # chain (a wrong constant, a missing weight increment) moves the bounds off quadrature by far more.
    assert (q >= lo - e - SLACK_NATS).all() and (q <= up + e + SLACK_NATS).all(), torch.stack([lo, q, up], 1)
    # and the typical distance of AIS from the truth is within the bounds' typical spread
    assert (lo - q).abs().median() <= (up - lo).abs().median() + e.median(), ((lo - q).abs(), up - lo)
    # held-out points: AIS is a stochastic lower bound there too, wherever the quadrature converged
    ok = t["heldout.quadrature_error"] <= RESOLUTION_NATS
    assert (t["heldout.ais"][ok] <= t["heldout.quadrature"][ok] + SLACK_NATS).all()


def test_toy_audit_without_a_2d_latent_runs_bdmc_and_says_why_no_quadrature(tmp_path, capsys):
    assert main(["train", "mnist5k-dcgan", *toy_overrides(tmp_path)]) == 0  # latent_dim 4
    capsys.readouterr()
    summary = audit_run(tmp_path / "toy", AuditSettings.quick(), log=None, out_dir=tmp_path / "out")
    assert isinstance(summary, ToyAuditSummary) and summary.quadrature is False and summary.verdict == "unresolved"
    assert summary.quadrature_note == "latent dimension d = 4 != 2" and "quadrature not run" in summary.verdict_text
    assert math.isfinite(summary.simulated.bdmc_gap_median) and summary.simulated.median_abs_diff is None
    assert (tmp_path / "out" / "report.html").is_file()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["quadrature_note"] == summary.quadrature_note


def test_images_smaller_than_8x8_still_fail_in_one_line(tmp_path):
    (tmp_path / "small.py").write_text(
        "import torch\n"
        "class Small(torch.nn.Module):\n"
        "    latent_dim = 3\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(3, 16)\n"
        "    def forward(self, z):\n"
        "        return torch.tanh(self.fc(z)).reshape(-1, 1, 4, 4)\n")
    with pytest.raises(StatganError) as info:
        audit_run(f"{tmp_path / 'small.py'}:Small", AuditSettings.quick(), log=None, write=False)
    msg = str(info.value)
    assert "at least 8x8 pixels or 2-D points" in msg and "[1, 4, 4]" in msg and "\n" not in msg
