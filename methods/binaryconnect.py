"""BinaryConnect (Courbariaux, Bengio, David, *BinaryConnect: training deep neural networks with binary weights
during propagations*, NeurIPS 2015, arXiv 1511.00363).

Weights only (spec §10): keep float weights w; forward and backward at w_b = sign(w) (eq. 1: +1 if w ≥ 0, else −1;
no scale — BN after each layer absorbs it); the gradient ∂C/∂w_b updates w, which is clipped to [−1, 1] right after
each update (Algorithm 1, §2.4 "Clipping"). Stochastic variant (eq. 2-3): w_b = +1 with probability
p = σ(w) = clip((w + 1)/2, 0, 1) (hard sigmoid), else −1, sampled at every forward while training.
Activations stay float (ReLU in the paper): ``activation_bits = (32,)``.

The spec's line adds the gradient cancellation 1{|w| ≤ 1}; the paper only clips. While w is clipped the two agree
(|w| ≤ 1 always), so ``cancel_grad`` (default on) only matters for weights that start outside [−1, 1].
Evaluation: the paper tests deterministic BinaryConnect with binary weights and stochastic BinaryConnect with the
real-valued weights (§2.5); qbench evaluates quantized networks only, so both use sign(w) at evaluation and export.
Paper layer policy: every layer's weights binary (MNIST MLP, CIFAR-10/SVHN ConvNets; §3), BN in every layer.
Recipe: ADAM or SGD with Nesterov momentum, BN, exponentially decaying lr; the authors' code also scales each layer's
lr by the inverse of its Glorot init coefficient (not reproduced: qbench's optimizer has one lr).
"""

import torch

from qbench import HParam, Method, quant, register_method

__all__ = ["BinaryConnect", "StochasticSignWeight", "hard_sigmoid"]


def hard_sigmoid(x):
    """σ(x) = clip((x + 1)/2, 0, 1) (BinaryConnect eq. 3): the probability of +1 in the stochastic binarization."""
    return torch.clamp((x + 1) / 2, 0, 1)


class _StochasticSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, cancel_outside):
        ctx.save_for_backward(w)
        ctx.cancel_outside = cancel_outside
        with torch.no_grad():
            # eq. 2: +1 with probability σ(w), −1 otherwise (torch's global RNG, re-seeded per epoch by train.fit)
            return torch.where(torch.rand_like(w) < hard_sigmoid(w), torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        if ctx.cancel_outside is not None:
            grad = grad * (w.abs() <= ctx.cancel_outside).to(grad.dtype)
        return grad, None


class StochasticSignWeight(quant.weight.WeightParametrization):
    """Stochastic binarization (eq. 2) while training; deterministic sign(w) at evaluation, in ``hard`` and export."""

    levels = 2

    def __init__(self, cancel_outside=None):
        super().__init__()
        self.cancel_outside = cancel_outside

    def forward(self, latent):
        if not self.training:
            return quant.weight.sign_nonzero(latent)
        return _StochasticSign.apply(latent, self.cancel_outside)

    def hard(self, latent):
        with torch.no_grad():
            return quant.weight.sign_nonzero(latent)

    def extra_repr(self):
        return "stochastic sign (p = hard_sigmoid(w))" + (
            f", cancel_outside={self.cancel_outside}" if self.cancel_outside is not None else "")


@register_method("binaryconnect")
class BinaryConnect(Method):
    """BinaryConnect: sign(w) weights (deterministic or stochastic), float activations, w clipped to [−1, 1]."""

    family = "weight quantizer"
    paper = "Courbariaux et al., BinaryConnect: training DNNs with binary weights during propagations, arXiv 1511.00363"
    paper_policy = "all layers' weights binary (incl. first and last), float activations, BN in every layer"
    weight_bits = (1,)
    activation_bits = (32,)
    hparams = {
        "stochastic": HParam(False, "stochastic binarization, +1 w.p. hard_sigmoid(w) (eq. 2-3) while training; "
                                    "evaluation uses sign(w)", (True, False), space=[False, True]),
        "clip_weights": HParam(True, "clip latent w to [−1, 1] after each update (Algorithm 1, §2.4)", (True, False)),
        "cancel_grad": HParam(True, "pass the gradient only where |w| ≤ 1 (spec; a no-op while w is clipped)",
                              (True, False)),
    }

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        cancel = 1.0 if self.hp.cancel_grad else None
        if self.hp.stochastic:
            return StochasticSignWeight(cancel_outside=cancel)
        # eq. 1: w_b = sign(w), straight-through: the gradient taken at w_b is applied to w (Algorithm 1)
        return quant.weight.StraightThroughWeight(quant.weight.sign_nonzero, 2, cancel_outside=cancel)

    def after_step(self, model):
        if self.hp.clip_weights:
            quant.latent.clip_latent_weights_(model)  # Algorithm 1: w_t ← clip(w_{t−1} − η·∂C/∂w_b)
