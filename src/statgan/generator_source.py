"""A generator from anywhere: a statgan run, a Python module, or a saved TorchScript / torch.export file.

Every command after training (``sample``, ``interpolate``, ``eval``, ``invert``, ``audit``) takes a
GENERATOR, one of::

    runs/NAME                       a run directory (its latest checkpoint, EMA weights by default)
    FILE.py:NAME                    NAME in a Python file: an nn.Module, or a callable with no
    package.module:NAME             required arguments that returns one (a factory that builds the
                                    network and loads its weights)
    g.pt | g.ts                     a TorchScript file (torch.jit.save; ``statgan export`` writes one)
    g.pt2                           a torch.export program (torch.export.save)

and hands the library one contract, whatever the source (:class:`LoadedGenerator`): ``module``
maps latents ``z`` of shape (B, d), z ~ N(0, I_d), to samples (B, *data_shape) in [-1, 1] -- the
convention of statgan's own networks and of the audit's likelihood (density on [-1, 1] pixels).
A foreign network is wrapped (:class:`StandardGenerator`) so that it meets it:

* ``latent_shape``: the shape of one of *its* latents, e.g. ``(100, 1, 1)`` for the PyTorch DCGAN
  tutorial's ``(B, 100, 1, 1)``; z is reshaped to it. Optional where the module declares it (an
  attribute ``latent_shape``, ``latent_dim`` or ``z_dim``; ``statgan export`` stores it in the file);
* ``latent``: ``normal`` (z ~ N(0, I), default) or ``uniform`` (U(-1, 1), the early-GAN habit):
  the wrapper feeds the network u = 2 Phi(z) - 1 with Phi the standard normal CDF. The pushforward of
  N(0, 1) under that map is exactly U(-1, 1), so the distribution of G(u) -- the model being audited
  -- is unchanged, while the audit keeps working in a standard normal latent (its prior, its HMC);
* ``output_range``: ``(-1, 1)`` (default) or e.g. ``(0, 1)``; outputs are mapped affinely onto
  [-1, 1]. Likelihoods are then densities on [-1, 1] pixels, as for every statgan run.

The first batch is checked (:func:`check_first_batch`): a latent the network rejects, an output that
is not (B, C, H, W) images (vectors (B, D) only from a file ``statgan export`` wrote of a toy run),
values far outside the declared range, or a non-finite value is one line naming the problem. Networks are put in ``eval()`` mode, so BatchNorm generators are a fixed
function z -> x. What was loaded is named by a :class:`GeneratorIdentity` (the spec, the sha256 of
the file it came from, a fingerprint of its weights, parameter count, latent shape) that eval's JSON,
invert's and the audit's summary record.

Loading a ``FILE.py`` or ``package.module`` runs that code, as ``python FILE.py`` would: the user
named it. TorchScript and torch.export files hold no Python code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .errors import StatganError
from .rundir.files import atomic_write_bytes
from .rundir.run import CheckpointMeta, load_generator
from .runtime.device import select_device
from .runtime.seeding import stream_generator

__all__ = [
    "EXPORT_META",
    "GeneratorIdentity",
    "GeneratorOptions",
    "KINDS",
    "LATENTS",
    "LoadedGenerator",
    "StandardGenerator",
    "check_first_batch",
    "load_generator_source",
    "parse_latent_shape",
    "parse_output_range",
    "source_kind",
]

#: how a GENERATOR spec was read
KINDS = ("run", "module", "torchscript", "export")
#: latent distributions a foreign generator may declare (``--latent``)
LATENTS = ("normal", "uniform")
#: suffixes read as TorchScript (``torch.jit.save``) and as torch.export programs (``torch.export.save``)
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".pth")
EXPORT_SUFFIXES = (".pt2",)
#: the extra file in an archive written by ``statgan export``: JSON with latent_shape, latent,
#: output_range, data_shape and where the weights came from
EXPORT_META = "statgan.json"
#: a first batch whose values leave the declared range by more than this share of its width is refused
RANGE_SLACK = 0.5

_SPEC = re.compile(r"^(?P<target>.+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class GeneratorOptions:
    """How to read a GENERATOR: the latent and output conventions of a foreign network (ignored for a
    run, whose checkpoint states them), and for a run which checkpoint and weights."""

    latent_shape: Optional[Tuple[int, ...]] = None
    latent: str = "normal"
    output_range: Tuple[float, float] = (-1.0, 1.0)
    checkpoint: Optional[str] = None
    ema: bool = True
    use_previous: bool = False
    device: str = "cpu"


@dataclass(frozen=True)
class GeneratorIdentity:
    """What was loaded, recorded beside every result computed from it."""

    kind: str  # one of KINDS
    spec: str  # as the user gave it
    file: Optional[str]  # the file the network (or its code) came from
    sha256: Optional[str]  # of that file (a run: of its checkpoint's tensor file)
    weights_sha256: str  # of the parameters and buffers, in name order: the same weights give the same value
    parameters: int
    latent_shape: Tuple[int, ...]
    latent: str
    output_range: Tuple[float, float]
    data_shape: Tuple[int, ...]
    step: Optional[int] = None  # a run's checkpoint step
    weights: Optional[str] = None  # a run's "EMA" or "raw"

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)

    def describe(self) -> str:
        """One line: the spec, how much network, and what it takes and gives."""
        what = f"step {self.step}, {self.weights} weights" if self.kind == "run" else self.kind
        return (f"{self.spec} ({what}; {self.parameters:,} parameters; latent {self.latent} "
                f"{'x'.join(map(str, self.latent_shape))}; samples {'x'.join(map(str, self.data_shape))})")


@dataclass
class LoadedGenerator:
    """A generator meeting statgan's contract: ``module`` maps (B, latent_dim) z ~ N(0, I) to
    (B, *data_shape) in [-1, 1], in eval mode on ``device``. ``meta`` is a run's
    :class:`~statgan.rundir.run.CheckpointMeta` (None for other sources); ``run_dir`` the run
    directory (None likewise)."""

    module: nn.Module
    identity: GeneratorIdentity
    meta: Optional[CheckpointMeta] = None
    run_dir: Optional[Path] = None
    native: Optional[nn.Module] = field(default=None, repr=False)  # a run's own network (style mixing, truncation)

    @property
    def latent_dim(self) -> int:
        return self.identity.latent_dim

    @property
    def data_shape(self) -> Tuple[int, ...]:
        return self.identity.data_shape

    @property
    def device(self) -> torch.device:
        return _device_of(self.module)

    @property
    def is_run(self) -> bool:
        return self.run_dir is not None

    def output_dir(self, what: str) -> Path:
        """Where a command's files go by default: ``RUN/WHAT`` for a run; beside the generator's file
        otherwise (``g.pt`` -> ``g-WHAT/``, ``gen.py:G`` -> ``gen-G-WHAT/``; a package module's in the
        current folder)."""
        if self.run_dir is not None:
            return self.run_dir / what
        ident = self.identity
        if ident.kind == "module":
            target, _, name = ident.spec.rpartition(":")
            if target.endswith(".py") or "/" in target or "\\" in target:
                return Path(target).parent / f"{Path(target).stem}-{name}-{what}"
            return Path(f"{target}-{name}-{what}")
        path = Path(ident.spec)
        return path.parent / f"{path.stem}-{what}"


class StandardGenerator(nn.Module):
    """A foreign network behind statgan's contract (module docstring): flat standard-normal latents
    in, samples on [-1, 1] out."""

    def __init__(self, net: nn.Module, latent_shape: Sequence[int], latent: str = "normal",
                 output_range: Tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        self.net = net
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.latent_dim = math.prod(self.latent_shape)
        self.latent = latent
        self.lo, self.hi = float(output_range[0]), float(output_range[1])

    def forward(self, z: Tensor) -> Tensor:
        u = z.reshape(z.shape[0], *self.latent_shape)
        if self.latent == "uniform":
            u = 2.0 * torch.special.ndtr(u) - 1.0  # N(0, 1) -> U(-1, 1) exactly (probability integral transform)
        x = self.net(u)
        if (self.lo, self.hi) != (-1.0, 1.0):
            x = (x - self.lo) * (2.0 / (self.hi - self.lo)) - 1.0
        return x


class _FixedMode(nn.Module):
    """A torch.export program's module: its train/eval mode was fixed when it was exported, and it
    refuses ``train()``/``eval()``; this holder takes the calls (the audit switches modes around
    every stage) without passing them on."""

    def __init__(self, program_module: nn.Module) -> None:
        super().__init__()
        self.program = program_module

    def train(self, mode: bool = True) -> "_FixedMode":
        self.training = mode
        return self

    def forward(self, z: Tensor) -> Tensor:
        return self.program(z)


# ---- parsing the options -----------------------------------------------------------------------------
def parse_latent_shape(text: Union[str, Sequence[int], None]) -> Optional[Tuple[int, ...]]:
    """``"100"`` or ``"100,1,1"`` (or a sequence) -> (100,) / (100, 1, 1); None stays None."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(s < 1 for s in shape) or (isinstance(text, str) and any(str(s) != p for s, p in zip(shape, parts))):
        raise StatganError(f"--latent-shape {text!r}: expected positive integers separated by commas, e.g. 100 or 100,1,1")
    return shape


