"""``qbench run`` for ``kind: theory`` suites: records of the two-linear-layer Gaussian model and the recurrence toy.

Sources: STE = Yin, Lyu, Zhang, Osher, Qi, Xin, *Understanding straight-through estimator in training activation
quantized neural nets*, ICLR 2019, arXiv 1903.05662 (the model, spec §8); REC = Long, Yin, Xin, *Recurrence of optimum
for training weight and activation quantized networks*, arXiv 2012.05529 (the toy, spec §6). The mathematics lives in
:mod:`qbench.theory`; this module turns it into records like the training runner's, so the theory suite resumes,
reports and lands in the leaderboard like any other suite.

Records (``<results_dir>/<suite>/<run_id>/``: ``config.yaml``, ``env.json``, ``metrics.jsonl``, ``result.json``):

* one per (estimator, seed), run id ``<estimator>_gaussian_s<seed>``: the columns of :func:`qbench.theory.theory_table`
  for that estimator (cosine of the expected coarse gradient with ∂f/∂w over random draws, closed form vs Monte Carlo,
  ‖E g‖ at the spurious minimiser θ = π, coarse gradient descent from random draws), its pass/fail ``checks``, and as
  ``metrics.jsonl`` the training curve (population loss f and θ per step) of the first training draw;
* one per (quantizer, seed), run id ``recurrence-<quantizer>_gaussian_s<seed>``: the spec §6 toy's summary, and as
  ``metrics.jsonl`` every step's loss at Q(w_t), Hamming distance to the quantized optimum, flip rate and visit flag.

Estimators: the names ``identity``, ``relu``, ``clipped_relu`` (closed forms) and any registered method spec
(``aqe``, ``ste:alpha=1.0``, a plugin's method): its activation quantizer's backward at ``theory.estimator_bits`` bits
*is* its estimator μ' (:func:`method_estimator`). Its expected coarse gradient has no closed form but is a handful of
one-dimensional Gaussian integrals (:class:`QuadratureEstimator`), so such an estimator gets every column the closed
forms get — the cosines over all draws, ‖E g‖ at θ = π, full-batch coarse gradient descent — and the same Monte Carlo
check.

The builtin estimators reproduce :func:`qbench.theory.theory_table` exactly: the same seed streams are drawn in the
same order per estimator (Monte Carlo samples included, so the estimators still share common random numbers), which
``tests/test_theory_suite.py`` checks. Computing one estimator at a time is what makes each record resumable alone.
"""

from __future__ import annotations

import math
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..bits import Bits
from ..config import to_dict, to_yaml
from ..errors import ConfigError
from ..registry import create_method, load_plugin, parse_method_spec
from ..results import (SCHEMA_VERSION, SuiteRun, atomic_write_json, atomic_write_text, env_info, load_result,
                       write_jsonl)
from ..run.device import device_name
from . import gaussian as T

__all__ = [
    "THEORY_DEFAULTS",
    "RECURRENCE_DEFAULTS",
    "theory_options",
    "method_estimator",
    "QuadratureEstimator",
    "estimator_record",
    "recurrence_record",
    "plan_theory",
    "run_theory_suite",
]

# Defaults of the suite's ``theory:`` block: those of qbench.theory.theory_table / recurrence_toy (spec §6, §8), plus
# the quadrature grid for estimators without a closed form and the bit-width at which a method's estimator is taken.
THEORY_DEFAULTS: dict[str, Any] = {
    "estimators": ["identity", "relu", "clipped_relu"],
    "m": 5, "n": 8,  # spec §8's Monte Carlo check size
    "n_draws": 200, "mc_samples": 200_000, "mc_draws": 4,
    "train_draws": 20, "train_steps": 1000, "train_lr": None,  # None: η = 2/(m+1), theory_table's default
    "clip": 1.0,  # clipped ReLU μ' = 1{0 < x < clip}; the model's σ = 1{x > 0} has its step at 0
    "quadrature_points": 6500,  # grid of QuadratureEstimator (x ∈ [−6.5, 6.5], spacing 2e-3)
    "estimator_bits": 1,  # σ of spec §8 is a 1-bit activation: a method's estimator is taken at this bit-width
    "recurrence": None,  # filled from RECURRENCE_DEFAULTS
}
RECURRENCE_DEFAULTS: dict[str, Any] = {
    "quantizers": ["binary", "ternary"], "steps": 20000, "m": 10, "n": 20, "lr": 0.05, "train_v": False,  # spec §6
}
FINISHED = ("complete",)


