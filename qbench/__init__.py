"""qbench: an open benchmark for training quantized neural networks.

Public API (everything else is an implementation module)::

    qbench.register_method, qbench.list_methods, qbench.create_method, qbench.Method
    qbench.quantize_model(model, method, bits="W1A4", policy="fp")

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
    "Method": "qbench.method",
    "register_method": "qbench.registry",
    "list_methods": "qbench.registry",
    "create_method": "qbench.registry",
    "load_plugin": "qbench.registry",
    "quantize_model": "qbench.quant.apply",
    "freeze_quantized": "qbench.quant.apply",
    "quantized_layers": "qbench.quant.apply",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qbench' has no attribute '{name}'")


def __dir__():
    return sorted(__all__)
