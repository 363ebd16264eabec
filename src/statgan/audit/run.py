"""``statgan audit`` and ``statgan invert``: the audit of a trained run, from its run directory only.

::

    from statgan.audit.run import audit_run, invert_split
    from statgan.audit.settings import AuditSettings, InvertSettings
    summary = audit_run("runs/default")                        # writes runs/default/audit/{report.html, ...}
    summary = audit_run("runs/default", AuditSettings.quick())  # a smoke test in seconds
    summary.splits["test"].inversion_error.median               # an AuditSummary (statgan.audit.summary)
    result = invert_split("runs/default", "test", InvertSettings(n=50))  # per-image errors + latents + PNG

The image sets (:mod:`statgan.audit.rundata`): ``train``, ``test``, ``valid`` (held-out images that
choose sigma and join the OOD test's permutation pool), ``generated``, the OOD sets, and the model samples
x = G(z) + sigma * eps of the BDMC run (the reference for the model's typical set).

The pipeline (:mod:`statgan.audit.stages`): inversion of every set (Adam + cosine LR, the best of
``restarts``) -> sigma by the held-out AIS likelihood (unless given) -> AIS log-likelihood of every
set, each image's chains started from its proposal (by default the Laplace mixture at the distinct
inversion optima, :func:`statgan.audit.posterior.laplace_proposal`; the valid ``proposal=`` path of
:func:`statgan.audit.ais`), and importance sampling from it -> BDMC on simulated data with the same
settings and proposal (bounds that estimator's error) -> local variance, typicality tests, AUROCs, memorisation, correlations ->
verdicts (:mod:`statgan.audit.verdicts`) -> report (:mod:`statgan.audit.report`).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple, Union

import numpy as np
import torch
from safetensors.torch import save
from torch import Tensor
from tqdm.auto import tqdm

from .. import __version__
from ..runtime import distributed
from ..errors import ConfigError, StatganError
from ..generator_source import GeneratorOptions, LoadedGenerator
from ..rundir.files import atomic_write_bytes, atomic_write_text
from ..viz import inversion_picture_skip, save_inversion_pairs
from . import stages
from ._common import frozen
from ..audit_settings import expected_gap_line
from .budget import UnitCosts, measure_units, plan, projection_lines
from .ood import local_variance
from .report import render_report
from .sharding import BLOCK, block_sizes, busiest_share, gather_group
from .rundata import feature_loss, load_run, parse_split, run_fid, split_images
from .rundata import FeatureLoss, RunData
from .settings import AuditSettings, InvertSettings
from .summary import (
    AUDIT_FORMAT,
    INVERT_FORMAT,
    AuditPaths,
    AuditSummary,
    InvertedSet,
    InvertSummary,
    Machine,
    SigmaChoice,
    Stats,
    Versions,
    to_json,
)
from .toy import ToyAuditSummary, is_toy, toy_audit
from .uncertainty import gap_allowance
from .verdicts import findings

__all__ = ["audit_run", "invert_file_name", "invert_split"]

Log = Callable[[str], None]


def _versions() -> Versions:
    return Versions(statgan=__version__, torch=torch.__version__, numpy=np.__version__, python=platform.python_version())


def _write_tensors(path: Path, tensors: Dict[str, Tensor], metadata: Dict[str, str]) -> None:
    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata))


# ==== statgan invert ================================================================================
def invert_file_name(split: str, s: InvertSettings) -> str:
    """``invert-SPLIT-nN-LOSS-rRESTARTSxSTEPS-lrLR-seedSEED.safetensors``: every knob that changes the
    result is in the name, so reruns with other settings do not overwrite each other."""
    return f"invert-{split}-n{s.n}-{s.loss}-r{s.restarts}x{s.steps}-lr{s.lr:g}-seed{s.seed}.safetensors"



def invert_split(
    run_dir: Union[str, Path, LoadedGenerator],
    split: str,
    settings: Optional[InvertSettings] = None,
    *,
    out: Optional[Union[str, Path]] = None,
    device: str = "cpu",
    checkpoint: Optional[Union[str, Path]] = None,
    ema: bool = True,
    options: Optional[GeneratorOptions] = None,
    train: Optional[str] = None,
    test: Optional[str] = None,
) -> InvertSummary:
    """Invert a generator on one image set; write tensors (.safetensors), a picture (.png) and a
    JSON summary. ``run_dir``: any GENERATOR (:mod:`statgan.generator_source`: a run directory,
    ``FILE.py:NAME``, a TorchScript file) read with ``options``; ``train`` / ``test``: image sets
    (folder, .npz, ``data:NAME:SPLIT``) for those splits, which a generator from elsewhere needs.

    Tensors per set NAME: ``NAME.z`` (n, d), ``NAME.errors`` (n,) (the loss), ``NAME.mse`` (n,),
    ``NAME.images`` and ``NAME.reconstructions``. The picture (:func:`statgan.viz.save_inversion_pairs`)
    shows, per set, the 8 cases nearest the median error and the 8 worst, each original above its
    reconstruction G(z*) (2-D points: a scatter, originals joined to their reconstructions); for other
    data none is drawn and ``picture_note`` says why. Default output: ``RUN/audit/`` (another
    generator: :meth:`~statgan.generator_source.LoadedGenerator.output_dir`) +
    :func:`invert_file_name` (+ ``.png``, ``.json``). Returns the summary, its ``picture`` set to the
    PNG (or ``None``) and ``path`` to the JSON file.
    """
    parse_split(split)  # a bad split fails before anything is loaded
    s = (settings or InvertSettings()).validate()
    if out is not None and Path(out).suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors (the JSON summary and PNG are written next to it), "
                          f"got {str(out)!r}")
    t0 = time.perf_counter()
    run = load_run(run_dir, s.seed, checkpoint, ema, device, options=options, train=train, test=test)
    feature = feature_loss(s.loss, run)
    tensors: Dict[str, Tensor] = {}
    sets: Dict[str, InvertedSet] = {}
    for name, x in split_images(run, split, s.n).items():
        res = stages.invert_images(run, x, s, name, feature)
        tensors.update({f"{name}.z": res.z, f"{name}.errors": res.errors, f"{name}.mse": res.mse,
                        f"{name}.images": x, f"{name}.reconstructions": res.reconstructions.float()})
        sets[name] = InvertedSet(n=int(x.shape[0]), error=Stats.of(res.errors), mse=Stats.of(res.mse))
    key = str(split).strip().lower()
    out = Path(out) if out is not None else run.source.output_dir("audit") / invert_file_name(key, s)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_tensors(out, tensors, {"format": INVERT_FORMAT, "split": key, "loss": s.loss})
    unit = "pixel MSE" if s.loss == "l2" else "LeNet feature MSE"
    note = inversion_picture_skip(tensors[f"{next(iter(sets))}.images"].shape[1:])  # one shape for all sets
    picture = None
    if note is None:
        picture = str(save_inversion_pairs(
            out.with_suffix(".png"),
            {name: (tensors[f"{name}.images"], tensors[f"{name}.reconstructions"], tensors[f"{name}.errors"])
             for name in sets},
            error_unit=unit))
    summary = InvertSummary(
        run=run.source.identity.spec, step=run.step, weights=run.weights, generator=run.source.identity,
        split=key, loss=s.loss,
        error_unit=unit, settings=s, sets=sets, tensors=str(out), picture=picture, picture_note=note,
        seconds=round(time.perf_counter() - t0, 3), versions=_versions(),
    )
    js = out.with_suffix(".json")
    atomic_write_text(js, to_json(summary))
    summary.path = str(js)
    return summary


# ==== statgan audit =================================================================================
class _Clock:
    """Times the audit's stages (``summary.timing``), logs each as it ends, and shows a tqdm progress
    bar with an ETA per stage (on a terminal only, and never with ``quiet``)."""

    def __init__(self, say: Log, quiet: bool = False) -> None:
        self.say, self.start, self.quiet = say, time.perf_counter(), quiet
        self.timing: Dict[str, float] = {}

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.start, 2)

    @contextmanager
    def __call__(self, stage: str, total: Optional[int] = None, unit: str = "img") -> Iterator[Callable[[int], None]]:
        """A context whose value is the stage's progress callback (images done, toward ``total``)."""
        t0 = time.perf_counter()
        # disable=None: tqdm draws only on a terminal, so logs and tests stay clean
        bar = tqdm(total=total, desc=f"audit: {stage}", unit=unit, leave=False, file=sys.stderr,
                   disable=True if self.quiet or total is None else None, dynamic_ncols=True)
        try:
            yield bar.update
        finally:
            bar.close()
        self.timing[stage] = round(time.perf_counter() - t0, 2)
        self.say(f"audit: {stage} done in {self.timing[stage]:.1f} s (total {self.elapsed():.0f} s)")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _quiet(msg: str) -> None:
    pass


