r"""Density-ratio objectives: the discriminator is trained with BCE on logits, so at its optimum
its output is d(x) = log p_data(x) / p_g(x), and the generator minimises a divergence written in
terms of that ratio (Goodfellow et al. 2014; Poole et al. 2016, "Improved generator objectives
for GANs"; Sugiyama et al. 2012, "Density ratio estimation in machine learning"). See
docs/objectives.md.

Notation: d = the discriminator's logit on a *generated* sample, r = e^d ≈ p_data/p_g,
B = batch size, sg(·) = stop-gradient (``detach``).

**Which gradient is correct.** The generator's loss is differentiated *through a fixed
discriminator* (the pathwise gradient through x = G(z) only; d's own dependence on p_g is
invisible). For an f-divergence :math:`D_f(p_{data}\|p_g) = \mathbb{E}_{p_g}[f(r)]` the envelope
theorem applied to the variational form (see :mod:`.fgan`) says the right pathwise surrogate is

.. math:: S = \mathbb{E}_{p_g}[f(r) - r f'(r)] = -\mathbb{E}_{p_g}[f^*(f'(r))],
   \qquad \frac{\partial S}{\partial d} = -r^2 f''(r),

*not* :math:`\mathbb{E}_{p_g}[f(r)]` itself. The two coincide (up to a constant or a positive
factor) only for some f: reverse KL (f = −log u: both give −E[d]) and the minimax GAN. For forward
KL the naive pathwise gradient of E_g[r log r] has per-sample weight r(1 + d) — the *wrong sign*
wherever d > −1, pushing samples away from the data — whereas the correct weight is −r. So the
losses below report the divergence estimate as their *value* but carry the surrogate's *gradient*
(:func:`.base.value_with_gradient`).
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import OBJECTIVES
from ..runtime.validation import check_real, not_allowed
from .base import Objective, bce_discriminator_loss, value_with_gradient
from .fgan import FDivergence, resolve_divergence


class RatioObjective(Objective):
    """Shared discriminator loss: BCE on logits (real = 1, generated = 0)."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return bce_discriminator_loss(real_logits, fake_logits)


@OBJECTIVES.register(aliases=("nonsaturating", "non-saturating", "logistic"))
class NonSaturating(RatioObjective):
    r"""Non-saturating logistic GAN (Goodfellow et al. 2014, §3).

    Generator loss :math:`L_G = \mathbb{E}_{p_g}[\operatorname{softplus}(-d(x))] = -\mathbb{E}_{p_g}[\log \sigma(d(x))]`.
    At the optimal discriminator its gradient equals that of KL(p_g‖p_data) − 2·JS(p_data‖p_g)
    (Arjovsky & Bottou 2017); it avoids the vanishing gradients of the minimax loss early in training.
    """

    name = "ns"

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).mean()


@OBJECTIVES.register(aliases=("saturating", "mm", "mmgan"))
class Minimax(RatioObjective):
    r"""The original, saturating minimax GAN (Goodfellow et al. 2014, eq. 1).

    Generator loss :math:`L_G = \mathbb{E}_{p_g}[\log(1 - \sigma(d))] = -\mathbb{E}_{p_g}[\operatorname{softplus}(d)]`
    (the softplus form is exact and never takes log of a rounded-to-zero 1 − σ(d)). With the
    optimal discriminator, the full value function is 2·JS(p_data‖p_g) − log 4, and
    −softplus(d) = f(r) − r f'(r) for the GAN f of f-GAN, so this pathwise gradient is the
    correct gradient of JS. It saturates (vanishing gradient) when D confidently rejects samples.
    """

    name = "minimax"

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -F.softplus(fake_logits).mean()


@OBJECTIVES.register(aliases=("reverse_kl", "reverse-kl"))
class ReverseKL(RatioObjective):
    r"""Reverse KL, :math:`\mathrm{KL}(p_g\|p_{data}) = \mathbb{E}_{p_g}[\log p_g/p_{data}] = -\mathbb{E}_{p_g}[d]`.

    Generator loss ``-mean(d)`` (Poole et al. 2016; Sønderby et al. 2017). Mode-seeking. The value
    is an unbiased estimate of the divergence at the optimal discriminator, and its pathwise
    gradient is the correct one (f(u) = −log u: f(r) − r f'(r) = 1 − log r).
    """

    name = "rkl"

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


