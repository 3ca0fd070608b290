"""Quantizers (pure tensor functions and autograd estimators), the update rules on latent weights, and model surgery.

What a method plugin uses, as ``from qbench import quant`` then ``quant.<module>.<name>``:

* :mod:`~qbench.quant.weight` — weight quantizers Q(w) and the straight-through weight parametrization;
* :mod:`~qbench.quant.activation` — the quantized ReLU, AQE's blend, the input quantizer;
* :mod:`~qbench.quant.sign` — sign activations with their estimators, per-channel scaled sign weights;
* :mod:`~qbench.quant.learned` — learned step / clip / softness parameters and the STE autograd primitives;
* :mod:`~qbench.quant.dorefa` — DoReFa's weight quantizer (DoReFa, PACT);
* :mod:`~qbench.quant.latent` — the latent weights and the update rules on them (clipping, BCGD's blend);
* :mod:`~qbench.quant.gates` — the straight-through masks of the backward passes (grad where x is in a range), one
  fused pass each;
* :mod:`~qbench.quant.apply` — the model surgery (``quantize_model`` for a Method instance, ``freeze_quantized``).

Submodules are imported on first access (PEP 562), so ``import qbench.quant`` costs nothing until one is used.
"""

import importlib

__all__ = ["weight", "activation", "sign", "learned", "dorefa", "latent", "gates", "apply"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


def __dir__():
    return sorted(__all__)
