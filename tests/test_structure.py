"""The package's shape: imports flow one way (no cycles), no statgan module is imported inside a
function, lazily imported third-party modules are only the heavy ones and say so, and everything
after training reads runs without the trainer."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "statgan"

#: third-party modules that may be imported inside a function, to keep them off the start-up path
#: (seconds to import, or optional extras); each such import must carry a comment saying why
LAZY_ALLOWED = ("torchvision", "scipy", "matplotlib", "torch_fidelity", "torch.utils.tensorboard", "torch.distributed",
                "tensorboard", "importlib.metadata")

#: the command-line layer: each command imports the library it drives when it runs (torch takes 2-5 s
#: to import, and ``statgan --help``, ``list``, ``config`` and a config error answer within 1 s); a
#: block of such imports carries a comment saying so
CLI = f"{PKG}/cli/"


def _commented_block(lines: List[str], lineno: int) -> bool:
    """Whether the contiguous block of import lines holding ``lineno`` (1-based), or the line just
    above it, carries a comment."""
    def in_block(line: str) -> bool:  # isort separates groups with blank lines
        return not line.strip() or line.strip().startswith(("import ", "from "))

    i = lineno - 1
    while i > 0 and in_block(lines[i - 1]):
        i -= 1
    j = lineno - 1
    while j + 1 < len(lines) and in_block(lines[j + 1]):
        j += 1
    block = lines[max(0, i - 1): j + 1]
    return any("#" in line for line in block)


def _modules() -> Dict[str, Tuple[Path, bool]]:
    mods = {}
    for f in (SRC / PKG).rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mods[".".join(parts)] = (f, is_pkg)
    return mods


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module a dotted import target lands in (``statgan.a.b.func`` -> ``statgan.a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> List[Tuple[ast.stmt, List[str], bool]]:
    """(node, absolute targets, inside a function) for every import statement of ``module``."""
    path, is_pkg = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = module if is_pkg else module.rpartition(".")[0]
    in_func = {id(x) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
               for x in ast.walk(fn)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                prefix = ".".join(parts + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        else:
            continue
        out.append((node, targets, id(node) in in_func))
    return out


def _graph() -> Dict[str, Set[str]]:
    edges: Dict[str, Set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for _, targets, _ in _imports(m):
            for t in targets:
                if t == PKG or t.startswith(PKG + "."):
                    r = _resolve(t)
                    # a package's own submodules importing it (``from . import x``) are not an edge back
                    if r and r != m and not m.startswith(r + "."):
                        edges[m].add(r)
    return edges


def _cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _closure(start: str, edges: Dict[str, Set[str]]) -> Set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(edges[m])
    return seen


def test_the_graph_finds_a_planted_cycle():
    # the detector itself: a -> b -> c -> a is found, a DAG is not
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (imports must flow downward): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_statgan_imports_inside_functions_and_lazy_third_party_imports_say_why():
    bad = []
    for m, (path, _) in sorted(MODULES.items()):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, targets, inside in _imports(m):
            if not inside:
                continue
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            if str(path.relative_to(SRC)).startswith(CLI):
                if not _commented_block(lines, node.lineno):
                    bad.append(f"{where}: a command's import of {targets[-1]} without a comment saying why it is late")
                continue
            if any(t == PKG or t.startswith(PKG + ".") for t in targets):
                bad.append(f"{where}: statgan module imported inside a function ({targets[-1]})")
                continue
            root = targets[-1] if isinstance(node, ast.ImportFrom) else targets[0]
            if not any(root == a or root.startswith(a + ".") for a in LAZY_ALLOWED):
                bad.append(f"{where}: {root} imported inside a function (not a heavy optional dependency)")
                continue
            # the comment may sit on the line, or above it within the same few lines (a block of lazy imports)
            here, above = lines[node.lineno - 1], lines[max(0, node.lineno - 5): node.lineno - 1]
            if "#" not in here and not any("#" in a for a in above):
                bad.append(f"{where}: lazy import of {root} without a comment saying why")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("reader", ["statgan.metrics.evaluate", "statgan.audit", "statgan.rundir.run"])
def test_what_reads_runs_does_not_import_the_trainer(reader):
    edges = _graph()
    reached = {m for m in _closure(_resolve(reader), edges) if m == "statgan.train" or m.startswith("statgan.train.")}
    assert not reached, f"{reader} imports training code: {sorted(reached)}"
