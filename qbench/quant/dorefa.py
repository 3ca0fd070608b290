"""DoReFa-Net's weight quantizer (Zhou, Wu, Ni, Zhou, Wen, Zou, arXiv 1606.06160; spec §10), shared by the ``dorefa``
and ``pact`` methods (PACT §4 quantizes weights with DoReFa's scheme).

* quantize_k (eq. 5): r_o = round((2^k − 1)·r_i)/(2^k − 1) for r_i ∈ [0, 1], straight-through backward ∂c/∂r_i =
  ∂c/∂r_o.
* k-bit weights, k ≥ 2 (eq. 9): r_o = 2·quantize_k(tanh(r_i)/(2·max|tanh(r_i)|) + ½) − 1 — 2^k levels in [−1, 1];
  the backward runs through tanh and the max normalisation, straight through round only.
* 1-bit weights (eq. 7): r_o = E(|r_i|)·sign(r_i), backward ∂c/∂r_i = ∂c/∂r_o (identity: no cancellation, E
  treated as a constant, as in the authors' tensorpack code's ``stop_gradient``). sign(0) = +1 (spec §1 [choice]).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import BitsError
from .learned import round_ste, ste_replace
from .weight import WeightParametrization, sign_nonzero

__all__ = ["quantize_k", "dorefa_weight", "DoReFaWeight"]


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
