"""Pictures: sample grids (torchvision), 2-D scatter plots and loss curves (matplotlib), and the
originals-beside-reconstructions picture of ``statgan invert`` (PIL for images, matplotlib for 2-D points)."""

from __future__ import annotations

import base64
import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, features
from torch import Tensor

from .rundir.files import atomic_write_bytes


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes (pictures embedded in self-contained HTML pages)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_grid(images: torch.Tensor, nrow: Optional[int] = None, pad_value: float = 0.0, scale: int = 1) -> bytes:
    """PNG bytes of an image grid; ``images`` in [-1, 1], (B, C, H, W); ``scale`` enlarges every
    pixel to a ``scale`` x ``scale`` block (nearest neighbour: no blur is invented)."""
    # torchvision takes seconds to import (it pulls torch._dynamo): only picture-making pays for it
    from torchvision.utils import save_image

    if scale > 1:
        images = torch.nn.functional.interpolate(images.detach().float(), scale_factor=scale, mode="nearest")
    n = images.shape[0]
    nrow = nrow or max(1, int(round(n**0.5)))
    buf = io.BytesIO()
    # images are in [-1, 1]; map to [0, 1] without per-image rescaling so contrast is honest
    save_image(images.detach().float().cpu().add(1).div(2).clamp(0, 1), buf, nrow=nrow, padding=2, format="png",
               pad_value=pad_value)
    return buf.getvalue()


def _png_bytes_scatter(points: torch.Tensor, reference: Optional[torch.Tensor]) -> bytes:
    # matplotlib is heavy (~0.5 s to import): only 2-D scatter plots need it, so it stays off the start-up path
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        r = reference.detach().cpu()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.75", label="data")
    p = points.detach().float().cpu()
    ax.scatter(p[:, 0], p[:, 1], s=2, c="tab:red", label="generated")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _png_bytes_walks(points: torch.Tensor, steps: int) -> bytes:
    # matplotlib is heavy (~0.5 s to import): only pictures need it, so it stays off the start-up path
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    walks = points.detach().float().cpu().reshape(-1, steps, 2)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    colours = plt.get_cmap("tab10")
    for i, w in enumerate(walks):
        c = colours(i % 10)
        ax.plot(w[:, 0], w[:, 1], "-o", color=c, ms=2.5, lw=1.2, label=f"walk {i + 1}" if i < 10 else None)
        ax.plot(w[0, 0], w[0, 1], "s", color=c, ms=5)  # the start
    ax.set_aspect("equal")
    ax.set_title(f"{len(walks)} latent walk(s), {steps} points each (square: start)", fontsize=8)
    if len(walks) > 1:
        ax.legend(loc="upper right", fontsize=6)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_walks(points: torch.Tensor, steps: int, path: Union[str, Path], scale: int = 1) -> Path:
    """Write latent walks as a PNG: for images (n * steps, C, H, W) a grid with one walk per row; for
    2-D points (n * steps, 2) each walk a connected path in its own colour, its start marked."""
    path = Path(path)
    if points.dim() == 2 and points.shape[1] == 2:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, _png_bytes_walks(points, steps))
        return path
    return save_samples(points, path, nrow=steps, scale=scale)


def save_samples(
    samples: torch.Tensor,
    path: Union[str, Path],
    nrow: Optional[int] = None,
    reference: Optional[torch.Tensor] = None,
    scale: int = 1,
) -> Path:
    """Write samples as a PNG: a grid for images (B, C, H, W), a scatter plot for 2-D points (B, 2).

    The file is written atomically, so a viewer never sees a half-written image.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if samples.dim() == 4:
        blob = png_grid(samples, nrow, scale=scale)
    elif samples.dim() == 2 and samples.shape[1] == 2:
        blob = _png_bytes_scatter(samples, reference)
    else:
        raise ValueError(f"cannot draw samples of shape {tuple(samples.shape)}; expected (B,C,H,W) or (B,2)")
    atomic_write_bytes(path, blob)
    return path


def to_uint8_nhwc(images: torch.Tensor) -> "np.ndarray":
    """(B, C, H, W) in [-1, 1] -> uint8 (B, H, W, C): the array other evaluation suites read
    (torch-fidelity, clean-fid), [-1, 1] mapped to [0, 255] with rounding, as :func:`png_grid`."""
    x = images.detach().float().cpu()
    return x.add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def save_sample_pngs(images: torch.Tensor, folder: Union[str, Path]) -> List[Path]:
    """One PNG per image, ``folder/000000.png`` ..., each written atomically; grayscale stays one
    channel (``L``), colour is ``RGB``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    u8 = to_uint8_nhwc(images)
    width = max(6, len(str(len(u8) - 1)))
    paths = []
    for i, a in enumerate(u8):
        im = Image.fromarray(a[..., 0], "L") if a.shape[-1] == 1 else Image.fromarray(a, "RGB")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        path = folder / f"{i:0{width}d}.png"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


