"""What a reproduction is: the :class:`Reproduction` protocol, and a registry that checks every
member against it when it is registered.

``statgan reproduce NAME`` needs a reproduction's name, its budgets, the grid of cells of a budget,
a way to run one cell and a way to write the report from the finished cells' records; a module (or
any object) with those attributes is a reproduction. As torch-fidelity checks a feature extractor
when it is registered, :class:`ReproductionRegistry` checks a reproduction when it is registered --
not when a user's run reaches the missing piece an hour later -- and says in one line which
reproduction lacks what.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Mapping as AbcMapping
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, TypeVar,
                    runtime_checkable)

from ..registry import Registry

if TYPE_CHECKING:
    from .grid import Cell

T = TypeVar("T")

#: budgets every reproduction defines: ``tiny`` for the test suite, ``small`` (the default) for a CPU
#: run whose report is committed, ``full`` for the paper-like setting
REQUIRED_BUDGETS = ("tiny", "small", "full")


class ReproductionError(TypeError):
    """A reproduction does not satisfy :class:`Reproduction` (raised when it is registered)."""


@runtime_checkable
class BudgetSizes(Protocol):
    """What the runner reads from a budget (the rest is the reproduction's own business)."""

    #: torch threads for cells run in the calling process (``--jobs 1``); None leaves torch's setting
    threads: Optional[int]


class Reproduction(Protocol):
    """A paper's experiments as ``statgan reproduce NAME`` runs them (a module satisfies it with
    module-level names)."""

    #: the name ``statgan reproduce`` knows it by
    NAME: str
    #: budget name -> its sizes, at least :data:`REQUIRED_BUDGETS`
    BUDGETS: Mapping[str, BudgetSizes]

    def cells(self, budget: str, seeds: Optional[Sequence[int]] = None) -> List["Cell"]:
        """The grid of ``budget`` (its own seeds unless ``seeds``), in the order the cells run."""
        ...

    def run_cell(self, spec: Dict[str, Any], work_dir: Path) -> Dict[str, Any]:
        """Run one cell in ``work_dir``; its record's ``result``. Worker processes call it, so it
        must pickle (a module-level function)."""
        ...

    def write_report(self, budget: str, cells: Sequence["Cell"], results: Mapping[str, Mapping[str, Any]], path: Path,
                     command: str, wall_s: float, machine: str) -> str:
        """Write the report of ``budget`` to ``path`` from the finished cells' JSON records
        (``results``: key -> record) and return its text."""
        ...


#: the protocol's methods, with the positional arguments the runner passes each
METHODS: Dict[str, int] = {
    name: len(inspect.signature(member).parameters) - 1  # less self
    for name, member in vars(Reproduction).items() if inspect.isfunction(member) and not name.startswith("_")
}


def _name_problems(obj: Any, name: str) -> List[str]:
    own = getattr(obj, "NAME", None)
    if not isinstance(own, str):
        return ["NAME is missing" if own is None else f"NAME is {own!r}, not a string"]
    return [] if own == name else [f"NAME is {own!r} but it is registered as {name!r}"]


def _budget_problems(obj: Any) -> List[str]:
    budgets = getattr(obj, "BUDGETS", None)
    if budgets is None:
        return ["BUDGETS is missing"]
    if not isinstance(budgets, AbcMapping):
        return [f"BUDGETS is a {type(budgets).__name__}, not a mapping of budget names to budgets"]
    out = [f"BUDGETS has no {b!r} budget" for b in REQUIRED_BUDGETS if b not in budgets]
    for key, budget in budgets.items():
        if not isinstance(key, str):
            out.append(f"BUDGETS has a key {key!r} that is not a string")
        elif not isinstance(budget, BudgetSizes):
            out.append(f"BUDGETS[{key!r}] has no 'threads'")
        elif budget.threads is not None and not (isinstance(budget.threads, int) and budget.threads >= 1):
            out.append(f"BUDGETS[{key!r}].threads is {budget.threads!r}, not None or a positive integer")
    return out


def _method_problems(obj: Any, name: str, n_args: int) -> List[str]:
    member = getattr(obj, name, None)
    if member is None:
        return [f"{name} is missing"]
    if not callable(member):
        return [f"{name} is a {type(member).__name__}, not callable"]
    try:
        inspect.signature(member).bind(*range(n_args))
    except TypeError:
        return [f"{name} does not take the {n_args} positional arguments of Reproduction.{name}"]
    except ValueError:  # no signature to read (a builtin): trust it
        pass
    return []


def _picklable_problems(obj: Any) -> List[str]:
    try:
        pickle.dumps(getattr(obj, "run_cell"))
    except Exception:  # noqa: BLE001 (any reason it cannot pickle is the same problem)
        return ["run_cell cannot be pickled (worker processes call it): define it at module level"]
    return []


def protocol_problems(obj: Any, name: str) -> List[str]:
    """Every way ``obj``, registered as ``name``, falls short of :class:`Reproduction` (empty: none)."""
    out = _name_problems(obj, name) + _budget_problems(obj)
    for method, n_args in METHODS.items():
        out += _method_problems(obj, method, n_args)
    if callable(getattr(obj, "run_cell", None)):
        out += _picklable_problems(obj)
    return out


def check_reproduction(obj: Any, name: str) -> None:
    """Raise a one-line :class:`ReproductionError` naming ``name`` and what it lacks, if anything."""
    problems = protocol_problems(obj, name)
    if problems:
        raise ReproductionError(f"reproduction {name!r} does not satisfy the Reproduction protocol: "
                                + "; ".join(problems))


class ReproductionRegistry(Registry):
    """The registry of reproductions: :meth:`register` checks each member against
    :class:`Reproduction` before it is added, and takes the name from the member's ``NAME`` when
    none is given."""

    def register(self, name: Optional[str] = None, *, aliases: tuple = ()) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name if name is not None else getattr(obj, "NAME", None)
            if not isinstance(key, str):
                raise ReproductionError(f"reproduction {obj!r} has no NAME and none was given to register()")
            check_reproduction(obj, key)
            return Registry.register(self, key, aliases=aliases)(obj)

        return deco

    def __getitem__(self, name: str) -> Reproduction:  # type: ignore[override]
        return super().__getitem__(name)  # type: ignore[return-value]


__all__ = ["REQUIRED_BUDGETS", "ReproductionError", "BudgetSizes", "Reproduction", "METHODS", "protocol_problems",
           "check_reproduction", "ReproductionRegistry"]
