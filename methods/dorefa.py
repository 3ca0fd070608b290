"""DoReFa-Net (Zhou, Wu, Ni, Zhou, Wen, Zou, *DoReFa-Net: Training low bitwidth convolutional neural networks with low
bitwidth gradients*, arXiv 1606.06160; spec §10).

* quantize_k (eq. 5): r_o = round((2^k − 1)·r_i)/(2^k − 1) for r_i ∈ [0, 1], straight-through backward ∂c/∂r_i =
  ∂c/∂r_o.
* k-bit weights, k ≥ 2 (eq. 9): r_o = 2·quantize_k(tanh(r_i)/(2·max|tanh(r_i)|) + ½) − 1 — 2^k levels in [−1, 1];
  the backward runs through tanh and the max normalisation, straight through round only.
* 1-bit weights (eq. 7): r_o = E(|r_i|)·sign(r_i), backward ∂c/∂r_i = ∂c/∂r_o (identity: no cancellation, E
  treated as a constant, as in the authors' tensorpack code's ``stop_gradient``). sign(0) = +1 (spec §1 [choice]).
* k-bit activations (§2.4): quantize_k(clip(x, 0, 1)); the clip passes the gradient on [0, 1]. ``act_max`` rescales
  the clip range (q_k(clip(x, 0, c)/c)·c; c = 1 is the paper, other values are not in it).
* Gradient quantization (the paper's G bits, §2.5) is not implemented: qbench runs G = 32.
Inputs of quantized layers that are not ReLU outputs (ViT, MobileNet bottlenecks) are not covered by the paper; they
use qbench's EMA min-max input quantizer (spec §2 placement [choice]).
Paper layer policy: first and last layer kept in floating point.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qbench import register_method
from qbench.errors import BitsError, ConfigError
from qbench.method import HParam, Method
from qbench.quant.learned import round_ste, ste_replace
from qbench.quant.weight import WeightParametrization, sign_nonzero

__all__ = ["quantize_k", "dorefa_weight", "DoReFaWeight", "DoReFaActivation", "DoReFa"]


def quantize_k(r: Tensor, k: int) -> Tensor:
    """DoReFa eq. 5: round((2^k − 1)·r)/(2^k − 1), straight through round in the backward."""
    n = 2**k - 1
    return round_ste(r * n) / n


def dorefa_weight(w: Tensor, bits: int) -> Tensor:
    """DoReFa weight quantizer with its backward (eq. 7 for 1 bit, eq. 9 for k ≥ 2 bits); differentiable in w."""
    if bits < 1:
        raise BitsError(f"DoReFa weights need ≥ 1 bit (got {bits}); use W32 for float weights")
    if bits == 1:
        # eq. 7: E(|w|)·sign(w) forward, identity backward (E is a constant of the step)
        return ste_replace(w, w.detach().abs().mean() * sign_nonzero(w.detach()))
    t = torch.tanh(w)
    # eq. 9: map tanh(w) affinely onto [0, 1] by its max, quantize, map back to [−1, 1]
    top = t.abs().max().clamp_min(torch.finfo(t.dtype).tiny)  # an all-zero tensor maps to the middle, not NaN
    return 2 * quantize_k(t / (2 * top) + 0.5, bits) - 1


class DoReFaWeight(WeightParametrization):
    """Parametrization ``w ↦ dorefa_weight(w, bits)`` (2^k levels in [−1, 1]; 2 levels ±E|w| at 1 bit)."""

    def __init__(self, bits: int):
        super().__init__()
        if bits < 1:
            raise BitsError(f"DoReFa weights need ≥ 1 bit (got {bits}); use W32 for float weights")
        self.bits = bits
        self.levels = 2**bits

    def forward(self, latent: Tensor) -> Tensor:
        return dorefa_weight(latent, self.bits)

    def hard(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return dorefa_weight(latent, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, levels={self.levels}"


class DoReFaActivation(nn.Module):
    """DoReFa activation (§2.4): quantize_k(clip(x, 0, 1)) replacing the ReLU; gradient 1 on [0, 1] (the clip's),
    straight through round. ``act_max`` = c generalises the range to [0, c] (c = 1: the paper)."""

    def __init__(self, bits: int, act_max: float = 1.0):
        super().__init__()
        if bits < 1 or bits > 16:
            raise BitsError(f"DoReFa activations support 1..16 bits (got {bits}); use A32 for float activations")
        if not act_max > 0:
            raise ConfigError(f"dorefa.act_max must be > 0 (got {act_max})")
        self.bits, self.act_max = bits, float(act_max)

    @property
    def levels(self) -> int:
        return 2**self.bits

    def forward(self, x: Tensor) -> Tensor:
        c = self.act_max
        return quantize_k(torch.clamp(x, 0.0, c) / c, self.bits) * c

    def extra_repr(self) -> str:
        return f"bits={self.bits}, act_max={self.act_max:g}"


@register_method("dorefa")
class DoReFa(Method):
    """DoReFa-Net: tanh-normalised uniform weights (E|w|·sign at 1 bit), clipped [0, 1] uniform activations, STE."""

    family = "weight quantizer"
    paper = "Zhou et al., DoReFa-Net: Training low bitwidth CNNs with low bitwidth gradients, arXiv 1606.06160"
    paper_policy = "first and last layer floating point"
    hparams = {
        "act_max": HParam(1.0, "activation clip range [0, act_max] (1.0 = the paper; other values are not in it)"),
    }

    def weight_quantizer(self, bits):
        return DoReFaWeight(bits)

    def weight_levels(self, bits):
        return 2**bits

    def activation_quantizer(self, bits):
        return DoReFaActivation(bits, self.hp.act_max)

    def search_space(self, trial):
        return {"act_max": trial.suggest_float("act_max", 0.5, 8.0, log=True)}
