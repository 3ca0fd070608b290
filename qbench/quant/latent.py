"""The latent (float) weights of a quantized model and the update rules that act on them around the optimizer step.

:func:`~qbench.quant.apply.quantize_model` parametrizes each quantized layer's weight; the float tensor the optimizer
updates is ``parametrizations.weight.original`` (design.md), listed with its parametrization by :func:`latent_weights`.
Update-level methods (``Method.before_step`` / ``after_step``) change these tensors in place:

* :func:`clip_latent_weights_` — w ← clip(w, −1, 1) after the step (BinaryConnect, Algorithm 1);
* :func:`blend_latent_weights_` — w ← (1 − ρ)·w + ρ·Q(w) before the step (BCGD).
"""

from __future__ import annotations

import torch
from torch import nn

from .weight import WeightParametrization

__all__ = ["latent_weights", "clip_latent_weights_", "blend_latent_weights_"]


def latent_weights(model: nn.Module) -> list[tuple[nn.Parameter, WeightParametrization]]:
    """(latent float weight, its parametrization) for every quantized layer of a model made by quantize_model.
    Update rules act on the latent ``parametrizations.weight.original`` (design.md)."""
    info = getattr(model, "qbench_info", None)
    if info is None:
        return []
    return [(m.parametrizations.weight.original, m.parametrizations.weight[0]) for m in info.layers]


def clip_latent_weights_(model: nn.Module, bound: float = 1.0) -> None:
    """Clip every latent (float) weight to [−bound, bound] in place after the optimizer step: BinaryConnect's
    Algorithm 1 (arXiv 1511.00363), kept by BNN, AQE and STE's 1-bit weights. Without it latent weights drift far
    beyond ±1 where sign() never changes again."""
    with torch.no_grad():
        for latent, _ in latent_weights(model):
            latent.clamp_(-bound, bound)


def blend_latent_weights_(model: nn.Module, rho: float) -> None:
    """BCGD's blend w ← (1 − ρ)·w + ρ·Q(w) in place (Yin et al., arXiv 1808.05240, spec §3), called after backward
    and before ``optimizer.step()``: in the authors' code (``optimization_step``) the step then applies the gradient
    taken at Q(w) to the blended point. Q(w) is the parametrization's ``hard`` value, i.e. the G of this step's
    forward (cached by :class:`~qbench.quant.weight.StraightThroughWeight`), not a re-quantization. ρ = 0 is a no-op
    (the projected coarse gradient, ``pcg``)."""
    if rho == 0.0:
        return
    with torch.no_grad():
        for latent, param in latent_weights(model):
            q = param.hard(latent)
            latent.mul_(1.0 - rho).add_(q, alpha=rho)