def audit_run(
    run_dir: Union[str, Path, LoadedGenerator],
    settings: Optional[AuditSettings] = None,
    *,
    checkpoint: Optional[Union[str, Path]] = None,
    ema: bool = True,
    device: str = "cpu",
    out_dir: Optional[Union[str, Path]] = None,
    log: Optional[Log] = _stderr,
    write: bool = True,
    progress: bool = True,
    options: Optional[GeneratorOptions] = None,
    train: Optional[str] = None,
    test: Optional[str] = None,
) -> Union[AuditSummary, ToyAuditSummary]:
    """Audit a generator: inversion, sigma, AIS, BDMC, typicality, AUROCs, correlation, verdicts.

    A generator of 2-D points (a toy run) gets the toy audit instead (:func:`statgan.audit.toy.toy_audit`:
    AIS and BDMC beside log p(x) by quadrature over a 2-D latent) and returns its
    :class:`~statgan.audit.toy.ToyAuditSummary`, written to the same OUT.

    ``run_dir``: any GENERATOR (:mod:`statgan.generator_source`), read with ``options``;
    ``train`` / ``test``: image sets (folder, .npz, ``data:NAME:SPLIT``) that replace a run's own
    splits. A generator from elsewhere may have neither, one or both: what needs a missing set is
    not run and says so (``summary.missing_sets``, findings with the verdict "not run", "not run"
    paragraphs in the report); everything else -- the generated and OOD sets, BDMC on model
    samples, typicality against them -- runs as usual. Without test images sigma is ``--sigma``
    or fixed (:data:`statgan.audit.stages.FIXED_SIGMA`).

    Writes ``OUT/report.html`` (self-contained), ``OUT/summary.json`` (:func:`statgan.audit.summary.to_json`
    of the result) and ``OUT/per_image.safetensors`` (per-image errors, log-likelihoods, local
    variances and latents), OUT = ``RUN/audit`` (another generator:
    :meth:`~statgan.generator_source.LoadedGenerator.output_dir`) unless ``out_dir``; returns the summary
    (``summary.paths`` names the files; ``None`` with ``write=False``). ``progress``: a tqdm bar
    with an ETA per stage on stderr, when it is a terminal (never with ``log=None``).

    Under ``torchrun --nproc-per-node N -m statgan audit ...`` (``WORLD_SIZE`` > 1) the processes
    join a process group (gloo on the CPU, nccl on CUDA with GPU ``LOCAL_RANK`` each) and share the
    inversion, sigma, AIS and BDMC stages block by block (:mod:`statgan.audit.sharding`), which makes
    the numbers those of one process; rank 0 alone logs, scores and writes the files, every rank
    returns its summary, and the group is left at the end (also on an error).
    """
    s = (settings or AuditSettings()).validate()
    if distributed.env_world_size() > 1 and distributed.env_rank() != 0:
        log = None  # under torchrun rank 0 alone logs (and writes: below)
    clock = _Clock(log or _quiet, quiet=log is None or not progress)
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    run = load_run(run_dir, s.seed, checkpoint, ema, device, options=options, train=train, test=test)
    _place(run)
    if is_toy(run):  # 2-D points: AIS and BDMC against log p(x) by quadrature (statgan.audit.toy); rank 0 runs it
        with _process_group(run.device):
            return distributed.run_on_main(lambda: toy_audit(run, s, out_dir=out_dir, log=log, write=write))
    if not run.is_image or min(run.data_shape[1:]) < 8:
        raise StatganError(f"statgan audit needs image data of at least 8x8 pixels or 2-D points, but {run.dataset!r} "
                           f"has samples of shape {list(run.data_shape)} (statgan invert works on any data)")
    feature = feature_loss(s.loss, run)
    missing = stages.missing_sets(run)

    with clock("data"):
        sets = stages.image_sets(run, s)
        clock.say(f"audit: {run.source.identity.describe()}; sets: "
                  + ", ".join(f"{k} {v.shape[0]}" for k, v in sets.inverted.items()))
        for name, why in missing.items():
            clock.say(f"audit: {why}; what needs {name} images is not run")
    with _process_group(run.device):
        return _audit(run, s, sets, feature, missing, clock, load0, out_dir=out_dir, write=write)