def parse_output_range(text: Union[str, Sequence[float]]) -> Tuple[float, float]:
    """``"-1,1"`` or ``"0,1"`` (or a pair) -> (lo, hi) with lo < hi, both finite."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise StatganError(f"--output-range {text!r}: expected two finite numbers LO,HI with LO < HI, e.g. -1,1 or 0,1")
    return lo, hi


def source_kind(spec: Union[str, Path]) -> str:
    """Which of :data:`KINDS` a GENERATOR spec names (without loading it)."""
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        return "run"
    if path.suffix.lower() in TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    if path.suffix.lower() in EXPORT_SUFFIXES:
        return "export"
    if _SPEC.match(text) and not path.exists():
        return "module"
    return "run"  # a run directory that is missing: the run loader says so in one line


# ---- loading ------------------------------------------------------------------------------------------
def load_generator_source(spec: Union[str, Path], options: Optional[GeneratorOptions] = None) -> LoadedGenerator:
    """Load GENERATOR ``spec`` (module docstring) and check its first batch; one line on any mistake."""
    o = options or GeneratorOptions()
    if o.latent not in LATENTS:
        raise StatganError(f"--latent {o.latent!r}: expected one of {', '.join(LATENTS)}")
    parse_output_range(o.output_range)
    kind = source_kind(spec)
    if kind == "run":
        return _load_run(Path(spec), o)
    device = select_device(o.device)
    if kind == "module":
        net, file, declared = _load_module_spec(str(spec))
    else:
        net, file, declared = _load_archive(Path(spec), kind, device)
    net = net.to(device).eval()
    shape = o.latent_shape or declared.get("latent_shape") or _declared_latent_shape(net)
    if shape is None:
        raise StatganError(f"{spec}: the network declares no latent shape; give --latent-shape, e.g. --latent-shape 100 "
                           "or --latent-shape 100,1,1 for a network that takes (B, 100, 1, 1)")
    shape = parse_latent_shape(shape)
    latent = o.latent if o.latent != "normal" or "latent" not in declared else str(declared["latent"])
    out_range = o.output_range if tuple(o.output_range) != (-1.0, 1.0) or "output_range" not in declared \
        else parse_output_range(declared["output_range"])
    module = StandardGenerator(net, shape, latent, out_range).eval()
    # vectors only from a file that says so (an exported statgan toy run); a foreign network makes images
    vectors = len(declared.get("data_shape") or ()) == 1
    data_shape = check_first_batch(module, str(spec), out_range, vectors=vectors)
    ident = GeneratorIdentity(kind=kind, spec=str(spec), file=str(file), sha256=_file_sha256(file),
                              weights_sha256=weights_fingerprint(net), parameters=_count(net), latent_shape=shape,
                              latent=latent, output_range=tuple(out_range), data_shape=data_shape)
    return LoadedGenerator(module=module, identity=ident)


def _load_run(run_dir: Path, o: GeneratorOptions) -> LoadedGenerator:
    if o.checkpoint is None:
        if not run_dir.exists():
            raise StatganError(f"{str(run_dir)!r}: no such run directory or file; a GENERATOR is a run directory, "
                               "FILE.py:NAME, package.module:NAME, or a .pt/.ts (TorchScript) or .pt2 (torch.export) file")
        if not (run_dir / "config.yaml").is_file() and not (run_dir / "checkpoints").is_dir():
            raise StatganError(f"{str(run_dir)!r} is not a statgan run directory (no config.yaml or checkpoints/)")
    G, meta = load_generator(run_dir, Path(o.checkpoint) if o.checkpoint else None, ema=o.ema, device=o.device,
                             use_previous=o.use_previous)
    ident = GeneratorIdentity(kind="run", spec=str(run_dir), file=str(meta.tensors_path), sha256=meta.sha256,
                              weights_sha256=weights_fingerprint(G), parameters=_count(G),
                              latent_shape=(meta.latent_dim,), latent="normal", output_range=(-1.0, 1.0),
                              data_shape=meta.data_shape, step=meta.step, weights="EMA" if (o.ema and meta.ema) else "raw")
    return LoadedGenerator(module=G, identity=ident, meta=meta, run_dir=run_dir, native=G)


def _load_module_spec(spec: str) -> Tuple[nn.Module, Path, Dict[str, Any]]:
    """``FILE.py:NAME`` or ``package.module:NAME`` -> (the network, the file its code is in, {})."""
    m = _SPEC.match(spec)
    assert m is not None  # source_kind said "module"
    target, name = m.group("target"), m.group("name")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise StatganError(f"generator {spec!r}: no file {target!r}")
        mod_name = f"statgan_user_generator_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        if module_spec is None or module_spec.loader is None:
            raise StatganError(f"generator {spec!r}: {target!r} cannot be imported as Python")
        mod = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = mod  # dataclasses and pickling-free helpers in the file look themselves up here
        _run_user_code(spec, lambda: module_spec.loader.exec_module(mod))  # type: ignore[union-attr]
    else:
        mod = _run_user_code(spec, lambda: importlib.import_module(target), missing=target)
        path = Path(getattr(mod, "__file__", "") or target)
    if not hasattr(mod, name):
        found = sorted(k for k, v in vars(mod).items() if isinstance(v, nn.Module) or
                       (isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == mod.__name__))
        hint = f"; it has {', '.join(found)}" if found else ""
        raise StatganError(f"generator {spec!r}: {target!r} has no {name!r}{hint}")
    obj = getattr(mod, name)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise StatganError(f"generator {spec!r}: {name!r} is a {type(obj).__name__}, expected an nn.Module or a "
                               "callable with no required arguments that returns one")
        obj = _run_user_code(spec, obj)
        if not isinstance(obj, nn.Module):
            raise StatganError(f"generator {spec!r}: {name}() returned a {type(obj).__name__}, expected an nn.Module")
    return obj, path, {}


def _run_user_code(spec: str, fn: Any, missing: Optional[str] = None) -> Any:
    """Call the user's code; what it raises becomes one line naming the spec."""
    try:
        return fn()
    except ModuleNotFoundError as exc:
        if missing is not None and exc.name is not None and missing.startswith(exc.name):
            raise StatganError(f"generator {spec!r}: no module {missing!r} (not installed, or not on the Python path)") from None
        raise StatganError(f"generator {spec!r}: loading it failed: {type(exc).__name__}: {_first_line(exc)}") from None
    except TypeError as exc:
        raise StatganError(f"generator {spec!r}: calling it failed ({_first_line(exc)}); NAME must be an nn.Module or a "
                           "callable with no required arguments that returns one") from None
    except Exception as exc:  # the user's code: any error is theirs to read, in one line
        raise StatganError(f"generator {spec!r}: loading it failed: {type(exc).__name__}: {_first_line(exc)}") from None


