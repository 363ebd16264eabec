"""Command line: thin sub-commands over the library.

    statgan train [CONFIG.yaml] [key=value ...] [--resume RUN_DIR [--force] [--use-previous]]
    torchrun --nproc-per-node N -m statgan train ...   (several processes; docs/scaling.md)
    statgan sample RUN_DIR [-n 64] [--out grid.png] [--seed 0] [--no-ema] [--mc-dropout]
                   [--truncation PSI] [--style-mix [--crossover K] [--mix-grid 4x6]]   (w: stylegan)
    statgan interpolate RUN_DIR [--space z|w] [--steps 8] [-n 4] [--out walk.png]
    statgan eval RUN_DIR [--metrics fid,kid,prdc] [--n 10000] [--extractor lenet]
    statgan eval REFERENCE GENERATED            (image folders, .npz files or data:NAME:SPLIT)
    statgan list [datasets|archs|objectives]
    statgan invert RUN_DIR --split train|test|generated|ood|SET [--n 100] [--loss l2|lenet] [--out F]
    statgan audit RUN_DIR [--quick] [--n 100] [--seed 0] [--device cpu]   (RUN_DIR/audit/report.html)
    statgan reproduce NAME [--budget tiny|small|full] [--out DIR] [--jobs N] [--seeds S ...] [--report MD] [--collect JSONL ...]
                      [--report-only]

User mistakes end in one line ``statgan: error: ...`` and exit status 2; an interrupted training run
(Ctrl-C, SIGTERM) writes a checkpoint and exits with 128 + the signal number (130, 143). Under
torchrun only rank 0 prints (other ranks report only errors of their own, prefixed ``[rank R]``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from safetensors.torch import save as save_safetensors

from . import __version__, data, experiments, nets, objectives, regularizers
from . import config as config_mod
from .audit.run import audit_run, invert_split
from .audit.settings import LOSSES, PROPOSALS, AuditSettings, InvertSettings
from .errors import StatganError
from .latents import latent_walk, style_mix_grid, truncated_samples
from .metrics.evaluate import METRICS, evaluate_paths, evaluate_run, format_table
from .metrics.features import EXTRACTORS
from .rundir.catalog import (RunInfo, compare_runs, comparison_html, describe_run, find_runs, format_comparison,
                             format_runs_table)
from .rundir.files import atomic_write_bytes, atomic_write_text
from .regularizers.dropout import mc_dropout
from .rundir.run import CURVES_FILE, load_generator, read_metrics, read_run_config, write_run_config
from .runtime import distributed
from .runtime.validation import check_int
from .train.trainer import Trainer, TrainingInterrupted, default_run_name
from .viz import loss_curves_png, png_data_uri, save_loss_curves, save_samples, save_walks


def _split_config_and_overrides(items: Sequence[str]) -> tuple:
    path: Optional[str] = None
    overrides: List[str] = []
    for item in items:
        if "=" in item:
            overrides.append(item)
        elif path is None:
            path = item
        else:
            raise StatganError(f"unexpected argument {item!r}: give one config file and key=value overrides")
    return path, overrides


def _fmt_seconds(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def cmd_train(args: argparse.Namespace) -> int:
    main_rank = distributed.env_rank() == 0  # under torchrun only rank 0 talks
    say = print if main_rank else (lambda *a, **k: None)
    path, overrides = _split_config_and_overrides(args.items)
    if args.resume:
        if path is not None:
            raise StatganError("--resume takes the run directory's own config.yaml; give only key=value overrides")
        run_dir = Path(args.resume)
        saved = read_run_config(run_dir)
        cfg = config_mod.load(run_dir / "config.yaml", overrides)
        changes = config_mod.diff(saved, cfg)
        impossible = config_mod.resume_impossible(saved, cfg)
        if impossible:
            raise StatganError(f"resuming {str(run_dir)!r} with {'; '.join(impossible)}: the checkpoint holds another "
                               "network's weights, which cannot load (--force does not apply); start a new run instead")
        blocking = config_mod.resume_blockers(saved, cfg)
        if blocking and not args.force:
            raise StatganError(
                f"resuming {str(run_dir)!r} with a changed config ({'; '.join(blocking)}); add --force to accept"
            )
        for c in changes:
            say(f"config change on resume: {c}", file=sys.stderr)
        trainer = Trainer(cfg, run_dir, resume=True, use_previous=args.use_previous)
        if trainer.step >= cfg.train.steps:
            raise StatganError(f"{str(run_dir)!r} already finished its {cfg.train.steps} steps (at step {trainer.step}); "
                               f"to train longer: statgan train --resume {run_dir} train.steps=N with N > {trainer.step}")
        if changes and main_rank:
            write_run_config(run_dir, cfg)
        say(f"resuming {run_dir} at step {trainer.step} of {cfg.train.steps} (from {trainer.loaded_from.name})", file=sys.stderr)
    else:
        if args.use_previous:
            raise StatganError("--use-previous goes with --resume RUN_DIR")
        cfg = config_mod.load(path, overrides)
        run_dir = Path(cfg.run.out_dir) / (cfg.run.name or default_run_name(cfg))
        trainer = Trainer(cfg, run_dir)
        n_g = sum(p.numel() for p in trainer.G.parameters())
        n_d = sum(p.numel() for p in trainer.D.parameters())
        procs = f" x {trainer.world.size} processes" if trainer.world.distributed else ""
        say(
            f"statgan {__version__}: {cfg.data.name} {list(trainer.data_shape)} x {len(trainer.train_data)}, "
            f"{cfg.model.arch} G {n_g/1e6:.2f}M / D {n_d/1e6:.2f}M params, objective {trainer.objective.name}, "
            f"{cfg.train.steps} steps on {trainer.device}{procs} -> {run_dir}",
            file=sys.stderr,
        )
    result = trainer.fit()
    say(f"done: step {result.step} in {_fmt_seconds(result.seconds)}")
    say(f"samples:    {result.samples} ({trainer.sampler_description})")
    say(f"checkpoint: {result.checkpoint}")
    return 0


#: what ``statgan sample --out`` can write, by suffix
SAMPLE_FORMATS = (".png", ".safetensors")


def cmd_sample(args: argparse.Namespace) -> int:
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
    rows, cols = _mix_grid(args.mix_grid)
    G, meta = load_generator(Path(args.run_dir), args.checkpoint, ema=not args.no_ema, device=args.device,
                             use_previous=args.use_previous)
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(args.seed)
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


#: latents per forward pass of ``statgan sample``
SAMPLE_CHUNK = 1024


def _available_memory() -> Optional[int]:
    """Bytes of memory free for this process (Linux and macOS), or ``None`` when unknown."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits_in_memory(G: torch.nn.Module, n: int, latent_dim: int, device: torch.device, out: Path) -> None:
    """One line, before anything is allocated, when ``n`` samples (and their latents) cannot be held
    in memory at once -- as the .safetensors file and the .png grid need them."""
    with torch.no_grad():
        per_sample = G(torch.zeros(1, latent_dim, device=device)).numel() + latent_dim
    need = n * per_sample * 4
    free = _available_memory()
    if free is not None and need > free:
        raise StatganError(f"-n {n}: {out.name} needs all {n:,} samples in memory at once, about {need / 2**30:,.1f} GiB, "
                           f"but {free / 2**30:,.1f} GiB are free; use a smaller -n (at most about {free // (per_sample * 4):,})")


