"""Binarized Neural Networks (BNN: Courbariaux, Hubara, Soudry, El-Yaniv, Bengio, *Binarized neural networks:
training deep neural networks with weights and activations constrained to +1 or −1*, arXiv 1602.02830).

Weights and activations binary (W1A1): x_b = sign(x) (eq. 1; +1 for x ≥ 0), no scaling factors — every binary layer
is followed by BN. Backward: the straight-through estimator of §1.3, g_r = g_q·1_{|r|≤1} (the derivative of
Htanh(x) = clip(x, −1, 1)); the real-valued weights accumulate the gradient taken at the binary weights and are
clipped to [−1, 1] after each update (Algorithm 1: W ← Clip(Update(W, η, g_{W_b}), −1, 1)). With clipping the
weights never leave [−1, 1], so the STE cancellation on weights (``cancel_grad``) is a no-op after the first step.

Activations: the sign activation replaces the ReLU-family / hard-tanh modules (the BNN ConvNet uses
``nn.Hardtanh``; LeNet-5 here has BN before each activation, as BNN's BN → sign). The network input is never
quantized, as in the paper (§1.6, "first layer": real-valued 8-bit input; qbench keeps it float). Layers whose input
is not a sign output (after global pooling, in ViT blocks, …) get the same sign quantizer as input quantizer (a
non-negative input gets the unsigned 1-bit grid {0, s} of :class:`~qbench.quant.activation.InputQuantizer`).
Paper layer policy: all layers' weights binary including the first and the last (with BN after the output layer);
activations binary except the network input — use ``policy=quantized`` to match it.
Recipe (paper): Adam (shift-based AdaMax), BN, exponentially decaying lr, many epochs (e.g. 500 on CIFAR-10).
"""

from torch import nn

from qbench import HParam, Method, quant, register_method

__all__ = ["BNN"]


@register_method("bnn")
class BNN(Method):
    """BNN: sign weights and sign activations with the hard-tanh STE 1{|x| ≤ 1}, latent weights clipped to [−1, 1]."""

    family = "activation estimator"
    paper = "Courbariaux, Hubara et al., Binarized Neural Networks (BNN), arXiv 1602.02830"
    paper_policy = "all layers' weights binary incl. first and last; activations binary except the network input"
    weight_bits = (1,)
    activation_bits = (1,)
    activation_types = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
    hparams = {
        "ste_clip": HParam(1.0, "activation STE passes the gradient where |x| ≤ ste_clip (§1.3: 1)",
                           space=[0.5, 2.0, "linear"]),
        "clip_weights": HParam(True, "clip latent weights to [−1, 1] after each update (Algorithm 1)", (True, False)),
        "cancel_grad": HParam(True, "weight STE 1{|w| ≤ 1} (a no-op while weights are clipped)", (True, False)),
    }

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        # eq. 1: W_b = sign(W), no scale; the gradient at W_b is applied to W (Algorithm 1)
        return quant.weight.StraightThroughWeight(quant.weight.sign_nonzero, 2,
                                                  cancel_outside=1.0 if self.hp.cancel_grad else None)

    def activation_quantizer(self, bits):
        return quant.sign.SignActivation("hardtanh", clip=float(self.hp.ste_clip))

    def input_quantizer(self, bits, signed):
        # sign of a non-negative input is constant +1: such inputs get the unsigned 1-bit grid instead
        if signed:
            return quant.sign.SignActivation("hardtanh", clip=float(self.hp.ste_clip))
        return quant.activation.InputQuantizer(bits, False)

    def after_step(self, model):
        if self.hp.clip_weights:
            quant.latent.clip_latent_weights_(model)
