"""``model.arch=resnet``: the normalisation-free R3GAN-style networks (shapes, no normalisation
layers, identity blocks at init, resampling, minibatch stddev, parameter counts, config errors)."""

import pytest
import torch

from statgan import config, nets
from statgan.errors import ConfigError
from statgan.nets.resnet import ResidualBlock, Resample, ResNetDiscriminator, ResNetGenerator, lowpass_kernel, minibatch_stddev
from statgan.train.trainer import Trainer

from conftest import tiny_dcgan_overrides

#: trainable parameters of the default networks (latent_dim 100), as stated in docs/quality.md
PARAMS = {
    (1, 28, 28): (19080, 15913),
    (3, 28, 28): (19096, 15929),
    (1, 32, 32): (49640, 43305),
    (3, 32, 32): (49656, 43321),
    (3, 64, 64): (149752, 137081),
}
NORM_LAYERS = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm,
               torch.nn.modules.instancenorm._InstanceNorm, torch.nn.LocalResponseNorm)


@pytest.mark.parametrize("shape", sorted(PARAMS))
def test_shapes_range_and_parameter_counts(shape):
    torch.manual_seed(0)
    G = nets.build_generator("resnet", shape, 100)
    D = nets.build_discriminator("resnet", shape)
    assert isinstance(G, ResNetGenerator) and isinstance(D, ResNetDiscriminator)
    x = G(torch.randn(5, 100))
    assert x.shape == (5, *shape) and x.abs().max() <= 1
    assert D(x).shape == (5,) and D.features(x).shape == (5, 8 * 2 ** (len(G.stages) - 1))
    assert G.data_shape == D.data_shape == shape and G.latent_dim == 100
    assert (nets.count_parameters(G), nets.count_parameters(D)) == PARAMS[shape]


def test_28px_starts_from_a_7x7_basis_and_32px_from_4x4():
    assert nets.build_generator("resnet", (1, 28, 28), 8).basis.shape[-2:] == (7, 7)
    assert nets.build_generator("resnet", (3, 32, 32), 8).basis.shape[-2:] == (4, 4)
    assert nets.build_discriminator("resnet", (3, 64, 64)).basis.kernel_size == (4, 4)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64)])
def test_no_normalisation_layers_anywhere(shape):
    for net in (nets.build_generator("resnet", shape, 16), nets.build_discriminator("resnet", shape, mbstd=True)):
        assert not [m for m in net.modules() if isinstance(m, NORM_LAYERS)]
        assert not any("norm" in type(m).__name__.lower() for m in net.modules())


def test_residual_branches_are_zero_at_init():
    torch.manual_seed(0)
    G = nets.build_generator("resnet", (3, 32, 32), 16, blocks=2)
    D = nets.build_discriminator("resnet", (3, 32, 32), blocks=[1, 2, 1, 1])
    blocks = [m for net in (G, D) for m in net.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 8 + 5
    for block in blocks:
        c = block.conv1.in_channels
        x = torch.randn(2, c, 8, 8)
        assert torch.equal(block.branch(x), torch.zeros_like(x))
        assert torch.equal(block(x), x)  # the block is its shortcut
        assert block.conv3.bias is None and block.conv1.bias is not None  # bias + LeakyReLU on the first two
    # the zero convolution still learns: D's loss has a gradient on every branch's last layer
    D(G(torch.randn(4, 16))).sum().backward()
    assert all(b.conv3.weight.grad is not None and b.conv3.weight.grad.abs().sum() > 0 for b in blocks)


def test_gain_scaling_by_the_number_of_blocks():
    """First two branch convolutions are N(0, g²/fan_in), g = √(2/1.04) · L^(-1/4): deeper networks
    start with smaller branches (R3GAN's variance scaling)."""
    torch.manual_seed(0)
    stds = {}
    for blocks in (1, 16):
        G = nets.build_generator("resnet", (1, 32, 32), 8, width=32, blocks=blocks)
        block = next(m for m in G.modules() if isinstance(m, ResidualBlock))
        fan_in = block.conv1.weight[0].numel()
        stds[blocks] = block.conv1.weight.std().item() * fan_in ** 0.5
    n1, n16 = 4 * 1, 4 * 16  # 4 stages at 32 px
    g = (2 / 1.04) ** 0.5
    assert stds[1] == pytest.approx(g * n1 ** -0.25, rel=0.1)
    assert stds[16] == pytest.approx(g * n16 ** -0.25, rel=0.1)


def test_resampling_is_the_1_3_3_1_lowpass():
    k = lowpass_kernel()
    assert torch.allclose(k, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    ones = torch.ones(1, 2, 8, 8)
    down, up = Resample(up=False)(ones), Resample(up=True)(ones)
    assert down.shape == (1, 2, 4, 4) and up.shape == (1, 2, 16, 16)
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1, 2, 2, 2))  # constant away from the zero padding
    assert torch.allclose(up[..., 1:-1, 1:-1], torch.ones(1, 2, 14, 14))
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1.0  # an impulse spreads as the kernel
    # output i reads input rows 2i-1 .. 2i+2 with weights [1, 3, 3, 1]/8: row 4 feeds i = 1 (1/8) and i = 2 (3/8)
    assert torch.allclose(Resample(up=False)(x)[0, 0, 1:3, 1:3] * 64, torch.tensor([[1.0, 3], [3, 9]]))
    assert Resample(up=False)(x).sum().item() == pytest.approx(1.0 / 4)


