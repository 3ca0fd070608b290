"""Projected coarse gradient (REC: Long, Yin, Xin, *Recurrence of optimum for training weight and activation
quantized networks*, arXiv 2012.05529; spec §6).

``w ← w − η·g̃(Q(w))``: BCGD with ρ = 0 — the same quantizers (:func:`qbench.quant.weight.bcgd_weight`) and
activation estimator (the quantized ReLU with a learned α), no blend, no gradient cancellation, no clipping — so
``pcg`` vs ``bcgd`` isolates the effect of the blend. The recurrence diagnostics of spec §6 (loss at Q(w_t),
normalised Hamming distance of Q(w_t) to the best epoch's Q, flip rate, visits) are logged per epoch by the training
loop for every quantized method; for this method they are the paper's object of study.
"""

from qbench import HParam, QuantReLUMethod, quant, register_method


@register_method("pcg")
class ProjectedCoarseGradient(QuantReLUMethod):
    """Projected coarse gradient: BinaryConnect step at Q(w) with the coarse activation gradient (BCGD, ρ = 0)."""

    family = "update rule"
    paper = "Long, Yin, Xin, Recurrence of optimum for training weight and activation quantized nets, arXiv 2012.05529"
    paper_policy = "binary or ternary weights; as BCGD"
    weight_bits = quant.weight.BCGD_WEIGHT_BITS
    hparams = {
        **QuantReLUMethod.relu_hparams(learn_alpha=True),
        "ternary_scale": HParam("code", "2-bit scale: 'code' = Σ|w|I/n (BCGD authors' code), 'twn' = Σ|w|I/|I| "
                                        "(TWN)", quant.weight.TERNARY_SCALES),
    }

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        return quant.weight.bcgd_weight(bits, self.hp.ternary_scale)
