"""``statgan list`` and ``statgan config``: what can be named, and what a config resolves to.

Both answer from :mod:`statgan.catalog` and :mod:`statgan.config` alone, without torch, in well under
a second (``benchmarks/cli_startup.py``).
"""

from __future__ import annotations

import argparse
from typing import Dict, List

from .. import catalog
from .. import config as config_mod
from ..errors import StatganError
from ._common import split_config_and_overrides

#: ``statgan list WHAT``: the heading and the registry family behind it
LISTS = {
    "datasets": "dataset",
    "archs": "generator",
    "objectives": "objective",
    "regularizers": "regularizer",
    "extractors": "feature extractor",
    "metrics": "metric",
    "reproductions": "reproduction",
}


def catalogue() -> Dict[str, List[str]]:
    """Every name a user can type, by what it is; a plugin's members marked with their package."""
    out = {"presets": config_mod.presets()}
    for heading, family in LISTS.items():
        plugins = catalog.plugins(family)
        out[heading] = [f"{n} (plugin: {plugins[n].package or plugins[n].value})" if n in plugins else n
                        for n in catalog.names(family)]
    return out


def _add_list(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list presets, datasets, architectures, objectives, regularizers, extractors, "
                                     "metrics and reproductions (installed plugins included)")
    ls.add_argument("what", nargs="?", choices=("presets", *LISTS))
    ls.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    for name, items in catalogue().items():
        if args.what in (None, name):
            print(f"{name}: {', '.join(items)}")
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    cf = sub.add_parser("config", help="print a resolved config (statgan config show [PRESET|FILE] [key=value ...]) "
                                       "or what a key means (statgan config explain KEY)")
    cf.add_argument("action", choices=("show", "explain"))
    cf.add_argument("items", nargs="*", metavar="[CONFIG] [key=value] | KEY",
                    help="show: a preset or YAML file and dotted overrides; explain: one dotted key")
    cf.add_argument("--explain", metavar="KEY", default=None, help="with show: also what KEY means")
    cf.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "explain":
        if len(args.items) != 1:
            raise StatganError(f"config explain takes one dotted key (e.g. train.steps), got {len(args.items)}")
        print(config_mod.explain(args.items[0]))
        return 0
    path, overrides = split_config_and_overrides(args.items)
    cfg = config_mod.load(path, overrides)
    print(cfg.to_yaml(), end="")
    if args.explain:
        print(f"\n# {args.explain}\n" + "\n".join(f"#   {line}" for line in config_mod.explain(args.explain).splitlines()))
    return 0
