"""``statgan sample`` and ``statgan interpolate``: pictures and tensors from a trained generator."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

from ..errors import StatganError
from ..runtime.validation import check_int
from ._common import add_generator_options, add_picture_options, command_threads, load_generator_from_args

if TYPE_CHECKING:
    import torch

    from ..generator_source import LoadedGenerator

#: what ``statgan sample --out`` can write, by suffix (and a folder: ``--out DIR/``, one PNG per sample)
SAMPLE_FORMATS = (".png", ".safetensors", ".npz")
#: latents per forward pass of ``statgan sample``
SAMPLE_CHUNK = 1024


def _add_sample(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sample", help="draw samples from a generator")
    add_generator_options(s, use_previous=True)
    s.add_argument("-n", "--n", type=int, default=64, help="number of samples (default 64)")
    add_picture_options(s, "samples.png", "output: a .png grid, .safetensors tensors (samples and latents), an .npz "
                        "uint8 NHWC array 'images' (what torch-fidelity and clean-fid read), or a folder DIR/ of one "
                        "PNG per sample", "latent seed")
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


def _is_folder(text: str) -> bool:
    """``--out DIR/`` (a trailing slash) or an existing folder: one PNG per sample."""
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def _check_sample_args(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if not _is_folder(args.out) and out.suffix.lower() not in SAMPLE_FORMATS:
        raise StatganError(f"--out {args.out!r}: expected a file ending in {', '.join(SAMPLE_FORMATS)} "
                           "(a .png grid, .safetensors tensors, an .npz uint8 array) or a folder DIR/ (one PNG per sample)")
    check_int("-n", args.n)
    check_int("--scale", args.scale)
    if args.nrow is not None:
        check_int("--nrow", args.nrow)
    if args.style_mix and (_is_folder(args.out) or out.suffix.lower() != ".png"):
        raise StatganError(f"--style-mix draws a picture: --out {args.out!r} must end in .png")
    return out


def cmd_sample(args: argparse.Namespace) -> int:
    out = _check_sample_args(args)
    rows, cols = _mix_grid(args.mix_grid)
    with command_threads(args.threads):
        return _sample(args, out, rows, cols)


def _generate(G: "torch.nn.Module", z: "torch.Tensor", truncation: Optional[float]) -> "torch.Tensor":
    """G at ``z`` in chunks (the activations for a large -n would not fit at once), each chunk one
    tick of the command's thread tuner."""
    import torch  # heavy (torch, the latents' helpers): the command is generating by now

    from ..latents import truncated_samples
    from ..runtime import threads

    parts = []
    threads.loop_start("generate")
    for c in z.split(SAMPLE_CHUNK):
        parts.append(G(c) if truncation is None else truncated_samples(G, c, truncation))
        threads.loop_tick()
    return torch.cat(parts)


def _sample(args: argparse.Namespace, out: Path, rows: int, cols: int) -> int:
    # heavy (torch, the networks): imported once the arguments are known to be sane
    import torch

    from ..latents import style_mix_grid
    from ..regularizers.dropout import mc_dropout
    from ..runtime.seeding import stream_generator
    from ..viz import save_samples

    loaded = load_generator_from_args(args)
    G, latent_dim, device = loaded.module, loaded.latent_dim, loaded.device
    gen = stream_generator("cli_latents", args.seed)
    if args.style_mix:  # rows from --seed, columns from the stream that follows
        psi = 1.0 if args.truncation is None else args.truncation
        z_rows, z_cols = (torch.randn(k, latent_dim, generator=gen).to(device) for k in (rows, cols))
        x, nrow = style_mix_grid(G, z_rows, z_cols, args.crossover, psi=psi)
        save_samples(x, out, nrow=nrow, scale=args.scale)
        print(f"wrote a {rows}x{cols} style-mixing grid (first row/column: the sources; {_which(loaded)}, "
              f"seed {args.seed}) to {out}")
        return 0
    _check_fits_in_memory(G, args.n, latent_dim, device, out)
    z = torch.randn(args.n, latent_dim, generator=gen).to(device)
    # --mc-dropout: dropout stays on (one fresh mask per image, masks seeded from --seed), BatchNorm in eval
    mode = mc_dropout(G, seed=args.seed) if args.mc_dropout else contextlib.nullcontext()
    with torch.no_grad(), mode:
        x = _generate(G, z, args.truncation)
    _write_samples(args, out, x, z)
    mc = ", MC dropout" if args.mc_dropout else ""
    mc += f", truncation psi={args.truncation:g}" if args.truncation is not None else ""
    print(f"wrote {args.n} samples ({_which(loaded)}{mc}, seed {args.seed}) to {out}{os.sep if _is_folder(args.out) else ''}")
    return 0


