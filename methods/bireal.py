"""Bi-Real Net's training estimators (Liu, Wu, Luo, Yang, Liu, Cheng, *Bi-Real Net: enhancing the performance of
1-bit CNNs with improved representational capability and advanced training algorithm*, ECCV 2018, arXiv 1808.00278).

Only the two training ingredients, not the Bi-Real architecture (its extra real-valued shortcut per binary conv):

* **ApproxSign** for activations (§3.2, eq. 4-5): forward sign(x); backward the derivative of the piecewise
  polynomial F(x) = −1 (x < −1), 2x + x² (−1 ≤ x < 0), 2x − x² (0 ≤ x < 1), 1 (x ≥ 1), i.e. 2 + 2x on [−1, 0),
  2 − 2x on [0, 1), 0 elsewhere (:func:`qbench.quant.sign.approx_sign_grad`).
* **Magnitude-aware weights** (§3.3, eq. 6-7): W_b = (‖W_c‖₁/n)·sign(W_c) per output channel c, and
  ∂L/∂W_r ≈ ∂L/∂W_b·(‖W_c‖₁/n)·∂sign/∂W_r with ∂sign/∂W_r ≈ 1{|W_r| ≤ 1} — the scale enters the gradient, so the
  update depends on the weights' magnitude (``weight_grad="magnitude_aware"``).
Activations: sign(x) ∈ {±1} replacing the ReLU-family / hard-tanh modules (no input scale).
Paper layer policy: first conv and last FC real-valued (weights and activations), as XNOR-Net — ``policy=fp``.
Recipe (paper): initialise from a real-valued net trained with clip(−1, 1) in place of ReLU; SGD, momentum 0.9.
"""

from torch import nn

from qbench import HParam, Method, quant, register_method

__all__ = ["BiReal"]


@register_method("bireal")
class BiReal(Method):
    """Bi-Real estimators: ApproxSign backward for sign activations, magnitude-aware α_c·sign(w) weights."""

    family = "activation estimator"
    paper = "Liu et al., Bi-Real Net: 1-bit CNNs with improved representational capability, arXiv 1808.00278"
    paper_policy = "first conv and last FC real-valued; all other layers W1A1"
    weight_bits = (1,)
    activation_bits = (1,)
    activation_types = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
    hparams = {
        "estimator": HParam("approx_sign", "activation backward: 'approx_sign' (§3.2) or 'hardtanh' (the BNN STE "
                                           "the paper compares against)", ("approx_sign", "hardtanh"),
                            space="choices"),
        "weight_grad": HParam("magnitude_aware", "weight backward: 'magnitude_aware' g·α_c·1{|w| ≤ 1} (§3.3), "
                                                 "'xnor' (XNOR-Net) or 'autograd' (exact chain rule)",
                              quant.sign.SCALED_SIGN_GRADS, space=["magnitude_aware", "xnor"]),
    }

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        return quant.sign.ScaledSignWeight(grad=self.hp.weight_grad)

    def activation_quantizer(self, bits):
        return quant.sign.SignActivation(self.hp.estimator)

    def input_quantizer(self, bits, signed):
        # sign of a non-negative input is constant: such inputs get the unsigned 1-bit grid instead
        if signed:
            return quant.sign.SignActivation(self.hp.estimator)
        return quant.activation.InputQuantizer(bits, signed=False)
