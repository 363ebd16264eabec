"""``model.arch=stylegan``: shapes, demodulation, equalised learning rate, style mixing, truncation,
the tracked average w (training, checkpoints, EMA), path-length regularisation, exact resume, and
the minibatch-stddev option of the DCGAN discriminator."""

import math

import pytest
import torch

from statgan import config, nets, regularizers
from statgan.errors import ConfigError
from statgan.latents import truncated_samples
from statgan.nets.stylegan import EqualConv2d, EqualLinear, ModulatedConv2d, StyleGANDiscriminator, StyleGANGenerator
from statgan.regularizers import LossContext
from statgan.regularizers.pathlength import path_lengths
from statgan.rundir.run import load_generator
from statgan.train.trainer import Trainer

from conftest import LinearW
from resume_helpers import straight_and_resumed

SHAPES = [(c, s, s) for s in (28, 32, 64) for c in (1, 3)]
SMALL_G = {"width": 4, "max_width": 8, "w_dim": 8, "mapping_layers": 2}
SMALL_D = {"width": 4, "max_width": 8}


def stylegan_overrides(tmp_path, **extra):
    """A tiny stylegan on mnist5k: about a second per run."""
    items = {
        "run.out_dir": str(tmp_path), "run.name": "sg", "model.arch": "stylegan", "model.latent_dim": 8,
        "model.generator": "{width: 4, max_width: 8, w_dim: 8, mapping_layers: 2}",
        "model.discriminator": "{width: 4, max_width: 8}", "train.steps": 6, "train.batch_size": 8,
        "train.log_every": 2, "train.sample_every": 0, "train.checkpoint_every": 0, "train.progress": "false",
        "train.tensorboard": "false", "train.lr_g": 0.002, "train.lr_d": 0.002, "train.ema_decay": 0.5,
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_at_every_resolution_and_channel_count(shape):
    torch.manual_seed(0)
    G = nets.build_generator("stylegan", shape, 16, **SMALL_G)
    D = nets.build_discriminator("stylegan", shape, **SMALL_D)
    assert isinstance(G, StyleGANGenerator) and isinstance(D, StyleGANDiscriminator)
    n_up = int(round(math.log2(shape[1] / G.base)))
    assert G.num_ws == 2 * n_up + 2 and G.const.shape[-1] == (7 if shape[1] == 28 else 4)
    for mode in (G.train, G.eval):
        mode()
        x = G(torch.randn(5, 16))
        assert x.shape == (5, *shape) and x.abs().max() <= 1
    ws = G.mapping(torch.randn(5, 16))
    assert ws.shape == (5, G.num_ws, 8) and G.synthesis(ws).shape == (5, *shape)
    assert D(x).shape == (5,) and D.features(x).shape == (5, 8)


def test_demodulation_keeps_unit_variance():
    # For fixed weights and styles, output channel o is d_o Σ s_i w_oik x_ik with d_o = 1/sqrt(Σ (s_i w_oik)²),
    # so with iid N(0, 1) inputs it has variance exactly 1 away from the zero padding. The pooled mean
    # square of 8·32·14·14 ≈ 50k interior values has relative standard error ≈ sqrt(2/50k) = 0.006 (the
    # correlations between channels and neighbours are O(1/sqrt(fan_in = 288)) with random weights), so
    # a tolerance of 0.04 is over 6 standard errors. Without demodulation the scale is E[s²] ≈ 2.
    torch.manual_seed(0)
    x, w = torch.randn(8, 32, 16, 16), torch.randn(8, 16)
    with torch.no_grad():
        y = ModulatedConv2d(32, 32, 3, 16, demodulate=True)(x, w)[:, :, 1:-1, 1:-1]
        y_plain = ModulatedConv2d(32, 32, 3, 16, demodulate=False)(x, w)[:, :, 1:-1, 1:-1]
    assert abs(y.square().mean().item() - 1.0) < 0.04
    assert abs(y_plain.square().mean().item() - 1.0) > 0.3


def test_equalised_learning_rate_weight_scale():
    # stored weights N(0, 1/lr_mul²), run-time gain lr_mul/sqrt(fan_in): the effective weight is N(0, 1/fan_in).
    # Standard deviations of 16,384 (resp. 18,432) draws have relative error ≈ 1/sqrt(2N) < 0.6 %; tolerance 3 %.
    torch.manual_seed(0)
    lin = EqualLinear(256, 64, lr_mul=0.01)
    assert lin.weight.std().item() == pytest.approx(100.0, rel=0.03)
    assert (lin.weight * lin.weight_gain).std().item() == pytest.approx(1 / 16, rel=0.03)
    x = torch.randn(4, 256)
    assert torch.allclose(lin(x), x @ (lin.weight.t() * 0.01 / 16) + lin.bias * 0.01, atol=1e-5)
    conv = EqualConv2d(32, 64, 3)
    assert conv.weight.std().item() == pytest.approx(1.0, rel=0.03)
    assert (conv.weight * conv.weight_gain).std().item() == pytest.approx(1 / math.sqrt(32 * 9), rel=0.03)
    G = nets.build_generator("stylegan", (1, 28, 28), 16)
    assert all(layer.lr_mul == 0.01 for layer in G.mapping_net) and len(G.mapping_net) == 8  # the defaults


def _layer_outputs(G, ws):
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(o.detach().clone())) for m in G.layers]
    try:
        G.synthesis(ws)
    finally:
        for h in hooks:
            h.remove()
    return outs


