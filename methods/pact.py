"""PACT: parameterized clipping activation (Choi, Wang, Venkataramani, Chuang, Srinivasan, Gopalakrishnan, *PACT:
Parameterized clipping activation for quantized neural networks*, arXiv 1805.06085; spec §10).

* Activation (eq. 1–2): y = clip(x, 0, α) = ½(|x| − |x − α| + α), y_q = round(y·L/α)·α/L, L = 2^k − 1, with one learned
  α per activation layer, α₀ = 10 (§3).
* Backward: ∂y_q/∂x = 1 for 0 ≤ x < α, else 0 (the clip's derivative, straight through round); ∂y_q/∂α = 1{x ≥ α}
  (eq. 3: the STE treats y_q as y inside the range, so α only receives gradient from clipped inputs).
* α is L2-regularised with its own coefficient λ_α (§3): a separate optimizer group with ``weight_decay =
  alpha_decay`` (:meth:`param_group_options`); None puts α in the main group with the recipe's weight decay.
  The default 2e-4 is our [choice] at CIFAR-scale weight decay — tune it (it is in the search space).
* α is kept ≥ ``alpha_min`` after each step (not in the paper; it keeps L/α finite).
* Weights: the paper quantizes weights with DoReFa's scheme (§4): :class:`qbench.quant.dorefa.DoReFaWeight` (DoReFa
  eq. 9; E|w|·sign at 1 bit), shared with the ``dorefa`` method.
Inputs of quantized layers that are not ReLU outputs are outside the paper; they use qbench's EMA min-max input
quantizer (spec §2 placement [choice]). Paper layer policy: first and last layer floating point — issue #15's audit
says 8 bits (``int8_first_last``, what qbench/report/paper_refs.py assumes); §4 was not available to settle it.
Note: α₀ = 10 assumes the network can scale its pre-activations (affine BN); with LeNet-5's affine-free BN the
pre-activations are ~N(0, 1), and at 2 bits (threshold α/6 ≈ 1.7) most of them round to 0 while α stays near 10 —
α only moves through clipped inputs and its decay. Lower ``alpha_init`` for such models (it is in the search space).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qbench import BitsError, ConfigError, HParam, Method, quant, register_method

__all__ = ["pact_quantize", "PACTActivation", "PACT"]


class _PACTFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, levels: int) -> Tensor:
        ctx.save_for_backward(x, alpha)
        y = torch.minimum(torch.clamp(x, min=0.0), alpha)  # eq. 1
        return torch.round(y.mul_(levels / alpha)).mul_(alpha / levels)  # eq. 2 (in place: one more new tensor)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, alpha = ctx.saved_tensors
        grad_x = grad_alpha = None
        # one gated pass per mask (quant.gates; masks and `where` are slow on a CPU), α compared through x − α
        if ctx.needs_input_grad[0]:  # STE through round, the clip's derivative: 1{0 ≤ x < α}
            grad_x = quant.gates.keep_below(quant.gates.keep_above(grad, x, 0.0, inclusive=True), x, alpha)
        if ctx.needs_input_grad[1]:  # eq. 3: ∂y_q/∂α = 1{x ≥ α}
            grad_alpha = quant.gates.keep_above(grad, x, alpha, inclusive=True).sum().reshape(alpha.shape)
        return grad_x, grad_alpha, None


def pact_quantize(x: Tensor, alpha: Tensor, bits: int) -> Tensor:
    """PACT forward (eq. 1–2) with its backward (STE 1{0 ≤ x < α} for x, eq. 3 for α)."""
    return _PACTFn.apply(x, alpha.to(x.dtype), 2**bits - 1)


class PACTActivation(nn.Module):
    """PACT activation replacing a ReLU: a learned clipping level α (``nn.Parameter``, role "clip")."""

    qbench_param_roles = {"alpha": quant.learned.ROLE_CLIP}

    def __init__(self, bits: int, alpha_init: float = 10.0, alpha_min: float = 1e-3):
        super().__init__()
        if bits < 1 or bits > 16:
            raise BitsError(f"PACT supports 1..16 activation bits (got {bits}); use A32 for float activations")
        if not alpha_init > 0 or not 0 < alpha_min <= alpha_init:
            raise ConfigError(f"pact needs 0 < alpha_min ≤ alpha_init; got alpha_min={alpha_min}, "
                              f"alpha_init={alpha_init}")
        self.bits, self.alpha_min = bits, float(alpha_min)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))

    @property
    def levels(self) -> int:
        return 2**self.bits

    def forward(self, x: Tensor) -> Tensor:
        return pact_quantize(x, self.alpha.clamp_min(self.alpha_min), self.bits)

    def project_(self) -> None:
        self.alpha.clamp_(min=self.alpha_min)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={float(self.alpha.detach()):.4g}"


@register_method("pact")
class PACT(Method):
    """PACT: learned activation clipping α with gradient 1{x ≥ α} and its own L2 decay; DoReFa weights."""

    family = "activation estimator"
    paper = "Choi et al., PACT: Parameterized clipping activation for quantized neural networks, arXiv 1805.06085"
    paper_policy = "first and last layer floating point"
    # The paper reports 2–5-bit activations. At 1 bit the grid is {0, α} with threshold α/2 = 5 at α₀ = 10: every
    # BN-normalised activation is 0 and no gradient reaches the layers below, so A1 is left out.
    activation_bits = (2, 3, 4, 5, 6, 7, 8)
    hparams = {
        "alpha_init": HParam(10.0, "initial clipping level α₀ of every activation layer (paper §3: 10)",
                             space=[1.0, 10.0, "log"]),
        "alpha_decay": HParam(2e-4, "L2 decay λ_α on α in its own param group (paper §3; value our [choice]); "
                                    "None: the recipe's weight decay", space=[1e-6, 1e-2, "log"]),
        "alpha_min": HParam(1e-3, "α is clamped ≥ alpha_min after each step (not in the paper; keeps α > 0)"),
    }

    def weight_quantizer(self, bits):
        return quant.dorefa.DoReFaWeight(bits)  # PACT §4: DoReFa weight quantization

    def activation_quantizer(self, bits):
        return PACTActivation(bits, self.hp.alpha_init, self.hp.alpha_min)

    def param_group_options(self):
        if self.hp.alpha_decay is None:
            return {}
        return {quant.learned.ROLE_CLIP: {"weight_decay": float(self.hp.alpha_decay)}}

    def after_step(self, model):
        quant.learned.project_learned_(model)