def _place(run: RunData) -> None:
    """Under torchrun on CUDA, move the generator to this process's GPU (``LOCAL_RANK``)."""
    if distributed.env_world_size() > 1 and not distributed.is_initialized():
        dev = distributed.device_for_rank(run.device)
        if dev != run.device:
            run.G.to(dev)
            run.device = dev


@contextmanager
def _process_group(device: torch.device) -> Iterator[None]:
    """Under torchrun (``WORLD_SIZE`` > 1), the process group for the block; left at its end, also on
    an error (one that a caller set up is the caller's and stays). Nothing in a single process."""
    owned = distributed.env_world_size() > 1 and not distributed.is_initialized()
    if owned:
        distributed.init(device)  # nccl on CUDA, gloo otherwise
    try:
        yield
    finally:
        if owned:
            distributed.cleanup()


def _audit(run: RunData, s: AuditSettings, sets: stages.ImageSets, feature: FeatureLoss,
           missing: Dict[str, str], clock: _Clock, load0: Optional[Tuple[float, ...]], *,
           out_dir: Optional[Union[str, Path]], write: bool) -> AuditSummary:
    """The stages after the data: the four expensive ones spread over the processes in blocks
    (:mod:`statgan.audit.sharding`; every rank gets every result), then rank 0 alone scores,
    summarises and writes, and every rank returns rank 0's summary."""
    inverted = sets.inverted
    projected = _project(run, s, {k: v.shape[0] for k, v in inverted.items()}, clock)
    with gather_group():  # a rank may wait hours for another's blocks (a certified audit)
        with clock("inversion", total=sum(x.shape[0] for x in inverted.values())) as tick:
            inv = stages.invert_sets(run, sets, s, feature, progress=tick)
        with clock("sigma"):
            sigma = stages.choose_sigma(run, sets.valid, inv.get("valid"), s)
        with clock("ais", total=sum(x.shape[0] for x in inverted.values())) as tick:
            lik = stages.likelihoods(run, inverted, inv, sigma.chosen, s, progress=tick)
        with clock("bdmc"):
            bounds = stages.bdmc_bounds(run, sigma.chosen, s)

    def finish() -> AuditSummary:
        with clock("scores"):
            ll, names = lik.log_likelihood, sets.ood_names
            per = stages.PerImage(sets=sets, inversions=inv, likelihoods=lik, bdmc=bounds,
                                  local_variance={name: local_variance(x) for name, x in sets.scored.items()},
                                  typicality=stages.typicality_tests(ll, bounds.lower, names, s,
                                                                     stages.typicality_batch(sets, s)))
            summary = _summarise(run, s, per, sigma, clock, load0, missing)
        summary.projected = projected
        summary.findings = findings(summary)
        summary.seconds = clock.elapsed()
        if write:
            _write(Path(out_dir) if out_dir is not None else run.source.output_dir("audit"), summary, per, clock)
        return summary

    return distributed.run_on_main(finish)


