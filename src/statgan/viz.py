"""Pictures: sample grids (torchvision), 2-D scatter plots and loss curves (matplotlib)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch

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
