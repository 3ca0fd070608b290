"""qbench: an open benchmark for training quantized neural networks.

Public API (everything else is an implementation module)::

    qbench.register_method, qbench.list_methods, qbench.create_method, qbench.Method, qbench.HParam
    qbench.quantize_model(model, method, bits="W1A4", policy="fp")

What a method plugin needs is one import, ``from qbench import Method, HParam, register_method, quant``
(``QuantReLUMethod`` for a method with the quantized ReLU of spec §2, ``ConfigError`` / ``BitsError`` for bad
hyperparameters); ``quant`` holds the shared quantizers and update rules (:mod:`qbench.quant`).

Attributes are imported lazily (PEP 562) so ``import qbench`` and ``qbench --help`` stay fast and a submodule such as
``qbench.data`` can be used without importing torch-heavy surgery code.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Bits": "qbench.bits",
    "parse_bits": "qbench.bits",
    "QbenchError": "qbench.errors",
    "ConfigError": "qbench.errors",
    "BitsError": "qbench.errors",
    "Method": "qbench.method",
    "HParam": "qbench.method",
    "QuantReLUMethod": "qbench.method",
    "register_method": "qbench.registry",
    "list_methods": "qbench.registry",
    "create_method": "qbench.registry",
    "load_plugin": "qbench.registry",
    "quantize_model": "qbench.registry",
    "freeze_quantized": "qbench.quant.apply",
    "quantized_layers": "qbench.quant.apply",
}
#: subpackages that are public attributes of ``qbench`` (imported on first access, like the names above)
_SUBPACKAGES = ("quant",)

__all__ = ["__version__", *_LAZY, *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _LAZY or name in _SUBPACKAGES:
        module = importlib.import_module(_LAZY[name] if name in _LAZY else f"qbench.{name}")
        value = module if name in _SUBPACKAGES else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qbench' has no attribute '{name}'")


def __dir__():
    return sorted(__all__)
