"""Activation quantizers and their backward estimators (spec §2, §5).

* :class:`QuantReLU` — the b-bit quantized ReLU of the BCGD and STE papers, with the estimator μ' (identity, relu,
  clipped_relu) and, optionally, BCGD's learned resolution α.
* :class:`AQEActivation` — the AQE blend α·h(a) + (1−α)·a with backward 2α·1{|a| ≤ 1}, hard h(a) at evaluation.
* :class:`InputQuantizer` — a uniform grid for the input of a quantized layer that is not a quantized activation's
  output (ViT, MobileNet's linear bottlenecks); signed or unsigned depending on what the layer receives.

Sources: BCGD = Yin et al. arXiv 1808.05240 + code ``penhunt/full-quantization-DNN``; STE = Yin et al. ICLR 2019
(arXiv 1903.05662); AQE = Chen et al. arXiv 2003.04296 eq. 18-22.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from ..errors import BitsError, ConfigError
from .gates import keep_above, keep_below, keep_between
from .learned import LazyInit
from .weight import nearest_pow2_level, sign_nonzero

__all__ = [
    "ESTIMATORS",
    "ALPHA_GRADS",
    "ALPHA_INIT",
    "optimal_alpha",
    "quant_relu",
    "QuantReLU",
    "aqe_h",
    "AQEActivation",
    "InputQuantizer",
]

ESTIMATORS = ("identity", "relu", "clipped_relu")
ALPHA_GRADS = ("mean", "exact", "pact", "min")

# α init per activation bits from the BCGD code (spec §2): ≈ the MSE-optimal round-to-nearest step for half-normal
# data (the positive part of a BN-normalised pre-activation). Other bit-widths are computed by `optimal_alpha`.
ALPHA_INIT = {1: 1.2221, 2: 0.6511, 4: 0.1946}


@functools.lru_cache(maxsize=None)
def optimal_alpha(bits: int) -> float:
    """MSE-optimal step α of the grid {0, α, …, Lα} (L = 2^b − 1, round to nearest) for x ~ |N(0, 1)|.

    E(α) = Σ_k ∫_{cell k} (x − kα)² 2φ(x) dx, minimised by bounded scalar search. For b = 1, 2, 4 this gives 1.224,
    0.651, 0.193 — within 1% of the BCGD code's table, which was fitted on samples (spec §2 [checked]).
    """
    from scipy import integrate, optimize, stats

    L = 2**bits - 1

    def mse(alpha: float) -> float:
        total = 0.0
        for k in range(L + 1):
            lo = 0.0 if k == 0 else (k - 0.5) * alpha
            hi = (k + 0.5) * alpha if k < L else math.inf
            total += integrate.quad(lambda x: (x - k * alpha) ** 2 * 2 * stats.norm.pdf(x), lo, hi)[0]
        return total

    res = optimize.minimize_scalar(mse, bounds=(1e-4, 5.0), method="bounded", options={"xatol": 1e-7})
    return float(res.x)


def default_alpha(bits: int) -> float:
    return ALPHA_INIT.get(bits) or optimal_alpha(bits)


def quant_relu(x: Tensor, alpha: Tensor | float, bits: int) -> Tensor:
    """Forward of the quantized ReLU, ceil convention (BCGD code, spec §2):
    0 for x ≤ 0; kα for (k−1)α < x ≤ kα; Lα for x > Lα  ⇔  α·clip(⌈x/α⌉, 0, L)."""
    L = 2**bits - 1
    # One new tensor, then in place: on a CPU each fresh activation-sized buffer costs page faults comparable to the
    # arithmetic, and this runs on every activation of the network.
    return (x / alpha).ceil_().clamp_(0, L).mul_(alpha)


class _QuantReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, bits: int, estimator: str, alpha_grad: str | None,
                alpha_grad_scale: float, alpha_grad_clip: float) -> Tensor:
        ctx.save_for_backward(x, alpha)
        ctx.cfg = (bits, estimator, alpha_grad, alpha_grad_scale, alpha_grad_clip)
        return quant_relu(x, alpha, bits)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, alpha = ctx.saved_tensors
        bits, estimator, alpha_grad, scale, clip = ctx.cfg
        L = 2**bits - 1
        top = L * alpha
        learn = ctx.needs_input_grad[1] and alpha_grad is not None
        # Each mask is one gated pass (quant.gates): this backward runs on every activation tensor of the network, so
        # its number of elementwise passes is most of a quantized model's overhead over FP on a CPU (≤ 1.5× FP).
        relu_grad = keep_above(grad_out, x, 0.0) if (estimator != "identity" or learn) else None  # grad·1{x > 0}
        # grad·1{0 < x ≤ Lα}
        inside = keep_below(relu_grad, x, top, inclusive=True) if (estimator == "clipped_relu" or learn) else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            # The estimator μ' (spec §2; STE paper §3): the derivative of the surrogate used in place of σ' = 0.
            grad_x = {"identity": grad_out, "relu": relu_grad, "clipped_relu": inside}[estimator]
        grad_alpha = None
        if learn:
            # ∂σ/∂α variants of the BCGD code (spec §2): zero for x ≤ 0, L above the range, and inside:
            # "mean" 2^{b−1}, "exact" ⌈x/α⌉ (a.e. derivative), "pact" 0, "min" 1. Summed as
            # Σ_inside g·∂σ/∂α + L·Σ_above g, which is Σ g·∂σ/∂α without materialising ∂σ/∂α.
            if alpha_grad == "exact":
                total = (inside * torch.ceil(x / alpha)).sum()
            else:
                total = inside.sum() * {"mean": float(2 ** (bits - 1)), "pact": 0.0, "min": 1.0}[alpha_grad]
            total = total + L * keep_above(grad_out, x, top).sum()
            # BCGD code: grad_α = clamp(0.01·Σ grad_out·∂σ/∂α, −1, 1) — a damped, bounded step on the resolution.
            grad_alpha = torch.clamp(scale * total, -clip, clip).reshape(alpha.shape)
        return grad_x, grad_alpha, None, None, None, None, None


class QuantReLU(nn.Module):
    """b-bit quantized ReLU σ with estimator μ' for the backward pass (spec §2).

    Args:
        bits: activation bits b (L = 2^b − 1 positive levels).
        estimator: "identity" (μ' = 1), "relu" (1{x > 0}), "clipped_relu" (1{0 < x ≤ Lα}; BCGD default, STE paper's best).
        alpha: resolution α; default from :data:`ALPHA_INIT` / :func:`optimal_alpha`.
        learn_alpha: learn α by BCGD's rule (an nn.Parameter in the optimizer with the weights' lr, momentum and
            decay), else α is a fixed buffer (the STE paper's setting).
        alpha_grad: ∂σ/∂α variant, one of :data:`ALPHA_GRADS` ("mean" is the BCGD code's default).
        alpha_grad_scale, alpha_grad_clip: the code's 0.01 rate and [−1, 1] clamp on grad_α.
        alpha_min, alpha_max: α is clamped to [1e-3, 5] before each forward (BCGD code).
    """

    def __init__(self, bits: int, estimator: str = "clipped_relu", alpha: float | None = None, learn_alpha: bool = False,
                 alpha_grad: str = "mean", alpha_grad_scale: float = 0.01, alpha_grad_clip: float = 1.0,
                 alpha_min: float = 1e-3, alpha_max: float = 5.0):
        super().__init__()
        if bits < 1 or bits > 16:
            raise BitsError(f"QuantReLU supports 1..16 activation bits, got {bits}; use A32 for float activations")
        if estimator not in ESTIMATORS:
            raise ConfigError(f"unknown estimator '{estimator}'; choose one of {', '.join(ESTIMATORS)}")
        if alpha_grad not in ALPHA_GRADS:
            raise ConfigError(f"unknown alpha_grad '{alpha_grad}'; choose one of {', '.join(ALPHA_GRADS)}")
        self.bits, self.estimator, self.learn_alpha = bits, estimator, learn_alpha
        self.alpha_grad, self.alpha_grad_scale, self.alpha_grad_clip = alpha_grad, alpha_grad_scale, alpha_grad_clip
        self.alpha_min, self.alpha_max = alpha_min, alpha_max
        init = torch.tensor(float(alpha if alpha is not None else default_alpha(bits)))
        if learn_alpha:
            self.alpha = nn.Parameter(init)
        else:
            self.register_buffer("alpha", init)

    @property
    def levels(self) -> int:
        return 2**self.bits

    def forward(self, x: Tensor) -> Tensor:
        if self.learn_alpha:
            with torch.no_grad():
                self.alpha.clamp_(self.alpha_min, self.alpha_max)
        alpha = self.alpha.to(x.dtype)
        return _QuantReLUFn.apply(x, alpha, self.bits, self.estimator, self.alpha_grad if self.learn_alpha else None,
                                  self.alpha_grad_scale, self.alpha_grad_clip)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, estimator={self.estimator}, alpha={float(self.alpha.detach()):.4g}, "
                f"learn_alpha={self.learn_alpha}" + (f", alpha_grad={self.alpha_grad}" if self.learn_alpha else ""))


def aqe_h(a: Tensor, bits: int, ternary_delta: float = 0.5) -> Tensor:
    """AQE's hard quantizer h (spec §5): 1 bit sign; 2 bits ternary (0 if |a| ≤ Δ, else sign a);
    b ≥ 3 bits nearest power of two in {0, ±2^{−(q−1)}, …, ±½, ±1}, q = 2^{b−1} − 1 (midpoint thresholds [choice];
    for 3 bits: ⅛, ⅜, ¾). Inputs beyond ±1 saturate at ±1."""
    if bits == 1:
        return sign_nonzero(a)
    if bits == 2:  # sign(a) where |a| > Δ, else 0 (one gated pass, quant.gates)
        return keep_above(torch.sign(a), a.abs(), ternary_delta)
    return nearest_pow2_level(a.abs(), bits).copysign_(a)  # levels are ≥ 0; a = 0 maps to level 0 (±0.0)


class _AQEFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, alpha: float, bits: int, ternary_delta: float) -> Tensor:
        ctx.save_for_backward(a)
        ctx.alpha = alpha
        return torch.lerp(a, aqe_h(a, bits, ternary_delta), alpha)  # α·h(a) + (1−α)·a in one fused pass

    @staticmethod
    def backward(ctx, grad: Tensor):
        (a,) = ctx.saved_tensors
        # AQE eq. 22: ∂L/∂a = 2α·∂L/∂ĥ·1{|a| ≤ 1}. At α = ½ this is exactly the BNN STE (Theorems 1-2).
        return keep_between(grad, a, -1.0, 1.0, True, True).mul_(2 * ctx.alpha), None, None, None


def aqe_blend(a: Tensor, alpha: float, bits: int, ternary_delta: float, training: bool) -> Tensor:
    """AQE forward: α·h(a) + (1−α)·a while training (eq. 18), hard h(a) at evaluation."""
    if not training:
        return aqe_h(a, bits, ternary_delta)
    return _AQEFn.apply(a, alpha, bits, ternary_delta)


class AQEActivation(nn.Module):
    """AQE activation quantizer (spec §5). ``alpha`` is the blend weight; methods may change it per epoch."""

    def __init__(self, bits: int, alpha: float = 0.5, ternary_delta: float = 0.5):
        super().__init__()
        if bits < 1 or bits > 16:
            raise BitsError(f"AQE supports 1..16 activation bits, got {bits}")
        self.bits, self.alpha, self.ternary_delta = bits, float(alpha), ternary_delta

    @property
    def levels(self) -> int:
        return 2 if self.bits == 1 else 2**self.bits - 1

    def forward(self, a: Tensor) -> Tensor:
        return aqe_blend(a, self.alpha, self.bits, self.ternary_delta, self.training)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={self.alpha:g}"


class _ClippedIdentity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, q: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        ctx.save_for_backward(x, lo, hi)
        return q

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, lo, hi = ctx.saved_tensors
        return keep_above(keep_below(grad, x, hi, inclusive=True), x, lo, inclusive=True), None, None, None


class InputQuantizer(LazyInit, nn.Module):
    """Uniform quantizer for the input of a quantized layer whose input is not already quantized (spec §2 placement
    [choice]). Signed grid s·clip(round(x/s), −L, L), L = 2^{b−1} − 1, or unsigned s·clip(round(x/s), 0, 2^b − 1)
    when the layer only ever saw non-negative inputs; 1-bit signed is mean|x|·sign(x) (XNOR-Net's input scaling).

    The range comes from the batch's max |x| while training and an exponential moving average of it at evaluation,
    like MQBench's EMA min-max observer. Backward: straight through inside the range, zero outside.
    """

    def __init__(self, bits: int, signed: bool = True, momentum: float = 0.1):
        super().__init__()
        if bits < 1 or bits > 16:
            raise BitsError(f"input quantizer supports 1..16 bits, got {bits}")
        self.bits, self.signed, self.momentum = bits, signed, momentum
        self.register_buffer("running_max", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: Tensor) -> Tensor:
        initialized = self.is_initialized()
        if self.training or not initialized:
            with torch.no_grad():
                batch_max = x.detach().abs().max().float()
                if initialized:
                    self.running_max.lerp_(batch_max, self.momentum)
                else:
                    self.running_max.copy_(batch_max)
                    self.mark_initialized()
            top = batch_max if self.training else self.running_max
        else:
            top = self.running_max
        top = top.to(x.dtype).clamp_min(torch.finfo(x.dtype).tiny)
        with torch.no_grad():
            if self.signed and self.bits == 1:
                q = x.abs().mean() * sign_nonzero(x)
            else:
                L = 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1
                s = top / L
                q = torch.round(x / s).clamp_(-L if self.signed else 0, L).mul_(s)  # in place: one new tensor
        lo = -top if self.signed else torch.zeros_like(top)
        return _ClippedIdentity.apply(x, q, lo, top)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"
