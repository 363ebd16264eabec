"""Progressive growing: the networks at every growth, the schedule, and training through it (resume
mid-fade bit for bit, the EMA generator and a loaded run at the trained growth)."""

import pytest
import torch
from torch.nn import functional as F

from conftest import tiny_dcgan_overrides
from resume_helpers import straight_and_resumed
from statgan import config
from statgan.errors import ConfigError
from statgan.nets import build_discriminator, build_generator
from statgan.nets.growing import growth_point
from statgan.regularizers.grow import ProgressiveGrowing, growth_at
from statgan.rundir.run import load_generator
from statgan.train.trainer import Trainer

SHAPE = (1, 28, 28)


def _pair(seed: int = 0, **kw):
    torch.manual_seed(seed)
    G = build_generator("dcgan", SHAPE, 8, width=4, progressive=True, **kw)
    D = build_discriminator("dcgan", SHAPE, width=4, norm="none", progressive=True)
    return G.eval(), D.eval()


def test_growth_point():
    assert growth_point(0.0) == (0, 0.0)
    assert growth_point(1.0) == (1, 0.0)
    assert growth_point(1.25) == (2, 0.25)
    assert growth_point(0.5) == (1, 0.5)


@pytest.mark.parametrize("family", ["generator", "discriminator"])
def test_full_growth_is_the_plain_network(family):
    """Same seed, same weights, same outputs: the option adds heads and changes nothing else."""
    torch.manual_seed(3)
    x = torch.randn(6, 8) if family == "generator" else torch.rand(6, *SHAPE) * 2 - 1
    nets = []
    for progressive in (False, True):
        torch.manual_seed(0)
        if family == "generator":
            nets.append(build_generator("dcgan", SHAPE, 8, width=4, progressive=progressive).eval())
        else:
            nets.append(build_discriminator("dcgan", SHAPE, width=4, progressive=progressive).eval())
    plain, grown = nets
    assert set(plain.state_dict()) < set(grown.state_dict())
    for k, v in plain.state_dict().items():
        assert torch.equal(v, grown.state_dict()[k]), k
    assert torch.equal(plain(x), grown(x))


def test_low_resolution_images_are_repeated_pixels():
    G, _ = _pair()
    z = torch.randn(4, 8)
    for growth, block in ((0.0, 4), (1.0, 2)):
        G.set_growth(growth)
        x = G(z)
        assert x.shape == (4, *SHAPE)
        small = x[:, :, ::block, ::block]
        assert torch.equal(small.repeat_interleave(block, 2).repeat_interleave(block, 3), x)
        assert x.abs().max() <= 1.0


def test_fade_is_the_linear_blend_of_the_two_resolutions():
    """Against an independent computation from the networks' own layers: y = (1-α)·up(rgb₀(h₀)) + α·rgb₁(h₁)."""
    G, D = _pair()
    z = torch.randn(5, 8)
    alpha = 0.3
    G.set_growth(alpha)  # fading from 7x7 (index 0) into 14x14 (index 1)
    h0 = G.net.block1(z.reshape(5, 8, 1, 1))
    h1 = G.net.block2(h0)
    old = F.interpolate(G.to_rgb[0](h0), scale_factor=2, mode="nearest")
    expected = F.interpolate((1 - alpha) * old + alpha * G.to_rgb[1](h1), scale_factor=2, mode="nearest")
    torch.testing.assert_close(G(z), expected, rtol=1e-6, atol=1e-6)

    D.set_growth(alpha)
    x = torch.rand(5, *SHAPE) * 2 - 1
    x14 = F.avg_pool2d(x, 2)
    h_new = D.net.block2(D.from_rgb[1](x14))
    h_old = D.from_rgb[0](F.avg_pool2d(x14, 2))
    expected_d = D.net.output((1 - alpha) * h_old + alpha * h_new).flatten()
    torch.testing.assert_close(D(x), expected_d, rtol=1e-5, atol=1e-6)


