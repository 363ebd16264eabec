"""Regularisers in isolation: formulas against independent computations, config errors."""

import copy
import math

import pytest
import torch
from torch import nn

from statgan import config, models, nets, regularizers
from statgan.errors import ConfigError, StatganError
from statgan.objectives.mmd import mmd2
from statgan.regularizers import LossContext, RegularizerSet
from statgan.regularizers.base import preserved_buffers
from statgan.regularizers.dropout import dropout_modules, mc_dropout
from statgan.regularizers.gradient import parameter_gradient_norm2
from statgan.regularizers.relaxation import noise_std
from statgan.regularizers.sam import SAM
from statgan.regularizers.sharpness import top_hessian_eigenvalue


def _ctx(net, loss, real, fake, G, D):
    return LossContext(net, loss, real, fake, G, D, step=0)


# ---- relaxation ---------------------------------------------------------------------------------
def test_noise_schedules():
    assert noise_std(500, 0.2) == 0.2
    assert noise_std(0, 0.2, "linear", 0.05, 100) == pytest.approx(0.2)
    assert noise_std(50, 0.2, "linear", 0.05, 100) == pytest.approx(0.125)
    assert noise_std(10_000, 0.2, "linear", 0.05, 100) == pytest.approx(0.05)
    assert noise_std(100, 0.2, "exponential", 0.05, 100) == pytest.approx(0.05 + 0.15 / math.e)
    assert noise_std(10_000, 0.2, "exponential", 0.0, 100) == pytest.approx(0.0, abs=1e-12)


def test_relaxation_adds_gaussian_noise_from_its_own_resumable_stream():
    reg = regularizers.get("relaxation", sigma=0.5, instance_noise=True)
    reg.bind(seed=3, device=torch.device("cpu"))
    state = reg.state_tensors()["rng"].clone()
    real, fake = torch.zeros(4000, 2), torch.ones(4000, 2)
    global_before = torch.get_rng_state()
    reg.begin_batch(real, fake, step=0)
    noisy_fake, noisy_real = reg.transform_fake(fake), reg.transform_real(real)
    assert torch.equal(torch.get_rng_state(), global_before)  # the global stream is untouched
    assert torch.equal(reg.transform_fake(fake), noisy_fake)  # the same noise for every evaluation
    eps_f, eps_r = noisy_fake - 1.0, noisy_real
    assert eps_f.std().item() == pytest.approx(0.5, rel=0.05) and abs(eps_f.mean().item()) < 0.03
    assert not torch.allclose(eps_f, eps_r)  # independent noise for real and generated samples
    # restoring the RNG state redraws exactly the same noise
    other = regularizers.get("relaxation", sigma=0.5, instance_noise=True)
    other.load_state_tensors({"rng": state}, "test")
    other.begin_batch(real, fake, step=0)
    assert torch.equal(other.transform_fake(fake), noisy_fake)
    # without instance noise the real batch is untouched; σ = 0 adds nothing
    plain = regularizers.get("relaxation", sigma=0.5)
    plain.begin_batch(real, fake, 0)
    assert plain.transform_real(real) is real
    off = regularizers.get("relaxation", sigma=0.0)
    off.begin_batch(real, fake, 0)
    assert off.transform_fake(fake) is fake


# ---- gradient penalties -------------------------------------------------------------------------
def _flat_loss(module, loss_of_module):
    """loss as a function of the flattened parameter vector of ``module`` (for functional.hvp)."""
    names = [n for n, _ in module.named_parameters()]
    shapes = [p.shape for p in module.parameters()]

    def f(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            params[n] = flat[i:i + k].reshape(s)
            i += k
        return loss_of_module(lambda x: torch.func.functional_call(module, params, (x,)))

    return f, torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def test_param_grad_penalty_changes_the_gradient_by_2_lambda_H_g(one_thread):
    """∇(L + λ‖∇L‖²) = ∇L + 2λ·H∇L: the penalty really acts (double backprop), checked against an
    independent Hessian-vector product; a penalty computed without create_graph would be inert."""
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    z, target = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)

    def loss_of(g):
        return (g(z) - target).pow(2).mean() + g(z).pow(4).mean()

    lam = 0.3
    reg = regularizers.get("param_grad", weight=lam)
    loss = loss_of(G)
    total = RegularizerSet([reg]).add_penalties(_ctx("generator", loss, None, None, G, None))
    actual = torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, list(G.parameters()))])

    f, flat = _flat_loss(G, loss_of)
    grad = torch.autograd.functional.jacobian(f, flat)
    _, h_grad = torch.autograd.functional.hvp(f, flat, grad)
    assert torch.allclose(actual, grad + 2 * lam * h_grad, rtol=1e-9, atol=1e-12)
    assert (actual - grad).norm() > 1e-3 * grad.norm()  # a visible change of the update
    assert reg.penalty(_ctx("generator", loss_of(G), None, None, G, None)).item() == pytest.approx(lam * grad.pow(2).sum().item())
    # the pitfall: the same number computed from detached gradients sends no gradient at all
    loss = loss_of(G)
    inert = loss + lam * sum(g.detach().pow(2).sum() for g in torch.autograd.grad(loss, list(G.parameters()), retain_graph=True))
    inert_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(inert, list(G.parameters()))])
    assert torch.allclose(inert_grad, grad)
    # discriminator updates are left alone
    assert reg.penalty(_ctx("discriminator", loss_of(G), None, None, G, None)) is None