def theory_options(cfg) -> dict:
    """The suite's ``theory:`` block with defaults filled in; an unknown key is one line naming the valid ones."""
    raw = to_dict(cfg.theory) if hasattr(cfg, "theory") else dict(cfg or {})
    unknown = sorted(set(raw) - set(THEORY_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown theory option {', '.join(map(repr, unknown))}; valid: "
                          f"{', '.join(sorted(THEORY_DEFAULTS))}")
    opts = {**THEORY_DEFAULTS, **raw}
    rec = dict(opts.get("recurrence") or {})
    bad = sorted(set(rec) - set(RECURRENCE_DEFAULTS))
    if bad:
        raise ConfigError(f"unknown theory.recurrence option {', '.join(map(repr, bad))}; valid: "
                          f"{', '.join(sorted(RECURRENCE_DEFAULTS))}")
    opts["recurrence"] = {**RECURRENCE_DEFAULTS, **rec}
    for q in opts["recurrence"]["quantizers"]:
        if q not in T.QUANTIZERS:
            raise ConfigError(f"unknown theory.recurrence quantizer '{q}'; choose from {', '.join(T.QUANTIZERS)}")
    estimators = opts["estimators"]
    if isinstance(estimators, str) or estimators is None:
        raise ConfigError("theory.estimators must be a list, e.g. [identity, relu, clipped_relu, aqe]")
    if not estimators and not opts["recurrence"]["quantizers"]:
        raise ConfigError("theory.estimators and theory.recurrence.quantizers are both empty; list at least one")
    if len(set(map(str, estimators))) != len(estimators):
        raise ConfigError("theory.estimators lists an estimator twice; give each once")
    for key in ("m", "n", "n_draws", "mc_samples", "train_draws", "train_steps", "quadrature_points", "estimator_bits"):
        if int(opts[key]) < 1:
            raise ConfigError(f"theory.{key} must be ≥ 1 (got {opts[key]})")
    if not 0 <= int(opts["mc_draws"]) <= int(opts["n_draws"]):
        raise ConfigError(f"theory.mc_draws must be between 0 and theory.n_draws={opts['n_draws']}")
    return opts


# ----------------------------------------------------------------------------------------------------------------------
# Estimators registered by methods
# ----------------------------------------------------------------------------------------------------------------------


def method_estimator(spec: str, bits: int = 1,
                     method_hparams: dict | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """μ'(x) of a registered method: the derivative its activation quantizer's backward assigns to each input.

    Why this is the method's estimator: every method expresses its activation estimator as the custom backward of its
    activation module (qbench.quant.activation: QuantReLU's identity / relu / clipped relu μ', AQE's 2α·1{|a| ≤ 1},
    ...). Differentiating the training-mode module elementwise therefore recovers exactly the μ' of the STE paper's
    coarse gradient g = Zᵀ(μ'(Zw) ⊙ v)(y − y*) — for built-in and plugin methods alike, with no per-method code.
    ``bits`` defaults to 1 because the model's σ(x) = 1{x > 0} is a 1-bit activation (spec §8). The module is called on
    float32 copies (its parameters' dtype) and the result returned in the caller's dtype.
    """

    base, hparams = parse_method_spec(spec, method_hparams)
    method = create_method(base, **hparams)
    reason = method.unsupported_bits(Bits(32, int(bits)))
    if reason:
        raise ConfigError(f"theory estimator '{spec}': {reason}; set theory.estimator_bits to a supported bit-width")
    module = method.activation_quantizer(int(bits))
    if module is None:
        raise ConfigError(f"theory estimator '{spec}': method '{base}' has no activation quantizer (weights only), so "
                          "no activation estimator; remove it from theory.estimators")
    module.train()  # the training-mode backward is the estimator (evaluation is hard and has no backward)

    def mu(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            inp = x.detach().to(torch.float32).requires_grad_(True)
            (grad,) = torch.autograd.grad(module(inp).sum(), inp)
        return grad.to(x.dtype)

    mu.__name__ = str(spec)
    # The theory (and QuadratureEstimator's table) needs μ' to act elementwise: μ'(x)_i depends on x_i only. True of
    # every activation quantizer with a fixed resolution; one that uses batch statistics is refused here.
    probe = torch.linspace(-3.0, 3.0, 601, dtype=torch.float64)
    perm = torch.randperm(probe.numel(), generator=torch.Generator().manual_seed(0))
    if not (torch.equal(mu(probe)[perm], mu(probe[perm])) and torch.equal(mu(probe)[:50], mu(probe[:50]))):
        raise ConfigError(f"theory estimator '{spec}': its activation backward is not elementwise (it depends on the "
                          "batch), so it has no estimator μ'(x) for the model of spec §8; remove it")
    return mu


class QuadratureEstimator:
    """E_Z g for any elementwise estimator μ', by one-dimensional Gaussian quadrature (derived here; no MC noise).

    Derivation (same decomposition as theory._expected_clipped_relu_grad, for a general μ'). Write each row
    z = x ŵ + y e + rest, e = P⊥w*/‖P⊥w*‖, s = ‖w‖, so zᵀw = s·x and zᵀw* = x cosθ + y sinθ. In
    g = Σ_i z_i μ'(z_iᵀw) v_i (Σ_j v_j σ(z_jᵀw) − Σ_j v*_j σ(z_jᵀw*)) the rows j ≠ i are independent of z_i with
    E σ = ½, and the i = j terms need E[z μ'(zᵀw) 1{zᵀw > 0}] and E[z μ'(zᵀw) 1{zᵀw* > 0}]. With
        A = E[x μ'(sx)],  B = E[x μ'(sx) 1{x > 0}],
        C_∥ = E[x μ'(sx) Φ(x cotθ)],  C_⊥ = E[μ'(sx) φ(x cotθ)] = φ(0) sinθ E[μ'(s sinθ x)]   (y integrated out)
    this gives  E g = (½A(S² − ‖v‖² − S·S* + vᵀv*) + ‖v‖²B)·ŵ − (vᵀv*)(C_∥ ŵ + C_⊥ e),  S = 1ᵀv, S* = 1ᵀv*.
    At θ = 0 (π) the teacher's indicator is 1{x > 0} (1{x < 0}) and C_⊥ = 0. Checks: μ' = 1 gives A = 0, B = φ(0),
    C = φ(0)w*, i.e. spec §8's identity formula; μ' = 1{0 < x < c} gives theory.py's clipped-ReLU form
    (tests/test_theory_suite.py compares all three builtins against their closed forms).

    Numerics: midpoint rule on x ∈ [−6.5, 6.5] (φ(6.5) ≈ 2e-10) with an even number of cells, so the jump of
    relu-like estimators at 0 falls on a cell boundary; μ' is evaluated once on a fine table of its argument
    (spacing 1e-4, extended when s·x leaves it) and looked up, so each E g costs a few vector operations.
    Accuracy: ~1e-7 relative for identity/relu; ~1e-2 of the largest coordinate for a jump inside a cell
    (clipped ReLU's at c/s) — below the Monte Carlo noise the suite checks it against.
    """

    _HALF_WIDTH = 6.5
    _TABLE_STEP = 1e-4

    def __init__(self, mu: Callable[[torch.Tensor], torch.Tensor], points: int = 6500):
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


def _label(estimator: str) -> str:
    return str(estimator).replace(":", "-").replace(",", "-").replace("/", "_")


# ----------------------------------------------------------------------------------------------------------------------
# One record's numbers
# ----------------------------------------------------------------------------------------------------------------------


def _streams(seed: int) -> list[int]:
    """The independent seeds of theory_table (draws, Monte Carlo, training draws), drawn exactly as it draws them."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3)]


def _train_expected(grad_w: Callable, inst, lr: float, steps: int):
    """Coarse gradient descent with expected gradients (STE paper, Algorithm 1), exactly as theory.train_coarse's
    full-batch branch but with E g from ``grad_w(v, w, v*, w*)`` (a QuadratureEstimator): v ← v − η ∂f/∂v,
    w ← w − η E g; returns a theory.TrainResult (population loss and θ before each step and after the last)."""
    v, w = inst.v.copy(), inst.w.copy()
    v_star, w_star = inst.v_star, inst.w_star / np.linalg.norm(inst.w_star)
    losses, thetas = np.empty(steps + 1), np.empty(steps + 1)
    for step in range(steps + 1):
        theta = T.angle(w, w_star)
        losses[step], thetas[step] = T._loss(v, v_star, theta), theta
        if step == steps:
            break
        v, w = v - lr * T._grad_v(v, v_star, theta), w - lr * grad_w(v, w, v_star, w_star)
    return T.TrainResult("quadrature", losses, thetas, v, w, "expected (quadrature)")


def estimator_record(estimator: str, seed: int, opts: dict, *, method_hparams: dict | None = None) -> tuple[dict, dict]:
    """(metrics, curves) of one estimator on the spec §8 model, computed as :func:`qbench.theory.theory_table` does.

    Builtin names use their closed forms; a method spec uses :class:`QuadratureEstimator` in their place (no
    ``inner_product_rel_err``, which checks a closed-form identity). ``curves`` holds the per-step population loss and
    θ of the first training draw and the medians over all training draws.
    """
    builtin = estimator in T.ESTIMATOR_NAMES
    m, n, clip = int(opts["m"]), int(opts["n"]), float(opts["clip"])
    if builtin:
        est: Any = estimator

        def expected(v, w, v_star, w_star):
            return T.expected_coarse_grad(estimator, v, w, v_star, w_star, clip=clip)
    else:
        est = method_estimator(estimator, int(opts["estimator_bits"]), method_hparams)
        expected = QuadratureEstimator(est, int(opts["quadrature_points"])).expected_grad
    lr = 2.0 / (m + 1) if opts["train_lr"] is None else float(opts["train_lr"])
    draw_seed, mc_seed, train_seed = _streams(seed)
    gen, mc_gen, train_gen = (T._torch_generator(s) for s in (draw_seed, mc_seed, train_seed))
    row: dict[str, Any] = {}

    # E g against ∂f/∂w on every draw; STE paper: positive correlation for relu and clipped relu.
    draws = [T.random_instance(m, n, gen) for _ in range(int(opts["n_draws"]))]
    cosines, inner_err = [], 0.0
    for inst in draws:
        grad_w = T.true_grad_w(*inst.args())
        value = expected(*inst.args())
        cosines.append(T._cosine(value, grad_w))
        if builtin:
            formula = T._inner_product_formula(estimator, *inst.args(), clip)
            inner_err = max(inner_err, abs(value @ grad_w - formula) / abs(formula))
    row.update(cos_mean=float(np.mean(cosines)), cos_min=float(np.min(cosines)),
               inner_product_rel_err=inner_err if builtin else float("nan"))

    # Closed form (or quadrature) against Monte Carlo on the first mc_draws draws; the same samples for every
    # estimator, since each record re-seeds the Monte Carlo stream identically (common random numbers).
    mc_cos, err, se, z = [], 0.0, 0.0, 0.0
    for inst in draws[: int(opts["mc_draws"])]:
        grad_w = T.true_grad_w(*inst.args())
        mc = T.monte_carlo_coarse_grad(est, *inst.args(), int(opts["mc_samples"]), mc_gen, clip=clip)
        diff = np.abs(expected(*inst.args()) - mc.mean)
        mc_cos.append(T._cosine(mc.mean, grad_w))
        err, se = max(err, float(diff.max())), max(se, float(mc.stderr.max()))
        z = max(z, float((diff / mc.stderr).max()))
    nan = float("nan")
    if mc_cos:
        row.update(cos_mc_mean=float(np.mean(mc_cos)), cos_mc_min=float(np.min(mc_cos)), mc_max_abs_err=err,
                   mc_max_stderr=se, mc_max_z=z)
    else:
        row.update(cos_mc_mean=nan, cos_mc_min=nan, mc_max_abs_err=nan, mc_max_stderr=nan, mc_max_z=nan)

    # The spurious critical point of spec §8 on the first draw: v = (I+J)^{-1}(J−I)v*, w = −‖w‖w* (θ = π exactly).
    first = draws[0]
    v_sp = T.spurious_minimizer(first.v_star)
    w_sp = -first.w_star * float(np.linalg.norm(first.w))
    sp_mc = T.monte_carlo_coarse_grad(est, v_sp, w_sp, first.v_star, first.w_star, int(opts["mc_samples"]), mc_gen,
                                      clip=clip)
    row["spurious_grad_norm"] = float(np.linalg.norm(expected(v_sp, w_sp, first.v_star, first.w_star)))
    if builtin:
        row["spurious_grad_norm_formula"] = T._spurious_identity_norm(first.v_star) if estimator == "identity" else 0.0
    else:
        row["spurious_grad_norm_formula"] = nan  # spec §8 states the norm for identity and relu only
    row["spurious_grad_norm_mc"] = float(np.linalg.norm(sp_mc.mean))
    row["spurious_grad_mc_stderr"] = float(np.linalg.norm(sp_mc.stderr))  # the MC noise floor of that norm

    # Coarse gradient descent (STE paper, Algorithm 1) with expected gradients from train_draws random draws.
    train_draws = [T.random_instance(m, n, train_gen) for _ in range(int(opts["train_draws"]))]
    steps = int(opts["train_steps"])
    if builtin:
        runs = [T.train_coarse(estimator, inst, lr, steps, clip=clip) for inst in train_draws]
    else:
        runs = [_train_expected(expected, inst, lr, steps) for inst in train_draws]
    initial = np.array([r.loss[0] for r in runs])
    final = np.array([r.final_loss for r in runs])
    row.update(
        train_mode=runs[0].mode, train_lr=lr, train_steps=steps,
        train_final_loss=runs[0].final_loss, train_final_theta=runs[0].final_theta,
        train_initial_loss_median=float(np.median(initial)), train_final_loss_median=float(np.median(final)),
        train_global_rate=float(np.mean(final < 1e-6 * initial)),
        train_spurious_rate=float(np.mean([r.final_theta > math.pi - 1e-3 for r in runs])),
        train_loss_rise_rate=float(np.mean([T._loss_rises(r.loss) for r in runs])),
    )
    curves = {"loss": runs[0].loss, "theta": runs[0].theta,
              "loss_median": np.median(np.stack([r.loss for r in runs]), axis=0),
              "theta_median": np.median(np.stack([r.theta for r in runs]), axis=0)}
    return row, curves


def _estimator_checks(estimator: str, row: dict) -> dict:
    """Pass/fail checks of spec §8 (STE paper) that apply to this estimator."""
    checks: dict[str, bool] = {}
    if not math.isnan(row["mc_max_z"]):
        # Closed form (quadrature for a method's μ') within 5 Monte Carlo standard errors of the sample mean.
        checks["expectation_matches_monte_carlo"] = bool(row["mc_max_z"] < 5.0)
    if estimator in ("relu", "clipped_relu"):
        # Positive correlation: on every draw in closed form, and on average by Monte Carlo (one MC cosine may dip
        # below 0 by noise where the true cosine is itself tiny, θ near 0 or π) — as run_theory_suite checks it.
        checks["positive_correlation"] = bool(row["cos_min"] > 0 and (estimator == "relu" or row["cos_mc_mean"] > 0))
    if estimator == "identity":
        # STE paper: the identity STE does not stop at the spurious minimiser, and the norm is spec §8's formula.
        checks["nonzero_at_spurious"] = bool(row["spurious_grad_norm"] > 1e-8)
        gap = abs(row["spurious_grad_norm"] - row["spurious_grad_norm_formula"])
        checks["spurious_norm_matches_formula"] = bool(gap <= 1e-9 * max(1.0, row["spurious_grad_norm"]))
    if estimator == "relu":
        checks["zero_at_spurious"] = bool(row["spurious_grad_norm"] < 1e-12)
    return checks


def recurrence_record(quantizer: str, seed: int, rec_opts: dict):
    """The spec §6 toy (REC paper) for one quantizer: (summary + checks, per-step rows)."""
    result = T.recurrence_toy(quantizer, m=int(rec_opts["m"]), n=int(rec_opts["n"]), lr=float(rec_opts["lr"]),
                            steps=int(rec_opts["steps"]), seed=seed, train_v=bool(rec_opts["train_v"]))
    summary = dict(result.summary)
    # REC paper / spec §6: visits in the last quarter and Q(w_t) not eventually constant; never exact counts.
    summary["checks"] = {"visits_in_last_quarter": summary["visits_last_quarter"] > 0,
                         "not_eventually_constant": summary["distinct_states_last_quarter"] > 1}
    rows = [{"step": t, "loss_q": float(result.loss_q[t]), "hamming": float(result.hamming[t]),
             "flip_rate": float(result.flips[t]), "visit": bool(result.at_optimum[t])} for t in range(result.steps + 1)]
    return summary, rows


# ----------------------------------------------------------------------------------------------------------------------
# The suite
# ----------------------------------------------------------------------------------------------------------------------


def plan_theory(cfg, opts: dict) -> list[dict]:
    """The records of a theory suite in a fixed order: every estimator × seed, then every quantizer × seed."""
    plan = []
    for seed in cfg.seeds:
        for estimator in opts["estimators"]:
            plan.append({"part": "estimator", "name": str(estimator), "seed": int(seed),
                         "run_id": f"{_label(estimator)}_gaussian_s{int(seed)}"})
    for seed in cfg.seeds:
        for quantizer in opts["recurrence"]["quantizers"]:
            plan.append({"part": "recurrence", "name": str(quantizer), "seed": int(seed),
                         "run_id": f"recurrence-{quantizer}_gaussian_s{int(seed)}"})
    return plan


def _base_record(cfg, item: dict, opts: dict) -> dict:
    part = item["part"]
    m, n = (opts["m"], opts["n"]) if part == "estimator" else (opts["recurrence"]["m"], opts["recurrence"]["n"])
    method = item["name"] if part == "estimator" else f"recurrence-{item['name']}"
    return {
        "schema_version": SCHEMA_VERSION, "qbench_version": __version__, "suite": cfg.name, "run_id": item["run_id"],
        "kind": "theory", "theory_part": part, "status": "failed", "error": None, "method": method,
        "estimator": item["name"] if part == "estimator" else None,
        "quantizer": item["name"] if part == "recurrence" else None,
        "tuned": False, "method_hparams": {}, "arch": f"gaussian2l-m{m}n{n}",
        # σ(x) = 1{x > 0} with float weights (spec §8); the toy quantizes the weights (binary / ternary).
        "bits": "W32A1" if part == "estimator" else ("W1A1" if item["name"] == "binary" else "W2A1"),
        "policy": "quantized", "seed": item["seed"], "dataset": "gaussian", "epochs": None,
        "device": "cpu", "device_name": None,
    }


def _run_item(cfg, item: dict, opts: dict, run_dir: Path, method_hparams: dict) -> dict:
    start = time.perf_counter()
    record = _base_record(cfg, item, opts)
    if item["part"] == "estimator":
        name = item["name"]
        row, curves = estimator_record(name, item["seed"], opts, method_hparams=method_hparams)
        if name in ("identity", "relu", "clipped_relu"):
            source = "closed form, derived here" if name == "clipped_relu" else "closed form, spec §8"
        else:
            source = f"quadrature of method {name}'s μ' (A{opts['estimator_bits']})"
        rows = [{"step": t, "loss": float(curves["loss"][t]), "theta": float(curves["theta"][t]),
                 "loss_median": float(curves["loss_median"][t]), "theta_median": float(curves["theta_median"][t])}
                for t in range(len(curves["loss"]))]
        record.update(row)
        record.update(estimator_source=source, checks=_estimator_checks(name, row),
                      final_loss=row["train_final_loss"], final_theta=row["train_final_theta"],
                      train_loss=row["train_final_loss"], steps=row["train_steps"])
        if name not in ("identity", "relu", "clipped_relu"):
            record["method_hparams"] = parse_method_spec(name, method_hparams)[1]
    else:
        summary, rows = recurrence_record(item["name"], item["seed"], opts["recurrence"])
        record.update(summary)
        record["final_loss"] = float(rows[-1]["loss_q"])
        record["train_loss"] = record["final_loss"]
    record.update(status="complete", wall_time_s=time.perf_counter() - start, epochs_completed=None,
                  device_name=device_name(torch.device("cpu")))
    write_jsonl(run_dir / "metrics.jsonl", rows)
    return record


def run_theory_suite(cfg, *, resume: bool = True, log: Callable[[str], None] = print):
    """Run a ``kind: theory`` suite (``qbench run suite=theory-gaussian``): one record per estimator × seed and per
    recurrence quantizer × seed, each skipped when already complete (unless ``resume=False``, i.e. ``--fresh``).
    ``qbench run`` then writes the theory table (``qbench report``'s ``leaderboards/<suite>.md`` and ``.csv``).
    Returns a :class:`qbench.results.SuiteRun`.
    """
    for plugin in cfg.plugins:
        load_plugin(plugin)
    opts = theory_options(cfg)
    method_hparams = to_dict(cfg).get("method_hparams") or {}
    for estimator in opts["estimators"]:  # an unknown estimator or method fails before anything runs
        if estimator not in T.ESTIMATOR_NAMES:
            _check_method_estimator(str(estimator), int(opts["estimator_bits"]), method_hparams)
    suite_dir = Path(cfg.results_dir) / cfg.name
    outcome = SuiteRun()
    plan = plan_theory(cfg, opts)
    base = to_dict(cfg)
    base["theory"] = opts  # the resolved options (defaults filled) are what this record ran with
    for index, item in enumerate(plan, 1):
        run_dir = suite_dir / item["run_id"]
        previous = load_result(run_dir)
        if resume and previous and previous.get("status") in FINISHED:
            outcome.skipped.append(item["run_id"])
            continue
        if run_dir.exists():
            for name in ("metrics.jsonl", "result.json", "traceback.txt"):
                (run_dir / name).unlink(missing_ok=True)
        log(f"[{index}/{len(plan)}] {item['run_id']}")
        atomic_write_text(run_dir / "config.yaml", to_yaml(_record_config(base, item, opts)))
        atomic_write_json(run_dir / "env.json", env_info())
        try:
            record = _run_item(cfg, item, opts, run_dir, method_hparams)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing record is written and the suite goes on, as in runner
            record = {**_base_record(cfg, item, opts), "error": f"{type(exc).__name__}: {exc}"}
            atomic_write_text(run_dir / "traceback.txt", traceback.format_exc())
            outcome.failed.append(item["run_id"])
            log(f"  failed: {record['error'].splitlines()[0]} (traceback in {run_dir / 'traceback.txt'})")
        else:
            log(f"  {_summary_line(record)}  ({record['wall_time_s']:.1f} s)")
        atomic_write_json(run_dir / "result.json", record)
        outcome.results.append(record)
    return outcome


def _record_config(base: dict, item: dict, opts: dict) -> dict:
    """The config saved with one record, narrowed to that record (as runner.cell_config narrows a training cell), so
    ``qbench run --from <record>/config.yaml`` re-runs exactly it; ``cell`` has the keys the CLI reads from it."""
    theory = dict(opts)
    estimator = item["part"] == "estimator"
    theory["estimators"] = [item["name"]] if estimator else []
    theory["recurrence"] = {**opts["recurrence"], "quantizers": [] if estimator else [item["name"]]}
    record = _base_record(SimpleNamespace(name=base.get("name")), item, opts)
    cell = {**item, "method": record["method"], "arch": record["arch"], "bits": record["bits"],
            "policy": record["policy"], "tuned": False}
    return {**base, "seeds": [item["seed"]], "theory": theory, "cell": cell}


def _check_method_estimator(spec: str, bits: int, method_hparams: dict) -> None:
    try:
        method_estimator(spec, bits, method_hparams)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - unknown method / hyperparameter: one line naming the fix
        raise ConfigError(f"theory.estimators: '{spec}' is neither identity, relu, clipped_relu nor a usable method "
                          f"spec ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def _summary_line(record: dict) -> str:
    if record.get("theory_part") == "recurrence":
        return (f"{record['n_visits']} visits of the optimum, {record['visits_last_quarter']} in the last quarter, "
                f"{record['distinct_states_last_quarter']} distinct Q(w_t) there")
    cos = record["cos_mean"] if not _nan(record["cos_mean"]) else record["cos_mc_mean"]
    checks = record.get("checks") or {}
    passed = sum(bool(v) for v in checks.values())
    return (f"cos(E g, ∂f/∂w) {cos:.3f}, ‖E g‖ at θ=π {record['spurious_grad_norm_mc']:.4f} (MC), "
            f"final f {record['final_loss']:.2e}; checks {passed}/{len(checks)}")


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