def test_discriminator_sees_the_generators_small_image_exactly():
    """Average-pooling a pixel-repeated image returns it, so D at growth 0 reads G's 7x7 image."""
    G, D = _pair()
    G.set_growth(0.0)
    D.set_growth(0.0)
    x = G(torch.randn(3, 8))
    small = x[:, :, ::4, ::4]
    torch.testing.assert_close(D(x), D.net.output(D.from_rgb[0](small)).flatten(), rtol=1e-5, atol=1e-6)


def test_growth_out_of_range_is_refused():
    G, _ = _pair()
    with pytest.raises(ValueError, match=r"growth=2.5 must lie in \[0, 2\]"):
        G.set_growth(2.5)


def test_schedule():
    # start index 0 of n = 2: 0 for 10 steps, fade 0 -> 1 over 10, 1 for 10, fade 1 -> 2 over 10, then 2
    assert [growth_at(s, 0, 2, 10, 10) for s in (0, 9, 10, 15, 20, 29, 30, 35, 40, 1000)] == \
        [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0, 2.0]
    assert growth_at(3, 1, 2, 5, 0) == 1.0 and growth_at(5, 1, 2, 5, 0) == 2.0  # no fade: a switch
    assert growth_at(4, 1, 2, 0, 8) == 1.5  # no stable phase: fading from the first step


def test_schedule_checks_its_start():
    G, D = _pair()
    with pytest.raises(ConfigError, match=r"start=28 is not a resolution .* expected one of 7, 14"):
        ProgressiveGrowing(start=28).start_step(0, G, D)
    with pytest.raises(ConfigError, match="stable=0 and fade=0"):
        ProgressiveGrowing(stable=0, fade=0)
    ProgressiveGrowing(start=14, stable=2, fade=2).start_step(3, G, D)
    assert float(G.growth) == float(D.growth) == 1.5


def _grow_overrides(tmp_path, name, steps):
    return tiny_dcgan_overrides(tmp_path, **{
        "run.name": name, "train.steps": steps, "regularizers.grow": "{stable: 3, fade: 4}",
        "model.generator": "{width: 4, norm: batch}", "model.discriminator": "{width: 4, norm: none}",
        "train.log_every": 3, "train.ema_decay": 0.9})


def test_training_grows_and_resumes_mid_fade_bit_identically(tmp_path, one_thread):
    # 3 stable + 4 fade per resolution: step 5 is mid-fade (growth 0.5 at step 5); full size from step 14
    straight, resumed = straight_and_resumed(tmp_path, lambda name, n: _grow_overrides(tmp_path, name, n), 16, 5)
    for (k, x), (_, y) in zip(straight.G.state_dict().items(), resumed.G.state_dict().items()):
        assert torch.equal(x, y), k
    for (k, x), (_, y) in zip(straight.D.state_dict().items(), resumed.D.state_dict().items()):
        assert torch.equal(x, y), k
    assert float(straight.G.growth) == float(straight.sampler.growth) == 2.0


def test_loaded_generator_keeps_the_trained_growth(tmp_path, one_thread):
    """A run stopped while still at 7x7: its EMA generator loads at growth 0 and draws 7x7 images."""
    t = Trainer(config.load("mnist5k-dcgan", _grow_overrides(tmp_path, "early", 2)), tmp_path / "early")
    t.fit()
    G, _ = load_generator(tmp_path / "early")
    assert float(G.growth) == 0.0
    x = G(torch.randn(2, 8))
    assert torch.equal(x[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3), x)


def test_grow_needs_a_network_that_can_grow(tmp_path):
    with pytest.raises(ConfigError, match="progressive"):
        config.validate(config.load("mnist5k-dcgan", [
            "model.arch=mlp", "model.generator={hidden: 8}", "model.discriminator={hidden: 8}",
            "regularizers.grow={stable: 2}"]))
