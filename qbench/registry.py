"""The method registry, modelled on timm's model registry.

``register_method`` adds a :class:`~qbench.method.Method` subclass under a name, ``list_methods`` lists names matching
an fnmatch pattern, ``create_method`` builds an instance with validated hyperparameters, and ``quantize_model`` is the
model surgery for a method given by name or instance (:mod:`qbench.quant` never imports the registry). Methods come
from three places, loaded lazily on first use so ``import qbench`` stays cheap:

1. the built-in plugins, one module per method in the package ``qbench.methods`` (the repository's ``methods/``);
2. installed packages declaring the entry-point group ``qbench.methods`` (``name = "pkg.module"`` or ``"pkg.module:Cls"``);
3. Python files given at run time (``plugins=[path.py]`` in a config, ``--plugin path.py`` on the command line).

A suite names a method by a *method spec*: the registered name, optionally with inline hyperparameters
(``"ste:estimator=identity,alpha=0.5"``), so variants of one method run side by side. :func:`parse_method_spec` is the
one parser of that form; :func:`supported_bits` the one filter of the bit-widths a method supports.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from torch import nn

from .bits import Bits, parse_bits
from .errors import ConfigError, PluginError, QbenchError, UnknownMethodError
from .method import Method
from .quant import apply

__all__ = ["register_method", "list_methods", "create_method", "get_method_class", "load_plugin", "is_method",
           "quantize_model", "parse_method_spec", "method_label", "supported_bits"]

ENTRY_POINT_GROUP = "qbench.methods"

_registry: dict[str, type[Method]] = {}
_builtins_loaded = False
_entry_points_loaded = False


def register_method(name: str | None = None, *, overwrite: bool = False) -> Callable[[type], type]:
    """Class decorator registering a Method subclass under ``name`` (default: the class's ``name`` attribute)."""

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"@register_method expects a subclass of qbench.Method, got {cls!r}")
        key = (name or getattr(cls, "name", None) or cls.__name__).lower()
        if key in _registry and _registry[key] is not cls and not overwrite:
            # Re-importing the same file (e.g. a plugin given twice) re-defines the class; accept the same qualname.
            old = _registry[key]
            if (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
                raise PluginError(
                    f"method '{key}' is already registered by {old.__module__}.{old.__qualname__}; "
                    f"pick another name or pass overwrite=True"
                )
        cls.name = key
        _registry[key] = cls
        return cls

    return decorator


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    # Plugin discovery, like an entry point: the plugins import this module, so they are loaded on first use.
    pkg = importlib.import_module("qbench.methods")
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"qbench.methods.{info.name}")


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party package must not take qbench down silently
            raise PluginError(
                f"entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP}) failed to import: "
                f"{type(exc).__name__}: {exc}; fix or uninstall that package"
            ) from exc
        # "name = pkg.module" imports a module whose decorators register its methods; "name = pkg.module:Cls" names
        # a class, registered under the entry-point name (also when its decorator registered another name).
        if isinstance(obj, type) and ep.name.lower() not in _registry:
            if obj in _registry.values():
                _registry[ep.name.lower()] = obj
            else:
                register_method(ep.name)(obj)


def _ensure_loaded() -> None:
    _load_builtins()
    _load_entry_points()


def load_plugin(path: str | Path) -> list[str]:
    """Import a plugin file; the methods it registers become available. Returns the names it added."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PluginError(f"plugin file '{path}' does not exist; give the path of a .py file that calls register_method")
    _ensure_loaded()
    before = set(_registry)
    module_name = f"qbench_plugin_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file '{path}' is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin file '{path}' raised on import: {type(exc).__name__}: {exc}") from exc
    return sorted(set(_registry) - before)


def list_methods(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered methods, optionally filtered by an fnmatch pattern such as ``"*ste*"``."""
    _ensure_loaded()
    names = sorted(_registry)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern.lower())]
    return names


def is_method(name: str) -> bool:
    _ensure_loaded()
    return name.lower() in _registry


def get_method_class(name: str) -> type[Method]:
    _ensure_loaded()
    key = str(name).lower()
    if key not in _registry:
        close = fnmatch.filter(_registry, f"*{key}*")
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownMethodError(
            f"unknown method '{name}'{hint}; known methods: {', '.join(sorted(_registry))} "
            f"(add one with plugins=[file.py] or the '{ENTRY_POINT_GROUP}' entry point)"
        )
    return _registry[key]


def create_method(name: str, **hparams) -> Method:
    """Instantiate a registered method; unknown hyperparameters raise a ConfigError listing the valid ones."""
    return get_method_class(name)(**hparams)


def parse_method_spec(spec: str, method_hparams: dict | None = None) -> tuple[str, dict[str, Any]]:
    """``"ste:estimator=identity,alpha=0.5"`` → ``("ste", {"estimator": "identity", "alpha": 0.5})``: the base name
    and the hyperparameters of a method spec. The suite's ``method_hparams[<base>]`` apply first, inline values win
    (values are parsed as YAML scalars)."""
    base, _, inline = str(spec).partition(":")
    hparams = dict((method_hparams or {}).get(base) or {})
    for item in filter(None, inline.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"bad method variant '{spec}'; write method:key=value[,key=value]")
        hparams[key.strip()] = yaml.safe_load(value)
    return base, hparams


def method_label(spec: str) -> str:
    """A method spec as one file-name-safe word (run ids, study slugs): ``ste:estimator=identity`` →
    ``ste-estimator=identity``."""
    return str(spec).replace(":", "-").replace(",", "-").replace("/", "_")


def supported_bits(spec: str, bits_list: Iterable[Any],
                   on_unsupported: Callable[[str], None] | None = None) -> list[Bits]:
    """The bit-widths of ``bits_list`` (specs such as ``"W1A4"``) that the method of ``spec`` supports, parsed; each one
    left out (``Method.unsupported_bits``: e.g. a weight-only method at W1A1) is reported to ``on_unsupported``. An
    unknown method keeps every bit-width: it fails with its own one-line error where it is created."""
    try:
        method_class = get_method_class(parse_method_spec(spec)[0])
    except QbenchError:
        method_class = None
    kept = []
    for bits in bits_list:
        parsed = parse_bits(bits)
        reason = method_class.unsupported_bits(parsed) if method_class is not None else None
        if reason is None:
            kept.append(parsed)
        elif on_unsupported is not None:
            on_unsupported(f"{spec} {parsed}: left out, {reason}")
    return kept


def quantize_model(model: nn.Module, method: str | Method, bits: str | Bits = "W1A4", policy: Any = "fp", *,
                   input_size: tuple[int, ...] | None = None, layer_bits: dict[str, str] | None = None,
                   **hparams) -> nn.Module:
    """Quantize ``model`` in place for ``method`` at ``bits`` and return it: ``method`` is a registered method's name,
    with its hyperparameters as keyword arguments, or a Method instance. The surgery and the other arguments are
    :func:`qbench.quant.apply.quantize_model`'s."""
    if isinstance(method, str):
        method = create_method(method, **hparams)
    elif hparams:
        raise ConfigError("pass hyperparameters either to create_method or to quantize_model, not both")
    return apply.quantize_model(model, method, bits, policy, input_size=input_size, layer_bits=layer_bits)
