"""The package's import graph: no cycles between modules at import time, and none through the
function-local imports that used to work around them (``dng`` <-> ``pretrained``,
``manifolds.so3`` <-> ``testing``)."""

from __future__ import annotations

import ast
from pathlib import Path

import crystalflow

ROOT = Path(crystalflow.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("crystalflow",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, name: str, is_package: bool) -> list[str]:
    """Module names an import statement may refer to (absolute and relative forms)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = name.split(".") if is_package else name.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph(local: bool) -> dict[str, set[str]]:
    """Module -> crystalflow modules it imports (module level; also inside functions if ``local``)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        nodes = ast.walk(tree) if local else (
            n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            for n in ast.walk(top))
        graph[name] = {m for node in nodes if isinstance(node, (ast.Import, ast.ImportFrom))
                       for m in _imported(node, name, path.name == "__init__.py") if m in files and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_at_module_level():
    assert cycles(import_graph(local=False)) == []


def test_task_and_test_helper_modules_are_not_in_a_function_local_cycle():
    tangled = set().union(*cycles(import_graph(local=True)))
    for module in ("crystalflow.crystal_tasks.dng", "crystalflow.pretrained", "crystalflow.crystal_tasks.sgcsp",
                   "crystalflow.manifolds.so3", "crystalflow.testing", "crystalflow.symmetry.orbits"):
        assert module not in tangled, module
