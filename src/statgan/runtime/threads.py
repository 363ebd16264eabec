"""Threads of torch's CPU kernels on a shared machine: OpenMP waiting defaults that must be in the
environment before ``import torch`` (:func:`configure_openmp_env`), and a thread count chosen from
measured step times while a loop runs (:class:`ThreadTuner`).

Why two threads collapsed beside a busy process
-----------------------------------------------
PyTorch's Linux wheels run their CPU kernels (ATen ``parallel_for``, MKL, oneDNN) on GNU OpenMP
(``torch/lib/libgomp.so.1``; ``torch.__config__.parallel_info()`` says "ATen parallel backend:
OpenMP"). After each parallel region a libgomp thread busy-waits ``GOMP_SPINCOUNT`` iterations
(300000 when ``OMP_WAIT_POLICY`` is unset) before it sleeps on a futex, and the master spins the
same way at the closing barrier. Measured on the 2-vCPU AMD EPYC VM of issue 27 (CPU time a
two-thread process burns per region followed by a sleep): 300000 spins ~ 9.5 ms, 100000 ~ 3.9 ms,
30000 ~ 1.5 ms, 10000 ~ 0.45 ms, 1000 ~ 0.07 ms, PASSIVE 0. A training step of the default run is
hundreds of regions microseconds apart, so a two-thread statgan keeps both cores busy. Harmless
when idle; ruinous when a core is taken: three busy threads share two cores, each region is split
into two static halves, and the half whose thread is off the CPU is waited for by a partner that
spins away the time slice the late thread needs. ``benchmarks/threads_contention.py``, 150 steps
of the default training beside a one-thread matmul loop: 218.9-237.5 s with libgomp's defaults
against 12.3-13.7 s with ``train.threads=1`` (the issue's report: 219 s against 27 s beside a
``statgan eval``).

Measured (loop seconds of the default training, ``benchmarks/threads_contention.py``, load averages
0.3-2.5 counting the benchmark's own processes; "contended" = beside a one-thread matmul loop):

==========================  ===========  ===============  ==============================
GOMP setting (2 threads)    idle 100 st  contended 60 st  one-thread / it: idle, contended
==========================  ===========  ===============  ==============================
libgomp default (300000)    6.0          97.9             1.60, 0.05
30000                       6.3          26.5             1.52, 0.18
10000                       6.7          11.7-13.7        1.44, 0.36-0.40
3000                        7.5          7.6-7.8          1.28, 0.64
1000 (statgan's default)    7.7          6.2-8.3          1.26-1.44, 0.59-0.76
OMP_WAIT_POLICY=PASSIVE     9.3          5.4-8.8          1.02-1.19, 0.55-0.81
train.threads=1             9.6          4.5-5.3
==========================  ===========  ===============  ==============================

No spin count meets both targets of issue 27 (one-thread / default >= 1.3 idle, >= 0.9 contended):
without spinning a region still waits for its half whose thread is not on a core. Hence two parts:
a short spin (``GOMP_SPINCOUNT=1000``, libgomp's own choice for ``OMP_WAIT_POLICY=ACTIVE`` when it
has more threads than CPUs) that bounds the damage to ~1.3x wherever threads are fixed, and the
:class:`ThreadTuner` for long loops, which moves to one thread while a core is taken. 150 steps,
2 repeats, 07:23-07:30: spin 1000 + tuner 8.7 s idle / 12.1 s contended against one thread's
11.5 / 12.4 (ratios 1.32 and 1.02); spin 10000 + tuner 1.61 and 0.89 (its two-thread probes cost
2.6x a step under contention). Beside a two-thread matmul loop (like a second statgan command),
100 steps: tuner 7.7 s, one thread 7.7 s, spin 1000 alone 9.8 s.

Where it must run
-----------------
libgomp reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when it is loaded (at ``import
torch``), so :func:`configure_openmp_env` must run before torch is imported: the CLI calls it
first thing in ``main()`` (its command modules import torch only when a command runs; a module
that imported torch at the top, as the old ``statgan/cli.py`` did, would be too late).
Processes started later inherit ``os.environ`` and with it the settings: the reproduction grid's
``spawn`` workers (one torch thread each, so they never spin anyway) and ``torchrun`` workers,
which run the CLI themselves (torchrun also sets ``OMP_NUM_THREADS=1`` per worker when unset). A
library user who imports statgan in their own program gets nothing changed behind their back: they
call :func:`configure_openmp_env` before their own ``import torch``, or export the variables.

This module imports no torch (the tuner uses the one the loop already imported) and nothing else
of statgan.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, MutableMapping, Optional, Tuple

#: set to 0 / false / no / off to make :func:`configure_openmp_env` set nothing (the benchmark's
#: "libgomp's own defaults" reference arm, or a user who wants the runtime's behaviour unchanged)
OPT_OUT = "STATGAN_OPENMP_DEFAULTS"

#: what :func:`configure_openmp_env` sets, unless the user already chose (see :data:`USER_CHOICES`).
#:
#: ``GOMP_SPINCOUNT`` (libgomp: PyTorch's Linux wheels): 1000 iterations, about 0.07 ms here, before
#: sleeping (libgomp's default 300000 is about 9.5 ms here); see the table in the module docstring.
#:
#: ``KMP_BLOCKTIME`` (Intel / LLVM OpenMP: conda builds with ``libiomp5``, macOS wheels with
#: ``libomp``): milliseconds a worker waits before sleeping, 200 by default. 1 ms is the smallest
#: non-zero value (0 would be PASSIVE) and the one Intel's PyTorch launcher uses; it was not
#: measured here (this machine's torch uses libgomp, which ignores it).
DEFAULTS: Mapping[str, str] = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "1"}

#: for each default, the variables that mean the user already chose how that runtime waits: if any
#: is in the environment (even empty) the default is left out. ``OMP_WAIT_POLICY`` counts for both,
#: since a spin count set beside it would overrule it in libgomp (``GOMP_SPINCOUNT`` wins there).
USER_CHOICES: Mapping[str, Tuple[str, ...]] = {
    "GOMP_SPINCOUNT": ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"),
    "KMP_BLOCKTIME": ("KMP_BLOCKTIME", "OMP_WAIT_POLICY"),
}

def configure_openmp_env(environ: Optional[MutableMapping[str, str]] = None) -> Dict[str, str]:
    """Put statgan's OpenMP waiting defaults (:data:`DEFAULTS`) into ``environ`` (default:
    ``os.environ``) where the user has not chosen; returns ``{name: value}`` of what it set (empty
    when everything was already chosen, or when ``STATGAN_OPENMP_DEFAULTS=0``).

    Never overrides a variable that is present, and never sets a spin count beside a user's
    ``OMP_WAIT_POLICY``. Effective for this process only when called before ``import torch``
    (:func:`too_late` tells); child processes started afterwards inherit it either way."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "").strip().lower() in {"0", "false", "no", "off"}:
        return {}
    chosen: Dict[str, str] = {}
    for name, value in DEFAULTS.items():
        if any(k in env for k in USER_CHOICES[name]):
            continue
        env[name] = value
        chosen[name] = value
    return chosen