def test_param_grad_on_a_quadratic_moves_along_A_g():
    """L = ½ψᵀAψ − bᵀψ: ∇(L + λ‖∇L‖²) = (I + 2λA)(Aψ − b)."""
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -1.0], dtype=torch.float64)
    psi = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    loss = 0.5 * psi @ A @ psi - b @ psi
    lam = 0.25
    total = loss + lam * parameter_gradient_norm2(loss, [psi])
    (grad,) = torch.autograd.grad(total, psi)
    g = A @ psi.detach() - b
    assert torch.allclose(grad, g + 2 * lam * A @ g)


def test_sample_grad_is_the_mean_norm_of_the_loss_gradient_wrt_each_sample():
    torch.manual_seed(0)
    fake = torch.randn(6, 3, requires_grad=True)
    real = torch.randn(6, 3)
    loss = mmd2(real, fake, unbiased=False)
    reg = regularizers.get("sample_grad", weight=2.0)
    value = reg.penalty(_ctx("generator", loss, real, fake, None, None))
    (g,) = torch.autograd.grad(mmd2(real, fake, unbiased=False), fake)
    assert value.item() == pytest.approx(2.0 * g.norm(dim=1).mean().item(), rel=1e-5)
    assert value.requires_grad  # differentiable: it shapes the generator's update


def test_r1_r2_gp_formulas_on_a_linear_critic():
    """D(x) = w·x has ∇D = w everywhere: R1 = R2 = γ/2·‖w‖², GP = λ(‖w‖ − c)²."""
    D = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([[1.0, 2.0, 2.0]]))  # ‖w‖ = 3
    real, fake = torch.randn(8, 3), torch.randn(8, 3)
    ctx = _ctx("discriminator", torch.zeros(()), real, fake, None, lambda x: D(x).squeeze(1))
    assert regularizers.get("r1", weight=4.0).penalty(ctx).item() == pytest.approx(2.0 * 9.0)
    assert regularizers.get("r2", weight=1.0).penalty(ctx).item() == pytest.approx(0.5 * 9.0)
    assert regularizers.get("gp", weight=10.0, target=1.0).penalty(ctx).item() == pytest.approx(10.0 * 4.0, rel=1e-5)
    # differentiable in D's parameters: d/dw of γ/2·‖w‖² = γ·w
    r1 = regularizers.get("r1", weight=4.0).penalty(ctx)
    (gw,) = torch.autograd.grad(r1, D.weight)
    assert torch.allclose(gw, 4.0 * D.weight)
    assert regularizers.get("r1").penalty(_ctx("generator", torch.zeros(()), real, fake, None, None)) is None


# ---- SAM ----------------------------------------------------------------------------------------
def _quadratic():
    A = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]], dtype=torch.float64)
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    return A, w, (lambda: 0.5 * w @ A @ w)


@pytest.mark.parametrize("adaptive", [True, False])
def test_sam_step_uses_the_gradient_at_the_perturbed_point(adaptive):
    A, w, loss_fn = _quadratic()
    rho, lr = 0.1, 0.05
    opt = SAM(torch.optim.SGD([w], lr=lr), rho=rho, adaptive=adaptive)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss.detach()

    w0 = w.detach().clone()
    g = A @ w0
    if adaptive:  # ASAM: e = ρ w² g / ‖w g‖
        e = rho * w0.pow(2) * g / (w0 * g).norm()
    else:  # SAM: e = ρ g / ‖g‖
        e = rho * g / g.norm()
    loss = opt.step(closure)
    assert loss.item() == pytest.approx(0.5 * (w0 @ A @ w0).item())
    assert torch.allclose(w.detach(), w0 - lr * (A @ (w0 + e)), rtol=1e-12)


