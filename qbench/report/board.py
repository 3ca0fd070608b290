"""Runs → :class:`Leaderboard`: one row per method label, one column per (dataset, arch, bits, policy) setting.

Honesty rules the tables follow:

* A cell is ``mean ± std (n=k, …)`` over seeds. Runs that failed, diverged or never finished ("incomplete") and seeds
  that are missing are *counted in the cell text* (``70.42 ± 0.20 (n=2, 1 failed, 1 missing)``; the CSV has the
  counts as numbers), never averaged in and never silently dropped; a cell with no usable run shows the statuses
  instead of a number.
* A rank is a statement of a test, not of a mean: methods of a column are compared by paired t-tests over the seeds
  they share, Holm-adjusted (:mod:`qbench.report.compare`); the rank is 1 + the number of methods significantly
  better, the top group (rank 1) is bold, and a column with fewer than three paired seeds says that no test was
  possible. A rank decided by 0.1 points on three seeds is not a result.
* Cost figures carry the device in the column header (:mod:`qbench.report.costs`).
* Published numbers (:mod:`qbench.report.paper_refs`) are quoted only where dataset, arch, bits, method, the layer
  policy they were measured under (named in the text) and the hyperparameters the paper fixes match, in their own
  labelled column, and never ranked.

Byte stability: runs are sorted before anything is computed, the permutation test uses a fixed seed, and no text
holds a timestamp or an absolute path, so the same records always give the same tables.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..bits import FP_BITS
from ..config import SEEDS_AUTO
from ..errors import QbenchError
from ..paired import ALPHA, MIN_SEEDS
from .compare import (TEST_NAME, assign_mean_ranks, assign_significance, friedman_over_columns, friedman_statement,
                      significance_table)
from .costs import cost_table, device_label, has_costs, merge_bench, merge_tuning, run_costs
from .display import Table, status_words
from .load import (
    HPARAM_PREFIX,
    NUMERIC_FIELDS,
    SkippedRun,
    filter_runs,
    is_missing,
    is_theory,
    method_defaults,
    resolve_column,
    uniform,
)
from .paper_refs import match_paper_refs
from .stats import Friedman, t_interval
from .theory_board import TheoryBoard, build_theory_leaderboard

__all__ = ["FP_METHOD", "DEFAULT_METRIC", "DEFAULT_TARGET_DROP", "Column", "column_of", "label_runs", "Leaderboard",
           "build_leaderboard"]

#: the method name of the full-precision baseline (Δ FP, default time-to-target target)
FP_METHOD = "fp"
#: the result field a leaderboard ranks unless told otherwise
DEFAULT_METRIC = "test_top1"
#: default time-to-target target: the FP baseline's final val_top1 minus this many points
DEFAULT_TARGET_DROP = 1.0
# Datasets whose leaderboards conventionally quote top-5 as well (with 10 classes top-5 is uninformative).
TOP5_DATASETS = ("imagenet", "cifar100")


# ---------------------------------------------------------------------------------------------- rows and columns
def label_runs(df: pd.DataFrame) -> pd.Series:
    """Leaderboard row label per run: method, "(tuned)" for tuned runs, and the hyperparameters that differ.

    Untuned runs of one method that share a column (dataset, arch, bits, policy) but differ in a hyperparameter (e.g.
    the STE estimator) are different settings: averaging them would mix two experiments, so they get separate rows
    labelled by the differing keys. Values that differ only *between* columns (a per-arch lr, a per-bits α init)
    do not split rows. Tuned runs never split: their hyperparameters come from the tuner. Runs of a suite stage are
    prefixed with it (``base: ste``): stages are different experiments even with equal settings.
    """
    untuned = df[~df["tuned"]]
    columns = untuned.apply(column_of, axis=1) if len(untuned) else pd.Series([], dtype=object)
    varying: dict[str, set[str]] = {}
    for (method, _), group in untuned.groupby([untuned["method"], columns], sort=True):
        known = [json.loads(h) for h in group["method_hparams"] if isinstance(h, str)]
        keys = set().union(*known) if known else set()
        differing = {k for k in keys if len({json.dumps(d.get(k), sort_keys=True, default=str) for d in known}) > 1}
        varying.setdefault(method, set()).update(differing)

    def label(row: pd.Series) -> str:
        if row["tuned"]:
            return f"{row['method']} (tuned)"
        keys = sorted(varying.get(row["method"], ()))
        if not keys:
            return row["method"]
        if not isinstance(row["method_hparams"], str):
            return f"{row['method']} [hparams unknown]"
        hp = json.loads(row["method_hparams"])
        shown = ", ".join(f"{k}={_short(hp.get(k))}" for k in keys)
        return f"{row['method']} [{shown}]"

    def staged(row: pd.Series) -> str:
        stage = row.get("stage")
        return f"{stage}: {label(row)}" if isinstance(stage, str) and stage else label(row)

    return df.apply(staged, axis=1) if len(df) else pd.Series([], dtype=object)


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


@dataclass(frozen=True, order=True)
class Column:
    """One leaderboard column: a (dataset, arch, bits, policy) setting. Sorts from high to low precision."""

    dataset: str
    arch: str
    neg_wbits: float
    neg_abits: float
    bits: str
    policy: str


def column_of(row: pd.Series) -> Column:
    """The leaderboard column of one run (a row of :func:`qbench.report.load.load_runs`)."""
    wbits = row["wbits"] if not is_missing(row["wbits"]) else -math.inf
    abits = row["abits"] if not is_missing(row["abits"]) else -math.inf
    # The first/last-layer policy is meaningless for a float model, so FP runs of every policy share one column.
    full_precision = wbits >= 32 and abits >= 32
    policy = "" if full_precision or is_missing(row["policy"]) else str(row["policy"])
    return Column(str(row["dataset"]), str(row["arch"]), -float(wbits), -float(abits), str(row["bits"]), policy)


# ------------------------------------------------------------------------------------------------------ leaderboard
@dataclass
class Leaderboard:
    """Everything the writers need; build it with :func:`build_leaderboard`.

    ``table`` has one row per method label and, per column setting (arch × bits, plus dataset/policy when a suite
    varies them): the cell text, top-5 (ImageNet/CIFAR-100), Δ FP, the tie-aware rank and the paper reference.
    ``costs`` has one row per (method, setting) with device-labelled cost columns. ``cells`` is the long numeric
    table written as CSV. ``table_best`` marks each column's statistically tied top group, ``costs_best`` the best
    value of each cost column (bold in every format). ``significance`` states the tests in words, ``friedman`` is the
    comparison across columns (None when there are too few; :mod:`qbench.report.cd_diagram` draws it).
    """

    kind: ClassVar[str] = "train"

    suite: str
    metric: str
    table: pd.DataFrame
    table_best: pd.DataFrame
    costs: pd.DataFrame
    costs_best: pd.DataFrame
    cells: pd.DataFrame
    header: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    significance: pd.DataFrame = field(default_factory=pd.DataFrame)
    friedman: Friedman | None = None

    @property
    def title(self) -> str:
        return f"qbench leaderboard: {self.suite}"

    def tables(self) -> list[Table]:
        """The accuracy table, the significance table when anything was compared, then the cost table when any cost
        was measured."""
        tables = [Table(f"Accuracy ({self.metric})", f"qbench {self.suite}: {self.metric}", "accuracy", self.table,
                        self.table_best)]
        if len(self.significance):
            tables.append(Table(f"Significance (α = {ALPHA:g})", f"qbench {self.suite}: significance", "significance",
                                self.significance))
        if has_costs(self.costs):
            tables.append(Table("Cost", f"qbench {self.suite}: cost", "cost", self.costs, self.costs_best))
        return tables


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _cell_text(mean: float, std: float, n: int, bad: Counter, missing: int, decimals: int, repeated: int = 0) -> str:
    if n == 0:
        words = status_words(bad)
        text = " / ".join(words) if words else "missing"
        return f"{text} ({missing} missing)" if missing and words else text
    number = _fmt(mean, decimals) if n < 2 else f"{_fmt(mean, decimals)} ± {_fmt(std, decimals)}"
    extras = [f"n={n}"] + [f"{bad[s]} {s}" for s in status_words(bad)]
    if missing:
        extras.append(f"{missing} missing")
    if repeated:
        extras.append(f"{repeated} repeated seed" + ("s" if repeated > 1 else ""))
    return f"{number} ({', '.join(extras)})"


def build_leaderboard(
    df: pd.DataFrame,
    *,
    metric: str = DEFAULT_METRIC,
    where: Mapping[str, Any] | None = None,
    bench: pd.DataFrame | None = None,
    target: float | None = None,
    target_drop: float = DEFAULT_TARGET_DROP,
    decimals: int = 2,
    suite: str | None = None,
    tuning: pd.DataFrame | None = None,
    skipped: Sequence[SkippedRun] = (),
) -> Leaderboard | TheoryBoard:
    """Aggregate runs into a leaderboard (a :class:`~qbench.report.theory_board.TheoryBoard` for theory records).

    Args:
        df: runs from :func:`~qbench.report.load.load_runs`.
        metric: the result field ranked (higher is better unless its name ends in "loss").
        where: ``{key: value}`` filters (see :func:`~qbench.report.load.parse_where`). The FP reference (Δ FP, default
            target) ignores the keys that only pick methods or bit-widths (method, tuned, bits, hyperparameters), so
            a view such as ``bits=W1A4`` keeps its gap to FP.
        bench: rows from :func:`~qbench.report.load.load_bench`, merged as device-labelled cost columns.
        target: val_top1 (%) for the "time to target" column; default: the FP baseline's final val_top1 of the same
            dataset and arch minus ``target_drop`` points (no FP run for that arch → no time to target there).
        decimals: digits shown in the text tables (the CSV keeps full precision).
        suite: the name in titles and the CSV; default: the suites of the runs.
        tuning: study summaries from :func:`~qbench.report.load.load_tuning`; tuned rows get what their tuning cost
            (trials, CPU/GPU-h).
        skipped: unreadable run folders (:func:`~qbench.report.load.scan_runs`), listed at the end of the notes.
    """
    runs = filter_runs(df, where)
    if runs.empty:
        raise QbenchError(f"no runs match the filter {dict(where or {})}; drop or correct a key=value")
    if is_theory(runs):
        return build_theory_leaderboard(runs, suite=suite, skipped=skipped)
    if metric not in runs.columns or not pd.api.types.is_numeric_dtype(runs[metric]):
        numeric = [c for c in NUMERIC_FIELDS if c in runs.columns and ("top" in c or "loss" in c)]
        raise QbenchError(f"unknown metric {metric!r}; choose one of {', '.join(numeric)}")
    higher_is_better = not metric.endswith("loss")
    runs = runs.copy()
    runs["_label"] = label_runs(runs)
    runs["_column"] = runs.apply(column_of, axis=1)
    runs["_device"] = [device_label(d, n) for d, n in zip(runs["device"], runs["device_name"])]
    suite = suite or ", ".join(sorted(runs["suite"].map(str).unique()))

    columns = sorted(runs["_column"].unique())
    vary_dataset = len({c.dataset for c in columns}) > 1
    vary_policy = len({c.policy for c in columns if c.policy}) > 1

    def title(col: Column) -> str:
        parts = ([col.dataset] if vary_dataset else []) + [col.arch, col.bits]
        if vary_policy and col.policy:
            parts.append(f"[first/last {col.policy}]")
        return " ".join(parts)

    fp_mean, fp_final_val = _fp_baselines(_reference_runs(df, where), metric)

    def target_for(col: Column) -> float:
        if target is not None:
            return float(target)
        return fp_final_val.get((col.dataset, col.arch), np.nan) - target_drop

    top5_metric = metric.replace("top1", "top5") if "top1" in metric else None
    if top5_metric not in runs.columns or runs[top5_metric].isna().all():
        top5_metric = None
    context = dict(
        metric=metric, sign=1.0 if higher_is_better else -1.0, suite=suite, decimals=decimals, top5_metric=top5_metric,
        expected_seeds={int(s) for s in runs["seed"].dropna()},
    )
    cell_rows = [
        _cell_record(label, col, group, fp_mean=fp_mean.get((col.dataset, col.arch), np.nan),
                     target_value=target_for(col), **context)
        for (label, col), group in runs.groupby(["_label", "_column"], sort=True)
    ]
    bench_labels = merge_bench(cell_rows, bench)
    merge_tuning(cell_rows, tuning)
    comparisons = assign_significance(cell_rows)
    labels, mean_rank = _order_labels(cell_rows)
    friedman, why_not = friedman_over_columns(cell_rows)

    table, table_best = _accuracy_table(cell_rows, labels, columns, title, mean_rank, top5_metric, decimals)
    order = {label: i for i, label in enumerate(labels)}
    col_order = {col: i for i, col in enumerate(columns)}
    in_order = sorted(cell_rows, key=lambda r: (col_order[r["_column"]], order[r["method"]]))
    costs, costs_best = cost_table(in_order, vary_dataset, vary_policy, bench_labels)
    cells = _cells_frame(in_order)
    header, notes = _header_and_notes(runs, suite, metric, columns, target, target_drop, target_for,
                                      bool(bench_labels), table, costs)
    significance = significance_table(cell_rows, comparisons, title, friedman, why_not, decimals)
    if friedman is not None or why_not:
        notes.insert(1, friedman_statement(friedman, why_not))
    notes += _warm_start_notes(runs)
    notes += [s.note() for s in skipped]
    return Leaderboard(suite, metric, table, table_best, costs, costs_best, cells, header, notes, significance,
                       friedman)


# Filter keys that select *which methods / bit-widths are shown*; the FP reference ignores them, so that a view such
# as ``where bits=W1A4`` keeps its Δ FP. Every other key (epochs, lr, dataset, ...) still applies to the reference.
_VIEW_KEYS = ("method", "tuned", "bits", "wbits", "abits", "method_hparams")


def _reference_runs(df: pd.DataFrame, where: Mapping[str, Any] | None) -> pd.DataFrame:
    """The runs the FP baseline is taken from: ``df`` filtered by ``where`` minus the view keys."""
    columns = list(df.columns)
    resolved = {key: resolve_column(key, columns) for key in (where or {})}
    setting = {
        key: value for key, value in (where or {}).items()
        if resolved[key] not in _VIEW_KEYS and not resolved[key].startswith(HPARAM_PREFIX)
    }
    reference = filter_runs(df, setting).copy()
    reference["_label"] = label_runs(reference)
    return reference


def _final_val(row: pd.Series) -> float:
    if not is_missing(row.get("val_top1")):
        return float(row["val_top1"])
    metrics = row.get("metrics")
    if isinstance(metrics, list):
        for entry in reversed(metrics):
            if entry.get("val_top1") is not None:
                return float(entry["val_top1"])
    return np.nan


def _fp_baselines(runs: pd.DataFrame, metric: str) -> tuple[dict, dict]:
    """Per (dataset, arch): the FP mean of ``metric`` (the Δ FP reference) and the FP final val_top1 (for targets).

    The untuned "fp" row is preferred when FP was also run tuned or with hyperparameter variants.
    """
    is_fp = (runs["method"] == FP_METHOD) & (runs["wbits"] >= 32) & (runs["abits"] >= 32)
    fp_runs = runs[is_fp & (runs["status"] == "complete")]
    fp_mean: dict[tuple[str, str], float] = {}
    fp_final_val: dict[tuple[str, str], float] = {}
    preferred_last = sorted(fp_runs["_label"].unique(), key=lambda lab: (lab != FP_METHOD, lab), reverse=True)
    for label in preferred_last:  # later labels overwrite earlier ones, so the preferred label wins
        for (dataset, arch), group in fp_runs[fp_runs["_label"] == label].groupby(["dataset", "arch"]):
            values = group[metric].dropna()
            if len(values):
                fp_mean[(dataset, arch)] = float(values.mean())
            finals = [v for v in (_final_val(r) for _, r in group.iterrows()) if not math.isnan(v)]
            if finals:
                fp_final_val[(dataset, arch)] = float(np.mean(finals))
    return fp_mean, fp_final_val


def _cell_record(
    label: str, col: Column, group: pd.DataFrame, *, metric: str, sign: float, suite: str, decimals: int,
    top5_metric: str | None, expected_seeds: set[int], fp_mean: float, target_value: float,
) -> dict:
    """Statistics, status counts, costs and paper reference of one (method label, column) cell."""
    group = group.sort_values(["seed", "run_id"], kind="stable")
    is_complete = group["status"] == "complete"
    values = group.loc[is_complete & group[metric].notna(), metric].to_numpy(dtype=float)
    mixed = mixed_config_keys(group[is_complete & group[metric].notna()])
    if mixed:  # seeds of different experiments: no mean, no rank (issue #14: never pool them)
        values = values[:0]
    bad = Counter(group.loc[~is_complete, "status"])
    no_value = int((is_complete & group[metric].isna()).sum())
    if no_value:
        bad[f"without {metric}"] = no_value
    seeds_present = {int(s) for s in group["seed"].dropna()}
    # seeds=auto chose this cell's seeds: fewer than another cell's is the rule (stopped early), not a gap
    sequential = "seeds_rule" in group and (group["seeds_rule"] == SEEDS_AUTO).any()
    missing = 0 if sequential else len(expected_seeds - seeds_present)
    n = len(values)
    # The same seed run twice (e.g. again on another device) is two samples but not two independent seeds: say so.
    usable_seeds = group.loc[is_complete & group[metric].notna(), "seed"].dropna()
    repeated = len(usable_seeds) - usable_seeds.nunique()
    mean = float(values.mean()) if n else np.nan
    std = float(values.std(ddof=1)) if n >= 2 else np.nan
    low, high = t_interval(values)
    # What the paired tests compare: seed → score (higher is better; a repeated seed is one seed, its mean).
    usable = group[is_complete & group[metric].notna()] if not mixed else group.iloc[:0]
    by_seed = {int(seed): sign * float(v.mean()) for seed, v in usable.groupby("seed")[metric]}
    stage = group["stage"].iloc[0] if "stage" in group else None
    row: dict[str, Any] = {
        "suite": suite, "dataset": col.dataset, "arch": col.arch, "bits": col.bits, "policy": col.policy,
        "method": label, "method_name": group["method"].iloc[0], "tuned": bool(group["tuned"].iloc[0]),
        "metric": metric, "n": n, "mean": mean, "std": std, "sem": std / math.sqrt(n) if n >= 2 else np.nan,
        "ci95_low": low, "ci95_high": high, "n_runs": len(group), "n_complete": int(is_complete.sum()),
        "n_failed": bad.get("failed", 0), "n_diverged": bad.get("diverged", 0),
        "n_incomplete": bad.get("incomplete", 0), "n_without_metric": no_value, "n_missing_seeds": missing,
        "n_repeated_seeds": repeated, "seeds": ";".join(str(s) for s in sorted(seeds_present)),
        "_text": _cell_text(mean, std, n, bad, missing, decimals, repeated), "_by_seed": by_seed, "_sign": sign,
        "_column": col, "_stage": stage if isinstance(stage, str) else "",
    }
    if mixed:  # the column exists only in a report that has such a cell: the others keep their bytes
        row["not_pooled"] = ", ".join(mixed)
        row["_text"] = f"not pooled: its runs differ in {', '.join(mixed)} ({len(group)} runs)"
    if top5_metric:
        top5 = group.loc[is_complete, top5_metric].dropna().to_numpy(dtype=float)
        row["top5_mean"] = float(top5.mean()) if len(top5) else np.nan
        row["top5_std"] = float(top5.std(ddof=1)) if len(top5) >= 2 else np.nan
        row["top5_n"] = len(top5)
    row["fp_mean"] = fp_mean
    row["gap_to_fp"] = mean - fp_mean
    row["target_val_top1"] = target_value
    row.update(run_costs(group[is_complete], target_value))
    row.update(_paper_fields(col, group, row["method_name"], metric))
    return row


def mixed_config_keys(group: pd.DataFrame, limit: int = 3) -> list[str]:
    """The result-relevant config keys (:func:`qbench.config.result_config`) on which the runs of one cell disagree:
    empty when their values may be pooled; records without a config (old or foreign) are not compared."""
    configs = [c for c in group.get("result_config", pd.Series(dtype=object)) if isinstance(c, Mapping)]
    if len({json.dumps(c, sort_keys=True, default=str) for c in configs}) <= 1:
        return []
    keys = sorted(k for k in set().union(*configs)
                  if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1)
    return keys[:limit] + ([f"{len(keys) - limit} more"] if len(keys) > limit else [])


def _paper_fields(col: Column, group: pd.DataFrame, method: str, metric: str) -> dict:
    """The published number(s) for this cell, when the cell's setting is the paper's (top-1 metrics only)."""
    refs = []
    if metric.endswith("top1"):
        recorded = uniform(json.loads(h) if isinstance(h, str) else None for h in group["method_hparams"]) or {}
        # A record may hold only the overridden hyperparameters; the paper's setting is compared at the defaults.
        hparams = {**method_defaults(method), **recorded}
        policy = uniform(p if not is_missing(p) else None for p in group["policy"])
        # Runs that differ in their per-layer precision are no one setting: no number is quoted for them.
        layer_bits = uniform(json.loads(t) if isinstance(t, str) else None for t in group["layer_bits"])
        if layer_bits is not None:
            refs = match_paper_refs(dataset=col.dataset, arch=col.arch, bits=col.bits, method=method, policy=policy,
                                    hparams=hparams, layer_bits=layer_bits)
    return {
        "paper_value": refs[0].value if refs else np.nan,
        "paper_source": refs[0].source if refs else "",
        "paper_setting": refs[0].setting if refs else "",
        "_paper_text": "; ".join(ref.label() for ref in refs),
    }


def _order_labels(cell_rows: list[dict]) -> tuple[list[str], dict[str, float]]:
    """Row order: FP first (the reference), then by mean rank over the quantized columns
    (:func:`~qbench.report.compare.assign_mean_ranks`), then by name."""
    mean_rank = assign_mean_ranks(cell_rows)
    labels = sorted({r["method"] for r in cell_rows})
    mean_rank = {label: mean_rank.get(label, np.nan) for label in labels}
    fp_labels = {r["method"] for r in cell_rows if r["method_name"] == FP_METHOD}
    labels.sort(key=lambda lab: (lab not in fp_labels, math.isnan(mean_rank[lab]), np.nan_to_num(mean_rank[lab]), lab))
    return labels, mean_rank


def _top5_texts(rows: list[dict | None], decimals: int) -> tuple[list[str], list[float]]:
    texts, values = [], []
    for r in rows:
        if r is None or not r.get("top5_n"):
            texts.append("—")
            values.append(np.nan)
        else:
            mean5, std5 = r["top5_mean"], r["top5_std"]
            spread = "" if math.isnan(std5) else f" ± {_fmt(std5, decimals)}"
            texts.append(_fmt(mean5, decimals) + spread)
            values.append(mean5)
    return texts, values


def _rank_text(row: dict | None) -> str:
    """The tie-aware rank, "no test" for a method compared with others on fewer than MIN_SEEDS seeds, else "—"."""
    if row is None or row["n"] == 0 or row["_compared"] < 2:
        return "—"
    return f"{int(row['rank'])}" if not is_missing(row["rank"]) else f"no test (<{MIN_SEEDS} seeds)"


def _accuracy_table(cell_rows: list[dict], labels: list[str], columns: list[Column], title: Callable[[Column], str],
                    mean_rank: dict[str, float], top5_metric: str | None,
                    decimals: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    lookup = {(r["method"], r["_column"]): r for r in cell_rows}
    data: dict[str, list[str]] = {"method": list(labels)}
    best: dict[str, list[bool]] = {"method": [False] * len(labels)}
    quantized_columns = [c for c in columns if c.bits != FP_BITS]
    for col in columns:
        rows = [lookup.get((label, col)) for label in labels]
        name = title(col)
        data[name] = [r["_text"] if r is not None else "—" for r in rows]
        best[name] = [r is not None and bool(r["top_group"]) for r in rows]  # the statistically tied top group
        if top5_metric and col.dataset.lower().replace("-", "").startswith(TOP5_DATASETS):
            texts, values = _top5_texts(rows, decimals)
            top = max([v for v in values if not math.isnan(v)], default=None)
            data[f"{name} top-5"] = texts
            best[f"{name} top-5"] = [top is not None and v == top for v in values]
        # the FP column is the reference itself: a gap of +0.00 there says nothing
        if col.bits != FP_BITS and any(r is not None and not math.isnan(r["fp_mean"]) for r in rows):
            data[f"{name} Δ FP"] = [
                f"{r['gap_to_fp']:+.{decimals}f}" if r is not None and r["n"] > 0 else "—" for r in rows
            ]
            best[f"{name} Δ FP"] = [False] * len(rows)
        if any(r is not None and r["_compared"] >= 2 for r in rows):  # one method alone has nothing to rank
            data[f"{name} rank"] = [_rank_text(r) for r in rows]
            best[f"{name} rank"] = [False] * len(rows)
        if any(r is not None and r["_paper_text"] for r in rows):
            data[f"{name} paper (source, setting)"] = ["" if r is None else r["_paper_text"] for r in rows]
            best[f"{name} paper (source, setting)"] = [False] * len(rows)
    if len(quantized_columns) > 1:
        data["mean rank"] = ["—" if math.isnan(mean_rank[lab]) else f"{mean_rank[lab]:.2f}" for lab in labels]
        finite = [mean_rank[lab] for lab in labels if not math.isnan(mean_rank[lab])]
        best["mean rank"] = [bool(finite) and mean_rank[lab] == min(finite) for lab in labels]
    return pd.DataFrame(data), pd.DataFrame(best)


def _cells_frame(rows: list[dict]) -> pd.DataFrame:
    """The long numeric table (the CSV) of the cell records ``rows``, in table order."""
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    frame = pd.DataFrame.from_records(public)
    # fixed leading columns, then the device-labelled cost columns in sorted order → a stable CSV header
    leading = [c for c in dict.fromkeys(k for r in public for k in r) if " [" not in c]
    trailing = sorted(c for c in frame.columns if " [" in c)
    counts = ("n", "n_runs", "n_complete", "n_failed", "n_diverged", "n_incomplete", "n_without_metric",
              "n_missing_seeds", "n_repeated_seeds", "rank", "top5_n")
    for column in counts + tuple(c for c in trailing if c.startswith(("target_reached", "target_runs"))):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame[leading + trailing]


def _header_and_notes(runs, suite, metric, columns, target, target_drop, target_for, has_bench, table, costs):
    status = Counter(runs["status"])
    status_text = ", ".join(f"{status[s]} {s}" for s in status_words(status))
    devices = sorted(set(runs.loc[runs["status"] == "complete", "_device"])) or ["none recorded"]
    versions = sorted({str(v) for v in runs["qbench_version"] if not is_missing(v)}) or ["unknown"]
    header = [
        f"Suite `{suite}`: {len(runs)} runs ({status_text}); devices: {'; '.join(devices)}; "
        f"records from qbench {', '.join(versions)}; report by qbench {__version__}.",
        f"Metric: `{metric}`, mean ± std over seeds (n = seeds with a result).",
    ]
    notes = [
        "Failed, diverged and incomplete runs and missing seeds are counted in their cell, never averaged in; "
        "95% confidence intervals (t-distribution) are in the CSV.",
    ]
    if any(c.endswith(" Δ FP") for c in table.columns):
        notes.append(f"Δ FP: cell mean minus the FP baseline (method `{FP_METHOD}`, {FP_BITS}) of the same arch.")
    if any(c.endswith(" rank") and c != "mean rank" for c in table.columns):
        header.append(f"Bold in the accuracy table: each column's top group, the methods no other method beats "
                      f"significantly ({TEST_NAME}, α = {ALPHA:g}); the rank is 1 + the number of methods "
                      f"significantly better.")
        notes.append(
            f"rank: two-sided paired t-tests over the seeds both methods have a result for (a shared seed is a shared "
            f"initialisation and data order), every pair of the column, Holm-adjusted; methods that cannot be told "
            f"apart share a rank. Fewer than {MIN_SEEDS} paired seeds: no test. Failed and diverged seeds pair with "
            f"nothing. FP ({FP_BITS}) is the reference of Δ FP and is not ranked; tuned rows are ranked among "
            f"themselves."
        )
    if "seeds_rule" in runs and (runs["seeds_rule"] == SEEDS_AUTO).any():
        notes.append("seeds=auto: `qbench run seeds=auto` added seeds to the columns whose top group was not yet "
                     "separated (and stopped when it was, at α divided by the number of looks); a method already "
                     "significantly worse got no more seeds, so n differs within a column and no seed is missing.")
    if "mean rank" in table.columns:
        notes.append("mean rank: over the quantized columns, of the rank by mean within each column (ties share the "
                     "average rank; a column where the method ran but has no result counts as last), as in "
                     "Friedman's test.")
    if any(c.startswith("time to target") for c in costs.columns):
        if target is not None:
            notes.append(f"time to target: wall time to the first epoch with val_top1 ≥ {float(target):.2f}.")
        else:
            targets = sorted({(c.arch, target_for(c)) for c in columns if not math.isnan(target_for(c))})
            listed = ", ".join(f"{arch} {value:.2f}" for arch, value in targets)
            notes.append(
                f"time to target: wall time to the first epoch with val_top1 ≥ target, target = FP final val_top1 "
                f"minus {target_drop:.2f} ({listed}); (k/n) = runs that reached it."
            )
    if has_costs(costs):
        notes.append("Cost figures are medians over seeds, per device; figures from different devices are never "
                     "compared" + ("; bench columns come from `qbench bench`." if has_bench else "."))
    if any(c.endswith("paper (source, setting)") for c in table.columns):
        notes.append("paper (source, setting): published numbers, quoted where dataset, arch, bits, method, the layer "
                     "policy they were measured under and the paper's hyperparameters match; not re-run here and not "
                     "ranked.")
    # Failed and diverged runs are quoted with their error; so is an incomplete run whose record says why (a
    # result.json without a status). A killed run has nothing to quote: its cell counts it.
    has_error = ~runs["error"].map(is_missing)
    broken = runs[runs["status"].isin(["failed", "diverged"]) | ((runs["status"] != "complete") & has_error)]
    for _, run in broken.head(20).iterrows():
        lines = [] if is_missing(run["error"]) else str(run["error"]).strip().splitlines()
        error = lines[0][:160] if lines else ""
        notes.append(f"{run['status']}: `{run['run_id']}`" + (f": {error}" if error else ""))
    if len(broken) > 20:
        notes.append(f"… and {len(broken) - 20} more failed/diverged/incomplete runs (see the CSV and the run dirs).")
    return header, notes


def _warm_start_notes(runs: pd.DataFrame) -> list[str]:
    """One note per row label whose runs continued another run (``model.init_from_run``): where the loss at Q(w) on
    the training slice started and ended, and the first and last epoch's training loss (seed means) — the numbers
    that say whether a continuation was pushed away from its starting minimum (STE paper's repulsion experiment)."""
    if "init_from_run" not in runs.columns:
        return []
    notes = []
    warm = runs[runs["init_from_run"].map(lambda v: isinstance(v, str) and bool(v)) & (runs["status"] == "complete")]
    for label, group in warm.groupby("_label", sort=True):
        def mean_of(values) -> str:
            values = [float(v) for v in values if not is_missing(v)]
            return f"{np.mean(values):.5g}" if values else "—"

        first = [rows[0].get("train_loss") for rows in group["metrics"] if isinstance(rows, list) and rows]
        last = [rows[-1].get("train_loss") for rows in group["metrics"] if isinstance(rows, list) and rows]
        sources = sorted(set(group["init_from_run"]))
        source = f"`{sources[0]}`" if len(sources) == 1 else f"{len(sources)} runs"
        notes.append(
            f"`{label}` continues {source} (model.init_from_run): loss at Q(w) on the training slice "
            f"{mean_of(group.get('init_loss_q', []))} → {mean_of(group.get('final_loss_q', []))}; train_loss first → "
            f"last epoch {mean_of(first)} → {mean_of(last)} (mean over {len(group)} seed"
            f"{'s' if len(group) != 1 else ''})."
        )
    return notes
