"""The layering rules of issue #12 for qbench/theory/, read off the source: theory imports only qbench's lower layers
(never report, tune, bench or the CLI, its siblings and callers), its modules import in one order (no cycle), no private
name crosses a module, no function-level import of qbench's own modules, no module over 700 lines, and every module
has ``__all__``."""

from __future__ import annotations

import ast
from pathlib import Path

import qbench.theory

PACKAGE = Path(qbench.theory.__file__).parent
MODULES = {p.stem: ast.parse(p.read_text()) for p in sorted(PACKAGE.glob("*.py"))}


def _qbench_imports(tree: ast.Module) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """(import node, inside a function) for every import of a qbench module."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and (child.level or (child.module or "").startswith("qbench")):
                found.append((child, inner))
            elif isinstance(child, ast.Import) and any(a.name.startswith("qbench") for a in child.names):
                found.append((child, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def _target(node: ast.ImportFrom | ast.Import) -> tuple[str, str]:
    """(qbench package, module inside theory or ''): ``..config`` → ('config', ''), ``.gaussian`` → ('theory',
    'gaussian')."""
    if isinstance(node, ast.Import):
        parts = node.names[0].name.split(".")
    elif node.level == 0:
        parts = (node.module or "").split(".")
    else:
        parts = ["qbench"] + (["theory"] if node.level == 1 else []) + (node.module or "").split(".")
    parts = [p for p in parts if p]
    package = parts[1] if len(parts) > 1 else ""
    inner = parts[2] if package == "theory" and len(parts) > 2 else ""
    return package, inner


def test_modules_are_at_most_700_lines_and_declare_all():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 700, path.name
        assert "__all__" in path.read_text(), path.name


def test_imports_point_down_with_no_private_names_and_none_inside_functions():
    for name, tree in MODULES.items():
        for node, in_function in _qbench_imports(tree):
            package, _ = _target(node)
            assert not in_function, f"{name}: function-level import of {ast.unparse(node)}"
            assert package not in ("report", "tune", "bench", "cli"), f"{name}: {ast.unparse(node)}"
            names = [a.name for a in node.names]
            assert not [n for n in names if n.startswith("_") and n != "__version__"], f"{name}: {ast.unparse(node)}"


def test_no_private_attribute_of_an_imported_module():
    # ``from . import gaussian as T`` then ``T._loss``: a private name crossing modules all the same.
    for name, tree in MODULES.items():
        aliases = {a.asname or a.name.split(".")[-1] for node, _ in _qbench_imports(tree) for a in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                assert not node.attr.startswith("_"), f"{name}: {node.value.id}.{node.attr}"


# The package's own order (qbench/theory/__init__.py): each module imports only modules before it, so no cycle.
ORDER = ("__init__", "quadrature", "gaussian", "recurrence", "suite")


def test_modules_import_only_modules_before_them():
    assert set(MODULES) == set(ORDER), "a new module: place it in ORDER and in the package docstring"
    for name, tree in MODULES.items():
        for node, _ in _qbench_imports(tree):
            inner = _target(node)[1]
            assert not inner or ORDER.index(inner) < ORDER.index(name), f"{name} imports {inner}"
