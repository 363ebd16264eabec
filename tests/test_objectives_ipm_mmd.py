"""IPM, least-squares, relativistic and MMD objectives, and a contract test for every registered
objective: ``get(name)`` works, both trainer hooks return finite scalars with gradients where they
should, and invalid parameters raise ConfigError.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import statgan.objectives as objectives
from statgan.errors import ConfigError
from statgan.objectives import Objective
from statgan.objectives.mmd import DEFAULT_BANDWIDTHS, mmd2, rbf_mixture_kernel

DT = torch.float64


# tiny models: one thread is fastest (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(torch.nn.Module):
    """D(x) = wᵀ flatten(x) + b: input gradient w everywhere, so ‖∇D‖ = ‖w‖."""

    def __init__(self, w: torch.Tensor, b: float = 0.3) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())
        self.b = torch.nn.Parameter(torch.tensor(b, dtype=w.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.w + self.b


class HalfSquare(torch.nn.Module):
    """D(x) = s·½‖x‖²: input gradient s·x, so ‖∇D(x)‖ = |s|·‖x‖ (differs per sample)."""

    def __init__(self, s: float = 0.7) -> None:
        super().__init__()
        self.s = torch.nn.Parameter(torch.tensor(s, dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.s * x.reshape(x.shape[0], -1).pow(2).sum(1)


def _images(seed: int, b: int = 6) -> tuple:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 4, 4, dtype=DT, generator=g), torch.randn(b, 1, 4, 4, dtype=DT, generator=g) + 0.5


# --- gradient penalties on hand-computable critics --------------------------------------------------


def test_wgan_gp_penalty_linear_critic():
    """Linear critic: ‖∇D‖ = ‖w‖ at every interpolate, so L_D = E[D(x̃)] − E[D(x)] + λ(‖w‖ − 1)²
    exactly (up to the 1e-12 under the square root, ~1e-12 here), and the penalty's gradient with
    respect to w is λ·2(‖w‖ − 1)·w/‖w‖ (checks create_graph=True)."""
    real, fake = _images(0)
    w = torch.randn(16, dtype=DT, generator=torch.Generator().manual_seed(1)) * 0.6
    D = Linear(w)
    lam = 10.0
    obj = objectives.get("wgan-gp", gp_weight=lam)
    loss = obj.discriminator_loss(D, real, fake)
    norm = w.norm().item()
    base = (D(fake).mean() - D(real).mean()).item()
    assert loss.item() == pytest.approx(base + lam * (norm - 1) ** 2, rel=1e-10, abs=1e-10)
    (gw,) = torch.autograd.grad(loss, D.w)
    # d/dw [mean(D(fake)) − mean(D(real))] = mean(fake) − mean(real) (flattened)
    expected = (fake.reshape(6, -1).mean(0) - real.reshape(6, -1).mean(0)) + lam * 2 * (norm - 1) * w / norm
    torch.testing.assert_close(gw, expected, rtol=1e-9, atol=1e-10)


def test_wgan_gp_interpolates_per_sample():
    """Quadratic critic: ‖∇D(x̂_i)‖ = s‖x̂_i‖ depends on ε_i; recompute with the same RNG state to
    check the definition x̂ = εx + (1 − ε)x̃ with one ε per sample."""
    real, fake = _images(2)
    D = HalfSquare(0.7)
    torch.manual_seed(123)
    loss = objectives.get("wgan-gp", gp_weight=10.0).discriminator_loss(D, real, fake)
    torch.manual_seed(123)
    eps = torch.rand(6, 1, 1, 1, dtype=DT)
    x_hat = eps * real + (1 - eps) * fake
    norms = 0.7 * x_hat.reshape(6, -1).norm(dim=1)
    expected = D(fake).mean() - D(real).mean() + 10.0 * ((norms - 1) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)


def test_wgan_div_penalty():
    """Linear critic: penalty (k/2)(‖w‖^p + ‖w‖^p) = k‖w‖^p; quadratic critic: (k/2)(mean‖s x_r‖^p +
    mean‖s x_f‖^p); gradient of the penalty w.r.t. w is k·p·‖w‖^(p−2)·w."""
    real, fake = _images(3)
    k, p = 2.0, 6.0
    w = torch.randn(16, dtype=DT, generator=torch.Generator().manual_seed(4)) * 0.3
    D = Linear(w)
    obj = objectives.get("wgan-div")  # defaults k = 2, p = 6
    assert (obj.k, obj.p) == (k, p)
    loss = obj.discriminator_loss(D, real, fake)
    norm = w.norm().item()
    assert loss.item() == pytest.approx((D(fake).mean() - D(real).mean()).item() + k * norm**p, rel=1e-10)
    (gw,) = torch.autograd.grad(loss, D.w)
    expected = fake.reshape(6, -1).mean(0) - real.reshape(6, -1).mean(0) + k * p * norm ** (p - 2) * w
    torch.testing.assert_close(gw, expected, rtol=1e-9, atol=1e-10)

    Dq = HalfSquare(0.4)
    obj2 = objectives.get("wgan-div", k=3.0, p=2.5)
    loss2 = obj2.discriminator_loss(Dq, real, fake)
    nr = 0.4 * real.reshape(6, -1).norm(dim=1)
    nf = 0.4 * fake.reshape(6, -1).norm(dim=1)
    expected2 = Dq(fake).mean() - Dq(real).mean() + 1.5 * (nr**2.5).mean() + 1.5 * (nf**2.5).mean()
    assert loss2.item() == pytest.approx(expected2.item(), rel=1e-9)


def test_wgan_clipping_after_discriminator_step():
    D = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    with torch.no_grad():
        for prm in D.parameters():
            prm.uniform_(-1, 1)
        D[0].weight[0, 0] = 0.005  # inside the box: untouched
    obj = objectives.get("wgan", clip=0.01)
    obj.after_discriminator_step(D)
    for prm in D.parameters():
        assert prm.abs().max().item() <= 0.01 + 1e-12
    assert D[0].weight[0, 0].item() == pytest.approx(0.005)
    # the other objectives keep the base class's no-op hook
    assert type(objectives.get("wgan-gp")).after_discriminator_step is Objective.after_discriminator_step


# --- losses on hand-given logits -----------------------------------------------------------------


def _sp(z: float) -> float:
    return math.log1p(math.exp(z)) if z < 30 else z


REAL = [0.5, 2.0, -1.0]
FAKE = [-2.0, 0.0, 0.5]


def test_hinge_values():
    obj = objectives.get("hinge")
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    # relu(1 − r) = [0.5, 0, 2] → 5/6; relu(1 + f) = [0, 1, 1.5] → 5/6
    assert obj.d_loss(r, f).item() == pytest.approx(5 / 6 + 5 / 6)
    assert obj.g_loss(f).item() == pytest.approx(0.5)  # −mean(f) = −(−1.5)/3


def test_lsgan_values():
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    obj = objectives.get("lsgan")  # a, b, c = 0, 1, 1
    d = 0.5 * np.mean([(x - 1) ** 2 for x in REAL]) + 0.5 * np.mean([x**2 for x in FAKE])
    assert obj.d_loss(r, f).item() == pytest.approx(d)
    assert obj.g_loss(f).item() == pytest.approx(0.5 * np.mean([(x - 1) ** 2 for x in FAKE]))
    obj2 = objectives.get("lsgan", a=-1, b=1, c=0)
    d2 = 0.5 * np.mean([(x - 1) ** 2 for x in REAL]) + 0.5 * np.mean([(x + 1) ** 2 for x in FAKE])
    assert obj2.d_loss(r, f).item() == pytest.approx(d2)
    assert obj2.g_loss(f).item() == pytest.approx(0.5 * np.mean([x**2 for x in FAKE]))


def test_ragan_values():
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    mr, mf = np.mean(REAL), np.mean(FAKE)
    obj = objectives.get("ragan")
    d = np.mean([_sp(-(x - mf)) for x in REAL]) + np.mean([_sp(x - mr) for x in FAKE])
    g = np.mean([_sp(-(x - mr)) for x in FAKE]) + np.mean([_sp(x - mf) for x in REAL])
    assert obj.d_loss(r, f).item() == pytest.approx(d, rel=1e-6)
    assert obj.g_loss(f, r).item() == pytest.approx(g, rel=1e-6)
    # D cannot tell anything apart (all logits equal): both losses are 2 log 2
    c = torch.full((4,), 0.7)
    assert obj.d_loss(c, c).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert obj.g_loss(c, c).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    with pytest.raises(TypeError, match="real_logits"):
        obj.g_loss(f)


def test_ragan_generator_hook_uses_real_batch():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1), torch.nn.Flatten(0))
    real, fake = torch.randn(16, 2), torch.randn(16, 2) + 1
    obj = objectives.get("ragan")
    loss = obj.generator_loss(D, real, fake)
    assert loss.item() == pytest.approx(obj.g_loss(D(fake), D(real)).item(), rel=1e-6)
    assert obj.generator_loss(D, real + 3.0, fake).item() != pytest.approx(loss.item(), rel=1e-3)


# --- MMD ----------------------------------------------------------------------------------------


def _expected_kernel(mu1, cov1, mu2, cov2, bandwidths=DEFAULT_BANDWIDTHS) -> float:
    """E k(x, y), x ~ N(mu1, cov1), y ~ N(mu2, cov2) independent: x − y ~ N(Δ, S), S = cov1 + cov2, and
    E exp(−λ‖z‖²) = det(I + 2λS)^(−1/2) exp(−λ Δᵀ(I + 2λS)^(−1) Δ)."""
    delta = np.asarray(mu1) - np.asarray(mu2)
    s = np.asarray(cov1) + np.asarray(cov2)
    total = 0.0
    for lam in bandwidths:
        m = np.eye(len(delta)) + 2 * lam * s
        total += np.linalg.det(m) ** -0.5 * math.exp(-lam * delta @ np.linalg.solve(m, delta))
    return total


def test_unbiased_mmd2_matches_population_value():
    """Mean of the unbiased estimator over 200 seeds of 100 vs 100 two-dimensional Gaussian
    samples equals the exact MMD² (closed form above) within 4 SE (SE = sd over seeds/√200); the
    biased estimator's mean is detectably higher (its bias ≈ (k(x,x) − E k(x,x'))(1/m + 1/n))."""
    mu1, cov1 = np.zeros(2), np.eye(2)
    mu2, cov2 = np.array([0.5, 0.0]), np.diag([1.5, 0.7])
    exact = (
        _expected_kernel(mu1, cov1, mu1, cov1)
        + _expected_kernel(mu2, cov2, mu2, cov2)
        - 2 * _expected_kernel(mu1, cov1, mu2, cov2)
    )
    l1 = torch.linalg.cholesky(torch.tensor(cov1))
    l2 = torch.linalg.cholesky(torch.tensor(cov2))
    g = torch.Generator().manual_seed(7)
    unb, bia = [], []
    for _ in range(200):
        x = torch.randn(100, 2, dtype=DT, generator=g) @ l1.T + torch.tensor(mu1)
        y = torch.randn(100, 2, dtype=DT, generator=g) @ l2.T + torch.tensor(mu2)
        unb.append(mmd2(x, y, unbiased=True).item())
        bia.append(mmd2(x, y, unbiased=False).item())
    unb, bia = np.array(unb), np.array(bia)
    se = unb.std(ddof=1) / math.sqrt(len(unb))
    assert exact > 8 * se  # the test can tell this pair apart from MMD² = 0
    assert abs(unb.mean() - exact) < 4 * se, (unb.mean(), exact, se)
    assert bia.mean() - exact > 4 * se


def test_mmd2_matches_brute_force():
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(5, 3, dtype=DT, generator=g), torch.randn(4, 3, dtype=DT, generator=g) + 0.3
    bw = (1.0, 0.1)

    def k(a, b):
        return sum(math.exp(-lam * float(((a - b) ** 2).sum())) for lam in bw)

    kxx = [[k(a, b) for b in x] for a in x]
    kyy = [[k(a, b) for b in y] for a in y]
    kxy = np.mean([[k(a, b) for b in y] for a in x])
    biased = np.mean(kxx) + np.mean(kyy) - 2 * kxy
    unbiased = (
        (np.sum(kxx) - np.trace(kxx)) / 20 + (np.sum(kyy) - np.trace(kyy)) / 12 - 2 * kxy
    )
    assert mmd2(x, y, bw, unbiased=False).item() == pytest.approx(biased, rel=1e-12)
    assert mmd2(x, y, bw, unbiased=True).item() == pytest.approx(unbiased, rel=1e-12)
    assert rbf_mixture_kernel(x, x, bw).diagonal().tolist() == pytest.approx([2.0] * 5)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_biased_mmd2_is_nonnegative(dtype, tol):
    """The biased estimator is a squared RKHS norm: ≥ 0 up to rounding (tolerance: a few ulps of
    the kernel sums, which are ≤ 7) for 300 random configurations — various sizes, dimensions,
    scales, identical and near-identical sample sets."""
    rng = np.random.default_rng(9)
    for i in range(300):
        m, n, d = rng.integers(1, 12, size=3)
        scale = 10.0 ** rng.uniform(-3, 1)
        x = torch.tensor(rng.normal(size=(m, d)) * scale, dtype=dtype)
        if i % 3 == 0:
            y = x.clone()
        elif i % 3 == 1:
            y = x + 1e-4 * torch.tensor(rng.normal(size=(m, d)), dtype=dtype)
        else:
            y = torch.tensor(rng.normal(size=(n, d)) * scale + rng.normal(), dtype=dtype)
        assert mmd2(x, y, unbiased=False).item() >= -tol


def test_mmd2_gradient_finite_for_identical_samples():
    x = torch.randn(8, 1, 3, 3, dtype=DT, requires_grad=True)
    val = mmd2(x, x, unbiased=False)
    (g,) = torch.autograd.grad(val, x)
    assert abs(val.item()) < 1e-12 and torch.isfinite(g).all()


def test_gmmn_hooks():
    obj = objectives.get("gmmn")
    assert obj.has_discriminator is False and obj.unbiased is False
    real, fake = _images(10)
    fake.requires_grad_(True)
    z = obj.discriminator_loss(None, real, fake.detach())
    assert z.shape == () and z.item() == 0.0 and z.grad_fn is None
    loss = obj.generator_loss(None, real, fake)
    assert loss.item() == pytest.approx(mmd2(real, fake, unbiased=False).item(), rel=1e-12)
    (g,) = torch.autograd.grad(loss, fake)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


class WithFeatures(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.Tanh())
        self.head = torch.nn.Linear(5, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


def test_mmd_gan_uses_features_or_logits():
    torch.manual_seed(0)
    real, fake = torch.randn(12, 2), torch.randn(12, 2) + 1
    D = WithFeatures()
    obj = objectives.get("mmd-gan", gp_weight=0.0)
    assert obj.discriminator_loss(D, real, fake).item() == pytest.approx(
        -mmd2(D.features(real), D.features(fake)).item(), rel=1e-6
    )
    assert obj.generator_loss(D, real, fake).item() == pytest.approx(
        mmd2(D.features(real), D.features(fake)).item(), rel=1e-6
    )
    plain = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
    assert obj.discriminator_loss(plain, real, fake).item() == pytest.approx(
        -mmd2(plain(real).unsqueeze(1), plain(fake).unsqueeze(1)).item(), rel=1e-6
    )
    # the witness penalty is ≥ 0 and adds to the loss
    pen = objectives.get("mmd-gan", gp_weight=1.0).discriminator_loss(D, real, fake)
    assert pen.item() > obj.discriminator_loss(D, real, fake).item()


# --- contract for every registered objective -------------------------------------------------------


class TinyD(torch.nn.Module):
    """Smooth (Tanh) so that gradient penalties have non-zero second derivatives."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1)).squeeze(1)