def _project(run: RunData, s: AuditSettings, sizes: Dict[str, int], clock: _Clock) -> Dict[str, float]:
    """Time a generator pass (and a Jacobian) on this device, say what each long stage will cost and
    how to cut it, before those stages start; the projected seconds by stage (kept in the summary,
    beside the measured ``timing``)."""
    def measure() -> UnitCosts:
        with frozen(run.G):
            return measure_units(run.G, run.latent_dim, run.device, jacobians=s.proposal == "laplace")

    if not distributed.is_main():
        measure()  # the other ranks warm up meanwhile (lazy imports, first passes: 2 s on CPU), outside the stages
    units = distributed.run_on_main(measure)  # rank 0's numbers, for every rank
    sigma_given = s.sigma is not None or "valid" not in sizes
    costs = plan(s, sizes, units, sigma_given=sigma_given)
    world = distributed.world_size()
    if world > 1:
        shares = _shares(s, sizes, world)
        costs = [replace(c, seconds=c.seconds * shares[c.stage]) for c in costs]
    for line in projection_lines(costs, units, s, run.device):
        clock.say(line)
    if world > 1:
        clock.say(f"audit: the time above is divided over {world} processes (blocks of {BLOCK} images dealt "
                  "round-robin): each stage's projection is its busiest process's share ("
                  + ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if k != "sigma" or not sigma_given) + ")")
    clock.say(expected_gap_line(s.ais_steps, s.sigma, s.proposal))
    return {c.stage: round(c.seconds, 2) for c in costs}


