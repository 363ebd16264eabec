"""Typed run configuration: a YAML preset plus dotted command-line overrides, validated up front.

A config has six sections::

    run:           name, out_dir, seed, device
    data:          name (+ the dataset loader's own options, e.g. image_size for ``folder``)
    model:         arch, latent_dim, generator: {...}, discriminator: {...}
    objective:     name (+ the objective's own parameters, e.g. alpha for ``renyi``)
    train:         steps, batch_size, optimizer, EMA, logging/sampling/checkpoint intervals, ...
    regularizers:  {name: {parameters}} for each regulariser switched on (default: none)

``run``, ``train`` and the fixed keys of ``model`` are typed dataclass fields with ranges. ``data``,
``objective``, ``model.generator`` and ``model.discriminator`` are *open*: besides their declared
keys they take whatever parameters the registered factory accepts, checked against its signature.
``regularizers`` maps registered regulariser names to their parameters (``true`` = defaults,
``false``/``null`` = off), checked the same way.
Loading a config checks its structure: keys, types and ranges of the typed fields, registry names,
and the parameter *names* of open sections against the factories' signatures (with "did you
mean"). The parameter *values* of objectives, regularisers, datasets and networks are checked once,
where those are built (:mod:`statgan.models`, called by the trainer before the run directory
exists). Every problem raises a one-line :class:`~statgan.errors.ConfigError` naming the key and
what is allowed — before any training starts.

Fields marked ``resumable`` may change when a run is resumed (:func:`resume_blockers`): they change
how fast or how observably a run goes, never what it learns.

Overrides use dotted keys and YAML scalars: ``train.steps=2000 train.betas=[0.5,0.99]
objective.name=renyi objective.alpha=0.5 regularizers.sam.rho=0.5``.
"""

from __future__ import annotations

import copy
import math
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from . import catalog
from .errors import ConfigError
from .registry import check_param_names
from .runtime.validation import did_you_mean


def _f(default: Any, help: str = "", *, resumable: bool = False, **checks: Any) -> Any:
    """A dataclass field with a help text, value checks (min, max, gt, lt, choices, length) and
    whether it may change on resume (``resumable``)."""
    meta = {"help": help, "resumable": resumable, **checks}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return field(default=default, metadata=meta)


#: the most generator updates a run may ask for: a billion is years of training on any machine, so a
#: larger number is a typo (and would overflow the schedules' and progress bar's arithmetic)
MAX_STEPS = 10**9


@dataclass
class RunSection:
    name: Optional[str] = _f(None, "run directory name under out_dir (default: <data>-<arch>-<objective>-<time>)",
                             folder_name=True)
    out_dir: str = _f("runs", "parent folder of run directories")
    seed: int = _f(0, "seed for weights, latents and data order", min=0)
    device: str = _f("auto", "auto | cpu | cuda | cuda:N | mps", resumable=True)


@dataclass
class DataSection:
    name: str = _f("mnist5k", "dataset name from the data registry")
    root: Optional[str] = _f(None, "folder holding the dataset files (default: the loader's own)")
    # any further key is passed to the dataset loader and checked against its signature
    options: Dict[str, Any] = _f({}, "")


@dataclass
class ModelSection:
    arch: str = _f("dcgan", "network family registered for both generator and discriminator")
    latent_dim: int = _f(100, "dimension of z ~ N(0, I)", min=1)
    generator: Dict[str, Any] = _f({}, "parameters of the generator factory (width, norm, dropout, ...)")
    discriminator: Dict[str, Any] = _f({}, "parameters of the discriminator factory")


@dataclass
class ObjectiveSection:
    name: str = _f("ns", "objective name from the objective registry")
    # any further key is an objective parameter checked against its constructor
    params: Dict[str, Any] = _f({}, "")


