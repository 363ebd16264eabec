"""``statgan invert`` and ``statgan audit``: a generator as a statistical model.

Their flags are the fields of :class:`~statgan.audit_settings.InvertSettings` and
:class:`~statgan.audit_settings.AuditSettings` that declare a help text, generated here
(:func:`statgan.cli._common.add_settings_flags`), so a new knob is one line in the settings.
"""

from __future__ import annotations

import argparse

from ..audit_settings import PRECISIONS, AuditSettings, InvertSettings
from ..errors import ConfigError
from ._common import (add_data_options, add_generator_options, add_settings_flags, command_threads,
                      load_generator_from_args, settings_from_args)


def _add_run_options(q: argparse.ArgumentParser) -> None:
    add_generator_options(q)
    add_data_options(q)


def _add_invert(sub: argparse._SubParsersAction) -> None:
    iv = sub.add_parser("invert", help="invert a generator on train / test / generated / OOD images")
    _add_run_options(iv)
    iv.add_argument("--split", required=True,
                    help="train | test | generated | ood (all OOD sets) | an OOD set name (e.g. glyphs)")
    add_settings_flags(iv, InvertSettings)
    iv.add_argument("--out", default=None, help="output .safetensors (default RUN_DIR/audit/invert-SPLIT-nN-LOSS-rRxS-"
                    "lrLR-seedSEED.safetensors, or beside a generator file in NAME-audit/; JSON and a PNG of originals "
                    "beside reconstructions next to it)")
    iv.set_defaults(func=cmd_invert)


def cmd_invert(args: argparse.Namespace) -> int:
    settings = settings_from_args(InvertSettings, args).validate()
    with command_threads(args.threads):
        from ..audit.run import invert_split  # heavy (torch, the data): once the settings are valid

        res = invert_split(load_generator_from_args(args), args.split, settings, out=args.out, train=args.train,
                           test=args.test)
    for name, v in res.sets.items():
        e = v.error
        print(f"{name:<14} n={v.n:<5} inversion error ({res.error_unit}): median {e.median:.4g} "
              f"[q25 {e.q25:.4g}, q75 {e.q75:.4g}], mean {e.mean:.4g}")
    picture = getattr(res, "picture", None)
    also = f" and {picture}" if picture else ""
    print(f"wrote {res.tensors}, {res.path}{also} ({res.seconds:.1f} s)")
    return 0


def _add_audit(sub: argparse._SubParsersAction) -> None:
    au = sub.add_parser("audit", help="audit a generator as a statistical model; writes RUN_DIR/audit/report.html")
    _add_run_options(au)
    au.add_argument("--quick", action="store_true", help="tiny settings: a smoke test in seconds (numbers mean little); "
                    "the short form of --precision quick")
    au.add_argument("--precision", choices=PRECISIONS, default=None,
                    help="the likelihood's budget: quick (a smoke test), default, or certified "
                         f"({AuditSettings.CERTIFIED['ais_steps']:,} AIS steps from the "
                         f"{AuditSettings.CERTIFIED['proposal']}; the expected BDMC gap and time are printed "
                         "before it starts); flags given beside it change it")
    add_settings_flags(au, AuditSettings, quick=AuditSettings.quick())
    au.add_argument("--out", default=None, help="output folder (default RUN_DIR/audit, or beside a generator file: NAME-audit/)")
    au.set_defaults(func=cmd_audit, several_processes=True)


def cmd_audit(args: argparse.Namespace) -> int:
    if args.quick and args.precision not in (None, "quick"):
        raise ConfigError(f"--quick is --precision quick; it contradicts --precision {args.precision}")
    level = "quick" if args.quick else (args.precision or "default")
    settings = settings_from_args(AuditSettings, args, precision=level).validate()
    with command_threads(args.threads):
        from ..audit.run import audit_run  # heavy (torch, the data, the report): once the settings are valid
        from ..audit.toy import ToyAuditSummary

        summary = audit_run(load_generator_from_args(args), settings, out_dir=args.out, train=args.train,
                            test=args.test)
    from ..runtime.distributed import env_rank  # late like the rest: the command's imports follow its flags

    if env_rank() != 0:  # under torchrun every rank holds the summary; rank 0 wrote it and says so
        return 0
    if isinstance(summary, ToyAuditSummary):  # 2-D points: the toy audit (quadrature beside AIS / BDMC)
        for line in summary.console_lines():
            print(line)
        assert summary.paths is not None  # audit_run wrote the files
        print(f"report: {summary.paths.report}\nsummary: {summary.paths.summary} ({summary.seconds:.0f} s)")
        return 0
    for f in summary.findings:
        label = f"({f.id})" if len(f.id) == 1 else "(*)"
        print(f"{label} {f.title}: {f.verdict}")
    assert summary.paths is not None  # audit_run wrote the files
    print(f"report: {summary.paths.report}\nsummary: {summary.paths.summary} ({summary.seconds:.0f} s)")
    return 0
