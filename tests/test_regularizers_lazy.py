"""Lazy R1/R2 (``every: k``): applied on every k-th discriminator step with weight k·γ (StyleGAN2),
k = 1 exactly today's penalty, the schedule survives a checkpoint."""

import pytest
import torch

from statgan import regularizers
from statgan.errors import ConfigError
from statgan.objectives.penalties import outputs_and_input_gradients, squared_gradient_norms
from statgan.regularizers import LossContext

from conftest import toy_overrides
from resume_helpers import straight_and_resumed


class SmoothD(torch.nn.Module):
    """Tanh MLP critic: input gradients that depend on x, so R1 and R2 differ and are non-trivial."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    D = SmoothD()
    real, fake = torch.randn(32, 4), torch.randn(32, 4) + 1.0
    return D, real, fake


def _ctx(D, real, fake, net="discriminator"):
    return LossContext(net, torch.zeros(()), real, fake, torch.nn.Identity(), D, 0)


def _grads(term, D):
    # the output bias does not enter an input gradient: its penalty gradient is zero
    grads = torch.autograd.grad(term, list(D.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(D.parameters(), grads)]


@pytest.mark.parametrize("name, side", [("r1", "real"), ("r2", "fake")])
def test_every_1_is_bit_identical_to_the_plain_penalty(name, side):
    D, real, fake = _setup()
    reg = regularizers.get(name, weight=3.0, every=1)
    default = regularizers.get(name, weight=3.0)
    _, grad = outputs_and_input_gradients(D, real if side == "real" else fake)
    expected = 3.0 * (0.5 * squared_gradient_norms(grad).mean())
    for step in range(3):
        reg.begin_batch(real, fake, step)
        default.begin_batch(real, fake, step)
        a, b = reg.penalty(_ctx(D, real, fake)), default.penalty(_ctx(D, real, fake))
        assert torch.equal(a, expected) and torch.equal(b, expected)
    assert reg.state_tensors() == {}  # checkpoints of non-lazy runs are unchanged
    assert repr(reg) == repr(default) == f"{type(reg).__name__}(weight=3)"


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_lazy_schedule_and_weight(name):
    D, real, fake = _setup()
    k = 4
    lazy, plain = regularizers.get(name, weight=2.0, every=k), regularizers.get(name, weight=2.0)
    applied = []
    for step in range(10):
        lazy.begin_batch(real, fake, step)
        term = lazy.penalty(_ctx(D, real, fake))
        applied.append(term is not None)
        if term is not None:
            assert term.item() == pytest.approx(k * plain.penalty(_ctx(D, real, fake)).item(), rel=1e-6)
        assert lazy.penalty(_ctx(D, real, fake, net="generator")) is None
    assert applied == [True, False, False, False, True, False, False, False, True, False]


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_gradient_over_k_steps_equals_the_every_step_penalty(name):
    """On a fixed D and data, the parameter gradient summed over k discriminator steps is the same
    for lazy (one application with weight kγ) and plain (k applications with weight γ)."""
    D, real, fake = _setup(1)
    k = 16
    lazy, plain = regularizers.get(name, weight=0.5, every=k), regularizers.get(name, weight=0.5)
    sum_lazy = [torch.zeros_like(p) for p in D.parameters()]
    sum_plain = [torch.zeros_like(p) for p in D.parameters()]
    for step in range(k):
        for reg, acc in ((lazy, sum_lazy), (plain, sum_plain)):
            reg.begin_batch(real, fake, step)
            term = reg.penalty(_ctx(D, real, fake))
            if term is not None:
                for a, g in zip(acc, _grads(term, D)):
                    a += g
    for a, b in zip(sum_lazy, sum_plain):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert sum(b.abs().sum() for b in sum_plain) > 0


def test_counter_is_checkpointed():
    D, real, fake = _setup()
    a = regularizers.get("r1", every=3)
    for step in range(4):  # steps 1..4 begun: the 4th carried the penalty
        a.begin_batch(real, fake, step)
    state = a.state_tensors()
    assert set(state) == {"d_steps"} and int(state["d_steps"]) == 4
    b = regularizers.get("r1", every=3)
    b.load_state_tensors(state, "ckpt")
    for step in range(4, 10):
        a.begin_batch(real, fake, step)
        b.begin_batch(real, fake, step)
        assert (a.penalty(_ctx(D, real, fake)) is None) == (b.penalty(_ctx(D, real, fake)) is None)
    c = regularizers.get("r1", every=3)
    c.load_state_tensors({}, "old checkpoint")  # written before lazy R1 was on: a fresh schedule
    assert c.state_tensors()["d_steps"].item() == 0


@pytest.mark.parametrize("every, match", [(0, "every=0 must be an integer >= 1"), (2.5, "every=2.5"), (True, "every=True")])
def test_bad_every_is_a_one_line_config_error(every, match):
    with pytest.raises(ConfigError, match=match) as info:
        regularizers.get("r2", every=every)
    assert "\n" not in str(info.value)


def test_lazy_r1_r2_in_the_trainer_resume_bit_identically(tmp_path, one_thread):
    extra = {"objective.name": "rpgan", "regularizers.r1": "{weight: 1, every: 3}",
             "regularizers.r2": "{weight: 1, every: 2}", "train.log_every": 2}

    straight, resumed = straight_and_resumed(
        tmp_path, lambda name, n: toy_overrides(tmp_path, **{"run.name": name, "train.steps": n}, **extra), 8, 5)
    for (k, x), (_, y) in zip(straight.D.state_dict().items(), resumed.D.state_dict().items()):
        assert torch.equal(x, y), k
    assert resumed.regularizers["r1"].state_tensors()["d_steps"].item() == 8
