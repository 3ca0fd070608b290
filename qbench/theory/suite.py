"""``qbench run`` for ``kind: theory`` suites: records of the two-linear-layer Gaussian model and the recurrence toy.

Sources: STE = Yin, Lyu, Zhang, Osher, Qi, Xin, *Understanding straight-through estimator in training activation
quantized neural nets*, ICLR 2019, arXiv 1903.05662 (the model, spec §8); REC = Long, Yin, Xin, *Recurrence of optimum
for training weight and activation quantized networks*, arXiv 2012.05529 (the toy, spec §6). The mathematics lives in
:mod:`qbench.theory`; this module turns it into records like the training runner's, so the theory suite resumes,
reports and lands in the leaderboard like any other suite.

Records (``<results_dir>/<suite>/<run_id>/``: ``config.yaml``, ``env.json``, ``metrics.jsonl``, ``result.json``):

* one per (estimator, seed), run id ``<estimator>_gaussian_s<seed>``: :func:`qbench.theory.gaussian.estimator_row`
  for that estimator (cosine of the expected coarse gradient with ∂f/∂w over random draws, closed form vs Monte Carlo,
  ‖E g‖ at the spurious minimiser θ = π, coarse gradient descent from random draws), its pass/fail ``checks``, and as
  ``metrics.jsonl`` the training curve (population loss f and θ per step) of the first training draw;
* one per (quantizer, seed), run id ``recurrence-<quantizer>_gaussian_s<seed>``: the spec §6 toy's summary, and as
  ``metrics.jsonl`` every step's loss at Q(w_t), Hamming distance to the quantized optimum, flip rate and visit flag.

Estimators: the names ``identity``, ``relu``, ``clipped_relu`` (closed forms) and any registered method spec
(``aqe``, ``ste:alpha=1.0``, a plugin's method): its activation quantizer's backward at ``theory.estimator_bits`` bits
*is* its estimator μ' (:func:`method_estimator`). Its expected coarse gradient has no closed form but is a handful of
one-dimensional Gaussian integrals (:class:`qbench.theory.quadrature.QuadratureEstimator`), so such an estimator gets
every column the closed forms get — the cosines over all draws, ‖E g‖ at θ = π, full-batch coarse gradient descent —
and the same Monte Carlo check.

The builtin estimators reproduce :func:`qbench.theory.gaussian.theory_table` exactly (both are
:func:`~qbench.theory.gaussian.estimator_row`, which re-seeds the same streams per estimator, so the estimators still
share common random numbers); ``tests/theory/test_suite.py`` checks it. Computing one estimator at a time is what makes
each record resumable alone. Options are the typed ``cfg.theory`` (:class:`qbench.config.TheoryConfig`), which owns
their defaults and validation.
"""

from __future__ import annotations

import math
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..bits import Bits
from ..config import THEORY_ESTIMATORS, RecurrenceConfig, SuiteConfig, TheoryConfig, to_dict, to_yaml
from ..errors import ConfigError
from ..registry import create_method, load_plugin, parse_method_spec
from ..results import (SCHEMA_VERSION, SuiteRun, atomic_write_json, atomic_write_text, env_info, load_result,
                       write_jsonl)
from ..run.device import device_name
from .gaussian import CLOSED_FORM_SOURCES, estimator_row
from .recurrence import recurrence_toy

__all__ = [
    "method_estimator",
    "estimator_record",
    "recurrence_record",
    "plan_theory",
    "run_theory_suite",
]

FINISHED = ("complete",)


# ----------------------------------------------------------------------------------------------------------------------
# Estimators registered by methods
# ----------------------------------------------------------------------------------------------------------------------


