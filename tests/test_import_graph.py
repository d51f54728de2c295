"""Fast tier: the generated package's modules import one another without a cycle.

The graph is built from the source with ``ast``, as import-linter (grimp) builds it: one
node per module of the package (a package is its ``__init__``), one edge per import of
another of its modules, wherever the import is written (inside a function too: it runs
when the function does).  Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import DEFAULT_PACKAGE, render

ALL_OPTIONS = {"database": "postgresql", "cache": "redis", "broker": "nats", "auth": "oidc"}


def module_name(package_dir: Path, path: Path) -> str:
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the imports of ``module`` (outside ``if TYPE_CHECKING:``) name."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if is_type_checking_block(node):
            for child in getattr(node, "orelse", []):  # the ``else:`` of ``if TYPE_CHECKING`` runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # ``from x import y``: the module x.y when there is one, else x (y is a name in it).
            found.update(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return (found & modules) - {module}


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Each module of the package → the package's modules it imports."""
    sources = {module_name(package_dir, path): path for path in package_dir.rglob("*.py")}
    return {
        module: imported_modules(
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), module, path.name == "__init__.py", set(sources)
        )
        for module, path in sources.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (its modules in import order, the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path:
                return [*path[path.index(target):], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (cycle := visit(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    """So that a passing check below means something."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_counts_imports_in_functions_and_not_type_checking_ones(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .. import b\n")
    (package / "sub" / "c.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
        "def f():\n    from .sub import c\n"
    )
    (package / "b.py").write_text("import pkg.a\n")
    assert import_graph(package) == {
        "pkg": set(), "pkg.sub": {"pkg.b"}, "pkg.sub.c": set(), "pkg.a": {"pkg.sub.c"}, "pkg.b": {"pkg.a"},
    }


@pytest.mark.parametrize("answers", [{}, ALL_OPTIONS], ids=["defaults", "all-options"])
def test_the_package_has_no_import_cycle(tmp_path: Path, answers: dict[str, str]) -> None:
    result = render(tmp_path, answers)
    assert result.returncode == 0, result.stderr
    graph = import_graph(result.project() / "src" / DEFAULT_PACKAGE)
    assert len(graph) > 20, "the package's modules are found"
    assert any(graph.values()), "their imports are found"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])
