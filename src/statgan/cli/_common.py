"""What several commands share: option groups, the audit's settings as flags, small helpers.

Light on purpose: nothing here imports torch, so building the whole parser (``statgan --help``)
costs milliseconds; each command imports the library it drives when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import typing
from dataclasses import MISSING, Field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..audit_settings import flag_fields
from ..errors import StatganError
from ..runtime.validation import check_int

#: GENERATOR of the commands that run one (:mod:`statgan.generator_source`)
GENERATOR_HELP = ("a run directory, FILE.py:NAME or package.module:NAME (an nn.Module, or a function returning one), "
                  "or a TorchScript (.pt/.ts) or torch.export (.pt2) file")
#: ``--device`` of the commands that run a generator
DEVICES_HELP = "cpu | cuda | mps | auto (default cpu)"
#: ``--threads`` of the commands that run a generator (:func:`command_threads`)
THREADS_HELP = ("torch CPU threads (default: torch's own count, moving to one thread while that is faster, "
                "e.g. beside a busy process; give a number to fix it)")


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


def add_generator_options(p: argparse.ArgumentParser, *, use_previous: bool = False, positional: bool = True,
                          ema_help: str = "use the raw generator instead of the EMA weights") -> None:
    """GENERATOR (a run directory, FILE.py:NAME, package.module:NAME or a TorchScript file) and how
    to read it: a run's checkpoint and weights, a foreign network's latent and output conventions;
    device and threads (:func:`load_generator_from_args` reads them)."""
    if positional:
        p.add_argument("generator", metavar="GENERATOR", help=GENERATOR_HELP)
    g = p.add_argument_group("generator")
    g.add_argument("--checkpoint", default=None, help="a run: a specific checkpoint .json (default: the latest)")
    g.add_argument("--no-ema", action="store_true", help=f"a run: {ema_help}")
    if use_previous:
        g.add_argument("--use-previous", action="store_true",
                       help="a run: if the newest checkpoint is corrupt, use the newest good one (with a warning)")
    g.add_argument("--latent-shape", default=None, metavar="SHAPE",
                   help="a generator from elsewhere: the shape of one latent, e.g. 100 or 100,1,1 for a network that "
                        "takes (B, 100, 1, 1) (default: what the module or file declares)")
    g.add_argument("--latent", default="normal", choices=("normal", "uniform"),
                   help="a generator from elsewhere: its latent distribution, N(0, I) or U(-1, 1) (default normal)")
    g.add_argument("--output-range", default="-1,1", metavar="LO,HI",
                   help="a generator from elsewhere: the range of its outputs, -1,1 or 0,1 (default -1,1)")
    add_device_options(p)


def load_generator_from_args(args: argparse.Namespace, spec: Optional[str] = None) -> Any:
    """The :class:`~statgan.generator_source.LoadedGenerator` the options of
    :func:`add_generator_options` name (``spec``: GENERATOR, default ``args.generator``)."""
    from ..generator_source import (GeneratorOptions, load_generator_source,  # heavy: torch
                                    parse_latent_shape, parse_output_range)

    options = GeneratorOptions(latent_shape=parse_latent_shape(args.latent_shape), latent=args.latent,
                               output_range=parse_output_range(args.output_range), checkpoint=args.checkpoint,
                               ema=not args.no_ema, use_previous=getattr(args, "use_previous", False),
                               device=args.device)
    return load_generator_source(spec if spec is not None else args.generator, options)


def add_data_options(p: argparse.ArgumentParser) -> None:
    """``--train SET`` / ``--test SET``: image sets for the audit of any generator."""
    g = p.add_argument_group("data (a run has its own; a generator from elsewhere needs them)")
    g.add_argument("--train", default=None, metavar="SET",
                   help="training images: a folder, an .npz file or data:NAME:SPLIT (default: a run's training split)")
    g.add_argument("--test", default=None, metavar="SET",
                   help="held-out images, same forms (default: a run's test split)")


def add_device_options(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads`` (applied by :func:`command_threads`)."""
    g = p.add_argument_group("device")
    g.add_argument("--device", default="cpu", help=DEVICES_HELP)
    g.add_argument("--threads", type=int, default=None, help=THREADS_HELP)


@contextlib.contextmanager
def command_threads(threads: Optional[int]) -> Iterator[None]:
    """Torch's CPU threads while a command runs. ``--threads N``: N, as given. Unset: torch's own
    count, and a :class:`~statgan.runtime.threads.ThreadTuner` that the library's loops (inversion,
    AIS, feature extraction, generating) tick moves to one thread while that is faster -- two
    threads beside a busy process on two cores ran 1.2-8x slower than one (issue 27;
    ``benchmarks/threads_contention.py``), while on free cores two threads are ~1.8x faster."""
    if threads is not None:
        threads = check_int("--threads", threads)
    import torch  # heavy: the command runs networks next

    from ..runtime.threads import ThreadTuner, tuning

    before = torch.get_num_threads()  # given back afterwards: a caller in the same process keeps its own
    try:
        if threads is not None:
            torch.set_num_threads(threads)
            yield
            return
        with tuning(ThreadTuner()):
            yield
    finally:
        torch.set_num_threads(before)


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


def settings_from_args(cls: type, args: argparse.Namespace, quick: bool = False, precision: Optional[str] = None) -> Any:
    """``cls`` (or ``cls.quick``, or ``cls.at_precision(precision)``) with the flags the user gave."""
    given: Dict[str, Any] = {f.name: getattr(args, f.name) for f in flag_fields(cls)
                             if getattr(args, f.name, None) is not None}
    if precision is not None:
        return cls.at_precision(precision, **given)
    return cls.quick(**given) if quick else cls(**given)
