"""A tiny name -> factory registry shared by every family (datasets, networks, objectives, metrics).

Why not an if/else chain: new members register themselves where they are defined, the CLI lists the
names for error messages, and construction validates keyword arguments against the factory's
signature so that ``objective.alpha=0.5`` on an objective without ``alpha`` is a clear error.

In a registry of *named classes* (objectives, regularisers) a member declares ``name = "wgan"`` in
its own class body and registers without repeating it, ``@OBJECTIVES.register(aliases=(...))`` (or
is registered as ``register("name")(cls)``, which declares the name on the class): every instance
carries its canonical name from construction on, whichever alias built it.

Plugins: a registry given an entry-point ``group`` (``statgan.datasets``, ``statgan.nets``,
``statgan.objectives``, ``statgan.regularizers``) also holds the members that installed packages
declare there, loaded the first time a name is looked up or listed. An entry point's name is the
member's name; its value is either the factory itself (registered under that name) or a module whose
import registers the name with the decorators above (the only way for a network, which registers a
generator and a discriminator). :meth:`Registry.origin` says which package a member came from, so a
run can record it and a later command can name the package that is missing.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

from .errors import ConfigError
from .runtime.validation import did_you_mean

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")


#: the entry-point groups installed packages register plugins under, by registry family
PLUGIN_GROUPS = {
    "dataset": "statgan.datasets",
    "generator": "statgan.nets",
    "discriminator": "statgan.nets",
    "objective": "statgan.objectives",
    "regularizer": "statgan.regularizers",
}


#: the registries that take plugins (forget_plugins makes each look again)
_PLUGGABLE: List["Registry"] = []


@dataclass(frozen=True)
class PluginOrigin:
    """Where a plugin member came from: its entry point and the installed package declaring it."""

    group: str
    name: str
    value: str  # "module:attr" as the package declares it
    package: Optional[str]
    version: Optional[str]

    def to_dict(self) -> Dict[str, Optional[str]]:
        return {"group": self.group, "name": self.name, "value": self.value, "package": self.package,
                "version": self.version}

    @property
    def install_hint(self) -> str:
        return f"pip install {self.package}" if self.package else f"install the package that provides {self.value}"


def plugin_entry_points(group: str) -> List["EntryPoint"]:
    """The entry points installed packages declare in ``group`` (none loaded), sorted by name."""
    return [ep for ep in _all_plugin_entry_points() if ep.group == group]


@lru_cache(maxsize=1)
def _all_plugin_entry_points() -> Tuple["EntryPoint", ...]:
    """Every statgan entry point installed, read once per process: reading the metadata of every
    installed distribution costs 0.1-0.4 s, so it happens only when a name is not statgan's own (or
    a command lists the plugins). :func:`forget_plugins` makes the next call read them again."""
    # importlib.metadata (~0.1 s to import) only here: most commands never look for plugins
    import importlib.metadata as metadata

    groups = set(PLUGIN_GROUPS.values())
    found: Dict[Tuple[str, str], "EntryPoint"] = {}
    # one pass over the distributions (entry_points(group=...) would make one per group); the first
    # of two installs of one package on sys.path wins, as for the import system
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group in groups:
                found.setdefault((ep.group, ep.name.lower()), ep)
    return tuple(found[k] for k in sorted(found))


def forget_plugins() -> None:
    """Read the installed entry points again at the next lookup (after installing a plugin in a
    running process, or in tests)."""
    _all_plugin_entry_points.cache_clear()
    for registry in _PLUGGABLE:
        registry._plugins_loaded = False
        registry._broken.clear()


def origin_of(ep: "EntryPoint") -> PluginOrigin:
    dist = ep.dist
    return PluginOrigin(ep.group, ep.name, ep.value, dist.name if dist else None, dist.version if dist else None)


class Registry:
    """Maps names (and aliases) to factories (classes or functions)."""

    def __init__(self, family: str, *, named_classes: bool = False, group: Optional[str] = None) -> None:
        self.family = family
        #: members are classes that declare their registered name in their own body
        self.named_classes = named_classes
        #: entry-point group of this family's plugins (None: no plugins)
        self.group = group
        self._items: Dict[str, Callable[..., Any]] = {}
        self._aliases: Dict[str, str] = {}
        self._origins: Dict[str, PluginOrigin] = {}
        self._broken: Dict[str, str] = {}  # plugin name -> why it did not load
        self._plugins_loaded = group is None
        if group is not None:
            _PLUGGABLE.append(self)

    def register(self, name: Optional[str] = None, *, aliases: tuple = ()) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("mnist5k", aliases=(...))``, or in a registry of named
        classes ``@REGISTRY.register(aliases=(...))`` on a class that declares ``name``."""

        def deco(obj: T) -> T:
            key = (_class_name(obj, name) if self.named_classes else _required(name)).lower()
            if key in self._items or key in self._aliases:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._items[key] = obj  # type: ignore[assignment]
            for alias in aliases:
                self._aliases[alias.lower()] = key
            return obj

        return deco

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` (resolving aliases); ConfigError if unknown."""
        self.load_plugins()
        key = str(name).lower()
        key = self._aliases.get(key, key)
        if key not in self._items:
            broken = f" (its plugin failed to load: {self._broken[key]})" if key in self._broken else ""
            raise ConfigError(
                f"unknown {self.family} {name!r}{broken}; expected one of: {', '.join(self.names())}"
            )
        return key

    def origin(self, name: str) -> Optional[PluginOrigin]:
        """The plugin ``name`` came from, or None for a member of statgan itself."""
        return self._origins.get(self.canonical(name))

    def load_plugins(self) -> None:
        """Load the entry points of this family's group (once). A plugin that fails to import is
        reported as a warning and left out, so one broken package cannot stop unrelated commands."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # before loading: a plugin's own lookups must not recurse
        assert self.group is not None
        for ep in plugin_entry_points(self.group):
            why = self._load_plugin(ep)
            if why is not None:
                self._broken[ep.name.lower()] = why
                warnings.warn(f"{self.family} plugin {ep.name!r} ({ep.value}) was not loaded: {why}", stacklevel=2)

    def _load_plugin(self, ep: "EntryPoint") -> Optional[str]:
        """Load one entry point; the reason it failed, or None."""
        key = ep.name.lower()
        if key in self._items and is_own(self._items[key]):
            return f"it would replace statgan's own {self.family} {ep.name!r}"
        try:
            obj = ep.load()
        except Exception as exc:  # any import error of third-party code: reported, never fatal
            return f"{type(exc).__name__}: {exc}"
        if key not in self._items:
            if isinstance(obj, ModuleType):
                return f"importing {ep.value} did not register {self.family} {ep.name!r}"
            try:
                self.register(None if self.named_classes else ep.name)(obj)
            except ValueError as exc:
                return str(exc)
            if key not in self._items:  # a named class that declares another name
                return f"{ep.value} registers as {getattr(obj, 'name', '?')!r}, not {ep.name!r}"
        self._origins[key] = origin_of(ep)
        return None

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self._items[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        key = str(name).lower()
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> List[str]:
        self.load_plugins()
        return sorted(self._items)

    def registered(self, name: str) -> bool:
        """Whether ``name`` (or an alias) is registered now, without loading plugins."""
        key = str(name).lower()
        return key in self._items or key in self._aliases

    def registered_names(self) -> List[str]:
        """The names registered now, without loading plugins."""
        return sorted(self._items)

    def aliases(self, name: str) -> List[str]:
        """The aliases of the registered ``name``."""
        key = self.canonical(name)
        return sorted(a for a, k in self._aliases.items() if k == key)

    def build(self, name: str, /, *args: Any, **params: Any) -> Any:
        """Construct ``name`` with ``params``, rejecting unknown or invalid parameters in one line."""
        factory = self[name]
        check_params(factory, params, f"{self.family} {self.canonical(name)!r}", n_positional=len(args))
        try:
            return factory(*args, **params)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.family} {self.canonical(name)!r}: {exc}") from exc


def is_own(obj: Any) -> bool:
    """Whether a member is defined inside statgan itself (not by a plugin)."""
    where = obj.__name__ if isinstance(obj, ModuleType) else getattr(obj, "__module__", "")
    return str(where).split(".")[0] == "statgan"


def _required(name: Optional[str]) -> str:
    if name is None:
        raise ValueError("register() needs a name in a registry of factories")
    return name


def _class_name(cls: Any, name: Optional[str]) -> str:
    """The name of a class in a registry of named classes: the one its own body declares (``name``,
    if also given, must agree), else ``name``, which is then declared on the class — before any
    instance exists, so every instance carries it from construction (never its parent's)."""
    if not isinstance(cls, type):
        raise ValueError(f"{cls!r} is not a class; this registry holds classes that carry their name")
    own = vars(cls).get("name")
    if name is None:
        if not isinstance(own, str):
            raise ValueError(f"{cls.__name__} must declare its registered name in its class body (name = ...)")
        return own
    if own is not None and own != name:
        raise ValueError(f"{cls.__name__} declares name {own!r} but is registered as {name!r}")
    cls.name = name
    return name


#: a factory's parameters as (name, kind) pairs, kind one of inspect.Parameter's kind names
SignatureSpec = List[Tuple[str, str]]


def signature_spec(factory: Callable[..., Any]) -> SignatureSpec:
    """``factory``'s parameters (without ``self``) as plain (name, kind name) pairs: what
    :func:`accepted_params` needs, in a form the light catalogue (:mod:`statgan.catalog`) can store."""
    params = list(inspect.signature(factory).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind.name) for p in params]


def accepted_from_spec(spec: Sequence[Sequence[str]], n_positional: int = 0) -> Optional[List[str]]:
    """Keyword parameters a factory with signature ``spec`` accepts after ``n_positional``
    positional arguments, or None if it takes ``**kwargs``."""
    names: List[str] = []
    for i, (name, kind) in enumerate(spec):
        if kind == "VAR_KEYWORD":
            return None
        if kind == "VAR_POSITIONAL" or i < n_positional:
            continue
        if kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY"):
            names.append(name)
    return names


def accepted_params(factory: Callable[..., Any], n_positional: int = 0) -> Optional[List[str]]:
    """Keyword parameters ``factory`` accepts, or None if it takes ``**kwargs``."""
    return accepted_from_spec(signature_spec(factory), n_positional)


def check_params(factory: Callable[..., Any], params: Dict[str, Any], what: str, n_positional: int = 0) -> None:
    check_param_names(accepted_params(factory, n_positional), params, what)


def check_param_names(allowed: Optional[List[str]], params: Dict[str, Any], what: str) -> None:
    """One line naming the first of ``params`` not in ``allowed`` (None: anything goes)."""
    if allowed is None:
        return
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{what} has no parameter {unknown[0]!r}{did_you_mean(unknown[0], allowed)} "
            f"(allowed: {', '.join(allowed) or '(none)'})"
        )