def test_sam_wraps_any_optimizer_and_checkpoints_as_the_base():
    _, w, loss_fn = _quadratic()
    opt = SAM(torch.optim.Adam([w], lr=0.01), rho=0.5)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"} and "exp_avg" in sd["state"][0]
    opt.param_groups[0]["lr"] = 0.5  # the trainer's LR warm-up writes here
    assert opt.base.param_groups[0]["lr"] == 0.5
    other = SAM(torch.optim.Adam([nn.Parameter(w.detach().clone())], lr=0.01), rho=0.5)
    other.load_state_dict(sd)
    assert torch.equal(other.base.state_dict()["state"][0]["exp_avg"], sd["state"][0]["exp_avg"])


def test_sam_does_not_update_batchnorm_statistics_on_the_perturbed_pass(one_thread):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 1))
    x = torch.randn(32, 4)
    reference = copy.deepcopy(net)
    reference(x)  # one forward at w: the statistics a single (non-SAM) pass would leave
    opt = SAM(torch.optim.SGD(net.parameters(), lr=0.1), rho=0.5, modules=[net])
    passes = []

    def closure():
        opt.zero_grad()
        loss = net(x).pow(2).mean()
        loss.backward()
        passes.append(net[1].running_mean.clone())
        return loss

    opt.step(closure)
    assert len(passes) == 2
    bn, ref = net[1], reference[1]
    assert torch.equal(bn.running_mean, ref.running_mean) and torch.equal(bn.running_var, ref.running_var)
    assert bn.num_batches_tracked.item() == 1
    assert torch.equal(passes[1], ref.running_mean)  # untouched during the perturbed pass itself


def test_preserved_buffers_restores_everything():
    bn = nn.BatchNorm1d(3)
    with preserved_buffers(bn):
        bn(torch.randn(8, 3) + 5)
    assert torch.equal(bn.running_mean, torch.zeros(3)) and bn.num_batches_tracked.item() == 0


# ---- sharpness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("eigenvalues, top", [((7.0, 3.0, -2.0, 0.5), 7.0), ((2.0, 1.0, -9.0, 0.5), 2.0)])
def test_top_hessian_eigenvalue_of_a_quadratic(eigenvalues, top):
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    a = nn.Parameter(torch.randn(2, generator=g, dtype=torch.float64))
    b = nn.Parameter(torch.randn(2, generator=g, dtype=torch.float64))
    unused = nn.Parameter(torch.ones(3, dtype=torch.float64))
    psi = torch.cat([a, b])
    loss = 0.5 * psi @ A @ psi + psi.sum()
    value = top_hessian_eigenvalue(loss, [a, unused, b], iters=200, tol=1e-10, generator=torch.Generator().manual_seed(1))
    assert value == pytest.approx(top, rel=1e-6)


# ---- MC dropout ---------------------------------------------------------------------------------
def test_mc_dropout_sets_the_networks_dropout_and_its_sampling_mode(one_thread):
    regs = regularizers.build({"mc_dropout": {"p": 0.5, "n_mcd": 3, "nets": "g"}})
    assert regs.network_params("generator", {"width": 4}) == {"width": 4, "dropout": 0.5}
    assert regs.network_params("discriminator", {}) == {}
    assert regs.evaluations("generator") == 3 and regs.evaluations("discriminator") == 1
    with pytest.raises(ConfigError, match="model.generator.dropout=0.2 conflicts with regularizers.mc_dropout"):
        regs.network_params("generator", {"dropout": 0.2})

    torch.manual_seed(0)
    G = nets.build_generator("dcgan", (1, 28, 28), 8, width=16, norm="batch", dropout=0.5).eval()
    assert all(isinstance(m, nn.Dropout2d) for m in dropout_modules(G)) and dropout_modules(G)
    z = torch.randn(1, 8).repeat(16, 1)  # one latent, sixteen times
    masks, modes = [], []
    layer = dropout_modules(G)[0]
    layer.register_forward_hook(lambda m, i, o: masks.append(((o == 0).flatten(2).all(2)) & (i[0] != 0).flatten(2).any(2)))
    for m in G.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.Dropout2d)):
            m.register_forward_hook(lambda m, i, o: modes.append((type(m).__name__, m.training)))
    with torch.no_grad(), mc_dropout(G, seed=0):
        x = G(z)
    assert set(modes) == {("BatchNorm2d", False), ("Dropout2d", True)}  # BN in eval, dropout on
    assert not G.training and not layer.training  # flags restored afterwards
    # one channel mask per image: sixteen different masks, so sixteen different images
    mask = masks[0]
    assert mask.shape == (16, layer_channels(G)) and len({tuple(r.tolist()) for r in mask}) == 16
    assert len({tuple(r.flatten().tolist()) for r in x}) == 16
    with torch.no_grad(), mc_dropout(G, seed=0):
        assert torch.equal(G(z), x)  # seeded: reproducible
    with torch.no_grad():
        plain = G(z)
    assert torch.equal(plain, plain[:1].expand_as(plain))  # without MC dropout: one image, sixteen times


