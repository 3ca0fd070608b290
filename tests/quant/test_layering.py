"""qbench.quant sits below the method base class and the registry (issue #12 layering): no module of the package
imports upward, so the surgery takes a Method instance and names are resolved by ``qbench.quantize_model``."""

import ast
from pathlib import Path

import pytest

import qbench.quant

QUANT_FILES = sorted(Path(qbench.quant.__path__[0]).glob("*.py"))
#: the qbench modules quant may import: itself and the layers below it (config > bits > errors)
BELOW_QUANT = {"config", "bits", "errors"}


def _qbench_imports(path: Path):
    """(dotted target relative to the qbench package, line) of every import of a qbench module in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level >= 2:  # from ..x import y
            yield node.module or "", node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("qbench."):
            yield node.module.removeprefix("qbench."), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("qbench."):
                    yield alias.name.removeprefix("qbench."), node.lineno


@pytest.mark.parametrize("path", QUANT_FILES, ids=lambda p: p.stem)
def test_quant_imports_only_downward(path):
    for target, line in _qbench_imports(path):
        top = target.split(".")[0]
        assert top == "quant" or top in BELOW_QUANT, f"{path.name}:{line} imports qbench.{target} (an upper layer)"
