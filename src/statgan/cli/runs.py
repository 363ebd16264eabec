"""``statgan runs``, ``statgan compare`` and ``statgan plot``: looking at run directories."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Dict

from ..errors import StatganError

if TYPE_CHECKING:
    from ..rundir.catalog import RunInfo

#: ``statgan plot``'s default output, inside the first run (as statgan.rundir.run.CURVES_FILE)
CURVES_HELP = "RUN_DIR/curves.png of the first run"


def _add_runs(sub: argparse._SubParsersAction) -> None:
    rn = sub.add_parser("runs", help="a table of the runs in a folder: status, step, latest eval")
    rn.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="folder holding run directories (default runs)")
    rn.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from ..rundir.catalog import find_runs, format_runs_table  # heavy (torch, via the checkpoint reader)

    print(format_runs_table(find_runs(Path(args.dir))))
    return 0


def _pictures(run: "RunInfo") -> Dict[str, str]:
    """data: URIs of a run's loss curves and last sample grid, for the compare page."""
    from ..rundir.run import read_metrics  # heavy (torch)
    from ..viz import loss_curves_png, png_data_uri

    out = {f"{run.name}/curves": png_data_uri(loss_curves_png([(run.name, read_metrics(run.path))]))}
    grids = sorted((run.path / "samples").glob("step-*.png"))
    if grids:
        out[f"{run.name}/samples"] = png_data_uri(grids[-1].read_bytes())
    return out


def _add_compare(sub: argparse._SubParsersAction) -> None:
    cp = sub.add_parser("compare", help="config differences and results of several runs, side by side")
    cp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    cp.add_argument("--html", default=None, metavar="FILE", help="also write a page with loss curves and last sample grids")
    cp.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..rundir.catalog import compare_runs, comparison_html, format_comparison  # heavy (torch)
    from ..rundir.files import atomic_write_text

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


def _add_plot(sub: argparse._SubParsersAction) -> None:
    pl = sub.add_parser("plot", help="draw loss curves (and FID) of one or more runs, overlaid")
    pl.add_argument("runs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, help=f"output .png (default: {CURVES_HELP})")
    pl.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    if args.out is not None and Path(args.out).suffix.lower() != ".png":
        raise StatganError(f"--out {args.out!r}: expected a .png file")
    from ..rundir.catalog import describe_run  # heavy (torch)
    from ..rundir.run import CURVES_FILE, read_metrics
    from ..viz import save_loss_curves

    runs = [describe_run(Path(p)) for p in args.runs]
    out = Path(args.out) if args.out else runs[0].path / CURVES_FILE
    save_loss_curves(out, [(r.name, read_metrics(r.path)) for r in runs])
    print(f"wrote {out}")
    return 0
