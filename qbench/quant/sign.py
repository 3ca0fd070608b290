"""Sign quantizers with pluggable backward estimators, and per-output-channel binary scaling (spec §10, the zoo).

Building blocks of the binary-network methods (``binaryconnect``, ``bnn``, ``xnor``/``bwn``, ``irnet``, ``bireal``):

* **Estimators** μ'(x) — the surrogate derivative used in place of sign' = 0 — as plain tensor functions, so the
  theory module can take them directly (``qbench.theory.gaussian.estimator_derivative`` accepts any callable μ'):

  - :func:`hardtanh_ste_grad` — 1{|x| ≤ 1}, the derivative of Htanh(x) = clip(x, −1, 1) (BNN: Courbariaux, Hubara
    et al., arXiv 1602.02830, §1.3 "Propagating gradients through discretization": g_r = g_q·1_{|r|≤1}).
  - :func:`approx_sign_grad` — 2 + 2x on [−1, 0), 2 − 2x on [0, 1), 0 elsewhere = max(0, 2 − 2|x|), the derivative of
    Bi-Real's ApproxSign F(x) = −1 (x < −1), 2x + x² (−1 ≤ x < 0), 2x − x² (0 ≤ x < 1), 1 (x ≥ 1) (Liu et al.,
    arXiv 1808.00278, §3.2, eq. 4-5).
  - :func:`ede_grad` — k·t·(1 − tanh²(t·x)), the derivative of IR-Net's EDE surrogate F(x) = k·tanh(t·x), with the
    epoch schedule :func:`ede_schedule` t = T_min·10^{(i/N)·log10(T_max/T_min)}, k = max(1/t, 1) (Qin et al.,
    arXiv 1909.10788, §3.2 "Error Decay Estimator").

* :class:`SignActivation` — sign(x) ∈ {−1, +1} forward with one of those estimators backward; optionally scaled per
  sample by β = mean|x| (XNOR-Net's input scaling, see the class).
* :func:`channel_abs_mean`, :func:`channel_binary` and :class:`ScaledSignWeight` — α_c·sign(w) with
  α_c = ‖w_c‖₁/n per OUTPUT channel, the L2-optimal binary approximation of each filter (XNOR-Net: Rastegari et
  al., arXiv 1603.05279, §3.1, eq. 2-6), with the backward rules of XNOR-Net and Bi-Real.

Convention: sign(0) = +1 (:func:`qbench.quant.weight.sign_nonzero`, spec §1 [choice]), so a binary tensor never
holds 0 and always has exactly two levels per scale (the authors' PyTorch code uses ``torch.sign``, 0 at 0: a null
set for float inputs).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .gates import keep_between
from .weight import WeightParametrization, sign_nonzero

__all__ = [
    "SIGN_ESTIMATORS",
    "INPUT_SCALES",
    "SCALED_SIGN_GRADS",
    "XNOR_WEIGHT_GRADS",
    "hardtanh_ste_grad",
    "approx_sign_grad",
    "ede_grad",
    "ede_schedule",
    "estimator_grad",
    "sign_with_estimator",
    "sign_estimated",
    "SignActivation",
    "channel_abs_mean",
    "channel_binary",
    "ScaledSignWeight",
]

SIGN_ESTIMATORS = ("hardtanh", "approx_sign", "ede")
INPUT_SCALES = ("none", "sample")
SCALED_SIGN_GRADS = ("xnor", "magnitude_aware", "autograd")
#: the weight backward rules of XNOR-Net and its weight-only form BWN: the paper's (§3.1) and the exact chain rule
XNOR_WEIGHT_GRADS = ("xnor", "autograd")


# ----------------------------------------------------------------------------------------------------------------------
# Estimators μ'(x) as plain functions
# ----------------------------------------------------------------------------------------------------------------------


def hardtanh_ste_grad(x: Tensor, clip: float = 1.0) -> Tensor:
    """μ'(x) = 1{|x| ≤ clip}: BNN's straight-through estimator g_r = g_q·1_{|r|≤1} (arXiv 1602.02830 §1.3), the
    derivative of Htanh(x) = clip(x, −1, 1); ``clip`` widens or narrows the pass band (1 in the paper)."""
    return (x.abs() <= clip).to(x.dtype)


def approx_sign_grad(x: Tensor) -> Tensor:
    """μ'(x) of Bi-Real's ApproxSign (arXiv 1808.00278 §3.2, eq. 5): 2 + 2x on [−1, 0), 2 − 2x on [0, 1), 0 else.

    Both pieces are 2 − 2|x| and vanish at |x| = 1, so the derivative is max(0, 2 − 2|x|): a triangle of area 2
    (= the jump of sign), a closer fit to sign' than the box of :func:`hardtanh_ste_grad`.
    """
    # in place on one new tensor (it runs on every activation's backward): (−2|x|) + 2 is 2 − 2|x| exactly
    return x.abs().mul_(-2.0).add_(2.0).clamp_(min=0.0)


def ede_grad(x: Tensor, t: float, k: float) -> Tensor:
    """μ'(x) = k·t·(1 − tanh²(t·x)), the derivative of IR-Net's EDE surrogate k·tanh(t·x) (arXiv 1909.10788 §3.2)."""
    # in place on one new tensor: (−tanh²) + 1 is 1 − tanh² exactly, then × (k·t) as before
    return torch.tanh(t * x).square_().neg_().add_(1.0).mul_(k * t)


def ede_schedule(epoch: int, epochs: int, t_min: float = 0.1, t_max: float = 10.0) -> tuple[float, float]:
    """IR-Net's EDE schedule (arXiv 1909.10788 §3.2): t = T_min·10^{(i/N)·log10(T_max/T_min)}, k = max(1/t, 1).

    ``epoch`` = i is the current (0-based) epoch, ``epochs`` = N the total. t grows log-linearly from T_min at i = 0
    to T_max at i = N (the authors' loop stops at i = N − 1); k keeps the peak k·t ≥ 1 while t < 1, so early on the
    estimator is close to the identity (updating ability) and late it approaches sign (accurate gradient). The paper
    uses T_min = 10⁻¹, T_max = 10¹; the authors' CIFAR code uses T_min = 10⁻³.
    """
    if epochs < 1:
        raise ConfigError(f"ede_schedule needs epochs ≥ 1 (got {epochs}); pass the total number of training epochs")
    if not 0 < t_min <= t_max:
        raise ConfigError(f"EDE needs 0 < t_min ≤ t_max (got t_min={t_min}, t_max={t_max}); e.g. t_min=0.1, t_max=10")
    t = t_min * 10.0 ** (epoch / epochs * math.log10(t_max / t_min))
    return t, max(1.0 / t, 1.0)


def estimator_grad(name: str, *, clip: float = 1.0, t: float = 0.1, k: float = 10.0) -> Callable[[Tensor], Tensor]:
    """The estimator μ' called ``name`` as a function of x alone (for the theory module or a custom layer)."""
    if name == "hardtanh":
        return functools.partial(hardtanh_ste_grad, clip=clip)
    if name == "approx_sign":
        return approx_sign_grad
    if name == "ede":
        return functools.partial(ede_grad, t=t, k=k)
    raise ConfigError(f"unknown sign estimator '{name}'; choose one of {', '.join(SIGN_ESTIMATORS)}")


class _SignFn(torch.autograd.Function):
    """Forward sign(x) (sign(0) = +1); backward grad·μ'(x) for a custom estimator function."""

    @staticmethod
    def forward(ctx, x: Tensor, grad_fn: Callable[[Tensor], Tensor]) -> Tensor:
        ctx.save_for_backward(x)
        ctx.grad_fn = grad_fn
        return sign_nonzero(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.grad_fn(x).to(grad.dtype), None


def sign_with_estimator(x: Tensor, grad_fn: Callable[[Tensor], Tensor]) -> Tensor:
    """sign(x) whose backward multiplies the incoming gradient by ``grad_fn(x)`` (an estimator μ'). For the built-in
    estimators use :func:`sign_estimated`, which passes no Python callable through autograd (``torch.compile``
    traces it) and gates the hard-tanh STE in one pass."""
    return _SignFn.apply(x, grad_fn)


class _NamedSignFn(torch.autograd.Function):
    """Forward sign(x) (sign(0) = +1); backward grad·μ'(x) for the estimator named ``estimator`` (its parameters are
    numbers, not a callable, so dynamo inlines the Function)."""

    @staticmethod
    def forward(ctx, x: Tensor, estimator: str, clip: float, t: float, k: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.cfg = (estimator, clip, t, k)
        return sign_nonzero(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        estimator, clip, t, k = ctx.cfg
        if estimator == "hardtanh":  # grad·1{|x| ≤ clip}: one gated pass (quant.gates)
            return keep_between(grad, x, -clip, clip, True, True), None, None, None, None
        mu = approx_sign_grad(x) if estimator == "approx_sign" else ede_grad(x, t, k)
        return grad * mu.to(grad.dtype), None, None, None, None


def sign_estimated(x: Tensor, estimator: str, *, clip: float = 1.0, t: float = 0.1, k: float = 10.0) -> Tensor:
    """sign(x) forward, grad·μ'(x) backward for the estimator ``estimator`` of :data:`SIGN_ESTIMATORS` with its
    parameters (``clip`` of the hard-tanh STE, ``t`` and ``k`` of EDE): the same values as
    ``sign_with_estimator(x, estimator_grad(estimator, clip=clip, t=t, k=k))``."""
    if estimator not in SIGN_ESTIMATORS:
        raise ConfigError(f"unknown sign estimator '{estimator}'; choose one of {', '.join(SIGN_ESTIMATORS)}")
    return _NamedSignFn.apply(x, estimator, float(clip), float(t), float(k))


# ----------------------------------------------------------------------------------------------------------------------
# Sign activation
# ----------------------------------------------------------------------------------------------------------------------


class SignActivation(nn.Module):
    """Binary activation sign(x) ∈ {−1, +1} with a pluggable backward estimator (hard at training and evaluation).

    Args:
        estimator: "hardtanh" (BNN, XNOR-Net: 1{|x| ≤ clip}), "approx_sign" (Bi-Real), "ede" (IR-Net; ``t`` and
            ``k`` are attributes the method updates every epoch with :func:`ede_schedule`).
        scale: "none" — plain ±1 (BNN, IR-Net, Bi-Real); "sample" — β_n·sign(x) with β_n = mean|x_n| over all
            non-batch dimensions of sample n (XNOR-Net's input scaling, see below).
        clip: the hard-tanh pass band.

    XNOR-Net (arXiv 1603.05279 §3.2) scales a binary input X by β = ‖X‖₁/n (eq. 7-9, one β per input vector of a
    dot product); for a convolution, eq. 11 uses the map K = A ∗ k, A = Σ_c |I_c|/c, k the kernel-size box filter,
    i.e. β at every output position. ``scale="sample"`` uses K's average over the sample, one β per sample [choice]:
    it is input-dependent like K (computed from each input at inference, not a learned per-layer constant, which
    BN would absorb), equal to the paper's β for a dense layer fed a flat vector, exact for conv when |I| is spatially
    uniform, and it needs no knowledge of the consuming layer's kernel, so the activation module works in front of
    any layer. β is treated as a constant in the backward pass [choice], which therefore is g·β·1{|x| ≤ clip}.
    """

    levels = 2

    def __init__(self, estimator: str = "hardtanh", scale: str = "none", clip: float = 1.0, t: float = 0.1,
                 k: float = 10.0):
        super().__init__()
        if estimator not in SIGN_ESTIMATORS:
            raise ConfigError(f"unknown sign estimator '{estimator}'; choose one of {', '.join(SIGN_ESTIMATORS)}")
        if scale not in INPUT_SCALES:
            raise ConfigError(f"unknown sign input scale '{scale}'; choose one of {', '.join(INPUT_SCALES)}")
        self.estimator, self.scale, self.clip = estimator, scale, float(clip)
        self.t, self.k = float(t), float(k)

    def set_ede(self, t: float, k: float) -> None:
        self.t, self.k = float(t), float(k)

    def grad_fn(self) -> Callable[[Tensor], Tensor]:
        return estimator_grad(self.estimator, clip=self.clip, t=self.t, k=self.k)

    def forward(self, x: Tensor) -> Tensor:
        q = sign_estimated(x, self.estimator, clip=self.clip, t=self.t, k=self.k)
        if self.scale == "sample":
            dims = tuple(range(1, x.dim())) if x.dim() > 1 else (0,)
            q = x.detach().abs().mean(dim=dims, keepdim=True) * q
        return q

    def extra_repr(self) -> str:
        extra = f", t={self.t:.4g}, k={self.k:.4g}" if self.estimator == "ede" else ""
        clip = f", clip={self.clip:g}" if self.estimator == "hardtanh" else ""
        return f"estimator={self.estimator}, scale={self.scale}{clip}{extra}"


# ----------------------------------------------------------------------------------------------------------------------
# Per-output-channel binary weights
# ----------------------------------------------------------------------------------------------------------------------


def channel_abs_mean(w: Tensor) -> Tensor:
    """α_c = ‖w_c‖₁/n for every output channel c (dim 0), shaped to broadcast against w (XNOR-Net eq. 6).

    A 0-d or 1-d tensor counts as a single channel."""
    if w.dim() < 2:
        return w.abs().mean()
    return w.abs().reshape(w.shape[0], -1).mean(dim=1).reshape(-1, *([1] * (w.dim() - 1)))


def channel_binary(w: Tensor) -> Tensor:
    """α_c·sign(w_c) per output channel: the exact minimiser of ‖w_c − α B‖² over α ≥ 0 and B ∈ {±1}ⁿ.

    XNOR-Net §3.1 (eq. 2-6): ‖W − αB‖² = ‖W‖² − 2α·WᵀB + α²n (BᵀB = n) is minimised by B* = sign(W) and
    α* = WᵀB*/n = ‖W‖₁/n, for each filter (output channel) separately. Bi-Real's "magnitude-aware" weights (§3.3)
    use the same α_c."""
    return channel_abs_mean(w) * sign_nonzero(w)


class _ScaledSignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor, rule: str, clip: float) -> Tensor:
        alpha = channel_abs_mean(w)
        ctx.save_for_backward(w, alpha)
        ctx.rule, ctx.clip = rule, clip
        return alpha * sign_nonzero(w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        w, alpha = ctx.saved_tensors
        inside = (w.abs() <= ctx.clip).to(grad.dtype)
        if ctx.rule == "xnor":
            # XNOR-Net §3.1 (training paragraph after eq. 6): ∂C/∂W_i = ∂C/∂W̃_i·(1/n + α·∂sign/∂W_i) with
            # ∂sign/∂r = 1_{|r|≤1}: the diagonal of the Jacobian of α(W)·sign(W), n = weights per output channel.
            n = w[0].numel() if w.dim() >= 2 else w.numel()
            return grad * (1.0 / n + alpha * inside), None, None
        # Bi-Real §3.3 magnitude-aware gradient: ∂L/∂W_r ≈ ∂L/∂W_b·(‖W_r‖₁/|W_r|)·∂Sign/∂W_r, α a constant,
        # ∂Sign/∂W_r ≈ 1{|W_r| ≤ 1} (the clip derivative; < vs ≤ differs on a null set).
        return grad * alpha * inside, None, None


class ScaledSignWeight(WeightParametrization):
    """Weight parametrization α_c·sign(w) with α_c = mean|w_c| per output channel (XNOR-Net / BWN, Bi-Real).

    ``grad`` selects the backward: "xnor" — g·(1/n + α_c·1{|w| ≤ clip}) (XNOR-Net §3.1); "magnitude_aware" —
    g·α_c·1{|w| ≤ clip} (Bi-Real §3.3); "autograd" — the exact chain rule through α_c(w) (all off-diagonal terms of
    the Jacobian, not in either paper) with the hard-tanh STE for sign. The forward, and so evaluation and export,
    is α_c·sign(w) in every case. ``levels`` counts values per output channel (:attr:`per_channel`).
    """

    levels = 2
    per_channel = True

    def __init__(self, grad: str = "xnor", clip: float = 1.0):
        super().__init__()
        if grad not in SCALED_SIGN_GRADS:
            raise ConfigError(f"unknown scaled-sign weight gradient '{grad}'; choose one of "
                              f"{', '.join(SCALED_SIGN_GRADS)}")
        self.grad, self.clip = grad, float(clip)

    def forward(self, latent: Tensor) -> Tensor:
        if self.grad == "autograd":
            return channel_abs_mean(latent) * sign_estimated(latent, "hardtanh", clip=self.clip)
        return _ScaledSignFn.apply(latent, self.grad, self.clip)

    def hard(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return channel_binary(latent)

    def extra_repr(self) -> str:
        return f"alpha_c·sign(w), grad={self.grad}, clip={self.clip:g}"
