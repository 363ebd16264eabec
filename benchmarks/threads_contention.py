"""Default threads against one thread, on an idle machine and beside a busy process (issue 27).

``--workload train`` (the default) times the training loop as described below; ``--workload invert``
times ``statgan invert RUN --split test`` (the audit's main loop: Adam steps through the generator;
``--n`` images, ``--steps`` steps, the JSON's ``seconds``) and ``--workload eval`` times ``statgan
eval RUN --n N --no-cache`` (generating and LeNet features; the process's wall time, start-up
included), each on a run this benchmark trains for 20 steps first (the weights do not change the
cost). There the one-thread arm is ``--threads 1`` and the default arm is the command's own
default: torch's count with the thread tuner on the library's loops.

Runs the default training (``python -m statgan train``: mnist5k, DCGAN width 32, rpgan with R1/R2,
EMA, batch 64) for ``--steps`` steps as fresh subprocesses -- a fresh process, because libgomp
reads its waiting policy from the environment when ``import torch`` loads it -- under

    {idle, beside a competitor}  x  {default threads (one row per environment arm), train.threads=1}

``--repeats`` times, interleaved so that drift in the machine's other load hits every arm alike,
and prints the median seconds of the training loop (``elapsed_s`` of the last metrics.jsonl record:
start-up and the final sample/checkpoint are left out), the process's CPU seconds, and the ratios

    one-thread seconds / default-threads seconds      (targets: >= 0.9 contended, >= 1.3 idle)

Environment arms of the default-threads run (the one-thread run has no OpenMP workers to wait, so
it is run once per condition, under statgan's defaults):

* ``libgomp``  -- the old behaviour: no OpenMP waiting variables, ``STATGAN_OPENMP_DEFAULTS=0``
                  (libgomp's own 300000-iteration spin); left out with ``--no-reference``;
* ``statgan``  -- what :func:`statgan.runtime.threads.configure_openmp_env` sets;
* one arm per ``--arm K=V[,K=V...]``, and one for all ``--env K=V`` together;
* with ``--tuner``, a twin ``NAME+tuner`` of every arm but ``libgomp``, whose training has a
  :class:`statgan.runtime.threads.ThreadTuner` step callback. Until the command line installs the
  tuner itself these twins run through ``--runner trainer`` (the same ``Trainer`` started by a
  few lines of Python); once it does, ``statgan`` already includes it, and ``libgomp`` switches it
  off (``STATGAN_THREAD_TUNER=0``) to stay the old behaviour.

The competitor (started before, killed after each contended measurement, and sharing the arm's
environment) is a torch matmul busy loop with ``--competitor-threads`` threads (default 1; 2
imitates a second statgan command such as ``statgan eval``), or with ``--competitor python`` a
pure-Python loop. Periodic work stays as the default config has it: at these step counts
``sample_every`` (1000), ``checkpoint_every`` (2000) and ``eval_every`` (0) never fire, so only the
final sample grid and checkpoint are written, after the timed loop. The progress bar is off.

    python benchmarks/threads_contention.py --tuner             # 150 steps x 3 repeats (~25 min:
                                                                # libgomp beside the loop ~4 min a run)
    python benchmarks/threads_contention.py --steps 60 --repeats 1 --no-reference
    python benchmarks/threads_contention.py --arm OMP_WAIT_POLICY=PASSIVE --arm GOMP_SPINCOUNT=100000
    python benchmarks/threads_contention.py --conditions contended --competitor-threads 2 --tuner
    python benchmarks/threads_contention.py --workload invert --steps 100 --repeats 3 --no-reference

The machine's load average is printed with every measurement (it counts the benchmark's own
processes, about 1-2.5): "idle" means only this benchmark's processes, which a shared machine may
not give; read the ratios with the load beside them. Measured results: the module docstring of
:mod:`statgan.runtime.threads`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from statgan.runtime.threads import (DEFAULTS, OPT_OUT, TUNER_OPT_OUT,  # noqa: E402  (imports no torch)
                                    configure_openmp_env)

#: variables that decide how OpenMP threads wait; removed from the inherited environment so that
#: every arm starts from the same place whatever the calling shell exports
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", OPT_OUT, TUNER_OPT_OUT, "STATGAN_BENCH_TUNER")
#: the old behaviour: no statgan defaults, no thread tuner (once the command line has one)
OLD = {OPT_OUT: "0", TUNER_OPT_OUT: "0"}

#: ``--runner trainer``: what ``statgan train`` does for a new run (load the default preset with the
#: overrides, ``Trainer(cfg, out_dir/name).fit()``), without the command line in front of it; with
#: ``STATGAN_BENCH_TUNER=1`` a :class:`~statgan.runtime.threads.ThreadTuner` is its step callback
TRAINER_SCRIPT = ("import os, sys\n"
                  "from pathlib import Path\n"
                  "from statgan import config\n"
                  "from statgan.train.trainer import Trainer\n"
                  "callbacks = []\n"
                  "if os.environ.get('STATGAN_BENCH_TUNER') == '1':\n"
                  "    from statgan.runtime.threads import ThreadTuner\n"
                  "    callbacks.append(ThreadTuner(log=lambda s: print(s, file=sys.stderr, flush=True)))\n"
                  "cfg = config.load(None, sys.argv[1:])\n"
                  "Trainer(cfg, Path(cfg.run.out_dir) / cfg.run.name, callbacks=callbacks).fit()\n")

#: busy loops that stop by themselves once the benchmark is gone (however it ended)
COMPETITORS = {
    "matmul": ("import os, sys, torch\n"
               "torch.set_num_threads(int(sys.argv[1]))\n"
               "parent, a = os.getppid(), torch.rand(256, 256)\n"
               "print('ready', flush=True)\n"
               "while os.getppid() == parent:\n"
               "    for _ in range(100):\n"
               "        b = a @ a\n"),
    "python": ("import os\n"
               "parent, x = os.getppid(), 0\n"
               "print('ready', flush=True)\n"
               "while os.getppid() == parent:\n"
               "    for _ in range(100000):\n"
               "        x += 1\n"),
}


@dataclass
class Arm:
    name: str
    env: Dict[str, str]
    threads: Optional[int] = None  # train.threads; None = statgan's default
    runner: Optional[str] = None  # None: --runner
    times: Dict[str, List[float]] = field(default_factory=lambda: {"idle": [], "contended": []})
    cpu: Dict[str, List[float]] = field(default_factory=lambda: {"idle": [], "contended": []})


def parse_pairs(items: Sequence[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise SystemExit(f"threads_contention: expected KEY=VALUE, got {pair!r}")
            out[key] = value
    return out


def base_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def make_arms(args: argparse.Namespace) -> List[Arm]:
    arms: List[Arm] = []
    if not args.no_reference:
        arms.append(Arm("libgomp", {**base_env(), **OLD}))
    ours = base_env()
    configure_openmp_env(ours)
    variants = [Arm("statgan", ours)]
    variants += [Arm(spec, {**base_env(), **OLD, **parse_pairs([spec])}) for spec in args.arm]
    if args.env:
        variants.append(Arm(",".join(args.env), {**base_env(), **OLD, **parse_pairs(args.env)}))
    for arm in variants:
        arms.append(arm)
        if args.tuner:  # its twin with a ThreadTuner (the trainer runner installs it)
            env = {k: v for k, v in arm.env.items() if k != TUNER_OPT_OUT}
            arms.append(Arm(f"{arm.name}+tuner", {**env, "STATGAN_BENCH_TUNER": "1"}, runner="trainer"))
    arms.append(Arm("threads=1", dict(ours), threads=1))
    return arms


def load() -> str:
    return "{:.2f}/{:.2f}".format(*os.getloadavg()[:2])


def start_competitor(kind: str, threads: int, env: Dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", COMPETITORS[kind], str(threads)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()  # torch imported, loop about to start
    if line.strip() != "ready":
        proc.kill()
        raise SystemExit(f"threads_contention: the {kind} competitor did not start")
    time.sleep(0.5)
    return proc


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def train_once(arm: Arm, steps: int, workdir: Path, tag: str, overrides: Sequence[str], runner: str) -> tuple:
    """Returns (loop seconds, process CPU seconds, process wall seconds, the tuner's last word)."""
    name = f"run-{tag}"
    runner = arm.runner or runner
    head = [sys.executable, "-m", "statgan", "train"] if runner == "cli" else [sys.executable, "-c", TRAINER_SCRIPT]
    cmd = [*head, f"train.steps={steps}", f"run.out_dir={workdir}", f"run.name={name}", "train.progress=false",
           *overrides]
    if arm.threads:
        cmd.append(f"train.threads={arm.threads}")
    log = workdir / f"{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=arm.env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # wait4: the child's own CPU time
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-3000:])
        raise SystemExit(f"threads_contention: {' '.join(cmd)} exited with {proc.returncode}")
    lines = (workdir / name / "metrics.jsonl").read_text().splitlines()
    loop = json.loads(lines[-1])["elapsed_s"]
    decisions = [ln for ln in log.read_text().splitlines() if ln.startswith("threads: ")]
    tuned = f"  tuner: {len(decisions)} decision(s), last {decisions[-1][9:]}" if decisions else ""
    return loop, usage.ru_utime + usage.ru_stime, wall, tuned


