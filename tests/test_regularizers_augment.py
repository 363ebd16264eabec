"""Differentiable augmentation (``augment``: DiffAugment's colour / translation / cutout with ADA's
adaptive probability): shapes, ranges, gradients, exact identity at p = 0, seeded and resumable
randomness, and the direction in which ADA moves p."""

import math

import pytest
import torch

from statgan import regularizers
from statgan.errors import ConfigError
from statgan.regularizers import LossContext
from statgan.regularizers.augment import DiffAugment, cutout_mask, translate

from conftest import tiny_dcgan_overrides
from resume_helpers import straight_and_resumed


def _images(b=8, c=1, s=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, s, s, generator=g) * 2 - 1


def _aug(seed=0, **params) -> DiffAugment:
    a = regularizers.get("augment", **params)
    a.bind(seed, torch.device("cpu"))
    return a


def test_registered_and_parameters():
    a = regularizers.get("augment")
    assert isinstance(a, DiffAugment) and a.p == 1.0 and a.policy == ("color", "translation", "cutout")
    assert regularizers.get("diffaugment").name == "augment"
    assert regularizers.get("augment", policy="cutout, translation").policy == ("translation", "cutout")
    assert regularizers.get("augment", policy=["color"]).policy == ("color",)
    assert regularizers.get("augment", ada_target=0.6).p == 0.0  # ADA starts from p = 0


