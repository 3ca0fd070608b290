"""Gradient gates: ``g`` where ``x`` lies in a range, 0 elsewhere, in one fused pass (the straight-through masks).

Most estimators' backward multiplies the incoming gradient by the indicator of a range: the clipped STE 1{|x| ≤ 1}
(BNN, AQE, BinaryConnect's cancellation), the clipped ReLU 1{0 < x ≤ Lα}, PACT's 1{0 ≤ x < α}, LSQ's
1{−Q_N < v/s < Q_P}. Written as ``grad * (mask).to(dtype)`` or ``torch.where(mask, grad, 0)`` that is 3-5 elementwise
passes over an activation-sized tensor, and on a CPU ``where`` and bool → float casts cost ~5× an arithmetic pass
(LeNet-5's first activation, 1.5 M elements, one shared core: ``where`` 8.2 ms, ``threshold_backward`` 1.8 ms). The
backward kernels of ReLU and Hardtanh compute exactly these products in one pass, on every device, and inductor fuses
them under ``torch.compile``:

* ``threshold_backward(g, x, t)`` = g where x > t, else 0;
* ``hardtanh_backward(g, x, lo, hi)`` = g where lo < x < hi, else 0.

A closed end (x ≥ t) is the open end at the next representable value below t in x's dtype (:func:`next_float`), and
a bound given as a tensor (a learned α) is compared through the difference x − t, whose sign is exact in IEEE
arithmetic (a nonzero difference of two floats never rounds to 0), so every gate keeps exactly the elements the mask
kept — for a bound representable in x's dtype (0, ±1, the integer bounds of a grid, any float32 bound of float32 x; a
bound such as 0.7 on bfloat16/float16 x may move by one ulp, as the kernels round it differently). Other details
differ from ``grad * mask``: an element gated off is +0.0 where ``g·0`` gave −0.0 for a negative g (equal values), a
NaN ``x`` (a diverged step) passes its gradient instead of zeroing it, and :func:`keep_below` with a number drops
x = −∞.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["next_float", "keep_above", "keep_below", "keep_between"]

_threshold_backward = torch.ops.aten.threshold_backward
_hardtanh_backward = torch.ops.aten.hardtanh_backward


def next_float(value: float, dtype: torch.dtype, up: bool) -> float:
    """The representable number of ``dtype`` next to ``value`` (rounded to ``dtype`` first) toward +∞ (``up``) or
    −∞, as a Python float (exact: every float32/16 and bfloat16 number is a float64 number). Pure Python on
    constants, so ``torch.compile`` folds it; x ≥ t ⇔ x > next_float(t, dtype, up=False) for every x of ``dtype``."""
    if dtype == torch.float64:
        return math.nextafter(value, math.inf if up else -math.inf)
    info = torch.finfo(dtype)
    step = 1 if up else -1
    if value == 0.0:
        return step * info.tiny * info.eps  # the smallest subnormal
    digits = round(-math.log2(info.eps)) + 1  # significand bits, the implicit one included
    exponent = max(math.frexp(value)[1], math.frexp(info.tiny)[1]) - digits  # ulp of value's binade (or subnormals)
    q = round(value / 2.0**exponent)  # value rounded to dtype (half to even, as a cast), in ulps
    if abs(q) == 2**digits:  # rounded up to the next power of two: count in that binade's ulps
        q, exponent = q // 2, exponent + 1
    toward_zero = (q > 0) != up
    if toward_zero and abs(q) == 2 ** (digits - 1) and exponent > math.frexp(info.tiny)[1] - digits:
        return (q - 0.5 * math.copysign(1, q)) * 2.0**exponent  # below a power of two the spacing halves
    return (q + step) * 2.0**exponent


def keep_above(g: Tensor, x: Tensor, t: float | Tensor, inclusive: bool = False) -> Tensor:
    """g where x > t (x ≥ t when ``inclusive``), else 0. ``t`` is a number or a 0-dim tensor (compared as x − t)."""
    if isinstance(t, Tensor):
        x, t = x - t, 0.0
    return _threshold_backward(g, x, next_float(float(t), x.dtype, up=False) if inclusive else t)


def keep_below(g: Tensor, x: Tensor, t: float | Tensor, inclusive: bool = False) -> Tensor:
    """g where x < t (x ≤ t when ``inclusive``), else 0. ``t`` is a number or a 0-dim tensor (compared as t − x)."""
    if isinstance(t, Tensor):
        return keep_above(g, t - x, 0.0, inclusive)
    return _hardtanh_backward(g, x, -math.inf, next_float(float(t), x.dtype, up=True) if inclusive else t)


def keep_between(g: Tensor, x: Tensor, lo: float, hi: float, lo_inclusive: bool = False,
                 hi_inclusive: bool = False) -> Tensor:
    """g where lo < x < hi (≤ at an inclusive end), else 0, for numbers lo < hi."""
    lo = next_float(float(lo), x.dtype, up=False) if lo_inclusive else lo
    hi = next_float(float(hi), x.dtype, up=True) if hi_inclusive else hi
    return _hardtanh_backward(g, x, lo, hi)
