"""IR-Net (Qin, Gong, Liu, Shen, Wei, Yu, Song, *Forward and backward information retention for accurate binary
neural networks*, CVPR 2020, arXiv 1909.10788; code ``htqin/IR-Net``).

* **Libra-PB** (§3.1): weights are balanced and standardised before the sign, ŵ_std = (w − mean(w))/std(w − mean(w))
  — zero mean maximises the entropy of the binary weights, unit std keeps them informative — and binarised as
  Q_w = sign(ŵ_std) << >> s with the power-of-two scale s = round(log2(‖ŵ_std‖₁/n)), i.e. 2^s·sign(ŵ_std) (a bit shift
  at inference). Mean, std and s are per output channel as in the authors' code (``ir_1w1a.py``: ``view(size(0),
  -1)``); std is the unbiased sample std (torch's default there); s is detached; the gradient flows through the
  standardisation (autograd, as in the code).
* **EDE** (§3.2): sign backward g = k·t·(1 − tanh²(t·x)) — the derivative of k·tanh(t·x) — for weights AND
  activations, with t = T_min·10^{(i/N)·log10(T_max/T_min)}, k = max(1/t, 1), i the epoch, N the total
  (:func:`qbench.quant.sign.ede_schedule`, set every epoch by :meth:`IRNet.on_epoch_start`). T_min = 10⁻¹, T_max = 10¹
  in the paper; the authors' CIFAR code uses T_min = 10⁻³ (``t_min`` hparam).
* Activations: sign(x) ∈ {±1}, no scale, replacing the ReLU-family / hard-tanh modules (the paper's ResNets use
  Hardtanh, binarised at the next conv's input).
Paper layer policy: all conv and FC layers binary except the first and the last (README / §4) — ``policy=fp``.
Recipe (code): SGD lr 0.1, momentum 0.9, wd 1e-4, cosine, 400 epochs on CIFAR-10, from scratch.
"""

import torch
from torch import nn

from qbench import HParam, Method, quant, register_method

__all__ = ["IRNet", "LibraWeight", "libra_standardize", "libra_binary"]


def _per_channel(w):
    return w.reshape(w.shape[0], -1) if w.dim() >= 2 else w.reshape(1, -1)


def libra_standardize(w):
    """ŵ_std = (w − mean_c)/std_c per output channel (IR-Net §3.1, Libra-PB), differentiable; std is unbiased (the
    code's ``std(-1)``), floored at 1e-12 for constant channels (one-weight channels use std = 1)."""
    flat = _per_channel(w)
    centred = flat - flat.mean(dim=1, keepdim=True)
    if flat.shape[1] > 1:
        std = centred.std(dim=1, keepdim=True).clamp_min(1e-12)
    else:
        std = torch.ones_like(centred)
    return (centred / std).reshape(w.shape)


def libra_scale(z):
    """2^round(log2(‖z_c‖₁/n)) per output channel (IR-Net §3.1: s = round(log2(‖ŵ_std‖₁/n))), detached."""
    with torch.no_grad():
        flat = _per_channel(z)
        s = torch.round(torch.log2(flat.abs().mean(dim=1, keepdim=True).clamp_min(1e-12)))
        scale = torch.pow(2.0, s)
        return scale.reshape(-1, *([1] * (z.dim() - 1))) if z.dim() >= 2 else scale.reshape(())


def libra_binary(w, balance=True, pow2_scale=True):
    """Hard Libra-PB weights: 2^s·sign(ŵ_std) (or plain sign(w) pieces when an option is off), no autograd."""
    with torch.no_grad():
        z = libra_standardize(w) if balance else w
        q = quant.weight.sign_nonzero(z)
        return libra_scale(z) * q if pow2_scale else q


class LibraWeight(quant.weight.WeightParametrization):
    """Libra-PB weight parametrization with the EDE backward; ``t``/``k`` are set every epoch by the method."""

    levels = 2
    per_channel = True

    def __init__(self, balance=True, pow2_scale=True, t=0.1, k=10.0):
        super().__init__()
        self.balance, self.pow2_scale = balance, pow2_scale
        self.t, self.k = float(t), float(k)

    def forward(self, latent):
        z = libra_standardize(latent) if self.balance else latent
        # EDE for the weights too (code: BinaryQuantize)
        q = quant.sign.sign_estimated(z, "ede", t=self.t, k=self.k)
        return libra_scale(z) * q if self.pow2_scale else q

    def hard(self, latent):
        return libra_binary(latent, self.balance, self.pow2_scale)

    def extra_repr(self):
        return f"balance={self.balance}, pow2_scale={self.pow2_scale}, t={self.t:.4g}, k={self.k:.4g}"


@register_method("irnet")
class IRNet(Method):
    """IR-Net: Libra-PB balanced/standardised binary weights with a 2^s scale, sign activations, EDE backward."""

    family = "activation estimator"
    paper = "Qin et al., IR-Net: forward and backward information retention for accurate BNNs, arXiv 1909.10788"
    paper_policy = "all conv/FC layers W1A1 except the first and the last"
    weight_bits = (1,)
    activation_bits = (1,)
    activation_types = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
    hparams = {
        "t_min": HParam(0.1, "EDE T_min (paper 10⁻¹; authors' CIFAR code 10⁻³)", space=[1e-3, 0.5, "log"]),
        "t_max": HParam(10.0, "EDE T_max (paper 10¹)", space=[2.0, 50.0, "log"]),
        "balance": HParam(True, "Libra-PB: standardise each output channel (w − mean)/std before sign (§3.1)",
                          (True, False)),
        "pow2_scale": HParam(True, "Libra-PB: scale 2^round(log2 mean|ŵ_std|) per output channel (§3.1)",
                             (True, False)),
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.t, self.k = quant.sign.ede_schedule(0, 1, float(self.hp.t_min), float(self.hp.t_max))  # checks the range

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        return LibraWeight(bool(self.hp.balance), bool(self.hp.pow2_scale), self.t, self.k)

    def activation_quantizer(self, bits):
        return quant.sign.SignActivation("ede", t=self.t, k=self.k)

    def input_quantizer(self, bits, signed):
        # sign of a non-negative input is constant: such inputs get the unsigned 1-bit grid instead
        if signed:
            return quant.sign.SignActivation("ede", t=self.t, k=self.k)
        return quant.activation.InputQuantizer(bits, signed=False)

    def on_epoch_start(self, model, epoch, epochs):
        # EDE schedule (§3.2): t from T_min at epoch 0 to T_max at epoch N, k = max(1/t, 1)
        self.t, self.k = quant.sign.ede_schedule(epoch, epochs, float(self.hp.t_min), float(self.hp.t_max))
        for _, param in quant.latent.latent_weights(model):
            param.t, param.k = self.t, self.k
        for module in model.modules():
            if isinstance(module, quant.sign.SignActivation) and module.estimator == "ede":
                module.set_ede(self.t, self.k)