def _load_archive(path: Path, kind: str, device: torch.device) -> Tuple[nn.Module, Path, Dict[str, Any]]:
    """A TorchScript or torch.export file -> (the network, the file, the metadata ``statgan export`` stored)."""
    if not path.is_file():
        raise StatganError(f"generator {str(path)!r}: no such file")
    extra = {EXPORT_META: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript; the format still loads
            if kind == "torchscript":
                net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
            else:
                program = torch.export.load(str(path), extra_files=extra)
                net = _FixedMode(program.module())
    except Exception as exc:  # a damaged or foreign file: name it, in one line
        what = "TorchScript (torch.jit.save)" if kind == "torchscript" else "torch.export (torch.export.save)"
        raise StatganError(f"generator {str(path)!r}: not a readable {what} file ({type(exc).__name__}: "
                           f"{_first_line(exc)})") from None
    raw = extra.get(EXPORT_META) or ""
    declared: Dict[str, Any] = {}
    if raw:
        try:
            declared = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except ValueError:
            raise StatganError(f"generator {str(path)!r}: its {EXPORT_META} is not JSON") from None
    return net, path, declared


def _declared_latent_shape(net: nn.Module) -> Optional[Tuple[int, ...]]:
    for attr in ("latent_shape", "latent_dim", "z_dim"):
        value = getattr(net, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) for v in value):
            return tuple(value)
    return None


