"""Out-of-distribution image sets that need no download, shaped like a reference dataset.

::

    from statgan.data.ood import ood_sets, OOD_SETS
    sets = ood_sets(mnist_test, n=500, seed=0)          # {"glyphs": (500, 1, 28, 28), "noise": ..., ...}
    sets = ood_sets(mnist_test, 500, names=["glyphs", "inverted", "fashion-mnist"], root=...)

Every set is float32 in [-1, 1] with the reference's (C, H, W), i.e. the convention of
:func:`statgan.data.load`. Built-in sets (:data:`OOD_SETS`):

* ``glyphs``   — letters A-Z/a-z rendered with Pillow's built-in TrueType font
                 (``ImageFont.load_default(size=...)``, Pillow >= 10.1), light on dark like MNIST,
                 random letter, font size 70-100 % of the height, strokes thickened to
                 MNIST-like width, position jitter +-10 %;
* ``noise``    — i.i.d. uniform pixels on [-1, 1];
* ``constant`` — one uniform random gray level per image (per channel for colour images);
* ``blurred``  — reference images under a Gaussian blur (std ``0.1 * H`` pixels: 2.8 px at 28 px);
* ``inverted`` — reference images with intensities flipped, x -> -x (dark strokes on light ground).

Downloaded datasets can join through :func:`statgan.data.load` with a local ``root``
(:data:`EXTERNAL_SETS`: ``fashion-mnist``, ``svhn``, ``mnist``, ``cifar10``), converted to the
reference's channels (channel mean or repetition) and size (antialiased bilinear resize). With
``names=None``, ``fashion-mnist`` and ``svhn`` are included when their files are found and skipped
silently otherwise; named explicitly, a missing dataset raises its DatasetError.

Reproducibility: each set draws from its own generator seeded by (seed, name), so the images of
one set do not change when other sets are added or removed.
"""

from __future__ import annotations

import string
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from PIL import Image, ImageDraw, ImageFont, features
from torch.nn import functional as F

from ..errors import ConfigError, StatganError
from ..runtime.seeding import stream_generator
from . import load  # statgan.data's __init__ does not import this module, so no cycle

__all__ = [
    "DEFAULT_EXTERNAL",
    "EXTERNAL_SETS",
    "OOD_SETS",
    "blurred",
    "constant",
    "glyphs",
    "inverted",
    "match_shape",
    "ood_sets",
    "uniform_noise",
]

Shape = Tuple[int, int, int]


def _check_reference(reference: Tensor) -> Tensor:
    if not torch.is_tensor(reference) or reference.dim() != 4 or not reference.is_floating_point() or reference.shape[0] < 1:
        got = tuple(reference.shape) if torch.is_tensor(reference) else type(reference).__name__
        raise ConfigError(f"reference images must be a float tensor (N, C, H, W) with N >= 1, got {got}")
    return reference.detach().to("cpu", torch.float32)


