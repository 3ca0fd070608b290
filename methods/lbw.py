"""LBW-style thresholding (Yin, Zhang, Qi, Xin, *Quantization and training of low bit-width convolutional neural
networks for object detection*, arXiv 1612.06052; spec §7).

Weights: binary (1 bit), the exact ternary L2 projection in O(N log N) (2 bits), power-of-two levels
α·{0, ±2^{1−n}, …, ±1} (≥ 3 bits) whose scale rule α = c·max|w| (+ optional least-squares refits) is our [choice]
— hence "LBW-style". Training: BinaryConnect style (the §6 update). Activations: the quantized ReLU of spec §2 at a
fixed Lloyd-fit α with the clipped-ReLU estimator [choice: the paper is about weights]. Paper layer policy: the
detector's backbone quantized (detection only: 6-bit nearly lossless on PASCAL VOC).
"""

import functools

from qbench import HParam, QuantReLUMethod, quant, register_method


@register_method("lbw")
class LBW(QuantReLUMethod):
    """LBW-style weights: exact ternary projection at 2 bits, power-of-two levels at ≥ 3 bits, BinaryConnect step."""

    family = "weight quantizer"
    paper = "Yin et al., Quantization and training of low bit-width CNNs for object detection, arXiv 1612.06052"
    paper_policy = "backbone quantized (object detection)"
    hparams = {
        **QuantReLUMethod.relu_hparams(),
        "pow2_c": HParam(0.75, "≥ 3 bits: α = c·max|w|, c ∈ [0.5, 1] [choice]", space=[0.5, 1.0, "linear"]),
        "pow2_refits": HParam(0, "≥ 3 bits: least-squares refits of α (0-3) [choice]", space=[0, 3, "linear"]),
    }

    def weight_quantizer(self, bits):
        if bits == 1:
            fn = quant.weight.binary
        elif bits == 2:
            fn = quant.weight.ternary_exact
        else:
            fn = functools.partial(quant.weight.pow2, bits=bits, c=float(self.hp.pow2_c),
                                   refits=int(self.hp.pow2_refits))
        return quant.weight.StraightThroughWeight(fn, quant.weight.num_levels(bits))