def check_first_batch(module: nn.Module, spec: str, output_range: Tuple[float, float] = (-1.0, 1.0),
                      batch: int = 2, vectors: bool = False) -> Tuple[int, ...]:
    """Run ``module`` (statgan's contract) on a batch of latents; the shape of one sample, or one line
    saying what is wrong: a latent it rejects, an output that is not (B, C, H, W) images (or, with
    ``vectors``, (B, D)), a non-finite value, or values far outside ``output_range`` (mapped to [-1, 1])."""
    d = int(getattr(module, "latent_dim"))
    z = torch.randn(batch, d, generator=stream_generator("generator_probe")).to(_device_of(module))
    try:
        with torch.no_grad():
            x = module(z)
    except Exception as exc:  # the network rejected the latent: say which shape was tried
        shape = getattr(module, "latent_shape", (d,))
        raise StatganError(f"generator {spec!r} failed on latents of shape {(batch, *shape)} ({type(exc).__name__}: "
                           f"{_first_line(exc)}); give its latent shape with --latent-shape, e.g. 100 or 100,1,1") from None
    if not torch.is_tensor(x):
        raise StatganError(f"generator {spec!r} returned a {type(x).__name__}, expected a tensor of samples")
    if x.dim() not in ((2, 4) if vectors else (4,)) or x.shape[0] != batch:
        also = f" or ({batch}, D) vectors" if vectors else ""
        raise StatganError(f"generator {spec!r} returned shape {tuple(x.shape)} for {batch} latents; expected "
                           f"({batch}, C, H, W) images{also}")
    if not torch.isfinite(x).all():
        raise StatganError(f"generator {spec!r} returned non-finite values (nan or inf) on its first batch")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - 2 * RANGE_SLACK or hi > 1 + 2 * RANGE_SLACK:
        a, b = output_range
        raise StatganError(f"generator {spec!r} returned values in [{lo * (b - a) / 2 + (a + b) / 2:.3g}, "
                           f"{hi * (b - a) / 2 + (a + b) / 2:.3g}], far outside its declared output range [{a:g}, {b:g}]; "
                           "give --output-range LO,HI (e.g. 0,1 or -1,1)")
    return tuple(int(s) for s in x.shape[1:])


