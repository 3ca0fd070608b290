"""Weight quantizers Q(w): pure tensor functions, one scale per tensor (spec §1, ../shared/spec/methods.md).

Each takes a float tensor and returns a tensor of the same shape and dtype whose values lie on the quantizer's grid.
They never track gradients themselves; how the gradient passes through Q (straight through, cancelled outside
[-1, 1], AQE's blend) is the job of :class:`StraightThroughWeight` and the method plugins.

Sources: BCGD = Yin et al., arXiv 1808.05240 and the authors' code ``penhunt/full-quantization-DNN``; TWN = Li & Liu,
arXiv 1605.04711; LBW = Yin et al., arXiv 1612.06052; DoReFa / MQBench for the uniform grid.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import BitsError, ConfigError
from .gates import keep_between

__all__ = [
    "sign_nonzero",
    "binary",
    "ternary_twn",
    "sort_magnitudes",
    "ternary_exact",
    "ternary_exact_residual",
    "pow2",
    "pow2_unit_levels",
    "nearest_pow2_level",
    "uniform",
    "bcgd_grid",
    "bcgd_4bit",
    "BCGD_WEIGHT_BITS",
    "TERNARY_SCALES",
    "bcgd_quantizer",
    "bcgd_weight",
    "num_levels",
    "level_codes",
    "WeightParametrization",
    "StraightThroughWeight",
    "describe_quantizer",
]


def sign_nonzero(w: Tensor) -> Tensor:
    """sign(w) with sign(0) = +1 [choice, spec §1], so a binary weight is never 0 (NaN, which has no sign, → +1)."""
    # sign(sign(w) + ½) maps −1, 0, +1 to −1, +1, +1 in place on one new tensor: it runs on every sign activation,
    # and `where` costs ~5× an arithmetic pass on a CPU. Detached: like a constant, it carries no gradient path.
    return torch.sign(w.detach()).add_(0.5).sign_()


def binary(w: Tensor) -> Tensor:
    """Binary weights ``δ·sign(w)`` with ``δ = mean|w|`` (spec §1, BCGD code).

    This is the exact L2 projection onto {±δ}ⁿ over δ > 0 and the sign pattern: for a fixed pattern s the best δ is
    ⟨w, s⟩/n, maximised by s = sign(w), giving δ = mean|w|.
    """
    return w.abs().mean() * sign_nonzero(w)


def ternary_twn(w: Tensor, threshold: float = 0.7, strict: bool = False, bcgd_code_scale: bool = False) -> Tensor:
    """Ternary weights by the TWN rule (Li, Zhang, Liu, arXiv 1605.04711, eq. 5-10; spec §1).

    ``Δ = threshold·mean|w|`` (eq. 10: Δ* ≈ 0.7·E|W| for Gaussian-like weights), support ``I``, ``Q = s·1_I·sign(w)``
    with ``s = Σ_I |w| / |I|`` (eq. 6: the L2-optimal scale for that support; an empty support gives 0).

    * ``strict=True``: ``I = {|w| > Δ}``, the paper's eq. 5 and its Caffe code (``ternarize_data``:
      ``(w > Δ) − (w < −Δ)``); the ``twn`` method.
    * ``strict=False`` (default): ``I = {|w| ≥ Δ}``, the BCGD and BinaryRelax authors' code (``quantize_tnn``:
      ``data.ge(delta)``); ``bcgd``, ``pcg``, ``binaryrelax`` and ``ste weights=ternary_twn``.

    The two differ only where some |w_i| equals Δ exactly. ``bcgd_code_scale=True`` reproduces the scale of that code,
    which divides by n (all entries) instead of |I|, giving a smaller scale whenever some weights are zeroed.
    """
    a = w.abs()
    delta = threshold * a.mean()
    mask = ((a > delta) if strict else (a >= delta)).to(w.dtype)
    denom = torch.tensor(float(w.numel()), dtype=w.dtype, device=w.device) if bcgd_code_scale else mask.sum().clamp_min(1)
    scale = (a * mask).sum() / denom
    return scale * mask * torch.sign(w)


#: the signed integer type of each float type's size: non-negative IEEE-754 floats sort like their bit patterns
_SORT_KEY_DTYPES = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
                    torch.bfloat16: torch.int16}


def sort_magnitudes(a: Tensor) -> tuple[Tensor, Tensor]:
    """A flat tensor of magnitudes (all ≥ 0) sorted in descending order, and the order (``sorted = a[order]``); equal
    magnitudes keep their index order (a stable sort), so the result does not depend on the sort algorithm.

    The sign bit of a non-negative float is 0, so its bit pattern read as a signed integer of the same size is
    monotone in its value (NaN, written with a clear sign bit by ``abs``, after +inf, as the float sort puts it).
    Sorting the negated integers in ascending order gives the same order; torch's CPU sort of integers in ascending
    order is a radix sort, ~5× faster than its float sort (400k LeNet-5 fc1 weights on one core: 9 ms vs 44 ms; a
    descending integer sort is not a radix sort: 37 ms); CUDA radix-sorts all of them.
    """
    keys, order = torch.sort(-a.view(_SORT_KEY_DTYPES[a.dtype]), stable=True)
    return keys.neg_().view(a.dtype), order


def _ternary_exact_parts(w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sorted-prefix solution of min_{α,s∈{0,±1}ⁿ} ‖w − α s‖² (LBW paper, b = 2; spec §1).

    For a support of size k the best support is the k largest |w| and the best α their mean, leaving the residual
    ‖w‖² − S_k²/k, S_k = Σ_{i≤k} a_i with a sorted descending. So k* = argmax_k S_k²/k — one sort, O(N log N) (a
    radix sort of the bits, :func:`sort_magnitudes`). Everything stays on the device (k* is a tensor): no host sync.
    Returns (order, k_star, alpha, best_score).
    """
    sorted_a, order = sort_magnitudes(w.detach().abs().flatten())
    prefix = torch.cumsum(sorted_a.double(), 0)
    k = torch.arange(1, sorted_a.numel() + 1, device=w.device, dtype=torch.float64)
    score = prefix * prefix / k
    best = torch.argmax(score).reshape(1)  # first maximiser; any k* with the max value is optimal (equally good)
    k_star = best + 1
    # gather, not prefix[best]: indexing by a tensor would read it on the host (a sync, a graph break)
    alpha = (prefix.gather(0, best) / k_star).to(w.dtype).reshape(())
    return order, k_star.reshape(()), alpha, score.gather(0, best).reshape(())


