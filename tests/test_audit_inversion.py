"""GAN inversion: exact recovery on a linear generator, restart selection, feature losses, modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from statgan import audit, nets
from statgan.audit.inversion import InversionResult

# one torch thread: small models run fastest so, and timings stay steady on a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")


def linear_generator(d: int = 5, D: int = 40, seed: int = 0) -> nn.Linear:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, D)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(D, d, generator=g) / d**0.5)
        lin.bias.copy_(0.1 * torch.randn(D, generator=g))
    return lin


def test_linear_generator_is_inverted_exactly():
    lin = linear_generator()
    z_true = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    x = lin(z_true).detach()
    res = audit.invert(lin, x, 5, restarts=2, steps=300, lr=0.1, seed=0)
    z, errors = res  # unpacks as a pair
    assert isinstance(res, InversionResult)
    assert z.shape == (6, 5) and errors.shape == (6,) and res.restart_objectives.shape == (6, 2)
    assert torch.allclose(z, z_true, atol=1e-2)
    assert errors.max() < 1e-5
    assert torch.allclose(res.reconstructions, lin(z).detach(), atol=1e-6)
    assert torch.allclose(res.mse, errors)  # "l2" is the per-pixel MSE


def test_best_restart_is_kept_and_seed_reproduces():
    torch.manual_seed(0)
    G = nets.build_generator("mlp", (12,), 3, hidden=16, depth=2)
    x = G(torch.randn(4, 3)).detach() + 0.05 * torch.randn(4, 12)
    a = audit.invert(G, x, 3, restarts=5, steps=60, seed=3)
    b = audit.invert(G, x, 3, restarts=5, steps=60, seed=3)
    assert torch.equal(a.z, b.z) and torch.equal(a.errors, b.errors)
    assert torch.allclose(a.objective, a.restart_objectives.min(1).values, rtol=1e-5, atol=1e-7)
    # chunking over images gives the same answers up to float reduction order
    c = audit.invert(G, x, 3, restarts=5, steps=60, seed=3, batch_size=4)
    assert torch.allclose(a.errors, c.errors)


def test_more_steps_never_hurt_because_the_best_iterate_is_kept():
    lin = linear_generator(seed=2)
    x = torch.randn(3, 40)
    few = audit.invert(lin, x, 5, restarts=1, steps=0, seed=0)  # steps=0: the initial z
    many = audit.invert(lin, x, 5, restarts=1, steps=100, seed=0)
    assert (many.objective <= few.objective).all()


def test_prior_penalty_shrinks_latents():
    lin = linear_generator(seed=3)
    x = torch.randn(4, 40) * 3
    free = audit.invert(lin, x, 5, restarts=1, steps=200, lr=0.1, seed=0)
    pen = audit.invert(lin, x, 5, restarts=1, steps=200, lr=0.1, seed=0, prior_weight=5.0)
    assert (pen.z.norm(dim=1) < free.z.norm(dim=1)).all()
    assert torch.allclose(pen.objective, pen.errors + 5.0 * pen.z.square().sum(1) / 5, atol=1e-6)


def test_feature_loss_with_any_callable():
    lin = linear_generator(seed=4)
    proj = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    calls = []

    def feats(imgs):
        calls.append(imgs.shape[0])
        return imgs @ proj

    z_true = torch.randn(3, 5, generator=torch.Generator().manual_seed(5))
    x = lin(z_true).detach()
    res = audit.invert(lin, x, 5, restarts=2, steps=200, lr=0.1, loss="feature", feature_fn=feats, seed=0)
    assert res.errors.max() < 1e-3 and calls[0] == 3 and calls[1] == 6  # targets once, then B * R
    both = audit.invert(lin, x, 5, restarts=2, steps=50, loss="l2+feature", feature_fn=feats, feature_weight=0.5, seed=0)
    feat_err = ((both.reconstructions @ proj) - (x @ proj)).square().mean(1)
    assert torch.allclose(both.errors, both.mse + 0.5 * feat_err, rtol=1e-4, atol=1e-6)


def test_generated_images_invert_better_than_noise_and_modes_are_restored():
    """Friedman & Weiss's baseline: on-manifold images have (much) lower inversion error."""
    torch.manual_seed(0)
    G = nets.build_generator("dcgan", (1, 28, 28), 8, width=4, norm="batch", dropout=0.1)
    G.train()
    before = [(n, m.training) for n, m in G.named_modules()]
    with torch.no_grad():
        on = G.eval()(torch.randn(3, 8))
    G.train()
    noise = torch.rand(3, 1, 28, 28) * 2 - 1
    r_on = audit.invert(G, on, 8, restarts=2, steps=100, seed=0)
    r_off = audit.invert(G, noise, 8, restarts=2, steps=100, seed=0)
    assert r_on.errors.max() * 10 < r_off.errors.min()
    assert [(n, m.training) for n, m in G.named_modules()] == before
    assert all(p.requires_grad and p.grad is None for p in G.parameters())


