"""ProxQuant (Bai, Wang, Liberty, *ProxQuant: quantized neural networks via proximal operators*, ICLR 2019,
arXiv 1810.00861; code ``allenbai01/ProxQuant``), binary weights.

Prox-gradient training (§3, Algorithm 1): θ_t = prox_{η_t·λ_t·R}(θ_{t−1} − η_t·∇L(θ_{t−1})) — the gradient is taken
at the FLOAT weights (the training forward uses w itself, no quantizer), then after ``optimizer.step()`` the prox
of the quantization-inducing regulariser pulls w toward the quantized set. Binary regulariser (§3.1, the "W-shaped"
R_bin(θ) = Σ_j min{|θ_j − 1|, |θ_j + 1|} = ‖θ − sign(θ)‖₁): its prox is soft thresholding toward the nearest ±1,
prox_{τR_bin}(θ) = sign(θ) + sign(θ − sign(θ))·[|θ − sign(θ)| − τ]_+, τ = η_t·λ_t (the code's
``BinOp.prox_operator``: ``sign(p)·(relu(||p| − 1| − reg)·sign(|p| − 1) + 1)`` with ``reg = lr·br``), followed in
the code by clipping to [−1, 1] (``bin_op.clip()``, ``clip_weights``). The quantized weights are the unit ±1 (no
scale), as R_bin's minimisers; evaluation uses sign(w).
λ_t grows linearly (§3: λ_t = λ·t): the code's ``br = reg_rate·epoch`` (per epoch, reg_rate = 1e-4, so the first
epoch trains without the prox) is the default ``reg_schedule="epoch"``; ``"step"`` uses λ_t = reg_rate·t with t the
optimizer step (Algorithm 1's iteration index; the counter is a buffer, so it survives checkpoints). The step size
η_t is the optimizer's current lr (``Method.step_lr``).
Hard quantization at the end (§4 / code ``--freeze_epoch``): from epoch ⌊freeze_fraction·N⌋ on (200 of 300 in the
code's CIFAR script) the weights are sign(w) and frozen; the rest of the network (BN, float layers) keeps training.
Multi-bit ProxQuant (the alternating-quantization set of the LSTM experiments) is not implemented: W1 only.
Activations float (the paper quantizes weights): weight-only, ``activation_bits = (32,)``.
Paper layer policy (code ``if_binary``): every conv and FC weight binary incl. the first conv and the last FC; BN
and the downsampling shortcuts float. Recipe (code): from a float checkpoint, Adam lr 0.01, 300 epochs, freeze at 200.
No weight decay on the latent weights, whatever the recipe's (their own param group, role "latent"): in prox mode the
code trains without any (``main_binary_reg.py``: the optimizer is built as ``SGD(params, lr)``, weight decay 0, line
229; the Adam regime sets none, line 200, and with SGD a ``projection_mode`` sets ``regime[0]['weight_decay'] = 0.0``,
line 204, "Remove weight decay when using SGD"); decay would pull w toward 0, against the prox's pull toward ±1.
The code's optimizer has no decay on BN and the float layers either: a suite that reproduces it sets
``train.weight_decay: 0``.
"""

import math
import warnings

import torch

from qbench import ConfigError, HParam, Method, quant, register_method

__all__ = ["ProxQuant", "ProxQuantWeight", "prox_binary"]


def prox_binary(w, tau):
    """prox_{τ·R_bin}(w) = argmin_z ½(z − w)² + τ·min|z ∓ 1|: soft-threshold w toward its nearest ±1 by τ
    (ProxQuant §3.1; sign(0) = +1). τ ≥ |w − sign(w)| lands exactly on ±1."""
    q = quant.weight.sign_nonzero(w)
    d = w - q
    return q + torch.sign(d) * torch.clamp(d.abs() - tau, min=0.0)