def ternary_exact(w: Tensor) -> Tensor:
    """Exact L2 projection onto ternary tensors α·{0, ±1}ⁿ (LBW, b = 2), O(N log N) by one sort.

    On N(0, 1) weights its threshold is ≈ 0.767·mean|w| and its relative squared error ‖w − Q‖²/‖w‖² is 0.1902,
    against 0.1916 for the TWN rule (:func:`ternary_twn`); closed form 1 − (2φ(t))²/(2Φ̄(t)) at the best t and at
    t = 0.7·mean|w| (tests/quant/test_weight.py). The spec's "0.1916 against 0.1930" was off by 0.0014 (issue #15)."""
    order, k_star, alpha, _ = _ternary_exact_parts(w)
    # Exactly the k* largest magnitudes: selecting by rank (not by a |w| ≥ a_k* test) keeps ties at the threshold
    # from enlarging the support beyond k*, so α stays the support mean and the residual formula holds; among equal
    # magnitudes at the threshold the lowest indices win (the stable sort). A scatter of the rank mask, not
    # ``support[order[:k*]] = 1``, so k* never leaves the device (no sync, no data-dependent shape under compile).
    in_support = (torch.arange(w.numel(), device=w.device) < k_star).to(w.dtype)
    support = torch.empty_like(in_support).scatter_(0, order, in_support)
    return alpha * support.view_as(w) * torch.sign(w)


def ternary_exact_residual(w: Tensor) -> Tensor:
    """‖w − ternary_exact(w)‖² in closed form: ‖w‖² − S_{k*}²/k*."""
    _, _, _, best = _ternary_exact_parts(w)
    return (w.detach().double().pow(2).sum() - best).to(w.dtype)


def pow2_unit_levels(bits: int, device=None, dtype=torch.float32) -> Tensor:
    """Unit magnitudes {0, 2^{1−n}, …, ½, 1}, n = 2^{b−1} − 1 (LBW-style, spec §1): 2n + 1 = 2^b − 1 signed levels."""
    n = 2 ** (bits - 1) - 1
    mags = [0.0] + [2.0 ** (-j) for j in range(n - 1, -1, -1)]
    return torch.tensor(mags, device=device, dtype=dtype)


