"""Blended coarse gradient descent (BCGD: Yin, Zhang, Lyu, Osher, Qi, Xin, arXiv 1808.05240; code
``penhunt/full-quantization-DNN``).

Update (spec §3): ``w ← (1−ρ)·w + ρ·Q(w) − η·g̃(Q(w))``. In the authors' order: G = Q(W); forward/backward at G;
W ← (1−ρ)W + ρG (:func:`qbench.quant.latent.blend_latent_weights_`); then the optimizer step with the gradient taken at
G, so momentum and weight decay act at the blended point. ρ = 1e-5 constant (the code's per-epoch
ρ ← min(rho_rate·ρ, 0.01) with rho_rate = 1, applied at the start of every epoch, the first included:
``train_alm1_alpha``, ``BCGD_cifar/util/train_net_alpha.py`` line 344); ρ = 0 is BinaryConnect / the projected coarse
gradient (see ``pcg``).
Quantizers (code, :func:`qbench.quant.weight.bcgd_weight`): binary (1 bit), TWN-rule ternary with the code's scale
Σ|w|I/n (2 bits), the 15-level ``bcgd_4bit`` (4 bits). Activations: quantized ReLU, clipped-ReLU estimator, learned α
(rate 0.01, clamps).
Paper recipe: SGD momentum 0.95, weight decay 1e-4, lr 0.1, MultiStepLR. Paper layer policy: every conv quantized
(the first too), the final Linear float in the code; the ImageNet table reports both policies.
"""

from qbench import HParam, QuantReLUMethod, quant, register_method


@register_method("bcgd")
class BCGD(QuantReLUMethod):
    """Blended coarse gradient descent: BinaryConnect step at the blend (1−ρ)w + ρQ(w), learned activation α."""

    family = "update rule"
    paper = ("Yin et al., Blended coarse gradient descent for full quantization of deep neural networks, RMS 2019, "
             "arXiv 1808.05240")
    paper_policy = "all convs quantized incl. the first; final Linear float (code); ImageNet: both policies"
    weight_bits = quant.weight.BCGD_WEIGHT_BITS
    hparams = {
        **QuantReLUMethod.relu_hparams(learn_alpha=True),
        "rho": HParam(1e-5, "blend weight ρ toward Q(w) (spec §3), before the first epoch's update",
                      space=[1e-6, 1e-2, "log"]),
        "rho_rate": HParam(1.0, "growth ρ ← min(rho_rate·ρ, rho_max) at the start of every epoch (code; 1 = "
                                "constant)"),
        "rho_max": HParam(0.01, "cap of the per-epoch ρ growth (code)"),
        "ternary_scale": HParam("code", "2-bit scale: 'code' = Σ|w|I/n (authors' code), 'twn' = Σ|w|I/|I| (TWN)",
                                quant.weight.TERNARY_SCALES),
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.rho_t = self.rho_at(0)

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        return quant.weight.bcgd_weight(bits, self.hp.ternary_scale)

    def rho_at(self, epoch: int) -> float:
        """ρ of epoch ``epoch`` (0-based): the authors' code (``train_alm1_alpha``, train_net_alpha.py l. 344) runs
        ``rho = min(rho_rate*rho, .01)`` at the top of its epoch loop, before the epoch's steps, so epoch e trains
        with ρ_0 updated e + 1 times. Iterated rather than in closed form: with a rate below 1 and ρ_0 above the cap
        the two differ."""
        rho = float(self.hp.rho)
        for _ in range(epoch + 1):
            rho = min(float(self.hp.rho_rate) * rho, float(self.hp.rho_max))
        return rho

    def on_epoch_start(self, model, epoch, epochs):
        self.rho_t = self.rho_at(epoch)

    def before_step(self, model):
        quant.latent.blend_latent_weights_(model, self.rho_t)
