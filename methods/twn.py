"""Ternary Weight Networks (TWN: Li, Zhang, Liu, *Ternary weight networks*, arXiv 1605.04711).

Weights ternary, W ≈ α·W^t with W^t ∈ {−1, 0, +1} (§2.1-2.2): W^t_i = +1 if W_i > Δ, 0 if |W_i| ≤ Δ, −1 if
W_i < −Δ; for a fixed Δ the L2-optimal scale is α*_Δ = (1/|I_Δ|)·Σ_{i∈I_Δ} |W_i|, I_Δ = {i : |W_i| > Δ} (eq. 5-6);
Δ* ≈ 0.7·E|W| ≈ (0.7/n)·Σ|W_i| (the approximation for Gaussian/uniform weights, eq. 9-10). One (Δ, α) per layer,
as in the paper and the authors' Caffe code (``Blob::set_delta`` / ``ternarize_data`` over the whole blob).
Training (Algorithm 1): forward and backward at the ternary weights, the gradient updates the float weights
(straight through, no clipping). Activations stay float (ReLU in the paper): weight-only, ``activation_bits = (32,)``,
W2 only (``weight_bits = (2,)``).
The threshold test is strict, |W_i| > Δ, as in the paper: :func:`qbench.quant.weight.ternary_twn` with
``strict=True`` (BCGD and BinaryRelax use its default ≥ of their authors' code; the two differ only when some |W_i|
equals Δ exactly).
Paper layer policy: the paper does not single out the first/last layers (LeNet-5, VGG-7, ResNet-18B experiments)
[choice: the suite's policy decides].
"""

import functools

from qbench import ConfigError, HParam, Method, quant, register_method

__all__ = ["TWN"]


@register_method("twn")
class TWN(Method):
    """Ternary Weight Networks: per-layer α·{−1, 0, +1} weights, Δ = 0.7·mean|w|, float activations."""

    family = "weight quantizer"
    paper = "Li, Zhang, Liu, Ternary Weight Networks, arXiv 1605.04711"
    paper_policy = "ternary weights, float ReLU activations; first/last-layer policy not stated"
    weight_bits = (2,)
    activation_bits = (32,)
    hparams = {
        "threshold": HParam(0.7, "Δ = threshold·mean|w| (eq. 10: 0.7 for Gaussian-like weights)",
                            space=[0.5, 1.0, "linear"]),
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        if not 0 < float(self.hp.threshold) < 3:
            raise ConfigError(f"twn.threshold={self.hp.threshold} is out of range; use a value in (0, 3), e.g. 0.7")

    def weight_quantizer(self, bits):
        self.check_weight_bits(bits)
        # eq. 5-10: Δ = threshold·mean|w|, W^t_i = ±1 for |W_i| > Δ (strict), α = mean of |W_i| over that support
        fn = functools.partial(quant.weight.ternary_twn, threshold=float(self.hp.threshold), strict=True)
        # Algorithm 1: the gradient at α·W^t updates W (straight through)
        return quant.weight.StraightThroughWeight(fn, 3)
