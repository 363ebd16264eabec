"""Tests for statgan.nets: shapes, architecture, parameter counts, init, dropout slots, spectral norm.

Small widths keep the whole file fast on CPU; the full-width 64 px DCGAN is only constructed (for the
parameter count and the init statistics), never run on large batches.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from statgan.errors import ConfigError
from statgan.nets import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator, init_weights

SIZES = (28, 32, 64, 128)
NORMS = ("batch", "none", "spectral")
LATENT = 16
WIDTH = 8
BATCH = 3


def n_up_of(size: int) -> int:
    base = 7 if size == 28 else 4
    return int(round(math.log2(size / base)))


def dropout_blocks(model: nn.Module) -> list:
    """Names of the ``net`` children that contain a dropout module."""
    return [
        name
        for name, child in model.net.named_children()
        if any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in child.modules())
    ]


def n_dropout(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in model.modules())


def sn_layers(model: nn.Module) -> list:
    return [m for m in model.modules() if hasattr(m, "parametrizations") and "weight" in m.parametrizations]


def weight_sigma(layer: nn.Module) -> float:
    """Largest singular value of the layer's weight reshaped the way spectral norm reshapes it
    (output-channel dimension first: dim 1 of a transposed convolution's (in, out, kh, kw) weight)."""
    w = layer.weight.detach()
    if isinstance(layer, nn.ConvTranspose2d):
        w = w.transpose(0, 1)
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------------
# registry and API
# --------------------------------------------------------------------------------------------------
def test_registries_list_both_archs():
    assert {"dcgan", "mlp"} <= set(GENERATORS.names())
    assert {"dcgan", "mlp"} <= set(DISCRIMINATORS.names())


def test_unknown_arch_is_config_error():
    with pytest.raises(ConfigError, match="biggan"):
        build_generator("biggan", (1, 28, 28), LATENT)
    with pytest.raises(ConfigError, match="biggan"):
        build_discriminator("biggan", (1, 28, 28))


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_unknown_param_is_config_error(arch):
    with pytest.raises(ConfigError, match="nonsense"):
        build_generator(arch, (1, 28, 28), LATENT, nonsense=1)
    with pytest.raises(ConfigError, match="nonsense"):
        build_discriminator(arch, (1, 28, 28), nonsense=1)


# --------------------------------------------------------------------------------------------------
# DCGAN shapes and architecture
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_dcgan_shapes_and_pyramid(size, channels, norm):
    shape = (channels, size, size)
    G = build_generator("dcgan", list(shape), LATENT, width=WIDTH, norm=norm)  # list, as from YAML
    D = build_discriminator("dcgan", shape, width=WIDTH, norm=norm)
    assert G.latent_dim == LATENT and G.data_shape == shape and D.data_shape == shape

    z = torch.randn(BATCH, LATENT)
    x = G(z)
    assert x.shape == (BATCH, *shape)
    assert x.min() >= -1 and x.max() <= 1  # tanh output
    assert x.std() > 0  # not a constant image
    logits = D(x)
    assert logits.shape == (BATCH,)
    assert not any(isinstance(m, nn.Sigmoid) for m in D.modules())  # raw logits

    # the spatial pyramid, block by block (spec: base 7 for 28 px, else 4; channels halve/double)
    base, n_up = (7 if size == 28 else 4), n_up_of(size)
    assert G.n_hidden_blocks == D.n_hidden_blocks == n_up
    h = z.view(BATCH, LATENT, 1, 1)
    for i in range(1, n_up + 1):
        h = getattr(G.net, f"block{i}")(h)
        assert h.shape == (BATCH, WIDTH * 2 ** (n_up - i), base * 2 ** (i - 1), base * 2 ** (i - 1))
    assert G.net.output(h).shape == (BATCH, *shape)
    h = x
    for i in range(1, n_up + 1):
        h = getattr(D.net, f"block{i}")(h)
        assert h.shape == (BATCH, WIDTH * 2 ** (i - 1), size // 2**i, size // 2**i)
    assert h.shape[-1] == base
    assert D.net.output(h).shape == (BATCH, 1, 1, 1)

    # eval mode (running BN statistics) keeps the shapes
    G.eval(), D.eval()
    assert D(G(z)).shape == (BATCH,)


@pytest.mark.parametrize("norm", NORMS)
def test_dcgan_discriminator_returns_raw_logits(norm):
    # a sigmoid (module or functional) would confine the output to (0, 1)
    D = build_discriminator("dcgan", (1, 32, 32), width=WIDTH, norm=norm)
    logits = D(4 * torch.randn(32, 1, 32, 32))
    assert logits.shape == (32,)
    assert logits.min() < 0 < logits.max()


@pytest.mark.parametrize("norm", NORMS)
def test_dcgan_norm_layers(norm):
    G = build_generator("dcgan", (3, 64, 64), LATENT, width=WIDTH, norm=norm)
    D = build_discriminator("dcgan", (3, 64, 64), width=WIDTH, norm=norm)
    n_bn = lambda m: sum(isinstance(k, nn.BatchNorm2d) for k in m.modules())  # noqa: E731
    assert n_bn(G) == (4 if norm == "batch" else 0)  # every hidden block of G
    assert n_bn(D) == (3 if norm == "batch" else 0)  # not on D's input block (Radford et al.)
    assert len(sn_layers(G)) == (4 if norm == "spectral" else 0)  # hidden convs, not the output conv
    assert len(sn_layers(D)) == (5 if norm == "spectral" else 0)  # every conv of D
    # bias iff no BatchNorm follows the convolution
    for model in (G, D):
        for block in model.net.children():
            mods = list(block.modules()) if isinstance(block, nn.Sequential) else [block]
            conv = next(m for m in mods if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
            has_bn = any(isinstance(m, nn.BatchNorm2d) for m in mods)
            assert (conv.bias is None) == has_bn


# --------------------------------------------------------------------------------------------------
# parameter counts, computed layer by layer
# --------------------------------------------------------------------------------------------------
def conv_params(c_in: int, c_out: int, k: int, bias: bool) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn_params(c: int) -> int:
    return 2 * c  # weight and bias; running stats are buffers


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_dcgan64_parameter_counts_match_classic_dcgan():
    nz, ngf, ndf, nc = 100, 64, 64, 3
    G = build_generator("dcgan", (nc, 64, 64), nz, width=ngf)
    D = build_discriminator("dcgan", (nc, 64, 64), width=ndf)

    # Classic DCGAN (Radford et al. 2016; PyTorch examples/dcgan), where *every* conv is bias-free.
    g_classic = (
        conv_params(nz, ngf * 8, 4, False) + bn_params(ngf * 8)          # z -> 4x4x512
        + conv_params(ngf * 8, ngf * 4, 4, False) + bn_params(ngf * 4)   # -> 8x8x256
        + conv_params(ngf * 4, ngf * 2, 4, False) + bn_params(ngf * 2)   # -> 16x16x128
        + conv_params(ngf * 2, ngf, 4, False) + bn_params(ngf)           # -> 32x32x64
        + conv_params(ngf, nc, 4, False)                                 # -> 64x64x3
    )
    d_classic = (
        conv_params(nc, ndf, 4, False)                                   # -> 32x32x64
        + conv_params(ndf, ndf * 2, 4, False) + bn_params(ndf * 2)       # -> 16x16x128
        + conv_params(ndf * 2, ndf * 4, 4, False) + bn_params(ndf * 4)   # -> 8x8x256
        + conv_params(ndf * 4, ndf * 8, 4, False) + bn_params(ndf * 8)   # -> 4x4x512
        + conv_params(ndf * 8, 1, 4, False)                              # -> 1
    )
    assert g_classic == 3_576_704
    assert d_classic == 2_765_568

    # statgan keeps a bias wherever no BatchNorm follows: G's output conv (nc biases), D's input
    # conv (ndf biases) and D's final conv (1 bias).
    assert n_params(G) == g_classic + nc == 3_576_707
    assert n_params(D) == d_classic + ndf + 1 == 2_765_633


@pytest.mark.parametrize("norm", ["none", "spectral"])
def test_dcgan28_parameter_count_without_batchnorm(norm):
    # 28 px: 7x7 projection, one up-block, output; without BN every conv has a bias. Spectral norm
    # adds buffers (u, v) only, so the count is the same as for norm="none".
    c, w = 1, WIDTH
    G = build_generator("dcgan", (c, 28, 28), LATENT, width=w, norm=norm)
    D = build_discriminator("dcgan", (c, 28, 28), width=w, norm=norm)
    assert n_params(G) == conv_params(LATENT, 2 * w, 7, True) + conv_params(2 * w, w, 4, True) + conv_params(
        w, c, 4, True
    )
    assert n_params(D) == conv_params(c, w, 4, True) + conv_params(w, 2 * w, 4, True) + conv_params(
        2 * w, 1, 7, True
    )


# --------------------------------------------------------------------------------------------------
# initialisation
# --------------------------------------------------------------------------------------------------
def test_dcgan_init_statistics():
    # For n iid N(mu, s^2) draws the sample mean has standard error s/sqrt(n) and the sample std
    # about s/sqrt(2n); 6 standard errors makes a false failure essentially impossible while the
    # PyTorch default init (std 1/sqrt(3 fan_in), e.g. 0.083 for D's first conv, 0.0064 for G's
    # 512->256 conv) lies far outside the band for every layer checked here.
    s = 0.02
    G = build_generator("dcgan", (3, 64, 64), 100)
    D = build_discriminator("dcgan", (3, 64, 64))
    n_conv = n_bn = 0
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            w = m.weight.detach().flatten()
            n = w.numel()
            assert abs(w.mean().item()) < 6 * s / math.sqrt(n)
            assert abs(w.std().item() - s) < 6 * s / math.sqrt(2 * n)
            if m.bias is not None:
                assert torch.all(m.bias == 0)
            n_conv += 1
        elif isinstance(m, nn.BatchNorm2d):
            w = m.weight.detach()
            n = w.numel()
            assert abs(w.mean().item() - 1) < 6 * s / math.sqrt(n)
            assert abs(w.std().item() - s) < 6 * s / math.sqrt(2 * n)
            assert torch.all(m.bias == 0)
            n_bn += 1
    assert (n_conv, n_bn) == (10, 7)


def test_init_weights_on_spectral_layers_reinits_the_raw_weight():
    D = build_discriminator("dcgan", (1, 32, 32), width=64, norm="spectral")
    for m in sn_layers(D):
        nn.init.normal_(m.parametrizations.weight.original, 0.0, 1.0)  # spoil it
    init_weights(D)
    for m in sn_layers(D):
        raw = m.parametrizations.weight.original.detach()
        assert abs(raw.std().item() - 0.02) < 6 * 0.02 / math.sqrt(2 * raw.numel())
    D.eval()  # read W / sigma with the re-warmed singular vectors, no extra iteration
    for m in sn_layers(D):
        assert weight_sigma(m) == pytest.approx(1.0, abs=0.05)


# --------------------------------------------------------------------------------------------------
# dropout slots
# --------------------------------------------------------------------------------------------------
DEFAULT_SLOTS = {28: (2,), 32: (2,), 64: (2, 3), 128: (2, 3, 4)}


@pytest.mark.parametrize("size", SIZES)
def test_default_dropout_slots(size):
    shape = (1, size, size)
    G = build_generator("dcgan", shape, LATENT, width=WIDTH, dropout=0.3)
    D = build_discriminator("dcgan", shape, width=WIDTH, dropout=0.3)
    expected = [f"block{i}" for i in DEFAULT_SLOTS[size]]
    for model in (G, D):
        assert model.dropout_slots == DEFAULT_SLOTS[size]
        assert dropout_blocks(model) == expected
        for name in expected:  # channel dropout, after the activation
            last = list(getattr(model.net, name).children())[-1]
            assert isinstance(last, nn.Dropout2d) and last.p == 0.3
        assert n_dropout(model) == len(expected)


def test_explicit_dropout_slots():
    G = build_generator("dcgan", (3, 64, 64), LATENT, width=WIDTH, dropout=0.5, dropout_slots=[4, 1])
    D = build_discriminator("dcgan", (3, 64, 64), width=WIDTH, dropout=0.5, dropout_slots=(1,))
    assert G.dropout_slots == (1, 4) and dropout_blocks(G) == ["block1", "block4"]
    assert D.dropout_slots == (1,) and dropout_blocks(D) == ["block1"]


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_zero_dropout_inserts_nothing(arch):
    shape = (1, 28, 28)
    G = build_generator(arch, shape, LATENT, dropout=0.0)
    D = build_discriminator(arch, shape, dropout=0.0)
    assert n_dropout(G) == n_dropout(D) == 0
    z, x = torch.randn(4, LATENT), torch.rand(4, *shape) * 2 - 1
    G.train(), D.train()
    assert torch.equal(G(z), G(z)) and torch.equal(D(x), D(x))  # train mode is deterministic then


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_dropout_active_in_train_inactive_in_eval(arch):
    shape = (1, 28, 28)
    kw = {"width": WIDTH} if arch == "dcgan" else {"hidden": 32}
    G = build_generator(arch, shape, LATENT, dropout=0.5, **kw)
    D = build_discriminator(arch, shape, dropout=0.5, **kw)
    z, x = torch.randn(4, LATENT), torch.rand(4, *shape) * 2 - 1
    G.train(), D.train()
    assert not torch.equal(G(z), G(z))
    assert not torch.equal(D(x), D(x))
    G.eval(), D.eval()
    assert torch.equal(G(z), G(z))
    assert torch.equal(D(x), D(x))
    # MC dropout: re-enable only the dropout modules of an eval-mode model
    for m in D.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            m.train()
    assert not torch.equal(D(x), D(x))


@pytest.mark.parametrize("family", ["G", "D"])
@pytest.mark.parametrize(
    "params, needle",
    [
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"dropout": -0.1}, "dropout=-0.1"),
        ({"dropout": float("nan")}, "dropout=nan"),
        ({"dropout": "0.5"}, "dropout='0.5'"),
        ({"dropout": 0.5, "dropout_slots": [3]}, "slot 3"),  # 28 px has hidden blocks 1..2
        ({"dropout": 0.5, "dropout_slots": [0]}, "slot 0"),
        ({"dropout": 0.5, "dropout_slots": [1, 1]}, "slot 1"),
        ({"dropout": 0.5, "dropout_slots": []}, "dropout_slots is empty"),
        ({"dropout_slots": [7]}, "slot 7"),  # validated even with dropout off
        ({"norm": "layer"}, "norm='layer'"),
        ({"width": 0}, "width=0"),
    ],
)
def test_dcgan_bad_params(family, params, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        if family == "G":
            build_generator("dcgan", (1, 28, 28), LATENT, **params)
        else:
            build_discriminator("dcgan", (1, 28, 28), **params)


@pytest.mark.parametrize(
    "shape, needle",
    [
        ((3, 48, 48), r"48.*28, 32, 64, 128"),
        ((3, 256, 256), r"256.*28, 32, 64, 128"),
        ((3, 64, 32), r"64x32"),
        ((64, 64), r"\(64, 64\)"),
    ],
)
def test_dcgan_bad_shapes(shape, needle):
    with pytest.raises(ConfigError, match=needle):
        build_generator("dcgan", shape, LATENT)
    with pytest.raises(ConfigError, match=needle):
        build_discriminator("dcgan", shape)


# --------------------------------------------------------------------------------------------------
# spectral norm
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_spectral_norm_bounds_singular_values(arch):
    shape = (3, 32, 32) if arch == "dcgan" else (2,)
    kw = {"width": WIDTH} if arch == "dcgan" else {"hidden": 64}
    G = build_generator(arch, shape, LATENT, norm="spectral", **kw)
    D = build_discriminator(arch, shape, norm="spectral", **kw)
    layers = sn_layers(G) + sn_layers(D)
    assert len(layers) == 3 + 4  # G: hidden layers only; D: every layer
    # Blow each raw weight up to spectral norm 3 so that a layer *without* working normalisation
    # would fail below (sigma 3, not 1). Scaling leaves the singular vectors, so the power
    # iteration's stored vectors stay valid.
    with torch.no_grad():
        for layer in layers:
            raw = layer.parametrizations.weight.original
            w = raw.transpose(0, 1) if isinstance(layer, nn.ConvTranspose2d) else raw
            raw.mul_(3.0 / torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2))
    G.train(), D.train()
    with torch.no_grad():
        for _ in range(20):  # one power iteration per layer per train-mode forward pass
            D(G(torch.randn(8, LATENT)))
    G.eval(), D.eval()  # eval: read W / sigma_hat without yet another iteration
    for layer in layers:
        # sigma_hat approaches sigma from below, so W / sigma_hat has spectral norm >= 1
        assert weight_sigma(layer) == pytest.approx(1.0, abs=0.02)


# --------------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arch, shape, params",
    [
        ("dcgan", (1, 28, 28), {"width": WIDTH, "norm": "batch"}),
        ("dcgan", (3, 32, 32), {"width": WIDTH, "norm": "spectral", "dropout": 0.2}),
        ("dcgan", (3, 64, 64), {"width": WIDTH, "norm": "none"}),
        ("mlp", (2,), {"norm": "batch"}),
        ("mlp", (1, 28, 28), {"norm": "spectral", "dropout": 0.2}),
    ],
)
def test_gradient_flows_from_d_logit_to_every_g_parameter(arch, shape, params):
    G = build_generator(arch, shape, LATENT, **params)
    D = build_discriminator(arch, shape, **params)
    D(G(torch.randn(8, LATENT))).mean().backward()
    named = list(G.named_parameters())
    assert named
    for name, p in named:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("shape", [(2,), (5,), (1, 28, 28)])