@pytest.mark.parametrize("params, match", [
    ({"policy": "color,flip"}, "policy 'flip' is not one of"),
    ({"policy": ""}, "policy"),
    ({"p": 1.5}, "p=1.5 is not allowed"),
    ({"p": -0.1}, "p=-0.1 is not allowed"),
    ({"ada_target": 1.0}, "ada_target=1.0 is not allowed"),
    ({"ada_interval": 0}, "ada_interval=0"),
    ({"ada_kimg": 0}, "ada_kimg=0 is not allowed"),
    ({"strength": 1}, "no parameter 'strength'"),
])
def test_bad_parameters_are_one_line_config_errors(params, match):
    with pytest.raises(ConfigError, match=match) as info:
        regularizers.get("augment", **params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
@pytest.mark.parametrize("shape", [(1, 28), (3, 32), (3, 64)])
def test_shapes_and_gradients(policy, shape):
    c, s = shape
    x = _images(4, c, s).requires_grad_(True)
    y = _aug(policy=policy).transform_real(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    (g,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), x)
    assert g.abs().sum() > 0  # the gradient reaches the input


def test_gradient_flows_through_to_the_generator():
    G = torch.nn.Linear(5, 28 * 28)
    fake = torch.tanh(G(torch.randn(6, 5))).reshape(6, 1, 28, 28)
    out = _aug().transform_fake(fake)
    out.square().sum().backward()
    assert G.weight.grad is not None and G.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("policy", ["translation", "cutout", "translation,cutout"])
def test_translation_and_cutout_keep_the_range(policy):
    x = _images(64, 3, 32).sign()  # only the extreme values -1 and 1
    y = _aug(policy=policy).augment(x)
    assert y.min() >= -1 and y.max() <= 1
    assert set(torch.unique(y).tolist()) <= {-1.0, 0.0, 1.0}  # pixels copied or zeroed, nothing else


def test_p_zero_is_the_identity_exactly():
    x = _images(8, 3, 32)
    a = _aug(p=0.0)
    assert a.transform_real(x) is x and a.transform_fake(x) is x
    before = a.gen.get_state()
    a.augment(x)
    assert torch.equal(a.gen.get_state(), before)  # nothing drawn either


def test_unselected_samples_pass_bit_exactly():
    x = _images(2000, 1, 28)[:1].expand(2000, 1, 28, 28).contiguous()  # one image, many times
    y = _aug(policy="translation", p=0.5).augment(x)
    unchanged = (y == x).flatten(1).all(1).float().mean().item()
    # unchanged: not selected (1/2) or selected with the zero shift (1/2 · 1/81 at 28 px, s = 4)
    expected = 0.5 + 0.5 / 81
    assert abs(unchanged - expected) < 4 * math.sqrt(expected * (1 - expected) / 2000)


def test_same_seed_same_augmentation_and_independent_samples():
    x = _images(16, 3, 32)
    a, b, c = _aug(seed=3), _aug(seed=3), _aug(seed=4)
    ya, yb, yc = a.augment(x), b.augment(x), c.augment(x)
    assert torch.equal(ya, yb) and not torch.equal(ya, yc)
    assert not torch.equal(a.augment(x), ya)  # a fresh draw on every call
    same = _images(1, 3, 32).expand(16, 3, 32, 32)
    out = _aug(seed=5).augment(same)
    assert len({tuple(o.flatten().tolist()) for o in out}) == 16  # every sample drawn on its own


def test_state_restores_the_stream():
    x = _images(8, 1, 28)
    a = _aug(seed=1)
    a.augment(x)
    state = a.state_tensors()
    nxt = a.augment(x)
    b = _aug(seed=99)
    b.load_state_tensors(state, "ckpt")
    assert torch.equal(b.augment(x), nxt)


def test_translate_and_cutout_geometry():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = translate(x, torch.tensor([1]), torch.tensor([-1]))
    # out[i, j] = x[i + 1, j - 1], 0 outside
    expected = torch.tensor([[0, 4, 5, 6], [0, 8, 9, 10], [0, 12, 13, 14], [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(y[0, 0], expected)
    m = cutout_mask((2, 1, 28, 28), torch.tensor([14, 0]), torch.tensor([14, 0]), (14, 14), torch.device("cpu"))
    assert int((~m[0]).sum()) == 14 * 14  # a centred square: whole
    assert int((~m[1]).sum()) == 7 * 7  # centred on the corner: a quarter inside


def test_colour_on_one_channel_is_brightness_and_contrast():
    """Saturation is the identity on one-channel images, so every output is an affine map of its
    input: out - mean(out) = c · (x - mean(x)) with c in [0.5, 1.5], and the mean moves by at most 0.5."""
    x = _images(32, 1, 28)
    y = _aug(policy="color").augment(x)
    dx, dy = x - x.mean((1, 2, 3), keepdim=True), y - y.mean((1, 2, 3), keepdim=True)
    c = (dy * dx).sum((1, 2, 3)) / dx.square().sum((1, 2, 3))
    assert torch.allclose(dy, c.view(-1, 1, 1, 1) * dx, atol=1e-5)
    assert (c >= 0.5 - 1e-5).all() and (c <= 1.5 + 1e-5).all()
    assert ((y.mean((1, 2, 3)) - x.mean((1, 2, 3))).abs() <= 0.5 + 1e-5).all()
    # three channels: saturation changes the channels unequally, so no single slope fits
    x3 = _images(32, 3, 28)
    y3 = _aug(policy="color").augment(x3)
    d3x, d3y = x3 - x3.mean((1, 2, 3), keepdim=True), y3 - y3.mean((1, 2, 3), keepdim=True)
    c3 = (d3y * d3x).sum((1, 2, 3)) / d3x.square().sum((1, 2, 3))
    assert not torch.allclose(d3y, c3.view(-1, 1, 1, 1) * d3x, atol=1e-3)


class ConstantD(torch.nn.Module):
    """D(x) = value for every sample, with a BatchNorm whose buffers must stay untouched."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.bn = torch.nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x[:, :1]).flatten(1).sum(1) * 0 + self.value


def _ada_steps(aug, D, steps, batch=32):
    x = _images(batch, 1, 28)
    for step in range(steps):
        aug.begin_batch(x, x, step)
        real = aug.transform_real(x)
        ctx = LossContext("discriminator", torch.zeros(()), real, aug.transform_fake(x), torch.nn.Identity(), D, step)
        assert aug.penalty(ctx) is None  # measures, adds no loss
        assert aug.penalty(ctx) is None  # a second evaluation of the same step measures nothing new
        assert aug.penalty(LossContext("generator", ctx.loss, real, ctx.fake, ctx.generator, D, step)) is None


def test_ada_raises_p_when_d_is_overconfident_on_reals():
    aug = _aug(ada_target=0.6, ada_interval=4, ada_kimg=1)  # 1,000 images move p by 1
    D = ConstantD(5.0)  # sign(D(real)) = +1 > 0.6: overfitting
    running = D.bn.running_mean.clone()
    _ada_steps(aug, D, 8)
    assert aug.p == pytest.approx(2 * 32 * 4 / 1000)  # two adjustments of B·interval / (kimg·1000)
    assert aug.scalars(8) == {"augment.p": pytest.approx(0.256), "augment.rt": 1.0}
    assert torch.equal(D.bn.running_mean, running)  # the measuring pass leaves D's buffers alone
    _ada_steps(aug, D, 100)
    assert aug.p == 1.0  # clipped


def test_ada_lowers_p_when_d_is_unsure():
    aug = _aug(ada_target=0.6, p=0.5, ada_interval=4, ada_kimg=1)
    _ada_steps(aug, ConstantD(-1.0), 8)  # r_t = -1 < 0.6
    assert aug.p == pytest.approx(0.5 - 0.256)
    assert aug.rt == -1.0
    _ada_steps(aug, ConstantD(-1.0), 40)
    assert aug.p == 0.0


def test_ada_state_round_trip_mid_interval():
    a = _aug(ada_target=0.6, ada_interval=4, ada_kimg=1)
    _ada_steps(a, ConstantD(5.0), 6)  # one adjustment done, two steps pending
    b = _aug(ada_target=0.6, ada_interval=4, ada_kimg=1)
    b.load_state_tensors(a.state_tensors(), "ckpt")
    for aug in (a, b):
        _ada_steps(aug, ConstantD(5.0), 2)
    assert a.p == b.p == pytest.approx(2 * 0.128)


def test_in_the_trainer_with_ada_resume_bit_identically(tmp_path, one_thread):
    extra = {"objective.name": "rpgan", "regularizers.augment": "{ada_target: 0.6, ada_interval: 2, ada_kimg: 0.2}",
             "train.steps": 6, "train.log_every": 3, "model.generator": "{width: 4}",
             "model.discriminator": "{width: 4}", "train.ema_decay": 0.9}

    straight, resumed = straight_and_resumed(
        tmp_path, lambda name, n: tiny_dcgan_overrides(tmp_path, **{**extra, "run.name": name, "train.steps": n}), 6, 3)
    for (k, x), (_, y) in zip(straight.D.state_dict().items(), resumed.D.state_dict().items()):
        assert torch.equal(x, y), k
    a, b = straight.regularizers["augment"], resumed.regularizers["augment"]
    assert a.p == b.p and a.p > 0  # p moved (ADA on) and moved alike
