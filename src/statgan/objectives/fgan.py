r"""The f-GAN variational family (Nowozin, Cseke & Tomioka 2016, "f-GAN: Training Generative Neural
Samplers using Variational Divergence Minimization", NeurIPS).

For a convex :math:`f` with :math:`f(1) = 0`, the f-divergence of the data distribution P from the
model Q is :math:`D_f(P\|Q) = \mathbb{E}_Q[f(p(x)/q(x))]`. With the convex conjugate
:math:`f^*(t) = \sup_u\, ut - f(u)` it has the variational lower bound

.. math:: D_f(P\|Q) \ge F(T) = \mathbb{E}_P[T(x)] - \mathbb{E}_Q[f^*(T(x))],

tight at :math:`T^*(x) = f'(p(x)/q(x))`. The critic is :math:`T = g_f(V)` where :math:`V` is the
discriminator's raw output and the output activation :math:`g_f` maps the reals into the domain
of :math:`f^*`. The critic maximises F (``d_loss = -F``); the generator minimises F
("saturating") or, as recommended in the paper, maximises :math:`\mathbb{E}_Q[g_f(V)]`.

Conventions (follow the paper's Table 2, reproduced in /work/shared/REFERENCES.md):

* P is the data, Q the model: ``fgan`` with ``divergence="kl"`` estimates KL(p_data‖p_g).
* ``jensen_shannon`` uses the paper's :math:`f(u) = -(u+1)\log\frac{1+u}{2} + u\log u`, whose
  f-divergence is :math:`\mathrm{KL}(P\|M) + \mathrm{KL}(Q\|M) = 2\,\mathrm{JS}(P\|Q)` (M the
  mixture) — twice the usual Jensen–Shannon divergence; its :math:`g_f` and :math:`f^*` in the
  paper are the ones for this f.
* ``gan``: :math:`f(u) = u\log u - (u+1)\log(u+1)`, :math:`D_f = 2\,\mathrm{JS} - \log 4`; its
  critic loss is exactly the BCE-on-logits discriminator loss.
* ``squared_hellinger``: :math:`f(u) = (\sqrt u - 1)^2`, :math:`D_f = \int(\sqrt p - \sqrt q)^2`
  (no factor ½; range [0, 2]).

Numerical stability: the losses never evaluate :math:`f^*(g_f(v))` by composing the two (e.g.
``-log(1 - exp(-log1p(exp(-v))))`` for the GAN loses all precision and overflows); each divergence
carries the simplified composite ``fstar_activation`` (``softplus(v)`` for the GAN, ``v - 1`` for
reverse KL, ``expm1(v)`` for squared Hellinger, ...).

Adding a divergence: build an :class:`FDivergence` and call :func:`register_divergence`; it then
works as ``objective.divergence=<name>`` for both ``fgan`` and the density-ratio ``f_ratio``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import OBJECTIVES
from ..runtime.validation import not_allowed
from .base import Objective

Fn = Callable[[Tensor], Tensor]

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class FDivergence:
    r"""One f-divergence: the generator function and what the f-GAN critic needs.

    Attributes:
        name: canonical name.
        f: the convex generator :math:`f(u)`, :math:`u > 0`, with :math:`f(1) = 0` (elementwise).
        f_prime: its derivative :math:`f'(u)` (a subgradient where f is not differentiable).
        activation: :math:`g_f(v)`, mapping a raw discriminator output into ``dom f*``.
        conjugate: :math:`f^*(t)` on ``dom f*``.
        domain: ``(low, high)`` bounds of ``dom f*`` (``±inf`` for unbounded).
        closed: whether ``dom f*`` includes its finite bounds (only total variation's does).
        fstar_activation: numerically stable :math:`f^*(g_f(v))`; defaults to the composition.
        description: what :math:`\mathbb{E}_Q[f(p/q)]` is, for docs and messages.
    """

    name: str
    f: Fn
    f_prime: Optional[Fn] = None
    activation: Optional[Fn] = None
    conjugate: Optional[Fn] = None
    domain: Tuple[float, float] = (-math.inf, math.inf)
    closed: bool = False
    fstar_activation_fn: Optional[Fn] = None
    description: str = ""

    def fstar_activation(self, v: Tensor) -> Tensor:
        """:math:`f^*(g_f(v))`, the stable closed form when one is known."""
        if self.fstar_activation_fn is not None:
            return self.fstar_activation_fn(v)
        if self.activation is None or self.conjugate is None:
            raise TypeError(f"f-divergence {self.name!r} has no activation/conjugate (needed by fgan)")
        return self.conjugate(self.activation(v))

    def in_domain(self, t: Tensor) -> Tensor:
        """Boolean mask: which entries of ``t`` lie in ``dom f*``."""
        lo, hi = self.domain
        if self.closed:
            return (t >= lo) & (t <= hi)
        return (t > lo) & (t < hi)

    @property
    def variational(self) -> bool:
        """Whether this divergence has what ``fgan`` needs (activation and conjugate)."""
        return self.activation is not None and self.conjugate is not None


def _xlogx(u: Tensor) -> Tensor:
    # u log u with the continuous extension 0 log 0 = 0.
    return torch.xlogy(u, u)


# Each entry: f, f', g_f, f*, dom f*, and the stable f*(g_f(v)). Derivations of the composites
# are in the comments; tests check the Fenchel identity f*(f'(u)) = u f'(u) - f(u) for all.
_BUILTIN: List[FDivergence] = [
    FDivergence(
        name="total_variation",
        f=lambda u: 0.5 * (u - 1.0).abs(),
        f_prime=lambda u: 0.5 * torch.sign(u - 1.0),
        activation=lambda v: 0.5 * torch.tanh(v),
        conjugate=lambda t: t,  # on |t| <= 1/2
        domain=(-0.5, 0.5),
        closed=True,
        fstar_activation_fn=lambda v: 0.5 * torch.tanh(v),
        description="TV(P, Q) = ½ ∫ |p − q|",
    ),
    FDivergence(
        name="kl",
        f=_xlogx,
        f_prime=lambda u: torch.log(u) + 1.0,
        activation=lambda v: v,
        conjugate=lambda t: torch.exp(t - 1.0),
        fstar_activation_fn=lambda v: torch.exp(v - 1.0),
        description="KL(P‖Q) = ∫ p log(p/q)",
    ),
    FDivergence(
        name="reverse_kl",
        f=lambda u: -torch.log(u),
        f_prime=lambda u: -1.0 / u,
        activation=lambda v: -torch.exp(-v),
        conjugate=lambda t: -1.0 - torch.log(-t),  # on t < 0
        domain=(-math.inf, 0.0),
        # f*(-exp(-v)) = -1 - log(exp(-v)) = v - 1: linear, no exp/log round trip.
        fstar_activation_fn=lambda v: v - 1.0,
        description="KL(Q‖P) = ∫ q log(q/p)",
    ),
    FDivergence(
        name="pearson",
        f=lambda u: (u - 1.0) ** 2,
        f_prime=lambda u: 2.0 * (u - 1.0),
        activation=lambda v: v,
        conjugate=lambda t: 0.25 * t * t + t,
        fstar_activation_fn=lambda v: 0.25 * v * v + v,
        description="Pearson χ²(P‖Q) = ∫ (p − q)²/q",
    ),
    FDivergence(
        name="neyman",
        f=lambda u: (1.0 - u) ** 2 / u,
        f_prime=lambda u: 1.0 - 1.0 / (u * u),
        activation=lambda v: -torch.expm1(-v),  # 1 - exp(-v), accurate near v = 0
        conjugate=lambda t: 2.0 - 2.0 * torch.sqrt(1.0 - t),  # on t < 1
        domain=(-math.inf, 1.0),
        # 1 - g_f(v) = exp(-v), so f*(g_f(v)) = 2 - 2 exp(-v/2): never forms 1 - (1 - exp(-v)),
        # which rounds to 0 in float32 for v > ~17 and would make sqrt(1 - t) lose all precision.
        fstar_activation_fn=lambda v: -2.0 * torch.expm1(-0.5 * v),
        description="Neyman χ²(P‖Q) = ∫ (p − q)²/p",
    ),
    FDivergence(
        name="squared_hellinger",
        f=lambda u: (torch.sqrt(u) - 1.0) ** 2,
        f_prime=lambda u: 1.0 - torch.rsqrt(u),
        activation=lambda v: -torch.expm1(-v),
        conjugate=lambda t: t / (1.0 - t),  # on t < 1
        domain=(-math.inf, 1.0),
        # t / (1 - t) at t = 1 - exp(-v) is (1 - exp(-v)) exp(v) = exp(v) - 1.
        fstar_activation_fn=torch.expm1,
        description="H²(P, Q) = ∫ (√p − √q)²",
    ),
    FDivergence(
        name="jensen_shannon",
        f=lambda u: -(u + 1.0) * (torch.log1p(u) - LOG2) + _xlogx(u),
        f_prime=lambda u: LOG2 + torch.log(u) - torch.log1p(u),
        activation=lambda v: LOG2 - F.softplus(-v),  # log 2 + log σ(v)
        conjugate=lambda t: -torch.log(2.0 - torch.exp(t)),  # on t < log 2
        domain=(-math.inf, LOG2),
        # 2 - exp(g_f(v)) = 2 - 2σ(v) = 2σ(-v), so f*(g_f(v)) = -log 2 - log σ(-v) = softplus(v) - log 2.
        fstar_activation_fn=lambda v: F.softplus(v) - LOG2,
        description="2·JS(P‖Q) = KL(P‖M) + KL(Q‖M), M = (P + Q)/2 (twice the usual JS)",
    ),
    FDivergence(
        name="gan",
        f=lambda u: _xlogx(u) - (u + 1.0) * torch.log1p(u),
        f_prime=lambda u: torch.log(u) - torch.log1p(u),
        activation=lambda v: -F.softplus(-v),  # log σ(v)
        conjugate=lambda t: -torch.log(-torch.expm1(t)),  # -log(1 - e^t) on t < 0
        domain=(-math.inf, 0.0),
        # 1 - σ(v) = σ(-v), so f*(log σ(v)) = -log σ(-v) = softplus(v).
        fstar_activation_fn=F.softplus,
        description="2·JS(P‖Q) − log 4 (the original GAN value function)",
    ),
]

#: Canonical name -> divergence. Extend with :func:`register_divergence`.
DIVERGENCES: Dict[str, FDivergence] = {d.name: d for d in _BUILTIN}

#: Alias -> canonical name.
DIVERGENCE_ALIASES: Dict[str, str] = {
    "tv": "total_variation",
    "forward_kl": "kl",
    "rkl": "reverse_kl",
    "pearson_chi2": "pearson",
    "neyman_chi2": "neyman",
    "hellinger": "squared_hellinger",
    "js": "jensen_shannon",
}


def register_divergence(divergence: FDivergence, aliases: Tuple[str, ...] = ()) -> FDivergence:
    """Make ``divergence`` available by name to ``fgan`` and ``f_ratio``.

    Example::

        register_divergence(FDivergence(name="le_cam", f=lambda u: (1 - u) / (2 * u + 2)))
        objectives.get("f_ratio", divergence="le_cam")
    """
    key = divergence.name.lower()
    if key in DIVERGENCES or key in DIVERGENCE_ALIASES:
        raise ValueError(f"f-divergence {divergence.name!r} is registered twice")
    DIVERGENCES[key] = divergence
    for alias in aliases:
        DIVERGENCE_ALIASES[alias.lower()] = key
    return divergence


def divergence_names() -> List[str]:
    return sorted(DIVERGENCES)


def resolve_divergence(objective: str, divergence: object) -> FDivergence:
    """An :class:`FDivergence` from a name (or alias) or an instance; ConfigError otherwise."""
    if isinstance(divergence, FDivergence):
        return divergence
    if isinstance(divergence, str):
        key = divergence.lower().replace("-", "_")
        key = DIVERGENCE_ALIASES.get(key, key)
        if key in DIVERGENCES:
            return DIVERGENCES[key]
    aliases = ", ".join(f"{a}={c}" for a, c in sorted(DIVERGENCE_ALIASES.items()))
    raise not_allowed(
        "divergence",
        divergence,
        f"expected one of: {', '.join(divergence_names())}; aliases: {aliases}",
        owner=objective,
    )


@OBJECTIVES.register(aliases=("f-gan", "f_gan"))
class FGAN(Objective):
    r"""f-GAN (Nowozin et al. 2016) for any divergence in :data:`DIVERGENCES`.

    With :math:`V` the raw discriminator output and :math:`g_f`, :math:`f^*` from the divergence:

    * critic: ``d_loss = -(E_P[g_f(V(x))] - E_Q[f*(g_f(V(x̃)))])`` (minus the variational bound);
      at its optimum, ``-d_loss`` equals :math:`D_f(p_{data}\|p_g)`.
    * generator, ``generator_update="recommended"`` (paper §3.2): ``-E_Q[g_f(V(x̃))]``;
      ``"saturating"``: ``-E_Q[f*(g_f(V(x̃)))]``, i.e. minimising the bound F itself.

    Args:
        divergence: a name in :data:`DIVERGENCES` (or an alias, e.g. ``"tv"``, ``"js"``,
            ``"hellinger"``) or an :class:`FDivergence` instance.
        generator_update: ``"recommended"`` or ``"saturating"``.
    """

    name = "fgan"

    GENERATOR_UPDATES = ("recommended", "saturating")

    def __init__(self, divergence: Union[str, FDivergence] = "kl", generator_update: str = "recommended") -> None:
        self.divergence = resolve_divergence(self.name, divergence)
        if not self.divergence.variational:
            raise not_allowed("divergence", self.divergence.name, "it has no activation/conjugate; use f_ratio",
                              owner=self.name)
        if generator_update not in self.GENERATOR_UPDATES:
            raise not_allowed("generator_update", generator_update,
                              f"expected one of: {', '.join(self.GENERATOR_UPDATES)}", owner=self.name)
        self.generator_update = generator_update

    def bound(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """The variational lower bound F = E_P[g_f(V)] - E_Q[f*(g_f(V))]."""
        div = self.divergence
        assert div.activation is not None
        return div.activation(real_logits).mean() - div.fstar_activation(fake_logits).mean()

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return -self.bound(real_logits, fake_logits)

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        div = self.divergence
        if self.generator_update == "recommended":
            assert div.activation is not None
            return -div.activation(fake_logits).mean()
        return -div.fstar_activation(fake_logits).mean()

    def extra_repr(self) -> str:
        return f"divergence={self.divergence.name!r}, generator_update={self.generator_update!r}"
