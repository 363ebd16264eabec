"""``statgan sample`` and ``statgan interpolate``: pictures and tensors from a trained generator."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

from ..errors import StatganError
from ..runtime.validation import check_int
from ._common import add_generator_options, add_picture_options

if TYPE_CHECKING:
    import torch

#: what ``statgan sample --out`` can write, by suffix
SAMPLE_FORMATS = (".png", ".safetensors")
#: latents per forward pass of ``statgan sample``
SAMPLE_CHUNK = 1024


def _add_sample(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sample", help="draw samples from a trained run")
    add_generator_options(s, use_previous=True)
    s.add_argument("-n", "--n", type=int, default=64, help="number of samples (default 64)")
    add_picture_options(s, "samples.png", "output .png (grid) or .safetensors (tensors)", "latent seed")
    s.add_argument("--nrow", type=int, default=None, help="images per grid row")
    s.add_argument("--mc-dropout", action="store_true",
                   help="keep dropout on at test time (one fresh mask per image; BatchNorm stays in eval mode)")
    st = s.add_argument_group("stylegan")
    st.add_argument("--truncation", type=float, default=None, metavar="PSI",
                    help="truncation in w: w_avg + PSI (w - w_avg); 1 = none, 0 = the average w (stylegan only)")
    st.add_argument("--style-mix", action="store_true",
                    help="a style-mixing grid (.png): rows give the coarse styles, columns the fine ones (stylegan only)")
    st.add_argument("--crossover", type=int, default=0, metavar="K",
                    help="with --style-mix: styles of layers < K from the rows (default: half the layers)")
    st.add_argument("--mix-grid", default="4x6", metavar="RxC", help="with --style-mix: sources per side (default 4x6)")
    s.set_defaults(func=cmd_sample)


def _mix_grid(text: str) -> Tuple[int, int]:
    """``ROWSxCOLS`` of ``--mix-grid``."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        rows = cols = 0
    if rows < 1 or cols < 1:
        raise StatganError(f"--mix-grid {text!r}: expected ROWSxCOLS with positive integers, e.g. 4x6")
    return rows, cols


