"""XNOR-Net (Rastegari, Ordonez, Redmon, Farhadi, *XNOR-Net: ImageNet classification using binary convolutional
neural networks*, ECCV 2016, arXiv 1603.05279). Its weight-only form, BWN, is the separate method ``bwn``.

Weights (§3.1, eq. 2-6): W ≈ α_c·B_c per output channel (filter) c, B* = sign(W), α* = ‖W_c‖₁/n (n weights per
filter) — the L2-optimal binary approximation. Backward (§3.1, training paragraph): ∂C/∂W_i =
∂C/∂W̃_i·(1/n + α·∂sign/∂W_i) with ∂sign/∂r = 1_{|r|≤1} (``weight_grad="xnor"``; "autograd" is the exact chain rule
through α, not in the paper).
Inputs (§3.2): binary inputs H = sign(X) scaled by β = ‖X‖₁/n (eq. 7-9); for convolutions the scale map K (eq. 11)
holds β at every output position. qbench scales each sample by its own β = mean|x| over all its non-batch dims
(``input_scale="sample"``): K's per-sample average — input-dependent like K, exact for a dense layer fed a flat
vector, and computable inside the activation module without knowing the next layer's kernel (see
:class:`qbench.quant.sign.SignActivation`). A per-layer constant would carry no information: the BN that follows
absorbs it. Sign backward: the hard-tanh STE 1{|x| ≤ 1}, β a constant.
The binary activation replaces the ReLU-family / hard-tanh modules (the paper's block BN → BinActiv → BinConv →
Pool drops the ReLU; qbench keeps the model's order, e.g. LeNet-5's BN → sign → max-pool, which preserves ±β values).
Paper layer policy: first and last layers real-valued (weights and inputs), as in the authors' released code —
``policy=fp``. Recipe (paper): AlexNet / ResNet-18 on ImageNet, Adam, BN, lr 0.1 → decayed.
"""

from torch import nn

from qbench import HParam, Method, quant, register_method

__all__ = ["XNORNet"]


@register_method("xnor")
class XNORNet(Method):
    """XNOR-Net: per-output-channel α_c·sign(w) weights, sign inputs scaled by the per-sample β = mean|x|."""

    family = "weight quantizer"
    paper = "Rastegari et al., XNOR-Net: ImageNet classification using binary CNNs, arXiv 1603.05279"
    paper_policy = "first and last layers real-valued (weights and inputs); all others W1A1"
    weight_bits = (1,)
    activation_bits = (1,)
    activation_types = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
    hparams = {
        "weight_grad": HParam("xnor", "weight backward: 'xnor' = g·(1/n + α_c·1{|w| ≤ 1}) (§3.1), 'autograd' = exact "
                                      "chain rule through α_c (not in the paper)", quant.sign.XNOR_WEIGHT_GRADS,
                              space="choices"),
        "input_scale": HParam("sample", "binary inputs × β = mean|x| per sample (§3.2 K/β, [choice] per sample) or "
                                        "'none' (plain sign)", ("sample", "none"), space="choices"),
        "ste_clip": HParam(1.0, "sign STE passes the gradient where |x| ≤ ste_clip (1 in the paper)"),
    }

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        return quant.sign.ScaledSignWeight(grad=self.hp.weight_grad)

    def _sign(self):
        return quant.sign.SignActivation("hardtanh", scale=self.hp.input_scale, clip=float(self.hp.ste_clip))

    def activation_quantizer(self, bits):
        return self._sign()

    def input_quantizer(self, bits, signed):
        # sign of a non-negative input is constant: such inputs get the unsigned 1-bit grid {0, s} instead
        return self._sign() if signed else quant.activation.InputQuantizer(bits, signed=False)
