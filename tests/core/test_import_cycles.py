"""No import cycles between steerlab's modules, type-only imports included.

How the module graph is built (by reading the source with ``ast``, nothing is imported):

- a node is a module: ``steerlab/x/y.py`` is ``steerlab.x.y``; a package's ``__init__.py`` is the
  package itself (``steerlab.x``).
- every ``import steerlab.a.b`` and ``from steerlab.a import b`` anywhere in a module is an edge,
  wherever it stands: at the top, inside ``if TYPE_CHECKING:``, inside a function (a lazy import
  is still a dependency; hiding a cycle in a function does not remove it). Relative imports are
  resolved against the importing module.
- ``from steerlab.pkg import name`` points to the submodule ``steerlab.pkg.name`` when ``name`` is
  a submodule, else to ``steerlab.pkg`` (its ``__init__``), where the name is defined or re-exported.
- a package's ``__init__`` importing its own submodules is the package being assembled, not a
  dependency worth a cycle: edges from a package to modules inside it are left out. A module that
  imports its own package's ``__init__`` (``from steerlab.pkg import X`` inside ``steerlab.pkg.y``)
  keeps its edge, so a cycle through a re-exporting ``__init__`` is still reported when it closes
  through modules proper.

A cycle is a strongly connected component of more than one module, or a module importing itself.
The test covers the whole package (the study folders included).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "steerlab").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest module prefix of a dotted name (``steerlab.a.b.Thing`` → ``steerlab.a.b``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in modules:
            return cand
    return None


def _imports(mod: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("steerlab"):
                    target = _resolve(a.name, modules)
                    if target:
                        out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                pkg = ".".join(base + ([node.module] if node.module else []))
            else:
                pkg = node.module or ""
            if not pkg.startswith("steerlab"):
                continue
            for a in node.names:
                sub = f"{pkg}.{a.name}"
                target = sub if sub in modules else _resolve(pkg, modules)
                if target:
                    out.add(target)
    if is_pkg:  # a package assembling itself from its submodules (see the module docstring)
        out = {t for t in out if not t.startswith(mod + ".")}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in graph.get(v, ()):
                    found.append(sorted(comp))
    return sorted(found)


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_the_cycle_finder_finds_cycles_and_self_loops():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_steerlab_modules():
    graph = import_graph()
    assert len(graph) > 50 and "steerlab.experiments.engine.run" in graph
    cycles = _cycles(graph)
    assert not cycles, "import cycles (strongly connected modules):\n" + "\n".join(" ↔ ".join(c) for c in cycles)
