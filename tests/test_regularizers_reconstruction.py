"""FastGAN's self-supervised discriminator loss (``regularizers.recon``)."""

import pytest
import torch

from conftest import tiny_dcgan_overrides
from statgan import config, regularizers
from statgan.errors import ConfigError
from statgan.nets import build_discriminator, build_generator
from statgan.regularizers import LossContext
from statgan.rundir.run import read_metrics
from statgan.train.trainer import Trainer

SHAPE = (1, 28, 28)


def _d(decoder: bool, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_discriminator("dcgan", SHAPE, width=4, norm="none", decoder=decoder, **kw)


def test_decoder_leaves_the_logit_as_it_was():
    x = torch.rand(5, *SHAPE) * 2 - 1
    assert torch.equal(_d(False)(x), _d(True)(x))


def test_penalty_is_the_weighted_mean_squared_error_of_the_decoded_real_images():
    """Against the layers composed by hand: λ · mean((dec(net[:-1](x)) - pool₂(x))²) at 28 px (decoder output
    14x14, the real images averaged over 2x2 blocks)."""
    D = _d(True)
    G = build_generator("dcgan", SHAPE, 8, width=4)
    real = torch.rand(6, *SHAPE) * 2 - 1
    pooled = (real[:, :, 0::2, 0::2] + real[:, :, 1::2, 0::2] + real[:, :, 0::2, 1::2] + real[:, :, 1::2, 1::2]) / 4
    expected = 0.7 * ((D.decoder(D.net[:-1](real)) - pooled) ** 2).mean()
    reg = regularizers.get("recon", weight=0.7)
    ctx = LossContext("discriminator", torch.zeros(()), real, G(torch.randn(6, 8)).detach(), G, D, 0)
    torch.testing.assert_close(reg.penalty(ctx), expected)
    assert reg.penalty(LossContext("generator", ctx.loss, real, ctx.fake, G, D, 0)) is None


def test_with_minibatch_stddev_the_decoder_reads_the_features_without_it():
    D = _d(True, mbstd=True, mbstd_group=2)
    real = torch.rand(4, *SHAPE) * 2 - 1
    feats = D.net[:-2](real)  # blocks only: the mbstd channel is appended after them
    torch.testing.assert_close(D.reconstruction(real), D.decoder(feats))


def test_lazy_application_every_k_steps_at_k_times_the_weight():
    D, G = _d(True), build_generator("dcgan", SHAPE, 8, width=4)
    real = torch.rand(4, *SHAPE) * 2 - 1
    fake = G(torch.randn(4, 8)).detach()
    every = regularizers.get("recon", weight=1.0)
    lazy = regularizers.get("recon", weight=1.0, every=3)
    terms = []
    for step in range(6):
        lazy.begin_batch(real, fake, step)
        terms.append(lazy.penalty(LossContext("discriminator", torch.zeros(()), real, fake, G, D, step)))
    full = every.penalty(LossContext("discriminator", torch.zeros(()), real, fake, G, D, 0))
    assert [t is None for t in terms] == [False, True, True, False, True, True]
    torch.testing.assert_close(terms[0], 3 * full)


def test_recon_needs_a_discriminator_with_a_decoder():
    with pytest.raises(ConfigError, match="decoder"):
        config.validate(config.load("mnist5k-dcgan", [
            "model.arch=mlp", "model.generator={hidden: 8}", "model.discriminator={hidden: 8}", "regularizers.recon={}"]))


def test_training_with_recon_trains_the_decoder_and_logs_the_loss(tmp_path, one_thread):
    overrides = tiny_dcgan_overrides(tmp_path, **{"train.steps": 4, "train.log_every": 2, "regularizers.recon": "{weight: 1}",
                                                  "model.discriminator": "{width: 4, norm: none}"})
    t = Trainer(config.load("mnist5k-dcgan", overrides), tmp_path / "dcgan")
    before = [p.detach().clone() for p in t.D.decoder.parameters()]
    t.fit()
    assert all(not torch.equal(a, b) for a, b in zip(before, t.D.decoder.parameters()))
    logged = [r["penalty.recon"] for r in read_metrics(tmp_path / "dcgan") if "penalty.recon" in r]
    assert logged and all(v > 0 for v in logged)


def test_reconstruction_reuses_the_forward_pass_of_the_same_tensor():
    """After D(real) the decoder reads that pass's features (same dropout masks, no second D pass);
    any other tensor, even an equal copy, gets a fresh pass."""
    D = _d(True, dropout=0.5).train()
    real, fake = torch.rand(4, *SHAPE) * 2 - 1, torch.rand(4, *SHAPE) * 2 - 1
    D(real)
    D(fake)  # the last two inputs are kept: real is still found
    torch.manual_seed(1)
    reused = D.reconstruction(real)
    calls = []
    body = D._body
    D._body = lambda x: calls.append(x) or body(x)
    torch.testing.assert_close(D.reconstruction(real), reused)  # deterministic: no new masks drawn
    assert calls == []
    D.reconstruction(real.clone())
    assert len(calls) == 1