def _pick(reference: Tensor, n: int, rng: torch.Generator) -> Tensor:
    """n reference images: a random permutation's first n (all, then repeats, if n > N)."""
    N = reference.shape[0]
    idx = torch.cat([torch.randperm(N, generator=rng) for _ in range(-(-n // N))])[:n]
    return reference[idx]


# ==== generators of the built-in sets ==============================================================
@lru_cache(maxsize=64)
def _font(size: int):
    return ImageFont.load_default(size=size)


def glyphs(shape: Shape, n: int, rng: torch.Generator, chars: str = string.ascii_letters) -> Tensor:
    """``n`` rendered letters (light on dark), float32 (n, C, H, W) in [-1, 1]."""
    if not features.check("freetype2"):
        raise StatganError("OOD set 'glyphs' needs Pillow built with FreeType (ImageFont.load_default(size=...))")
    c, h, w = shape
    out = np.empty((n, h, w), dtype=np.uint8)
    which = torch.randint(0, len(chars), (n,), generator=rng).tolist()
    sizes = (h * (0.7 + 0.3 * torch.rand(n, generator=rng, dtype=torch.float64))).round().long().tolist()
    # the font's strokes are ~1 px at 28 px; a stroke outline brings them to MNIST's ~2-3 px
    stroke = max(1, round(h / 28))
    jitter = ((torch.rand(n, 2, generator=rng, dtype=torch.float64) - 0.5) * 0.2 * h).round().long().tolist()
    for i in range(n):
        img = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(img)
        font = _font(max(int(sizes[i]), 4))
        ch = chars[which[i]]
        # centre the glyph's ink box, then jitter it
        x0, y0, x1, y1 = draw.textbbox((0, 0), ch, font=font, stroke_width=stroke)
        pos = ((w - (x1 - x0)) / 2 - x0 + jitter[i][0], (h - (y1 - y0)) / 2 - y0 + jitter[i][1])
        draw.text(pos, ch, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
        out[i] = np.asarray(img)
    x = torch.from_numpy(out).float().div_(127.5).sub_(1.0).unsqueeze(1)
    return x.expand(n, c, h, w).contiguous()


def uniform_noise(shape: Shape, n: int, rng: torch.Generator) -> Tensor:
    """i.i.d. U[-1, 1] pixels."""
    return torch.rand(n, *shape, generator=rng) * 2.0 - 1.0


def constant(shape: Shape, n: int, rng: torch.Generator) -> Tensor:
    """Constant images: one U[-1, 1] level per image and channel."""
    c, h, w = shape
    return (torch.rand(n, c, 1, 1, generator=rng) * 2.0 - 1.0).expand(n, c, h, w).contiguous()


def _gaussian_blur(x: Tensor, std: float) -> Tensor:
    """Separable Gaussian blur (kernel radius ceil(3 std)) with reflect padding, per channel."""
    radius = max(1, int(np.ceil(3.0 * std)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k / k.sum()
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    pad_h, pad_w = min(radius, h - 1), min(radius, w - 1)
    y = F.pad(y, (pad_w, pad_w, 0, 0), mode="reflect")
    y = F.conv2d(y, k[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1))
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect")
    y = F.conv2d(y, k[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def blurred(reference: Tensor, n: int, rng: torch.Generator, rel_std: float = 0.1) -> Tensor:
    """Reference images blurred by a Gaussian of std ``rel_std * H`` pixels."""
    x = _pick(reference, n, rng)
    return _gaussian_blur(x, rel_std * reference.shape[2]).clamp_(-1.0, 1.0)


def inverted(reference: Tensor, n: int, rng: torch.Generator) -> Tensor:
    """Reference images with intensities flipped (x -> -x, i.e. pixel -> 255 - pixel)."""
    return -_pick(reference, n, rng)


#: name -> fn(reference (N, C, H, W) float32 CPU, n, rng) -> (n, C, H, W) in [-1, 1]
OOD_SETS: Dict[str, Callable[[Tensor, int, torch.Generator], Tensor]] = {
    "glyphs": lambda ref, n, rng: glyphs(tuple(ref.shape[1:]), n, rng),
    "noise": lambda ref, n, rng: uniform_noise(tuple(ref.shape[1:]), n, rng),
    "constant": lambda ref, n, rng: constant(tuple(ref.shape[1:]), n, rng),
    "blurred": blurred,
    "inverted": inverted,
}

#: External datasets that may be named, read through statgan.data.load (their "test" split).
EXTERNAL_SETS: Tuple[str, ...] = ("fashion-mnist", "svhn", "mnist", "cifar10")
#: The external sets tried when ``names=None`` (the usual OOD partners of MNIST-like data; pass
#: ``names`` explicitly when the reference data is itself one of them).
DEFAULT_EXTERNAL: Tuple[str, ...] = ("fashion-mnist", "svhn")


def match_shape(x: Tensor, shape: Sequence[int]) -> Tensor:
    """(N, C', H', W') in [-1, 1] -> (N, C, H, W): channel mean / repeat, antialiased bilinear resize."""
    c, h, w = (int(s) for s in shape)
    x = x.to(torch.float32)
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True)
        if c > 1:
            x = x.expand(-1, c, -1, -1)
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(-1.0, 1.0).contiguous()


def _external(name: str, shape: Shape, n: int, rng: torch.Generator, root: Optional[str]) -> Tensor:
    data = load(name, "test", root=root)
    if not torch.is_tensor(data):
        raise ConfigError(f"OOD set {name!r}: expected an in-memory image tensor from statgan.data.load")
    idx = torch.randperm(data.shape[0], generator=rng)[:n]
    return match_shape(data[idx], shape)


def _rng(seed: int, name: str) -> torch.Generator:
    return stream_generator("ood_set", seed, name)


def ood_sets(
    reference_images: Tensor,
    n: int,
    seed: int = 0,
    names: Optional[Sequence[str]] = None,
    root: Optional[str] = None,
) -> Dict[str, Tensor]:
    """``{name: (n, C, H, W) float32 in [-1, 1]}`` of OOD images shaped like ``reference_images``.

    Args:
        reference_images: (N, C, H, W) in-distribution images (shape template; source of the
            ``blurred`` and ``inverted`` sets, which should be held-out images).
        n: images per set (an external set may return fewer if its test split is smaller).
        seed: base seed; each set uses its own generator derived from (seed, name).
        names: sets to build, from :data:`OOD_SETS` and :data:`EXTERNAL_SETS`; None = all built-in
            sets plus those of :data:`DEFAULT_EXTERNAL` (fashion-mnist, svhn) whose files are found
            (the others are skipped silently).
        root: data root passed to :func:`statgan.data.load` for external sets (None: their
            default locations, see :mod:`statgan.data`). A single root only makes sense when one
            external set is requested; None lets each find its own default folder.
    """
    ref = _check_reference(reference_images)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    shape: Shape = tuple(ref.shape[1:])  # type: ignore[assignment]
    explicit = names is not None
    wanted: List[str] = list(names) if explicit else [*OOD_SETS, *DEFAULT_EXTERNAL]
    if explicit and isinstance(names, str):
        raise ConfigError(f"names must be a sequence of set names, got the string {names!r}")
    out: Dict[str, Tensor] = {}
    for name in wanted:
        key = str(name).lower()
        if key in OOD_SETS:
            out[key] = OOD_SETS[key](ref, n, _rng(seed, key)).to(torch.float32)
        elif key in EXTERNAL_SETS:
            try:
                out[key] = _external(key, shape, n, _rng(seed, key), root)
            except StatganError:
                if explicit:
                    raise
        else:
            raise ConfigError(
                f"unknown OOD set {name!r}; expected one of: {', '.join([*OOD_SETS, *EXTERNAL_SETS])}"
            )
    return out
