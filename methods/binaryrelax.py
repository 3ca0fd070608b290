"""BinaryRelax (Yin, Zhang, Lyu, Osher, Qi, Xin, *BinaryRelax: a relaxation approach for training deep neural
networks with quantized weights*, SIAM J. Imaging Sci. 2018, arXiv 1801.06313; code ``penhunt/binaryrelax``).

The hard constraint w ∈ Q is relaxed into the Moreau-envelope regulariser (λ/2)·dist(w, Q)², whose proximal point is
the linear interpolation u = (w + λ·Proj_Q(w))/(1 + λ) (§3, Algorithm 1). Two phases:

* Phase I (relaxed): forward/backward at the pseudo-quantized u, the gradient at u updates the float w
  (w ← w − γ·∇f(u)), λ grows geometrically (continuation): λ_{e} = λ₀·ρ^{e+1} per epoch e — the authors' code
  (``train_eta``) multiplies η ← ρ·η at the start of every epoch, so the first epoch already uses λ₀·ρ. The spec's
  note says the code grows it every half epoch; the stored code grows it once per epoch, which is what is done here.
* Phase II (hard): from epoch ⌊hard_fraction·N⌋ on (150 of 200 in the paper and code), u = Proj_Q(w).

Proj_Q is the exact L2 projection: binary δ·sign(w), δ = mean|w| (1 bit), the exact ternary projection (2 bits,
spec §1 / LBW, O(N log N)); ``ternary="twn"`` uses the TWN rule and ``ternary="code"`` the code's TWN variant with
the scale Σ|w|·I/n. Evaluation and export always use Proj_Q(w). The paper quantizes weights only (float ReLU
activations), so the method is weight-only (``activation_bits = (32,)``). Paper layer policy (code, ``get_model2``):
every conv quantized including the first, the final Linear classifier float.
Recipe (paper/code): from a float checkpoint, SGD lr 0.1, momentum 0.9, weight decay 1e-4, MultiStepLR [80, 140] ×0.1,
200 epochs, λ₀ = 1, ρ = 1.04.
"""

import functools
import math

import torch

from qbench import ConfigError, HParam, Method, quant, register_method

__all__ = ["BinaryRelax", "RelaxedWeight", "relaxed_point"]


def relaxed_point(w, q, lam):
    """u = (w + λ·q)/(1 + λ), q = Proj_Q(w): the minimiser of ½‖u − w‖² + (λ/2)·‖u − q‖² (BinaryRelax §3)."""
    return (w + lam * q) / (1.0 + lam)


class _StraightThroughValue(torch.autograd.Function):
    """Forward a precomputed value, backward the identity: the gradient at u is the update of w (Algorithm 1)."""

    @staticmethod
    def forward(ctx, w, value):
        return value

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class RelaxedWeight(quant.weight.WeightParametrization):
    """Parametrization u = (w + λ·Q(w))/(1 + λ) while training in phase I, Q(w) in phase II and at evaluation."""

    def __init__(self, quantize, levels, lam=1.0):
        super().__init__()
        self.quantize, self.levels = quantize, levels
        self.lam, self.hard_phase = float(lam), False

    def forward(self, latent):
        with torch.no_grad():
            q = self.quantize(latent)
            value = q if (self.hard_phase or not self.training) else relaxed_point(latent, q, self.lam)
        return _StraightThroughValue.apply(latent, value)

    def hard(self, latent):
        with torch.no_grad():
            return self.quantize(latent)

    def extra_repr(self):
        return f"{quant.weight.describe_quantizer(self.quantize)}, lambda={self.lam:.4g}, hard_phase={self.hard_phase}"


@register_method("binaryrelax")
class BinaryRelax(Method):
    """BinaryRelax: train at the relaxed u = (w + λQ(w))/(1+λ) with λ growing per epoch, then at Q(w) (phase II)."""

    family = "update rule"
    paper = "Yin et al., BinaryRelax: a relaxation approach for training DNNs with quantized weights, arXiv 1801.06313"
    paper_policy = "all convs quantized incl. the first, final Linear float (code); float activations"
    weight_bits = (1, 2)
    activation_bits = (32,)
    hparams = {
        "lambda0": HParam(1.0, "initial relaxation weight λ₀ (paper/code: 1)"),
        "lambda_rate": HParam(1.04, "λ ← ρ·λ at the start of every epoch (code: ρ = 1.04)",
                              space=[1.0, 1.1, "linear"]),
        "hard_fraction": HParam(0.75, "phase II (u = Q(w)) from epoch ⌊hard_fraction·N⌋ (paper: 150 of 200)",
                                space=[0.5, 0.95, "linear"]),
        "ternary": HParam("exact", "2-bit Proj_Q: 'exact' L2 projection (spec §1), 'twn' rule, or 'code' (TWN, scale "
                                   "Σ|w|I/n as in the authors' quantize_tnn)", ("exact", "twn", "code")),
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        if float(self.hp.lambda0) < 0 or float(self.hp.lambda_rate) < 1:
            raise ConfigError("binaryrelax needs lambda0 ≥ 0 and lambda_rate ≥ 1 (continuation); e.g. lambda0=1, "
                              "lambda_rate=1.04")
        if not 0 <= float(self.hp.hard_fraction) <= 1:
            raise ConfigError(f"binaryrelax.hard_fraction={self.hp.hard_fraction} must lie in [0, 1], e.g. 0.75")
        self.lam_t, self.hard_t = self.lambda_at(0), False

    def lambda_at(self, epoch: int) -> float:
        # code (train_eta): `eta = eta_rate * eta` before each phase-I epoch → λ_e = λ₀·ρ^{e+1}
        return float(self.hp.lambda0) * float(self.hp.lambda_rate) ** (epoch + 1)

    def hard_start(self, epochs: int) -> int:
        return int(math.floor(float(self.hp.hard_fraction) * epochs))

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        if bits == 1:
            fn = quant.weight.binary  # exact projection onto {±δ}ⁿ: δ = mean|w|
        elif self.hp.ternary == "exact":
            fn = quant.weight.ternary_exact
        else:  # the code's quantize_tnn: |w| ≥ Δ
            fn = functools.partial(quant.weight.ternary_twn, bcgd_code_scale=self.hp.ternary == "code")
        return RelaxedWeight(fn, quant.weight.num_levels(bits), self.lam_t)

    def on_epoch_start(self, model, epoch, epochs):
        self.hard_t = epoch >= self.hard_start(epochs)
        self.lam_t = self.lambda_at(epoch)
        for _, param in quant.latent.latent_weights(model):
            param.lam, param.hard_phase = self.lam_t, self.hard_t
