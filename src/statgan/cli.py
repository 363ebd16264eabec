"""Command line: thin sub-commands over the library.

    statgan train [CONFIG.yaml] [key=value ...] [--resume RUN_DIR [--force]]
    statgan sample RUN_DIR [-n 64] [--out grid.png] [--seed 0] [--no-ema] [--mc-dropout]
    statgan eval RUN_DIR [--metrics fid,kid,prdc] [--n 10000] [--extractor lenet]
    statgan eval REFERENCE GENERATED            (image folders, .npz files or data:NAME:SPLIT)
    statgan list [datasets|archs|objectives]

User mistakes end in one line ``statgan: error: ...`` and exit status 2; an interrupted training run
(Ctrl-C, SIGTERM) writes a checkpoint and exits with 128 + the signal number (130, 143).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from . import __version__
from .errors import StatganError

# keys that may change when a run is resumed without --force (they do not change what is learned)
RESUMABLE_CHANGES = ("train.steps", "train.progress", "train.tensorboard", "train.threads", "run.device",
                     "train.log_every", "train.sample_every", "train.checkpoint_every", "train.keep_checkpoints")


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
    from . import config as config_mod
    from .train.trainer import Trainer, default_run_name, read_run_config

    path, overrides = _split_config_and_overrides(args.items)
    if args.resume:
        if path is not None:
            raise StatganError("--resume takes the run directory's own config.yaml; give only key=value overrides")
        run_dir = Path(args.resume)
        saved = read_run_config(run_dir)
        cfg = config_mod.load(run_dir / "config.yaml", overrides)
        changes = config_mod.diff(saved, cfg)
        blocking = [c for c in changes if not c.startswith(RESUMABLE_CHANGES)]
        if blocking and not args.force:
            raise StatganError(
                f"resuming {str(run_dir)!r} with a changed config ({'; '.join(blocking)}); add --force to accept"
            )
        for c in changes:
            print(f"config change on resume: {c}", file=sys.stderr)
        trainer = Trainer(cfg, run_dir, resume=True)
        if changes:
            from .train.checkpoint import atomic_write_bytes

            atomic_write_bytes(run_dir / "config.yaml", cfg.to_yaml().encode())
        print(f"resuming {run_dir} at step {trainer.step} of {cfg.train.steps} (from {trainer.loaded_from.name})", file=sys.stderr)
    else:
        cfg = config_mod.load(path, overrides)
        run_dir = Path(cfg.run.out_dir) / (cfg.run.name or default_run_name(cfg))
        trainer = Trainer(cfg, run_dir)
        n_g = sum(p.numel() for p in trainer.G.parameters())
        n_d = sum(p.numel() for p in trainer.D.parameters())
        print(
            f"statgan {__version__}: {cfg.data.name} {list(trainer.data_shape)} x {len(trainer.train_data)}, "
            f"{cfg.model.arch} G {n_g/1e6:.2f}M / D {n_d/1e6:.2f}M params, objective {trainer.objective.name}, "
            f"{cfg.train.steps} steps on {trainer.device} -> {run_dir}",
            file=sys.stderr,
        )
    result = trainer.fit()
    print(f"done: step {result.step} in {_fmt_seconds(result.seconds)}")
    print(f"samples:    {result.samples}")
    print(f"checkpoint: {result.checkpoint}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import contextlib

    import torch

    from .train.trainer import load_generator
    from .viz import save_samples

    if args.n < 1:
        raise StatganError(f"-n must be at least 1, got {args.n}")
    G, meta = load_generator(Path(args.run_dir), args.checkpoint, ema=not args.no_ema, device=args.device)
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(args.seed)
    z = torch.randn(args.n, int(meta["latent_dim"]), generator=gen).to(device)
    # --mc-dropout: dropout stays on (one fresh mask per image, masks seeded from --seed), BatchNorm in eval
    mode = contextlib.nullcontext()
    if args.mc_dropout:
        from .regularizers.dropout import mc_dropout

        mode = mc_dropout(G, seed=args.seed)
    with torch.no_grad(), mode:
        x = G(z)
    out = Path(args.out)
    if out.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({"samples": x.cpu().contiguous(), "z": z.cpu()}, str(out))
    else:
        save_samples(x, out, nrow=args.nrow)
    which = "EMA" if (meta.get("ema") and not args.no_ema) else "raw"
    mc = ", MC dropout" if args.mc_dropout else ""
    print(f"wrote {args.n} samples ({which} weights{mc}, step {meta['step']}, seed {args.seed}) to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .metrics.evaluate import evaluate_paths, evaluate_run, format_table

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
    if "path" in result:
        print(f"wrote {result['path']}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import data, nets, objectives

    groups = {
        "datasets": data.names(),
        "archs": nets.GENERATORS.names(),
        "objectives": objectives.names(),
    }
    for name, items in groups.items():
        if args.what in (None, name):
            print(f"{name}: {', '.join(items)}")
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
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--out", default="samples.png", help="output .png (grid) or .safetensors (tensors)")
    s.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    s.add_argument("--nrow", type=int, default=None, help="images per grid row")
    s.add_argument("--no-ema", action="store_true", help="use the raw generator instead of the EMA weights")
    s.add_argument("--checkpoint", default=None, help="a specific checkpoint .json (default: the latest)")
    s.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto (default cpu)")
    s.add_argument("--mc-dropout", action="store_true",
                   help="keep dropout on at test time (one fresh mask per image; BatchNorm stays in eval mode)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="sample-quality metrics (FID, KID, PRDC, IS) of a run, or of two image sets")
    e.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run directory, or two image sets REFERENCE GENERATED (folders, .npz files or data:NAME:SPLIT)")
    e.add_argument("--metrics", default="fid,kid,prdc", help="comma-separated: fid, kid, prdc, is (default fid,kid,prdc)")
    e.add_argument("--n", type=int, default=10_000, help="generated samples (default 10000)")
    e.add_argument("--extractor", default=None,
                   help="lenet | inception | pixels (default: lenet for 1-channel images, inception for RGB, pixels for vectors)")
    e.add_argument("--reference", default="train", choices=("train", "test"), help="dataset split to compare with (default train)")
    e.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    e.add_argument("--batch-size", type=int, default=500)
    e.add_argument("--device", default="cpu", help="cpu | cuda | mps (default cpu)")
    e.add_argument("--no-ema", action="store_true", help="evaluate the raw generator instead of the EMA weights")
    e.add_argument("--checkpoint", default=None, help="a specific checkpoint .json (default: the latest)")
    e.add_argument("--no-cache", action="store_true", help="recompute the reference statistics")
    e.add_argument("--out", default=None, help="with two image sets: write the JSON result here")
    e.set_defaults(func=cmd_eval)

    ls = sub.add_parser("list", help="list registered datasets, architectures and objectives")
    ls.add_argument("what", nargs="?", choices=("datasets", "archs", "objectives"))
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .train.trainer import TrainingInterrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # `statgan` alone: the main job is training on the embedded default
        args = parser.parse_args(["train", *(argv or [])])
    try:
        return args.func(args)
    except TrainingInterrupted as exc:
        print(f"statgan: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except StatganError as exc:
        print(f"statgan: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("statgan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
