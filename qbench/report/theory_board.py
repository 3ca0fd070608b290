"""The report of a ``kind: theory`` suite (records of :mod:`qbench.theory.suite`).

Rows are estimators (and recurrence-toy quantizers), columns the spec §8 / §6 checks. Kept apart from the training
leaderboard: nothing here is a rank or an accuracy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from .display import Table, fmt_seconds, status_words
from .load import SkippedRun, as_bool, is_missing, uniform
from .stats import finite_median

__all__ = ["TheoryBoard", "build_theory_leaderboard"]

_THEORY_ORDER = ("identity", "relu", "clipped_relu")
_THEORY_METRICS = (
    "cos_mean", "cos_min", "cos_mc_mean", "cos_mc_min", "mc_max_abs_err", "mc_max_stderr", "mc_max_z",
    "inner_product_rel_err", "spurious_grad_norm", "spurious_grad_norm_formula", "spurious_grad_norm_mc",
    "spurious_grad_mc_stderr", "train_final_loss", "train_final_theta", "train_initial_loss_median",
    "train_final_loss_median", "train_global_rate", "train_spurious_rate", "train_loss_rise_rate", "wall_time_s",
)
_RECURRENCE_METRICS = (
    "n_visits", "visits_last_quarter", "first_visit", "last_visit", "distinct_states_last_quarter", "visit_fraction",
    "mean_flip_rate", "mean_hamming_last_quarter", "optimum_loss", "min_loss_q", "mean_loss_q_last_quarter",
    "wall_time_s",
)
_ESTIMATOR_TITLE = "Estimators on the two-linear-layer Gaussian model (spec §8)"


@dataclass
class TheoryBoard:
    """A theory suite's report: the estimator ``table``, further ``sections`` (title, frame), the long ``cells`` table
    (the CSV), header lines and notes. Build it with :func:`build_theory_leaderboard`."""

    kind: ClassVar[str] = "theory"

    suite: str
    table: pd.DataFrame
    cells: pd.DataFrame
    header: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[tuple[str, pd.DataFrame]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"qbench theory report: {self.suite}"

    def tables(self) -> list[Table]:
        """The tables of the page, in order: the estimators, then each section."""
        named = [(_ESTIMATOR_TITLE, self.table), *self.sections]
        return [Table(name, f"qbench {self.suite}: {name}", f"theory{index}", frame)
                for index, (name, frame) in enumerate(named)]


def _theory_values(group: pd.DataFrame, key: str) -> np.ndarray:
    if key not in group.columns:
        return np.array([])
    values = pd.to_numeric(group[key], errors="coerce").to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _theory_num(group: pd.DataFrame, key: str, spec: str, reduce: str = "mean") -> str:
    """Seed mean (± std when seeds disagree), or the min/max over seeds; "—" where no complete record has a value."""
    values = _theory_values(group, key)
    if not len(values):
        return "—"
    if reduce == "min":
        return format(values.min(), spec)
    if reduce == "max":
        return format(values.max(), spec)
    mean = format(values.mean(), spec)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{mean} ± {format(std, spec)}" if len(values) > 1 and format(std, spec) != format(0.0, spec) else mean


def _theory_checks(group: pd.DataFrame) -> str:
    columns = sorted(c for c in group.columns if c.startswith("checks."))
    results: dict[str, bool] = {}
    for column in columns:
        values = [v for v in group[column] if not is_missing(v)]
        if values:
            results[column[len("checks."):]] = all(as_bool(v) for v in values)
    if not results:
        return "—"
    failed = [name for name, ok in results.items() if not ok]
    return f"{len(results)}/{len(results)} pass" if not failed else "FAIL: " + ", ".join(failed)


def _theory_seeds(group: pd.DataFrame) -> str:
    counts = Counter(group["status"])
    ok = counts.pop("complete", 0)
    extras = [f"{counts[s]} {s}" for s in status_words(counts)]
    return ", ".join([f"n={ok}"] + extras)


def _theory_estimator_table(est: pd.DataFrame) -> pd.DataFrame:
    labels = sorted(est["estimator"].map(str).unique(),
                    key=lambda e: (_THEORY_ORDER.index(e) if e in _THEORY_ORDER else len(_THEORY_ORDER), e))
    rows = []
    for label in labels:
        group = est[est["estimator"].map(str) == label]
        done = group[group["status"] == "complete"]
        source = uniform(done.get("estimator_source", pd.Series(dtype=object)).dropna()) if len(done) else None
        rows.append({
            "estimator": label,
            "E g from": source if isinstance(source, str) else "—",
            "cos(E g, ∂f/∂w) mean [min]":
                f"{_theory_num(done, 'cos_mean', '.3f')} [{_theory_num(done, 'cos_min', '.3f', 'min')}]",
            "cos, Monte Carlo mean [min]":
                f"{_theory_num(done, 'cos_mc_mean', '.3f')} [{_theory_num(done, 'cos_mc_min', '.3f', 'min')}]",
            "E g vs MC: max |Δ| (max z)":
                f"{_theory_num(done, 'mc_max_abs_err', '.1e', 'max')} ({_theory_num(done, 'mc_max_z', '.1f', 'max')})",
            "‖E g‖ at θ = π [spec §8]": f"{_theory_num(done, 'spurious_grad_norm', '.4f')} "
                                        f"[{_theory_num(done, 'spurious_grad_norm_formula', '.4f')}]",
            "‖E g‖ at θ = π, MC ± se": f"{_theory_num(done, 'spurious_grad_norm_mc', '.4f')} ± "
                                       f"{_theory_num(done, 'spurious_grad_mc_stderr', '.4f')}",
            "training: final f, θ (draw 1)":
                f"{_theory_num(done, 'train_final_loss', '.2e')}, {_theory_num(done, 'train_final_theta', '.3f')}",
            "global / spurious / loss-rise rate":
                " / ".join(_theory_num(done, k, ".2f") for k in ("train_global_rate", "train_spurious_rate",
                                                               "train_loss_rise_rate")),
            "checks": _theory_checks(done),
            "seeds": _theory_seeds(group),
            "wall time": fmt_seconds(finite_median(_theory_values(done, "wall_time_s"))),
        })
    return pd.DataFrame(rows)


def _theory_recurrence_table(rec: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for quantizer in sorted(rec["quantizer"].map(str).unique()):
        group = rec[rec["quantizer"].map(str) == quantizer]
        done = group[group["status"] == "complete"]
        rows.append({
            "Q": quantizer,
            "steps, η": f"{_theory_num(done, 'steps', '.0f')}, {_theory_num(done, 'lr', 'g')}",
            "visits of Q(w*)": _theory_num(done, "n_visits", ".0f"),
            "in the last quarter": _theory_num(done, "visits_last_quarter", ".0f"),
            "first / last visit": f"{_theory_num(done, 'first_visit', '.0f', 'min')} / "
                                  f"{_theory_num(done, 'last_visit', '.0f', 'max')}",
            "distinct Q(w_t), last quarter": _theory_num(done, "distinct_states_last_quarter", ".0f"),
            "mean flip rate": _theory_num(done, "mean_flip_rate", ".4f"),
            "mean Hamming to Q(w*), last quarter": _theory_num(done, "mean_hamming_last_quarter", ".3f"),
            "f at Q(w*) / min f at Q(w_t)":
                f"{_theory_num(done, 'optimum_loss', '.4f')} / {_theory_num(done, 'min_loss_q', '.4f', 'min')}",
            "checks": _theory_checks(done),
            "seeds": _theory_seeds(group),
        })
    return pd.DataFrame(rows)


def _theory_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """The CSV: one row per (part, estimator or quantizer, metric) with n, mean, std, min, max over complete seeds."""
    rows = []
    for part, key, metrics in (("estimator", "estimator", _THEORY_METRICS),
                               ("recurrence", "quantizer", _RECURRENCE_METRICS)):
        subset = runs[runs["theory_part"] == part] if "theory_part" in runs.columns else runs.iloc[0:0]
        for label in sorted(subset[key].map(str).unique()) if len(subset) else []:
            done = subset[(subset[key].map(str) == label) & (subset["status"] == "complete")]
            for metric in metrics:
                values = _theory_values(done, metric)
                rows.append({"part": part, "name": label, "metric": metric, "n": len(values),
                             "mean": values.mean() if len(values) else np.nan,
                             "std": values.std(ddof=1) if len(values) > 1 else np.nan,
                             "min": values.min() if len(values) else np.nan,
                             "max": values.max() if len(values) else np.nan})
    return pd.DataFrame(rows, columns=["part", "name", "metric", "n", "mean", "std", "min", "max"])


def build_theory_leaderboard(runs: pd.DataFrame, *, suite: str | None = None,
                             skipped: Sequence[SkippedRun] = ()) -> TheoryBoard:
    """The report of a theory suite: a table of estimators with the spec §8 checks as columns, a table of the spec §6
    recurrence toy per quantizer, and the notes that define each column; ``skipped`` run folders are listed last."""
    runs = runs.copy()
    if "theory_part" not in runs.columns:
        runs["theory_part"] = "estimator"
    for column in ("estimator", "quantizer"):
        if column not in runs.columns:
            runs[column] = None
    suite = suite or ", ".join(sorted(runs["suite"].map(str).unique()))
    est = runs[runs["theory_part"] == "estimator"]
    rec = runs[runs["theory_part"] == "recurrence"]
    table = _theory_estimator_table(est) if len(est) else pd.DataFrame({"estimator": []})
    status = Counter(runs["status"])
    versions = sorted({str(v) for v in runs["qbench_version"] if not is_missing(v)}) or ["unknown"]
    status_text = ", ".join(f"{status[s]} {s}" for s in status_words(status))
    header = [
        f"Suite `{suite}` (theory): {len(runs)} records ({status_text});"
        f" records from qbench {', '.join(versions)}; report by qbench {__version__}.",
        "Two-linear-layer Gaussian model y = vᵀσ(Zw), σ(x) = 1{x > 0} (spec §8; Yin et al., *Understanding "
        "straight-through estimator …*, ICLR 2019) and the recurrence toy of spec §6 (Long, Yin, Xin, arXiv "
        "2012.05529). Values are seed means (± std where seeds differ).",
    ]
    options = {k[len("cfg.theory."):]: v for k, v in runs.iloc[0].items()
               if str(k).startswith("cfg.theory.") and not is_missing(v)}
    if options:
        header.append("Options: " + ", ".join(f"{k}={options[k]}" for k in sorted(options)) + ".")
    notes = [
        "cos(E g, ∂f/∂w): cosine of the expected coarse gradient (closed form or quadrature) with the population "
        "gradient ∂f/∂w, "
        "mean [min] over the random draws (theory.n_draws); Monte Carlo: the same with E g from theory.mc_samples "
        "samples on the first theory.mc_draws draws. STE paper: positive for relu and clipped relu.",
        "E g vs MC: largest |E g − Monte Carlo| over draws and coordinates, and the largest ratio to the Monte "
        "Carlo standard error (z); z below ~4 means the closed form (or quadrature) is right.",
        "‖E g‖ at θ = π: at the spurious critical point v = (I+J)⁻¹(J−I)v*, w = −‖w‖w* of the first draw; [spec §8] "
        "is 2(m−1)(1ᵀv*)²/(√(2π)(m+1)²) for identity and 0 for relu: the identity STE does not stop there. MC ± se: "
        "the Monte Carlo norm and the norm of its standard error (its noise floor).",
        "training: coarse gradient descent (STE paper, Algorithm 1) from theory.train_draws draws: final f and θ of "
        "the first draw (curves in the plots); rates = share of draws that reach the global minimum (final f < 1e-6 × "
        "initial), end at the spurious θ = π, or whose loss climbs in the second half.",
        "Estimators other than identity / relu / clipped_relu come from a method's activation quantizer (its "
        "backward is its μ'); their E g is one-dimensional Gaussian quadrature (qbench.theory."
        "quadrature.QuadratureEstimator, checked against Monte Carlo like the closed forms), so every column applies.",
    ]
    sections = []
    if len(rec):
        sections.append(("Recurrence toy (spec §6; REC paper)", _theory_recurrence_table(rec)))
        notes.append("Recurrence toy: projected coarse gradient w ← w − η·E g_relu(Q(w)) (BCGD with ρ = 0) on the "
                     "spec §8 model with v = v*; a visit is Q(w_t) equal to the quantized optimum Q(w*). REC paper: "
                     "the iterates keep visiting the optimum without converging, so visits in the last quarter and "
                     "several distinct Q(w_t) there are the checks (never exact counts).")
    broken = runs[runs["status"] != "complete"]
    for _, run in broken.head(20).iterrows():
        lines = [] if is_missing(run.get("error")) else str(run["error"]).strip().splitlines()
        notes.append(f"{run['status']}: `{run['run_id']}`" + (f": {lines[0][:160]}" if lines else ""))
    notes += [s.note() for s in skipped]
    return TheoryBoard(suite, table, _theory_cells(runs), header, notes, sections)