@pytest.mark.parametrize("shape", [(2,), (1, 4, 4)], ids=["points", "images"])
@pytest.mark.parametrize("name", objectives.names())
def test_every_objective_hooks(name, shape):
    torch.manual_seed(0)
    dim = int(np.prod(shape))
    G = torch.nn.Linear(3, dim)
    D = TinyD(dim)
    real = torch.randn(16, *shape)
    fake = G(torch.randn(16, 3)).reshape(16, *shape)
    obj = objectives.get(name)
    assert obj.name == name

    d_loss = obj.discriminator_loss(D, real, fake.detach())
    assert d_loss.shape == () and torch.isfinite(d_loss)
    if obj.has_discriminator:
        d_loss.backward()
        grads = [p.grad for p in D.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
        assert all(p.grad is None for p in G.parameters())  # fake was detached
        obj.after_discriminator_step(D)
    else:
        assert d_loss.item() == 0.0
    D.zero_grad()

    g_loss = obj.generator_loss(D, real, fake)
    assert g_loss.shape == () and torch.isfinite(g_loss)
    g_loss.backward()
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("renyi", {"alpha": 1}, "renyi: alpha=1 is not allowed"),
        ("fgan", {"divergence": "nope"}, "fgan: divergence='nope'"),
        ("fgan", {"generator_update": "x"}, "generator_update='x'"),
        ("wgan-gp", {"gp_weight": -1.0}, "wgan-gp: gp_weight=-1.0 is not allowed"),
        ("wgan", {"clip": 0}, "wgan: clip=0 is not allowed"),
        ("wgan-div", {"p": 0}, "wgan-div: p=0"),
        ("wgan-div", {"k": -2}, "wgan-div: k=-2"),
        ("lsgan", {"a": 1, "b": 1}, "lsgan: b=1"),
        ("lsgan", {"c": "one"}, "lsgan: c='one'"),
        ("gmmn", {"bandwidths": []}, "gmmn: bandwidths=\\[\\]"),
        ("gmmn", {"bandwidths": [1.0, -0.5]}, "gmmn: bandwidths=-0.5"),
        ("gmmn", {"unbiased": "yes"}, "gmmn: unbiased='yes'"),
        ("mmd-gan", {"gp_weight": -1}, "mmd-gan: gp_weight=-1"),
        ("f_ratio", {"divergence": "tv"}, "f_ratio: divergence="),
        ("hinge", {"margin": 1.0}, "no parameter 'margin'"),
        ("nope", {}, "unknown objective 'nope'"),
    ],
)
def test_invalid_params_raise_config_error(name, params, match):
    with pytest.raises(ConfigError, match=match):
        objectives.get(name, **params)


def test_aliases_resolve():
    for alias, canonical in [("wgan_gp", "wgan-gp"), ("wgan_div", "wgan-div"), ("rasgan", "ragan"), ("mmd", "gmmn"),
                             ("mmd_gan", "mmd-gan"), ("reverse_kl", "rkl"), ("forward_kl", "fkl"), ("f-gan", "fgan"),
                             ("saturating", "minimax")]:
        assert objectives.get(alias).name == canonical


def test_generator_gradients_point_the_right_way():
    """Sanity of signs: each generator loss decreases when D's output on the fakes moves towards
    'real' (logits below lsgan's target c = 1, so that one too)."""
    f = torch.tensor([-0.5, 0.0, 0.2], requires_grad=True)
    for name in ("hinge", "wgan", "lsgan", "ns", "minimax", "rkl", "fkl", "hellinger", "renyi"):
        (g,) = torch.autograd.grad(objectives.get(name).g_loss(f), f)
        assert (g < 0).all(), name