def nearest_pow2_level(u: Tensor, bits: int) -> Tensor:
    """Nearest point of :func:`pow2_unit_levels` for non-negative u, midpoints as thresholds (ties go up); u > 1
    saturates at 1.

    Closed form instead of a search over the levels: between 2^{−j−1} and 2^{−j} the midpoint is ¾·2^{−j}, so
    u ≥ ¾·2^{−j} ⇔ j ≥ log2(¾/u) and the level is 2^{−e}, e = ⌈log2(¾/u)⌉ clamped to [0, n − 1]; below the lowest
    midpoint 2^{−n} (between 0 and 2^{1−n}) it is 0. Elementwise ops only (no bucketize/gather): on a CPU this is
    ~3× cheaper per activation tensor, which is most of AQE's and LBW's overhead over FP (issue: ≤ 1.5× FP).
    Exact at the midpoints: ¾/(¾·2^{−m}) = 2^m and log2(2^m) = m are exact in floating point."""
    n = 2 ** (bits - 1) - 1
    # u = 0 → log2(inf) = inf → clamped to n − 1, then zeroed by the mask; one new tensor, the rest in place.
    level = torch.div(0.75, u).log2_().ceil_().clamp_(0, n - 1).neg_().exp2_()
    return level.masked_fill_(u < 2.0 ** (-n), 0.0)


def pow2(w: Tensor, bits: int = 3, c: float = 0.75, refits: int = 0) -> Tensor:
    """Power-of-two weights α·{0, ±2^{1−n}, …, ±½, ±1} for b ≥ 3 ("LBW-style", spec §1).

    The level set and the single free scale are the LBW paper's; the scale rule is our [choice]: α = c·max|w| with
    c ∈ [0.5, 1] (default 0.75), optionally refitted ``refits`` times by least squares α ← Σ|w|q̂ / Σq̂² where q̂ are
    the chosen unit levels. For a fixed α every entry goes to its nearest level (midpoint thresholds).
    """
    if bits < 3:
        raise BitsError(f"pow2 needs bits ≥ 3 (got {bits}); use ternary_exact for 2 bits and binary for 1 bit")
    a = w.abs()
    alpha = c * a.max()
    # α ≤ 0 (all-zero weights) gives 0; tensor `where`s instead of Python tests: no host sync, no graph break under
    # torch.compile. A refit keeps α > 0 (the chosen levels are > 0 only where |w| > 0).
    valid = alpha > 0
    alpha = torch.where(valid, alpha, 1.0)
    for step in range(refits + 1):
        unit = nearest_pow2_level(a / alpha, bits)
        if step < refits:
            denom = (unit * unit).sum()
            alpha = torch.where(denom > 0, (a * unit).sum() / denom, alpha)
    return torch.where(valid, alpha, 0.0) * unit * torch.sign(w)


def uniform(w: Tensor, bits: int, scale: Tensor | float | None = None) -> Tensor:
    """Uniform symmetric b-bit grid ``s·clip(round(w/s), −L, L)``, L = 2^{b−1} − 1, s = max|w|/L unless given
    ([choice], DoReFa / MQBench convention; spec §1). 2^b − 1 levels; b = 1 has no symmetric grid (use binary)."""
    if bits < 2:
        raise BitsError(f"uniform needs bits ≥ 2 (got {bits}); use binary for 1 bit")
    L = 2 ** (bits - 1) - 1
    s = w.abs().max() / L if scale is None else torch.as_tensor(scale, dtype=w.dtype, device=w.device)
    # s = 0 gives 0 (s·anything finite): dividing by 1 there instead of testing float(s) keeps the step free of host
    # syncs and graph breaks under torch.compile; for s ≠ 0 the same operations as before.
    return s * torch.clamp(torch.round(w / torch.where(s == 0, 1.0, s)), -L, L)


