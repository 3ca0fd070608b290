"""Asymptotic quantized estimator (AQE: Chen, Liu, Zhang, Hou, Yang, *Propagating asymptotic-estimated gradients for
low bitwidth quantized neural networks*, IEEE JSTSP 2020, arXiv 2003.04296, eq. 18-22; spec §5, whose title was
another paper's).

Training forward ĥ = α·h(a) + (1−α)·a for activations and Ŵ = α·h(W) + (1−α)·W for weights; backward
∂L/∂a = 2α·∂L/∂ĥ·1{|a| ≤ 1} (at α = ½ exactly the BNN STE, Theorems 1-2); evaluation uses the hard h. h is sign
(1 bit), ternary with Δ = 0.5 (2 bits) or the nearest power of two (≥ 3 bits) — the Δ values are our [choice], the
paper gives none. After every update W ← clip(W, −1, 1). α is not stated in the paper [choice: 0.5, tunable]; the
optional linear ramp α: 0.5 → alpha_final over training is labelled "not in the paper".
Paper recipe: Adam lr 0.01 with exponential decay, batch 256, 200 epochs, from scratch. Paper layer policy: all layers
quantized incl. the first and last, except the network input (use ``policy=quantized``).
"""

import torch
from torch import nn

from qbench import ConfigError, HParam, Method, quant, register_method


class AQEWeight(quant.weight.WeightParametrization):
    """Weight parametrization Ŵ = α·h(W) + (1−α)·W while training, h(W) at evaluation (AQE eq. 18).

    ``ternary_delta`` is the 2-bit threshold Δ of h, or ``"twn"``: Δ = 0.7·mean|W| per layer (TWN's rule, arXiv
    1605.04711 eq. 10). Why not the spec's fixed Δ = 0.5 for weights: h's levels {−1, 0, 1} are on the activations'
    hard-tanh scale, but a conv's weights at a standard initialisation have |W| ≈ 1/√fan_in ≪ 0.5, so a fixed Δ = 0.5
    makes h(W) ≡ 0 — the evaluation network has all-zero weights (measured: 10 % on mnist5k at W2A2, chance). The
    paper reports only 1-bit weights, where sign() has no threshold; the relative Δ keeps 2-bit weights ternary at any
    weight scale (the BN after each conv absorbs the ±1 magnitude, as it does for sign at 1 bit)."""

    def __init__(self, bits: int, alpha: float, ternary_delta: float | str):
        super().__init__()
        self.bits, self.alpha, self.ternary_delta = bits, float(alpha), ternary_delta
        self.levels = quant.weight.num_levels(bits)

    def _delta(self, latent):
        if self.ternary_delta == "twn":
            return 0.7 * latent.detach().abs().mean()  # a 0-dim tensor: no host sync on a GPU
        return float(self.ternary_delta)

    def forward(self, latent):
        return quant.activation.aqe_blend(latent, self.alpha, self.bits, self._delta(latent), self.training)

    def hard(self, latent):
        with torch.no_grad():
            return quant.activation.aqe_h(latent, self.bits, self._delta(latent))

    def extra_repr(self):
        return f"bits={self.bits}, alpha={self.alpha:g}"


@register_method("aqe")
class AQE(Method):
    """Asymptotic quantized estimator: blend α·h(x) + (1−α)·x with a 2α-scaled hard-tanh backward, clipped weights."""

    family = "activation estimator"
    paper = ("Chen et al., Propagating asymptotic-estimated gradients for low bitwidth quantized neural networks, "
             "IEEE JSTSP 2020, arXiv 2003.04296")
    paper_policy = "all layers quantized incl. first and last, except the network input"
    activation_types = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
    hparams = {
        "alpha": HParam(0.5, "blend weight α of the quantized part (0.5 = BNN STE) [choice: not stated]",
                        space=[0.25, 1.0, "linear"]),
        "alpha_schedule": HParam("constant", "'linear': ramp α → alpha_final over training (not in the paper)",
                                 ("constant", "linear")),
        "alpha_final": HParam(1.0, "final α of the linear ramp (not in the paper)"),
        "ternary_delta": HParam(0.5, "2-bit h threshold Δ of activations [choice]"),
        "weight_ternary_delta": HParam("twn", "2-bit h threshold Δ of weights: 'twn' = 0.7·mean|W| per layer, or a "
                                       "number (the spec's 0.5 zeroes small weights) [choice]"),
        "clip_weights": HParam(True, "clip W to [−1, 1] after every update (paper)", (True, False)),
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.alpha_t = float(self.hp.alpha)
        self._modules_with_alpha: list = []

    def _track(self, module):
        self._modules_with_alpha.append(module)
        return module

    def weight_quantizer(self, bits):
        delta = self.hp.weight_ternary_delta
        if delta != "twn":
            try:
                delta = float(delta)
            except (TypeError, ValueError):
                raise ConfigError(f"aqe.weight_ternary_delta={delta!r}: use 'twn' or a number such as 0.5") from None
        return self._track(AQEWeight(bits, self.alpha_t, delta))

    def activation_quantizer(self, bits):
        return self._track(quant.activation.AQEActivation(bits, self.alpha_t, self.hp.ternary_delta))

    def input_quantizer(self, bits, signed):
        # The same blend for layer inputs that are not activation outputs (the paper quantizes all layers' inputs
        # except the network input).
        return self._track(quant.activation.AQEActivation(bits, self.alpha_t, self.hp.ternary_delta))

    def on_epoch_start(self, model, epoch, epochs):
        if self.hp.alpha_schedule == "linear" and epochs > 1:
            start, end = float(self.hp.alpha), float(self.hp.alpha_final)
            self.alpha_t = start + (end - start) * epoch / (epochs - 1)
        for module in self._modules_with_alpha:
            module.alpha = self.alpha_t

    def after_step(self, model):
        if self.hp.clip_weights:
            quant.latent.clip_latent_weights_(model)
