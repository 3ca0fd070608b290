"""DSQ: differentiable soft quantization (Gong, Liu, Jiang, Li, Hu, Lin, Yu, Yan, *Differentiable soft quantization:
bridging full-precision and low-bit neural networks*, ICCV 2019, arXiv 1908.05033; spec §10).

* Uniform b-bit grid on a clipping range [l, u] (eq. 1): 2^b − 1 intervals P_i = [l + iΔ, l + (i+1)Δ], Δ = (u − l)/(2^b
  − 1), levels l + jΔ (2^b of them; 1 bit: {l, u}); values outside [l, u] are clipped to l or u.
* Soft quantizer (eq. 3–4): in P_i, φ(x) = s·tanh(k(x − m_i)), m_i = l + (i + ½)Δ, s = 1/tanh(½kΔ) so that φ = ±1 at
  the interval ends (continuous); Q_S(x) = l + Δ(i + (φ(x) + 1)/2).
* Characteristic variable (eq. 5–6): α = 1 − tanh(½kΔ) ⇔ k = log(2/α − 1)/Δ, s = 1/(1 − α). α is learned (one per
  quantizer) and clamped to [alpha_min, alpha_max]; small α is close to the hard quantizer, α → 1 to the identity.
* Clipping range: l and u are learned with the task loss through Q_S (§3.3) when ``learn_bounds`` (weights: both,
  initialised to min/max of the weights [choice]; ReLU outputs: l = 0 fixed, u = max of the first training batch
  [choice]; signed layer inputs: both, min/max of the first batch). Their gradient sums over the whole tensor; by
  default it is scaled by LSQ's g = 1/√(N·(2^b − 1)) (``bound_grad_scale="lsq"``, not in the DSQ paper: without it
  the weights' bounds jump past the weights' own scale within a few SGD steps); ``"none"`` is the plain gradient.
* ``train_forward="hard"`` (default): the training forward uses sgn(φ) in eq. 4 — exactly the uniform quantizer,
  what the network is evaluated with — and the backward the derivative of Q_S in x, α, l and u; ``"soft"``: the
  training forward is Q_S itself. Evaluation is always hard (sgn(φ): the uniform quantizer), so
  ``freeze_quantized`` exports the grid values.
* α₀ = 0.2 and the clamp [1e-4, 0.5] are our [choice] (tunable).
Paper layer policy: first and last layer floating point — issue #15's audit says 8 bits (``int8_first_last``); the
paper was not available to settle it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qbench import BitsError, ConfigError, HParam, Method, quant, register_method

__all__ = ["TRAIN_FORWARDS", "BOUND_GRAD_SCALES", "dsq_quantize", "dsq_hard", "DSQWeight", "DSQQuantizer", "DSQ"]

TRAIN_FORWARDS = ("hard", "soft")
BOUND_GRAD_SCALES = ("lsq", "none")
_EPS = 1e-8


def _parts(x: Tensor, lo: Tensor, hi: Tensor, bits: int):
    """Clipped input, Δ, interval index i and midpoint m_i (eq. 1, 3); no gradient (the Function's own backward)."""
    n = 2**bits - 1
    delta = (hi - lo).clamp_min(_EPS) / n
    xc = torch.clamp(x, lo, hi)  # = min(max(x, l), u) in one pass
    i = (xc - lo).div_(delta).floor_().clamp_(0, n - 1)  # in place: one new tensor per line (a CPU pays per buffer)
    m = (i + 0.5).mul_(delta).add_(lo)
    return xc, delta, i, m


def _hard(xc: Tensor, delta: Tensor, i: Tensor, m: Tensor, lo: Tensor) -> Tensor:
    """l + Δ·(i + 1{x_c ≥ m_i}): sgn(φ) instead of φ in eq. 4, the nearest level (ties up); overwrites xc."""
    # 1{x_c ≥ m_i} as sign(x_c − m_i) + 1 clipped at 1 (the sign of a float difference is exact): in place, no mask
    return xc.sub_(m).sign_().add_(1.0).clamp_(max=1.0).add_(i).mul_(delta).add_(lo)


def _kappa_s(alpha: Tensor) -> tuple[Tensor, Tensor]:
    """κ = kΔ = log(2/α − 1) (eq. 6: k from α) and s = 1/tanh(½kΔ) = 1/(1 − α) (eq. 3/5)."""
    return torch.log(2.0 / alpha - 1.0), 1.0 / (1.0 - alpha)


def _soft(xc: Tensor, lo: Tensor, delta: Tensor, i: Tensor, m: Tensor, alpha: Tensor) -> Tensor:
    """Q_S = l + Δ·(i + (φ + 1)/2), φ = s·tanh(k(x − m_i)) (eq. 3–4)."""
    kappa, s = _kappa_s(alpha)
    phi = s * torch.tanh(kappa / delta * (xc - m))  # eq. 3, k = κ/Δ
    return lo + delta * (i + (phi + 1.0) / 2.0)  # eq. 4


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Σ a·b in one pass (no product tensor)."""
    return torch.dot(a.reshape(-1), b.reshape(-1))


class _DSQFn(torch.autograd.Function):
    """DSQ forward (the hard quantizer, or Q_S itself when ``soft``) and the derivative of Q_S (eq. 3–6) in x, l, u
    and α, saving only the input x: the intermediate tensors of Q_S (the clipped x, i, m_i, tanh) are recomputed in
    the backward instead of being kept by autograd for every quantized activation (DSQ's peak memory was 3× FP's).

    In the unit of the grid, z = (x_c − l)/Δ, i = ⌊z⌋ (clipped to [0, n − 1]), r = z − i − ½ = (x_c − m_i)/Δ,
    u = k(x_c − m_i) = κr with κ = kΔ = log(2/α − 1), T = tanh(u), S = 1 − T², s = 1/(1 − α), and
    Q_S = l + Δ(i + ½) + ½Δ·s·T with i fixed:

    * ∂Q/∂x_c = σS, σ = ½sκ;
    * ∂Q/∂Δ = (i + ½)(1 − σS) + ½sT − σS·r (Δ also through m_i = l + (i + ½)Δ and k = κ/Δ);
    * ∂Q/∂α = ½Δs·(sT + κ'S·r), κ' = dκ/dα = −2/(α(2 − α)), ds/dα = s²;
    * l enters directly and through m_i (1 − σS), through Δ = max(u − l, ε)/n (−1/n where u − l ≥ ε) and through
      x_c; u through Δ (+1/n) and x_c. x_c = min(max(x, l), u) passes to x where l < x < u, to l below, to u above,
      half and half at a tie (autograd's convention for max/min): with s₁ = sgn(x − l), s₂ = sgn(u − x) (l < u),
      ∂x_c/∂x = (s₁ + s₂)/2, ∂x_c/∂l = (1 − s₁)/2, ∂x_c/∂u = (1 − s₂)/2.

    Equal to autograd through Q_S written out (the previous implementation, kept in the tests) within float
    rounding (the sums are taken in another order)."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: Tensor, hi: Tensor, alpha: Tensor, bits: int, soft: bool) -> Tensor:
        xc, delta, i, m = _parts(x, lo, hi, bits)
        ctx.save_for_backward(x, lo, hi, alpha)
        ctx.bits = bits
        return _soft(xc, lo, delta, i, m, alpha) if soft else _hard(xc, delta, i, m, lo)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, lo, hi, alpha = ctx.saved_tensors
        n = 2**ctx.bits - 1
        need_x, need_lo, need_hi, need_alpha = ctx.needs_input_grad[:4]
        need_bounds = need_lo or need_hi
        delta = (hi - lo).clamp_min(_EPS) / n
        kappa, s = _kappa_s(alpha)
        sigma = 0.5 * s * kappa
        # In place wherever possible: ~30 elementwise passes over the tensor (tanh ≈ 4), 5 new buffers.
        x_lo = x - lo
        s1 = torch.sign(x_lo)
        s2 = (hi - x).sign_()
        z = x_lo.div_(delta).clamp_(0, n)  # (x_c − l)/Δ
        i = torch.floor(z).clamp_(0, n - 1)
        r = z.sub_(i).sub_(0.5)
        t = torch.mul(r, kappa).tanh_()
        sum_gt = _dot(grad, t)
        gs = t.mul_(t).neg_().add_(1.0).mul_(grad)  # grad·S
        sum_gs, sum_gsr = gs.sum(), _dot(gs, r)
        grad_x = grad_lo = grad_hi = grad_alpha = None
        if need_bounds:
            i.add_(0.5)
            sum_g = grad.sum()
            grad_delta = _dot(grad, i) - sigma * _dot(gs, i) + 0.5 * s * sum_gt - sigma * sum_gsr
            band = ((hi - lo) >= _EPS).to(grad_delta.dtype) / n  # ∂Δ/∂u = −∂Δ/∂l (clamp_min passes at equality)
            if need_lo:
                grad_lo = sum_g - sigma * sum_gs - band * grad_delta + 0.5 * sigma * (sum_gs - _dot(gs, s1))
                grad_lo = grad_lo.reshape(lo.shape)
            if need_hi:
                grad_hi = band * grad_delta + 0.5 * sigma * (sum_gs - _dot(gs, s2))
                grad_hi = grad_hi.reshape(hi.shape)
        if need_alpha:
            dkappa = -2.0 / (alpha * (2.0 - alpha))
            grad_alpha = (0.5 * delta * s * (s * sum_gt + dkappa * sum_gsr)).reshape(alpha.shape)
        if need_x:  # σS·(s₁ + s₂)/2, clipped at 0 (s₁ + s₂ < 0 only if l > u, where x_c = u does not follow x)
            grad_x = s1.add_(s2).clamp_(min=0.0).mul_(gs).mul_(0.5 * sigma)
        return grad_x, grad_lo, grad_hi, grad_alpha, None, None


def dsq_quantize(x: Tensor, lo: Tensor, hi: Tensor, alpha: Tensor, bits: int, soft: bool = False) -> Tensor:
    """DSQ with its soft backward: Q_S (eq. 4) when ``soft``, else the hard quantizer with the gradient of Q_S.
    Differentiable in x, l, u and α.

    The hard training forward uses sgn(φ) instead of φ in eq. 4 forward — the uniform quantizer, the values
    evaluation uses — and the derivative of Q_S backward, for x and for α, l, u alike (replacing the whole output,
    not φ alone, keeps the l/u gradient the soft one instead of mixing in the hard level index through Δ·(i + ·))."""
    return _DSQFn.apply(x, lo, hi, alpha, int(bits), bool(soft))


def dsq_hard(x: Tensor, lo: Tensor, hi: Tensor, bits: int) -> Tensor:
    """The evaluation quantizer: l + Δ·(i + 1{x ≥ m_i}) on the clipped x — the same values as the hard training
    forward, i.e. nearest level on the grid l + jΔ (ties up)."""
    with torch.no_grad():
        return _hard(*_parts(x, lo, hi, bits), lo)


class _DSQBase(quant.learned.LazyInit, nn.Module):
    qbench_param_roles = {"alpha": quant.learned.ROLE_SOFTNESS, "lo": quant.learned.ROLE_CLIP,
                          "hi": quant.learned.ROLE_CLIP}

    def _setup(self, bits: int, alpha_init: float, alpha_min: float, alpha_max: float, train_forward: str,
               learn_bounds: bool, learn_lo: bool, bound_grad_scale: str):
        if bits < 1 or bits > 16:
            raise BitsError(f"DSQ supports 1..16 bits (got {bits}); use 32 to keep a side float")
        if not 0 < alpha_min <= alpha_init <= alpha_max < 1:
            raise ConfigError("dsq needs 0 < alpha_min ≤ alpha_init ≤ alpha_max < 1 "
                              f"(got {alpha_min}, {alpha_init}, {alpha_max})")
        if train_forward not in TRAIN_FORWARDS:
            raise ConfigError(f"unknown dsq.train_forward '{train_forward}'; choose one of {', '.join(TRAIN_FORWARDS)}")
        if bound_grad_scale not in BOUND_GRAD_SCALES:
            raise ConfigError(f"unknown dsq.bound_grad_scale '{bound_grad_scale}'; "
                              f"choose one of {', '.join(BOUND_GRAD_SCALES)}")
        self.bits, self.train_forward, self.bound_grad_scale = bits, train_forward, bound_grad_scale
        self.alpha_min, self.alpha_max = float(alpha_min), float(alpha_max)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        for name, learned in (("lo", learn_bounds and learn_lo), ("hi", learn_bounds)):
            if learned:
                setattr(self, name, nn.Parameter(torch.tensor(0.0)))
            else:
                self.register_buffer(name, torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def levels(self) -> int:
        return 2**self.bits

    def _alpha(self) -> Tensor:
        return self.alpha.clamp(self.alpha_min, self.alpha_max)

    def _quantize(self, x: Tensor, lo: Tensor, hi: Tensor, n_features: int) -> Tensor:
        if not self.training:
            return dsq_hard(x, lo.to(x.dtype), hi.to(x.dtype), self.bits)
        if self.bound_grad_scale == "lsq":
            # Not in the DSQ paper: the bounds' gradient sums over every element of the tensor, so with the
            # weights' learning rate l and u jump by more than the weights' own scale within a few steps (seen on
            # LeNet-5: |∂L/∂u| ≈ 37 for weights of size 0.04). LSQ §2.2's g = 1/√(N·Q_P), Q_P = 2^b − 1 intervals,
            # brings their update to the weights' scale; "none" is the paper's plain gradient.
            g = 1.0 / (n_features * (2**self.bits - 1)) ** 0.5
            lo, hi = quant.learned.grad_scale(lo, g), quant.learned.grad_scale(hi, g)
        return dsq_quantize(x, lo.to(x.dtype), hi.to(x.dtype), self._alpha().to(x.dtype), self.bits,
                            soft=self.train_forward == "soft")

    def project_(self) -> None:
        self.alpha.clamp_(self.alpha_min, self.alpha_max)
        self.hi.copy_(torch.maximum(self.hi, self.lo + _EPS))  # keep Δ > 0 (no host sync)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, alpha={float(self.alpha.detach()):.4g}, l={float(self.lo.detach()):.4g}, "
                f"u={float(self.hi.detach()):.4g}, train_forward={self.train_forward}")


class DSQWeight(_DSQBase, quant.weight.WeightParametrization):
    """Weight parametrization with DSQ (α, l, u learned per layer; l, u start at the weights' min and max when the
    model is quantized). ``hard`` / evaluation: the uniform quantizer on [l, u]."""

    def __init__(self, bits: int, alpha_init: float = 0.2, alpha_min: float = 1e-4, alpha_max: float = 0.5,
                 train_forward: str = "hard", learn_bounds: bool = True, bound_grad_scale: str = "lsq"):
        super().__init__()
        self._setup(bits, alpha_init, alpha_min, alpha_max, train_forward, learn_bounds, True, bound_grad_scale)

    def _init_from(self, latent: Tensor) -> None:
        with torch.no_grad():
            self.lo.fill_(float(latent.min()))
            self.hi.fill_(max(float(latent.max()), float(latent.min()) + _EPS))
            self.mark_initialized()

    def forward(self, latent: Tensor) -> Tensor:
        if not self.is_initialized():
            self._init_from(latent)  # the first forward is register_parametrization's check: the weights as quantized
        return self._quantize(latent, self.lo, self.hi, latent.numel())

    def hard(self, latent: Tensor) -> Tensor:
        if not self.is_initialized():
            self._init_from(latent)
        return dsq_hard(latent, self.lo.to(latent.dtype), self.hi.to(latent.dtype), self.bits)

    def codes(self, latent: Tensor) -> Tensor:
        # Level index j of l + jΔ (0 … 2^b − 1): DSQ's grid is not symmetric about 0, so the default
        # round(q / min|q|) would not be an index (and could exceed any small integer type).
        with torch.no_grad():
            lo, hi = self.lo.to(latent.dtype), self.hi.to(latent.dtype)
            delta = (hi - lo) / (2 ** self.bits - 1)
            return torch.round((self.hard(latent) - lo) / delta).to(torch.int32)


class DSQQuantizer(_DSQBase):
    """DSQ for activations (replacing a ReLU: l = 0 fixed, u learned) or for a signed layer input (l and u
    learned). The range is set on the first training batch (min/max, averaged over ranks); before that — the
    placement probe — the batch's own range is used without being stored."""

    def __init__(self, bits: int, signed: bool = False, alpha_init: float = 0.2, alpha_min: float = 1e-4,
                 alpha_max: float = 0.5, train_forward: str = "hard", learn_bounds: bool = True,
                 bound_grad_scale: str = "lsq"):
        super().__init__()
        self.signed = signed
        self._setup(bits, alpha_init, alpha_min, alpha_max, train_forward, learn_bounds, signed, bound_grad_scale)

    def _range(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.detach().float()
        lo = x.min() if self.signed else torch.zeros((), device=x.device)
        hi = torch.maximum(x.max(), lo + _EPS)
        return lo, hi

    def forward(self, x: Tensor) -> Tensor:
        if not self.is_initialized():
            lo, hi = self._range(x)
            if not self.training:  # the placement probe on random input: use, do not keep
                return dsq_hard(x, lo.to(x.dtype), hi.to(x.dtype), self.bits)
            with torch.no_grad():
                self.lo.copy_(quant.learned.sync_mean(lo))
                self.hi.copy_(quant.learned.sync_mean(hi))
                self.mark_initialized()
        return self._quantize(x, self.lo, self.hi, x[0].numel() if x.dim() > 1 else x.numel())


@register_method("dsq")
class DSQ(Method):
    """Differentiable soft quantization: tanh-shaped soft steps with learned softness α and learned range [l, u]."""

    family = "activation estimator"
    paper = "Gong et al., Differentiable soft quantization, ICCV 2019, arXiv 1908.05033"
    paper_policy = "first and last layer floating point"
    # Activations at 1 bit are left out: after a ReLU the 1-bit grid is {0, u} with u initialised from the first
    # batch's maximum, so the threshold u/2 zeroes almost every activation and training stalls (measured on mnist5k
    # LeNet-5 W1A1, 3 epochs: 52 ± 21 % over 2 seeds, train accuracy 30–60 %). The paper's binary results use
    # sign-activation networks, which this ReLU-replacing quantizer is not; use bnn/irnet/bireal for A1.
    activation_bits = (2, 3, 4, 5, 6, 7, 8)
    hparams = {
        "alpha_init": HParam(0.2, "initial characteristic variable α of every quantizer [choice]",
                             space=[0.05, 0.5, "log"]),
        "alpha_min": HParam(1e-4, "α is clamped to [alpha_min, alpha_max] (paper: α kept small) [choice]"),
        "alpha_max": HParam(0.5, "upper clamp of α [choice]"),
        "learn_bounds": HParam(True, "learn the clipping range l, u with the task loss (paper §3.3)", (True, False)),
        "train_forward": HParam("hard", "training forward: 'hard' = sgn(φ) (exact levels, Q_S gradient), "
                                        "'soft' = Q_S itself", TRAIN_FORWARDS, space="choices"),
        "bound_grad_scale": HParam("lsq", "scale of the l, u gradient: 'lsq' = 1/√(N·(2^b − 1)) (LSQ §2.2, not in "
                                          "the DSQ paper) or 'none' (the paper)", BOUND_GRAD_SCALES),
    }

    def _kw(self):
        hp = self.hp
        return dict(alpha_init=hp.alpha_init, alpha_min=hp.alpha_min, alpha_max=hp.alpha_max,
                    train_forward=hp.train_forward, learn_bounds=hp.learn_bounds,
                    bound_grad_scale=hp.bound_grad_scale)

    def weight_quantizer(self, bits):
        return DSQWeight(bits, **self._kw())

    def activation_quantizer(self, bits):
        return DSQQuantizer(bits, signed=False, **self._kw())

    def input_quantizer(self, bits, signed):
        return DSQQuantizer(bits, signed=signed, **self._kw())

    def after_step(self, model):
        quant.learned.project_learned_(model)
