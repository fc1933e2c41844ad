"""The house rules that keep the layout easy to read, checked on the code itself (no broker, no database).

- no module over about 400 lines, unless it is one cohesive table or mapping (listed below, with why);
- no function defined inside a function longer than 40 lines (a closure that long wants a name of its own);
- no import of another module's private (underscore) name, and no ``module._name`` reach-through;
- no import cycle between modules;
- the import contracts in ``.importlinter`` hold (layers, a pure ``consent``, ``connectors`` on the core only).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "connectors", "consent")
MAX_LINES = 400
#: modules allowed past MAX_LINES: one cohesive table or mapping each
LONG_ALLOWED = {
    "hub/db/schema.py": "every table of the hub's database, declared in one place",
}
MAX_NESTED = 40


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if "migrations" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_no_module_is_too_long() -> None:
    long = {_rel(p): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES and _rel(p) not in LONG_ALLOWED}
    assert not long, f"split these along a real seam (or list them as one cohesive table): {long}"


def _nested_functions(tree: ast.AST) -> list[tuple[str, int, int]]:
    found = []
    for outer in ast.walk(tree):
        if not isinstance(outer, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(outer):
            if inner is outer or not isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (inner.end_lineno or inner.lineno) - inner.lineno + 1
            if length > MAX_NESTED:
                found.append((f"{outer.name}.{inner.name}", inner.lineno, length))
    return found


def test_no_long_function_inside_a_function() -> None:
    bad = {_rel(p): found for p in _modules() if (found := _nested_functions(ast.parse(p.read_text())))}
    assert not bad, f"give these closures a name of their own: {bad}"


def _project_module(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] in PACKAGES  # type: ignore[union-attr]


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    imported_modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _project_module(node.module):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                else:
                    imported_modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _project_module(alias.name):
                    imported_modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in imported_modules):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module() -> None:
    bad = {_rel(p): found for p in _modules() if (found := _private_uses(p))}
    assert not bad, f"give these a public name in the module that owns them: {bad}"


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle() -> None:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m)
                 if i.split(".")[0] in PACKAGES and not m.startswith(i + ".")}
             for m in graph.modules}
    # (a module importing its own package's __init__ is left out above: that is how packages re-export)
    cycles = _cycles(edges)
    assert not cycles, f"break these import cycles: {cycles}"