@pytest.mark.parametrize("crossover", [1, 3, 5])
def test_style_mixing_at_layer_k_changes_only_layers_from_k_on(crossover):
    torch.manual_seed(0)
    G = nets.build_generator("stylegan", (1, 28, 28), 16, **SMALL_G).eval()  # const noise: deterministic
    ws, ws2 = G.mapping(torch.randn(3, 16)), G.mapping(torch.randn(3, 16))
    mixed = G.mix_styles(ws, ws2, crossover)
    assert torch.equal(mixed[:, :crossover], ws[:, :crossover]) and torch.equal(mixed[:, crossover:], ws2[:, crossover:])
    before, after = _layer_outputs(G, ws), _layer_outputs(G, mixed)
    for j, (a, b) in enumerate(zip(before, after)):  # G.layers[j] reads style j
        assert torch.equal(a, b) == (j < crossover), j


def test_training_style_mixing_probability():
    G = nets.build_generator("stylegan", (1, 28, 28), 16, **{**SMALL_G, "style_mixing": 1.0}).train()
    z = torch.randn(4, 16)
    ws = G.mapping(z, update_avg=False)
    torch.manual_seed(1)
    mixed = G._style_mixing(z, ws)
    k = int((mixed != ws).any(dim=2).any(dim=0).float().argmax())  # first changed layer
    assert 1 <= k < G.num_ws and torch.equal(mixed[:, :k], ws[:, :k]) and not torch.equal(mixed[:, k:], ws[:, k:])
    G.style_mixing = 0.0
    assert G(z).shape == (4, 1, 28, 28)  # no mixing draws at all when off
    with pytest.raises(ConfigError, match="style_mixing=1.5 is a probability"):
        nets.build_generator("stylegan", (1, 28, 28), 16, style_mixing=1.5)


def test_truncation_psi_0_is_the_average_w_image_and_psi_1_the_model():
    torch.manual_seed(0)
    G = nets.build_generator("stylegan", (1, 28, 28), 16, **SMALL_G)
    G.train()
    G(torch.randn(32, 16))  # moves w_avg away from 0
    with torch.no_grad():  # noise strengths start at 0: make the noise matter
        for layer in G.layers:
            layer.noise_strength.fill_(0.5)
    G.eval()  # eval_noise="const": the per-pixel noise is one fixed image per layer, so G is a function of z
    z = torch.randn(6, 16)
    x0 = truncated_samples(G, z, 0.0)
    assert torch.allclose(x0, x0[:1].expand_as(x0), atol=1e-6)
    assert torch.allclose(x0[:1], G.synthesis(G.w_avg[None, None].expand(1, G.num_ws, -1)), atol=1e-6)
    with torch.no_grad():
        assert torch.equal(truncated_samples(G, z, 1.0), G(z))
        assert not torch.allclose(G(z)[0], G(z)[1])
        # with fresh per-pixel noise even the average w gives different images: hence const noise for the check
        x_random = G.synthesis(G.mapping(z, psi=0.0), noise_mode="random")
    assert not torch.allclose(x_random[0], x_random[1])


def test_w_avg_is_a_moving_average_of_w_in_train_mode_only():
    torch.manual_seed(0)
    G = nets.build_generator("stylegan", (1, 28, 28), 16, **SMALL_G)
    z = torch.randn(10, 16)
    G.eval()
    G.mapping(z)
    assert torch.equal(G.w_avg, torch.zeros(8))
    G.train()
    w = G.mapping(z)[:, 0]
    assert torch.allclose(G.w_avg, (1 - 0.995) * w.mean(0), atol=1e-7)  # w̄ ← 0.995·0 + 0.005·mean(w)
    assert "w_avg" in dict(G.named_buffers())


def test_trains_saves_and_restores_w_avg_and_composes_with_path_length(tmp_path, one_thread):
    cfg = config.load("mnist5k-dcgan", stylegan_overrides(tmp_path, **{"regularizers.r1": "{weight: 1, every: 2}",
                                                            "regularizers.path_length": "{every: 2}"}))
    t = Trainer(cfg, tmp_path / "sg")
    t.fit()
    assert t.G.w_avg.abs().sum() > 0
    assert torch.equal(t.ema.module.w_avg, t.G.w_avg)  # EMA copies buffers
    G, meta = load_generator(tmp_path / "sg")
    assert torch.equal(G.w_avg, t.G.w_avg) and meta.step == 6
    assert t.regularizers["path_length"].mean.item() > 0


