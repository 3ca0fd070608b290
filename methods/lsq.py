"""LSQ: learned step size quantization (Esser, McKinstry, Bablani, Appuswamy, Modha, *Learned step size
quantization*, ICLR 2020, arXiv 1902.08153; spec §10). The building blocks are in :mod:`qbench.quant.learned`.

* Quantizer (eq. 1–2): v̂ = ⌊clip(v/s, −Q_N, Q_P)⌉·s; weights and signed inputs Q_N = 2^{b−1}, Q_P = 2^{b−1} − 1;
  activations after a ReLU Q_N = 0, Q_P = 2^b − 1 (§2).
* Step gradient (eq. 3): ∂v̂/∂s = −v/s + ⌊v/s⌉ for −Q_N < v/s < Q_P, −Q_N below, Q_P above; data gradient the STE
  (eq. 5): 1 inside, 0 outside.
* Gradient scale (§2.2): the step's gradient is multiplied by g = 1/√(N·Q_P), N = the layer's number of weights, or
  of features for activations (``feature_count``: per example as in the text, or the batch's ``v.numel()`` as in
  the paper's code listing).
* Init (§2.1): s₀ = 2·⟨|v|⟩/√Q_P — from the weights when the model is quantized, from the first training batch for
  activations (averaged over ranks under torchrun). The quantizer replaces the ReLU, so for activations v is the
  ReLU's output relu(x), as in the paper (which quantizes after the ReLU), not the pre-ReLU input.
* One step per weight tensor and per activation layer, each an ``nn.Parameter`` trained with the weights (role
  "step"; ``step_weight_decay`` gives the steps their own decay). ``per_channel=True`` (one step per output channel)
  is an extension, not in the paper.
Bit-widths: 2–8 (the paper reports 2, 3, 4, 8; a signed 1-bit grid has Q_P = 0, so W1/A1 are left out).
Paper layer policy: first and last layers at 8 bits — ``policy=int8_first_last`` (suites/imagenet-w4a4.yaml).
"""

from __future__ import annotations

from qbench import HParam, Method, quant, register_method

__all__ = ["LSQ"]

_BITS = (2, 3, 4, 5, 6, 7, 8)


@register_method("lsq")
class LSQ(Method):
    """Learned step size quantization: per-layer learned steps with the scaled gradient of LSQ eq. 3, STE data path."""

    family = "weight quantizer"
    paper = "Esser et al., Learned step size quantization, ICLR 2020, arXiv 1902.08153"
    paper_policy = "first and last layers at 8 bits (qbench policy int8_first_last)"
    weight_bits = _BITS
    activation_bits = _BITS
    hparams = {
        "scale_grad": HParam(True, "multiply the step gradient by g = 1/√(N·Q_P) (paper §2.2; False: ablation)",
                             (True, False)),
        "feature_count": HParam("example", "N for activations: features of one example (paper text) or the "
                                           "batch's numel (paper code listing)", quant.learned.FEATURE_COUNTS),
        "per_channel": HParam(False, "one weight step per output channel (not in the paper)", (True, False),
                              space=[False, True]),
        "step_weight_decay": HParam(None, "weight decay of the step sizes in their own param group; None: the "
                                          "recipe's weight decay, like every other parameter (paper)",
                                    space=[1e-6, 1e-3, "log"]),
    }

    def weight_quantizer(self, bits):
        return quant.learned.LearnedStepWeight(bits, per_channel=self.hp.per_channel, scale_grad=self.hp.scale_grad)

    def activation_quantizer(self, bits):
        return quant.learned.LearnedStepQuantizer(bits, signed=False, scale_grad=self.hp.scale_grad,
                                                  feature_count=self.hp.feature_count)

    def input_quantizer(self, bits, signed):
        return quant.learned.LearnedStepQuantizer(bits, signed=signed, scale_grad=self.hp.scale_grad,
                                                  feature_count=self.hp.feature_count)

    def param_group_options(self):
        if self.hp.step_weight_decay is None:
            return {}
        return {quant.learned.ROLE_STEP: {"weight_decay": float(self.hp.step_weight_decay)}}

    def after_step(self, model):
        quant.learned.project_learned_(model)