def layer_channels(G):
    return next(m.num_features for m in G.net.block2.modules() if isinstance(m, nn.BatchNorm2d))


def test_mc_dropout_without_dropout_layers_is_a_clear_error():
    with pytest.raises(StatganError, match="no dropout layers; train with regularizers.mc_dropout.p"):
        with mc_dropout(nn.Linear(2, 2)):
            pass


# ---- config -------------------------------------------------------------------------------------
def _build(overrides):
    """Load a config and build what a trainer builds from it before training (no data, no run)."""
    cfg = config.load("mnist5k-dcgan", overrides)
    models.build_regularizers(cfg, models.build_objective(cfg))
    models.build_models(cfg, (1, 28, 28))


def test_regularizers_from_config_and_overrides():
    cfg = config.load("mnist5k-dcgan", ["regularizers.sam.rho=0.5", "regularizers.r1=true", "regularizers.gp=false",
                             "regularizers.relaxation.sigma=0.1", "regularizers.relaxation.schedule=linear"])
    assert cfg.regularizers == {"sam": {"rho": 0.5}, "r1": {}, "relaxation": {"sigma": 0.1, "schedule": "linear"}}
    assert config.load("mnist5k-dcgan").regularizers == {}
    assert config.from_dict(cfg.to_dict()) == cfg  # round trip through the saved YAML layout
    assert [r.name for r in regularizers.build(cfg.regularizers)] == ["r1", "relaxation", "sam"]


@pytest.mark.parametrize("override, fragment", [
    ("regularizers.sma.rho=1", "unknown regularizer 'regularizers.sma'; did you mean 'sam'?"),
    ("regularizers.sam.rh=1", "unknown key 'regularizers.sam.rh'; did you mean 'rho'?"),
    ("regularizers.sam.rho=0", "regularizers.sam: rho=0 is not allowed (must be > 0)"),
    ("regularizers.sam.nets=x", "regularizers.sam: nets='x' is not one of: both, g, d"),
    ("regularizers.relaxation.sigma=-0.1", "regularizers.relaxation: sigma=-0.1 is not allowed (must be >= 0)"),
    ("regularizers.relaxation.schedule=cosine", "schedule='cosine' is not one of: constant, linear, exponential"),
    ("regularizers.relaxation.sigma_min=0.5", "sigma_min=0.5 is not allowed (must be <= sigma=0.1)"),
    ("regularizers.mc_dropout.p=1", "regularizers.mc_dropout: p=1 must be a number with 0 <= p < 1"),
    ("regularizers.mc_dropout.n_mcd=0", "regularizers.mc_dropout: n_mcd=0 must be an integer >= 1"),
    ("regularizers.param_grad=true", "regularizers.param_grad: weight is required"),
    ("regularizers.r1.weight=-1", "regularizers.r1: weight=-1 is not allowed (must be >= 0)"),
    ("regularizers.sharpness.every=0", "regularizers.sharpness: every=0 must be an integer >= 1"),
    ("regularizers=3", "'regularizers' is a section; set its keys"),
    ("regularizers.sam=3", "regularizers.sam: expected a mapping of parameters or true/false"),
])
def test_bad_regularizer_values_give_one_line_errors(override, fragment):
    # names and parameter names fail at load, values where the run is built (both before training)
    with pytest.raises(ConfigError) as err:
        _build([override])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_discriminator_regularizers_refuse_an_objective_without_discriminator():
    for override in ("regularizers.r1=true", "regularizers.gp=true", "regularizers.sam.nets=d",
                     "regularizers.mc_dropout.nets=d"):
        with pytest.raises(ConfigError, match="objective 'gmmn' trains none"):
            _build(["objective.name=gmmn", override])
    _build(["objective.name=gmmn", "regularizers.sam=true", "regularizers.mc_dropout=true"])


def test_mc_dropout_rate_set_twice_is_refused():
    with pytest.raises(ConfigError, match="model.generator.dropout=0.2 conflicts with regularizers.mc_dropout"):
        _build(["model.generator={width: 4, dropout: 0.2}", "regularizers.mc_dropout.p=0.1"])


def test_regularizers_declare_name_and_whether_they_change_training():
    for name in regularizers.names():
        cls = regularizers.REGULARIZERS[name]
        assert vars(cls)["name"] == name
        # only probes may be switched on or off when a run is resumed
        assert cls.changes_training is (name != "sharpness")
    assert regularizers.REGULARIZERS["mc_dropout"].network_keys == ("dropout",)


def test_a_registered_class_must_declare_its_own_name():
    with pytest.raises(ValueError, match="must declare its registered name"):
        @regularizers.REGULARIZERS.register()
        class Unnamed(regularizers.Relaxation):  # inherits "relaxation": its instances would lie
            pass