def test_mlp_shapes(shape, norm):
    G = build_generator("mlp", shape, LATENT, hidden=32, depth=2, norm=norm)
    D = build_discriminator("mlp", shape, hidden=32, depth=2, norm=norm)
    assert G.latent_dim == LATENT and G.data_shape == shape and D.data_shape == shape
    x = G(torch.randn(BATCH, LATENT))
    assert x.shape == (BATCH, *shape)
    assert D(x).shape == (BATCH,)
    assert sum(isinstance(m, nn.Linear) for m in G.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.modules()) == (2 if norm == "batch" else 0)
    assert len(sn_layers(D)) == (3 if norm == "spectral" else 0)  # all of D's layers
    assert len(sn_layers(G)) == (2 if norm == "spectral" else 0)  # hidden layers of G


def test_mlp_output_modes_and_defaults():
    G_lin = build_generator("mlp", (2,), LATENT)
    G_tanh = build_generator("mlp", (1, 28, 28), LATENT, output="tanh")
    D = build_discriminator("mlp", (2,))
    z = 50 * torch.randn(64, LATENT)
    assert G_lin(z).abs().max() > 1  # linear output is unbounded (toy data)
    assert G_tanh(z).abs().max() <= 1
    assert sum(isinstance(m, nn.Linear) for m in G_lin.modules()) == 3 + 1  # depth 3 by default
    assert isinstance(G_lin.net.block1[1], nn.ReLU)
    assert isinstance(D.net.block1[1], nn.LeakyReLU) and D.net.block1[1].negative_slope == 0.2
    logits = D(50 * torch.randn(64, 2))
    assert logits.min() < 0 < logits.max() and logits.abs().max() > 1  # raw logits, not probabilities


