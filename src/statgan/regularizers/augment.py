r"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao, Liu, Lin, Zhu & Han,
NeurIPS 2020, "Differentiable Augmentation for Data-Efficient GAN Training"), with the adaptive
probability of ADA (Karras, Aittala, Hellsten, Laine, Lehtinen & Aila, NeurIPS 2020, "Training
Generative Adversarial Networks with Limited Data").

The discriminator sees :math:`T(x)` for real *and* generated batches, :math:`T` a random
transformation drawn independently for every sample and every call; it is built from
differentiable tensor operations, so the generator's gradient flows through :math:`T(G(z))`. With
the same :math:`T` distribution on both sides the augmented distributions match iff the originals
do (for the invertible-in-distribution operations below), which is why the augmentations do not
leak into the samples (Zhao et al. Sec. 3; Karras et al. Sec. 2).

Operations (DiffAugment's definitions, images in [-1, 1], B×C×H×W):

* ``color`` — three operations, each gated separately:
  brightness :math:`x + (u - 0.5)` (±0.5); saturation :math:`(x - \bar x_c)\cdot 2u + \bar x_c`
  with :math:`\bar x_c` the per-pixel channel mean (×[0, 2]; **for one-channel images this is the
  identity**, :math:`x = \bar x_c`, and is skipped); contrast :math:`(x - \bar x)(u + 0.5) + \bar x`
  with :math:`\bar x` the per-image mean (×[0.5, 1.5]).
* ``translation`` — an integer shift of the whole image by (tx, ty), each uniform in
  [−s, s] with s = round(size/8); uncovered pixels are 0 (zero padding, as DiffAugment: the
  value 0, i.e. mid-grey in [-1, 1]).
* ``cutout`` — one square of side round(size/2), centre uniform as in DiffAugment (it may stick
  out of the image), set to 0.

Translation and cutout only copy pixels or write zeros, so they keep images inside [-1, 1]; the
colour operations do not (brightness alone moves values by up to 0.5), as in DiffAugment.

Probability p: every operation is applied to every sample independently with probability p (ADA's
scheme; DiffAugment is p = 1). p = 0 returns the input tensor itself. Samples not selected for an
operation pass through it unchanged, bit for bit.

ADA (``ada_target``): the discriminator's overfitting is measured by
:math:`r_t = \mathbb E[\operatorname{sign} D(T(x_{real}))]` over the real samples of the last
``ada_interval`` discriminator steps, and every ``ada_interval`` steps

.. math:: p \leftarrow \operatorname{clip}\Bigl(p + \operatorname{sign}(r_t - \text{target})\cdot
          \frac{B \cdot \text{interval}}{\text{ada\_kimg}\cdot 1000},\ 0,\ 1\Bigr)

(B·interval = the real samples measured; ADA: target 0.6, interval 4, ada_kimg 500, so p can move
from 0 to 1 in 500k images). The real logits are obtained by one extra forward pass of D on the
step's augmented real batch, without gradients and without touching D's buffers, from the
``penalty`` hook (the only hook that sees D and D's inputs); it adds no loss term. That costs one
inference pass of D per discriminator step, only when ``ada_target`` is set.

Reproducibility: the random numbers come from a private CPU generator seeded from the run seed
(fixed count per call: 12 uniforms per sample, whatever p and the policy), moved to the device;
its state, p, the ADA accumulators and step counter are checkpointed, so a resumed run augments
exactly as an uninterrupted one. Under torchrun every rank draws the global batch's numbers from
the shared stream and keeps its rows, and r_t is averaged over the ranks.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..errors import ConfigError
from ..runtime import distributed
from ..runtime.seeding import reseed, stream_generator
from ..runtime.validation import check_int, check_real
from . import REGULARIZERS
from .base import DISCRIMINATOR, LossContext, Regularizer, load_rng_state, load_step_counter, preserved_buffers, require_discriminator

#: the policies, applied in this order (DiffAugment's)
POLICIES: Tuple[str, ...] = ("color", "translation", "cutout")
#: maximal translation as a fraction of the image side, and the cutout square's side (DiffAugment)
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5

# columns of the per-sample uniforms drawn for every call (a fixed layout: the stream's position
# depends only on the number of calls, never on p or the policy)
_GATE = {"brightness": 0, "saturation": 1, "contrast": 2, "translation": 3, "cutout": 4}
_BRIGHTNESS, _SATURATION, _CONTRAST, _TX, _TY, _CX, _CY = 5, 6, 7, 8, 9, 10, 11
_N_UNIFORMS = 12


def parse_policy(what: str, policy: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"color,translation,cutout"`` or a list of names -> the policies in application order."""
    names = policy.split(",") if isinstance(policy, str) else policy
    if isinstance(names, (bytes, dict)) or not isinstance(names, Sequence):
        raise ConfigError(f"{what}: policy={policy!r} must be a comma-separated string or a list of: {', '.join(POLICIES)}")
    chosen = set()
    for n in names:
        key = str(n).strip().lower()
        if key not in POLICIES:
            raise ConfigError(f"{what}: policy {n!r} is not one of: {', '.join(POLICIES)}")
        chosen.add(key)
    if not chosen:
        raise ConfigError(f"{what}: policy is empty; choose from: {', '.join(POLICIES)}")
    return tuple(p for p in POLICIES if p in chosen)


def _uniform_int(u: Tensor, low: int, high: int) -> Tensor:
    """Integers uniform on low..high (inclusive) from uniforms in [0, 1)."""
    return (u * (high - low + 1)).floor().long().clamp_(max=high - low) + low


def translate(x: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    """``out[b, :, i, j] = x[b, :, i + tx[b], j + ty[b]]``, 0 where that pixel is outside the image.

    Two gathers (rows, then columns) and a mask: differentiable in ``x`` (the backward pass
    scatters the gradient back to the source pixels); a zero shift copies the image exactly.
    """
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] + tx[:, None]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] + ty[:, None]  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    out = x.gather(2, rows.clamp(0, h - 1)[:, None, :, None].expand(b, c, h, w))
    out = out.gather(3, cols.clamp(0, w - 1)[:, None, None, :].expand(b, c, h, w))
    return out * inside[:, None].to(x.dtype)


def cutout_mask(shape: Sequence[int], cx: Tensor, cy: Tensor, side: Tuple[int, int], device: torch.device) -> Tensor:
    """(B, 1, H, W) mask, 0 on the square of ``side`` whose rows start at ``cx - side//2`` (and
    columns at ``cy - side//2``), 1 elsewhere; the square may be cut by the border."""
    _, _, h, w = shape
    r = torch.arange(h, device=device)[None, :] - (cx[:, None] - side[0] // 2)
    c = torch.arange(w, device=device)[None, :] - (cy[:, None] - side[1] // 2)
    hole = ((r >= 0) & (r < side[0]))[:, :, None] & ((c >= 0) & (c < side[1]))[:, None, :]
    return (~hole)[:, None]


@REGULARIZERS.register("augment", aliases=("diffaugment", "diff_augment"))
class DiffAugment(Regularizer):
    """Differentiable augmentation of D's real and generated inputs (module docstring).

    Args:
        policy: which operations: any of ``color``, ``translation``, ``cutout``, as a
            comma-separated string or a list (default all three, DiffAugment's choice for
            CIFAR-10 / low data).
        p: probability in [0, 1] that each operation is applied to each sample; default 1 without
            ADA (DiffAugment) and 0 with ADA (its starting value).
        ada_target: if set (0 < target < 1, ADA uses 0.6), p is adapted to keep
            E[sign D(real)] at this target.
        ada_interval: discriminator steps between two adjustments of p (ADA: 4).
        ada_kimg: thousands of real images for p to move by 1 (ADA: 500).

    Logged in metrics.jsonl: ``augment.p`` (and ``augment.rt``, the last r_t, with ADA).
    """

    name = "augment"

    def __init__(
        self,
        policy: Union[str, Sequence[str]] = "color,translation,cutout",
        p: Optional[float] = None,
        ada_target: Optional[float] = None,
        ada_interval: int = 4,
        ada_kimg: float = 500.0,
    ) -> None:
        what = "regularizers.augment"
        self.policy = parse_policy(what, policy)
        self.ada_target = None if ada_target is None else check_real("ada_target", ada_target, gt=0.0, owner=what)
        if self.ada_target is not None and not self.ada_target < 1.0:
            raise ConfigError(f"{what}: ada_target={ada_target!r} is not allowed (must be in (0, 1))")
        self.ada_interval = check_int("ada_interval", ada_interval, owner=what)
        self.ada_kimg = check_real("ada_kimg", ada_kimg, gt=0.0, owner=what)
        default_p = 0.0 if self.ada_target is not None else 1.0
        self.p = default_p if p is None else check_real("p", p, ge=0.0, owner=what)
        if self.p > 1.0:
            raise ConfigError(f"{what}: p={p!r} is not allowed (must be in [0, 1])")
        self.gen = stream_generator("regularizer", 0, self.name)  # seed 0 until bound
        # ADA state: D steps begun, signs and samples measured since the last adjustment, last r_t
        self._d_steps = 0
        self._sign_sum: Optional[Tensor] = None
        self._sign_count = 0
        self._measured = True  # no D step begun yet: nothing to measure
        self.rt = float("nan")

    # ---- configuration -------------------------------------------------------------------------
    def check(self, objective: object) -> None:
        if self.ada_target is not None:  # ADA reads D's logits
            require_discriminator("regularizers.augment (ada_target)", objective)

    def bind(self, seed: int, device: torch.device) -> None:
        reseed(self.gen, "regularizer", seed, self.name)

    # ---- the transformation --------------------------------------------------------------------
    def augment(self, x: Tensor) -> Tensor:
        """T(x) for a batch of images (B, C, H, W), fresh random draws for every sample."""
        if self.p == 0.0:
            return x
        if x.dim() != 4:
            raise ValueError(f"augment expects images (B, C, H, W), got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        # under torchrun ``x`` holds this rank's rows: draw for the global batch, keep ours
        u = torch.rand((b * distributed.world_size(), _N_UNIFORMS), generator=self.gen)
        u = distributed.shard_rows(u).to(x.device, non_blocking=True)
        gate = u[:, : len(_GATE)] < self.p  # (B, 5): which operations each sample gets
        if "color" in self.policy:
            x = self._color(x, u, gate)
        if "translation" in self.policy:
            sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
            on = gate[:, _GATE["translation"]].long()  # a zero shift is an exact copy
            x = translate(x, _uniform_int(u[:, _TX], -sh, sh) * on, _uniform_int(u[:, _TY], -sw, sw) * on)
        if "cutout" in self.policy:
            side = (int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5))
            cx = _uniform_int(u[:, _CX], 0, h - side[0] % 2)  # DiffAugment's offset range
            cy = _uniform_int(u[:, _CY], 0, w - side[1] % 2)
            keep = cutout_mask(x.shape, cx, cy, side, x.device) | ~gate[:, _GATE["cutout"], None, None, None]
            x = x * keep.to(x.dtype)
        return x

    @staticmethod
    def _color(x: Tensor, u: Tensor, gate: Tensor) -> Tensor:
        def factor(col: int, scale: float, shift: float) -> Tensor:  # per-sample factor, shaped (B, 1, 1, 1)
            return (u[:, col] * scale + shift).to(x.dtype).view(-1, 1, 1, 1)

        def chosen(op: str) -> Tensor:  # torch.where on this: unselected samples stay bit-exact
            return gate[:, _GATE[op], None, None, None]

        x = torch.where(chosen("brightness"), x + factor(_BRIGHTNESS, 1.0, -0.5), x)
        if x.shape[1] > 1:  # one channel: the channel mean is the pixel itself (identity)
            mean = x.mean(dim=1, keepdim=True)
            x = torch.where(chosen("saturation"), (x - mean) * factor(_SATURATION, 2.0, 0.0) + mean, x)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(chosen("contrast"), (x - mean) * factor(_CONTRAST, 1.0, 0.5) + mean, x)

    def transform_real(self, real: Tensor) -> Tensor:
        return self.augment(real)

    def transform_fake(self, fake: Tensor) -> Tensor:
        return self.augment(fake)

    # ---- ADA -----------------------------------------------------------------------------------
    def begin_batch(self, real: Tensor, fake: Tensor, step: int) -> None:
        if self.ada_target is not None:
            self._d_steps += 1
            self._measured = False

    def penalty(self, ctx: LossContext) -> Optional[Tensor]:
        """No loss term: with ADA, measures sign(D) on the step's (augmented) real batch once per
        discriminator step and adjusts p every ``ada_interval`` steps."""
        if self.ada_target is None or ctx.net != DISCRIMINATOR or self._measured:
            return None
        self._measured = True  # SAM's second pass and Monte-Carlo repeats measure nothing new
        with torch.no_grad(), preserved_buffers(ctx.discriminator):
            self.observe(ctx.discriminator(ctx.real))
        if self._d_steps % self.ada_interval == 0:
            self._adjust()
        return None

    def observe(self, real_logits: Tensor) -> None:
        """Add D's logits on augmented real samples to the ADA statistics (no device sync: the
        sum stays on the logits' device until the next adjustment)."""
        signs = real_logits.detach().float().sign().sum()
        self._sign_sum = signs if self._sign_sum is None else self._sign_sum + signs
        self._sign_count += int(real_logits.shape[0])

    def _adjust(self) -> None:
        totals = torch.stack([self._sign_sum.double().cpu(), torch.tensor(float(self._sign_count), dtype=torch.float64)])
        if distributed.world_size() > 1:  # r_t and the step size over the global batch
            totals = distributed.all_reduce_(totals.to(self._sign_sum.device), "sum").cpu()
        total, count = float(totals[0]), float(totals[1])
        self.rt = total / count
        step = math.copysign(1.0, self.rt - self.ada_target) if self.rt != self.ada_target else 0.0
        self.p = min(max(self.p + step * count / (self.ada_kimg * 1000.0), 0.0), 1.0)
        self._sign_sum, self._sign_count = None, 0

    # ---- logging and state ---------------------------------------------------------------------
    def scalars(self, step: int) -> Dict[str, float]:
        out = {f"{self.name}.p": self.p}
        if self.ada_target is not None:
            out[f"{self.name}.rt"] = self.rt
        return out

    def state_tensors(self) -> Dict[str, Tensor]:
        out = {"rng": self.gen.get_state(), "p": torch.tensor(self.p, dtype=torch.float64)}
        if self.ada_target is not None:
            pending = 0.0 if self._sign_sum is None else float(self._sign_sum)
            out.update({"d_steps": torch.tensor(self._d_steps, dtype=torch.int64),
                        "sign_count": torch.tensor(self._sign_count, dtype=torch.int64),
                        "sign_sum": torch.tensor(pending, dtype=torch.float64),
                        "rt": torch.tensor(self.rt, dtype=torch.float64)})
        return out

    def load_state_tensors(self, tensors: Dict[str, Tensor], source: str) -> None:
        load_rng_state(self.gen, tensors, "rng", source)
        if "p" in tensors:
            self.p = float(tensors["p"])
        if self.ada_target is not None:
            self._d_steps = load_step_counter(tensors, "d_steps", source, self._d_steps)
            self._sign_count = load_step_counter(tensors, "sign_count", source, self._sign_count)
            self._sign_sum = tensors["sign_sum"].double() if self._sign_count else None
            self.rt = float(tensors.get("rt", torch.tensor(self.rt)))

    def extra_repr(self) -> str:
        ada = f", ada_target={self.ada_target:g}, ada_interval={self.ada_interval}, ada_kimg={self.ada_kimg:g}" if self.ada_target is not None else ""
        return f"policy={','.join(self.policy)!r}, p={self.p:g}{ada}"


__all__ = ["POLICIES", "TRANSLATION_RATIO", "CUTOUT_RATIO", "DiffAugment", "parse_policy", "translate", "cutout_mask"]
