"""The floor plan (issue #12), checked on the source: the import-linter contracts of pyproject.toml (layers along the
data flow, quant never reaching up, config without torch, no cycle in any package, only the report pipeline drawing
figures), and the rules import-linter does not express — modules of at most 700 lines, no private name imported from
another module, no function-level import of qbench's own modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import qbench

PACKAGE = Path(qbench.__file__).parent
REPO = PACKAGE.parent
MAX_LINES = 700


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_init else parts)
        found[name] = (path, ast.parse(path.read_text()), is_init)
    return found


def _qbench_imports(name: str, tree: ast.Module, is_init: bool):
    """(line, imported module, imported names, inside a function) for every import of a qbench module."""
    package = name if is_init else name.rpartition(".")[0]

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and absolute(child).split(".")[0] == "qbench":
                found.append((child.lineno, absolute(child), [a.name for a in child.names], inner))
            elif isinstance(child, ast.Import):
                found.extend((child.lineno, a.name, [], inner) for a in child.names if a.name.split(".")[0] == "qbench")
            visit(child, inner)

    visit(tree, False)
    return found


MODULES = _modules()


def test_import_linter_contracts_hold():
    linter = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([linter, "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "broken" not in proc.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_at_most_700_lines(name):
    path = MODULES[name][0]
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path} has more than {MAX_LINES} lines: split it"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_crosses_a_module_and_no_function_level_import(name):
    _, tree, is_init = MODULES[name]
    for line, module, names, in_function in _qbench_imports(name, tree, is_init):
        assert not in_function, f"{name}:{line}: function-level import of {module}; import it at the top"
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{name}:{line}: imports private {private} from {module}; make it public there"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_attribute_of_an_imported_module(name):
    """``from . import gaussian as T`` then ``T._loss`` is a private name crossing modules all the same."""
    _, tree, is_init = MODULES[name]
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("qbench")):
            aliases |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("qbench")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            assert not node.attr.startswith("_") or node.attr.startswith("__"), f"{name}: {node.value.id}.{node.attr}"


@pytest.mark.parametrize("name", sorted(n for n, (p, _, _) in MODULES.items() if p.name != "__main__.py"))
def test_every_module_declares_its_public_names(name):
    _, tree, _ = MODULES[name]
    assigned = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    assert "__all__" in assigned, f"{name} has no __all__"