#: metrics.jsonl keys drawn as curves, one panel each (present ones only); anything else is left out
CURVE_KEYS = (("d_loss", "discriminator loss"), ("g_loss", "generator loss"), ("fid", "FID"))


def loss_curves_png(series: Sequence[Tuple[str, Sequence[Dict[str, Any]]]]) -> bytes:
    """PNG bytes of the loss curves (and FID, when evaluated) of one or more runs, overlaid.

    ``series`` holds ``(label, records)`` with the records of a run's metrics.jsonl. Each panel
    has its own y axis; runs share colours across panels.
    """
    # matplotlib is heavy (~0.5 s to import): only pictures need it, so it stays off the start-up path
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, title) for k, title in CURVE_KEYS
              if any(isinstance(r.get(k), (int, float)) for _, recs in series for r in recs)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.2), dpi=100, squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for i, (label, recs) in enumerate(series):
            pts = [(r["step"], r[key]) for r in recs if isinstance(r.get(key), (int, float)) and "step" in r]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, color=f"C{i % 10}", lw=1.2, marker="o" if key == "fid" else None, ms=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no logged steps yet", ha="center", va="center")
        axes[0][0].set_axis_off()
    elif len(series) > 1:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def save_loss_curves(path: Union[str, Path], series: Sequence[Tuple[str, Sequence[Dict[str, Any]]]]) -> Path:
    """Write :func:`loss_curves_png` atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, loss_curves_png(series))
    return path


# ==== statgan invert: originals beside their reconstructions ========================================
#: how many median-error and how many worst-error cases :func:`save_inversion_pairs` draws per set
INVERSION_CASES = 8


def median_and_worst(errors: Any, k: int = INVERSION_CASES) -> Tuple[List[int], List[int]]:
    """Indices of the ``k`` images whose errors rank nearest the median (lowest error first) and of the
    ``k`` images with the largest errors (worst first); ``min(k, n)`` of each for ``n`` images.

    The median cases are the ``k`` middle ranks of the ascending order (ranks ``(n - k) // 2`` on), so
    for odd ``n`` and ``k = 1`` it is the median image itself. A NaN error counts as the worst; ties
    keep their index order. With fewer than ``2 k`` images the two lists overlap.
    """
    e = torch.as_tensor(errors).detach().to("cpu", torch.float64).flatten()
    n, k = int(e.numel()), min(int(k), int(e.numel()))
    if k < 1:
        return [], []
    order = torch.argsort(torch.nan_to_num(e, nan=math.inf), stable=True)
    start = (n - k) // 2
    return order[start:start + k].tolist(), order[n - k:].flip(0).tolist()


def inversion_picture_skip(shape: Sequence[int]) -> Optional[str]:
    """Why :func:`save_inversion_pairs` cannot draw samples of per-sample ``shape`` (a one-line note),
    or ``None`` when it can: images (C, H, W) with 1 or 3 channels, or 2-D points (2,)."""
    shape = tuple(int(s) for s in shape)
    if (len(shape) == 3 and shape[0] in (1, 3)) or shape == (2,):
        return None
    return (f"no picture: samples of shape {list(shape)} are neither images with 1 or 3 channels nor 2-D points "
            "(the errors and reconstructions are in the .safetensors file)")


_BG, _INK, _FAINT, _WORST, _FRAME = (245, 245, 245), (25, 25, 25), (95, 95, 95), (170, 20, 20), (175, 175, 175)


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    # FreeType scales the default font; without it Pillow has only its small fixed bitmap font
    return ImageFont.load_default(size=size) if features.check("freetype2") else ImageFont.load_default()


def _put(draw: Any, xy: Tuple[int, int], s: str, font: Any, fill: Tuple[int, int, int], anchor: str) -> None:
    """``draw.text`` placed by its ink box: ``anchor`` "rm" (right, middle) or "mt" (middle, top); by
    hand, since the bitmap font (Pillow without FreeType) takes no ``anchor``."""
    l, t, r, b = draw.textbbox((0, 0), s, font=font)
    x = xy[0] - r if anchor == "rm" else xy[0] - (l + r) // 2
    y = xy[1] - (t + b) // 2 if anchor == "rm" else xy[1] - t
    draw.text((x, y), s, font=font, fill=fill)


def _median(errors: Tensor) -> float:
    """The median as the audit's tables give it (the mean of the two middle values for even n; NaN
    with any NaN), so a picture's headline agrees with ``statgan invert``'s printout."""
    return float(errors.double().quantile(0.5)) if errors.numel() else math.nan


def _rgb_tiles(images: Tensor, scale: int) -> List[Image.Image]:
    """(B, C, H, W) in [-1, 1] -> B RGB images, each pixel a ``scale`` x ``scale`` block; [-1, 1] maps
    to [0, 255] without per-image rescaling (as :func:`png_grid`), so contrast is honest."""
    x = images.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if scale > 1:
        x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    u8 = x.add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return [Image.fromarray(a, "RGB") for a in u8]


def _case_rows(errors: Tensor, k: int) -> List[Tuple[str, List[int], Tuple[int, int, int]]]:
    """(caption, indices, colour) of the rows a set's block shows: the median cases and the worst
    cases, or, for a set of at most ``k`` images, one row of all of them."""
    med, worst = median_and_worst(errors, k)
    n = torch.as_tensor(errors).numel()
    if n <= k:
        return [(f"all {n} image{'s' if n != 1 else ''}, largest error first", worst, _WORST)]
    return [(f"{len(med)} cases nearest the median error", med, _INK),
            (f"{len(worst)} worst cases, largest error first", worst, _WORST)]


def _pairs_png_images(sets: Mapping[str, Tuple[Tensor, Tensor, Tensor]], k: int, error_unit: Optional[str]) -> bytes:
    first = next(iter(sets.values()))[0]
    h0, w0 = int(first.shape[2]), int(first.shape[3])
    scale = max(1, math.ceil(48 / max(h0, w0)))  # small images (MNIST: 28 px) drawn at 2x, nearest neighbour
    th, tw = h0 * scale, w0 * scale
    title, small, text = _font(14), _font(11), _font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(s: str, font: Any) -> int:
        return int(math.ceil(probe.textlength(s, font=font)))

    margin, gap, inner, line = 10, 12, 2, 16
    col = max(tw, width("0.000e-00", small) + 4)  # room for the error under each pair
    label_w = max(width("G(z*)", text), width("x", text)) + 10
    headline = ("each pair: an original x above its reconstruction G(z*); under it, its inversion error"
                + (f" ({error_unit})" if error_unit else ""))
    rows = {name: _case_rows(err, k) for name, (_, _, err) in sets.items()}
    most = max(max(len(idx), 1) for r in rows.values() for _, idx, _ in r)
    w = max(2 * margin + label_w + most * col + (most - 1) * gap, 2 * margin + width(headline, text))
    row_h = line + 2 * th + inner + line  # caption, x, G(z*), errors
    height = sum(line + 4 + len(r) * row_h + 8 for r in rows.values())
    canvas = Image.new("RGB", (w, margin + line + 8 + height + margin), _BG)
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, margin), headline, font=text, fill=_FAINT)
    y = margin + line + 8
    for name, (images, recons, errors) in sets.items():
        err = torch.as_tensor(errors).detach().double().cpu().flatten()
        med = _median(err)
        draw.text((margin, y), f"{name}: {err.numel()} images, median error {med:.3g}", font=title, fill=_INK)
        draw.line((margin, y + line + 1, w - margin, y + line + 1), fill=(200, 200, 200))
        y += line + 4
        for caption, idx, colour in rows[name]:
            draw.text((margin + label_w, y), caption, font=text, fill=colour)
            top = y + line
            _put(draw, (margin + label_w - 6, top + th // 2), "x", text, _FAINT, "rm")
            _put(draw, (margin + label_w - 6, top + th + inner + th // 2), "G(z*)", text, _FAINT, "rm")
            originals, reconstructions = _rgb_tiles(images[idx], scale), _rgb_tiles(recons[idx], scale)
            for j, i in enumerate(idx):
                left = margin + label_w + j * (col + gap)
                x0 = left + (col - tw) // 2
                # a 1 px frame: white images and black ones both stand apart from the background
                draw.rectangle((x0 - 1, top - 1, x0 + tw, top + 2 * th + inner), outline=_FRAME)
                canvas.paste(originals[j], (x0, top))
                canvas.paste(reconstructions[j], (x0, top + th + inner))
                _put(draw, (left + col // 2, top + 2 * th + inner + 3), f"{float(err[i]):.3g}", small, colour, "mt")
            y += row_h
        y += 8
    buf = io.BytesIO()
    canvas.save(buf, format="png")
    return buf.getvalue()


def _pairs_png_points(sets: Mapping[str, Tuple[Tensor, Tensor, Tensor]], k: int, error_unit: Optional[str]) -> bytes:
    # matplotlib is heavy (~0.5 s to import): only pictures need it, so it stays off the start-up path
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection  # matplotlib again: lazy for the same reason

    cols = min(len(sets), 3)
    rows = -(-len(sets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), dpi=100, squeeze=False)
    for ax, (name, (x, r, e)) in zip(axes.flat, sets.items()):
        x, r = x.detach().float().cpu(), r.detach().float().cpu()
        err = torch.as_tensor(e).detach().double().cpu().flatten()
        _, worst = median_and_worst(err, k)
        ax.add_collection(LineCollection(torch.stack([x, r], 1).numpy(), colors="0.6", linewidths=0.6))
        ax.scatter(x[:, 0], x[:, 1], s=6, c="0.2", label="original x", zorder=3)
        ax.scatter(r[:, 0], r[:, 1], s=6, c="tab:blue", label="reconstruction G(z*)", zorder=3)
        if worst:
            w = torch.tensor(worst)
            d = r[w] - x[w]
            ax.quiver(x[w, 0], x[w, 1], d[:, 0], d[:, 1], angles="xy", scale_units="xy", scale=1, color="tab:red",
                      width=0.006, zorder=4, label=f"{len(worst)} worst")
        med = _median(err)
        ax.set_title(f"{name}: {len(err)} points, median error {med:.3g}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
        ax.legend(loc="best", fontsize=6)
    for ax in list(axes.flat)[len(sets):]:
        ax.set_axis_off()
    fig.suptitle("each original x joined to its reconstruction G(z*),\nthe worst as red arrows"
                 + (f"; error: {error_unit}" if error_unit else ""), fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")  # "tight": the title is never cut off
    plt.close(fig)
    return buf.getvalue()


def inversion_pairs_png(
    sets: Mapping[str, Tuple[Tensor, Tensor, Tensor]], *, k: int = INVERSION_CASES, error_unit: Optional[str] = None
) -> bytes:
    """PNG bytes of originals beside their reconstructions G(z*), for every set of an inversion.

    ``sets`` maps a set's name to ``(images, reconstructions, errors)``: images and reconstructions of
    one shape, errors (n,). For images (n, C, H, W) in [-1, 1] with C = 1 or 3, each set is a labelled
    block of two rows of pairs, an original above its reconstruction with its error under it: the
    ``k`` cases nearest the median error, then the ``k`` worst (:func:`median_and_worst`); a set of
    at most ``k`` images gets one row of all of them, worst first. Small images are enlarged
    (nearest neighbour) to at least 48 px; [-1, 1] maps to [0, 255] as in :func:`png_grid`. For 2-D
    points (n, 2), one scatter panel per set: a segment from every original to its reconstruction,
    the ``k`` worst as red arrows. Other shapes raise ``ValueError`` with :func:`inversion_picture_skip`'s note.
    """
    if not sets:
        raise ValueError("no sets to draw")
    shape = tuple(next(iter(sets.values()))[0].shape[1:])
    why = inversion_picture_skip(shape)
    if why is not None:
        raise ValueError(why)
    for name, (x, r, e) in sets.items():
        if tuple(x.shape) != tuple(r.shape) or tuple(x.shape[1:]) != shape or torch.as_tensor(e).numel() != x.shape[0]:
            raise ValueError(f"set {name!r}: images {tuple(x.shape)}, reconstructions {tuple(r.shape)} and "
                             f"{torch.as_tensor(e).numel()} errors do not match")
    draw = _pairs_png_points if shape == (2,) else _pairs_png_images
    return draw(sets, k, error_unit)


def save_inversion_pairs(
    path: Union[str, Path],
    sets: Mapping[str, Tuple[Tensor, Tensor, Tensor]],
    *,
    k: int = INVERSION_CASES,
    error_unit: Optional[str] = None,
) -> Path:
    """Write :func:`inversion_pairs_png` atomically to ``path``."""
    path = Path(path)
    blob = inversion_pairs_png(sets, k=k, error_unit=error_unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, blob)
    return path
