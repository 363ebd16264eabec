r"""Mode coverage on StackedMNIST (metric ``modes``; extractor ``stacked-lenet``).

Protocol of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018, Sec. 5.1), as used by
R3GAN: a pretrained MNIST classifier labels each of the three channels of every generated sample,
giving a mode :math:`m = 100\,d_1 + 10\,d_2 + d_3` out of 1,000; on at least 26,000 samples report

* ``modes`` — the number of modes with at least one sample (of 1,000);
* ``modes_kl`` — :math:`\mathrm{KL}(\hat p \,\|\, U) = \sum_m \hat p_m \log(1000\,\hat p_m)`, the
  empirical mode histogram against the uniform distribution of the data (nats; 0 log 0 = 0).

The classifier is statgan's shipped LeNet (:func:`statgan.metrics.features.load_lenet`), applied to
every channel as a one-channel 28×28 image in [-1, 1] (other sizes are resized like the ``lenet``
extractor does). The ``stacked-lenet`` extractor returns, per image, the three channels' 128-d
LeNet features side by side (384-d, so FID/KID can be computed in the same pass) and 1,000 joint
"logits" :math:`\log p(d_1) + \log p(d_2) + \log p(d_3)` (per-channel log-softmax, channels
independent), whose argmax is the triple of per-channel argmaxes, i.e. the mode.

Reference values: a perfect sampler of 26,000 images covers all 1,000 modes (expected number of
empty modes 1000·(1 − 1/1000)^26000 ≈ 5·10⁻⁹) with KL ≈ (1000 − 1)/(2·26000) ≈ 0.019 nats (the
plug-in estimator's multinomial bias), not 0; a generator that produces 10 modes equally often
has KL = log 100 ≈ 4.61. DCGAN covered ~100 modes in the early papers, PacGAN and R3GAN all 1,000.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple, Union

import torch
from torch.nn import functional as F

from ..errors import StatganError
from .features import EXTRACTORS, FeatureExtractor, load_lenet, to_gray28
from .lenet import FEATURE_DIM, N_CLASSES

#: digits per image and modes of StackedMNIST
CHANNELS = 3
N_MODES = N_CLASSES**CHANNELS
#: fewest generated samples the metric accepts (the VEEGAN/PacGAN protocol)
MIN_SAMPLES = 26_000


@EXTRACTORS.register("stacked-lenet", aliases=("lenet-stacked", "stacked-mnist-lenet"))
class StackedLeNetExtractor(FeatureExtractor):
    """The shipped LeNet on every channel of 3-channel images: 384-d features, 1,000 mode logits."""

    name = "stacked-lenet"
    has_logits = True
    n_classes = N_MODES
    preprocessing = "[-1,1]; each of 3 channels on its own; HxW!=28x28->bilinear antialias resize to 28x28"

    def __init__(self, device: Union[str, torch.device] = "cpu") -> None:
        super().__init__(device)
        self.model, digest = load_lenet(device=self.device)
        self.sha256 = digest
        self._dim = CHANNELS * FEATURE_DIM
        self._id = f"stacked-lenet-{digest[:8]}"

    def _eval(self) -> None:
        self.model.eval()

    def _forward(self, x: torch.Tensor, logits: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if x.shape[1] != CHANNELS:
            raise StatganError(f"feature extractor {self.name!r}: expected {CHANNELS}-channel images (StackedMNIST), got shape {tuple(x.shape)}")
        b = x.shape[0]
        planes = to_gray28(x.reshape(b * CHANNELS, 1, *x.shape[-2:]), self.name)  # each channel is one digit
        feats, digit_logits = self.model.features_and_logits(planes)
        feats = feats.reshape(b, CHANNELS * FEATURE_DIM)
        if not logits:
            return feats, None
        lp = F.log_softmax(digit_logits, dim=1).reshape(b, CHANNELS, N_CLASSES)
        joint = lp[:, 0, :, None, None] + lp[:, 1, None, :, None] + lp[:, 2, None, None, :]  # [d1, d2, d3]
        return feats, joint.reshape(b, N_MODES)  # column 100·d1 + 10·d2 + d3


def mode_counts(modes: torch.Tensor, n_modes: int = N_MODES) -> torch.Tensor:
    """Histogram (int64, (n_modes,)) of mode ids in 0 … n_modes − 1."""
    modes = modes.reshape(-1).long()
    if modes.numel() and (int(modes.min()) < 0 or int(modes.max()) >= n_modes):
        raise StatganError(f"modes: mode ids must lie in 0..{n_modes - 1}, got {int(modes.min())}..{int(modes.max())}")
    return torch.bincount(modes, minlength=n_modes)


def mode_coverage(counts: torch.Tensor, min_samples: int = MIN_SAMPLES) -> Dict[str, float]:
    """``modes`` (modes with a sample) and ``modes_kl`` (KL of the histogram from uniform, nats)."""
    n = int(counts.sum())
    if n < min_samples:
        raise StatganError(
            f"modes: needs at least {min_samples:,} generated samples (VEEGAN/PacGAN protocol), got {n:,}; "
            f"evaluate with --n {min_samples}"
        )
    k = counts.numel()
    p = counts.double() / n
    nz = p[p > 0]
    kl = float((nz * (nz * k).log()).sum())
    return {"modes": float((counts > 0).sum()), "modes_kl": max(kl, 0.0), "modes_n": float(n)}


def modes_from_logits(logits: Optional[torch.Tensor], min_samples: int = MIN_SAMPLES) -> Dict[str, float]:
    """The metric from the ``stacked-lenet`` extractor's (N, 1000) logits."""
    if logits is None or logits.dim() != 2 or logits.shape[1] != N_MODES:
        got = "none" if logits is None else f"shape {tuple(logits.shape)}"
        raise StatganError(f"modes: needs the {N_MODES} mode logits of the 'stacked-lenet' extractor (3-channel 28x28 images), got {got}")
    return mode_coverage(mode_counts(logits.argmax(dim=1)), min_samples)


def uniform_kl_bias(n: int, k: int = N_MODES) -> float:
    """E[KL(p̂ ‖ U)] ≈ (k − 1) / (2n) for n samples of the uniform distribution on k modes (the
    plug-in estimator's first-order bias, Miller 1955): the value a perfect generator gets."""
    return (k - 1) / (2.0 * n)


def collapsed_kl(n_modes_hit: int, k: int = N_MODES) -> float:
    """KL from uniform of a histogram spread equally over ``n_modes_hit`` modes: log(k / n)."""
    return math.log(k / n_modes_hit)


__all__ = ["CHANNELS", "N_MODES", "MIN_SAMPLES", "StackedLeNetExtractor", "mode_counts", "mode_coverage",
           "modes_from_logits", "uniform_kl_bias", "collapsed_kl"]
