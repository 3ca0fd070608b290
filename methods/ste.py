"""Plain straight-through estimator (STE paper: Yin, Lyu, Zhang, Osher, Qi, Xin, ICLR 2019, arXiv 1903.05662).

Weights BinaryConnect-style (float latent w, forward at Q(w), the gradient at Q(w) applied to w; spec §4); for 1-bit
weights the classic gradient cancellation 1{|w| ≤ 1} and clipping of w to [−1, 1] (Courbariaux et al. 2015) are
options, on by default [choice]. Q (``weights=auto``) is the rule of the authors' code base, BCGD's
``penhunt/full-quantization-DNN`` (``BCGD_cifar/util/quant.py``, :func:`qbench.quant.weight.bcgd_quantizer`):
binary δ·sign(w), δ = mean|w| (``quantize_bw``, 1 bit); ternary with Δ = 0.7·mean|w| and scale Σ_{|w|≥Δ}|w|/n
(``quantize_tnn``, 2 bits); at ≥ 3 bits ``quantize_fbit``'s grid, δ = max|w|/(2^b − 1), bins at the odd multiples
of δ, least-squares scale. ``weights=auto_uniform`` is what ``auto`` meant before issue #15, to reproduce older
runs: binary at 1 bit, the max-scaled uniform grid s·round(w/s), s = max|w|/(2^{b−1} − 1), at ≥ 2 bits (it zeroes
every |w| < max|w|/2 at 2 bits: half of a default-initialised conv, 97 % of a Gaussian-initialised one).
Activations: the quantized ReLU of spec §2 at a fixed α from the half-normal Lloyd fit, with the estimator
μ' ∈ {identity, relu, clipped_relu} (default clipped_relu, the paper's best).
The paper's Table 1 setting keeps the weights float: run it as W32A2 / W32A4. Paper layer policy: all layers.
"""

import functools

from qbench import HParam, QuantReLUMethod, quant, register_method

_WEIGHT_RULES = ("auto", "auto_uniform", "binary", "ternary_twn", "ternary_exact", "uniform")


@register_method("ste")
class PlainSTE(QuantReLUMethod):
    """Plain STE: BinaryConnect weights, quantized ReLU with an identity / ReLU / clipped-ReLU backward."""

    family = "activation estimator"
    paper = ("Yin et al., Understanding Straight-Through Estimator in training activation quantized nets, ICLR 2019, "
             "arXiv 1903.05662")
    paper_policy = "all layers quantized (MNIST/CIFAR, float weights in Table 1)"
    hparams = {
        **QuantReLUMethod.relu_hparams(),
        "weights": HParam("auto", "weight quantizer: auto = the BCGD authors' binary / ternary / quantize_fbit grid "
                                  "by bit-width; auto_uniform = binary at 1 bit, max-scaled uniform at ≥ 2 bits "
                                  "(auto before issue #15)", _WEIGHT_RULES),
        "cancel_1bit": HParam(True, "1-bit weights: pass the gradient only where |w| ≤ 1 (BinaryConnect) [choice]",
                              (True, False)),
        "clip_weights": HParam(True, "1-bit weights: clip latent weights to [−1, 1] after each step [choice]",
                               (True, False)),
    }

    def weight_quantizer(self, bits):
        rule = self.hp.weights
        if rule == "auto_uniform":
            rule = "binary" if bits == 1 else "uniform"
        if rule == "auto":
            fn = quant.weight.bcgd_quantizer(bits)
        elif rule == "uniform":
            fn = functools.partial(quant.weight.uniform, bits=bits)
        else:  # "ternary_twn" is quant.weight.ternary_twn's default support |w| ≥ Δ
            fn = getattr(quant.weight, rule)
        cancel = 1.0 if (bits == 1 and self.hp.cancel_1bit) else None
        return quant.weight.StraightThroughWeight(fn, quant.weight.num_levels(bits), cancel_outside=cancel)

    def after_step(self, model):
        if self.hp.clip_weights and model.qbench_info.bits.weight == 1:
            quant.latent.clip_latent_weights_(model)
