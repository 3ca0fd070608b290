"""The two-linear-layer Gaussian model of the STE paper: closed forms, Monte Carlo, coarse gradient descent, the table.

Source: STE = Yin, Lyu, Zhang, Osher, Qi, Xin, *Understanding straight-through estimator in training activation
quantized neural nets*, ICLR 2019, arXiv 1903.05662 — the model, the population loss, its gradient, the expected coarse
gradients of the identity and ReLU estimators, the spurious minimiser (spec §8).

The model (spec §8). Z ∈ R^{m×n} has iid N(0, 1) entries, σ(x) = 1{x > 0}, the student is y = vᵀσ(Zw), the teacher
y* = v*ᵀσ(Zw*) with ‖w*‖ = 1, ℓ = ½(y − y*)², f = E ℓ. θ = ∠(w, w*), J = 11ᵀ, ŵ = w/‖w‖. The coarse gradient with
estimator μ' is g = Zᵀ(μ'(Zw) ⊙ v)(y − y*) — the chain rule with σ' (= 0 a.e.) replaced by μ'.

Every closed form here was re-derived and checked against Monte Carlo (``tests/theory/test_gaussian.py``); the spec's
§8 formulas are all correct. One addition beyond the spec: spec §8 says the clipped-ReLU estimator (μ' = 1{0 < x < c})
has "no closed form". It has one (derived in :func:`_expected_clipped_relu_grad` with Gaussian integrals in the plane
span(ŵ, w*)); it reduces to the ReLU formula as c → ∞ and is checked against Monte Carlo like the others (not against
the paper's text, which was not at hand). It also gives ⟨E g_clipped, ∂f/∂w⟩ = (vᵀv*)²·sinθ·φ(0)·(Φ(c/(‖w‖ sinθ)) − ½)
/(2π‖w‖) ≥ 0: positive correlation in closed form, as the STE paper states for properly chosen STEs. Any other
elementwise μ' (a method's activation backward) gets E g by quadrature (:mod:`qbench.theory.quadrature`).

Monte Carlo precision: spec §8 says 4·10⁵ samples "match these to ~1e-3" (m = 5, n = 8). For v, v* ~ N(0, I) the
standard error of a coarse-gradient coordinate at 4·10⁵ samples is 2e-3 to 1e-2, so the max error over coordinates is
~1e-2, not 1e-3; tests therefore derive tolerances from the reported standard error, never from a fixed 1e-3.

Numerics: the closed forms work on numpy float64 vectors (these are m- and n-vectors; numpy beats torch on tiny
arrays); Monte Carlo uses torch float64 with a seeded ``torch.Generator``, vectorised in chunks. Sizes, learning rates
and the clip level of the table come from :class:`qbench.config.TheoryConfig`, which owns their defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch

from ..config import THEORY_ESTIMATORS, TheoryConfig
from ..errors import ConfigError
from .quadrature import QuadratureEstimator

__all__ = [
    "CLOSED_FORM_SOURCES",
    "Estimator",
    "GaussianInstance",
    "MonteCarloEstimate",
    "TrainResult",
    "angle",
    "as_vector",
    "population_loss",
    "loss_at_angle",
    "true_grad_v",
    "grad_v_at_angle",
    "true_grad_w",
    "expected_coarse_grad",
    "expected_coarse_grad_unit",
    "estimator_derivative",
    "monte_carlo_coarse_grad",
    "monte_carlo_coarse_grads",
    "monte_carlo_loss",
    "monte_carlo_true_grad_v",
    "spurious_minimizer",
    "random_instance",
    "train_coarse",
    "estimator_row",
    "theory_table",
]

# Where each closed form of E g comes from (the theory table's ``closed_form`` column, the records' source).
CLOSED_FORM_SOURCES = {"identity": "spec §8", "relu": "spec §8", "clipped_relu": "derived here"}

# An estimator is a name from THEORY_ESTIMATORS or a callable μ'(x) mapping a float64 tensor of pre-activations Zw to
# the surrogate derivative (same shape) — so an estimator registered by a method plugin can be plugged in directly.
Estimator = Union[str, Callable[[torch.Tensor], torch.Tensor]]

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_PHI0 = 1.0 / _SQRT_2PI  # φ(0), the standard normal density at 0
# θ within this distance of 0 or π counts as degenerate: ∂f/∂w is not defined there (see true_grad_w).
_ANGLE_EPS = 1e-12


# ----------------------------------------------------------------------------------------------------------------------
# Instances and small helpers
# ----------------------------------------------------------------------------------------------------------------------


def as_vector(x: Any) -> np.ndarray:
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
    w, w_star = as_vector(w), as_vector(w_star)
    a = w / math.sqrt(w @ w)
    b = w_star / math.sqrt(w_star @ w_star)
    diff, total = a - b, a + b
    return 2.0 * math.atan2(math.sqrt(diff @ diff), math.sqrt(total @ total))


def spurious_minimizer(v_star: Any) -> np.ndarray:
    """v = (I + J)^{-1}(J − I)v*, the second-layer weights of the STE paper's spurious critical point at θ = π
    (spec §8).

    Why this v: at θ = π, ∂f/∂v = ¼(I+J)v − ¼(J − I)v* (spec §8 with 1 − 2θ/π = −1) vanishes exactly here. In closed
    form (I + J)^{-1} = I − J/(m+1) (Sherman–Morrison), so v = 2(1ᵀv*)/(m+1)·1 − v*. (v, w) with θ(w, w*) = π is a
    local minimiser of f when vᵀv* < 0, i.e. (1ᵀv*)² < (m+1)‖v*‖²/2: f grows with θ at rate vᵀv*/(2π)
    (see :func:`true_grad_w`), so θ = π is then the best angle for this v.
    """
    v_star = as_vector(v_star)
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
    v, w, v_star, w_star = as_vector(v), as_vector(w), as_vector(v_star), as_vector(w_star)
    return loss_at_angle(v, v_star, angle(w, w_star))


def loss_at_angle(v: np.ndarray, v_star: np.ndarray, theta: float) -> float:
    """f as a function of (v, θ) (:func:`population_loss` without the angle; float64 arrays, no copies)."""
    sv, ss = v.sum(), v_star.sum()
    v_i_v = v @ v + sv * sv  # vᵀ(I+J)v
    s_i_s = v_star @ v_star + ss * ss  # v*ᵀ(I+J)v*
    cross = (1.0 - 2.0 * theta / math.pi) * (v @ v_star) + sv * ss  # vᵀ((1 − 2θ/π)I + J)v*
    return 0.125 * (v_i_v - 2.0 * cross + s_i_s)


def true_grad_v(v: Any, w: Any, v_star: Any, w_star: Any) -> np.ndarray:
    """∂f/∂v = ¼(I+J)v − ¼((1 − 2θ/π)I + J)v* (spec §8; the gradient of the quadratic in :func:`population_loss`)."""
    v, w, v_star, w_star = as_vector(v), as_vector(w), as_vector(v_star), as_vector(w_star)
    return grad_v_at_angle(v, v_star, angle(w, w_star))


def grad_v_at_angle(v: np.ndarray, v_star: np.ndarray, theta: float) -> np.ndarray:
    """∂f/∂v as a function of (v, θ) (:func:`true_grad_v` without the angle; float64 arrays, no copies)."""
    return 0.25 * (v + v.sum()) - 0.25 * ((1.0 - 2.0 * theta / math.pi) * v_star + v_star.sum())


def true_grad_w(v: Any, w: Any, v_star: Any, w_star: Any) -> np.ndarray:
    """∂f/∂w = −(vᵀv*)/(2π‖w‖)·P⊥w*/‖P⊥w*‖, P⊥ = I − ŵŵᵀ, for θ ∈ (0, π) (spec §8; STE paper).

    Why: f depends on w only through θ, with ∂f/∂θ = vᵀv*/(2π) (the θ term of :func:`population_loss`), and
    ∂θ/∂w = −P⊥w*/(‖w‖ sinθ) with sinθ = ‖P⊥w*‖ since ‖w*‖ = 1. At θ = 0 or π, θ(w) is not differentiable (a cone
    tip), so f has no gradient in w there; this raises ``ValueError``.
    """
    v, w, v_star, w_star = as_vector(v), as_vector(w), as_vector(v_star), as_vector(w_star)
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
    if estimator not in THEORY_ESTIMATORS:
        raise ConfigError(f"unknown estimator '{estimator}'; choose one of {', '.join(THEORY_ESTIMATORS)} or pass a "
                          "callable μ'(x)")


def expected_coarse_grad(estimator: str, v: Any, w: Any, v_star: Any, w_star: Any, *,
                         clip: float = TheoryConfig.clip) -> np.ndarray:
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
    v, w, v_star, w_star = as_vector(v), as_vector(w), as_vector(v_star), as_vector(w_star)
    return expected_coarse_grad_unit(estimator, v, w, v_star, w_star / np.linalg.norm(w_star), clip)


def expected_coarse_grad_unit(estimator: str, v: np.ndarray, w: np.ndarray, v_star: np.ndarray, w_star: np.ndarray,
                              clip: float = TheoryConfig.clip) -> np.ndarray:
    """:func:`expected_coarse_grad` for float64 arrays with ‖w*‖ = 1 already (no copies, no checks, no renormalisation:
    the inner loop of coarse gradient descent and of the recurrence toy, whose w* is normalised once)."""
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
        student term has the same value (1{x > 0} is implied). Summed as in the ReLU case this gives
        (h/2)(φ(0) − φ(a))ŵ.
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


def estimator_derivative(estimator: Estimator, *,
                         clip: float = TheoryConfig.clip) -> Callable[[torch.Tensor], torch.Tensor]:
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
                             clip: float = TheoryConfig.clip) -> list[MonteCarloEstimate]:
    """Monte Carlo E_Z g_μ for several estimators on the same samples (common random numbers).

    g = Zᵀ(μ'(Zw) ⊙ v)(y − y*), the coarse gradient of spec §8 (STE paper: the chain rule with σ' replaced by μ').
    """
    derivs = [estimator_derivative(e, clip=clip) for e in estimators]
    tv, tw, tvs, tws = (torch.from_numpy(as_vector(x)) for x in (v, w, v_star, w_star))
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
                            generator: torch.Generator | int | None = None, *,
                            clip: float = TheoryConfig.clip) -> MonteCarloEstimate:
    """Monte Carlo E_Z g_μ (mean and standard error per coordinate) for any estimator, names or callables μ'(x)."""
    return monte_carlo_coarse_grads([estimator], v, w, v_star, w_star, n_samples, generator, clip=clip)[0]


def monte_carlo_loss(v: Any, w: Any, v_star: Any, w_star: Any, n_samples: int,
                     generator: torch.Generator | int | None = None) -> MonteCarloEstimate:
    """Monte Carlo f = E ½(y − y*)² (an oracle for :func:`population_loss`)."""
    tv, tw, tvs, tws = (torch.from_numpy(as_vector(x)) for x in (v, w, v_star, w_star))
    gen = _torch_generator(generator)
    acc = _Accumulator()
    for batch in _chunks(n_samples, tv.shape[0] * tw.shape[0]):
        _, _, residual = _sample_batch(tv, tw, tvs, tws / tws.norm(), batch, gen)
        acc.add(0.5 * residual * residual)
    return acc.result()


def monte_carlo_true_grad_v(v: Any, w: Any, v_star: Any, w_star: Any, n_samples: int,
                            generator: torch.Generator | int | None = None) -> MonteCarloEstimate:
    """Monte Carlo ∂f/∂v = E σ(Zw)(y − y*) (exact per sample: ℓ is differentiable in v; an oracle for true_grad_v)."""
    tv, tw, tvs, tws = (torch.from_numpy(as_vector(x)) for x in (v, w, v_star, w_star))
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


def train_coarse(estimator: Estimator, instance: GaussianInstance, lr: float, steps: int, *,
                 full_batch_expected: bool = True, batch_size: int = 64, generator: torch.Generator | int | None = None,
                 clip: float = TheoryConfig.clip) -> TrainResult:
    """Coarse gradient descent on (v, w) from ``instance``'s (v, w) towards the teacher (v*, w*).

    STE paper, Algorithm 1: v ← v − η·∂f/∂v (the true gradient: ℓ is differentiable in v, σ(Zw) needs no estimator),
    w ← w − η·g_μ (the coarse gradient). With ``full_batch_expected`` both are the expectations over Z, i.e. the
    closed forms :func:`true_grad_v` and :func:`expected_coarse_grad` (available for the three named estimators);
    otherwise, and always for a callable μ', each step uses a fresh mini-batch of ``batch_size`` Gaussian samples
    (SGD). The recorded loss is the population loss f (closed form) whatever the mode.
    """
    _check_estimator(estimator)
    name = estimator if isinstance(estimator, str) else getattr(estimator, "__name__", "callable")
    if full_batch_expected and isinstance(estimator, str):
        def expected(v, w, v_star, w_star):
            return expected_coarse_grad_unit(estimator, v, w, v_star, w_star, clip)

        return _train_expected(expected, instance, lr, steps, name=name, mode="expected")
    deriv = estimator_derivative(estimator, clip=clip)
    gen = _torch_generator(generator)
    tvs, tws = torch.from_numpy(instance.v_star), torch.from_numpy(_unit_teacher(instance))

    def minibatch_grads(v: np.ndarray, w: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
        tv, tw = torch.from_numpy(v), torch.from_numpy(w)
        z, pre, residual = _sample_batch(tv, tw, tvs, tws, batch_size, gen)
        grad_v = ((pre > 0).to(torch.float64) * residual[:, None]).mean(0).numpy()
        weights = deriv(pre) * tv * residual[:, None]
        return grad_v, torch.einsum("bmn,bm->n", z, weights).numpy() / batch_size

    return _descend(instance, lr, steps, minibatch_grads, name=name, mode="minibatch")


def _train_expected(expected_grad: Callable[..., np.ndarray], instance: GaussianInstance, lr: float, steps: int, *,
                    name: str, mode: str) -> TrainResult:
    """Coarse gradient descent with expected gradients (STE paper, Algorithm 1): v ← v − η·∂f/∂v (closed form),
    w ← w − η·E g with E g = ``expected_grad(v, w, v*, w*)`` (a closed form, or a quadrature for a method's μ')."""
    v_star, w_star = instance.v_star, _unit_teacher(instance)

    def expected_grads(v: np.ndarray, w: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
        return grad_v_at_angle(v, v_star, theta), expected_grad(v, w, v_star, w_star)

    return _descend(instance, lr, steps, expected_grads, name=name, mode=mode)


def _unit_teacher(instance: GaussianInstance) -> np.ndarray:
    return instance.w_star / np.linalg.norm(instance.w_star)


def _descend(instance: GaussianInstance, lr: float, steps: int, grads: Callable, *, name: str,
             mode: str) -> TrainResult:
    """(v, w) ← (v, w) − η·grads(v, w, θ) for ``steps`` steps from the instance's (v, w), recording f and θ."""
    v, w = instance.v.copy(), instance.w.copy()
    v_star, w_star = instance.v_star, _unit_teacher(instance)
    losses, thetas = np.empty(steps + 1), np.empty(steps + 1)
    for step in range(steps + 1):
        theta = angle(w, w_star)
        losses[step], thetas[step] = loss_at_angle(v, v_star, theta), theta
        if step == steps:
            break
        grad_v, grad_w = grads(v, w, theta)
        v = v - lr * grad_v
        w = w - lr * grad_w
    return TrainResult(name, losses, thetas, v, w, mode)


# ----------------------------------------------------------------------------------------------------------------------
# One estimator's checks on the model, and the theory table (spec §8; STE paper)
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


def _loss_rises(loss: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Whether the loss climbs above its running minimum by more than ``tolerance`` × initial loss in the second
    half."""
    half = loss[loss.shape[0] // 2:]
    return bool(np.max(half - np.minimum.accumulate(half)) > tolerance * loss[0])


def _seed_streams(seed: int) -> list[int]:
    """Independent seeds for the gradient draws, the Monte Carlo samples and the training draws, so that changing one
    knob (say mc_samples) leaves the other parts of a row unchanged."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3)]


def estimator_row(estimator: Estimator, seed: int, config: TheoryConfig) -> tuple[dict, list[TrainResult]]:
    """The checks of spec §8 for one estimator on random draws of the model, and its coarse gradient descent runs.

    ``estimator``: a name of :data:`qbench.config.THEORY_ESTIMATORS` (closed-form E g) or an elementwise callable μ'
    (E g by :class:`qbench.theory.quadrature.QuadratureEstimator` on ``config.quadrature_points``; no
    ``inner_product_rel_err`` or ``spurious_grad_norm_formula``, which check closed-form identities). Sizes come from
    ``config`` (its ``estimators`` and ``recurrence`` are not read). Every estimator re-seeds the same streams from
    ``seed``, so all estimators see the same draws and the same Monte Carlo samples (common random numbers). Keys:

    * ``cos_mean``, ``cos_min``: cosine of E g with ∂f/∂w over ``n_draws`` random draws (:func:`random_instance`);
      STE paper: positive for relu and clipped relu (and identity in this model).
    * ``inner_product_rel_err``: max relative error of ⟨E g, ∂f/∂w⟩ against its closed form over those draws.
    * ``cos_mc_mean``, ``cos_mc_min``: the same cosine with the Monte Carlo E g over the first ``mc_draws`` draws of
      ``mc_samples`` samples; ``mc_max_abs_err``, ``mc_max_stderr``, ``mc_max_z``: E g vs Monte Carlo there (max over
      draws and coordinates of |error|, the standard error, and |error|/stderr); NaN when ``mc_draws`` is 0.
    * ``spurious_grad_norm``, ``spurious_grad_norm_formula`` (spec §8: identity's 2(m−1)(1ᵀv*)²/(√(2π)(m+1)²), 0 for
      relu and clipped relu), ``spurious_grad_norm_mc``: ‖E g‖ at the spurious minimiser v = (I+J)^{-1}(J−I)v*,
      θ = π, on the first draw; ``spurious_grad_mc_stderr`` = ‖MC standard error‖, the noise floor of the MC norm.
    * ``train_*``: coarse gradient descent with expected gradients, η = ``train_lr`` or 2/(m+1), from
      ``train_draws`` random draws: ``train_mode``, ``train_lr``, ``train_steps``, ``train_final_loss`` /
      ``train_final_theta`` of the first draw, ``train_initial_loss_median``, ``train_final_loss_median``,
      ``train_global_rate`` (final loss < 1e-6 × initial), ``train_spurious_rate`` (final θ > π − 1e-3),
      ``train_loss_rise_rate`` (runs whose loss rises by more than 1e-3 × initial above its running minimum in the
      second half — the identity STE's instability at the spurious minimum, STE paper).
    """
    _check_estimator(estimator)
    builtin = isinstance(estimator, str)
    m, n, clip = config.m, config.n, float(config.clip)
    if builtin:
        def expected(v, w, v_star, w_star):
            return expected_coarse_grad(estimator, v, w, v_star, w_star, clip=clip)
    else:
        expected = QuadratureEstimator(estimator, config.quadrature_points).expected_grad
    lr = 2.0 / (m + 1) if config.train_lr is None else float(config.train_lr)
    gen, mc_gen, train_gen = (_torch_generator(s) for s in _seed_streams(seed))
    row: dict[str, Any] = {}
    nan = float("nan")

    # E g against ∂f/∂w on every draw; STE paper: positive correlation for relu and clipped relu.
    draws = [random_instance(m, n, gen) for _ in range(config.n_draws)]
    cosines, inner_err = [], 0.0
    for inst in draws:
        grad_w = true_grad_w(*inst.args())
        value = expected(*inst.args())
        cosines.append(_cosine(value, grad_w))
        if builtin:
            formula = _inner_product_formula(estimator, *inst.args(), clip)
            inner_err = max(inner_err, abs(value @ grad_w - formula) / abs(formula))
    row.update(cos_mean=float(np.mean(cosines)), cos_min=float(np.min(cosines)),
               inner_product_rel_err=inner_err if builtin else nan)

    # E g against Monte Carlo on the first mc_draws draws.
    mc_cos, err, se, z = [], 0.0, 0.0, 0.0
    for inst in draws[: config.mc_draws]:
        grad_w = true_grad_w(*inst.args())
        mc = monte_carlo_coarse_grad(estimator, *inst.args(), config.mc_samples, mc_gen, clip=clip)
        diff = np.abs(expected(*inst.args()) - mc.mean)
        mc_cos.append(_cosine(mc.mean, grad_w))
        err, se = max(err, float(diff.max())), max(se, float(mc.stderr.max()))
        z = max(z, float((diff / mc.stderr).max()))
    if mc_cos:
        row.update(cos_mc_mean=float(np.mean(mc_cos)), cos_mc_min=float(np.min(mc_cos)), mc_max_abs_err=err,
                   mc_max_stderr=se, mc_max_z=z)
    else:
        row.update(cos_mc_mean=nan, cos_mc_min=nan, mc_max_abs_err=nan, mc_max_stderr=nan, mc_max_z=nan)

    # The spurious critical point of spec §8 on the first draw: v = (I+J)^{-1}(J−I)v*, w = −‖w‖w* (θ = π exactly).
    first = draws[0]
    v_sp = spurious_minimizer(first.v_star)
    w_sp = -first.w_star * float(np.linalg.norm(first.w))
    sp_mc = monte_carlo_coarse_grad(estimator, v_sp, w_sp, first.v_star, first.w_star, config.mc_samples, mc_gen,
                                    clip=clip)
    row["spurious_grad_norm"] = float(np.linalg.norm(expected(v_sp, w_sp, first.v_star, first.w_star)))
    if builtin:
        row["spurious_grad_norm_formula"] = _spurious_identity_norm(first.v_star) if estimator == "identity" else 0.0
    else:
        row["spurious_grad_norm_formula"] = nan  # spec §8 states the norm for identity and relu only
    row["spurious_grad_norm_mc"] = float(np.linalg.norm(sp_mc.mean))
    row["spurious_grad_mc_stderr"] = float(np.linalg.norm(sp_mc.stderr))  # the MC noise floor of that norm

    # Coarse gradient descent (STE paper, Algorithm 1) with expected gradients from train_draws random draws.
    train_draws = [random_instance(m, n, train_gen) for _ in range(config.train_draws)]
    steps = config.train_steps
    if builtin:
        runs = [train_coarse(estimator, inst, lr, steps, clip=clip) for inst in train_draws]
    else:
        name = getattr(estimator, "__name__", "callable")
        runs = [_train_expected(expected, inst, lr, steps, name=name, mode="expected (quadrature)")
                for inst in train_draws]
    initial = np.array([r.loss[0] for r in runs])
    final = np.array([r.final_loss for r in runs])
    row.update(
        train_mode=runs[0].mode, train_lr=lr, train_steps=steps,
        train_final_loss=runs[0].final_loss, train_final_theta=runs[0].final_theta,
        train_initial_loss_median=float(np.median(initial)), train_final_loss_median=float(np.median(final)),
        train_global_rate=float(np.mean(final < 1e-6 * initial)),
        train_spurious_rate=float(np.mean([r.final_theta > math.pi - 1e-3 for r in runs])),
        train_loss_rise_rate=float(np.mean([_loss_rises(r.loss) for r in runs])),
    )
    return row, runs


def theory_table(seed: int, config: TheoryConfig | None = None):
    """A pandas DataFrame with one row per closed-form estimator (:data:`qbench.config.THEORY_ESTIMATORS`): the
    columns of :func:`estimator_row` after ``closed_form`` (where E g comes from: "spec §8", or "derived here" for
    clipped_relu). Sizes come from ``config`` (default :class:`qbench.config.TheoryConfig`)."""
    import pandas as pd

    config = TheoryConfig() if config is None else config
    rows = {name: {"closed_form": CLOSED_FORM_SOURCES[name], **estimator_row(name, seed, config)[0]}
            for name in THEORY_ESTIMATORS}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "estimator"
    return table