def bcgd_grid(w: Tensor, bits: int) -> Tensor:
    """The BCGD authors' multi-bit weight quantizer (``quantize_fbit``, ``BCGD_cifar/util/quant.py`` line 38 of
    ``penhunt/full-quantization-DNN``, written for b = 4; other b ≥ 3 by the same rule [choice]).

    L = 2^{b−1} − 1 magnitudes, δ = max|w|/(2L + 1) (the code's ``data.max()/15``); the integer level k of an entry
    is 0 for |w| ≤ δ, k for (2k − 1)δ < |w| ≤ (2k + 1)δ (the code's loop ``data.gt((i−2)δ)·data.le(iδ)``, level
    (i − 1)/2, i = 3, 5, …) and L for |w| > (2L − 1)δ, i.e. k = clip(⌈(|w| − δ)/(2δ)⌉, 0, L); then the least-squares
    scale s = Σ|w|k / Σk² and Q = s·k·sign(w): 2L + 1 = 2^b − 1 levels. The code's guard δ ≤ 10 (weights above
    150 in magnitude) is left out, as ``quantize_tnn``'s Δ ≤ 100 is in :func:`ternary_twn`.
    """
    if bits < 3:
        raise BitsError(f"bcgd_grid needs bits ≥ 3 (got {bits}); BCGD uses ternary_twn at 2 bits, binary at 1")
    levels = 2 ** (bits - 1) - 1
    a = w.abs()
    delta = a.max() / (2 * levels + 1)
    # δ = 0 (all-zero weights): k = 0 and s = 0 without a host-side test (no sync, no graph break under compile)
    k = torch.clamp(torch.ceil((a - delta) / (2 * torch.where(delta == 0, 1.0, delta))), 0, levels)
    s = (a * k).sum() / (k * k).sum().clamp_min(1e-12)
    return s * k * torch.sign(w)


def bcgd_4bit(w: Tensor) -> Tensor:
    """The BCGD code's 4-bit quantizer ``quantize_fbit`` (spec §1): :func:`bcgd_grid` at b = 4, δ = max|w|/15,
    k ∈ {0, …, 7}, least-squares scale (15 levels)."""
    return bcgd_grid(w, 4)


def num_levels(bits: int) -> int:
    """Largest number of distinct values a b-bit weight quantizer in qbench produces (2 for binary, else 2^b − 1)."""
    return 2 if bits == 1 else 2**bits - 1


def level_codes(q: Tensor, per_channel: bool = False) -> Tensor:
    """Integer codes of a quantized tensor, independent of its scale: round(q / smallest nonzero |q|).

    Used by the recurrence diagnostics (spec §6) to compare Q(w_t) across steps when the scale drifts.
    ``per_channel=True`` divides each output channel (dim 0) by its own smallest nonzero |q|, for quantizers with
    one scale per channel (``WeightParametrization.per_channel``), whose codes would otherwise drift with α_c.
    """
    if per_channel and q.dim() >= 2:
        return torch.stack([level_codes(row) for row in q.reshape(q.shape[0], -1)]).reshape(q.shape)
    a = q.abs()
    nz = a[a > 0]
    if nz.numel() == 0:
        return torch.zeros_like(q, dtype=torch.int32)
    return torch.round(q / nz.min()).to(torch.int32)


