"""``statgan train``: a config (preset or YAML, dotted overrides) in, a run directory out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__
from .. import config as config_mod
from ..errors import StatganError
from ..runtime.ranks import env_rank
from ._common import fmt_seconds, split_config_and_overrides


def _add_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a GAN (default: DCGAN on the embedded mnist5k)")
    t.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]",
                   help="a YAML preset (e.g. configs/mnist5k-dcgan.yaml) and dotted overrides (train.steps=2000)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    t.add_argument("--force", action="store_true", help="with --resume: accept a changed config")
    t.add_argument("--use-previous", action="store_true",
                   help="with --resume: if the newest checkpoint is corrupt, set it aside and resume from the newest good one")
    t.set_defaults(func=cmd_train, several_processes=True)


def _resumed_config(args: argparse.Namespace, overrides: list, say) -> tuple:
    """(run_dir, cfg, changes) of ``--resume``, refusing what cannot or should not change."""
    from ..rundir.run import read_run_config  # heavy (torch): after the arguments are known to be sane

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
        raise StatganError(f"resuming {str(run_dir)!r} with a changed config ({'; '.join(blocking)}); add --force to accept")
    for c in changes:
        say(f"config change on resume: {c}", file=sys.stderr)
    return run_dir, cfg, changes


def cmd_train(args: argparse.Namespace) -> int:
    main_rank = env_rank() == 0  # under torchrun only rank 0 talks
    say = print if main_rank else (lambda *a, **k: None)
    path, overrides = split_config_and_overrides(args.items)
    if args.resume:
        if path is not None:
            raise StatganError("--resume takes the run directory's own config.yaml; give only key=value overrides")
        run_dir, cfg, changes = _resumed_config(args, overrides, say)
    else:
        if args.use_previous:
            raise StatganError("--use-previous goes with --resume RUN_DIR")
        cfg = config_mod.load(path, overrides)  # a config mistake ends here, before torch is imported
    # heavy (torch, the networks): only once the config is valid
    from ..rundir.run import write_run_config
    import torch

    from ..runtime.threads import ThreadTuner
    from ..train.thread_invariance import thread_tuner_for
    from ..train.trainer import Trainer, default_run_name

    if args.resume:
        trainer = Trainer(cfg, run_dir, resume=True, use_previous=args.use_previous)
        if trainer.step >= cfg.train.steps:
            raise StatganError(f"{str(run_dir)!r} already finished its {cfg.train.steps} steps (at step {trainer.step}); "
                               f"to train longer: statgan train --resume {run_dir} train.steps=N with N > {trainer.step}")
        if changes and main_rank:
            write_run_config(run_dir, cfg)
        say(f"resuming {run_dir} at step {trainer.step} of {cfg.train.steps} (from {trainer.loaded_from.name})", file=sys.stderr)
    else:
        run_dir = Path(cfg.run.out_dir) / (cfg.run.name or default_run_name(cfg))
        trainer = Trainer(cfg, run_dir)
        n_g = sum(p.numel() for p in trainer.G.parameters())
        n_d = sum(p.numel() for p in trainer.D.parameters())
        procs = f" x {trainer.world.size} processes" if trainer.world.distributed else ""
        say(f"statgan {__version__}: {cfg.data.name} {list(trainer.data_shape)} x {len(trainer.train_data)}, "
            f"{cfg.model.arch} G {n_g/1e6:.2f}M / D {n_d/1e6:.2f}M params, objective {trainer.objective.name}, "
            f"{cfg.train.steps} steps on {trainer.device}{procs} -> {run_dir}", file=sys.stderr)
        hint = trainer.precision.bf16_hint(image_data=len(trainer.data_shape) == 3)
        if hint:
            say(hint, file=sys.stderr)
    if not cfg.train.threads:
        # train.threads unset: torch's count, or one thread while that is faster (a busy neighbour on the
        # cores; statgan.runtime.threads.ThreadTuner), where switching cannot change the run's numbers;
        # a count the user set is kept as given
        tuner = thread_tuner_for(trainer, ThreadTuner)
        if tuner is not None:
            trainer.callbacks.append(tuner)
        else:
            say(f"threads: fixed at {torch.get_num_threads()}: this CPU's kernels give different numbers with 1 and 2 "
                "threads, so switching would make the result depend on the machine's load (train.threads=N chooses)",
                file=sys.stderr)
    result = trainer.fit()
    say(f"done: step {result.step} in {fmt_seconds(result.seconds)}")
    say(f"samples:    {result.samples} ({trainer.sampler_description})")
    say(f"checkpoint: {result.checkpoint}")
    return 0
