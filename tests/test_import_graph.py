"""The package's internal import graph (read with ``ast``) has no cycles, and the metric and
statistics leaves import nothing else from recaudit.

Every ``import``/``from ... import`` counts: module level, inside functions (lazy imports) and
under ``if TYPE_CHECKING:``. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg``. A package ``__init__`` importing its own submodules is no edge; a
submodule importing its parent package is one (to the package's ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "recaudit"
LEAVES = ("recaudit.metrics", "recaudit.stats")


def module_files(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every .py file under the package directory ``root``."""
    mods = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = f
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The deepest module of the package that ``name`` lies in (None outside the package)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imported_names(module: str, is_package: bool, node: ast.Import | ast.ImportFrom,
                   mods: dict[str, Path]) -> list[str]:
    """Absolute dotted names one import statement of ``module`` refers to."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        keep = len(base) - node.level + (1 if is_package else 0)
        if keep <= 0:
            raise ValueError(f"{module}: relative import beyond the top-level package")
        prefix = ".".join(base[:keep] + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{prefix}.{alias.name}"
        out.append(sub if sub in mods else prefix)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module under ``root``."""
    mods = module_files(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in imported_names(mod, is_package, node, mods):
                target = _owner(name, mods)
                if target is None or target == mod:
                    continue
                if is_package and target.startswith(mod + "."):
                    continue  # a package's __init__ importing its own submodules
                graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return sorted(found)


def _describe(comp: list[str], graph: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]
    return " <-> ".join(comp) + " (" + "; ".join(edges) + ")"


# -- the checks -------------------------------------------------------------------------------
def test_package_import_graph_has_no_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(c, graph) for c in found)


def test_metrics_and_stats_import_nothing_else_from_recaudit():
    graph = import_graph()
    bad = []
    for mod, deps in sorted(graph.items()):
        if mod == "recaudit.stats":
            bad += [f"{mod} -> {d}" for d in sorted(deps)]
        elif mod == "recaudit.metrics" or mod.startswith("recaudit.metrics."):
            bad += [f"{mod} -> {d}" for d in sorted(deps)
                    if not (d == "recaudit.metrics" or d.startswith("recaudit.metrics."))]
    assert not bad, "leaf modules import the rest of recaudit:\n" + "\n".join(bad)


# -- the graph builder itself -------------------------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_graph_builder_resolves_every_import_form(tmp_path):
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "from .a import A\nfrom . import sub\n",
        "pkg/a.py": "from __future__ import annotations\nimport os\nfrom . import b\n"
                    "from .sub import thing\n"
                    "def f():\n    import pkg.sub.deep\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n",
        "pkg/c.py": "from pkg import a\n",
        "pkg/sub/__init__.py": "thing = 1\nfrom .deep import D\n",
        "pkg/sub/deep.py": "from .. import VERSION\nfrom ..b import name\n",
    })
    graph = import_graph(pkg)
    assert graph == {
        "pkg": set(),                                   # its own submodules are no edge
        "pkg.a": {"pkg.b", "pkg.sub", "pkg.sub.deep"},  # lazy import counts; os is outside
        "pkg.b": {"pkg.c"},                             # TYPE_CHECKING import counts
        "pkg.c": {"pkg.a"},
        "pkg.sub": set(),
        "pkg.sub.deep": {"pkg", "pkg.b"},               # importing the parent package counts
    }
    # a -> b -> c -> a, and a -> sub.deep -> b
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.sub.deep"]]


def test_cycle_through_a_parent_package_is_found(tmp_path):
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "from .x import helper\n",
        "pkg/x.py": "def helper():\n    from .y import Y\n",
        "pkg/y.py": "from . import helper\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.y"] == {"pkg"}
    assert cycles(graph) == []  # pkg -> pkg.x is its own submodule: no edge
    (pkg / "z.py").write_text("from .y import Y\n", encoding="utf-8")
    (pkg / "y.py").write_text("from . import helper\nfrom .z import Z\n", encoding="utf-8")
    assert cycles(import_graph(pkg)) == [["pkg.y", "pkg.z"]]