class _StraightThrough(torch.autograd.Function):
    """Forward Q(w) exactly (so the layer sees only grid values); backward passes the gradient taken at Q(w) to w,
    optionally cancelled where |w| > clip (BinaryConnect's 1{|w| ≤ 1}, Courbariaux et al. 2015)."""

    @staticmethod
    def forward(ctx, w: Tensor, quantize: Callable[[Tensor], Tensor], cancel_outside: float | None) -> Tensor:
        ctx.cancel_outside = cancel_outside
        if cancel_outside is not None:
            ctx.save_for_backward(w)
        with torch.no_grad():
            return quantize(w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.cancel_outside is not None:
            (w,) = ctx.saved_tensors
            grad = keep_between(grad, w, -ctx.cancel_outside, ctx.cancel_outside, True, True)  # |w| ≤ clip
        return grad, None, None


class WeightParametrization(nn.Module):
    """Base of qbench's weight parametrizations: ``forward(latent)`` gives the weight the layer uses, ``hard(latent)``
    the hard-quantized Q(latent) without autograd, ``levels`` the most distinct values Q may produce.

    ``per_channel = True`` marks a quantizer with one scale per output channel (dim 0; XNOR-Net's α_c): ``levels``
    then counts the distinct values within each output channel, and the tensor carries one scale per channel."""

    levels: int = 0
    per_channel: bool = False

    def hard(self, latent: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def codes(self, latent: Tensor) -> Tensor:
        """Integer level index of each entry of Q(latent), independent of the scale, for the recurrence diagnostics
        (Hamming distance, flip rate; spec §6). Default: :func:`level_codes` of :meth:`hard`, right for grids
        symmetric about 0 whose levels are multiples of the smallest one; a quantizer with another grid (e.g. DSQ's
        l + jΔ) overrides it."""
        return level_codes(self.hard(latent), self.per_channel)


def describe_quantizer(fn: Callable) -> str:
    """Readable name of a quantizer function or a functools.partial of one (for reprs and ``qbench list``)."""
    if isinstance(fn, functools.partial):
        args = ", ".join(f"{k}={v}" for k, v in fn.keywords.items())
        return f"{fn.func.__name__}({args})"
    return getattr(fn, "__name__", repr(fn))


class StraightThroughWeight(WeightParametrization):
    """Parametrization ``weight = Q(latent)`` with a straight-through backward (spec §0, §4, §6).

    Registered with ``torch.nn.utils.parametrize`` so every layer type that reads ``self.weight`` — also functionally,
    as BEiT's attention reads ``qkv.weight`` — sees the quantized tensor. ``quantize`` is a pure function from this
    module; ``levels`` is the most distinct values it may produce (checked by the tests). The last quantized tensor
    is cached per latent version, so update rules that need Q(w) (BCGD's blend) reuse it instead of quantizing twice.
    """

    def __init__(self, quantize: Callable[[Tensor], Tensor], levels: int, cancel_outside: float | None = None):
        super().__init__()
        self.quantize = quantize
        self.levels = levels
        self.cancel_outside = cancel_outside
        self._cache: tuple[int, int, Tensor] | None = None

    def forward(self, latent: Tensor) -> Tensor:
        q = _StraightThrough.apply(latent, self.quantize, self.cancel_outside)
        if not torch.compiler.is_compiling():  # a traced forward has no real tensor to keep: hard() recomputes
            self._cache = (id(latent), latent._version, q.detach())
        return q

    def hard(self, latent: Tensor) -> Tensor:
        """Q(latent) without autograd, reusing the forward's value when the latent has not changed since."""
        cache = self._cache
        if cache is not None and cache[0] == id(latent) and cache[1] == latent._version:
            return cache[2]
        with torch.no_grad():
            return self.quantize(latent)

    def extra_repr(self) -> str:
        extra = f", cancel_outside={self.cancel_outside}" if self.cancel_outside is not None else ""
        return f"{describe_quantizer(self.quantize)}, levels={self.levels}{extra}"


#: weight bit-widths of BCGD's quantizers (the authors' code ``quant_dict = {1: quantize_bw, 2: quantize_tnn,
#: 4: quantize_fbit}``)
BCGD_WEIGHT_BITS = (1, 2, 4)
#: BCGD's 2-bit scale: "code" = Σ|w|·I/n (the authors' ``quantize_tnn``), "twn" = Σ|w|·I/|I| (TWN eq. 6)
TERNARY_SCALES = ("code", "twn")


def bcgd_quantizer(bits: int, ternary_scale: str = "code") -> Callable[[Tensor], Tensor]:
    """The BCGD authors' weight quantizer at any ``bits`` ≥ 1 (their ``quant_dict`` in ``BCGD_cifar/util/quant.py``):
    :func:`binary` (1 bit, ``quantize_bw``, line 13), :func:`ternary_twn` with |w| ≥ Δ and the scale
    ``ternary_scale`` (2 bits, ``quantize_tnn``, line 25), :func:`bcgd_grid` (≥ 3 bits, ``quantize_fbit``'s rule,
    line 38; the code has b = 4 only)."""
    if ternary_scale not in TERNARY_SCALES:
        raise ConfigError(f"unknown BCGD ternary scale '{ternary_scale}'; choose one of {', '.join(TERNARY_SCALES)}")
    if bits == 1:
        return binary
    if bits == 2:
        return functools.partial(ternary_twn, bcgd_code_scale=ternary_scale == "code")
    return functools.partial(bcgd_grid, bits=bits)


def bcgd_weight(bits: int, ternary_scale: str = "code") -> StraightThroughWeight:
    """BCGD's weight parametrization at ``bits`` (Yin et al., arXiv 1808.05240 and the authors' code), straight
    through: :func:`bcgd_quantizer` at the bit-widths of the code, :data:`BCGD_WEIGHT_BITS`. Shared by the ``bcgd``
    and ``pcg`` methods (pcg is BCGD with ρ = 0)."""
    if bits not in BCGD_WEIGHT_BITS:
        raise BitsError(f"BCGD's weight quantizers are W1, W2 and W4 (got W{bits}); W32 keeps float weights")
    return StraightThroughWeight(bcgd_quantizer(bits, ternary_scale), num_levels(bits))
