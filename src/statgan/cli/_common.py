"""What several commands share: option groups, the audit's settings as flags, small helpers.

Light on purpose: nothing here imports torch, so building the whole parser (``statgan --help``)
costs milliseconds; each command imports the library it drives when it runs.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, Field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..audit_settings import flag_fields
from ..errors import StatganError

#: ``--device`` of the commands that run a generator
DEVICES_HELP = "cpu | cuda | mps | auto (default cpu)"


def split_config_and_overrides(items: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """``[CONFIG] key=value ...`` -> (the config path or None, the overrides)."""
    path: Optional[str] = None
    overrides: List[str] = []
    for item in items:
        if "=" in item:
            overrides.append(item)
        elif path is None:
            path = item
        else:
            raise StatganError(f"unexpected argument {item!r}: give one config file and key=value overrides")
    return path, overrides


def fmt_seconds(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


# ---------------------------------------------------------------------------------------------
# option groups


def add_generator_options(p: argparse.ArgumentParser, *, use_previous: bool = False) -> None:
    """RUN_DIR and which of its generators: checkpoint, EMA or raw weights, device."""
    p.add_argument("run_dir", metavar="RUN_DIR")
    g = p.add_argument_group("generator")
    g.add_argument("--checkpoint", default=None, help="a specific checkpoint .json (default: the latest)")
    g.add_argument("--no-ema", action="store_true", help="use the raw generator instead of the EMA weights")
    if use_previous:
        g.add_argument("--use-previous", action="store_true",
                       help="if the newest checkpoint is corrupt, use the newest good one (with a warning)")
    add_device_options(p)


def add_device_options(p: argparse.ArgumentParser, *, threads: Optional[int] = None, threads_help: str = "") -> None:
    """``--device`` and, where a command sets it, ``--threads``."""
    g = p.add_argument_group("device")
    g.add_argument("--device", default="cpu", help=DEVICES_HELP)
    if threads is not None:
        g.add_argument("--threads", type=int, default=threads, help=threads_help)


def add_picture_options(p: argparse.ArgumentParser, out: str, out_help: str, seed_help: str) -> None:
    """``--out``, ``--seed`` and ``--scale`` of the commands that draw."""
    p.add_argument("--out", default=out, help=f"{out_help} (default {out})")
    p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default 0)")
    p.add_argument("--scale", type=int, default=1, help="enlarge each pixel of a .png to SCALE x SCALE (default 1)")


# ---------------------------------------------------------------------------------------------
# settings dataclasses as flags


def _flag_type(cls: type, f: Field) -> Tuple[type, bool]:
    """(the Python type behind a settings field, whether it is a comma-separated tuple)."""
    tp = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union and len(args) == 1:
        tp = args[0]
    if typing.get_origin(tp) is tuple:
        return typing.get_args(tp)[0], True
    return tp, False


def _csv(kind: type):
    def parse(text: str) -> Tuple[Any, ...]:
        return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    parse.__name__ = f"comma-separated {kind.__name__}"
    return parse


def add_settings_flags(p: argparse.ArgumentParser, cls: type, quick: Optional[Any] = None,
                       skip: Sequence[str] = ()) -> None:
    """One flag per field of ``cls`` that declares a help text (:func:`statgan.audit_settings.knob`):
    ``--name-with-dashes`` (plus its ``short`` form), typed from the annotation, choices from the
    metadata; a boolean that defaults to true becomes ``--no-NAME``. Every flag defaults to None, so
    only what the user typed overrides the settings (and ``--quick``'s values); the help quotes both."""
    g = p.add_argument_group(f"{cls.__name__} knobs")
    for f in flag_fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not MISSING else None
        quick_value = getattr(quick, f.name) if quick is not None else default
        note = f"default {default}" + (f"; --quick {quick_value}" if quick_value != default else "")
        help_text = f"{f.metadata['help']} ({note})"
        kind, is_tuple = _flag_type(cls, f)
        names = [f"--{f.name.replace('_', '-')}"]
        if kind is bool:
            if default is not True:
                raise TypeError(f"{cls.__name__}.{f.name}: a flag for a boolean knob needs default True")
            g.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false", default=None,
                           help=f"{f.metadata['help']} (default on)")
            continue
        if "short" in f.metadata:
            names.insert(0, f.metadata["short"])
        g.add_argument(*names, dest=f.name, type=_csv(kind) if is_tuple else kind, default=None,
                       choices=f.metadata.get("choices"), help=help_text)


def settings_from_args(cls: type, args: argparse.Namespace, quick: bool = False) -> Any:
    """``cls`` (or ``cls.quick``) with the flags the user gave."""
    given: Dict[str, Any] = {f.name: getattr(args, f.name) for f in flag_fields(cls)
                             if getattr(args, f.name, None) is not None}
    return cls.quick(**given) if quick else cls(**given)