@dataclass
class TrainSection:
    steps: int = _f(2500, "generator updates", min=1, max=MAX_STEPS, resumable=True)
    batch_size: int = _f(64, "images per batch (real and generated)", min=1)
    n_critic: int = _f(1, "discriminator updates per generator update", min=1)
    lr_g: float = _f(2e-4, "generator Adam learning rate", gt=0.0)
    lr_d: float = _f(2e-4, "discriminator Adam learning rate", gt=0.0)
    betas: List[float] = _f([0.5, 0.999], "Adam betas", length=2, min=0.0, lt=1.0)
    warmup_steps: int = _f(0, "linear LR warm-up from 1% to 100% over this many steps", min=0)
    ema: bool = _f(True, "keep an exponential moving average of the generator's weights")
    ema_decay: float = _f(0.999, "EMA decay per step", min=0.0, lt=1.0)
    ema_start: int = _f(0, "step at which the EMA starts (before: EMA = current weights)", min=0)
    ema_halflife_kimg: Optional[float] = _f(None, "EMA half-life in thousands of images; replaces ema_decay (StyleGAN2-ADA: 10)", gt=0.0)
    ema_rampup: Optional[float] = _f(None, "with ema_halflife_kimg: half-life at most this fraction of the images seen so far (0.05)", gt=0.0)
    log_every: int = _f(50, "steps between metrics.jsonl records", min=1, resumable=True)
    sample_every: int = _f(500, "steps between sample grids (0 = only at the end)", min=0, resumable=True)
    checkpoint_every: int = _f(1000, "steps between checkpoints (0 = only at the end)", min=0, resumable=True)
    keep_checkpoints: int = _f(3, "checkpoints kept (oldest deleted)", min=1, resumable=True)
    eval_every: int = _f(0, "steps between FID evaluations logged to metrics.jsonl; the best is kept as checkpoints/best (0 = never)", min=0)
    eval_n: int = _f(2000, "generated samples per FID evaluation", min=2)
    eval_extractor: Optional[str] = _f(None, "feature extractor for FID (default: lenet for 1-channel images, inception for RGB, pixels for vectors)")
    eval_reference: str = _f("train", "dataset split the FID is computed against", choices=("train", "test"))
    grid_size: int = _f(64, "images in each sample grid", min=1, max=1024)
    progress: bool = _f(True, "show a progress bar with ETA", resumable=True)
    # a bool or "auto": YAML 1.1 reads on/off as true/false, so those spellings work as well
    tensorboard: Union[bool, str] = _f("auto", "TensorBoard events: auto (when installed) | true | false", choices=("auto", True, False), resumable=True)
    deterministic: bool = _f(True, "use deterministic kernels (bit-reproducible on CPU)")
    threads: Optional[int] = _f(None, "torch CPU threads (default: torch's own choice)", min=1, resumable=True)
    # faults and speed (statgan.train.faults, statgan.train.precision; docs/scaling.md)
    nan_retries: int = _f(3, "on a NaN/Inf loss or gradient: roll back to the last good state and retry this many times in a row before stopping (0 = stop at once)", min=0, resumable=True)
    nan_lr_factor: float = _f(0.5, "learning rates are multiplied by this at each rollback", gt=0.0, lt=1.0, resumable=True)
    precision: str = _f("fp32", "fp32 | bf16 (autocast; CUDA and CPU) | fp16 (autocast + gradient scaling; CUDA only)", choices=("fp32", "bf16", "fp16"))
    tf32: Optional[bool] = _f(None, "TF32 matmul/convolutions on Ampere+ GPUs: true | false | null (torch's defaults)", resumable=True)
    channels_last: bool = _f(False, "NHWC memory layout for image networks and batches (faster convolutions on GPUs)", resumable=True)
    compile: bool = _f(False, "torch.compile G and D (not with double back-propagation: r1, r2, gp, param_grad, sample_grad, sharpness)", resumable=True)


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    train: TrainSection = field(default_factory=TrainSection)
    # regulariser name -> its parameters; empty = none (the trainer then runs exactly as without)
    regularizers: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    # dotted setting -> how it moves over the run (statgan.train.schedules); empty = fixed settings
    schedules: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    # ---- conversion --------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict in the YAML layout (open sections' extra keys inlined)."""
        d = dataclasses.asdict(self)
        d["data"] = {k: v for k, v in d["data"].items() if k != "options"} | dict(self.data.options)
        d["objective"] = {"name": self.objective.name} | dict(self.objective.params)
        if not d["schedules"]:
            del d["schedules"]  # configs without schedules read (and hash) as they did before schedules existed
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(self.to_yaml())


# Sections whose unknown keys are collected into an "extra" dict instead of being rejected.
_OPEN_SECTIONS = {"data": "options", "objective": "params"}
# Dict-valued fields whose keys are free (checked later against a factory's signature).
_FREE_DICTS = {("model", "generator"), ("model", "discriminator")}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + (" or null" if len(inner) < len(args) else "")
    if origin in (list, List):
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin in (dict, Dict):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is Union:
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
        raise bad
    if origin in (list, List):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise bad
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin in (dict, Dict):
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise bad
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept any float literal here
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    return value


