"""A tiny name -> factory registry shared by every family (datasets, networks, objectives, metrics).

Why not an if/else chain: new members register themselves where they are defined, the CLI lists the
names for error messages, and construction validates keyword arguments against the factory's
signature so that ``objective.alpha=0.5`` on an objective without ``alpha`` is a clear error.

In a registry of *named classes* (objectives, regularisers) a member declares ``name = "wgan"`` in
its own class body and registers without repeating it, ``@OBJECTIVES.register(aliases=(...))`` (or
is registered as ``register("name")(cls)``, which declares the name on the class): every instance
carries its canonical name from construction on, whichever alias built it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

from .errors import ConfigError
from .runtime.validation import did_you_mean

T = TypeVar("T")


class Registry:
    """Maps names (and aliases) to factories (classes or functions)."""

    def __init__(self, family: str, *, named_classes: bool = False) -> None:
        self.family = family
        #: members are classes that declare their registered name in their own body
        self.named_classes = named_classes
        self._items: Dict[str, Callable[..., Any]] = {}
        self._aliases: Dict[str, str] = {}

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
        key = str(name).lower()
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise ConfigError(
                f"unknown {self.family} {name!r}; expected one of: {', '.join(self.names())}"
            )
        return key

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self._items[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        key = str(name).lower()
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> List[str]:
        return sorted(self._items)

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


def accepted_params(factory: Callable[..., Any], n_positional: int = 0) -> Optional[List[str]]:
    """Keyword parameters ``factory`` accepts, or None if it takes ``**kwargs``."""
    sig = inspect.signature(factory)
    names: List[str] = []
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    for i, p in enumerate(params):
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind is inspect.Parameter.VAR_POSITIONAL or i < n_positional:
            continue
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.append(p.name)
    return names


def check_params(factory: Callable[..., Any], params: Dict[str, Any], what: str, n_positional: int = 0) -> None:
    allowed = accepted_params(factory, n_positional)
    if allowed is None:
        return
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{what} has no parameter {unknown[0]!r}{did_you_mean(unknown[0], allowed)} "
            f"(allowed: {', '.join(allowed) or '(none)'})"
        )