def test_lenet_feature_fn_is_differentiable():
    try:
        fn = audit.lenet_feature_fn()
    except Exception as exc:  # the shipped weights belong to statgan.metrics; skip if unavailable
        pytest.skip(f"lenet weights unavailable: {exc}")
    x = (torch.rand(2, 1, 32, 32) * 2 - 1).requires_grad_(True)
    f = fn(x)
    assert f.shape == (2, 128)
    (g,) = torch.autograd.grad(f.sum(), x)
    assert g.abs().sum() > 0
    assert fn.id.startswith("lenet-")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"restarts": 0}, r"restarts must be an integer >= 1, got 0"),
        ({"steps": -1}, r"steps must be an integer >= 0, got -1"),
        ({"lr": -0.1}, r"lr must be a finite positive number, got -0.1"),
        ({"loss": "l1"}, r"loss must be one of 'l2', 'feature', 'l2\+feature', got 'l1'"),
        ({"loss": "feature"}, r"loss='feature' needs feature_fn"),
    ],
)
def test_argument_errors(kwargs, message):
    lin = linear_generator()
    with pytest.raises(ValueError, match=message):
        audit.invert(lin, torch.zeros(2, 40), 5, **kwargs)


def test_feature_fn_shape_error():
    lin = linear_generator()
    with pytest.raises(ValueError, match=r"feature_fn must map N images to an \(N, F\) tensor, got \(2,\) for N = 2"):
        audit.invert(lin, torch.zeros(2, 40), 5, loss="feature", feature_fn=lambda x: x.sum(1), steps=1)


def test_levenberg_marquardt_reaches_the_penalised_least_squares_solution():
    """For G(z) = W z + b the objective mean (Wz + b - x)^2 + (lam / d) |z|^2 is quadratic with the
    closed-form minimiser z* = (W^T W / D + (lam / d) I)^{-1} W^T (x - b) / D; a few Gauss-Newton steps
    from a poor start (two Adam steps) must land on it."""
    G = linear_generator().double()
    W, b = G.weight.detach(), G.bias.detach()
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lam, d, D = 0.3, 5, 40
    exact = torch.linalg.solve(W.T @ W / D + (lam / d) * torch.eye(d, dtype=torch.float64), ((x - b) @ W / D).T).T
    rough = audit.invert(G, x, d, restarts=1, steps=2, prior_weight=lam, seed=0)
    refined = audit.invert(G, x, d, restarts=1, steps=2, prior_weight=lam, refine=5, seed=0)
    assert (rough.z - exact).abs().max() > 1e-2
    assert torch.allclose(refined.z, exact, atol=1e-8)
    assert torch.allclose(refined.restart_z[:, 0], refined.z) and (refined.objective <= rough.objective).all()


def test_screening_starts_from_the_best_prior_draws():
    """With no Adam steps the inversion returns its starts: with screen = N they are the restarts-best
    of the N prior draws by the objective (the draws reproduced from the same seed)."""
    G = linear_generator().double()
    x = torch.randn(3, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    res = audit.invert(G, x, 5, restarts=2, steps=0, screen=50, seed=7)
    cand = torch.randn(3, 50, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        mse = (G(cand.reshape(-1, 5)).reshape(3, 50, 40) - x.unsqueeze(1)).square().mean(-1)
    best2 = mse.topk(2, 1, largest=False).values
    assert torch.allclose(res.restart_objectives.sort(1).values, best2)
    plain = audit.invert(G, x, 5, restarts=2, steps=0, seed=7)
    assert (res.errors <= plain.errors).all()


def test_screen_and_refine_errors():
    G = linear_generator()
    x = torch.zeros(2, 40)
    with pytest.raises(ValueError, match="refine .* needs the pixel loss 'l2', got loss='feature'"):
        audit.invert(G, x, 5, refine=3, loss="feature", feature_fn=lambda y: y)
    with pytest.raises(ValueError, match=r"screen must draw at least as many prior samples as restarts \(4\), got 2"):
        audit.invert(G, x, 5, restarts=4, screen=2)
    with pytest.raises(ValueError, match="pass init .* or screen"):
        audit.invert(G, x, 5, init=torch.zeros(2, 1, 5), screen=8)
    from statgan.audit.settings import AuditSettings
    from statgan.errors import ConfigError
    with pytest.raises(ConfigError, match="refine needs the pixel loss l2, got loss 'lenet'"):
        AuditSettings(refine=2, loss="lenet").validate()