def test_exact_resume(tmp_path, one_thread):
    extra = {"regularizers.r1": "{weight: 1, every: 3}", "regularizers.path_length": "{every: 2}",
             "objective.name": "rpgan", "regularizers.r2": "{weight: 1, every: 2}"}
    straight, resumed = straight_and_resumed(
        tmp_path, lambda name, n: stylegan_overrides(tmp_path, **{"run.name": name, "train.steps": n}, **extra), 6, 3)
    for net in ("G", "D"):
        a, b = getattr(straight, net).state_dict(), getattr(resumed, net).state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), (net, k)
    assert torch.equal(straight.G.w_avg, resumed.G.w_avg)
    assert straight.regularizers["path_length"].mean.item() == resumed.regularizers["path_length"].mean.item()


def test_path_lengths_match_the_closed_form_and_the_penalty_is_lazy():
    torch.manual_seed(0)
    G = LinearW()
    z, y = torch.randn(5, 3), torch.randn(5, 1, 2, 2)
    yf = y.reshape(5, 4)
    expected = (((yf @ G.A.t()).square().sum(1) + (yf @ G.B.t()).square().sum(1)) / 2).sqrt()
    assert torch.allclose(path_lengths(G, z, y), expected, atol=1e-6)

    reg = regularizers.get("path_length", weight=2.0, every=3, decay=0.5, batch_shrink=1)
    reg.bind(0, torch.device("cpu"))
    fake = torch.zeros(4, 1, 2, 2)
    ctx = lambda step, net="generator": LossContext(net, torch.zeros(()), fake, fake, G, None, step)  # noqa: E731
    assert reg.penalty(ctx(1)) is None and reg.penalty(ctx(0, "discriminator")) is None
    gen_state = reg.gen.get_state()
    value = reg.penalty(ctx(3))
    # the same draws by hand: z then y from the private generator; a = 0 + 0.5 (mean length − 0)
    g = torch.Generator()
    g.set_state(gen_state)
    z = torch.randn(4, 3, generator=g)
    y = torch.randn(4, 1, 2, 2, generator=g) / 2.0
    lengths = path_lengths(G, z, y).detach()
    a = 0.5 * lengths.mean()
    assert value.item() == pytest.approx((2.0 * 3 * (lengths - a).square().mean()).item(), rel=1e-5)
    assert reg.mean.item() == pytest.approx(a.item(), rel=1e-6)
    assert reg.penalty(ctx(3)).item() == pytest.approx(value.item(), rel=1e-6)  # a repeated evaluation: same draws


def test_path_length_needs_a_generator_with_w():
    reg = regularizers.get("path_length")
    G = nets.build_generator("dcgan", (1, 28, 28), 8, width=4)
    fake = torch.zeros(4, 1, 28, 28)
    with pytest.raises(ConfigError, match="path_length needs a generator with an intermediate latent w") as info:
        reg.penalty(LossContext("generator", torch.zeros(()), fake, fake, G, None, 0))
    assert "\n" not in str(info.value)


def test_dcgan_discriminator_minibatch_stddev_option():
    torch.manual_seed(0)
    plain = nets.build_discriminator("dcgan", (1, 28, 28), width=4, norm="none")
    D = nets.build_discriminator("dcgan", (1, 28, 28), width=4, mbstd=True, norm="none")
    assert nets.count_parameters(D) == nets.count_parameters(plain) + 7 * 7  # one more input channel to the 7×7 output conv
    x = torch.randn(8, 1, 28, 28)
    out = D(x)
    x2 = x.clone()
    x2[1:] = torch.randn(7, 1, 28, 28)
    assert out.shape == (8,) and not torch.allclose(D(x2)[0], out[0])  # sample 0 sees the rest of its group
    assert D.features(x).shape[1] == plain.features(x).shape[1] + 7 * 7
    with pytest.raises(ConfigError, match="mbstd"):
        nets.build_discriminator("dcgan", (1, 28, 28), mbstd="yes")


def test_switching_arch_on_the_command_line_starts_from_its_defaults():
    cfg = config.load("mnist5k-dcgan", ["model.arch=stylegan"])
    assert cfg.model.generator == {} and cfg.model.discriminator == {}
    cfg = config.load("mnist5k-dcgan", ["model.arch=stylegan", "model.generator={width: 4}"])
    assert cfg.model.generator == {"width": 4} and cfg.model.discriminator == {}
    assert config.load("mnist5k-dcgan", []).model.generator == {"width": 32, "norm": "batch"}


@pytest.mark.parametrize("params, match", [
    ({"mapping_layers": 0, "w_dim": 4}, "mapping_layers=0 makes w the normalised z"),
    ({"max_width": 2, "width": 4}, "max_width=2 is below width=4"),
    ({"eval_noise": "sometimes"}, "eval_noise"),
])
def test_bad_generator_parameters_are_one_line_config_errors(params, match):
    with pytest.raises(ConfigError, match=match) as info:
        nets.build_generator("stylegan", (1, 28, 28), 16, **params)
    assert "\n" not in str(info.value)
