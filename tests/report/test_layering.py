"""The layering rules of issue #12 for qbench/report/, read off the source: imports point down the data flow (no
cycle, only the pipeline imports the plots), no private name crosses a module, no function-level import of qbench's own
modules, no module over 700 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import qbench.report

PACKAGE = Path(qbench.report.__file__).parent
MODULES = {p.stem: ast.parse(p.read_text()) for p in sorted(PACKAGE.glob("*.py"))}


def _report_imports(tree: ast.Module) -> list[tuple[str, list[str], bool]]:
    """(imported module, names, inside a function) for every import of a qbench module."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and (child.level or (child.module or "").startswith("qbench")):
                module = "." * child.level + (child.module or "")
                found.append((module, [alias.name for alias in child.names], inner))
            elif isinstance(child, ast.Import):
                found.extend((a.name, [], inner) for a in child.names if a.name.startswith("qbench"))
            visit(child, inner)

    visit(tree, False)
    return found


def test_modules_are_at_most_700_lines():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 700, path.name


def test_no_private_names_and_no_function_level_imports_of_qbench_modules():
    for name, tree in MODULES.items():
        for module, names, in_function in _report_imports(tree):
            assert not in_function, f"{name}: function-level import of {module}"
            assert not [n for n in names if n.startswith("_") and n != "__version__"], f"{name}: {module} {names}"


def test_imports_inside_the_package_form_no_cycle_and_only_the_pipeline_imports_plots():
    edges = {}
    for name, tree in MODULES.items():
        edges[name] = {module[1:] for module, _, _ in _report_imports(tree)
                       if module.startswith(".") and not module.startswith("..") and module != "."}
    assert {name for name, targets in edges.items() if "plots" in targets} == {"pipeline"}
    # The package __init__ and the compatibility alias import from the package itself ("."), nothing imports them.
    visiting, done = set(), set()

    def walk(node: str, path: list[str]) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join(path + [node])}"
        if node in done:
            return
        visiting.add(node)
        for target in edges.get(node, ()):
            walk(target, path + [node])
        visiting.discard(node)
        done.add(node)

    for name in edges:
        walk(name, [])


def test_no_import_of_a_sibling_layer():
    """report, tune, bench and theory are siblings (issue #12): report draws the theory figures from records."""
    for name, tree in MODULES.items():
        for module, _, _ in _report_imports(tree):
            if module.startswith("qbench."):
                package = module.split(".")[1]
            elif module.startswith(".."):
                package = module[2:].split(".")[0]
            else:
                continue  # report's own modules
            assert package not in ("theory", "tune", "bench", "cli"), f"{name} imports {module}"
