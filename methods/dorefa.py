"""DoReFa-Net (Zhou, Wu, Ni, Zhou, Wen, Zou, *DoReFa-Net: Training low bitwidth convolutional neural networks with low
bitwidth gradients*, arXiv 1606.06160; spec §10).

* quantize_k (eq. 5) and the weights (eq. 7 at 1 bit, eq. 9 at k ≥ 2 bits): :mod:`qbench.quant.dorefa`, shared with
  PACT, which quantizes its weights the same way.
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

from qbench import BitsError, ConfigError, HParam, Method, quant, register_method

__all__ = ["DoReFaActivation", "DoReFa"]


class _DoReFaActivationFn(torch.autograd.Function):
    """quantize_k(clip(x, 0, c)/c)·c (§2.4, eq. 5) with its straight-through backward, in place: the chain autograd
    takes through it, ((g·c)/n)·n/c, where 0 < x < c (the clip's derivative, 0 at the kinks as torch's clamp
    backward gives it), else 0 — one gated pass (quant.gates) instead of autograd's `where` and five new tensors."""

    @staticmethod
    def forward(ctx, x: Tensor, c: float, bits: int) -> Tensor:
        ctx.save_for_backward(x)
        ctx.c, ctx.n = c, 2**bits - 1
        return torch.clamp(x, 0.0, c).div_(c).mul_(ctx.n).round_().div_(ctx.n).mul_(c)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        c, n = ctx.c, ctx.n
        return quant.gates.keep_between(grad, x, 0.0, c).mul_(c).div_(n).mul_(n).div_(c), None, None


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
        return _DoReFaActivationFn.apply(x, self.act_max, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, act_max={self.act_max:g}"


@register_method("dorefa")
class DoReFa(Method):
    """DoReFa-Net: tanh-normalised uniform weights (E|w|·sign at 1 bit), clipped [0, 1] uniform activations, STE."""

    family = "weight quantizer"
    paper = "Zhou et al., DoReFa-Net: Training low bitwidth CNNs with low bitwidth gradients, arXiv 1606.06160"
    paper_policy = "first and last layer floating point"
    hparams = {
        "act_max": HParam(1.0, "activation clip range [0, act_max] (1.0 = the paper; other values are not in it)",
                          space=[0.5, 8.0, "log"]),
    }

    def weight_quantizer(self, bits):
        return quant.dorefa.DoReFaWeight(bits)

    def activation_quantizer(self, bits):
        return DoReFaActivation(bits, self.hp.act_max)