@OBJECTIVES.register(aliases=("forward_kl", "forward-kl"))
class ForwardKL(RatioObjective):
    r"""Forward KL, :math:`\mathrm{KL}(p_{data}\|p_g) = \mathbb{E}_{p_g}[r\log r]` (mass-covering).

    Value: the self-normalised importance-sampling estimate

    .. math:: \widehat{\mathrm{KL}} = \sum_i w_i d_i, \qquad w = \operatorname{softmax}(d) = r_i / \textstyle\sum_j r_j,

    i.e. :math:`\mathbb{E}_{p_{data}}[d]` with weights r normalised over the batch. Computing
    ``mean(r * d)`` directly overflows for d > 88 (float32) and has huge variance; softmax is
    computed stably, the weights sum to 1 (which is E_g[r] = 1 at the exact ratio), and the bias is
    O(1/B).

    Gradient: the correct per-sample weight on ∂d_i is −r_i/B (f(u) = u log u, r² f'' = r), which
    self-normalises to −w_i. So the gradient is that of ``-sum(sg(w) * d)`` — detached weights and a
    *minus* sign. (Differentiating the value ``sum(softmax(d) * d)`` instead, detached or not, gives
    +w_i or +w_i(1 + d_i − KL̂): the generator would move samples *away* from the data.) Read
    it as an importance-weighted reverse-KL step: rkl gives every sample weight 1/B, fkl gives
    samples in regions the model under-covers (large r) more weight.
    """

    name = "fkl"

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        w = torch.softmax(fake_logits.detach(), dim=0)
        value = (w * fake_logits.detach()).sum()
        surrogate = -(w * fake_logits).sum()
        return value_with_gradient(value, surrogate)


def renyi_logit_estimate(fake_logits: Tensor, alpha: float) -> Tensor:
    r""":math:`\frac{1}{\alpha-1}\log\frac1B\sum_i e^{-(\alpha-1)d_i}`, stable for all α > 0, α ≠ 1.

    The textbook ``(logsumexp((1-α)d) - log B) / (α-1)`` is a difference of two nearly equal
    numbers of size O(|α−1|) divided by α−1: at α = 1 ± 1e-6 in float32 it returns noise. Instead,
    with ε = α − 1, m = mean(d), x = −ε(d − m), M = max(x):

    .. math:: \frac1\varepsilon\log\operatorname{mean} e^{-\varepsilon d} = -m + \frac{M + \operatorname{log1p}(\operatorname{mean}(\operatorname{expm1}(x - M)))}{\varepsilon}.

    x − M ≤ 0, so expm1 never overflows and mean(expm1) > −1; expm1/log1p keep full relative
    precision when ε is tiny, so the ratio tends smoothly to −m (reverse KL) as α → 1.
    """
    eps = alpha - 1.0
    m = fake_logits.mean()
    x = -eps * (fake_logits - m)
    top = x.max().detach()  # any shift is exact; detaching it only saves a backward edge
    lme = top + torch.log1p(torch.expm1(x - top).mean())
    return -m + lme / eps


