"""Binary-Weight-Networks (BWN: Rastegari et al., *XNOR-Net*, arXiv 1603.05279, §3.1) — XNOR-Net's weight-only form.

Weights α_c·sign(w) with α_c = ‖w_c‖₁/n per output channel (eq. 2-6), backward ∂C/∂W_i = ∂C/∂W̃_i·(1/n +
α·1_{|W_i|≤1}) (§3.1); activations stay float (``activation_bits = (32,)``: W1A1 is left out, not run with float
activations under an A1 label). Paper layer policy: as XNOR-Net, first and last layers real-valued (``policy=fp``).
"""

from qbench import register_method

from .xnor import _WEIGHT_GRADS, XNORNet

__all__ = ["BinaryWeightNetwork"]


@register_method("bwn")
class BinaryWeightNetwork(XNORNet):
    """BWN: XNOR-Net's per-output-channel α_c·sign(w) weights with float activations."""

    family = "weight quantizer"
    paper = "Rastegari et al., XNOR-Net (Binary-Weight-Networks, §3.1), arXiv 1603.05279"
    paper_policy = "first and last layers real-valued; binary weights, float activations elsewhere"
    activation_bits = (32,)
    hparams = {"weight_grad": XNORNet.hparams["weight_grad"]}

    # Overrides XNOR-Net's sign activations: unreachable through quantize_model (activation_bits = (32,)), but a
    # direct call on this weight-only subclass must not hand out its parent's activation quantizer.
    def activation_quantizer(self, bits):
        return None

    def input_quantizer(self, bits, signed):
        return None

    def search_space(self, trial):
        return {"weight_grad": trial.suggest_categorical("weight_grad", list(_WEIGHT_GRADS))}