def _check_range(value: Any, meta: Mapping[str, Any], key: str) -> None:
    if "length" in meta and isinstance(value, list) and len(value) != meta["length"]:
        raise ConfigError(f"{key}: expected {meta['length']} values, got {len(value)} ({value!r})")
    items = [(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [(key, value)]
    for key, v in items:
        if v is None:
            continue
        if "choices" in meta and v not in meta["choices"]:
            allowed = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in meta["choices"])
            raise ConfigError(f"{key}: {v!r} is not allowed; expected one of {allowed}")
        if "min" in meta and v < meta["min"]:
            raise ConfigError(f"{key}: {v!r} is out of range; expected ≥ {meta['min']}")
        if "max" in meta and v > meta["max"]:
            raise ConfigError(f"{key}: {v!r} is out of range; expected ≤ {meta['max']}")
        if "gt" in meta and not v > meta["gt"]:
            raise ConfigError(f"{key}: {v!r} is out of range; expected > {meta['gt']}")
        if "lt" in meta and not v < meta["lt"]:
            raise ConfigError(f"{key}: {v!r} is out of range; expected < {meta['lt']}")
        if meta.get("folder_name") and (v in ("", ".", "..") or any(c in v for c in "/\\")):
            # a run directory lives directly under out_dir, where `statgan runs` finds it
            raise ConfigError(f"{key}: {v!r} is not a folder name; expected one name without '/' or '\\' "
                              "(not '.' or '..'): the run goes under run.out_dir")


def _build_section(cls: type, raw: Mapping[str, Any], section: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{section}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra_name = _OPEN_SECTIONS.get(section)
    declared = [n for n in fields if n != extra_name]
    kwargs: Dict[str, Any] = {}
    extra: Dict[str, Any] = {}
    for k, v in raw.items():
        k = str(k)
        if k in declared:
            key = f"{section}.{k}"
            val = _coerce(v, hints[k], key)
            _check_range(val, fields[k].metadata, key)
            kwargs[k] = val
        elif extra_name is not None:
            extra[k] = v
        else:
            raise ConfigError(
                f"unknown key '{section}.{k}'{did_you_mean(k, declared)} (allowed: {', '.join(declared)})"
            )
    if extra_name is not None:
        kwargs[extra_name] = extra
    return cls(**kwargs)


def _build_regularizers(raw: Any) -> Dict[str, Dict[str, Any]]:
    """``regularizers``: name -> parameter mapping; ``true`` means defaults, ``false``/null off.
    Names and parameters are checked against the registry in :func:`validate`."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"regularizers: expected a mapping of regularizer names to parameters (e.g. regularizers.sam.rho=0.5), got {raw!r}")
    out: Dict[str, Dict[str, Any]] = {}
    for name, params in raw.items():
        name = str(name)
        if params is None or params is False:
            continue
        if params is True:
            params = {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"regularizers.{name}: expected a mapping of parameters or true/false, got {params!r}")
        out[name] = {str(k): v for k, v in params.items()}
    return out


#: how a scheduled setting moves over the run (statgan.train.schedules)
SCHEDULE_KINDS = ("linear", "cosine")


def parse_schedules(raw: Any) -> Dict[str, Dict[str, Any]]:
    """The ``schedules`` section as ``{dotted key: spec}``. Keys may be dotted (``train.lr_g``) or
    nested (``train: {lr_g: {...}}``); a spec is a mapping with ``to`` and optionally ``from``,
    ``kind`` (linear | cosine), ``begin`` and ``end`` (fractions of the run, 0 <= begin < end <= 1)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"schedules: expected a mapping of settings to schedules (e.g. schedules.train.lr_g.to=5e-5), got {raw!r}")
    out: Dict[str, Dict[str, Any]] = {}

    def walk(node: Mapping, prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and "to" in v:
                out[key] = _check_spec(key, v)
            elif isinstance(v, Mapping) and v:
                walk(v, key)
            else:
                raise ConfigError(f"schedules.{key}: expected a schedule such as {{to: 5.0e-5, kind: cosine}}, got {v!r}")

    walk(raw, "")
    return out


def _number(key: str, field: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"schedules.{key}: {field}={value!r} must be a finite number")
    return float(value)


def _check_spec(key: str, spec: Mapping) -> Dict[str, Any]:
    allowed = ("to", "from", "kind", "begin", "end")
    unknown = [k for k in spec if k not in allowed]
    if unknown:
        raise ConfigError(f"schedules.{key}: unknown field {unknown[0]!r} (allowed: {', '.join(allowed)})")
    out: Dict[str, Any] = {"to": _number(key, "to", spec["to"])}
    if "from" in spec:
        out["from"] = _number(key, "from", spec["from"])
    kind = spec.get("kind", "linear")
    if kind not in SCHEDULE_KINDS:
        raise ConfigError(f"schedules.{key}: kind={kind!r} is not one of: {', '.join(SCHEDULE_KINDS)}")
    out["kind"] = kind
    begin, end = _number(key, "begin", spec.get("begin", 0.0)), _number(key, "end", spec.get("end", 1.0))
    if not 0.0 <= begin < end <= 1.0:
        raise ConfigError(f"schedules.{key}: begin={begin:g}, end={end:g} must satisfy 0 <= begin < end <= 1 (fractions of the run)")
    out["begin"], out["end"] = begin, end
    return out


_SECTIONS = {"run": RunSection, "data": DataSection, "model": ModelSection, "objective": ObjectiveSection, "train": TrainSection}
#: every top-level key: the dataclass sections plus the free ``regularizers`` and ``schedules`` mappings
_ALL_SECTIONS = [*_SECTIONS, "regularizers", "schedules"]


def from_dict(raw: Optional[Mapping[str, Any]]) -> Config:
    """Build a Config from a nested mapping (YAML layout); type and range checks only."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(_ALL_SECTIONS)}, got {type(raw).__name__}")
    for k in raw:
        if k not in _ALL_SECTIONS:
            raise ConfigError(f"unknown section {k!r}{did_you_mean(str(k), _ALL_SECTIONS)} (allowed: {', '.join(_ALL_SECTIONS)})")
    sections = {name: _build_section(cls, raw.get(name), name) for name, cls in _SECTIONS.items()}
    return Config(**sections, regularizers=_build_regularizers(raw.get("regularizers")),
                  schedules=parse_schedules(raw.get("schedules")))


def parse_override(item: str) -> tuple:
    """``"a.b.c=value"`` -> (["a", "b", "c"], parsed YAML scalar/list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.steps=2000)")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # leave unparsable text as a string; type checks will name it
    return key.split("."), value


#: what the error for a whole-section override suggests instead
_EXAMPLE_KEYS = {"run": "run.name=NAME", "data": "data.name=mnist5k", "model": "model.latent_dim=64",
                 "objective": "objective.name=ns", "train": "train.steps=2000", "regularizers": "regularizers.r1.weight=1",
                 "schedules": "schedules.train.lr_g.to=5e-5"}


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    raw = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_override(item)
        if path[0] not in _ALL_SECTIONS:
            raise ConfigError(
                f"override {item!r}: unknown section {path[0]!r}{did_you_mean(path[0], _ALL_SECTIONS)} "
                f"(allowed: {', '.join(_ALL_SECTIONS)})"
            )
        if len(path) == 1:  # a whole section: merge a mapping key by key, never replace the preset's section
            if not isinstance(value, dict) or not value:
                raise ConfigError(
                    f"override {item!r}: {path[0]!r} is a section; set its keys (e.g. {_EXAMPLE_KEYS.get(path[0], path[0] + '.KEY=VALUE')}) "
                    f"or give a non-empty mapping ({path[0]}={{key: value}})"
                )
            section = raw.get(path[0])
            raw[path[0]] = {**(section if isinstance(section, dict) else {}), **value}
            continue
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None or (child is True and path[0] == "regularizers"):  # `sam: true` -> `sam: {rho: …}`
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist (expected a YAML preset such as configs/mnist5k-dcgan.yaml)")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(p)!r}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


PRESET_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_PRESET = "mnist5k-dcgan-rpgan-deepd"  # issue 31; before it mnist5k-dcgan-rpgan (issue 13), mnist5k-dcgan


def presets() -> List[str]:
    """Names of the presets shipped with statgan (``configs/*.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve(path_or_preset: Optional[Union[str, Path]]) -> Path:
    """A YAML path, or the name of a shipped preset (``mnist5k-dcgan``); None means the default run."""
    if path_or_preset is None:
        return PRESET_DIR / f"{DEFAULT_PRESET}.yaml"
    p = Path(path_or_preset)
    if p.is_file():
        return p
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent in (Path("."), Path("configs")) and (PRESET_DIR / f"{name}.yaml").is_file():
        return PRESET_DIR / f"{name}.yaml"
    raise ConfigError(f"config {str(path_or_preset)!r} is neither a YAML file nor a preset{did_you_mean(name, presets())}; "
                      f"presets: {', '.join(presets())}")


def load(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML file or shipped preset (the default run's preset when ``path`` is None), apply
    dotted overrides, and validate the result (:func:`validate`: structure and names; values are
    checked where the components are built)."""
    raw = load_yaml(resolve(path))
    cfg = from_dict(_drop_other_arch_params(raw, apply_overrides(raw, overrides), overrides))
    validate(cfg)
    return cfg


def _drop_other_arch_params(raw: Dict[str, Any], merged: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """When an override switches ``model.arch`` away from the preset's, the preset's
    ``model.generator`` / ``model.discriminator`` parameters belong to the other arch: drop those the
    overrides do not set, so ``statgan train model.arch=stylegan`` starts from the arch's defaults."""
    before, after = (d.get("model") or {} for d in (raw, merged))
    if not isinstance(before, dict) or not isinstance(after, dict) or before.get("arch") == after.get("arch"):
        return merged
    touched = {tuple(parse_override(item)[0][:2]) for item in overrides}
    for fam in ("generator", "discriminator"):
        if ("model", fam) not in touched and fam in after:
            after[fam] = {}
    return merged


def _validate_regularizers(cfg: Config) -> Dict[str, List[str]]:
    """Names and parameter names of ``regularizers`` (with "did you mean"); returns the network
    parameters they may set (e.g. MC dropout's ``dropout``), by network family."""
    network_keys: Dict[str, List[str]] = {"generator": [], "discriminator": []}
    for name, params in cfg.regularizers.items():
        if not catalog.known("regularizer", name):
            known = catalog.names("regularizer")
            raise ConfigError(f"unknown regularizer 'regularizers.{name}'{did_you_mean(name, known)} (allowed: {', '.join(known)})")
        allowed = catalog.accepted("regularizer", name) or []
        for key in params:
            if key not in allowed:
                raise ConfigError(
                    f"unknown key 'regularizers.{name}.{key}'{did_you_mean(key, allowed)} (allowed: {', '.join(allowed) or '(none)'})"
                )
        for family in catalog.attribute("regularizer", name, "network_families"):
            network_keys[family] += catalog.attribute("regularizer", name, "network_keys")
    return network_keys


def validate(cfg: Config) -> None:
    """Cross-check names and open-section parameter names against the registries. Builds nothing:
    parameter values are checked where the components are built (:mod:`statgan.models`)."""
    objective = catalog.canonical("objective", cfg.objective.name)
    check_param_names(catalog.accepted("objective", objective), dict(cfg.objective.params), f"objective {objective!r}")
    network_keys = _validate_regularizers(cfg)

    # dataset name and loader options
    dataset = catalog.canonical("dataset", cfg.data.name)
    check_param_names(catalog.accepted("dataset", dataset), dict(cfg.data.options), f"data {dataset!r}")
    reserved = {"split", "root"} & set(cfg.data.options)
    if reserved:
        raise ConfigError(f"data.{sorted(reserved)[0]} cannot be set as a loader option here")
    # networks, with the parameters the regularisers may add (values are theirs to set, so only
    # the names are checked here; a key set twice is refused when the networks are built)
    for fam, params in (("generator", cfg.model.generator), ("discriminator", cfg.model.discriminator)):
        arch = catalog.canonical(fam, cfg.model.arch)
        names = dict.fromkeys([*params, *network_keys[fam]])
        check_param_names(catalog.accepted(fam, arch, n_positional=2 if fam == "generator" else 1), names,
                          f"model.{fam} ({cfg.model.arch})")
    if cfg.run.device not in ("auto", "cpu", "mps", "cuda") and not (
        cfg.run.device.startswith("cuda:") and cfg.run.device[5:].isdigit()
    ):
        raise ConfigError(f"run.device: {cfg.run.device!r} is not allowed; expected auto, cpu, cuda, cuda:N or mps")


def named_members(cfg: Config) -> List[Tuple[str, str]]:
    """(registry family, name) of every registered member ``cfg`` names: dataset, networks, objective,
    regularisers."""
    return [("dataset", cfg.data.name), ("generator", cfg.model.arch), ("discriminator", cfg.model.arch),
            ("objective", cfg.objective.name), *(("regularizer", name) for name in cfg.regularizers)]


def plugin_origins(cfg: Config) -> List[Dict[str, Optional[str]]]:
    """The members ``cfg`` names that are not statgan's own, each with its family and where it came
    from: the installed plugin package declaring it, or (package None) the Python object a script
    registered. A run records them in ``plugins.json``, so a later command can say what is missing."""
    out = []
    for family, name in named_members(cfg):
        if catalog.is_builtin(family, name):
            continue
        origin = catalog.plugins(family).get(name.lower())
        if origin is not None:
            out.append({"family": family, **origin.to_dict()})
            continue
        factory = catalog.registry(family)[name]  # registered from Python: its registry is imported
        out.append({"family": family, "group": catalog.PLUGIN_GROUPS[family], "name": name, "package": None,
                    "version": None, "value": f"{factory.__module__}:{factory.__qualname__}"})
    return out


def diff(a: Config, b: Config) -> List[str]:
    """Human-readable differences between two configs, as dotted keys."""
    out: List[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
        elif x != y:
            out.append(f"{prefix}: {x!r} -> {y!r}")

    walk(a.to_dict(), b.to_dict(), "")
    return out


#: dotted keys of the fields marked ``resumable`` (see the module docstring)
RESUMABLE_KEYS = frozenset(
    f"{section}.{f.name}" for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls) if f.metadata.get("resumable")
)


def _changes_training(key: str) -> bool:
    """Whether a change of the dotted ``key`` changes what a resumed run learns."""
    section, _, rest = key.partition(".")
    if section == "regularizers":
        # a regulariser declares it (probes such as sharpness only read the model)
        name = rest.partition(".")[0]
        return not catalog.known("regularizer", name) or catalog.attribute("regularizer", name, "changes_training")
    return key not in RESUMABLE_KEYS


_CHECK_WORDS = (("min", "≥"), ("max", "≤"), ("gt", ">"), ("lt", "<"))


def explain(key: str) -> str:
    """What a dotted config key means: its help, type, default and allowed values, read from the same
    field declarations the validator checks (``statgan config explain KEY``)."""
    section, _, name = key.partition(".")
    if section not in _SECTIONS:
        if section in _ALL_SECTIONS:
            return (f"{section}: a mapping of {'regularizer' if section == 'regularizers' else 'schedule'} names to their "
                    f"parameters (statgan list {'regularizers' if section == 'regularizers' else ''}".rstrip() + ")")
        raise ConfigError(f"unknown section {section!r}{did_you_mean(section, _ALL_SECTIONS)} "
                          f"(sections: {', '.join(_ALL_SECTIONS)})")
    cls = _SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != _OPEN_SECTIONS.get(section)}
    if name not in fields:
        if section in _OPEN_SECTIONS:
            what = {"data": "the chosen dataset loader", "objective": "the chosen objective"}[section]
            return f"{key}: not a declared key; {section} is an open section: other keys go to {what}, checked against its signature"
        raise ConfigError(f"unknown key {key!r}{did_you_mean(name, list(fields))} (allowed: {', '.join(fields)})")
    f = fields[name]
    meta = f.metadata
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    allowed = [f"{word} {meta[k]}" for k, word in _CHECK_WORDS if k in meta]
    if "choices" in meta:
        allowed.append("one of " + ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in meta["choices"]))
    if "length" in meta:
        allowed.append(f"{meta['length']} values")
    if meta.get("folder_name"):
        allowed.append("one folder name (no '/', '\\', '.' or '..')")
    lines = [f"{key}: {meta.get('help') or '(no description)'}",
             f"  type: {_describe(typing.get_type_hints(cls)[name])}",
             f"  default: {yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}",
             f"  allowed: {', '.join(allowed) or 'any value of that type'}",
             f"  on resume: {'may change' if meta.get('resumable') else 'a change needs --force'}"]
    if (section, name) in _FREE_DICTS:
        lines.append("  its keys are the chosen network's parameters, checked against its signature")
    return "\n".join(lines)


#: keys whose change makes a run's checkpoint unloadable: another network family or latent size has
#: other weights, so no --force can resume with it
RESUME_IMPOSSIBLE = ("model.arch", "model.latent_dim")


def resume_impossible(saved: Config, new: Config) -> List[str]:
    """The differences (as :func:`diff` writes them) that no resume can accept (:data:`RESUME_IMPOSSIBLE`)."""
    return [c for c in diff(saved, new) if c.partition(":")[0] in RESUME_IMPOSSIBLE]


def resume_blockers(saved: Config, new: Config) -> List[str]:
    """The differences (as :func:`diff` writes them) between a run's saved config and the one it is
    resumed with that change what is learned; resuming with any of them needs ``--force``."""
    return [c for c in diff(saved, new) if _changes_training(c.partition(":")[0])]