def _which(loaded: "LoadedGenerator") -> str:
    """A run's weights and step, or the kind of a generator from elsewhere."""
    ident = loaded.identity
    return f"{ident.weights} weights, step {ident.step}" if ident.kind == "run" else f"{ident.kind} {ident.spec}"


def _write_samples(args: argparse.Namespace, out: Path, x: "torch.Tensor", z: "torch.Tensor") -> None:
    """``--out``: a folder of PNGs, .safetensors (samples and latents), .npz (uint8 NHWC) or a .png grid."""
    import io  # the writers (numpy, safetensors, PIL through viz): only once there are samples to write

    import numpy as np
    from safetensors.torch import save as save_safetensors

    from ..rundir.files import atomic_write_bytes
    from ..viz import save_sample_pngs, save_samples, to_uint8_nhwc

    if _is_folder(args.out):
        if x.dim() != 4:
            raise StatganError(f"--out {args.out!r}: one PNG per sample needs images, but the samples have shape "
                               f"{tuple(x.shape[1:])}; write .safetensors or .npz")
        save_sample_pngs(x, out)
        return
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".safetensors":
        atomic_write_bytes(out, save_safetensors({"samples": x.cpu().contiguous(), "z": z.cpu()}))
    elif suffix == ".npz":
        if x.dim() != 4:
            raise StatganError(f"--out {args.out!r}: an .npz of uint8 images needs images, but the samples have shape "
                               f"{tuple(x.shape[1:])}; write .safetensors")
        buf = io.BytesIO()
        np.savez(buf, images=to_uint8_nhwc(x))
        atomic_write_bytes(out, buf.getvalue())
    else:
        save_samples(x, out, nrow=args.nrow, scale=args.scale)


def _add_interpolate(sub: argparse._SubParsersAction) -> None:
    ip = sub.add_parser("interpolate", help="latent walks of a generator: slerp in z (any) or lerp in w (a stylegan run)")
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
    with command_threads(args.threads):
        return _interpolate(args, out)


def _interpolate(args: argparse.Namespace, out: Path) -> int:
    # heavy (torch, the networks): imported once the arguments are known to be sane
    import torch

    from ..latents import latent_walk
    from ..runtime.seeding import stream_generator
    from ..viz import save_walks

    loaded = load_generator_from_args(args)
    gen = stream_generator("cli_latents", args.seed)
    z0, z1 = (torch.randn(args.n, loaded.latent_dim, generator=gen).to(loaded.device) for _ in range(2))
    with torch.no_grad():
        x, nrow = latent_walk(loaded.module, z0, z1, args.steps, args.space)
    save_walks(x, nrow, out, scale=args.scale)
    how = "slerp in z" if args.space == "z" else "lerp in w"
    print(f"wrote {args.n} latent walk(s) of {args.steps} steps ({how}, {_which(loaded)}, seed {args.seed}) to {out}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="write a generator as a TorchScript (.pt) or torch.export (.pt2) file")
    add_generator_options(ex)
    ex.add_argument("--out", required=True, help="output file: .pt or .ts (TorchScript), .pt2 (torch.export)")
    ex.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    with command_threads(args.threads):
        from ..generator_source import export_generator  # heavy: torch

        loaded = load_generator_from_args(args)
        path = export_generator(loaded, args.out)
    print(f"wrote {path} ({_which(loaded)}; takes (B, {loaded.latent_dim}) latents z ~ N(0, I), returns "
          f"(B, {', '.join(map(str, loaded.data_shape))}) on [-1, 1]; GENERATOR = {path} needs no options)")
    return 0
