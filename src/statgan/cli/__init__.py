"""Command line: thin sub-commands over the library.

    statgan train [CONFIG.yaml] [key=value ...] [--resume RUN_DIR [--force] [--use-previous]]
    torchrun --nproc-per-node N -m statgan train ...   (several processes; docs/scaling.md)
    statgan sample GENERATOR [-n 64] [--out grid.png|x.safetensors|x.npz|DIR/] [--seed 0] [--no-ema] [--mc-dropout]
                   [--truncation PSI] [--style-mix [--crossover K] [--mix-grid 4x6]]   (w: stylegan)
    statgan interpolate GENERATOR [--space z|w] [--steps 8] [-n 4] [--out walk.png]
    statgan eval GENERATOR [--reference train|test|SET] [--metrics fid,kid,prdc] [--n 10000] [--extractor lenet]
    statgan eval REFERENCE GENERATED            (image folders, .npz files or data:NAME:SPLIT)
    statgan list [datasets|archs|objectives]
    statgan invert GENERATOR --split train|test|generated|ood|SET [--train SET] [--test SET] [--n 100] [--out F]
    statgan audit GENERATOR [--train SET] [--test SET] [--quick] [--n 100] [--seed 0]   (report.html)
    statgan export GENERATOR --out g.pt|g.pt2

GENERATOR: a run directory, FILE.py:NAME, package.module:NAME, or a TorchScript (.pt, .ts) or
torch.export (.pt2) file, with --latent-shape, --latent normal|uniform and --output-range for a
network from elsewhere (statgan.generator_source).
    statgan reproduce NAME [--budget tiny|small|full] [--out DIR] [--jobs N] [--seeds S ...] [--report MD] [--collect JSONL ...]
                      [--report-only]

User mistakes end in one line ``statgan: error: ...`` and exit status 2; an interrupted training run
(Ctrl-C, SIGTERM) writes a checkpoint and exits with 128 + the signal number (130, 143). Under
torchrun only rank 0 prints (other ranks report only errors of their own, prefixed ``[rank R]``);
only ``train`` and ``audit`` share their work between torchrun's processes (their parsers set
``several_processes``), every other command refuses to run there rather than repeat its work and
write the same files from every process.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Optional, Sequence

from .. import __version__
from ..errors import StatganError, TrainingInterrupted
from ..runtime.ranks import env_rank, env_world_size
from ..runtime.threads import configure_openmp_env
from .audit import _add_audit, _add_invert
from .catalogue import _add_config, _add_list
from .evaluate import _add_eval
from .reproduce import _add_reproduce
from .runs import _add_compare, _add_plot, _add_runs
from .sampling import _add_export, _add_interpolate, _add_sample
from .train import _add_train

#: every command's parser, in the order ``statgan --help`` lists them; each ``_add_<cmd>`` sits beside
#: its ``cmd_<cmd>`` in the module of its family, and the library is imported only by the command that runs
COMMANDS = (_add_train, _add_sample, _add_interpolate, _add_eval, _add_invert, _add_audit, _add_export, _add_list,
            _add_config, _add_runs, _add_compare, _add_plot, _add_reproduce)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="statgan", description="Train and audit GANs as statistical models.")
    p.add_argument("--version", action="version", version=f"statgan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def _one_line_warning(message: Warning | str, category: type, filename: str, lineno: int, file: Any = None,
                      line: Optional[str] = None) -> None:
    """Python warnings (ours and the libraries') as ``statgan: warning: ...`` lines, like every other message."""
    print(f"statgan: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _report(exc: StatganError) -> None:
    """``statgan: error: ...`` -- under torchrun, rank 0 reports errors every rank hits (config, or those
    rank 0 relays); another rank speaks only for an error of its own (e.g. its data), prefixed with its rank."""
    r = env_rank()
    # only a command that imported the distributed helpers can have joined a process group
    dist = sys.modules.get("statgan.runtime.distributed")
    joined = dist is not None and dist.is_initialized()
    if r == 0 or (joined and not isinstance(exc, dist.PeerFailed)):
        print(f"statgan: error: {f'[rank {r}] ' if r else ''}{exc}", file=sys.stderr)


def _check_one_process(args: argparse.Namespace) -> None:
    """Under torchrun, a command that does not split its work between the processes would run it
    ``WORLD_SIZE`` times over, every process writing the same files: refuse it in one line."""
    world = env_world_size()
    if world > 1 and not getattr(args, "several_processes", False):
        raise StatganError(f"statgan {args.command} runs in one process, but torchrun started {world} "
                           f"(WORLD_SIZE={world}); only train and audit share their work between processes: "
                           f"run it without torchrun")


def main(argv: Optional[Sequence[str]] = None) -> int:
    # before any command imports torch: OpenMP reads its waiting policy once, when torch loads it
    configure_openmp_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _one_line_warning
    if args.command is None:
        # `statgan` alone: the main job is training on the embedded default
        args = parser.parse_args(["train", *(argv or [])])
    try:
        _check_one_process(args)
        return args.func(args)
    except TrainingInterrupted as exc:
        if env_rank() == 0:
            print(f"statgan: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except StatganError as exc:
        _report(exc)
        return 2
    except KeyboardInterrupt:
        print("statgan: interrupted", file=sys.stderr)
        return 130
    finally:
        dist = sys.modules.get("statgan.runtime.distributed")
        if dist is not None:
            dist.cleanup()  # leave the process group, if this process joined one


__all__ = ["COMMANDS", "build_parser", "main"]