class ProxQuantWeight(quant.weight.WeightParametrization):
    """Float w while training (gradient at the float weights), sign(w) at evaluation; sign(w) frozen (no gradient
    reaches w) once ``frozen`` is set for the final hard-quantized phase."""

    levels = 2

    def __init__(self):
        super().__init__()
        self.frozen = False
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # optimizer steps taken (step schedule)

    def forward(self, latent):
        if self.training and not self.frozen:
            return latent
        return quant.weight.sign_nonzero(latent)  # no autograd path to latent: frozen weights get no gradient

    def hard(self, latent):
        with torch.no_grad():
            return quant.weight.sign_nonzero(latent)

    def extra_repr(self):
        return f"sign(w) at eval, frozen={self.frozen}"


@register_method("proxquant")
class ProxQuant(Method):
    """ProxQuant: prox-SGD on float weights toward ±1 with a linearly growing λ_t, then hard sign(w) frozen."""

    family = "update rule"
    paper = "Bai, Wang, Liberty, ProxQuant: quantized neural networks via proximal operators, arXiv 1810.00861"
    paper_policy = "every conv/FC weight binary incl. first and last (code); float activations"
    weight_bits = (1,)
    activation_bits = (32,)
    hparams = {
        "reg_rate": HParam(1e-4, "λ_t = reg_rate·t (code: 1e-4 per epoch)", space=[1e-5, 1e-2, "log"]),
        "reg_schedule": HParam("epoch", "t counts epochs (authors' code) or optimizer steps (Algorithm 1)",
                               ("epoch", "step")),
        "freeze_fraction": HParam(2 / 3, "hard sign(w), frozen, from epoch ⌊freeze_fraction·N⌋ (code: 200 of 300)",
                                  space=[0.5, 0.95, "linear"]),
        "clip_weights": HParam(True, "clip w to [−1, 1] after each prox step (code)", (True, False)),
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        if float(self.hp.reg_rate) < 0:
            raise ConfigError(f"proxquant.reg_rate={self.hp.reg_rate} must be ≥ 0, e.g. 1e-4")
        if not 0 <= float(self.hp.freeze_fraction) <= 1:
            raise ConfigError(f"proxquant.freeze_fraction={self.hp.freeze_fraction} must lie in [0, 1], e.g. 0.667")
        self.epoch, self.frozen = 0, False
        self._warned = False

    def freeze_start(self, epochs: int) -> int:
        return int(math.floor(float(self.hp.freeze_fraction) * epochs))

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        return ProxQuantWeight()

    def param_group_options(self):
        # the authors' prox mode trains without weight decay (main_binary_reg.py, see the module docstring)
        return {quant.learned.ROLE_LATENT: {"weight_decay": 0.0}}

    def on_epoch_start(self, model, epoch, epochs):
        self.epoch = epoch
        self.frozen = epoch >= self.freeze_start(epochs)
        for _, param in quant.latent.latent_weights(model):
            param.frozen = self.frozen

    def reg_at(self, steps: int) -> float:
        """λ_t: reg_rate·epoch (code) or reg_rate·steps (Algorithm 1)."""
        t = self.epoch if self.hp.reg_schedule == "epoch" else steps
        return float(self.hp.reg_rate) * t

    def after_step(self, model):
        if self.frozen:
            return
        lr = self.step_lr
        if lr is None:  # a loop other than qbench.train.train_step (e.g. the throughput benchmark)
            if not self._warned:
                warnings.warn("proxquant: Method.step_lr is not set, using η = 1 for the prox threshold η·λ_t; set "
                              "method.step_lr in custom training loops", stacklevel=2)
                self._warned = True
            lr = 1.0
        with torch.no_grad():
            for latent, param in quant.latent.latent_weights(model):
                param.steps += 1
                tau = lr * self.reg_at(int(param.steps))  # prox_{η_t·λ_t·R_bin} (Algorithm 1)
                if tau > 0:
                    latent.copy_(prox_binary(latent, tau))
                if self.hp.clip_weights:
                    latent.clamp_(-1.0, 1.0)
