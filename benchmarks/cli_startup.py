"""CLI start-up: how long the answers that need no network take, against ``python -c pass``.

Five commands that should answer at once -- ``statgan --help``, ``statgan --version``,
``statgan list``, a config error (``statgan train train.steps=abc``) and ``statgan config show`` --
each run as a fresh process (``python -m statgan ...``, as the console script does), interleaved over
``--repeats`` rounds with the bare interpreter (``python -c pass``) as the plain reference, so that a
busy moment hits every arm alike. Prints the median wall seconds of each, its ratio to the bare
interpreter, what it adds to it, and whether it meets the 1 s target (issue 27). Also prints the
load average before and after: on a shared machine the numbers mean little without it.

    python benchmarks/cli_startup.py                 # 7 rounds (~30 s)
    python benchmarks/cli_startup.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Sequence

#: the commands and their expected exit status (a config error exits with 2)
COMMANDS: Dict[str, tuple] = {
    "statgan --help": (["--help"], 0),
    "statgan --version": (["--version"], 0),
    "statgan list": (["list"], 0),
    "config error": (["train", "train.steps=abc"], 2),
    "statgan config show": (["config", "show"], 0),
}
TARGET_S = 1.0


def _time(argv: Sequence[str], expect: int) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited with {done.returncode}, expected {expect}: {done.stderr.strip()}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    arms: Dict[str, List[float]] = {"python -c pass": [], **{name: [] for name in COMMANDS}}
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        arms["python -c pass"].append(_time([sys.executable, "-c", "pass"], 0))
        for name, (argv, expect) in COMMANDS.items():
            arms[name].append(_time([sys.executable, "-m", "statgan", *argv], expect))
    load_after = os.getloadavg()
    base = statistics.median(arms["python -c pass"])
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} cores); "
          f"{args.repeats} rounds, median wall seconds")
    print(f"{'command':<22} {'median s':>9} {'min s':>7} {'x python':>9} {'+ s':>6}  target <= {TARGET_S:g} s")
    worst = 0.0
    for name, times in arms.items():
        med = statistics.median(times)
        ok = "" if name == "python -c pass" else ("ok" if med <= TARGET_S else "SLOW")
        worst = max(worst, med) if name != "python -c pass" else worst
        print(f"{name:<22} {med:>9.3f} {min(times):>7.3f} {med / base:>9.1f} {med - base:>6.3f}  {ok}")
    print(f"slowest command: {worst:.3f} s ({'meets' if worst <= TARGET_S else 'misses'} the {TARGET_S:g} s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
