"""The relativistic pairing objective ``rpgan`` (R3GAN's loss): closed-form values on fixed logits,
what makes it differ from ``ragan``, its optimum and gradients, and a short toy training run."""

import math

import pytest
import torch

from statgan import config, objectives
from statgan.objectives.rpgan import RpGAN
from statgan.rundir.run import read_metrics
from statgan.train.trainer import Trainer


def softplus(u: float) -> float:
    return math.log1p(math.exp(u))


def test_registered_with_aliases():
    assert isinstance(objectives.get("rpgan"), RpGAN)
    assert objectives.get("relativistic_pairing").name == "rpgan"
    assert "rpgan" in objectives.names()


def test_values_on_fixed_logits():
    r = torch.tensor([2.0, 0.5, -1.0])
    f = torch.tensor([0.0, 1.0, -3.0])
    obj = objectives.get("rpgan")
    # L_D = mean softplus(-(r - f)) over the pairs (2, 0), (0.5, 1), (-1, -3)
    d = (softplus(-2.0) + softplus(0.5) + softplus(-2.0)) / 3
    # L_G = mean softplus(-(f - r))
    g = (softplus(2.0) + softplus(-0.5) + softplus(2.0)) / 3
    assert obj.d_loss(r, f).item() == pytest.approx(d, rel=1e-6)
    assert obj.g_loss(f, r).item() == pytest.approx(g, rel=1e-6)
    # equal logits: every pair is a coin toss, log 2 for both players
    c = torch.full((5,), 0.7)
    assert obj.d_loss(c, c).item() == pytest.approx(math.log(2), rel=1e-6)
    assert obj.g_loss(c, c).item() == pytest.approx(math.log(2), rel=1e-6)


def test_pairing_differs_from_the_batch_means_of_ragan():
    """ragan compares each sample with the other side's batch mean, so re-pairing the batch leaves
    it unchanged; rpgan compares pairs, so re-pairing changes it."""
    r = torch.tensor([3.0, -1.0, 0.0, 2.0])
    f = torch.tensor([-2.0, 1.0, 0.5, 0.0])
    perm = torch.tensor([3, 2, 1, 0])
    rp, ra = objectives.get("rpgan"), objectives.get("ragan")
    assert ra.d_loss(r, f[perm]).item() == pytest.approx(ra.d_loss(r, f).item(), rel=1e-6)
    assert rp.d_loss(r, f[perm]).item() != pytest.approx(rp.d_loss(r, f).item(), rel=1e-3)
    assert rp.d_loss(r, f).item() != pytest.approx(ra.d_loss(r, f).item(), rel=1e-3)


def test_optimum_is_log2_when_the_distributions_match():
    """p_g = p_data: E softplus(-(D(x) - D(y))) >= log 2 for every D (x, y iid; convexity), with
    equality for a constant D. Checked for a few linear D on 20,000 paired samples."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20_000, 2, generator=g), torch.randn(20_000, 2, generator=g)
    obj = objectives.get("rpgan")
    for w in ([0.0, 0.0], [1.0, 0.0], [0.5, -2.0], [3.0, 3.0]):
        w = torch.tensor(w)
        loss = obj.d_loss(x @ w, y @ w).item()
        assert loss >= math.log(2) - 0.01
    assert obj.d_loss(x @ torch.zeros(2), y @ torch.zeros(2)).item() == pytest.approx(math.log(2))


def test_gradients_are_the_pairwise_sigmoids():
    """dL_G/df_i = -σ(r_i - f_i)/B and dL_D/dr_i = -σ(f_i - r_i)/B: non-saturating (→ -1/B) when a
    generated sample loses its pair badly, zero when it already wins."""
    r = torch.tensor([0.0, 5.0, -8.0, 1.0])
    f = torch.tensor([0.0, -5.0, 8.0, 1.5], requires_grad=True)
    obj = objectives.get("rpgan")
    (gf,) = torch.autograd.grad(obj.g_loss(f, r), f)
    assert torch.allclose(gf, -torch.sigmoid(r - f.detach()) / 4)
    assert gf[1].item() == pytest.approx(-0.25, abs=1e-4)  # far behind: full gradient
    assert gf[2].item() == pytest.approx(0.0, abs=1e-4)  # far ahead: nothing to learn
    assert (gf < 0).all()  # G always pushes its logits up
    rr = r.clone().requires_grad_(True)
    (gr,) = torch.autograd.grad(obj.d_loss(rr, f.detach()), rr)
    assert torch.allclose(gr, -torch.sigmoid(f.detach() - r) / 4)


def test_generator_hook_uses_the_real_batch_without_a_graph():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    real = torch.randn(6, 3, requires_grad=True)
    fake = torch.randn(6, 3, requires_grad=True)
    obj = objectives.get("rpgan")

    def critic(x):
        return D(x).squeeze(1)

    loss = obj.generator_loss(critic, real, fake)
    assert loss.item() == pytest.approx(obj.g_loss(critic(fake), critic(real)).item(), rel=1e-6)
    loss.backward()
    assert real.grad is None  # no gradient through the real half (D is fixed in the G step)
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_errors():
    obj = objectives.get("rpgan")
    with pytest.raises(TypeError, match="needs real_logits"):
        obj.g_loss(torch.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        obj.d_loss(torch.zeros(4), torch.zeros(3))


def test_trains_on_the_toy_preset_without_diverging(tmp_path, one_thread):
    """The 8-Gaussians preset with rpgan, 100 steps: finite losses that stay near their log 2
    equilibrium (neither player wins outright), generated points stay in a bounded region."""
    overrides = ["objective.name=rpgan", "train.steps=100", "train.log_every=25", "train.sample_every=0",
                 "train.checkpoint_every=0", "train.progress=false", "train.tensorboard=false",
                 f"run.out_dir={tmp_path}", "run.name=rp", "train.threads=1"]
    cfg = config.load("toy-8gaussians", overrides)
    trainer = Trainer(cfg, tmp_path / "rp")
    trainer.fit()
    records = [r for r in read_metrics(tmp_path / "rp") if "g_loss" in r]
    assert [r["step"] for r in records] == [25, 50, 75, 100]
    for r in records:
        assert math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"])
        assert 0.05 < r["d_loss"] < 3.0 and 0.05 < r["g_loss"] < 5.0
    with torch.no_grad():
        x = trainer.G(torch.randn(512, cfg.model.latent_dim))
    assert torch.isfinite(x).all() and x.abs().max() < 10  # the data live within radius ~2.1