# ---- export -------------------------------------------------------------------------------------------
#: what ``export_generator`` writes, by suffix
EXPORT_FORMATS = {".pt": "torchscript", ".ts": "torchscript", ".pt2": "export"}
#: an exported file must reproduce the generator to this (max abs, on [-1, 1] outputs) or it is not written
EXPORT_TOLERANCE = 1e-5


def export_generator(loaded: LoadedGenerator, out: Union[str, Path]) -> Path:
    """Write ``loaded.module`` (statgan's contract: flat N(0, I) latents -> samples on [-1, 1]) as a
    TorchScript (``.pt``/``.ts``, ``torch.jit.trace``) or torch.export (``.pt2``, batch size dynamic)
    file, with :data:`EXPORT_META` saying so (latent shape, output range, data shape, source), so
    that ``GENERATOR = out`` needs no options. The file is read back and compared with the
    generator on a probe batch before it is moved into place (atomically)."""
    out = Path(out)
    kind = EXPORT_FORMATS.get(out.suffix.lower())
    if kind is None:
        raise StatganError(f"--out {str(out)!r}: expected a file ending in {', '.join(EXPORT_FORMATS)} "
                           "(.pt/.ts: TorchScript, .pt2: torch.export)")
    module = loaded.module.eval()
    ident = loaded.identity
    meta = json.dumps({"format": "statgan-generator/1", "latent_shape": [ident.latent_dim], "latent": "normal",
                       "output_range": [-1.0, 1.0], "data_shape": list(ident.data_shape),
                       "source": {"spec": ident.spec, "kind": ident.kind, "sha256": ident.sha256, "step": ident.step,
                                  "weights": ident.weights, "weights_sha256": ident.weights_sha256}})
    z = torch.randn(4, ident.latent_dim, generator=stream_generator("generator_probe")).to(loaded.device)
    tmp = out.with_name(f".exporting-{out.name}")  # the same suffix: torch.export reads only *.pt2
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript; readers still use it
            if kind == "torchscript":
                # the tracer warns about every Python value it freezes (shape checks in the network); a
                # frozen batch size would show in the comparison below, made at another batch size too
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(module, z, check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files={EXPORT_META: meta})
            else:
                batch = torch.export.Dim("batch", min=1)
                program = torch.export.export(module, (z,), dynamic_shapes=({0: batch},))
                torch.export.save(program, str(tmp), extra_files={EXPORT_META: meta})
        back, _, _ = _load_archive(tmp, kind, loaded.device)
        with torch.no_grad():
            diff = max(float((back(zb) - module(zb)).abs().max()) for zb in (z, z[:3]))
        if not diff <= EXPORT_TOLERANCE:
            raise StatganError(f"the exported {kind} file does not reproduce {ident.spec} (max difference {diff:.3g} on a "
                               "probe batch); nothing written")
        atomic_write_bytes(out, tmp.read_bytes())
    except StatganError:
        raise
    except Exception as exc:  # tracing or exporting failed on this network: one line, nothing left behind
        raise StatganError(f"exporting {ident.spec} as {kind} failed ({type(exc).__name__}: {_first_line(exc)})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


# ---- small helpers --------------------------------------------------------------------------------
def weights_fingerprint(net: nn.Module) -> str:
    """sha256 of the network's floating-point parameters and buffers as a multiset: each tensor's
    dtype, shape and bytes hashed, the digests sorted. Names and order are left out on purpose --
    TorchScript and torch.export rename and reorder a network's tensors -- so the same weights give
    the same fingerprint from a run, its exported files, or the user's module (integer buffers such
    as BatchNorm's batch counter are left out: an exported program may drop them)."""
    digests = []
    for t in net.state_dict().values():
        if not torch.is_tensor(t) or not t.is_floating_point():
            continue
        t = t.detach().cpu().contiguous().reshape(-1)  # 1-D: a 0-d tensor cannot be viewed as bytes
        h = hashlib.sha256(f"{t.dtype}:{t.numel()};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
        digests.append(h.hexdigest())
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()


def _file_sha256(path: Optional[Path]) -> Optional[str]:
    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _device_of(module: nn.Module) -> torch.device:
    p = next((q for q in module.parameters()), None)
    if p is None:
        p = next((b for b in module.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
