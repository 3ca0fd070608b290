"""The plugin surface (issue #12): a method file imports only ``from qbench import ...`` (Method, HParam,
register_method, quant, the error classes) plus torch and the standard library, never another plugin or a qbench
submodule; ``import qbench`` stays cheap."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import qbench
import qbench.methods

METHOD_FILES = sorted(p for p in Path(qbench.methods.__path__[0]).glob("*.py") if p.name != "__init__.py")
#: what a plugin may import besides ``qbench``: torch and the standard library modules the built-in methods use
ALLOWED_MODULES = {"torch", "__future__", "functools", "math", "warnings", "typing"}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", [alias.name for alias in node.names], node.level


def test_every_registered_builtin_has_a_method_file():
    builtins = {qbench.registry.get_method_class(n).__module__ for n in qbench.list_methods()}
    assert {f"qbench.methods.{p.stem}" for p in METHOD_FILES} >= {m for m in builtins if m.startswith("qbench.methods")}


@pytest.mark.parametrize("path", METHOD_FILES, ids=lambda p: p.stem)
def test_method_file_imports_only_the_plugin_surface(path):
    for module, names, level in _imports(path):
        assert level == 0, f"{path.name}: relative import from '.{module}' (a plugin never imports another plugin)"
        if module == "qbench":
            assert names and set(names) <= set(qbench.__all__), f"{path.name}: {names} not in qbench.__all__"
        else:
            assert module.split(".")[0] in ALLOWED_MODULES, f"{path.name} imports {module}; use `from qbench import`"


def test_the_plugin_surface_is_public():
    from qbench import BitsError, ConfigError, HParam, Method, QuantReLUMethod, quant, register_method

    assert issubclass(QuantReLUMethod, Method) and callable(register_method) and HParam
    assert issubclass(ConfigError, qbench.QbenchError) and issubclass(BitsError, qbench.QbenchError)
    for name in quant.__all__:
        assert getattr(quant, name).__all__, name  # every quant module loads and lists its public names


def test_import_qbench_does_not_import_torch():
    code = "import sys, qbench; qbench.__all__; assert 'torch' not in sys.modules, 'torch imported by import qbench'"
    subprocess.run([sys.executable, "-c", code], check=True)
