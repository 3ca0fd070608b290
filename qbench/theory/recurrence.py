"""The recurrence toy of the REC paper: projected coarse gradient descent on the STE paper's Gaussian model.

Source: REC = Long, Yin, Xin, *Recurrence of optimum for training weight and activation quantized networks*, arXiv
2012.05529 — projected coarse gradient descent ``w ← w − η·g̃(Q(w))`` and the recurrent visits of the quantized
optimum (spec §6). The model, its loss and its expected coarse gradients are :mod:`qbench.theory.gaussian`'s (spec §8;
STE = Yin et al., ICLR 2019, arXiv 1903.05662). The quantizers are :data:`qbench.config.RECURRENCE_QUANTIZERS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import RECURRENCE_QUANTIZERS, RecurrenceConfig
from ..errors import ConfigError
from .gaussian import angle, as_vector, expected_coarse_grad_unit, grad_v_at_angle, loss_at_angle, random_instance

__all__ = [
    "RecurrenceResult",
    "ternary_projection",
    "quantized_optimum",
    "recurrence_toy",
]


def _best_v(v_star: np.ndarray, theta: float) -> np.ndarray:
    """argmin_v f(v, θ) = (I+J)^{-1}((1 − 2θ/π)I + J)v*, from ∂f/∂v = 0 (spec §8); (I+J)^{-1} = I − J/(m+1)."""
    rhs = (1.0 - 2.0 * theta / math.pi) * v_star + v_star.sum()
    return rhs - rhs.sum() / (v_star.shape[0] + 1)


def ternary_projection(w: Any) -> tuple[np.ndarray, float]:
    """Exact L2 projection onto {α·t : α > 0, t ∈ {−1, 0, 1}^n} (LBW, b = 2; spec §1): returns (t, α).

    Sort |w| descending (a₁ ≥ … ≥ a_n), S_k = Σ_{i≤k} a_i, k* = argmax_k S_k²/k, α* = S_{k*}/k*, t = sign(w) on the
    k* largest entries. Ties in |w| are broken by index (any k* of the maximal value is optimal, spec §1).
    """
    w = as_vector(w)
    order = np.argsort(-np.abs(w), kind="stable")
    partial = np.cumsum(np.abs(w)[order])
    k = int(np.argmax(partial * partial / np.arange(1, w.shape[0] + 1))) + 1
    pattern = np.zeros_like(w)
    top = order[:k]
    pattern[top] = np.where(w[top] >= 0, 1.0, -1.0)
    return pattern, float(partial[k - 1] / k)


def _quantize_pattern(w: np.ndarray, quantizer: str) -> np.ndarray:
    """The unit-scale pattern of Q(w): sign(w) (sign(0) = +1, spec §1) or the exact ternary pattern. The scale
    (δ = mean|w| for binary, α* for ternary) is dropped because nothing below depends on it: the ReLU coarse gradient
    and the loss of spec §8 depend on the quantized weights only through their direction q/‖q‖."""
    if quantizer == "binary":
        return np.where(w >= 0, 1.0, -1.0)
    return ternary_projection(w)[0]


def quantized_optimum(w_star: Any, quantizer: str = "binary") -> np.ndarray:
    """The global optimum of the quantized problem min_q f(v*, q) (v at the teacher's v*), as a unit-scale pattern.

    Why it is Q(w*): with v = v*, f = const + θ·‖v*‖²/(2π) (spec §8) is increasing in θ = ∠(q, w*), so the optimum
    maximises q̂ᵀw* over the quantized set. Binary: q̂ᵀw* = Σ q_i w*_i/√n, maximised by q = sign(w*). Ternary: for a
    support of size k the best is the k largest |w*_i| with their signs, value S_k/√k, and maximising over k is
    exactly the exact ternary projection's k* = argmax S_k²/k — so the optimum is the pattern of the exact ternary
    projection of w*. (``tests/theory/test_recurrence.py`` checks both against brute force over all 2^n / 3^n patterns,
    small n.)
    """
    if quantizer not in RECURRENCE_QUANTIZERS:
        raise ConfigError(f"unknown quantizer '{quantizer}'; choose one of {', '.join(RECURRENCE_QUANTIZERS)}")
    return _quantize_pattern(as_vector(w_star), quantizer)


@dataclass
class RecurrenceResult:
    """Per-step record of projected coarse gradient descent (state t = 0..steps, i.e. before the first update and
    after each one) and its summary."""

    quantizer: str
    lr: float
    steps: int
    train_v: bool
    at_optimum: np.ndarray  # bool: Q(w_t) equals the quantized optimum
    hamming: np.ndarray  # fraction of coordinates where the pattern of Q(w_t) differs from the optimum's
    loss_q: np.ndarray  # population loss f(v_t, Q(w_t))
    flips: np.ndarray  # fraction of coordinates of Q(w_t) that changed at step t (0 at t = 0)
    optimum_loss: float
    summary: dict = field(default_factory=dict)


def recurrence_toy(quantizer: str, seed: int, config: RecurrenceConfig | None = None) -> RecurrenceResult:
    """Projected coarse gradient descent w ← w − η·E g_relu(v, Q(w)) on the spec §8 model (REC paper; spec §6 toy).

    Sizes, η, the number of steps and ``train_v`` come from ``config`` (default :class:`qbench.config.RecurrenceConfig`;
    its ``quantizers`` list is not read). The instance (v*, w*, latent w_0) comes from :func:`random_instance` with
    ``seed``. The gradient is the full-batch expected ReLU-STE coarse gradient (:func:`expected_coarse_grad`)
    evaluated at the quantized weights Q(w_t) — its ŵ is Q(w_t)/‖Q(w_t)‖ — and it updates the latent float w_t (spec
    §6: BCGD with ρ = 0, no cancellation, no clipping).

    Choices (documented, not from the paper's text): ``quantizer`` "binary" is Q = sign (the spec's check);
    "ternary" is the exact ternary projection of spec §1 (:func:`ternary_projection`). v is fixed at v* by default
    (``config.train_v`` false [choice, the usual setting]; then E g_relu = ‖v*‖²/(2√(2π))·(Q̂(w) − w*) — spec §8's
    formula with h = 2‖v*‖² — so for binary Q each coordinate drifts on its own: w_i moves towards sign(w*_i) when
    Q(w)_i is wrong, and away from it when right but |w*_i| < 1/√n; those small coordinates oscillate around 0 forever,
    which is the mechanism of the recurrence). With ``train_v`` true v starts at the draw's v and takes true-gradient
    steps ∂f/∂v at (v, Q(w)) with the same η. Both choices recur (checked for seeds 0–5, binary and ternary: tens to thousands of
    visits, including the last quarter). The optimum is :func:`quantized_optimum` (Q(w*): exact for v = v*; the same
    pattern is used when v is trained, and ``optimum_loss`` is then taken at the best v for it).
    """
    config = RecurrenceConfig() if config is None else config
    m, n, lr, steps, train_v = config.m, config.n, float(config.lr), config.steps, bool(config.train_v)
    instance = random_instance(m, n, seed)
    v_star, w_star = instance.v_star, instance.w_star
    v = instance.v.copy() if train_v else v_star.copy()
    w = instance.w.copy()
    optimum = quantized_optimum(w_star, quantizer)
    theta_opt = angle(optimum, w_star)
    # The loss of the quantized optimum: at v = v* when v is fixed; with v trained, at the best v for that θ,
    # v = (I+J)^{-1}((1 − 2θ/π)I + J)v* (∂f/∂v = 0, spec §8).
    v_opt = _best_v(v_star, theta_opt) if train_v else v_star
    optimum_loss = loss_at_angle(v_opt, v_star, theta_opt)

    at_optimum = np.zeros(steps + 1, dtype=bool)
    hamming = np.zeros(steps + 1)
    loss_q = np.zeros(steps + 1)
    flips = np.zeros(steps + 1)
    previous = None
    last_quarter_start = (3 * steps) // 4
    late_states: set[bytes] = set()
    for step in range(steps + 1):
        pattern = _quantize_pattern(w, quantizer)
        if step >= last_quarter_start:
            late_states.add(pattern.tobytes())
        mismatch = np.count_nonzero(pattern != optimum)
        at_optimum[step] = mismatch == 0
        hamming[step] = mismatch / n
        if previous is not None:
            flips[step] = np.count_nonzero(pattern != previous) / n
        previous = pattern
        theta = angle(pattern, w_star)
        loss_q[step] = loss_at_angle(v, v_star, theta)
        if step == steps:
            break
        grad_w = expected_coarse_grad_unit("relu", v, pattern, v_star, w_star)  # at Q(w_t): ŵ = Q̂(w_t)
        if train_v:
            v = v - lr * grad_v_at_angle(v, v_star, theta)
        w = w - lr * grad_w
    result = RecurrenceResult(quantizer, lr, steps, train_v, at_optimum, hamming, loss_q, flips, optimum_loss)
    result.summary = _recurrence_summary(result, seed, m, n, len(late_states))
    return result


def _recurrence_summary(result: RecurrenceResult, seed: int, m: int, n: int, distinct_late: int) -> dict:
    steps = result.steps
    visits = np.flatnonzero(result.at_optimum)
    last_quarter_start = (3 * steps) // 4
    return {
        "quantizer": result.quantizer, "m": m, "n": n, "lr": result.lr, "steps": steps, "seed": seed,
        "train_v": result.train_v,
        "n_visits": int(visits.size),
        "visits_last_quarter": int(np.count_nonzero(visits >= last_quarter_start)),
        "first_visit": int(visits[0]) if visits.size else None,
        "last_visit": int(visits[-1]) if visits.size else None,
        # Q(w_t) not eventually constant: several distinct quantized states among t ≥ 3·steps/4.
        "distinct_states_last_quarter": int(distinct_late),
        "visit_fraction": float(result.at_optimum.mean()),
        "mean_flip_rate": float(result.flips[1:].mean()) if steps else 0.0,
        "mean_hamming_last_quarter": float(result.hamming[last_quarter_start:].mean()),
        "optimum_loss": float(result.optimum_loss),
        "min_loss_q": float(result.loss_q.min()),
        "mean_loss_q_last_quarter": float(result.loss_q[last_quarter_start:].mean()),
    }
