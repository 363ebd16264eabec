r"""Maximum mean discrepancy objectives: a fixed-kernel generative moment-matching network (GMMN)
and an MMD GAN with a learned kernel.

Kernel: a mixture of Gaussian RBFs on flattened samples,

.. math:: k(x, y) = \sum_{\lambda \in \Lambda} \exp(-\lambda \|x - y\|^2),
   \qquad \Lambda = \{1, 0.5, 0.1, 0.02, 0.01, 0.002, 0.001\}

(the "bandwidths" are *precisions* λ = 1/(2σ²), not length scales; defaults from the reference
code of Filippone & Linhard, see REFERENCES.md). The squared MMD between P and Q is
:math:`\mathrm{MMD}^2 = \mathbb{E}k(x,x') + \mathbb{E}k(y,y') - 2\mathbb{E}k(x,y)`
(Gretton et al. 2012, "A kernel two-sample test", JMLR), estimated by

* the *unbiased* U-statistic (Gretton et al. eq. 3): within-sample means over i ≠ j;
* the *biased* V-statistic (eq. 5): means over all pairs, = ‖μ̂_P − μ̂_Q‖²_H ≥ 0, with bias
  (E k(x,x) − E k(x,x'))/m + (same for y)/n > 0.

Trainer hooks used here (declared on :class:`~statgan.objectives.base.Objective`):

* ``has_discriminator = False`` on ``gmmn``: there is nothing to train adversarially; the trainer
  skips the discriminator step (``discriminator_loss`` still returns a zero scalar if called).
* ``mmd-gan`` uses ``discriminator.features(x)`` when the network defines it (any shape
  (B, ...)), otherwise the raw logits as a 1-D feature.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import OBJECTIVES
from ..runtime.validation import check_bool, check_real, not_allowed
from .base import Critic, Objective
from .penalties import NORM_EPS, random_interpolates, squared_gradient_norms

#: RBF precisions λ of the default kernel mixture.
DEFAULT_BANDWIDTHS: Tuple[float, ...] = (1.0, 0.5, 0.1, 0.02, 0.01, 0.002, 0.001)


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    r"""Pairwise :math:`\|x_i - y_j\|^2` of flattened samples, shape (m, n).

    Uses ‖x‖² + ‖y‖² − 2x·y (one matmul, differentiable, no sqrt — cdist's sqrt has an infinite
    derivative at 0 on the diagonal of x vs x); cancellation can give tiny negatives, clamped to 0.
    """
    x, y = _flat(x), _flat(y)
    xx = x.pow(2).sum(dim=1, keepdim=True)
    yy = y.pow(2).sum(dim=1, keepdim=True)
    return (xx + yy.T - 2.0 * x @ y.T).clamp_min(0.0)


def rbf_mixture_kernel(x: Tensor, y: Tensor, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS) -> Tensor:
    r"""Gram matrix :math:`K_{ij} = \sum_\lambda \exp(-\lambda\|x_i - y_j\|^2)`, shape (m, n)."""
    d2 = squared_distances(x, y)
    k = torch.zeros_like(d2)
    for lam in bandwidths:
        k = k + torch.exp(-float(lam) * d2)
    return k


def mmd2(
    x: Tensor,
    y: Tensor,
    bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
    unbiased: bool = True,
) -> Tensor:
    r"""Squared MMD between samples ``x`` (m, ...) and ``y`` (n, ...) with the RBF-mixture kernel.

    .. math::
        \widehat{\mathrm{MMD}}{}^2_u = \frac{\sum_{i\ne j}k(x_i,x_j)}{m(m-1)} + \frac{\sum_{i\ne j}k(y_i,y_j)}{n(n-1)}
            - \frac{2}{mn}\sum_{i,j}k(x_i,y_j);

    the biased version (``unbiased=False``) divides full sums (diagonal included) by m² and n².
    The unbiased estimate can be negative; the biased one is ≥ 0 (a squared RKHS norm) but
    overestimates. Samples are flattened; m and n may differ (m, n ≥ 2 for the unbiased one).
    """
    m, n = x.shape[0], y.shape[0]
    kxx = rbf_mixture_kernel(x, x, bandwidths)
    kyy = rbf_mixture_kernel(y, y, bandwidths)
    kxy = rbf_mixture_kernel(x, y, bandwidths)
    if unbiased:
        if m < 2 or n < 2:
            raise ValueError(f"unbiased MMD² needs at least 2 samples on each side, got {m} and {n}")
        # k(x, x) = len(bandwidths) exactly; subtract the diagonal as computed (robust either way).
        xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    else:
        xx = kxx.mean()
        yy = kyy.mean()
    return xx + yy - 2.0 * kxy.mean()


def _bandwidths(objective: str, bandwidths: Sequence[float]) -> Tuple[float, ...]:
    if isinstance(bandwidths, (str, bytes)) or not isinstance(bandwidths, Sequence) or len(bandwidths) == 0:
        raise not_allowed("bandwidths", bandwidths, "expected a non-empty list of RBF precisions λ > 0", owner=objective)
    return tuple(
        check_real("bandwidths", b, gt=0.0, allowed="every RBF precision λ must be a finite number > 0", owner=objective)
        for b in bandwidths
    )


@OBJECTIVES.register(aliases=("mmd",))
class GMMN(Objective):
    r"""Generative moment-matching network (Li, Swersky & Zemel 2015; Dziugaite, Roy & Ghahramani
    2015): no discriminator; the generator minimises MMD² between a real and a generated batch
    under a *fixed* RBF-mixture kernel on the (flattened) samples,

    .. math:: L_G = \widehat{\mathrm{MMD}}{}^2(x_{1:m}, G(z)_{1:n}).

    ``has_discriminator = False``: the trainer skips the discriminator step; if called anyway,
    :meth:`discriminator_loss` returns a constant zero scalar (no graph).

    Args:
        bandwidths: RBF precisions λ (default :data:`DEFAULT_BANDWIDTHS`).
        unbiased: use the unbiased U-statistic (default False: the biased V-statistic, as in the
            reference code; its extra term pulls generated samples apart, like a repulsive term).
    """

    name = "gmmn"

    has_discriminator = False

    def __init__(self, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS, unbiased: bool = False) -> None:
        self.bandwidths = _bandwidths(self.name, bandwidths)
        self.unbiased = check_bool("unbiased", unbiased, owner=self.name)

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise TypeError("gmmn has no discriminator; it works on samples (use generator_loss)")

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        raise TypeError("gmmn works on samples, not logits (use generator_loss)")

    def discriminator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        return torch.zeros((), device=real.device, dtype=real.dtype)

    def generator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        return mmd2(real.detach(), fake, self.bandwidths, unbiased=self.unbiased)

    def extra_repr(self) -> str:
        return f"bandwidths={list(self.bandwidths)}, unbiased={self.unbiased}"


def feature_map(discriminator: Critic) -> Callable[[Tensor], Tensor]:
    """``discriminator.features`` (a method or a submodule, returning (B, ...)) if the network has
    one, else its logits as (B, 1) features."""
    features: Optional[Callable[[Tensor], Tensor]] = getattr(discriminator, "features", None)
    if callable(features):
        return lambda x: _flat(features(x))
    return lambda x: discriminator(x).reshape(x.shape[0], -1)


@OBJECTIVES.register(aliases=("mmd_gan", "mmdgan"))
class MMDGAN(Objective):
    r"""MMD GAN with a learned kernel (Li et al. 2017, "MMD GAN: towards deeper understanding of
    moment matching network"; Bińkowski et al. 2018, "Demystifying MMD GANs", ICLR).

    The kernel is the RBF mixture applied to learned features φ = the discriminator's
    ``features(x)`` (any (B, ...) tensor, flattened) if it has such a method, else its logits as a
    1-D feature. With the witness function
    :math:`w(x) = \frac1m\sum_i k(\phi(x), \phi(x_i)) - \frac1n\sum_j k(\phi(x), \phi(\tilde x_j))`:

    .. math::
        L_D &= -\widehat{\mathrm{MMD}}{}^2(\phi(x), \phi(\tilde x))
               + \lambda\,\mathbb{E}_{\hat x}[(\|\nabla_{\hat x} w(\hat x)\|_2 - 1)^2], \\
        L_G &= \widehat{\mathrm{MMD}}{}^2(\phi(x), \phi(\tilde x)),

    :math:`\hat x` random interpolates of real and generated samples. The witness-gradient
    penalty is Bińkowski et al.'s replacement for Li et al.'s weight clipping: without a
    constraint D can inflate MMD² by scaling features apart, and the penalty keeps the
    critic's witness 1-Lipschitz along interpolates.

    Args:
        bandwidths: RBF precisions λ of the kernel on features (default :data:`DEFAULT_BANDWIDTHS`).
        unbiased: unbiased MMD² estimator (default True, as in Bińkowski et al.).
        gp_weight: λ ≥ 0 of the witness gradient penalty (default 1, Bińkowski et al.).
    """

    name = "mmd-gan"

    def __init__(
        self,
        bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
        unbiased: bool = True,
        gp_weight: float = 1.0,
    ) -> None:
        self.bandwidths = _bandwidths(self.name, bandwidths)
        self.unbiased = check_bool("unbiased", unbiased, owner=self.name)
        self.gp_weight = check_real("gp_weight", gp_weight, ge=0.0, owner=self.name)

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """−MMD² with the kernel on the given (B, k) features (here: logits reshaped (B, 1))."""
        return -mmd2(_flat(real_logits), _flat(fake_logits), self.bandwidths, unbiased=self.unbiased)

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        raise TypeError("mmd-gan's generator loss needs real features too (use generator_loss)")

    def witness_penalty(self, phi: Callable[[Tensor], Tensor], real_f: Tensor, fake_f: Tensor, real: Tensor, fake: Tensor) -> Tensor:
        r""":math:`\mathbb{E}_{\hat x}[(\|\nabla w(\hat x)\|_2 - 1)^2]` (differentiable in D's parameters)."""
        x_hat = random_interpolates(real, fake)
        with torch.enable_grad():
            f_hat = phi(x_hat)
            witness = (
                rbf_mixture_kernel(f_hat, real_f, self.bandwidths).mean(dim=1)
                - rbf_mixture_kernel(f_hat, fake_f, self.bandwidths).mean(dim=1)
            )
            (grad,) = torch.autograd.grad(witness.sum(), x_hat, create_graph=True)
        norms = torch.sqrt(squared_gradient_norms(grad) + NORM_EPS)
        return (norms - 1.0).pow(2).mean()

    def discriminator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        phi = feature_map(discriminator)
        real_f, fake_f = phi(real), phi(fake)
        loss = -mmd2(real_f, fake_f, self.bandwidths, unbiased=self.unbiased)
        if self.gp_weight > 0:
            loss = loss + self.gp_weight * self.witness_penalty(phi, real_f, fake_f, real, fake)
        return loss

    def generator_loss(self, discriminator: Critic, real: Tensor, fake: Tensor) -> Tensor:
        phi = feature_map(discriminator)
        # D is fixed in the generator step; real features carry no generator gradient.
        return mmd2(phi(real).detach(), phi(fake), self.bandwidths, unbiased=self.unbiased)

    def extra_repr(self) -> str:
        return f"bandwidths={list(self.bandwidths)}, unbiased={self.unbiased}, gp_weight={self.gp_weight:g}"


__all__ = ["DEFAULT_BANDWIDTHS", "squared_distances", "rbf_mixture_kernel", "mmd2", "GMMN", "MMDGAN", "feature_map"]
