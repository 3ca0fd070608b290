"""E g of the STE paper's model for any elementwise estimator μ', by one-dimensional Gaussian quadrature.

Source: STE = Yin, Lyu, Zhang, Osher, Qi, Xin, *Understanding straight-through estimator in training activation
quantized neural nets*, ICLR 2019, arXiv 1903.05662 (the model and coarse gradient, spec §8). A method's activation
backward is such a μ' (:func:`qbench.theory.suite.method_estimator`); it has no closed form, but its expectation over
the Gaussian inputs reduces to a handful of one-dimensional integrals, so it gets every check the closed forms of
:mod:`qbench.theory.gaussian` get, without Monte Carlo noise.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ..config import TheoryConfig

__all__ = ["QuadratureEstimator"]


class QuadratureEstimator:
    """E_Z g for any elementwise estimator μ', by one-dimensional Gaussian quadrature (derived here; no MC noise).

    Derivation (same decomposition as gaussian._expected_clipped_relu_grad, for a general μ'). Write each row
    z = x ŵ + y e + rest, e = P⊥w*/‖P⊥w*‖, s = ‖w‖, so zᵀw = s·x and zᵀw* = x cosθ + y sinθ. In
    g = Σ_i z_i μ'(z_iᵀw) v_i (Σ_j v_j σ(z_jᵀw) − Σ_j v*_j σ(z_jᵀw*)) the rows j ≠ i are independent of z_i with
    E σ = ½, and the i = j terms need E[z μ'(zᵀw) 1{zᵀw > 0}] and E[z μ'(zᵀw) 1{zᵀw* > 0}]. With
        A = E[x μ'(sx)],  B = E[x μ'(sx) 1{x > 0}],
        C_∥ = E[x μ'(sx) Φ(x cotθ)],  C_⊥ = E[μ'(sx) φ(x cotθ)] = φ(0) sinθ E[μ'(s sinθ x)]   (y integrated out)
    this gives  E g = (½A(S² − ‖v‖² − S·S* + vᵀv*) + ‖v‖²B)·ŵ − (vᵀv*)(C_∥ ŵ + C_⊥ e),  S = 1ᵀv, S* = 1ᵀv*.
    At θ = 0 (π) the teacher's indicator is 1{x > 0} (1{x < 0}) and C_⊥ = 0. Checks: μ' = 1 gives A = 0, B = φ(0),
    C = φ(0)w*, i.e. spec §8's identity formula; μ' = 1{0 < x < c} gives gaussian.py's clipped-ReLU form
    (tests/theory/test_quadrature.py compares all three builtins against their closed forms).

    Numerics: midpoint rule on x ∈ [−6.5, 6.5] (φ(6.5) ≈ 2e-10) with an even number of cells, so the jump of
    relu-like estimators at 0 falls on a cell boundary; μ' is evaluated once on a fine table of its argument
    (spacing 1e-4, extended when s·x leaves it) and looked up, so each E g costs a few vector operations.
    Accuracy: ~1e-7 relative for identity/relu; ~1e-2 of the largest coordinate for a jump inside a cell
    (clipped ReLU's at c/s) — below the Monte Carlo noise the suite checks it against.
    """

    _HALF_WIDTH = 6.5
    _TABLE_STEP = 1e-4

    def __init__(self, mu: Callable[[torch.Tensor], torch.Tensor], points: int = TheoryConfig.quadrature_points):
        points = int(points) + int(points) % 2  # even: x = 0 is a cell boundary
        h = 2.0 * self._HALF_WIDTH / points
        self.x = -self._HALF_WIDTH + h * (np.arange(points) + 0.5)
        self.weights = np.exp(-0.5 * self.x * self.x) / math.sqrt(2.0 * math.pi) * h
        self.mu = mu
        self._reach = 0.0
        self._table = np.zeros(0)

    def _mu_at(self, u: np.ndarray) -> np.ndarray:
        reach = float(np.abs(u).max())
        if reach > self._reach:
            self._reach = max(2.0 * reach, 10.0)
            half = int(math.ceil(self._reach / self._TABLE_STEP))
            grid = torch.arange(-half, half + 1, dtype=torch.float64) * self._TABLE_STEP
            self._table = self.mu(grid).detach().cpu().numpy().astype(np.float64)
        half = (self._table.shape[0] - 1) // 2
        # Round away from 0, never to it: sign(u) is what relu-like μ' look at, and near θ = 0 the argument of C_⊥
        # is tiny (rounding it to 0 would give μ'(0) = 0 for clipped ReLU and stall training just short of θ = 0).
        steps = np.sign(u) * np.ceil(np.abs(u) / self._TABLE_STEP)
        return self._table[steps.astype(np.int64) + half]

    def expected_grad(self, v: Any, w: Any, v_star: Any, w_star: Any) -> np.ndarray:
        from scipy.special import ndtr

        v, w, v_star, w_star = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (v, w, v_star, w_star))
        s = math.sqrt(w @ w)
        w_hat, w_star = w / s, w_star / math.sqrt(w_star @ w_star)
        x = self.x
        wf = self.weights * self._mu_at(s * x)
        a_coef = wf @ x
        b_coef = (wf * (x > 0)) @ x
        cos_t = float(np.clip(w_hat @ w_star, -1.0, 1.0))
        perp = w_star - cos_t * w_hat
        sin_t = math.sqrt(perp @ perp)
        if sin_t < 1e-12:
            c_par, c_perp, e = (b_coef if cos_t > 0 else (wf * (x < 0)) @ x), 0.0, np.zeros_like(w_hat)
        else:
            c_par = (wf * ndtr(cos_t / sin_t * x)) @ x
            # φ(x)φ(x cotθ) = φ(0)φ(x/sinθ), so C_⊥ = φ(0) sinθ E_t[μ'(s sinθ t)]: smooth on the same grid even
            # as θ → 0, where φ(x cotθ) is a spike narrower than the grid (training converges there).
            c_perp = sin_t / math.sqrt(2.0 * math.pi) * (self.weights @ self._mu_at(s * sin_t * x))
            e = perp / sin_t
        sv, ss, vv, vd = v.sum(), v_star.sum(), v @ v, v @ v_star
        return (0.5 * a_coef * (sv * sv - vv - sv * ss + vd) + vv * b_coef) * w_hat - vd * (c_par * w_hat + c_perp * e)