def _mix_grid(text: str) -> tuple:
    """``ROWSxCOLS`` of ``--mix-grid``."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        rows = cols = 0
    if rows < 1 or cols < 1:
        raise StatganError(f"--mix-grid {text!r}: expected ROWSxCOLS with positive integers, e.g. 4x6")
    return rows, cols


def cmd_interpolate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise StatganError(f"--out {args.out!r}: expected a file ending in .png")
    check_int("-n", args.n)
    check_int("--scale", args.scale)
    if args.steps < 2:
        raise StatganError(f"--steps must be at least 2 (the two ends), got {args.steps}")
    G, meta = load_generator(Path(args.run_dir), args.checkpoint, ema=not args.no_ema, device=args.device)
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(args.seed)
    z0, z1 = (torch.randn(args.n, int(meta["latent_dim"]), generator=gen).to(device) for _ in range(2))
    x, nrow = latent_walk(G, z0, z1, args.steps, args.space)
    save_walks(x, nrow, out, scale=args.scale)
    how = "slerp in z" if args.space == "z" else "lerp in w"
    print(f"wrote {args.n} latent walk(s) of {args.steps} steps ({how}, step {meta['step']}, seed {args.seed}) to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    check_int("--batch-size", args.batch_size)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not metrics:
        raise StatganError("--metrics is empty; give e.g. fid,kid,prdc")
    if len(args.paths) == 1:
        result = evaluate_run(args.paths[0], metrics=metrics, n=args.n, extractor=args.extractor,
                              reference=args.reference, seed=args.seed, batch_size=args.batch_size,
                              device=args.device, ema=not args.no_ema, checkpoint=args.checkpoint,
                              cache=not args.no_cache)
    elif len(args.paths) == 2:
        result = evaluate_paths(args.paths[0], args.paths[1], metrics=metrics, extractor=args.extractor,
                                batch_size=args.batch_size, device=args.device, out=args.out)
    else:
        raise StatganError(f"eval takes one run directory or two image sets, got {len(args.paths)} paths")
    print(format_table(result))
    for name, why in result["failures"].items():
        print(f"statgan: warning: {name} was not computed (the other metrics were kept): {why}", file=sys.stderr)
    if "path" in result:
        print(f"wrote {result['path']}")
    return 0


def _catalogue() -> Dict[str, List[str]]:
    """Every registered name a user can type, by what it is (``statgan list``)."""
    return {
        "presets": config_mod.presets(),
        "datasets": data.names(),
        "archs": nets.GENERATORS.names(),
        "objectives": objectives.names(),
        "regularizers": regularizers.names(),
        "extractors": EXTRACTORS.names(),
        "metrics": METRICS.names(),
        "reproductions": experiments.names(),
    }


def cmd_list(args: argparse.Namespace) -> int:
    for name, items in _catalogue().items():
        if args.what in (None, name):
            print(f"{name}: {', '.join(items)}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "explain":
        if len(args.items) != 1:
            raise StatganError(f"config explain takes one dotted key (e.g. train.steps), got {len(args.items)}")
        print(config_mod.explain(args.items[0]))
        return 0
    path, overrides = _split_config_and_overrides(args.items)
    cfg = config_mod.load(path, overrides)
    print(cfg.to_yaml(), end="")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    print(format_runs_table(find_runs(Path(args.dir))))
    return 0


def _pictures(run: RunInfo) -> Dict[str, str]:
    """data: URIs of a run's loss curves and last sample grid, for the compare page."""
    out = {f"{run.name}/curves": png_data_uri(loss_curves_png([(run.name, read_metrics(run.path))]))}
    grids = sorted((run.path / "samples").glob("step-*.png"))
    if grids:
        out[f"{run.name}/samples"] = png_data_uri(grids[-1].read_bytes())
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    comparison = compare_runs([Path(p) for p in args.runs])
    print(format_comparison(comparison))
    if args.html:
        pictures: Dict[str, str] = {}
        for run in comparison.runs:
            pictures.update(_pictures(run))
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, comparison_html(comparison, pictures))
        print(f"wrote {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    runs = [describe_run(Path(p)) for p in args.runs]
    out = Path(args.out) if args.out else runs[0].path / CURVES_FILE
    if out.suffix.lower() != ".png":
        raise StatganError(f"--out {args.out!r}: expected a .png file")
    save_loss_curves(out, [(r.name, read_metrics(r.path)) for r in runs])
    print(f"wrote {out}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    # the report quotes the command that made it, rebuilt from the parsed arguments
    command = f"statgan reproduce {args.name} --budget {args.budget}"
    for flag, value in (("--out", args.out), ("--jobs", args.jobs), ("--report", args.report)):
        if value is not None:
            command += f" {flag} {value}"
    if args.seeds is not None:
        command += " --seeds " + " ".join(map(str, args.seeds))
    if args.collect:
        command += " --collect " + " ".join(args.collect)
    result = experiments.run(args.name, budget=args.budget, out=args.out, jobs=args.jobs, seeds=args.seeds,
                             report=args.report, command=command, report_only=args.report_only, collect=args.collect)
    print(f"{result['finished']} of {result['total']} cells finished; report: {result['report']}")
    return 0


def _set_threads(threads: int) -> None:
    torch.set_num_threads(check_int("--threads", threads))


def cmd_invert(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    settings = InvertSettings(n=args.n, restarts=args.restarts, steps=args.steps, lr=args.lr, loss=args.loss,
                              seed=args.seed)
    res = invert_split(args.run_dir, args.split, settings, out=args.out, device=args.device,
                       checkpoint=args.checkpoint, ema=not args.no_ema)
    for name, v in res.sets.items():
        e = v.error
        print(f"{name:<14} n={v.n:<5} inversion error ({res.error_unit}): median {e.median:.4g} "
              f"[q25 {e.q25:.4g}, q75 {e.q75:.4g}], mean {e.mean:.4g}")
    print(f"wrote {res.tensors} and {res.path} ({res.seconds:.1f} s)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    knobs = {k: getattr(args, k) for k in ("n", "n_valid", "n_ood", "restarts", "steps", "loss", "sigma", "ais_steps",
                                           "chains", "leapfrog", "proposal", "precondition", "is_samples", "seed")
             if getattr(args, k) is not None}
    if args.ood is not None:
        knobs["ood"] = tuple(x.strip() for x in args.ood.split(",") if x.strip())
    settings = AuditSettings.quick(**knobs) if args.quick else AuditSettings(**knobs)
    summary = audit_run(args.run_dir, settings, checkpoint=args.checkpoint, ema=not args.no_ema, device=args.device,
                        out_dir=args.out)
    for f in summary.findings:
        label = f"({f.id})" if len(f.id) == 1 else "(*)"
        print(f"{label} {f.title}: {f.verdict}")
    assert summary.paths is not None  # audit_run wrote the files
    print(f"report: {summary.paths.report}\nsummary: {summary.paths.summary} ({summary.seconds:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="statgan", description="Train and audit GANs as statistical models.")
    p.add_argument("--version", action="version", version=f"statgan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a GAN (default: DCGAN on the embedded mnist5k)")
    t.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]",
                   help="a YAML preset (e.g. configs/mnist5k-dcgan.yaml) and dotted overrides (train.steps=2000)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    t.add_argument("--force", action="store_true", help="with --resume: accept a changed config")
    t.add_argument("--use-previous", action="store_true",
                   help="with --resume: if the newest checkpoint is corrupt, set it aside and resume from the newest good one")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("-n", "--n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--out", default="samples.png", help="output .png (grid) or .safetensors (tensors) (default samples.png)")
    s.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    s.add_argument("--nrow", type=int, default=None, help="images per grid row")
    s.add_argument("--no-ema", action="store_true", help="use the raw generator instead of the EMA weights")
    s.add_argument("--checkpoint", default=None, help="a specific checkpoint .json (default: the latest)")
    s.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto (default cpu)")
    s.add_argument("--scale", type=int, default=1, help="enlarge each pixel of a .png grid to SCALE x SCALE (default 1)")
    s.add_argument("--use-previous", action="store_true",
                   help="if the newest checkpoint is corrupt, use the newest good one (with a warning)")
    s.add_argument("--mc-dropout", action="store_true",
                   help="keep dropout on at test time (one fresh mask per image; BatchNorm stays in eval mode)")
    s.add_argument("--truncation", type=float, default=None, metavar="PSI",
                   help="truncation in w: w_avg + PSI (w - w_avg); 1 = none, 0 = the average w (stylegan only)")
    s.add_argument("--style-mix", action="store_true",
                   help="a style-mixing grid (.png): rows give the coarse styles, columns the fine ones (stylegan only)")
    s.add_argument("--crossover", type=int, default=0, metavar="K",
                   help="with --style-mix: styles of layers < K from the rows (default: half the layers)")
    s.add_argument("--mix-grid", default="4x6", metavar="RxC", help="with --style-mix: sources per side (default 4x6)")
    s.set_defaults(func=cmd_sample)

    ip = sub.add_parser("interpolate", help="latent walks of a trained run: slerp in z (any arch) or lerp in w (stylegan)")
    ip.add_argument("run_dir", metavar="RUN_DIR")
    ip.add_argument("--space", choices=("z", "w"), default="z", help="latent space of the walk (default z)")
    ip.add_argument("--steps", type=int, default=8, help="images per walk, ends included (default 8)")
    ip.add_argument("-n", "--n", type=int, default=4, help="number of walks, one per row (default 4)")
    ip.add_argument("--out", default="walk.png", help="output .png (default walk.png)")
    ip.add_argument("--seed", type=int, default=0, help="latent seed of the end points (default 0)")
    ip.add_argument("--no-ema", action="store_true", help="use the raw generator instead of the EMA weights")
    ip.add_argument("--checkpoint", default=None, help="a specific checkpoint .json (default: the latest)")
    ip.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto (default cpu)")
    ip.add_argument("--scale", type=int, default=1, help="enlarge each pixel to SCALE x SCALE (default 1)")
    ip.set_defaults(func=cmd_interpolate)

    e = sub.add_parser("eval", help="sample-quality metrics (FID, KID, PRDC, IS) of a run, or of two image sets")
    e.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run directory, or two image sets REFERENCE GENERATED (folders, .npz files or data:NAME:SPLIT)")
    e.add_argument("--metrics", default="fid,kid,prdc", help="comma-separated: fid, kid, prdc, is (default fid,kid,prdc)")
    e.add_argument("-n", "--n", type=int, default=10_000, help="generated samples (default 10000)")
    e.add_argument("--extractor", default=None,
                   help="lenet | inception | pixels (default: lenet for 1-channel images, inception for RGB, pixels for vectors)")
    e.add_argument("--reference", default="train", choices=("train", "test"), help="dataset split to compare with (default train)")
    e.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    e.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default 500)")
    e.add_argument("--device", default="cpu", help="cpu | cuda | mps (default cpu)")
    e.add_argument("--no-ema", action="store_true", help="evaluate the raw generator instead of the EMA weights")
    e.add_argument("--checkpoint", default=None, help="a specific checkpoint .json (default: the latest)")
    e.add_argument("--no-cache", action="store_true", help="recompute the reference statistics")
    e.add_argument("--out", default=None, help="with two image sets: write the JSON result here")
    e.set_defaults(func=cmd_eval)

    # the defaults of invert/audit knobs live in the settings classes; the help strings quote them
    A, Q = AuditSettings, AuditSettings.quick()

    def dflt(name: str) -> str:
        """'default D' for an audit knob, plus its --quick value where that differs."""
        quick = f"; --quick {getattr(Q, name)}" if getattr(Q, name) != getattr(A, name) else ""
        return f"default {getattr(A, name)}{quick}"

    def run_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("run_dir", metavar="RUN_DIR")
        q.add_argument("--seed", type=int, default=InvertSettings.seed,
                       help=f"seed of the image sets and samplers (default {InvertSettings.seed})")
        q.add_argument("--device", default="cpu", help="cpu | cuda | mps (default cpu)")
        q.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads (default 1: the audit's networks are small, and one thread per process "
                            "is fastest when other jobs share the cores; try 2+ on an idle machine)")
        q.add_argument("--no-ema", action="store_true", help="use the raw generator instead of the EMA weights")
        q.add_argument("--checkpoint", default=None, help="a specific checkpoint .json (default: the latest)")

    iv = sub.add_parser("invert", help="invert the generator on train / test / generated / OOD images")
    run_options(iv)
    iv.add_argument("--split", required=True, help="train | test | generated | ood (all OOD sets) | an OOD set name (e.g. glyphs)")
    iv.add_argument("-n", "--n", type=int, default=InvertSettings.n,
                    help=f"images (per OOD set) (default {InvertSettings.n})")
    iv.add_argument("--restarts", type=int, default=InvertSettings.restarts,
                    help=f"random starts per image (default {InvertSettings.restarts})")
    iv.add_argument("--steps", type=int, default=InvertSettings.steps,
                    help=f"Adam steps per start (default {InvertSettings.steps})")
    iv.add_argument("--lr", type=float, default=InvertSettings.lr,
                    help=f"peak learning rate, cosine-annealed (default {InvertSettings.lr})")
    iv.add_argument("--loss", default=InvertSettings.loss, choices=LOSSES,
                    help=f"pixel MSE or LeNet-feature distance (MNIST-like data) (default {InvertSettings.loss})")
    iv.add_argument("--out", default=None, help="output .safetensors (default RUN_DIR/audit/invert-SPLIT-nN-LOSS-rRxS-lrLR-seedSEED.safetensors; JSON beside it)")
    iv.set_defaults(func=cmd_invert)

    au = sub.add_parser("audit", help="audit a run as a statistical model; writes RUN_DIR/audit/report.html")
    run_options(au)
    au.add_argument("--quick", action="store_true", help="tiny settings: a smoke test in seconds (numbers mean little)")
    # None: the settings' default (or --quick's), which the help quotes
    au.add_argument("-n", "--n", type=int, default=None, help=f"train, test and generated images ({dflt('n')})")
    au.add_argument("--n-valid", type=int, default=None, help=f"held-out images for sigma and the typicality test ({dflt('n_valid')})")
    au.add_argument("--n-ood", type=int, default=None, help=f"images per OOD set ({dflt('n_ood')})")
    au.add_argument("--ood", default=None, help="comma-separated OOD sets (default: glyphs,noise,constant,blurred,inverted + local fashion-mnist/svhn)")
    au.add_argument("--restarts", type=int, default=None, help=f"inversion starts per image ({dflt('restarts')})")
    au.add_argument("--steps", type=int, default=None, help=f"inversion Adam steps ({dflt('steps')})")
    au.add_argument("--loss", default=None, choices=LOSSES, help=f"inversion loss ({dflt('loss')})")
    au.add_argument("--sigma", type=float, default=None, help="observation noise std (default: chosen on held-out images)")
    au.add_argument("--ais-steps", type=int, default=None, help=f"AIS annealing steps ({dflt('ais_steps')})")
    au.add_argument("--chains", type=int, default=None, help=f"AIS chains per image ({dflt('chains')})")
    au.add_argument("--leapfrog", type=int, default=None, help=f"HMC leapfrog steps ({dflt('leapfrog')})")
    au.add_argument("--proposal", default=None, choices=PROPOSALS,
                    help=f"AIS's initial distribution: Laplace mixture at the inversion optima, or N(z_inv, s^2 I) ({dflt('proposal')})")
    au.add_argument("--no-precondition", dest="precondition", action="store_false", default=None,
                    help="HMC with unit mass instead of the proposal's precision at each image's heaviest mode")
    au.add_argument("--is-samples", type=int, default=None, help=f"importance samples per image ({dflt('is_samples')})")
    au.add_argument("--out", default=None, help="output folder (default RUN_DIR/audit)")
    au.set_defaults(func=cmd_audit)

    ls = sub.add_parser("list", help="list presets, datasets, architectures, objectives, regularizers, extractors, "
                                     "metrics and reproductions")
    ls.add_argument("what", nargs="?", choices=tuple(_catalogue()))
    ls.set_defaults(func=cmd_list)

    cf = sub.add_parser("config", help="print a resolved config (statgan config show [PRESET|FILE] [key=value ...]) "
                                       "or what a key means (statgan config explain KEY)")
    cf.add_argument("action", choices=("show", "explain"))
    cf.add_argument("items", nargs="*", metavar="[CONFIG] [key=value] | KEY",
                    help="show: a preset or YAML file and dotted overrides; explain: one dotted key")
    cf.set_defaults(func=cmd_config)

    rn = sub.add_parser("runs", help="a table of the runs in a folder: status, step, latest eval")
    rn.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="folder holding run directories (default runs)")
    rn.set_defaults(func=cmd_runs)

    cp = sub.add_parser("compare", help="config differences and results of several runs, side by side")
    cp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    cp.add_argument("--html", default=None, metavar="FILE", help="also write a page with loss curves and last sample grids")
    cp.set_defaults(func=cmd_compare)

    pl = sub.add_parser("plot", help="draw loss curves (and FID) of one or more runs, overlaid")
    pl.add_argument("runs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, help=f"output .png (default: RUN_DIR/{CURVES_FILE} of the first run)")
    pl.set_defaults(func=cmd_plot)

    r = sub.add_parser("reproduce", help="rerun a paper's experiments and write a report (e.g. bridging)")
    r.add_argument("name", metavar="NAME", help=f"reproduction name ({', '.join(experiments.names())})")
    r.add_argument("--budget", default=experiments.DEFAULT_BUDGET,
                   help=f"{' | '.join(experiments.budget_names())} (default {experiments.DEFAULT_BUDGET})")
    r.add_argument("--out", default=None, help="output folder: runs and per-cell JSON (default "
                   f"{experiments.DEFAULT_OUT.format(name='NAME', budget='BUDGET')})")
    r.add_argument("--jobs", type=int, default=experiments.DEFAULT_JOBS,
                   help=f"parallel worker processes, one torch thread each (default {experiments.DEFAULT_JOBS})")
    r.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run (default: the budget's)")
    r.add_argument("--report", default=None,
                   help=f"markdown report path (default OUT/{experiments.DEFAULT_REPORT.format(name='NAME')})")
    r.add_argument("--report-only", action="store_true", help="run nothing: write the report from the finished cells")
    r.add_argument("--collect", nargs="+", metavar="RECORDS", default=None,
                   help="run nothing: write the report from cell records (JSON lines, e.g. OUT/records.jsonl)")
    r.set_defaults(func=cmd_reproduce)
    return p


def _one_line_warning(message: Warning | str, category: type, filename: str, lineno: int, file: Any = None,
                      line: Optional[str] = None) -> None:
    """Python warnings (ours and the libraries') as ``statgan: warning: ...`` lines, like every other message."""
    print(f"statgan: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _one_line_warning
    if args.command is None:
        # `statgan` alone: the main job is training on the embedded default
        args = parser.parse_args(["train", *(argv or [])])
    try:
        return args.func(args)
    except TrainingInterrupted as exc:
        if distributed.env_rank() == 0:
            print(f"statgan: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except StatganError as exc:
        # under torchrun: rank 0 reports errors every rank hits (config, or those rank 0 relays);
        # another rank speaks only for an error of its own (e.g. its data), prefixed with its rank
        r = distributed.env_rank()
        if r == 0 or (distributed.is_initialized() and not isinstance(exc, distributed.PeerFailed)):
            print(f"statgan: error: {f'[rank {r}] ' if r else ''}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("statgan: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()  # leave the process group, if this process joined one


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
