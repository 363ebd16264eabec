"""``statgan eval``: sample-quality metrics of a run, or of two image sets."""

from __future__ import annotations

import argparse
import sys

from ..errors import StatganError
from ..runtime.validation import check_int
from ._common import GENERATOR_HELP, add_generator_options, command_threads, load_generator_from_args


def _add_eval(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="sample-quality metrics (FID, KID, PRDC, IS) of a generator, or of two image sets")
    e.add_argument("paths", nargs="+", metavar="PATH",
                   help=f"one GENERATOR ({GENERATOR_HELP}), or two image sets REFERENCE GENERATED (folders, .npz files "
                        "or data:NAME:SPLIT)")
    e.add_argument("--metrics", default="fid,kid,prdc", help="comma-separated: fid, kid, prdc, is, recognisable, modes (default fid,kid,prdc)")
    e.add_argument("-n", "--n", type=int, default=10_000, help="generated samples (default 10000)")
    e.add_argument("--extractor", default=None,
                   help="lenet | inception | pixels (default: lenet for 1-channel images, inception for RGB, pixels for vectors)")
    e.add_argument("--reference", default=None, metavar="SPLIT|SET",
                   help="what the samples are compared with: train or test (a run's own dataset; default train), or an "
                        "image set (a folder, an .npz file or data:NAME:SPLIT), which a generator from elsewhere needs")
    e.add_argument("--max-reference", type=int, default=None, metavar="N",
                   help="use at most N reference images (a seeded random subset; stated in the result) (default: all)")
    e.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    e.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default 500)")
    add_generator_options(e, positional=False, ema_help="evaluate the raw generator instead of the EMA weights")
    e.add_argument("--no-cache", action="store_true", help="recompute the reference statistics")
    e.add_argument("--no-progress", action="store_true", help="no progress bars on stderr (they are drawn only when stderr is a terminal)")
    e.add_argument("--out", default=None, help="write the JSON result here (default: a run's eval/ folder, or NAME-eval/ "
                   "beside a generator file; two image sets: not written unless given)")
    e.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    check_int("--batch-size", args.batch_size)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not metrics:
        raise StatganError("--metrics is empty; give e.g. fid,kid,prdc")
    if len(args.paths) not in (1, 2):
        raise StatganError(f"eval takes one run directory or two image sets, got {len(args.paths)} paths")
    progress = not args.no_progress and sys.stderr.isatty()  # bars for a person, not in logs
    with command_threads(args.threads):
        # heavy (torch, the feature extractors): imported once the arguments are known to be sane
        from ..metrics.evaluate import evaluate_paths, evaluate_run, format_table

        if len(args.paths) == 1:
            result = evaluate_run(load_generator_from_args(args, args.paths[0]), metrics=metrics, n=args.n,
                                  extractor=args.extractor, reference=args.reference or "train", seed=args.seed,
                                  batch_size=args.batch_size, cache=not args.no_cache,
                                  max_reference=args.max_reference, progress=progress, out=args.out,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
        else:
            if args.reference is not None:
                raise StatganError("--reference goes with one GENERATOR; with two image sets the first is the reference")
            result = evaluate_paths(args.paths[0], args.paths[1], metrics=metrics, extractor=args.extractor,
                                    batch_size=args.batch_size, device=args.device, out=args.out,
                                    max_reference=args.max_reference, progress=progress)
    print(format_table(result))
    for name, why in result.failures.items():
        print(f"statgan: warning: {name} was not computed (the other metrics were kept): {why}", file=sys.stderr)
    if result.path is not None:
        print(f"wrote {result.path}")
    return 0