def test_mlp_depth_zero_is_linear_gaussian():
    G = build_generator("mlp", (3,), LATENT, depth=0)
    D = build_discriminator("mlp", (3,), depth=0)
    assert [type(m) for m in G.modules() if not isinstance(m, (nn.Sequential, type(G)))] == [nn.Linear]
    assert D(G(torch.randn(BATCH, LATENT))).shape == (BATCH,)


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"activation": "gelu"}, "activation='gelu'"),
        ({"norm": "layer"}, "norm='layer'"),
        ({"dropout": 1}, "dropout=1"),
        ({"depth": -1}, "depth=-1"),
        ({"hidden": 0}, "hidden=0"),
        ({"output": "sigmoid"}, "output='sigmoid'"),
    ],
)
def test_mlp_bad_params(params, needle):
    with pytest.raises(ConfigError, match=needle):
        build_generator("mlp", (2,), LATENT, **params)
    if "output" not in params:
        with pytest.raises(ConfigError, match=needle):
            build_discriminator("mlp", (2,), **params)
    else:  # the discriminator has no output activation to choose
        with pytest.raises(ConfigError, match="output"):
            build_discriminator("mlp", (2,), **params)


def test_mlp_dropout_after_every_hidden_layer():
    G = build_generator("mlp", (2,), LATENT, depth=4, dropout=0.25)
    assert dropout_blocks(G) == ["block1", "block2", "block3", "block4"]
    assert all(isinstance(m, nn.Dropout) and m.p == 0.25 for m in G.modules() if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("arch, shape", [("dcgan", (1, 28, 28)), ("dcgan", (3, 32, 32)), ("mlp", (2,))])
def test_discriminator_features_feed_the_logit(arch, shape):
    """features(x) is the penultimate representation; the logit is a linear read-out of it."""
    D = build_discriminator(arch, shape).eval()
    x = torch.randn(5, *shape)
    f = D.features(x)
    assert f.dim() == 2 and f.shape[0] == 5 and f.shape[1] > 1
    out = D.net[-1]
    if isinstance(out, torch.nn.Conv2d):  # a full-size conv over the base map is a linear map of the flattened features
        logit = f @ out.weight.flatten() + out.bias
    else:
        logit = out(f).squeeze(1)
    assert torch.allclose(logit, D(x), atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "none", "spectral"])