@OBJECTIVES.register(aliases=("rényi",))
class Renyi(RatioObjective):
    r"""Rényi divergence of order α of the model from the data (Rényi 1961; Poole et al. 2016).

    .. math:: D_\alpha(p_g\|p_{data}) = \frac{1}{\alpha-1}\log\mathbb{E}_{p_g}\Big[\big(\tfrac{p_g}{p_{data}}\big)^{\alpha-1}\Big]
       = \frac{1}{\alpha-1}\log\mathbb{E}_{p_g}[e^{-(\alpha-1)d}]
       \approx \frac{1}{\alpha-1}\big(\operatorname{logsumexp}((1-\alpha)d) - \log B\big).

    α → 1 gives reverse KL (``rkl``); α = ½ gives −2 log(1 − H²/2) (Bhattacharyya); α → 0 gives
    −log P_data(supp p_g), which is 0 whenever the supports overlap. Allowed: α > 0, α ≠ 1 (α = 1 is
    ``rkl``; for α < 0 the quantity is ≤ 0 and is not a divergence to minimise; α = 0 has no
    gradient signal). Evaluated by :func:`renyi_logit_estimate`, stable near α = 1 and α = 0.
    The log of a batch mean is a consistent but O(1/B)-biased estimate.

    Gradient: :math:`D_\alpha = \frac{1}{\alpha-1}\log H` with :math:`H = \mathbb{E}_{p_g}[f(r)]`,
    f(u) = u^{1−α}. The correct pathwise surrogate for H has per-sample weight
    −r² f''(r) = α(1−α) r^{1−α}, which is α times what differentiating the batch estimate gives.
    So the loss carries α·∇(estimate): value unchanged, gradient correct, → the rkl gradient at
    α → 1 and → 0 at α → 0 (as the divergence becomes constant).

    Args:
        alpha: the order α (> 0, ≠ 1). Default 0.5.
    """

    name = "renyi"

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = check_real(
            "alpha",
            alpha,
            gt=0.0,
            allowed="must be > 0 and != 1; orders <= 0 do not give a divergence to minimise",
            owner=self.name,
        )
        if self.alpha == 1.0:
            raise not_allowed("alpha", alpha, "the α→1 limit is reverse KL; use objective.name=rkl", owner=self.name)

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        est = renyi_logit_estimate(fake_logits, self.alpha)
        # value = est, gradient = α ∇est (see class docstring).
        return self.alpha * est + (1.0 - self.alpha) * est.detach()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


@OBJECTIVES.register(aliases=("squared_hellinger", "squared-hellinger"))
class Hellinger(RatioObjective):
    r"""Squared Hellinger distance :math:`H^2 = \int(\sqrt{p_{data}} - \sqrt{p_g})^2 = \mathbb{E}_{p_g}[(\sqrt r - 1)^2]`.

    Value: ``mean(expm1(d/2)**2)`` (expm1 keeps precision where r ≈ 1, i.e. where it matters
    near convergence). Range [0, 2], symmetric in its arguments.
    Gradient: f(u) = (√u − 1)², r² f''(r) = √r/2, so the correct surrogate is −E_g[e^{d/2}]
    (per-sample weight −e^{d/2}/(2B)); the naive gradient of the value, (√r − 1)√r, changes sign
    at r = 1 and is wrong.
    """

    name = "hellinger"

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        value = torch.expm1(0.5 * fake_logits.detach()).pow(2).mean()
        surrogate = -torch.exp(0.5 * fake_logits).mean()
        return value_with_gradient(value, surrogate)