def test_minibatch_stddev_sees_the_other_samples():
    torch.manual_seed(0)
    D = nets.build_discriminator("resnet", (1, 28, 28), mbstd=True)
    plain = nets.build_discriminator("resnet", (1, 28, 28))
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    y = x.clone()
    y[2] = -y[2]  # sample 2 shares sample 0's group {0, 2, 4, 6} (groups of 4, strided as StyleGAN2)
    assert not torch.allclose(D(x)[0], D(y)[0])
    assert torch.allclose(D(x)[1], D(y)[1])  # group {1, 3, 5, 7} unchanged
    assert torch.allclose(plain(x)[0], plain(y)[0])  # without the layer each sample is on its own
    same = x[:1].expand(8, 1, 28, 28)
    assert torch.allclose(minibatch_stddev(torch.ones(4, 3, 2, 2), 4)[:, 3], torch.full((4, 2, 2), 1e-4))
    assert (minibatch_stddev(x, 4)[:, 1] > minibatch_stddev(same, 4)[:, 1]).all()
    assert minibatch_stddev(torch.randn(6, 2, 3, 3), 4).shape == (6, 3, 3, 3)  # 6 % 4 != 0: groups of 3
    assert D(x[:1]).shape == (1,)  # a single sample works (group of 1)


def test_tanh_switch_and_blocks_per_stage():
    G = nets.build_generator("resnet", (1, 28, 28), 8, tanh=False, blocks=[2, 1, 0])
    assert G.blocks == (2, 1, 0)
    assert sum(isinstance(m, ResidualBlock) for m in G.modules()) == 3
    assert not any(isinstance(m, torch.nn.Tanh) for m in G.modules())


@pytest.mark.parametrize("build, params, match", [
    ("generator", {"norm": "batch"}, "has no parameter 'norm'"),
    ("discriminator", {"dropout": 0.1}, "has no parameter 'dropout'"),
    ("generator", {"width": 0}, "width=0 must be an integer >= 1"),
    ("discriminator", {"blocks": [1, 1]}, "must list 3 stages"),
    ("discriminator", {"blocks": -1}, "blocks=-1"),
    ("generator", {"group_width": 3}, "group_width=3 does not divide"),
    ("discriminator", {"mbstd": "yes"}, "mbstd='yes' must be true or false"),
    ("generator", {"tanh": 1}, "tanh=1 must be true or false"),
])
def test_bad_parameters_are_one_line_config_errors(build, params, match):
    with pytest.raises(ConfigError, match=match) as info:
        if build == "generator":
            nets.build_generator("resnet", (1, 28, 28), 8, **params)
        else:
            nets.build_discriminator("resnet", (1, 28, 28), **params)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="image size 48 is not supported"):
        nets.build_discriminator("resnet", (3, 48, 48))


def test_trains_as_model_arch_resnet(tmp_path, one_thread):
    overrides = tiny_dcgan_overrides(tmp_path, **{"model.arch": "resnet", "objective.name": "rpgan", "train.steps": 3,
                                                  "train.log_every": 3, "model.generator": "{width: 4}",
                                                  "model.discriminator": "{width: 4, mbstd: true}"})
    cfg = config.load("mnist5k-dcgan", overrides)
    trainer = Trainer(cfg, tmp_path / "dcgan")
    trainer.fit()
    assert isinstance(trainer.G, ResNetGenerator) and trainer.step == 3
