"""Binary-Weight-Networks (BWN: Rastegari et al., *XNOR-Net*, arXiv 1603.05279, §3.1) — XNOR-Net's weight-only form.

Weights α_c·sign(w) with α_c = ‖w_c‖₁/n per output channel (eq. 2-6), backward ∂C/∂W_i = ∂C/∂W̃_i·(1/n +
α·1_{|W_i|≤1}) (§3.1, ``weight_grad="xnor"``; "autograd" is the exact chain rule through α, not in the paper) — the
weights of the ``xnor`` method (:class:`qbench.quant.sign.ScaledSignWeight`). Activations stay float
(``activation_bits = (32,)``: W1A1 is left out, not run with float activations under an A1 label).
Paper layer policy: as XNOR-Net, first and last layers real-valued (``policy=fp``).
"""

from qbench import HParam, Method, quant, register_method

__all__ = ["BinaryWeightNetwork"]


@register_method("bwn")
class BinaryWeightNetwork(Method):
    """BWN: XNOR-Net's per-output-channel α_c·sign(w) weights with float activations."""

    family = "weight quantizer"
    paper = "Rastegari et al., XNOR-Net (Binary-Weight-Networks, §3.1), arXiv 1603.05279"
    paper_policy = "first and last layers real-valued; binary weights, float activations elsewhere"
    weight_bits = (1,)
    activation_bits = (32,)
    hparams = {
        "weight_grad": HParam("xnor", "weight backward: 'xnor' = g·(1/n + α_c·1{|w| ≤ 1}) (§3.1), 'autograd' = exact "
                                      "chain rule through α_c (not in the paper)", quant.sign.XNOR_WEIGHT_GRADS,
                              space="choices"),
    }

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        return quant.sign.ScaledSignWeight(grad=self.hp.weight_grad)