def _shares(s: AuditSettings, sizes: Dict[str, int], world: int) -> Dict[str, float]:
    """Per long stage, the share of its images the busiest of ``world`` processes works on, dealt
    as the stages deal their blocks (:mod:`statgan.audit.stages`)."""
    sets = [n for k in sizes.values() for n in block_sizes(k)]
    sigma = [n for n in block_sizes(min(s.sigma_images, sizes.get("valid", 0))) for _ in s.sigma_candidates]
    return {"inversion": busiest_share(sets, world), "sigma": busiest_share(sigma, world),
            "ais": busiest_share(sets, world), "bdmc": busiest_share(block_sizes(s.bdmc_images), world)}


def _summarise(run: RunData, s: AuditSettings, per: stages.PerImage, sigma: SigmaChoice, clock: _Clock,
               load0: Optional[Tuple[float, ...]], missing: Dict[str, str]) -> AuditSummary:
    """The summary of the stages' results (findings, ``seconds`` and ``paths`` are filled in later)."""
    ll, err, names, bounds = per.likelihoods.log_likelihood, stages.errors(per.inversions), per.sets.ood_names, per.bdmc
    return AuditSummary(
        run=run.source.identity.spec, step=run.step, weights=run.weights, generator=run.source.identity,
        dataset=run.dataset, data_shape=run.data_shape,
        latent_dim=run.latent_dim, settings=s,
        error_unit="pixel MSE ([-1, 1] scale)" if s.loss == "l2" else "LeNet feature MSE",
        likelihood_unit="nats (density on [-1, 1] pixels); bits/dim in 8-bit pixel units",
        sigma=sigma, bdmc=bounds.summary(),
        splits=stages.set_summaries(per.inversions, per.likelihoods, per.local_variance, bounds.lower, names,
                                    math.prod(run.data_shape)),
        ood_sets=tuple(names), inversion=stages.inversion_ratios(err, seed=s.seed),
        auroc=stages.ood_scores(err, ll, per.typicality, names),
        memorisation=stages.memorisation(err, ll, run, per.sets, s),
        correlation=stages.correlations(ll, per.local_variance, names, gap_allowance(bounds.gaps)),
        typicality=per.typicality.summary(s),
        timing=clock.timing, versions=_versions(), time=time.strftime("%Y-%m-%dT%H:%M:%S"),
        machine=Machine(threads=torch.get_num_threads(), cpu_count=os.cpu_count(), device=str(run.device),
                        platform=platform.platform(), load_average_at_start=tuple(load0) if load0 else None),
        fid=run_fid(run.run_dir, run.step, run.weights) if run.run_dir is not None else None,
        missing_sets=missing or None,
    )


def _write(out: Path, summary: AuditSummary, per: stages.PerImage, clock: _Clock) -> None:
    """per_image.safetensors and report.html, then summary.json (which records their time)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = summary.paths = AuditPaths(report=str(out / "report.html"), summary=str(out / "summary.json"),
                                       per_image=str(out / "per_image.safetensors"))
    with clock("report"):
        _write_tensors(Path(paths.per_image), per.tensors(), {"format": AUDIT_FORMAT})
        atomic_write_text(Path(paths.report), render_report(summary, per))
    summary.seconds = clock.elapsed()
    atomic_write_text(Path(paths.summary), to_json(summary))
    clock.say(f"audit: wrote {paths.report} and {paths.summary} ({summary.seconds:.0f} s)")
