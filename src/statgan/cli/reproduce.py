"""``statgan reproduce NAME``: rerun a paper's experiments and write its report."""

from __future__ import annotations

import argparse

from .. import experiments


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
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
    r.add_argument("--shard", default=None, metavar="I/N",
                   help="run only cells I, I+N, I+2N, ... (0 <= I < N): N processes or machines share the grid "
                        "(e.g. a Slurm job array); then --collect OUT/records*.jsonl")
    r.set_defaults(func=cmd_reproduce)


def _command(args: argparse.Namespace) -> str:
    """The command line the report quotes, rebuilt from the parsed arguments."""
    command = f"statgan reproduce {args.name} --budget {args.budget}"
    for flag, value in (("--out", args.out), ("--jobs", args.jobs), ("--report", args.report)):
        if value is not None:
            command += f" {flag} {value}"
    if args.seeds is not None:
        command += " --seeds " + " ".join(map(str, args.seeds))
    if args.collect:
        command += " --collect " + " ".join(args.collect)
    if args.shard:
        command += f" --shard {args.shard}"
    return command


def cmd_reproduce(args: argparse.Namespace) -> int:
    shard = None
    if args.shard is not None:
        from ..experiments.grid import parse_shard  # heavy (torch, through the grid runner): a shard is a run

        shard = parse_shard(args.shard)
    # experiments.run is loaded on first use (torch, the grid runner)
    result = experiments.run(args.name, budget=args.budget, out=args.out, jobs=args.jobs, seeds=args.seeds,
                             report=args.report, command=_command(args), report_only=args.report_only,
                             collect=args.collect, shard=shard)
    print(f"{result['finished']} of {result['total']} cells finished; report: {result['report']}")
    return 0