def method_estimator(spec: str, bits: int = TheoryConfig.estimator_bits,
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


def _label(estimator: str) -> str:
    return str(estimator).replace(":", "-").replace(",", "-").replace("/", "_")


# ----------------------------------------------------------------------------------------------------------------------
# One record's numbers
# ----------------------------------------------------------------------------------------------------------------------


def estimator_record(estimator: str, seed: int, config: TheoryConfig, *,
                     method_hparams: dict | None = None) -> tuple[dict, dict]:
    """(metrics, curves) of one estimator on the spec §8 model: :func:`qbench.theory.gaussian.estimator_row` of the
    named closed form, or of a method spec's μ' (:func:`method_estimator`, E g by quadrature). ``curves`` holds the
    per-step population loss and θ of the first training draw and the medians over all training draws."""
    if estimator in THEORY_ESTIMATORS:
        mu: Any = estimator
    else:
        mu = method_estimator(estimator, config.estimator_bits, method_hparams)
    row, runs = estimator_row(mu, seed, config)
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
        # below 0 by noise where the true cosine is itself tiny, θ near 0 or π).
        checks["positive_correlation"] = bool(row["cos_min"] > 0 and (estimator == "relu" or row["cos_mc_mean"] > 0))
    if estimator == "identity":
        # STE paper: the identity STE does not stop at the spurious minimiser, and the norm is spec §8's formula.
        checks["nonzero_at_spurious"] = bool(row["spurious_grad_norm"] > 1e-8)
        gap = abs(row["spurious_grad_norm"] - row["spurious_grad_norm_formula"])
        checks["spurious_norm_matches_formula"] = bool(gap <= 1e-9 * max(1.0, row["spurious_grad_norm"]))
    if estimator == "relu":
        checks["zero_at_spurious"] = bool(row["spurious_grad_norm"] < 1e-12)
    return checks


def recurrence_record(quantizer: str, seed: int, config: RecurrenceConfig):
    """The spec §6 toy (REC paper) for one quantizer: (summary + checks, per-step rows)."""
    result = recurrence_toy(quantizer, seed, config)
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


def plan_theory(cfg: SuiteConfig) -> list[dict]:
    """The records of a theory suite in a fixed order: every estimator × seed, then every quantizer × seed."""
    plan = []
    for seed in cfg.seeds:
        for estimator in cfg.theory.estimators:
            plan.append({"part": "estimator", "name": str(estimator), "seed": int(seed),
                         "run_id": f"{_label(estimator)}_gaussian_s{int(seed)}"})
    for seed in cfg.seeds:
        for quantizer in cfg.theory.recurrence.quantizers:
            plan.append({"part": "recurrence", "name": str(quantizer), "seed": int(seed),
                         "run_id": f"recurrence-{quantizer}_gaussian_s{int(seed)}"})
    return plan


def _base_record(cfg: SuiteConfig, item: dict) -> dict:
    part = item["part"]
    sizes = cfg.theory if part == "estimator" else cfg.theory.recurrence
    method = item["name"] if part == "estimator" else f"recurrence-{item['name']}"
    return {
        "schema_version": SCHEMA_VERSION, "qbench_version": __version__, "suite": cfg.name, "run_id": item["run_id"],
        "kind": "theory", "theory_part": part, "status": "failed", "error": None, "method": method,
        "estimator": item["name"] if part == "estimator" else None,
        "quantizer": item["name"] if part == "recurrence" else None,
        "tuned": False, "method_hparams": {}, "arch": f"gaussian2l-m{sizes.m}n{sizes.n}",
        # σ(x) = 1{x > 0} with float weights (spec §8); the toy quantizes the weights (binary / ternary).
        "bits": "W32A1" if part == "estimator" else ("W1A1" if item["name"] == "binary" else "W2A1"),
        "policy": "quantized", "seed": item["seed"], "dataset": "gaussian", "epochs": None,
        "device": "cpu", "device_name": None,
    }


def _run_item(cfg: SuiteConfig, item: dict, run_dir: Path) -> dict:
    start = time.perf_counter()
    record = _base_record(cfg, item)
    if item["part"] == "estimator":
        name = item["name"]
        row, curves = estimator_record(name, item["seed"], cfg.theory, method_hparams=cfg.method_hparams)
        if name in THEORY_ESTIMATORS:
            source = f"closed form, {CLOSED_FORM_SOURCES[name]}"
        else:
            source = f"quadrature of method {name}'s μ' (A{cfg.theory.estimator_bits})"
            record["method_hparams"] = parse_method_spec(name, cfg.method_hparams)[1]
        rows = [{"step": t, "loss": float(curves["loss"][t]), "theta": float(curves["theta"][t]),
                 "loss_median": float(curves["loss_median"][t]), "theta_median": float(curves["theta_median"][t])}
                for t in range(len(curves["loss"]))]
        record.update(row)
        record.update(estimator_source=source, checks=_estimator_checks(name, row),
                      final_loss=row["train_final_loss"], final_theta=row["train_final_theta"],
                      train_loss=row["train_final_loss"], steps=row["train_steps"])
    else:
        summary, rows = recurrence_record(item["name"], item["seed"], cfg.theory.recurrence)
        record.update(summary)
        record["final_loss"] = float(rows[-1]["loss_q"])
        record["train_loss"] = record["final_loss"]
    record.update(status="complete", wall_time_s=time.perf_counter() - start, epochs_completed=None,
                  device_name=device_name(torch.device("cpu")))
    write_jsonl(run_dir / "metrics.jsonl", rows)
    return record


def run_theory_suite(cfg: SuiteConfig, *, resume: bool = True, log: Callable[[str], None] = print):
    """Run a ``kind: theory`` suite (``qbench run suite=theory-gaussian``): one record per estimator × seed and per
    recurrence quantizer × seed, each skipped when already complete (unless ``resume=False``, i.e. ``--fresh``).
    ``qbench run`` then writes the theory table (``qbench report``'s ``leaderboards/<suite>.md`` and ``.csv``).
    ``cfg`` comes from :func:`qbench.config.load_config`, which has validated ``cfg.theory``.
    Returns a :class:`qbench.results.SuiteRun`.
    """
    for plugin in cfg.plugins:
        load_plugin(plugin)
    for estimator in cfg.theory.estimators:  # an unknown estimator or method fails before anything runs
        if estimator not in THEORY_ESTIMATORS:
            _check_method_estimator(str(estimator), cfg.theory.estimator_bits, cfg.method_hparams)
    suite_dir = Path(cfg.results_dir) / cfg.name
    outcome = SuiteRun()
    plan = plan_theory(cfg)
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
        atomic_write_text(run_dir / "config.yaml", to_yaml(_record_config(cfg, item)))
        atomic_write_json(run_dir / "env.json", env_info())
        try:
            record = _run_item(cfg, item, run_dir)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing record is written and the suite goes on, as in runner
            record = {**_base_record(cfg, item), "error": f"{type(exc).__name__}: {exc}"}
            atomic_write_text(run_dir / "traceback.txt", traceback.format_exc())
            outcome.failed.append(item["run_id"])
            log(f"  failed: {record['error'].splitlines()[0]} (traceback in {run_dir / 'traceback.txt'})")
        else:
            log(f"  {_summary_line(record)}  ({record['wall_time_s']:.1f} s)")
        atomic_write_json(run_dir / "result.json", record)
        outcome.results.append(record)
    return outcome


def _record_config(cfg: SuiteConfig, item: dict) -> dict:
    """The config saved with one record, narrowed to that record (as runner.cell_config narrows a training cell), so
    ``qbench run --from <record>/config.yaml`` re-runs exactly it; ``cell`` has the keys the CLI reads from it."""
    base = to_dict(cfg)
    theory = base["theory"]
    estimator = item["part"] == "estimator"
    theory["estimators"] = [item["name"]] if estimator else []
    theory["recurrence"]["quantizers"] = [] if estimator else [item["name"]]
    record = _base_record(cfg, item)
    cell = {**item, "method": record["method"], "arch": record["arch"], "bits": record["bits"],
            "policy": record["policy"], "tuned": False}
    return {**base, "seeds": [item["seed"]], "cell": cell}


def _check_method_estimator(spec: str, bits: int, method_hparams: dict) -> None:
    try:
        method_estimator(spec, bits, method_hparams)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - unknown method / hyperparameter: one line naming the fix
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"theory.estimators: '{spec}' is neither {', '.join(THEORY_ESTIMATORS)} nor a usable "
                          f"method spec ({type(exc).__name__}: {first_line})") from None


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
