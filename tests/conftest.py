import os

import pytest

from statgan.runtime.threads import configure_openmp_env

# before torch loads libgomp, as the CLI does: OpenMP threads that spin for ~10 ms after every parallel
# region make test processes (and a browser or benchmark beside them) fight for the 2 cores
configure_openmp_env()

import torch  # noqa: E402  (after the OpenMP settings above)

# Tests run on 2 CPU cores in CI; fix the thread count so timings and reductions are stable.
torch.set_num_threads(min(2, os.cpu_count() or 1))

#: what this machine must have for the tests (``STATGAN_TEST_REQUIRE=chromium``, comma-separated;
#: .ci/run sets it): a test that needs one of these fails when it is missing instead of skipping
REQUIRED = frozenset(x.strip() for x in os.environ.get("STATGAN_TEST_REQUIRE", "").split(",") if x.strip())


def need(name: str, found: bool, install: str) -> None:
    """Go on when ``found``; else skip with one line naming what is missing and how to install it --
    or fail, where ``STATGAN_TEST_REQUIRE`` says the machine must have it (CI), so it can never be
    skipped silently there."""
    if found:
        return
    message = f"no {name} on this machine: install it with `{install}`"
    if name in REQUIRED:
        pytest.fail(f"{message} (STATGAN_TEST_REQUIRE lists {name})", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never write statistics caches into the user's home directory."""
    monkeypatch.setenv("STATGAN_CACHE", str(tmp_path_factory.getbasetemp() / "statgan-cache"))


def toy_overrides(tmp_path, **extra):
    """A tiny MLP GAN on 8gaussians: a few hundred milliseconds per run."""
    items = {
        "run.out_dir": str(tmp_path),
        "run.name": "toy",
        "data.name": "8gaussians",
        "model.arch": "mlp",
        "model.latent_dim": 4,
        "model.generator": "{hidden: 16, depth: 2}",
        "model.discriminator": "{hidden: 16, depth: 2}",
        "train.steps": 20,
        "train.batch_size": 32,
        "train.log_every": 5,
        "train.sample_every": 10,
        "train.checkpoint_every": 10,
        "train.progress": "false",
        "train.tensorboard": "false",
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def tiny_dcgan_overrides(tmp_path, **extra):
    """A narrow DCGAN on mnist5k with BatchNorm and dropout (exercises the global RNG)."""
    items = {
        "run.out_dir": str(tmp_path),
        "run.name": "dcgan",
        "model.latent_dim": 8,
        "model.generator": "{width: 4, norm: batch, dropout: 0.1}",
        "model.discriminator": "{width: 4, norm: batch, dropout: 0.2}",
        "train.steps": 24,
        "train.batch_size": 16,
        "train.log_every": 4,
        "train.sample_every": 0,
        "train.checkpoint_every": 0,
        "train.progress": "false",
        "train.tensorboard": "false",
        "train.ema_decay": 0.9,
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and timings stay steady on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)



class LinearW(torch.nn.Module):
    """The smallest generator with a w space: x = reshape(ws[:, 0] A + ws[:, 1] B) with ws = (z, z)
    (no mapping layers), so ‖J_wᵀy‖ = sqrt((‖A y‖² + ‖B y‖²) / 2) in closed form. A, B ~ N(0, 1)
    from torch's global stream, or from ``seed`` (the same weights in every process)."""

    latent_dim, num_ws, data_shape = 3, 2, (1, 2, 2)

    def __init__(self, seed=None):
        super().__init__()
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        self.A = torch.nn.Parameter(torch.randn(3, 4, generator=gen))
        self.B = torch.nn.Parameter(torch.randn(3, 4, generator=gen))

    def mapping(self, z, psi=1.0, update_avg=None):
        return z[:, None].expand(-1, 2, -1)

    def synthesis(self, ws):
        return (ws[:, 0] @ self.A + ws[:, 1] @ self.B).reshape(-1, 1, 2, 2)