def test_dcgan_base_convs_add_3x3_layers_at_the_base_resolution_and_nothing_else(norm):
    """k 3×3 convolutions (with the block's norm and activation) join G's block 1 and D's last block,
    shapes are unchanged, the parameter count grows by exactly their weights, and base_convs=0 is the
    plain network down to its initial weights."""
    torch.manual_seed(0)
    G0 = build_generator("dcgan", (1, 28, 28), LATENT, width=WIDTH, norm=norm)
    D0 = build_discriminator("dcgan", (1, 28, 28), width=WIDTH, norm=norm)
    torch.manual_seed(0)
    Gz = build_generator("dcgan", (1, 28, 28), LATENT, width=WIDTH, norm=norm, base_convs=0)
    Dz = build_discriminator("dcgan", (1, 28, 28), width=WIDTH, norm=norm, base_convs=0)
    for a, b in ((G0, Gz), (D0, Dz)):
        assert a.state_dict().keys() == b.state_dict().keys()
        assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    k = 2
    G = build_generator("dcgan", (1, 28, 28), LATENT, width=WIDTH, norm=norm, base_convs=k)
    D = build_discriminator("dcgan", (1, 28, 28), width=WIDTH, norm=norm, base_convs=k)
    g_ch, d_ch = 2 * WIDTH, 2 * WIDTH  # channels at 7×7: G's block 1 and D's block 2
    per_g = g_ch * g_ch * 9 + (2 * g_ch if norm == "batch" else g_ch)  # weight + (BN affine | bias)
    bn_d = norm == "batch"  # D's block 2 carries BatchNorm with norm="batch" (never block 1)
    per_d = d_ch * d_ch * 9 + (2 * d_ch if bn_d else d_ch)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(G) - count(G0) == k * per_g and count(D) - count(D0) == k * per_d
    convs = lambda block: [m for m in block.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs(G.net.block1)) == k and len(convs(D.net.block2)) == k
    assert not convs(G.net.block2) and not convs(D.net.block1)
    x = G(torch.randn(5, LATENT))
    assert x.shape == (5, 1, 28, 28) and D(x).shape == (5,)
    if norm == "spectral":  # every hidden convolution of G and every convolution of D is normalised
        assert all(torch.nn.utils.parametrize.is_parametrized(c) for c in convs(G.net.block1) + convs(D.net.block2))
    else:
        assert not any(torch.nn.utils.parametrize.is_parametrized(c) for c in convs(G.net.block1) + convs(D.net.block2))


@pytest.mark.parametrize("value, problem", [(-1, "base_convs=-1"), (1.5, "base_convs=1.5"), (True, "base_convs=True")])
def test_dcgan_base_convs_must_be_a_count(value, problem):
    with pytest.raises(ConfigError, match=problem):
        build_discriminator("dcgan", (1, 28, 28), width=WIDTH, base_convs=value)


def test_dcgan_base_convs_and_growing_are_refused_together():
    with pytest.raises(ConfigError, match="base_convs=1 with progressive=True is not supported"):
        build_generator("dcgan", (1, 28, 28), LATENT, width=WIDTH, base_convs=1, progressive=True)
