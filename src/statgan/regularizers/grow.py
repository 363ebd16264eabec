r"""Progressive growing's schedule (Karras, Aila, Laine & Lehtinen, ICLR 2018): train at the smallest
resolutions first and fade each next one in.

``regularizers.grow: {start: 7, stable: 1500, fade: 1500}`` builds both networks with growth
(``model.<net>.progressive: true``, :mod:`statgan.nets.growing`) and, before every generator step s,
sets their growth to

.. math:: g(s) = \min\Bigl(n,\ k_0 + q + \operatorname{clip}\bigl(\tfrac{r - \text{stable}}{\text{fade}}, 0, 1\bigr)\Bigr),
          \qquad (q, r) = \operatorname{divmod}(s,\ \text{stable} + \text{fade}),

with :math:`k_0` the index of the ``start`` resolution and n the full one: each resolution below the
full one is trained alone for ``stable`` steps, then the next one fades in linearly over ``fade``
steps (Karras et al.: 600k images each at batch 16–32, i.e. equal stable and fade phases). The full
resolution is reached after (n − k₀)·(stable + fade) steps and kept to the end. Karras et al.'s
per-resolution minibatch and learning-rate changes are not part of it.

The schedule is a pure function of the step, and the growth is a buffer of each network (saved in
checkpoints, copied into the EMA generator), so a run resumed mid-fade continues bit for bit.
What a step costs falls with the resolution: at 7×7 the 28 px DCGAN skips its two largest
convolutions in G and D (``benchmarks/quality_per_minute.py`` measures what that buys).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from torch import nn

from ..errors import ConfigError
from ..runtime.validation import check_int
from . import REGULARIZERS
from .base import Regularizer


def growth_at(step: int, start: int, levels: int, stable: int, fade: int) -> float:
    """g(step) of the module docstring: resolution index ``start`` first, ``levels`` = n the full one."""
    q, r = divmod(step, stable + fade)
    frac = min(1.0, max(0.0, (r - stable) / fade)) if fade > 0 else 0.0
    return float(min(levels, start + q + frac))


@REGULARIZERS.register()
class ProgressiveGrowing(Regularizer):
    """Grow both networks from resolution ``start`` (pixels; None: the smallest) to full size:
    ``stable`` steps at each lower resolution, then ``fade`` steps fading the next one in."""

    name = "grow"
    network_keys = ("progressive",)

    def __init__(self, start: Optional[int] = None, stable: int = 1000, fade: int = 1000) -> None:
        what = "regularizers.grow"
        self.start = None if start is None else check_int("start", start, owner=what)
        self.stable = check_int("stable", stable, minimum=0, owner=what)
        self.fade = check_int("fade", fade, minimum=0, owner=what)
        if self.stable + self.fade == 0:
            raise ConfigError(f"{what}: stable={stable!r} and fade={fade!r} are both 0; at least one phase needs steps")

    def network_params(self, family: str) -> Dict[str, Any]:
        return {"progressive": True}

    def start_index(self, net: nn.Module) -> int:
        """The resolution index of ``start`` in ``net``'s pyramid (a one-line ConfigError if absent)."""
        if self.start is None:
            return 0
        sizes = tuple(getattr(net, "resolutions", ()))[:-1]
        if self.start not in sizes:
            raise ConfigError(f"regularizers.grow: start={self.start!r} is not a resolution this network grows "
                              f"from; expected one of {', '.join(map(str, sizes))}")
        return sizes.index(self.start)

    def start_step(self, step: int, generator: nn.Module, discriminator: nn.Module) -> None:
        levels = generator.growth_levels
        g = growth_at(step, self.start_index(generator), levels, self.stable, self.fade)
        for net in (generator, discriminator):
            net.set_growth(g)

    def extra_repr(self) -> str:
        return f"start={self.start}, stable={self.stable}, fade={self.fade}"


__all__ = ["growth_at", "ProgressiveGrowing"]
