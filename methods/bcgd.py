"""Blended coarse gradient descent (BCGD: Yin, Zhang, Lyu, Osher, Qi, Xin, arXiv 1808.05240; code
``penhunt/full-quantization-DNN``).

Update (spec §3): ``w ← (1−ρ)·w + ρ·Q(w) − η·g̃(Q(w))``. In the authors' order: G = Q(W); forward/backward at G;
W ← (1−ρ)W + ρG; then the optimizer step with the gradient taken at G, so momentum and weight decay act at the
blended point. ρ = 1e-5 constant (the code's per-epoch ρ ← min(rho_rate·ρ, 0.01) with rho_rate = 1); ρ = 0 is
BinaryConnect / the projected coarse gradient (see ``pcg``).
Quantizers (code): binary (1 bit), TWN-rule ternary with the code's scale Σ|w|I/n (2 bits), the 15-level
``bcgd_4bit`` (4 bits). Activations: quantized ReLU, clipped-ReLU estimator, learned α (rate 0.01, clamps).
Paper recipe: SGD momentum 0.95, weight decay 1e-4, lr 0.1, MultiStepLR. Paper layer policy: every conv quantized
(the first too), the final Linear float in the code; the ImageNet table reports both policies.
"""

import functools

import torch

from qbench import register_method
from qbench.method import HParam, QuantReLUMethod, latent_weights
from qbench.quant import weight as wq


@register_method("bcgd")
class BCGD(QuantReLUMethod):
    """Blended coarse gradient descent: BinaryConnect step at the blend (1−ρ)w + ρQ(w), learned activation α."""

    family = "update rule"
    paper = ("Yin et al., Blended coarse gradient descent for full quantization of deep neural networks, RMS 2019, "
             "arXiv 1808.05240")
    paper_policy = "all convs quantized incl. the first; final Linear float (code); ImageNet: both policies"
    weight_bits = (1, 2, 4)
    hparams = {
        **QuantReLUMethod.relu_hparams(learn_alpha=True),
        "rho": HParam(1e-5, "blend weight ρ toward Q(w) (spec §3)"),
        "rho_rate": HParam(1.0, "per-epoch growth ρ ← min(rho_rate·ρ, rho_max) (code; 1 = constant)"),
        "rho_max": HParam(0.01, "cap of the per-epoch ρ growth (code)"),
        "ternary_scale": HParam("code", "2-bit scale: 'code' = Σ|w|I/n (authors' code), 'twn' = Σ|w|I/|I| (TWN)",
                                ("code", "twn")),
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.rho_t = self.rho_at(0)

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        if bits == 1:
            fn = wq.binary
        elif bits == 2:
            fn = functools.partial(wq.ternary_twn, bcgd_code_scale=self.hp.ternary_scale == "code")
        else:
            fn = wq.bcgd_4bit
        return wq.StraightThroughWeight(fn, wq.num_levels(bits))

    def rho_at(self, epoch: int) -> float:
        # The code uses ρ_0 as given in the first epoch, then updates ρ ← min(rate·ρ, ρ_max) after each epoch:
        # ρ_e = min(rate^e·ρ_0, ρ_max) for e ≥ 1.
        rho = float(self.hp.rho)
        return rho if epoch == 0 else min(rho * float(self.hp.rho_rate) ** epoch, float(self.hp.rho_max))

    def on_epoch_start(self, model, epoch, epochs):
        self.rho_t = self.rho_at(epoch)

    def before_step(self, model):
        rho = self.rho_t
        if rho == 0.0:
            return
        with torch.no_grad():
            for latent, param in latent_weights(model):
                q = param.hard(latent)  # the G of this step's forward (cached), not a re-quantization
                latent.mul_(1.0 - rho).add_(q, alpha=rho)

    def search_space(self, trial):
        space = super().search_space(trial)
        space["rho"] = trial.suggest_float("rho", 1e-6, 1e-2, log=True)
        return space