def command_once(arm: Arm, workload: str, steps: int, n: int, run_dir: Path, workdir: Path, tag: str) -> tuple:
    """``statgan invert|eval`` on ``run_dir``: (seconds, process CPU seconds, wall seconds, "")."""
    if workload == "invert":
        out = workdir / f"invert-{tag}.safetensors"
        cmd = [sys.executable, "-m", "statgan", "invert", str(run_dir), "--split", "test", "--n", str(n),
               "--steps", str(steps), "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", "statgan", "eval", str(run_dir), "--n", str(n), "--no-cache",
               "--no-progress", "--metrics", "fid"]
    if arm.threads:
        cmd += ["--threads", str(arm.threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=arm.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    wall = time.perf_counter() - t0
    text = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(text[-3000:])
        raise SystemExit(f"threads_contention: {' '.join(cmd)} failed")
    seconds = json.loads(out.with_suffix(".json").read_text())["seconds"] if workload == "invert" else wall
    return seconds, usage.ru_utime + usage.ru_stime, wall, ""


def prepare_run(workdir: Path) -> Path:
    """A 20-step default run to invert or evaluate (its weights do not change what a step costs)."""
    env = base_env()
    configure_openmp_env(env)
    subprocess.run([sys.executable, "-m", "statgan", "train", "train.steps=20", f"run.out_dir={workdir}",
                    "run.name=generator", "train.progress=false"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return workdir / "generator"


def fmt(xs: List[float]) -> str:
    if not xs:
        return "-"
    med = statistics.median(xs)
    return f"{med:7.1f}" + (f" ({min(xs):.1f}-{max(xs):.1f})" if len(xs) > 1 else "")


def _interrupt(signum, frame):
    """SIGTERM (a timeout, a kill) unwinds like Ctrl-C, so that the children are stopped on the way out."""
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=("train", "invert", "eval"), default="train",
                    help="what is timed: the training loop (default), statgan invert, or statgan eval")
    ap.add_argument("--steps", type=int, default=150,
                    help="training steps per run, or Adam steps of invert (default 150)")
    ap.add_argument("--n", type=int, default=100, help="invert: test images; eval: generated samples (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per arm and condition (default 3)")
    ap.add_argument("--competitor", choices=sorted(COMPETITORS), default="matmul",
                    help="the busy neighbour: torch matmul loop (default) or pure-Python loop")
    ap.add_argument("--competitor-threads", type=int, default=1,
                    help="torch threads of the matmul competitor (default 1; 2 = like a second statgan)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra arm with these variables (repeatable; all --env form one arm)")
    ap.add_argument("--arm", action="append", default=[], metavar="K=V[,K=V]",
                    help="an extra arm per use, with these variables")
    ap.add_argument("--tuner", action="store_true",
                    help="give 'statgan' and every --arm/--env arm a twin NAME+tuner with a ThreadTuner step "
                         "callback (run through the trainer runner until the command line installs one itself)")
    ap.add_argument("--no-reference", action="store_true",
                    help="leave out the 'libgomp' arm (no statgan OpenMP defaults: the old behaviour)")
    ap.add_argument("--conditions", default="idle,contended",
                    help="comma-separated subset of idle,contended (default both)")
    ap.add_argument("--runner", choices=("cli", "trainer"), default="cli",
                    help="cli: python -m statgan train (default); trainer: the same Trainer started by a "
                         "three-line script, which bypasses the command line (its own start-up aside, the same run)")
    ap.add_argument("overrides", nargs="*", help="extra key=value config overrides for every run")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    conditions = [c for c in args.conditions.split(",") if c]
    if not set(conditions) <= {"idle", "contended"} or not conditions:
        ap.error("--conditions takes idle and/or contended")

    if args.workload != "train" and (args.tuner or args.runner != "cli"):
        ap.error("--tuner and --runner go with --workload train (invert and eval tune by default)")
    arms = make_arms(args)
    print(f"threads_contention: {args.workload}, {args.steps} steps, {args.repeats} repeat(s), {os.cpu_count()} CPUs, "
          f"competitor {args.competitor}"
          + (f" x{args.competitor_threads} threads" if args.competitor == "matmul" else "")
          + f"; runner {args.runner}; statgan defaults: {dict(DEFAULTS)}", flush=True)
    for arm in arms:
        shown = {k: arm.env[k] for k in WAIT_VARS if k in arm.env}
        print(f"  arm {arm.name:<24} threads={arm.threads or 'default'} env={shown}", flush=True)
    with tempfile.TemporaryDirectory(prefix="statgan-threads-") as tmp:
        workdir = Path(tmp)
        run_dir = prepare_run(workdir) if args.workload != "train" else None
        for r in range(args.repeats):
            for cond in conditions:
                for i, arm in enumerate(arms):
                    before = load()
                    comp = start_competitor(args.competitor, args.competitor_threads, arm.env) \
                        if cond == "contended" else None
                    try:
                        tag = f"{r}-{cond}-{i}"
                        if run_dir is None:
                            loop, cpu, wall, tuned = train_once(arm, args.steps, workdir, tag, args.overrides,
                                                                args.runner)
                        else:
                            loop, cpu, wall, tuned = command_once(arm, args.workload, args.steps, args.n, run_dir,
                                                                  workdir, tag)
                    finally:
                        if comp is not None:
                            stop(comp)
                    arm.times[cond].append(loop)
                    arm.cpu[cond].append(cpu)
                    print(f"  [{r + 1}/{args.repeats}] {cond:<9} {arm.name:<24} loop {loop:6.1f} s  "
                          f"process CPU {cpu:6.1f} s  wall {wall:6.1f} s  load {before}{tuned}", flush=True)

    what = {"train": "training loop", "invert": "statgan invert (its JSON)", "eval": "statgan eval (process wall)"}
    print(f"\nmedian seconds of the {what[args.workload]} for {args.steps} steps (min-max); CPU seconds of the process")
    print(f"{'arm':<26}" + "".join(f"{c + ' s':>22}{c + ' CPU':>14}" for c in conditions))
    for arm in arms:
        print(f"{arm.name:<26}" + "".join(f"{fmt(arm.times[c]):>22}{fmt(arm.cpu[c]):>14}" for c in conditions))
    one = arms[-1]
    print("\none-thread / default-threads (target: >= 0.9 contended, >= 1.3 idle)")
    for arm in arms[:-1]:
        parts = []
        for c in conditions:
            ratio = statistics.median(one.times[c]) / statistics.median(arm.times[c])
            target = 0.9 if c == "contended" else 1.3
            parts.append(f"{c} {ratio:5.2f} ({'ok' if ratio >= target else 'below'} {target})")
        print(f"  {arm.name:<24} " + "   ".join(parts))
    print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("threads_contention: interrupted", file=sys.stderr)
        sys.exit(130)