def too_late() -> bool:
    """True when torch is already imported in this process, so that its OpenMP runtime has read its
    environment and :func:`configure_openmp_env` changes only what child processes will see."""
    return "torch" in sys.modules


#: set to 0 / false / no / off to switch :class:`ThreadTuner` off (it then never changes threads)
TUNER_OPT_OUT = "STATGAN_THREAD_TUNER"

_OFF = {"0", "false", "no", "off"}


def run_delay_seconds() -> Optional[float]:
    """Seconds the threads of this process have spent runnable but waiting for a CPU, summed over
    its threads (Linux ``/proc/self/task/*/schedstat``, second field); None where unavailable.
    Its growth per second of wall time is the number of this process's threads waiting on average:
    about 0.01 for the default training with two threads on an idle 2-core machine here, 0.58 beside
    one busy process, 0.00 with one thread either way."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    total, seen = 0, False
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[1])
            seen = True
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total * 1e-9 if seen else None


def _torch() -> Any:
    """The torch module the running loop uses (already imported: this module never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        raise RuntimeError("ThreadTuner: torch is not imported in this process; there is nothing to tune")
    return torch


def _typical(seconds: List[float]) -> float:
    """Mean seconds a tick, less the slowest tick: a step that logs, samples or takes a lazy penalty
    does not decide, while the many slow steps of two threads beside a busy neighbour (most ticks
    near one-thread speed, a tail of descheduled ones) all count -- a median would miss that tail."""
    kept = sorted(seconds)[:-1] if len(seconds) > 2 else seconds
    return sum(kept) / len(kept)


class ThreadTuner:
    """Chooses torch's intra-op thread count while a loop runs: the configured count
    (``torch.get_num_threads()`` at the first tick) or one thread, whichever is faster now. Call
    :meth:`tick` once per iteration (a training step, an inversion step, a batch); an instance is
    also a trainer step callback (``Trainer(..., callbacks=[ThreadTuner()])``). Loops of the library
    (inversion, AIS, feature extraction, generating) tick the tuner a command installed with
    :func:`tuning` through :func:`loop_start` / :func:`loop_tick`; the tick times of two loops are not
    comparable, so a loop other than the last one starts a new measurement (after one settling tick).

    Why: spinning is not the whole story. Even with no spinning at all (``OMP_WAIT_POLICY=PASSIVE``)
    two threads beside one busy process on two cores ran the default training 1.2-1.8x slower than
    one thread here, because every parallel region waits for its half whose thread is not on a
    core (``benchmarks/threads_contention.py``). Whether a core is free changes while a run goes on,
    so the choice is measured, and measured again -- but only when there is a reason:

    * every ``window`` ticks it looks at how many of this process's threads were waiting for a CPU
      (:func:`run_delay_seconds`). With more than one thread and fewer than ``waiting`` of them
      waiting on average, the cores are free and nothing is tried: an idle machine pays nothing;
    * otherwise (or where the kernel does not say), each candidate runs ``window`` ticks (after one
      settling tick) and the one with the lower mean tick time, its slowest tick left out, is kept;
    * the choice is looked at again after ``hold`` ticks, a hold that doubles up to ``max_hold`` while
      the choice stays, and at once when the mean tick time drifts by more than ``drift`` times
      either way from the time it was chosen at, or when threads start waiting. On one thread the
      process cannot see whether the neighbour left, so there the periodic look tries again.

    The cost is the ticks spent on the losing candidate, ``window + 1`` per comparison, only under
    contention. On this machine the default training's numbers did not depend on the thread count
    (bit-identical checkpoints after 60 steps with 1 and 2 threads, ``train.deterministic`` on), so
    switching does not change results. A user who fixes the count (``train.threads``) should not get
    a tuner. Inactive when the configured count is 1, when ``STATGAN_THREAD_TUNER=0``, or when called
    back by a trainer whose device is not the CPU.
    """

    def __init__(self, threads: Optional[int] = None, *, warmup: int = 5, window: int = 6, hold: int = 100,
                 max_hold: int = 1600, drift: float = 1.5, waiting: float = 0.15,
                 log: Optional[Callable[[str], None]] = None, clock: Optional[Callable[[], float]] = None,
                 get_threads: Optional[Callable[[], int]] = None, set_threads: Optional[Callable[[int], None]] = None,
                 run_delay: Optional[Callable[[], Optional[float]]] = run_delay_seconds,
                 environ: Optional[Mapping[str, str]] = None) -> None:
        if window < 1 or warmup < 0 or hold < 1 or max_hold < hold or drift <= 1 or waiting <= 0:
            raise ValueError("ThreadTuner: needs window >= 1, warmup >= 0, 1 <= hold <= max_hold, drift > 1, "
                             "waiting > 0")
        env = os.environ if environ is None else environ
        self.enabled = env.get(TUNER_OPT_OUT, "").strip().lower() not in _OFF
        self.threads, self.warmup, self.window, self.drift, self.waiting = threads, warmup, window, drift, waiting
        self.base_hold, self.max_hold = hold, max_hold
        self.log = log
        self._clock = clock or time.perf_counter
        self._get, self._set, self._run_delay = get_threads, set_threads, run_delay
        #: (tick, threads chosen, why, {candidate: seconds a tick}) for every decision
        self.history: List[Tuple[int, int, str, Dict[int, float]]] = []
        self.ticks = 0
        self._loop: Optional[str] = None
        self._since_start = 0  # ticks since the tuner (or the current loop) started
        self._settle = warmup  # ticks of the current loop before its first measurement
        self._last: Optional[float] = None
        self._candidates: List[int] = []
        self._phase = "warmup"
        self._queue: List[int] = []
        self._current = self._best = 0
        self._skip = 0
        self._samples: List[float] = []
        self._mark: Optional[Tuple[float, Optional[float]]] = None  # (clock, run delay) at the window's start
        self._scores: Dict[int, float] = {}
        self._why = "start"
        self._loop_changed = False
        self._hold = hold
        self._hold_left = 0
        self._ref = 0.0

    # -- torch, taken from sys.modules (this module imports no torch; a loop worth tuning has) ----
    def _get_threads(self) -> int:
        if self._get is None:
            self._get = _torch().get_num_threads
        return self._get()

    def _set_threads(self, n: int) -> None:
        if self._set is None:
            self._set = _torch().set_num_threads
        if n != self._current:
            self._set(n)
            self._current = n

    @property
    def active(self) -> bool:
        return self.enabled and len(self._candidates) != 1

    @property
    def current(self) -> int:
        """The thread count in use (0 before the first tick)."""
        return self._current

    # -- the loop ---------------------------------------------------------------------------------
    def __call__(self, trainer: Any = None, step: Any = None) -> None:
        """Trainer step callback: one tick (nothing on a trainer that computes off the CPU)."""
        device = getattr(trainer, "device", None)
        if device is not None and getattr(device, "type", "cpu") != "cpu":
            self.enabled = False
        self.tick()

    def tick(self) -> None:
        """One iteration ended (the first call marks the start of the first one)."""
        if not self.enabled:
            return
        now = self._clock()
        dt = None if self._last is None else now - self._last
        self._last = now
        self.ticks += 1
        self._since_start += 1
        if not self._candidates:
            self._current = self._get_threads()
            n = self.threads or self._current
            self._candidates = [n, 1] if n > 1 else [n]
        if not self.active or dt is None:
            return
        if self._phase == "warmup":
            if self._since_start > self._settle:
                self._measure(self._current if self._loop_changed else self._candidates[0], self._why)
            return
        if self._skip:
            self._skip -= 1
            self._window_start()
            return
        self._samples.append(dt)
        if len(self._samples) < self.window:
            return
        seconds, waiting = _typical(self._samples), self._waiting()
        self._samples = []
        self._window_start()
        if self._phase == "measure":
            self._scores[self._current] = seconds
            if self._current > 1 and waiting is not None and waiting < self.waiting:
                self._why += f", {waiting:.2f} threads waiting"
                self._decide()  # the cores are free: fewer threads cannot be faster
            elif self._queue:
                self._switch(self._queue.pop(0))
            else:
                self._decide()
            return
        # holding
        self._hold_left -= self.window
        contended = self._current > 1 and (waiting is None or waiting >= self.waiting)
        if seconds > self._ref * self.drift or seconds * self.drift < self._ref:
            self._measure(self._current, f"drift ({seconds * 1e3:.1f} ms a tick, chosen at {self._ref * 1e3:.1f})")
        elif contended and waiting is not None:
            self._measure(self._current, f"{waiting:.2f} threads waiting")
        elif self._hold_left <= 0:
            if self._current > 1 and not contended:
                self._hold = min(self._hold * 2, self.max_hold)  # still free cores: look again later
                self._hold_left = self._hold
            else:
                self._measure(self._current, "recheck")

    def start_loop(self, name: str) -> None:
        """A loop named ``name`` is about to run its iterations (each ending in :meth:`tick`): the
        time until its first tick is not an iteration. A loop other than the last one is measured
        afresh, starting from the count in use, after one settling tick (its first iteration may
        still build caches)."""
        if not self.enabled:
            return
        self._last = None
        if name == self._loop:
            return
        first = self._loop is None
        self._loop = name
        if first or not self.active or not self._candidates:
            return  # the first loop: the warm-up of a new tuner is already ahead
        self._phase, self._why, self._loop_changed = "warmup", f"loop {name}", True
        self._since_start, self._settle, self._samples, self._skip = 0, 1, [], 0

    def _window_start(self) -> None:
        self._mark = (self._clock(), self._run_delay() if self._run_delay is not None else None)

    def _waiting(self) -> Optional[float]:
        """This process's threads waiting for a CPU, on average, since the window started."""
        if self._mark is None or self._mark[1] is None or self._run_delay is None:
            return None
        now, delay = self._clock(), self._run_delay()
        if delay is None or now <= self._mark[0]:
            return None
        return max(0.0, delay - self._mark[1]) / (now - self._mark[0])

    def _measure(self, first: int, why: str) -> None:
        self._phase, self._why, self._scores, self._samples = "measure", why, {}, []
        self._queue = [c for c in self._candidates if c != first]
        self._switch(first)
        self._window_start()

    def _switch(self, n: int) -> None:
        self._skip = 1 if n != self._current else 0  # the first tick after a switch settles
        self._set_threads(n)

    def _decide(self) -> None:
        best = min(self._scores, key=lambda c: (self._scores[c], -c))
        self._hold = min(self._hold * 2, self.max_hold) if best == self._best else self.base_hold
        self._best, self._ref = best, self._scores[best]
        self._phase, self._hold_left, self._samples = "hold", self._hold, []
        self._set_threads(best)
        self._window_start()
        self.history.append((self.ticks, best, self._why, dict(self._scores)))
        if self.log is not None:
            scores = ", ".join(f"{c} thread{'s' if c > 1 else ''} {s * 1e3:.1f} ms"
                               for c, s in sorted(self._scores.items()))
            self.log(f"threads: {best} ({self._why}: {scores} a tick; next look in {self._hold} ticks)")


# ---- the tuner of a command: the library's loops tick it -----------------------------------------
_INSTALLED: List[ThreadTuner] = []


@contextmanager
def tuning(tuner: Optional[ThreadTuner]) -> Iterator[Optional[ThreadTuner]]:
    """Within the block, the library's loops (:func:`loop_start` / :func:`loop_tick`) tick ``tuner``;
    None installs nothing (a thread count the user fixed). Nested blocks: the innermost wins."""
    if tuner is None:
        yield None
        return
    _INSTALLED.append(tuner)
    try:
        yield tuner
    finally:
        _INSTALLED.remove(tuner)


def installed() -> Optional[ThreadTuner]:
    """The tuner the library's loops tick now, or None."""
    return _INSTALLED[-1] if _INSTALLED else None


def loop_start(name: str) -> None:
    """A loop of the library (``"invert"``, ``"ais"``, ``"features"``, ``"generate"``) starts its
    iterations; nothing unless a command installed a tuner (:func:`tuning`)."""
    if _INSTALLED:
        _INSTALLED[-1].start_loop(name)


def loop_tick() -> None:
    """One iteration of the running loop ended; nothing unless a tuner is installed."""
    if _INSTALLED:
        _INSTALLED[-1].tick()
