"""Plain straight-through estimator (STE paper: Yin, Lyu, Zhang, Osher, Qi, Xin, ICLR 2019, arXiv 1903.05662).

Weights BinaryConnect-style (float latent w, forward at Q(w), the gradient at Q(w) applied to w; spec §4); for 1-bit
weights the classic gradient cancellation 1{|w| ≤ 1} and clipping of w to [−1, 1] (Courbariaux et al. 2015) are
options, on by default [choice]. Activations: the quantized ReLU of spec §2 at a fixed α from the half-normal Lloyd
fit, with the estimator μ' ∈ {identity, relu, clipped_relu} (default clipped_relu, the paper's best).
The paper's Table 1 setting keeps the weights float: run it as W32A2 / W32A4. Paper layer policy: all layers.
"""

import functools

from qbench import HParam, QuantReLUMethod, quant, register_method

_WEIGHT_RULES = ("auto", "binary", "ternary_twn", "ternary_exact", "uniform")


@register_method("ste")
class PlainSTE(QuantReLUMethod):
    """Plain STE: BinaryConnect weights, quantized ReLU with an identity / ReLU / clipped-ReLU backward."""

    family = "activation estimator"
    paper = ("Yin et al., Understanding Straight-Through Estimator in training activation quantized nets, ICLR 2019, "
             "arXiv 1903.05662")
    paper_policy = "all layers quantized (MNIST/CIFAR, float weights in Table 1)"
    hparams = {
        **QuantReLUMethod.relu_hparams(),
        "weights": HParam("auto", "weight quantizer: auto = binary at 1 bit, uniform symmetric at ≥ 2 bits (spec §1)",
                          _WEIGHT_RULES),
        "cancel_1bit": HParam(True, "1-bit weights: pass the gradient only where |w| ≤ 1 (BinaryConnect) [choice]",
                              (True, False)),
        "clip_weights": HParam(True, "1-bit weights: clip latent weights to [−1, 1] after each step [choice]",
                               (True, False)),
    }

    def weight_quantizer(self, bits):
        rule = self.hp.weights
        if rule == "auto":
            rule = "binary" if bits == 1 else "uniform"
        # "ternary_twn" is quant.weight.ternary_twn's default support |w| ≥ Δ
        fn = functools.partial(quant.weight.uniform, bits=bits) if rule == "uniform" else getattr(quant.weight, rule)
        cancel = 1.0 if (bits == 1 and self.hp.cancel_1bit) else None
        return quant.weight.StraightThroughWeight(fn, quant.weight.num_levels(bits), cancel_outside=cancel)

    def after_step(self, model):
        if self.hp.clip_weights and model.qbench_info.bits.weight == 1:
            quant.latent.clip_latent_weights_(model)
