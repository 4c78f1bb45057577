"""The tree is the architecture: a small package root, no import cycles, and dependencies that flow
one way (front ends -> the library API -> core modules). Read from the source with ast, so a cycle
hidden in a function body counts as much as one at module level."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("guard", "generator")
FRONT_ENDS = ("guard.cli", "guard.server", "guard.scan", "guard.integrations", "generator")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str, path: Path) -> set[str]:
    """Every guard or generator module this one imports, anywhere in its body (not under
    `if TYPE_CHECKING:`). `from pkg import name` counts as pkg.name when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            strong(v)
    return out


def test_the_package_root_holds_only_the_shared_modules():
    root = sorted(p.name for p in (ROOT / "guard").glob("*.py"))
    assert len(root) <= 10, root


def test_no_import_cycles_at_module_or_function_level():
    assert _cycles() == []


def test_core_modules_never_import_a_front_end():
    """cli, server, scan, integrations and generator sit on top of the library; nothing under
    them imports them back."""
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if not module.startswith(FRONT_ENDS) and module != "guard.__main__"  # `python -m guard`
        for target in targets
        if target.startswith(FRONT_ENDS)
    }
    assert wrong == set()


def test_the_cycle_check_sees_a_cycle_in_a_function_body(tmp_path, monkeypatch):
    """The checks above would pass on a checker that found nothing: make sure this one finds."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from guard import config\n", encoding="utf-8")
    assert "guard.config" in _imports("guard.media.imageio", a)
    monkeypatch.setitem(GRAPH, "guard.config", {*GRAPH["guard.config"], "guard.errors"})
    monkeypatch.setitem(GRAPH, "guard.errors", {*GRAPH["guard.errors"], "guard.config"})
    assert ["guard.config", "guard.errors"] in _cycles()


def test_the_paths_from_before_the_split_still_import_the_same_modules(monkeypatch):
    import importlib
    import sys
    import warnings

    import guard
    from guard._moved import MOVED

    assert guard.Ledger is importlib.import_module("guard.ledger").Ledger
    assert guard.Identity is importlib.import_module("guard.identity").Identity
    for old, new in MOVED.items():
        monkeypatch.delitem(sys.modules, old, raising=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        assert module is importlib.import_module(new), old
        assert [w.category for w in caught] == [DeprecationWarning], old
