"""Theory suite: the two-linear-layer Gaussian model of the STE paper and the recurrence toy of the REC paper.

Sources (cited in the comments below):

* STE = Yin, Lyu, Zhang, Osher, Qi, Xin, *Understanding straight-through estimator in training activation quantized
  neural nets*, ICLR 2019, arXiv 1903.05662 — the model, the population loss, its gradient, the expected coarse
  gradients of the identity and ReLU estimators, the spurious minimiser (spec §8).
* REC = Long, Yin, Xin, *Recurrence of optimum for training weight and activation quantized networks*, arXiv
  2012.05529 — projected coarse gradient descent ``w ← w − η·g̃(Q(w))`` and the recurrent visits of the quantized
  optimum (spec §6).

The model (spec §8). Z ∈ R^{m×n} has iid N(0, 1) entries, σ(x) = 1{x > 0}, the student is y = vᵀσ(Zw), the teacher
y* = v*ᵀσ(Zw*) with ‖w*‖ = 1, ℓ = ½(y − y*)², f = E ℓ. θ = ∠(w, w*), J = 11ᵀ, ŵ = w/‖w‖. The coarse gradient with
estimator μ' is g = Zᵀ(μ'(Zw) ⊙ v)(y − y*) — the chain rule with σ' (= 0 a.e.) replaced by μ'.

Every closed form here was re-derived and checked against Monte Carlo (``tests/test_theory.py``); the spec's §8
formulas are all correct. One addition beyond the spec: spec §8 says the clipped-ReLU estimator (μ' = 1{0 < x < c})
has "no closed form". It has one (derived in :func:`_expected_clipped_relu_grad` with Gaussian integrals in the plane
span(ŵ, w*)); it reduces to the ReLU formula as c → ∞ and is checked against Monte Carlo like the others (not against
the paper's text, which was not at hand). It also gives ⟨E g_clipped, ∂f/∂w⟩ = (vᵀv*)²·sinθ·φ(0)·(Φ(c/(‖w‖ sinθ)) − ½)
/(2π‖w‖) ≥ 0: positive correlation in closed form, as the STE paper states for properly chosen STEs.

Monte Carlo precision: spec §8 says 4·10⁵ samples "match these to ~1e-3" (m = 5, n = 8). For v, v* ~ N(0, I) the
standard error of a coarse-gradient coordinate at 4·10⁵ samples is 2e-3 to 1e-2, so the max error over coordinates is
~1e-2, not 1e-3; tests therefore derive tolerances from the reported standard error, never from a fixed 1e-3.

Numerics: the closed forms work on numpy float64 vectors (these are m- and n-vectors; numpy beats torch on tiny
arrays); Monte Carlo uses torch float64 with a seeded ``torch.Generator``, vectorised in chunks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch

from ..errors import ConfigError

__all__ = [
    "ESTIMATOR_NAMES",
    "Estimator",
    "GaussianInstance",
    "MonteCarloEstimate",
    "TrainResult",
    "RecurrenceResult",
    "angle",
    "population_loss",
    "true_grad_v",
    "true_grad_w",
    "expected_coarse_grad",
    "estimator_derivative",
    "monte_carlo_coarse_grad",
    "monte_carlo_coarse_grads",
    "monte_carlo_loss",
    "monte_carlo_true_grad_v",
    "spurious_minimizer",
    "random_instance",
    "ternary_projection",
    "quantized_optimum",
    "train_coarse",
    "recurrence_toy",
    "QUANTIZERS",
    "plot_recurrence",
    "plot_training",
    "theory_table",
    "run_theory_suite",
]

ESTIMATOR_NAMES = ("identity", "relu", "clipped_relu")

# An estimator is a name from ESTIMATOR_NAMES or a callable μ'(x) mapping a float64 tensor of pre-activations Zw to
# the surrogate derivative (same shape) — so an estimator registered by a method plugin can be plugged in directly.
Estimator = Union[str, Callable[[torch.Tensor], torch.Tensor]]

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_PHI0 = 1.0 / _SQRT_2PI  # φ(0), the standard normal density at 0
# θ within this distance of 0 or π counts as degenerate: ∂f/∂w is not defined there (see true_grad_w).
_ANGLE_EPS = 1e-12


# ----------------------------------------------------------------------------------------------------------------------
# Instances and small helpers
# ----------------------------------------------------------------------------------------------------------------------


def _vec(x: Any) -> np.ndarray:
    """A float64 numpy copy of a vector given as numpy, torch or a sequence."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=np.float64).reshape(-1)


def _torch_generator(generator: torch.Generator | int | None) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    g = torch.Generator()
    g.manual_seed(0 if generator is None else int(generator))
    return g