@OBJECTIVES.register(aliases=("f-ratio", "fratio"))
class FRatio(RatioObjective):
    r"""Any f-divergence through the density ratio: the generator minimises
    :math:`D_f(p_{data}\|p_g) = \mathbb{E}_{p_g}[f(r)]`, r = e^d.

    Value: ``mean(f(exp(d))) − f(1)`` (f normalised so that f(1) = 0). Gradient: that of the envelope surrogate
    :math:`\mathbb{E}_{p_g}[f(r) - r f'(r)]`, i.e. per-sample weight :math:`-r^2 f''(r)/B` on
    ∂d_i (see the module docstring), with f'' obtained by autograd from f (or from f' when the
    divergence provides it). Requires f convex and twice differentiable almost
    everywhere; total variation (f'' = 0 a.e.) is rejected because a fixed ratio estimate gives
    the generator no gradient — use ``fgan`` with ``divergence=tv``.

    Generic: r = e^d is formed directly, so logits above ~88 overflow in float32. The dedicated
    members ``fkl``, ``rkl``, ``hellinger``, ``renyi`` use stable forms.

    Args:
        divergence: a name from :data:`.fgan.DIVERGENCES` (``"kl"``, ``"pearson"``, ...), an
            :class:`.fgan.FDivergence`, or (from Python) any elementwise torch callable ``f``.

    Custom f, three ways::

        objectives.get("f_ratio", divergence=lambda u: (u - 1) ** 2 / (u + 1))    # ad hoc

        fgan.register_divergence(FDivergence(name="triangular", f=lambda u: (u - 1) ** 2 / (u + 1)))
        # now "objective.name=f_ratio objective.divergence=triangular" works from configs

        @OBJECTIVES.register()                          # a named objective of its own
        class TriangularRatio(FRatio):
            name = "triangular_ratio"

            def __init__(self) -> None:
                super().__init__(divergence=lambda u: (u - 1) ** 2 / (u + 1))
    """

    name = "f_ratio"

    def __init__(self, divergence: Union[str, FDivergence, Callable[[Tensor], Tensor]] = "kl") -> None:
        if callable(divergence) and not isinstance(divergence, FDivergence):
            name = getattr(divergence, "__name__", "custom")
            divergence = FDivergence(name=name, f=divergence)
        self.divergence = resolve_divergence(self.name, divergence)
        self._check_generator()

    def _check_generator(self) -> None:
        # Cheap sanity checks of a user-supplied f on a grid: f(1) finite, f'' >= 0, and f'' not
        # identically zero (else the generator would get no gradient).
        name = self.divergence.name
        u = torch.logspace(-2, 2, 41, dtype=torch.float64)
        try:
            f1 = float(self.f(torch.ones((), dtype=torch.float64)))
            curv = self.curvature(u)
        except Exception as exc:  # a user's f that cannot take a float64 tensor
            raise not_allowed("divergence", name, f"f could not be evaluated: {exc}", owner=self.name) from exc
        if not math.isfinite(f1):
            raise not_allowed("divergence", name, f"f(1) must be finite, got {f1:g}", owner=self.name)
        self._f1 = f1
        if not torch.isfinite(curv).all() or (curv < -1e-9).any():
            raise not_allowed("divergence", name, "f must be convex (f'' >= 0) on u > 0", owner=self.name)
        if (curv.abs() < 1e-12).all():
            raise not_allowed(
                "divergence",
                name,
                "f'' = 0 almost everywhere, so a fixed ratio estimate gives the generator no gradient; "
                "use objective.name=fgan",
                owner=self.name,
            )

    def f(self, u: Tensor) -> Tensor:
        """The generator function f(u); override in a subclass to define a new divergence."""
        return self.divergence.f(u)

    def curvature(self, r: Tensor) -> Tensor:
        """:math:`r^2 f''(r)` (detached), by autograd from f' if known, else from f."""
        with torch.enable_grad():
            u = r.detach().clone().requires_grad_(True)
            own_f = type(self).f is FRatio.f
            if own_f and self.divergence.f_prime is not None:
                fp = self.divergence.f_prime(u)
            else:
                (fp,) = torch.autograd.grad(self.f(u).sum(), u, create_graph=True)
            if not fp.requires_grad:  # f' constant (f linear): f'' = 0
                return torch.zeros_like(r)
            (fpp,) = torch.autograd.grad(fp.sum(), u, allow_unused=True)
        if fpp is None:
            return torch.zeros_like(r)
        return (u.detach() ** 2 * fpp).detach()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        r = torch.exp(fake_logits.detach())
        # f is normalised to f(1) = 0 (e.g. the GAN f of f-GAN has f(1) = −log 4), so the value is
        # a proper divergence, ≥ 0 and 0 iff p_g = p_data; a constant changes no gradient.
        value = self.f(r).mean() - self._f1
        surrogate = -(self.curvature(r) * fake_logits).mean()
        return value_with_gradient(value, surrogate)

    def extra_repr(self) -> str:
        return f"divergence={self.divergence.name!r}"


__all__ = [
    "RatioObjective",
    "NonSaturating",
    "Minimax",
    "ReverseKL",
    "ForwardKL",
    "Renyi",
    "Hellinger",
    "FRatio",
    "renyi_logit_estimate",
]
