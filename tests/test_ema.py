"""The generator EMA: fixed decay, and the half-life with ramp-up of StyleGAN2-ADA."""

from __future__ import annotations

import math

import pytest
import torch

from statgan.errors import ConfigError
from statgan.regularizers.ema import EMA


def _net():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def test_fixed_decay_is_the_plain_recursion():
    net = _net()
    ema = EMA(net, decay=0.9)
    start = ema.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(1)
    assert torch.allclose(ema.module.weight, 0.9 * start + 0.1 * net.weight)
    assert ema.beta(1) == ema.beta(10_000) == 0.9


def test_half_life_and_ramp_up_follow_the_stylegan2_ada_formula():
    ema = EMA(_net(), halflife_images=10_000, rampup=0.05, batch_size=64)
    for step in (1, 10, 100, 1000, 10_000):
        half = min(10_000, 0.05 * 64 * step)
        assert ema.beta(step) == pytest.approx(0.5 ** (64 / half), rel=1e-12)
    # the average keeps half its weight after one half-life of images once the ramp is over
    late = 20_000
    steps_per_half_life = 10_000 / 64
    assert ema.beta(late) ** steps_per_half_life == pytest.approx(0.5, rel=1e-9)
    # early on it follows the model closely: after 500 steps of a short run little of the start is left,
    # unlike a fixed 0.999 (0.999^500 = 0.61)
    kept = math.prod(ema.beta(s) for s in range(1, 501))
    assert kept < 1e-6 and 0.999 ** 500 > 0.6
    no_ramp = EMA(_net(), halflife_images=10_000, batch_size=64)
    assert no_ramp.beta(1) == pytest.approx(0.5 ** (64 / 10_000))
    assert "half-life 10k images, ramp-up 0.05" in ema.describe() and "decay 0.999" in EMA(_net()).describe()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"halflife_images": 0}, "halflife_images must be a finite positive number"),
    ({"rampup": 0.05}, "a ramp-up needs a half-life"),
    ({"decay": 1.0}, "decay"),
])
def test_bad_settings_are_one_line_errors(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        EMA(_net(), **kwargs)
