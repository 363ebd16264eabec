"""A watch on the logged losses for the commonest way a GAN run goes nowhere: the discriminator
wins outright.

When D separates real from generated samples perfectly, a saturating (and, less so, any) generator
loss gets almost no useful gradient: ``d_loss`` sinks towards 0 while ``g_loss`` climbs, and the
samples stop improving. The trainer feeds every log record to :class:`DiscriminatorWinWatch`; after
``patience`` consecutive log intervals with ``0 <= d_loss < d_floor`` and ``g_loss`` rising, it
returns one warning line (once per run) saying what usually helps. Losses that are not
cross-entropies (WGAN critics go negative) never satisfy ``0 <= d_loss``, so they are not flagged;
objectives without a discriminator (a fixed-kernel MMD logs d_loss = 0) are not watched at all
(``active`` False), since there is no discriminator to win.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class DiscriminatorWinWatch:
    d_floor: float = 0.05  # mean D loss per interval below which D is "winning outright"
    patience: int = 3  # consecutive log intervals
    warned: bool = False
    active: bool = True  # False for objectives without a discriminator: never warns
    _g: List[float] = field(default_factory=list)  # g_loss of the current streak
    _d: float = 0.0

    def observe(self, step: int, d_loss: float, g_loss: float) -> Optional[str]:
        """The warning line, the first time the streak reaches ``patience``; else None."""
        if self.warned or not self.active:
            return None
        if not (0.0 <= d_loss < self.d_floor) or (self._g and g_loss <= self._g[-1]):
            self._g = []
        if 0.0 <= d_loss < self.d_floor:
            self._g.append(g_loss)
            self._d = d_loss
        if len(self._g) < self.patience:
            return None
        self.warned = True
        return (f"the discriminator is winning outright at step {step} (d_loss {self._d:.3g}, g_loss rising "
                f"{self._g[0]:.3g} -> {self._g[-1]:.3g} over {self.patience} log intervals), so the generator gets "
                "little gradient; what usually helps: regularizers.r1.weight=1 (or r1+r2), regularizers.augment, "
                "objective.name=rpgan, or a lower train.lr_d")