@dataclass(frozen=True)
class GaussianInstance:
    """One draw (v, w, v*, w*) of the spec §8 model: m hidden units, n inputs, ‖w*‖ = 1."""

    v: np.ndarray
    w: np.ndarray
    v_star: np.ndarray
    w_star: np.ndarray

    @property
    def m(self) -> int:
        return int(self.v.shape[0])

    @property
    def n(self) -> int:
        return int(self.w.shape[0])

    def args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(v, w, v*, w*) in the argument order of the closed-form functions."""
        return self.v, self.w, self.v_star, self.w_star


def random_instance(m: int, n: int, generator: torch.Generator | int | None = None) -> GaussianInstance:
    """Draw v, v* ~ N(0, I_m), w ~ N(0, I_n) and w* uniform on the unit sphere of R^n (a normalised Gaussian; the
    model only sees w*'s direction, spec §8 fixes ‖w*‖ = 1)."""
    g = _torch_generator(generator)
    v = torch.randn(m, generator=g, dtype=torch.float64)
    v_star = torch.randn(m, generator=g, dtype=torch.float64)
    w = torch.randn(n, generator=g, dtype=torch.float64)
    w_star = torch.randn(n, generator=g, dtype=torch.float64)
    w_star = w_star / w_star.norm()
    return GaussianInstance(v.numpy(), w.numpy(), v_star.numpy(), w_star.numpy())


def angle(w: Any, w_star: Any) -> float:
    """θ = ∠(w, w*) ∈ [0, π], as 2·atan2(‖ŵ − ŵ*‖, ‖ŵ + ŵ*‖) (Kahan's formula) rather than arccos(ŵᵀŵ*): arccos loses
    half the digits near θ = 0 and π (θ ≈ √(2ε) ≈ 1e-8 at best), which would leave a 1e-9 floor on f at the optimum."""
    w, w_star = _vec(w), _vec(w_star)
    a = w / math.sqrt(w @ w)
    b = w_star / math.sqrt(w_star @ w_star)
    diff, total = a - b, a + b
    return 2.0 * math.atan2(math.sqrt(diff @ diff), math.sqrt(total @ total))


def _best_v(v_star: np.ndarray, theta: float) -> np.ndarray:
    """argmin_v f(v, θ) = (I+J)^{-1}((1 − 2θ/π)I + J)v*, from ∂f/∂v = 0 (spec §8); (I+J)^{-1} = I − J/(m+1)."""
    rhs = (1.0 - 2.0 * theta / math.pi) * v_star + v_star.sum()
    return rhs - rhs.sum() / (v_star.shape[0] + 1)


def spurious_minimizer(v_star: Any) -> np.ndarray:
    """v = (I + J)^{-1}(J − I)v*, the second-layer weights of the STE paper's spurious critical point at θ = π (spec §8).

    Why this v: at θ = π, ∂f/∂v = ¼(I+J)v − ¼(J − I)v* (spec §8 with 1 − 2θ/π = −1) vanishes exactly here. In closed
    form (I + J)^{-1} = I − J/(m+1) (Sherman–Morrison), so v = 2(1ᵀv*)/(m+1)·1 − v*. (v, w) with θ(w, w*) = π is a
    local minimiser of f when vᵀv* < 0, i.e. (1ᵀv*)² < (m+1)‖v*‖²/2: f grows with θ at rate vᵀv*/(2π)
    (see :func:`true_grad_w`), so θ = π is then the best angle for this v.
    """
    v_star = _vec(v_star)
    m = v_star.shape[0]
    return 2.0 * v_star.sum() / (m + 1) * np.ones(m) - v_star


# ----------------------------------------------------------------------------------------------------------------------
# Closed forms (spec §8; STE paper §3 and appendix)
# ----------------------------------------------------------------------------------------------------------------------


def population_loss(v: Any, w: Any, v_star: Any, w_star: Any) -> float:
    """f(v, w) = ⅛[vᵀ(I+J)v − 2vᵀ((1 − 2θ/π)I + J)v* + v*ᵀ(I+J)v*] (spec §8; STE paper, population loss).

    Why: rows z_i of Z are independent, so E σ(z_iᵀw)σ(z_jᵀw) = ¼ for i ≠ j and ½ for i = j, i.e. ¼(I + J); and
    P(z_iᵀw > 0, z_iᵀw* > 0) = (π − θ)/(2π), i.e. the cross term ¼((1 − 2θ/π)I + J). f = ½E(y − y*)².
    """
    v, w, v_star, w_star = _vec(v), _vec(w), _vec(v_star), _vec(w_star)
    return _loss(v, v_star, angle(w, w_star))


def _loss(v: np.ndarray, v_star: np.ndarray, theta: float) -> float:
    sv, ss = v.sum(), v_star.sum()
    v_i_v = v @ v + sv * sv  # vᵀ(I+J)v
    s_i_s = v_star @ v_star + ss * ss  # v*ᵀ(I+J)v*
    cross = (1.0 - 2.0 * theta / math.pi) * (v @ v_star) + sv * ss  # vᵀ((1 − 2θ/π)I + J)v*
    return 0.125 * (v_i_v - 2.0 * cross + s_i_s)


def true_grad_v(v: Any, w: Any, v_star: Any, w_star: Any) -> np.ndarray:
    """∂f/∂v = ¼(I+J)v − ¼((1 − 2θ/π)I + J)v* (spec §8; the gradient of the quadratic in :func:`population_loss`)."""
    v, w, v_star, w_star = _vec(v), _vec(w), _vec(v_star), _vec(w_star)
    return _grad_v(v, v_star, angle(w, w_star))


def _grad_v(v: np.ndarray, v_star: np.ndarray, theta: float) -> np.ndarray:
    return 0.25 * (v + v.sum()) - 0.25 * ((1.0 - 2.0 * theta / math.pi) * v_star + v_star.sum())


def true_grad_w(v: Any, w: Any, v_star: Any, w_star: Any) -> np.ndarray:
    """∂f/∂w = −(vᵀv*)/(2π‖w‖)·P⊥w*/‖P⊥w*‖, P⊥ = I − ŵŵᵀ, for θ ∈ (0, π) (spec §8; STE paper).

    Why: f depends on w only through θ, with ∂f/∂θ = vᵀv*/(2π) (the θ term of :func:`population_loss`), and
    ∂θ/∂w = −P⊥w*/(‖w‖ sinθ) with sinθ = ‖P⊥w*‖ since ‖w*‖ = 1. At θ = 0 or π, θ(w) is not differentiable (a cone
    tip), so f has no gradient in w there; this raises ``ValueError``.
    """
    v, w, v_star, w_star = _vec(v), _vec(w), _vec(v_star), _vec(w_star)
    w_norm = np.linalg.norm(w)
    w_hat = w / w_norm
    w_star = w_star / np.linalg.norm(w_star)
    perp = w_star - (w_hat @ w_star) * w_hat  # P⊥w*
    perp_norm = np.linalg.norm(perp)
    if perp_norm < _ANGLE_EPS:
        raise ValueError("∂f/∂w has no closed form (f is not differentiable in w) at θ = 0 or θ = π")
    return -(v @ v_star) / (2.0 * math.pi * w_norm) * perp / perp_norm


def _check_estimator(estimator: Estimator) -> None:
    if callable(estimator):
        return
    if estimator not in ESTIMATOR_NAMES:
        raise ConfigError(f"unknown estimator '{estimator}'; choose one of {', '.join(ESTIMATOR_NAMES)} or pass a "
                          "callable μ'(x)")


def expected_coarse_grad(estimator: str, v: Any, w: Any, v_star: Any, w_star: Any, *, clip: float = 1.0) -> np.ndarray:
    """E_Z g_μ(v, w; Z), the expected coarse gradient w.r.t. w, in closed form for "identity", "relu" and
    "clipped_relu" (μ' = 1{0 < x < clip}).

    * identity (spec §8; STE paper): (‖v‖²ŵ − (vᵀv*)w*)/√(2π).
    * relu (spec §8; STE paper): h/(2√(2π))·ŵ − cos(θ/2)(vᵀv*)/√(2π)·(ŵ + w*)/‖ŵ + w*‖,
      h = ‖v‖² + (1ᵀv)² − (1ᵀv)(1ᵀv*) + vᵀv*. At θ = π the second term is 0 (cos(π/2) = 0; ŵ + w* = 0).
    * clipped_relu: derived here (the spec says there is none), see :func:`_expected_clipped_relu_grad`.

    Callables have no closed form: use :func:`monte_carlo_coarse_grad`.
    """
    _check_estimator(estimator)
    if callable(estimator):
        raise ConfigError("a callable estimator has no closed-form expectation; use monte_carlo_coarse_grad")
    v, w, v_star, w_star = _vec(v), _vec(w), _vec(v_star), _vec(w_star)
    return _expected_grad(estimator, v, w, v_star, w_star / np.linalg.norm(w_star), clip)


def _expected_grad(estimator: str, v: np.ndarray, w: np.ndarray, v_star: np.ndarray, w_star: np.ndarray,
                   clip: float) -> np.ndarray:
    w_norm = math.sqrt(w @ w)
    w_hat = w / w_norm
    v_dot = v @ v_star
    if estimator == "identity":
        # Only the i = j terms survive (E z_i = 0 for the other rows); E z 1{zᵀa > 0} = a/√(2π) for unit a.
        return ((v @ v) * w_hat - v_dot * w_star) / _SQRT_2PI
    sv = v.sum()
    h = v @ v + sv * sv - sv * v_star.sum() + v_dot
    if estimator == "relu":
        # i ≠ j rows are independent: E z 1{zᵀŵ > 0} · ½(v_j − v*_j) gives the h term; i = j needs
        # E z 1{zᵀŵ > 0, zᵀw* > 0} = cos(θ/2)/√(2π)·(ŵ + w*)/‖ŵ + w*‖ (the wedge of opening π − θ around the bisector).
        # Since ‖ŵ + w*‖ = 2cos(θ/2), that term is simply (ŵ + w*)/(2√(2π)): no division, and at θ = π it is 0 as the
        # spec's limit says. Hence E g_relu = ((h − vᵀv*)ŵ − (vᵀv*)w*)/(2√(2π)).
        wedge = 0.5 * _PHI0 * (w_hat + w_star)
        return h / (2.0 * _SQRT_2PI) * w_hat - v_dot * wedge
    return _expected_clipped_relu_grad(w_hat, w_norm, w_star, h, v_dot, clip)


def _expected_clipped_relu_grad(w_hat: np.ndarray, w_norm: float, w_star: np.ndarray, h: float, v_dot: float,
                                clip: float) -> np.ndarray:
    """E g for μ' = 1{0 < x < c}: (h/2)(φ(0) − φ(a))·ŵ − (vᵀv*)(B_∥ ŵ + B_⊥ e), a = c/‖w‖.

    Derivation (not in the spec; same decomposition as the STE paper's ReLU lemma). Write z = x ŵ + y e + rest with
    e = P⊥w*/‖P⊥w*‖, so zᵀw = ‖w‖x, zᵀw* = x cosθ + y sinθ, and μ'(zᵀw) = 1{0 < x < a}.
      * rows i ≠ j (independent): E z 1{0 < x < a} = ŵ∫₀^a xφ(x)dx = (φ(0) − φ(a))ŵ, times ½(v_j − v*_j); the i = j
        student term has the same value (1{x > 0} is implied). Summed as in the ReLU case this gives (h/2)(φ(0) − φ(a))ŵ.
      * i = j teacher term B = E z 1{0 < x < a} 1{x cosθ + y sinθ > 0}: with k = cotθ,
        B_⊥ = ∫₀^a φ(x)φ(kx)dx = φ(0) sinθ (Φ(a/sinθ) − ½),
        B_∥ = ∫₀^a xφ(x)Φ(kx)dx = φ(0)/2 − φ(a)Φ(a cotθ) + cosθ·φ(0)(Φ(a/sinθ) − ½)   (by parts).
    As a → ∞ this is the ReLU formula: B → φ(0)/2·(ŵ + w*) = cos(θ/2)/√(2π)·(ŵ + w*)/‖ŵ + w*‖.
    At θ = 0 and θ = π the limits are finite (B = (φ(0) − φ(a))ŵ and B = 0) and e is not needed.
    """
    from scipy.special import ndtr

    a = clip / w_norm
    phi_a = math.exp(-0.5 * a * a) / _SQRT_2PI
    cos_t = float(np.clip(w_hat @ w_star, -1.0, 1.0))
    perp = w_star - cos_t * w_hat
    sin_t = math.sqrt(perp @ perp)
    if sin_t < _ANGLE_EPS:
        # θ = 0: the teacher indicator equals the student's; θ = π: the two half-spaces are disjoint.
        b_par = (_PHI0 - phi_a) if cos_t > 0 else 0.0
        b_perp, e = 0.0, np.zeros_like(w_hat)
    else:
        tail = float(ndtr(a / sin_t)) - 0.5
        b_perp = _PHI0 * sin_t * tail
        b_par = 0.5 * _PHI0 - phi_a * float(ndtr(a * cos_t / sin_t)) + cos_t * _PHI0 * tail
        e = perp / sin_t
    return 0.5 * h * (_PHI0 - phi_a) * w_hat - v_dot * (b_par * w_hat + b_perp * e)


# ----------------------------------------------------------------------------------------------------------------------
# Monte Carlo (any estimator, including plugin callables)
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonteCarloEstimate:
    """Sample mean and its standard error (sample std / √N), per coordinate; scalars are 0-d arrays."""

    mean: np.ndarray
    stderr: np.ndarray
    n_samples: int


def estimator_derivative(estimator: Estimator, *, clip: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """μ' as a tensor function (spec §2): identity 1, relu 1{x > 0}, clipped_relu 1{0 < x < clip}, or the callable."""
    _check_estimator(estimator)
    if callable(estimator):
        return lambda x: estimator(x).to(x.dtype)
    if estimator == "identity":
        return torch.ones_like
    if estimator == "relu":
        return lambda x: (x > 0).to(x.dtype)
    # Spec §8 writes 1{0 < x < 1} and §2's quantized ReLU 1{0 < x ≤ Lα}; the two differ on a null set only.
    return lambda x: ((x > 0) & (x < clip)).to(x.dtype)


class _Accumulator:
    """Streaming sum and sum of squares (float64) for a mean and its standard error."""

    def __init__(self) -> None:
        self.total = 0.0
        self.total_sq = 0.0
        self.count = 0

    def add(self, samples: torch.Tensor) -> None:
        self.total = self.total + samples.sum(0)
        self.total_sq = self.total_sq + (samples * samples).sum(0)
        self.count += samples.shape[0]

    def result(self) -> MonteCarloEstimate:
        n = self.count
        mean = self.total / n
        var = (self.total_sq / n - mean * mean) * n / max(n - 1, 1)
        stderr = torch.sqrt(torch.clamp(torch.as_tensor(var), min=0.0) / n)
        return MonteCarloEstimate(np.asarray(torch.as_tensor(mean).numpy()), np.asarray(stderr.numpy()), n)


def _chunks(n_samples: int, per_sample: int, budget: int = 1 << 21) -> list[int]:
    size = max(1, budget // max(per_sample, 1))
    return [min(size, n_samples - start) for start in range(0, n_samples, size)]


def _sample_batch(v, w, v_star, w_star, batch: int, generator: torch.Generator):
    """One batch of the model: Z, pre-activations Zw, and the residual y − y*."""
    m, n = v.shape[0], w.shape[0]
    z = torch.randn(batch, m, n, generator=generator, dtype=torch.float64)
    pre = z @ w  # (batch, m): z_iᵀw
    pre_star = z @ w_star
    residual = (pre > 0).to(torch.float64) @ v - (pre_star > 0).to(torch.float64) @ v_star  # y − y*
    return z, pre, residual


def monte_carlo_coarse_grads(estimators: Sequence[Estimator], v: Any, w: Any, v_star: Any, w_star: Any,
                             n_samples: int, generator: torch.Generator | int | None = None, *,
                             clip: float = 1.0) -> list[MonteCarloEstimate]:
    """Monte Carlo E_Z g_μ for several estimators on the same samples (common random numbers).

    g = Zᵀ(μ'(Zw) ⊙ v)(y − y*), the coarse gradient of spec §8 (STE paper: the chain rule with σ' replaced by μ').
    """
    derivs = [estimator_derivative(e, clip=clip) for e in estimators]
    tv, tw, tvs, tws = (torch.from_numpy(_vec(x)) for x in (v, w, v_star, w_star))
    tws = tws / tws.norm()
    gen = _torch_generator(generator)
    accs = [_Accumulator() for _ in estimators]
    for batch in _chunks(n_samples, tv.shape[0] * tw.shape[0]):
        z, pre, residual = _sample_batch(tv, tw, tvs, tws, batch, gen)
        for deriv, acc in zip(derivs, accs):
            weights = deriv(pre) * tv * residual[:, None]  # (batch, m): μ'(z_iᵀw) v_i (y − y*)
            acc.add(torch.einsum("bmn,bm->bn", z, weights))
    return [acc.result() for acc in accs]


def monte_carlo_coarse_grad(estimator: Estimator, v: Any, w: Any, v_star: Any, w_star: Any, n_samples: int,
                            generator: torch.Generator | int | None = None, *, clip: float = 1.0) -> MonteCarloEstimate:
    """Monte Carlo E_Z g_μ (mean and standard error per coordinate) for any estimator, names or callables μ'(x)."""
    return monte_carlo_coarse_grads([estimator], v, w, v_star, w_star, n_samples, generator, clip=clip)[0]


def monte_carlo_loss(v: Any, w: Any, v_star: Any, w_star: Any, n_samples: int,
                     generator: torch.Generator | int | None = None) -> MonteCarloEstimate:
    """Monte Carlo f = E ½(y − y*)² (an oracle for :func:`population_loss`)."""
    tv, tw, tvs, tws = (torch.from_numpy(_vec(x)) for x in (v, w, v_star, w_star))
    gen = _torch_generator(generator)
    acc = _Accumulator()
    for batch in _chunks(n_samples, tv.shape[0] * tw.shape[0]):
        _, _, residual = _sample_batch(tv, tw, tvs, tws / tws.norm(), batch, gen)
        acc.add(0.5 * residual * residual)
    return acc.result()


def monte_carlo_true_grad_v(v: Any, w: Any, v_star: Any, w_star: Any, n_samples: int,
                            generator: torch.Generator | int | None = None) -> MonteCarloEstimate:
    """Monte Carlo ∂f/∂v = E σ(Zw)(y − y*) (exact per sample: ℓ is differentiable in v; an oracle for true_grad_v)."""
    tv, tw, tvs, tws = (torch.from_numpy(_vec(x)) for x in (v, w, v_star, w_star))
    gen = _torch_generator(generator)
    acc = _Accumulator()
    for batch in _chunks(n_samples, tv.shape[0] * tw.shape[0]):
        _, pre, residual = _sample_batch(tv, tw, tvs, tws / tws.norm(), batch, gen)
        acc.add((pre > 0).to(torch.float64) * residual[:, None])
    return acc.result()


# ----------------------------------------------------------------------------------------------------------------------
# Coarse gradient descent on (v, w) (STE paper, Algorithm 1)
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """A coarse gradient descent run: population loss and θ before each step and after the last (steps + 1 values)."""

    estimator: str
    loss: np.ndarray
    theta: np.ndarray
    v: np.ndarray
    w: np.ndarray
    mode: str  # "expected" (closed-form full-batch gradients) or "minibatch" (Monte Carlo mini-batches)

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    @property
    def final_theta(self) -> float:
        return float(self.theta[-1])


def train_coarse(estimator: Estimator, instance: GaussianInstance, lr: float = 0.1, steps: int = 2000, *,
                 full_batch_expected: bool = True, batch_size: int = 64, generator: torch.Generator | int | None = None,
                 clip: float = 1.0) -> TrainResult:
    """Coarse gradient descent on (v, w) from ``instance``'s (v, w) towards the teacher (v*, w*).

    STE paper, Algorithm 1: v ← v − η·∂f/∂v (the true gradient: ℓ is differentiable in v, σ(Zw) needs no estimator),
    w ← w − η·g_μ (the coarse gradient). With ``full_batch_expected`` both are the expectations over Z, i.e. the
    closed forms :func:`true_grad_v` and :func:`expected_coarse_grad` (available for the three named estimators);
    otherwise, and always for a callable μ', each step uses a fresh mini-batch of ``batch_size`` Gaussian samples
    (SGD). The recorded loss is the population loss f (closed form) whatever the mode.
    """
    _check_estimator(estimator)
    name = estimator if isinstance(estimator, str) else getattr(estimator, "__name__", "callable")
    v, w = instance.v.copy(), instance.w.copy()
    v_star, w_star = instance.v_star, instance.w_star / np.linalg.norm(instance.w_star)
    expected = full_batch_expected and isinstance(estimator, str)
    losses, thetas = np.empty(steps + 1), np.empty(steps + 1)
    if not expected:
        deriv = estimator_derivative(estimator, clip=clip)
        gen = _torch_generator(generator)
        tvs, tws = torch.from_numpy(v_star), torch.from_numpy(w_star)
    for step in range(steps + 1):
        theta = angle(w, w_star)
        losses[step], thetas[step] = _loss(v, v_star, theta), theta
        if step == steps:
            break
        if expected:
            grad_v = _grad_v(v, v_star, theta)
            grad_w = _expected_grad(estimator, v, w, v_star, w_star, clip)
        else:
            tv, tw = torch.from_numpy(v), torch.from_numpy(w)
            z, pre, residual = _sample_batch(tv, tw, tvs, tws, batch_size, gen)
            grad_v = ((pre > 0).to(torch.float64) * residual[:, None]).mean(0).numpy()
            weights = deriv(pre) * tv * residual[:, None]
            grad_w = torch.einsum("bmn,bm->n", z, weights).numpy() / batch_size
        v = v - lr * grad_v
        w = w - lr * grad_w
    return TrainResult(name, losses, thetas, v, w, "expected" if expected else "minibatch")


# ----------------------------------------------------------------------------------------------------------------------
# Projected coarse gradient and the recurrence of the quantized optimum (REC paper; spec §6)
# ----------------------------------------------------------------------------------------------------------------------

QUANTIZERS = ("binary", "ternary")


def ternary_projection(w: Any) -> tuple[np.ndarray, float]:
    """Exact L2 projection onto {α·t : α > 0, t ∈ {−1, 0, 1}^n} (LBW, b = 2; spec §1): returns (t, α).

    Sort |w| descending (a₁ ≥ … ≥ a_n), S_k = Σ_{i≤k} a_i, k* = argmax_k S_k²/k, α* = S_{k*}/k*, t = sign(w) on the
    k* largest entries. Ties in |w| are broken by index (any k* of the maximal value is optimal, spec §1).
    """
    w = _vec(w)
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
    projection of w*. (``tests/test_theory.py`` checks both against brute force over all 2^n / 3^n patterns, small n.)
    """
    if quantizer not in QUANTIZERS:
        raise ConfigError(f"unknown quantizer '{quantizer}'; choose one of {', '.join(QUANTIZERS)}")
    return _quantize_pattern(_vec(w_star), quantizer)


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


def recurrence_toy(quantizer: str = "binary", m: int = 10, n: int = 20, lr: float = 0.05, steps: int = 20000,
                   seed: int = 0, *, train_v: bool = False) -> RecurrenceResult:
    """Projected coarse gradient descent w ← w − η·E g_relu(v, Q(w)) on the spec §8 model (REC paper; spec §6 toy).

    The instance (v*, w*, latent w_0) comes from :func:`random_instance` with ``seed``. The gradient is the full-batch
    expected ReLU-STE coarse gradient (:func:`expected_coarse_grad`) evaluated at the quantized weights Q(w_t) — its ŵ
    is Q(w_t)/‖Q(w_t)‖ — and it updates the latent float w_t (spec §6: BCGD with ρ = 0, no cancellation, no clipping).

    Choices (documented, not from the paper's text): ``quantizer`` "binary" is Q = sign (the spec's check);
    "ternary" is the exact ternary projection of spec §1 (:func:`ternary_projection`). v is fixed at v* by default
    (``train_v=False`` [choice, the usual setting]; then E g_relu = ‖v*‖²/(2√(2π))·(Q̂(w) − w*) — spec §8's formula with
    h = 2‖v*‖² — so for binary Q each coordinate drifts on its own: w_i moves towards sign(w*_i) when Q(w)_i is wrong,
    and away from it when right but |w*_i| < 1/√n; those small coordinates oscillate around 0 forever, which is the
    mechanism of the recurrence). With ``train_v`` v starts at the draw's v and takes true-gradient steps ∂f/∂v at
    (v, Q(w)) with the same η. Both choices recur (checked for seeds 0–5, binary and ternary: tens to thousands of
    visits, including the last quarter). The optimum is :func:`quantized_optimum` (Q(w*): exact for v = v*; the same
    pattern is used when v is trained, and ``optimum_loss`` is then taken at the best v for it).
    """
    if quantizer not in QUANTIZERS:
        raise ConfigError(f"unknown quantizer '{quantizer}'; choose one of {', '.join(QUANTIZERS)}")
    instance = random_instance(m, n, seed)
    v_star, w_star = instance.v_star, instance.w_star
    v = instance.v.copy() if train_v else v_star.copy()
    w = instance.w.copy()
    optimum = quantized_optimum(w_star, quantizer)
    theta_opt = angle(optimum, w_star)
    # The loss of the quantized optimum: at v = v* when v is fixed; with v trained, at the best v for that θ,
    # v = (I+J)^{-1}((1 − 2θ/π)I + J)v* (∂f/∂v = 0, spec §8).
    v_opt = _best_v(v_star, theta_opt) if train_v else v_star
    optimum_loss = _loss(v_opt, v_star, theta_opt)

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
        loss_q[step] = _loss(v, v_star, theta)
        if step == steps:
            break
        grad_w = _expected_grad("relu", v, pattern, v_star, w_star, 1.0)  # at Q(w_t): ŵ = Q̂(w_t)
        if train_v:
            v = v - lr * _grad_v(v, v_star, theta)
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


# ----------------------------------------------------------------------------------------------------------------------
# Plots (matplotlib imported lazily; Agg canvas on a bare Figure, so no global backend switch and no open figures)
# ----------------------------------------------------------------------------------------------------------------------


def _figure(nrows: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, 1, squeeze=False, sharex=True)[:, 0]


def _save_png(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    return path


def plot_recurrence(result: RecurrenceResult, path: str | Path) -> Path:
    """Three panels over the steps: loss at Q(w_t) (with the quantized optimum's loss), the normalised Hamming distance
    of Q(w_t) to the optimum, and a tick at every visit of the optimum (spec §6 diagnostics)."""
    steps = np.arange(result.steps + 1)
    fig, (ax_loss, ax_ham, ax_visit) = _figure(3, 7.0, 6.0)
    ax_loss.plot(steps, result.loss_q, lw=0.4, color="C0", label="f at Q(w_t)")
    ax_loss.axhline(result.optimum_loss, color="C3", lw=1.0, ls="--", label="quantized optimum")
    ax_loss.set_ylabel("loss at Q(w_t)")
    ax_loss.legend(fontsize="small", loc="upper right")
    ax_ham.plot(steps, result.hamming, lw=0.4, color="C1")
    ax_ham.set_ylabel("Hamming to optimum")
    visits = np.flatnonzero(result.at_optimum)
    ax_visit.vlines(visits, 0, 1, lw=0.3, color="C2")
    ax_visit.set_yticks([])
    ax_visit.set_ylabel("visits")
    ax_visit.set_xlabel("step t")
    ax_visit.axvline(3 * result.steps / 4, color="k", lw=0.8, ls=":")
    s = result.summary
    fig.suptitle(f"projected coarse gradient, {result.quantizer} Q, η = {result.lr}: {s.get('n_visits')} visits, "
                 f"{s.get('visits_last_quarter')} in the last quarter", fontsize="medium")
    for ax in (ax_loss, ax_ham):
        ax.grid(alpha=0.3)
    return _save_png(fig, path)


def plot_training(results: Sequence[TrainResult], path: str | Path) -> Path:
    """Population loss (log scale) and θ along coarse gradient descent, one line per run."""
    fig, (ax_loss, ax_theta) = _figure(2, 6.0, 5.0)
    for index, res in enumerate(results):
        ax_loss.semilogy(np.maximum(res.loss, 1e-16), color=f"C{index % 10}", label=res.estimator)
        ax_theta.plot(res.theta, color=f"C{index % 10}")
    ax_loss.set_ylabel("population loss f")
    ax_loss.legend(fontsize="small")
    ax_theta.set_ylabel("θ(w, w*)")
    ax_theta.set_xlabel("step")
    for ax in (ax_loss, ax_theta):
        ax.grid(alpha=0.3)
    return _save_png(fig, path)


# ----------------------------------------------------------------------------------------------------------------------
# The theory table and the "theory-gaussian" suite
# ----------------------------------------------------------------------------------------------------------------------


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _inner_product_formula(estimator: str, v, w, v_star, w_star, clip: float) -> float:
    """⟨E g_μ, ∂f/∂w⟩ in closed form: relu sinθ(vᵀv*)²/(2(2π)^{3/2}‖w‖), identity twice that (spec §8; STE paper);
    clipped relu (vᵀv*)²·φ(0) sinθ (Φ(c/(‖w‖ sinθ)) − ½)/(2π‖w‖) (derived here: only the B_⊥ e term of
    _expected_clipped_relu_grad is along ∂f/∂w = −(vᵀv*)/(2π‖w‖)·e)."""
    from scipy.special import ndtr

    theta, w_norm, dot = angle(w, w_star), float(np.linalg.norm(w)), float(v @ v_star)
    relu = math.sin(theta) * dot * dot / (2.0 * (2.0 * math.pi) ** 1.5 * w_norm)
    if estimator == "relu":
        return relu
    if estimator == "identity":
        return 2.0 * relu
    tail = float(ndtr(clip / (w_norm * math.sin(theta)))) - 0.5
    return dot * dot * _PHI0 * math.sin(theta) * tail / (2.0 * math.pi * w_norm)


def _spurious_identity_norm(v_star: np.ndarray) -> float:
    """‖E g_identity‖ at the spurious minimiser: 2(m−1)(1ᵀv*)²/(√(2π)(m+1)²) (spec §8; STE paper)."""
    m = v_star.shape[0]
    return 2.0 * (m - 1) * v_star.sum() ** 2 / (_SQRT_2PI * (m + 1) ** 2)


def theory_table(seed: int = 0, n_draws: int = 200, mc_samples: int = 200_000, mc_draws: int = 4, *, m: int = 5,
                 n: int = 8, train_draws: int = 20, train_steps: int = 1000, train_lr: float | None = None,
                 clip: float = 1.0):
    """One row per estimator (identity, relu, clipped_relu) of checks on the spec §8 model. Columns:

    * ``closed_form``: where E g comes from ("spec §8" or "derived here" for clipped_relu).
    * ``cos_mean``, ``cos_min``: cosine of E g (closed form) with ∂f/∂w over ``n_draws`` random draws
      (:func:`random_instance`); STE paper: positive for relu and clipped relu (and identity in this model).
    * ``cos_mc_mean``, ``cos_mc_min``: the same with the Monte Carlo E g over ``mc_draws`` draws of ``mc_samples``.
    * ``mc_max_abs_err``, ``mc_max_stderr``, ``mc_max_z``: closed form vs Monte Carlo over those draws (max over draws
      and coordinates of |error|, the standard error, and |error|/stderr).
    * ``inner_product_rel_err``: max relative error of ⟨E g, ∂f/∂w⟩ against its closed form over the ``n_draws``.
    * ``spurious_grad_norm`` (closed form), ``spurious_grad_norm_formula`` (spec §8: identity's
      2(m−1)(1ᵀv*)²/(√(2π)(m+1)²), 0 for the others), ``spurious_grad_norm_mc``: ‖E g‖ at the spurious minimiser
      v = (I+J)^{-1}(J−I)v*, θ = π, on the first draw; ``spurious_grad_mc_stderr`` = ‖MC standard error‖, the
      noise floor of the MC norm.
    * ``train_*``: coarse gradient descent (:func:`train_coarse`, expected gradients, η = 2/(m+1) unless
      ``train_lr``) from ``train_draws`` random draws: ``train_final_loss``/``train_final_theta`` of the first draw,
      ``train_initial_loss_median``, ``train_final_loss_median``, ``train_global_rate`` (final loss < 1e-6 × initial),
      ``train_spurious_rate`` (final θ > π − 1e-3), ``train_loss_rise_rate`` (runs whose loss rises by more than 1e-3 ×
      initial above its running minimum in the second half — the identity STE's instability at the spurious minimum,
      STE paper).
    """
    import pandas as pd

    # Independent streams for the gradient draws, the Monte Carlo samples and the training draws, so that changing
    # one knob (say mc_samples) leaves the other parts of the table unchanged.
    draw_seed, mc_seed, train_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3))
    gen, mc_gen, train_gen = (_torch_generator(s) for s in (draw_seed, mc_seed, train_seed))
    lr = 2.0 / (m + 1) if train_lr is None else train_lr
    rows = {name: {"closed_form": "derived here" if name == "clipped_relu" else "spec §8"} for name in ESTIMATOR_NAMES}

    cosines = {name: [] for name in ESTIMATOR_NAMES}
    inner_err = {name: 0.0 for name in ESTIMATOR_NAMES}
    draws = [random_instance(m, n, gen) for _ in range(n_draws)]
    for inst in draws:
        grad_w = true_grad_w(*inst.args())
        for name in ESTIMATOR_NAMES:
            expected = expected_coarse_grad(name, *inst.args(), clip=clip)
            cosines[name].append(_cosine(expected, grad_w))
            formula = _inner_product_formula(name, *inst.args(), clip)
            inner_err[name] = max(inner_err[name], abs(expected @ grad_w - formula) / abs(formula))

    mc_stats = {name: {"cos": [], "err": 0.0, "se": 0.0, "z": 0.0} for name in ESTIMATOR_NAMES}
    for inst in draws[:mc_draws]:
        grad_w = true_grad_w(*inst.args())
        estimates = monte_carlo_coarse_grads(ESTIMATOR_NAMES, *inst.args(), mc_samples, mc_gen, clip=clip)
        for name, est in zip(ESTIMATOR_NAMES, estimates):
            err = np.abs(expected_coarse_grad(name, *inst.args(), clip=clip) - est.mean)
            stats = mc_stats[name]
            stats["cos"].append(_cosine(est.mean, grad_w))
            stats["err"] = max(stats["err"], float(err.max()))
            stats["se"] = max(stats["se"], float(est.stderr.max()))
            stats["z"] = max(stats["z"], float((err / est.stderr).max()))

    first = draws[0]
    v_spurious = spurious_minimizer(first.v_star)
    w_spurious = -first.w_star * float(np.linalg.norm(first.w))  # θ = π exactly, ‖w‖ of the draw
    spurious_mc = monte_carlo_coarse_grads(ESTIMATOR_NAMES, v_spurious, w_spurious, first.v_star, first.w_star,
                                           mc_samples, mc_gen, clip=clip)

    train_draws_list = [random_instance(m, n, train_gen) for _ in range(train_draws)]
    train_runs = {name: [train_coarse(name, inst, lr, train_steps, clip=clip) for inst in train_draws_list]
                  for name in ESTIMATOR_NAMES}

    for name, est_spurious in zip(ESTIMATOR_NAMES, spurious_mc):
        row = rows[name]
        row["cos_mean"] = float(np.mean(cosines[name]))
        row["cos_min"] = float(np.min(cosines[name]))
        stats = mc_stats[name]
        row["cos_mc_mean"] = float(np.mean(stats["cos"])) if stats["cos"] else float("nan")
        row["cos_mc_min"] = float(np.min(stats["cos"])) if stats["cos"] else float("nan")
        row["mc_max_abs_err"], row["mc_max_stderr"], row["mc_max_z"] = stats["err"], stats["se"], stats["z"]
        row["inner_product_rel_err"] = inner_err[name]
        row["spurious_grad_norm"] = float(np.linalg.norm(
            expected_coarse_grad(name, v_spurious, w_spurious, first.v_star, first.w_star, clip=clip)))
        row["spurious_grad_norm_formula"] = _spurious_identity_norm(first.v_star) if name == "identity" else 0.0
        row["spurious_grad_norm_mc"] = float(np.linalg.norm(est_spurious.mean))
        # ‖stderr‖: the size of the Monte Carlo noise the MC norm above would show for a zero gradient.
        row["spurious_grad_mc_stderr"] = float(np.linalg.norm(est_spurious.stderr))
        runs = train_runs[name]
        initial = np.array([r.loss[0] for r in runs])
        final = np.array([r.final_loss for r in runs])
        row["train_final_loss"] = runs[0].final_loss if runs else float("nan")
        row["train_final_theta"] = runs[0].final_theta if runs else float("nan")
        row["train_initial_loss_median"] = float(np.median(initial)) if runs else float("nan")
        row["train_final_loss_median"] = float(np.median(final)) if runs else float("nan")
        row["train_global_rate"] = float(np.mean(final < 1e-6 * initial)) if runs else float("nan")
        row["train_spurious_rate"] = float(np.mean([r.final_theta > math.pi - 1e-3 for r in runs])) if runs else float("nan")
        row["train_loss_rise_rate"] = float(np.mean([_loss_rises(r.loss) for r in runs])) if runs else float("nan")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "estimator"
    table.attrs["train_runs_first_draw"] = [train_runs[name][0] for name in ESTIMATOR_NAMES if train_runs[name]]
    return table


def _loss_rises(loss: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Whether the loss climbs above its running minimum by more than ``tolerance`` × initial loss in the second half."""
    half = loss[loss.shape[0] // 2:]
    return bool(np.max(half - np.minimum.accumulate(half)) > tolerance * loss[0])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def run_theory_suite(out_dir: str | Path, seed: int = 0, *, recurrence_steps: int = 20000,
                     table_kwargs: dict | None = None) -> dict:
    """The "theory-gaussian" suite: :func:`theory_table` plus the spec §6 recurrence toy (binary and ternary, v = v*),
    plots written to ``out_dir`` (``theory_training.png``, ``recurrence_binary.png``, ``recurrence_ternary.png``) and
    the table as ``theory_table.csv``. Returns a JSON-able dict of summary numbers and pass/fail checks (a run record).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = theory_table(seed=seed, **(table_kwargs or {}))
    table.to_csv(out / "theory_table.csv")
    plots = [str(plot_training(table.attrs["train_runs_first_draw"], out / "theory_training.png"))]
    recurrence = {}
    for quantizer in QUANTIZERS:
        result = recurrence_toy(quantizer, steps=recurrence_steps, seed=seed)
        recurrence[quantizer] = result.summary
        plots.append(str(plot_recurrence(result, out / f"recurrence_{quantizer}.png")))
    checks = {
        # STE paper: relu and clipped relu coarse gradients correlate positively with ∂f/∂w — on every draw in closed
        # form, and on average by Monte Carlo (a single MC cosine can dip below 0 by noise on a draw with θ near 0 or
        # π, where the true cosine is itself tiny).
        "relu_positive_correlation": bool(table.loc["relu", "cos_min"] > 0),
        "clipped_relu_positive_correlation": bool(table.loc["clipped_relu", "cos_min"] > 0
                                                  and table.loc["clipped_relu", "cos_mc_mean"] > 0),
        # Closed forms agree with Monte Carlo within 5 standard errors.
        "closed_forms_match_monte_carlo": bool((table["mc_max_z"] < 5.0).all()),
        # STE paper: identity's E g does not vanish at the spurious minimiser, relu's does.
        "identity_nonzero_at_spurious": bool(table.loc["identity", "spurious_grad_norm"] > 1e-8),
        "relu_zero_at_spurious": bool(table.loc["relu", "spurious_grad_norm"] < 1e-12),
        # REC paper: recurrent visits of the quantized optimum, Q(w_t) not eventually constant.
        "recurrence_binary": bool(recurrence["binary"]["visits_last_quarter"] > 0
                                  and recurrence["binary"]["distinct_states_last_quarter"] > 1),
        "recurrence_ternary": bool(recurrence["ternary"]["visits_last_quarter"] > 0
                                   and recurrence["ternary"]["distinct_states_last_quarter"] > 1),
    }
    record = {
        "suite": "theory-gaussian",
        "seed": seed,
        "table": table.reset_index().to_dict(orient="records"),
        "recurrence": recurrence,
        "checks": checks,
        "all_checks_pass": all(checks.values()),
        "plots": plots,
        "table_csv": str(out / "theory_table.csv"),
        "wall_time_s": time.perf_counter() - start,
    }
    return _jsonable(record)