def _available_memory() -> Optional[int]:
    """Bytes of memory free for this process (Linux and macOS), or ``None`` when unknown."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits_in_memory(G: "torch.nn.Module", n: int, latent_dim: int, device: "torch.device", out: Path) -> None:
    """One line, before anything is allocated, when ``n`` samples (and their latents) cannot be held
    in memory at once -- as the .safetensors file and the .png grid need them."""
    import torch  # heavy: the command runs a network anyway

    with torch.no_grad():
        per_sample = G(torch.zeros(1, latent_dim, device=device)).numel() + latent_dim
    need = n * per_sample * 4
    free = _available_memory()
    if free is not None and need > free:
        raise StatganError(f"-n {n}: {out.name} needs all {n:,} samples in memory at once, about {need / 2**30:,.1f} GiB, "
                           f"but {free / 2**30:,.1f} GiB are free; use a smaller -n (at most about {free // (per_sample * 4):,})")


def _check_sample_args(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.suffix.lower() not in SAMPLE_FORMATS:
        raise StatganError(f"--out {args.out!r}: expected a file ending in {' or '.join(SAMPLE_FORMATS)} "
                           "(a .png grid or .safetensors tensors)")
    check_int("-n", args.n)
    check_int("--scale", args.scale)
    if args.nrow is not None:
        check_int("--nrow", args.nrow)
    if args.style_mix and out.suffix.lower() != ".png":
        raise StatganError(f"--style-mix draws a picture: --out {args.out!r} must end in .png")
    return out


def cmd_sample(args: argparse.Namespace) -> int:
    out = _check_sample_args(args)
    rows, cols = _mix_grid(args.mix_grid)
    # heavy (torch, the networks): imported once the arguments are known to be sane
    import torch
    from safetensors.torch import save as save_safetensors

    from ..latents import style_mix_grid, truncated_samples
    from ..regularizers.dropout import mc_dropout
    from ..rundir.files import atomic_write_bytes
    from ..rundir.run import load_generator
    from ..runtime.seeding import stream_generator
    from ..viz import save_samples

    G, meta = load_generator(Path(args.run_dir), args.checkpoint, ema=not args.no_ema, device=args.device,
                             use_previous=args.use_previous)
    device = next(G.parameters()).device
    gen = stream_generator("cli_latents", args.seed)
    latent_dim = int(meta["latent_dim"])
    if args.style_mix:  # rows from --seed, columns from the stream that follows
        psi = 1.0 if args.truncation is None else args.truncation
        z_rows, z_cols = (torch.randn(k, latent_dim, generator=gen).to(device) for k in (rows, cols))
        x, nrow = style_mix_grid(G, z_rows, z_cols, args.crossover, psi=psi)
        save_samples(x, out, nrow=nrow, scale=args.scale)
        print(f"wrote a {rows}x{cols} style-mixing grid (first row/column: the sources; step {meta['step']}, "
              f"seed {args.seed}) to {out}")
        return 0
    _check_fits_in_memory(G, args.n, latent_dim, device, out)
    z = torch.randn(args.n, latent_dim, generator=gen).to(device)
    # --mc-dropout: dropout stays on (one fresh mask per image, masks seeded from --seed), BatchNorm in eval
    mode = mc_dropout(G, seed=args.seed) if args.mc_dropout else contextlib.nullcontext()
    with torch.no_grad(), mode:
        # in chunks: the networks' activations for a large -n would not fit at once
        x = torch.cat([G(c) if args.truncation is None else truncated_samples(G, c, args.truncation)
                       for c in z.split(SAMPLE_CHUNK)])
    if out.suffix.lower() == ".safetensors":
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, save_safetensors({"samples": x.cpu().contiguous(), "z": z.cpu()}))
    else:
        save_samples(x, out, nrow=args.nrow, scale=args.scale)
    which = "EMA" if (meta.get("ema") and not args.no_ema) else "raw"
    mc = ", MC dropout" if args.mc_dropout else ""
    mc += f", truncation psi={args.truncation:g}" if args.truncation is not None else ""
    print(f"wrote {args.n} samples ({which} weights{mc}, step {meta['step']}, seed {args.seed}) to {out}")
    return 0


def _add_interpolate(sub: argparse._SubParsersAction) -> None:
    ip = sub.add_parser("interpolate", help="latent walks of a trained run: slerp in z (any arch) or lerp in w (stylegan)")
    add_generator_options(ip)
    ip.add_argument("--space", choices=("z", "w"), default="z", help="latent space of the walk (default z)")
    ip.add_argument("--steps", type=int, default=8, help="images per walk, ends included (default 8)")
    ip.add_argument("-n", "--n", type=int, default=4, help="number of walks, one per row (default 4)")
    add_picture_options(ip, "walk.png", "output .png", "latent seed of the end points")
    ip.set_defaults(func=cmd_interpolate)


def cmd_interpolate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise StatganError(f"--out {args.out!r}: expected a file ending in .png")
    check_int("-n", args.n)
    check_int("--scale", args.scale)
    if args.steps < 2:
        raise StatganError(f"--steps must be at least 2 (the two ends), got {args.steps}")
    # heavy (torch, the networks): imported once the arguments are known to be sane
    import torch

    from ..latents import latent_walk
    from ..rundir.run import load_generator
    from ..runtime.seeding import stream_generator
    from ..viz import save_walks

    G, meta = load_generator(Path(args.run_dir), args.checkpoint, ema=not args.no_ema, device=args.device)
    device = next(G.parameters()).device
    gen = stream_generator("cli_latents", args.seed)
    z0, z1 = (torch.randn(args.n, int(meta["latent_dim"]), generator=gen).to(device) for _ in range(2))
    x, nrow = latent_walk(G, z0, z1, args.steps, args.space)
    save_walks(x, nrow, out, scale=args.scale)
    how = "slerp in z" if args.space == "z" else "lerp in w"
    print(f"wrote {args.n} latent walk(s) of {args.steps} steps ({how}, step {meta['step']}, seed {args.seed}) to {out}")
    return 0
