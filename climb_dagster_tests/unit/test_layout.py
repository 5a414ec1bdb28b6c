"""The package map of `climb_dagster.core` holds (issue 25): no import cycles between modules, each core
package imports only the packages its `__init__` allows, no Dagster in core, and a function-local import of
our own code only where that module pulls in a heavy optional library at import time."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "climb_dagster"
ROOT = PACKAGE.parent

# The layering of core (core/__init__.py): a package may import itself and the packages listed here.
ALLOWED = {
    "common": set(),
    "io": {"common"},
    "embedding": {"common", "io"},
    "quality": {"common", "io"},
    "clustering": {"common", "io", "embedding", "quality"},
    "search": {"common", "io"},
    "proxy": {"common", "io", "search"},
    "targets": {"common", "io", "proxy"},
    "reuse": {"common", "proxy", "search"},
    "experiment": {"common", "io", "search", "proxy", "targets", "reuse"},
    "export": {"common", "io", "search"},
    "report": {"common"},
}
# Libraries slow to import or absent on some machines (the bare GPU node has no dagster, faiss, lightgbm...):
# importing one of our modules that imports these at module level is what a function-local import defers.
HEAVY = {
    "torch", "transformers", "tokenizers", "faiss", "lightgbm", "onnxruntime", "onnx", "mlflow", "matplotlib",
    "lm_eval", "fasttext", "sentence_transformers", "dagster", "dagster_k8s", "dagster_aws", "dagster_mlflow",
    "polars", "sklearn", "scipy", "boto3", "s3fs", "psutil", "selenium", "moto", "pyarrow",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The module of ours that `name` (a module or a name inside one) refers to."""
    mods = _modules()
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


@cache
def _imports(module: str) -> tuple[tuple[str, bool, int], ...]:
    """(imported name, at module level, line) for every import in the module, TYPE_CHECKING blocks skipped."""
    tree = ast.parse(_modules()[module].read_text())
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, top, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.extend((f"{child.module}.{a.name}", top, child.lineno) for a in child.names)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
            else:
                visit(child, top)

    visit(tree, True)
    return tuple(out)


def _edges(module: str, top_only: bool = False) -> set[str]:
    edges = set()
    for name, top, _ in _imports(module):
        if top_only and not top:
            continue
        target = _resolve(name)
        if target and target != module:
            edges.add(target)
    return edges


@cache
def _heavy(module: str) -> bool:
    """Whether importing `module` imports a heavy library (directly or through our modules, module level)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for name, top, _ in _imports(m):
            if top and name.split(".")[0] in HEAVY:
                return True
        todo.extend(_edges(m, top_only=True))
        # importing a.b.c runs a/__init__ and a/b/__init__
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in _modules())
    return False


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every import, local ones too."""
    graph = {m: _edges(m) for m in _modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
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
                found.append(sorted(comp))

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                strong(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_no_import_cycles():
    assert _cycles() == []


def test_core_packages_import_only_what_their_layer_allows():
    core = "climb_dagster.core."
    bad = []
    for module in _modules():
        if not module.startswith(core):
            continue
        pkg = module[len(core):].split(".")[0]
        if pkg not in ALLOWED:
            assert module == "climb_dagster.core", f"core module {module} is outside every stage package"
            continue
        for target in _edges(module):
            if not target.startswith(core):
                assert not target.startswith("climb_dagster."), f"{module} imports {target} (outside core)"
                continue
            other = target[len(core):].split(".")[0]
            if other != pkg and other not in ALLOWED[pkg]:
                bad.append(f"{module} -> {target}")
    assert bad == []


def test_core_never_imports_dagster():
    core = [m for m in _modules() if m.startswith("climb_dagster.core")]
    bad = [(m, n) for m in core for n, _, _ in _imports(m) if n.split(".")[0].startswith("dagster")]
    assert bad == []


def test_every_package_init_says_what_it_may_import():
    core = PACKAGE / "core"
    for pkg in ALLOWED:
        doc = ast.get_docstring(ast.parse((core / pkg / "__init__.py").read_text())) or ""
        assert "May import:" in doc, f"core/{pkg}/__init__.py does not say what it may import"


def test_local_imports_of_our_modules_defer_something_heavy():
    """An import of our own module inside a function is only there to defer a heavy library."""
    light = []
    for module in _modules():
        for name, top, line in _imports(module):
            target = _resolve(name) if name.startswith("climb_dagster") else None
            if target and not top and not _heavy(target):
                light.append(f"{_modules()[module].relative_to(ROOT)}:{line} imports {target}")
    assert light == []


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_layer_table_matches_core_init(pkg: str):
    doc = ast.get_docstring(ast.parse((PACKAGE / "core" / pkg / "__init__.py").read_text())) or ""
    line = next(ln for ln in doc.splitlines() if ln.startswith("May import:"))
    said = re.sub(r"\([^)]*\)", "", line.removeprefix("May import:")).split(".")[0]
    named = {w.strip() for w in said.split(",")} - {"", "nothing else of climb_dagster"}
    assert named == ALLOWED[pkg], f"core/{pkg}/__init__.py says {sorted(named)}, the test allows {sorted(ALLOWED[pkg])}"
