"""Every registered name without importing torch: the light mirror of the registries.

``statgan --help``, ``statgan list``, ``statgan config show`` and a config error should answer in
well under a second, but the registries live beside the networks, losses and loaders they hold, and
importing those imports torch (2–5 s on a laptop). So the names, aliases, constructor signatures and
the few class attributes the config validator reads are kept in ``catalog.json``, written from the
live registries by ``python -m statgan.catalog`` and checked against them by the test suite
(``tests/test_catalog.py``), so the two cannot drift apart.

Members registered from Python at run time (``statgan.data.DATASETS.register("mine")`` in a user's
script) are in the live registry, which is imported by then: the catalogue asks it too. Plugins
(members that installed packages declare in the entry-point groups of
:data:`statgan.registry.PLUGIN_GROUPS`) are listed from their entry points without loading them; a
question about one plugin member (its parameters) loads the family's registry, which loads the plugin.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .errors import ConfigError
from .registry import (PLUGIN_GROUPS, PluginOrigin, Registry, accepted_from_spec, accepted_params, is_own,
                       origin_of, plugin_entry_points, signature_spec)

#: the stored catalogue, next to this module (package data)
CATALOG_FILE = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class Family:
    """Where a family's registry lives and which class attributes the catalogue keeps."""

    module: str
    registry: str
    attributes: Tuple[str, ...] = ()


#: every registry a user can name something from, by its family name (as in its error messages)
FAMILIES: Dict[str, Family] = {
    "dataset": Family("statgan.data", "DATASETS"),
    "generator": Family("statgan.nets", "GENERATORS"),
    "discriminator": Family("statgan.nets", "DISCRIMINATORS"),
    "objective": Family("statgan.objectives", "OBJECTIVES"),
    "regularizer": Family("statgan.regularizers", "REGULARIZERS", ("changes_training", "network_keys", "network_families")),
    "feature extractor": Family("statgan.metrics.features", "EXTRACTORS"),
    "metric": Family("statgan.metrics.evaluate", "METRICS"),
    "reproduction": Family("statgan.experiments", "REPRODUCTIONS", ("BUDGETS",)),
}


def _family(family: str) -> Family:
    if family not in FAMILIES:
        raise KeyError(f"no registry family {family!r}; expected one of: {', '.join(FAMILIES)}")
    return FAMILIES[family]


@lru_cache(maxsize=1)
def _stored() -> Dict[str, Dict[str, Any]]:
    return json.loads(CATALOG_FILE.read_text())


def registry(family: str) -> Registry:
    """The live registry of ``family`` (imports its modules, torch included)."""
    fam = _family(family)
    return getattr(importlib.import_module(fam.module), fam.registry)


def _live(family: str) -> Optional[Registry]:
    """The family's registry if its module is imported already (never imports it)."""
    fam = _family(family)
    module = sys.modules.get(fam.module)
    return vars(module).get(fam.registry) if module is not None else None


def _registered_live(family: str, name: str) -> bool:
    """Whether ``name`` was registered in the live registry (from Python), plugins not looked at."""
    live = _live(family)
    return live is not None and live.registered(name)


def _plugin_names(family: str) -> List[str]:
    group = PLUGIN_GROUPS.get(family)
    return [ep.name.lower() for ep in plugin_entry_points(group)] if group else []


def builtin_names(family: str) -> List[str]:
    """statgan's own members of ``family``."""
    _family(family)
    return sorted(_stored()[family])


def names(family: str) -> List[str]:
    """Every member of ``family``: statgan's own, those registered from Python in this process, and
    the installed plugins' (not loaded)."""
    live = _live(family)
    extra = live.registered_names() if live is not None else []
    return sorted(set(builtin_names(family)) | set(extra) | set(_plugin_names(family)))


def is_builtin(family: str, name: str) -> bool:
    """Whether ``name`` (or an alias) is one of statgan's own members of ``family``."""
    return _builtin_entry(family, name) is not None


def known(family: str, name: str) -> bool:
    """Whether ``name`` (or an alias) is a member of ``family``; installed plugins are looked at only
    when it is not one of statgan's own."""
    return (_builtin_entry(family, name) is not None or _registered_live(family, name)
            or str(name).lower() in _plugin_names(family))


def plugins(family: str) -> Dict[str, PluginOrigin]:
    """The plugin members of ``family`` by name, with the package that declares each (not loaded)."""
    group = PLUGIN_GROUPS.get(family)
    return {ep.name.lower(): origin_of(ep) for ep in plugin_entry_points(group)} if group else {}


def _builtin_entry(family: str, name: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """(canonical name, stored entry) of a builtin member or alias, or None."""
    members = _stored()[family]
    key = str(name).lower()
    for canonical, entry in members.items():
        if key == canonical or key in entry["aliases"]:
            return canonical, entry
    return None


def canonical(family: str, name: str) -> str:
    """The registered name of ``name`` (aliases resolved); a one-line ConfigError if unknown."""
    found = _builtin_entry(family, name)
    if found is not None:
        return found[0]
    if _registered_live(family, name) or str(name).lower() in _plugin_names(family):
        return registry(family).canonical(name)  # loads a plugin: a broken one says why
    raise ConfigError(f"unknown {family} {name!r}; expected one of: {', '.join(names(family))}")


def accepted(family: str, name: str, n_positional: int = 0) -> Optional[List[str]]:
    """Keyword parameters the factory of ``name`` takes after ``n_positional`` positional ones
    (None: it takes ``**kwargs``)."""
    found = _builtin_entry(family, name)
    if found is not None:
        return accepted_from_spec(found[1]["signature"], n_positional)
    return accepted_params(registry(family)[name], n_positional)


def attribute(family: str, name: str, attr: str) -> Any:
    """A class attribute the catalogue keeps (e.g. a regulariser's ``changes_training``)."""
    if attr not in _family(family).attributes:
        raise KeyError(f"the catalogue keeps no {attr!r} for {family}")
    found = _builtin_entry(family, name)
    if found is not None:
        return found[1]["attributes"][attr]
    return _plain(getattr(registry(family)[name], attr))


def _plain(value: Any) -> Any:
    """A class attribute as JSON keeps it (a mapping by its keys, a tuple as a list)."""
    return list(value) if isinstance(value, (dict, tuple)) else value


def snapshot() -> Dict[str, Dict[str, Any]]:
    """The catalogue as the live registries hold it now (statgan's own members; plugins left out)."""
    out: Dict[str, Dict[str, Any]] = {}
    for family, fam in FAMILIES.items():
        reg = registry(family)
        out[family] = {}
        for name in reg.names():
            factory = reg[name]
            if not is_own(factory):  # a plugin's, or registered by a script or a test
                continue
            try:
                signature = [list(p) for p in signature_spec(factory)]
            except (TypeError, ValueError):  # a module (a reproduction) has no signature
                signature = []
            out[family][name] = {
                "aliases": reg.aliases(name),
                "signature": signature,
                "attributes": {a: _plain(getattr(factory, a)) for a in fam.attributes},
            }
    return out


def write(path: Path = CATALOG_FILE) -> Path:
    """Write :func:`snapshot` to ``path`` (what ``python -m statgan.catalog`` does after a change
    to a registry)."""
    path.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    print(f"wrote {write()}")
