"""The data of a suite page (:mod:`qbench.report.site`): the leaderboard's columns and rows from the board's long
``cells`` frame, its filters, the runs behind every row, and the suite's summary for the index.

Every column of ``cells`` is shown. The ones this module knows get a short header, a unit, a tooltip, and fold
their companions in (``rank_stability`` into the rank's tooltip, ``std`` into the mean, ...); cost columns, whose names
carry a device or bench setting in brackets, are grouped under that setting with a numbered footnote; any other column
(one the board gains later) is shown as it is, under "more", so new columns and marks appear without a change here.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..bits import FP_BITS
from ..paired import ALPHA, MIN_SEEDS
from ..registry import get_method_class
from .board import Leaderboard, column_of, label_runs
from .compare import TEST_NAME
from .display import fmt_seconds, fmt_size, status_words
from .figure import method_family, method_style
from .load import ENV_PREFIX, is_missing

__all__ = ["SiteColumn", "site_columns", "site_rows", "site_filters", "runs_table", "description", "summary",
           "cell_key", "FILTER_FIELDS"]

#: the columns a page offers as filters (when present with two or more values), in this order
FILTER_FIELDS = ("method", "family", "dataset", "arch", "bits", "policy", "tuned", "part", "name", "metric")
_COUNT_KEYS = ("n_runs", "n_complete", "n_failed", "n_diverged", "n_incomplete", "n_without_metric",
               "n_missing_seeds", "n_repeated_seeds")
# Columns folded into another column's text or tooltip, or constant on a page.
_FOLDED = {"suite", "metric", "method_name", "std", "sem", "ci95_low", "ci95_high", "seeds", "top5_std", "top5_n",
           "fp_mean", "target_val_top1", "model_size_mb", "paper_source", "paper_setting", "rank_stability",
           "tune_epochs_per_trial", *_COUNT_KEYS}
_COST_NAMES = {
    "train_img_s": ("train img/s", "{:,.0f}"), "infer_img_s": ("infer img/s", "{:,.0f}"),
    "peak_mem_mb": ("peak MB", "{:,.0f}"), "wall_time_s": ("wall time", "seconds"),
    "time_to_target_s": ("to target", "seconds"),
    "bench_train_img_s": ("train img/s", "{:,.0f}"), "bench_infer_img_s": ("infer img/s", "{:,.0f}"),
    "bench_train_step_ms_median": ("ms/step", "{:.2f}"), "bench_train_step_ms_iqr": ("ms/step IQR", "{:.2f}"),
    "bench_ratio_train_to_fp": ("train ×FP", "{:.2f}"), "bench_ratio_infer_to_fp": ("infer ×FP", "{:.2f}"),
    "bench_peak_mem_mb": ("peak MB", "{:,.0f}"),
}
_COST_TIPS = {
    "train_img_s": "training throughput, images per second (median over seeds)",
    "infer_img_s": "inference throughput on the test set, images per second (median over seeds)",
    "peak_mem_mb": "peak memory during training, MB (median over seeds)",
    "wall_time_s": "wall time of the whole run (median over seeds)",
    "time_to_target_s": "wall time to the first epoch whose val_top1 reaches the target; (k/n): runs that reached it",
    "bench_ratio_train_to_fp": "training step time relative to FP in the same bench (1.00 = as fast as FP)",
    "bench_ratio_infer_to_fp": "inference time relative to FP in the same bench",
    "bench_train_step_ms_median": "median training step time in `qbench bench`",
}
_SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"


@dataclass
class SiteColumn:
    """One column of the page's table: ``key`` (the row field), its header ``title``, the header ``group``, the
    header tooltip, whether it sorts as a number, the CSV column it shows (``source``) and how a row's value becomes
    (sort value, text, tooltip)."""

    key: str
    title: str
    source: str
    render: Callable[[pd.Series], tuple[Any, str, str]]
    group: str = ""
    tooltip: str = ""
    numeric: bool = True
    frozen: bool = False
    swatch: bool = False
    ascending: bool = False  # the first click sorts ascending (lower is better: ranks, times, memory)

    def spec(self) -> dict:
        """What the page's script needs to build the column."""
        return {"key": self.key, "title": self.title, "group": self.group, "tooltip": self.tooltip,
                "numeric": self.numeric, "frozen": self.frozen, "swatch": self.swatch, "source": self.source,
                "ascending": self.ascending}


def _num(value: Any) -> float | None:
    if is_missing(value) or isinstance(value, str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text_column(key: str, title: str, **kwargs) -> SiteColumn:
    def render(row):
        value = row.get(key)
        text = "" if is_missing(value) else ("yes" if value is True else "no" if value is False else str(value))
        return text, text, ""
    return SiteColumn(key, title, key, render, numeric=False, **kwargs)


def _number_column(key: str, title: str, fmt: str, **kwargs) -> SiteColumn:
    def render(row):
        value = _num(row.get(key))
        if value is None:
            return None, "—", ""
        return value, fmt_seconds(value) if fmt == "seconds" else fmt.format(value), ""
    return SiteColumn(key, title, key, render, **kwargs)


def _generic_column(key: str, frame: pd.DataFrame) -> SiteColumn:
    numeric = pd.api.types.is_numeric_dtype(frame[key]) and not pd.api.types.is_bool_dtype(frame[key])
    if numeric:
        return _number_column(key, key.replace("_", " "), "{:.4g}", group="more", tooltip=f"CSV column {key}")
    return _text_column(key, key.replace("_", " "), group="more", tooltip=f"CSV column {key}")


def _result_columns(frame: pd.DataFrame, metric: str, decimals: int = 2) -> list[SiteColumn]:
    cols: list[SiteColumn] = []

    def mean(row):
        value = _num(row.get("mean"))
        tip = [f"mean over the n={int(row['n'])} seeds with a result"]
        if value is None:
            counts = Counter({s[2:]: int(row[s]) for s in ("n_failed", "n_diverged", "n_incomplete") if row.get(s)})
            words = status_words(counts)
            return None, " / ".join(words) if words else "missing", "no seed gave a result"
        std = _num(row.get("std"))
        text = f"{value:.{decimals}f}" + (f" ± {std:.{decimals}f}" if std is not None else "")
        low, high = _num(row.get("ci95_low")), _num(row.get("ci95_high"))
        if low is not None and high is not None:
            tip.append(f"95% CI [{low:.{decimals}f}, {high:.{decimals}f}]")
        tip.append(f"full precision: {value!r}")
        return value, text, "; ".join(tip)

    cols.append(SiteColumn("mean", metric, "mean", mean, group="result", ascending=metric.endswith("loss"),
                           tooltip=f"{metric}: mean ± std over seeds (std with ddof=1; no ± for one seed)"))

    def seeds(row):
        n = int(row["n"])
        extras = [f"{int(row[k])} {k[2:].replace('_seeds', '').replace('_', ' ')}"
                  for k in ("n_failed", "n_diverged", "n_incomplete", "n_missing_seeds", "n_repeated_seeds")
                  if k in row and not is_missing(row[k]) and int(row[k])]
        text = ", ".join([str(n), *extras])
        return n, text, f"seeds with a result: {row.get('seeds', '')}; runs: {int(row.get('n_runs', 0) or 0)}"

    cols.append(SiteColumn("n", "n", "n", seeds, group="result",
                           tooltip="seeds with a result, then the runs that failed, diverged, never finished "
                                   "(incomplete) and the seeds that are missing: counted, never averaged in"))
    if "top5_mean" in frame:
        def top5(row):
            value, std = _num(row.get("top5_mean")), _num(row.get("top5_std"))
            if value is None:
                return None, "—", ""
            return value, f"{value:.{decimals}f}" + (f" ± {std:.{decimals}f}" if std is not None else ""), ""
        cols.append(SiteColumn("top5_mean", "top-5", "top5_mean", top5, group="result", tooltip="top-5 accuracy"))
    if "gap_to_fp" in frame and frame.loc[frame["bits"] != FP_BITS, "gap_to_fp"].notna().any():
        def gap(row):
            value = _num(row.get("gap_to_fp"))
            if value is None or row.get("bits") == FP_BITS:
                return None, "—", ""
            return value, f"{value:+.{decimals}f}", f"FP baseline mean {float(row['fp_mean']):.{decimals}f}"
        cols.append(SiteColumn("gap_to_fp", "Δ FP", "gap_to_fp", gap, group="result",
                               tooltip=f"cell mean minus the FP baseline ({FP_BITS}) of the same dataset and arch"))
    if "rank" in frame and (frame["bits"] != FP_BITS).any():  # "no test" is an answer too: shown
        def rank(row):
            value = _num(row.get("rank"))
            if value is None and row.get("bits") == FP_BITS:
                return None, "—", ""
            if value is None:
                return None, "no test", f"fewer than {MIN_SEEDS} seeds paired with another method of this setting"
            diff, p_value = _num(row.get("vs_best_diff")), _num(row.get("vs_best_p"))
            tip = ("top group: not significantly worse than the best" if row.get("top_group") else
                   "significantly worse than the best")
            if diff is not None and p_value is not None:
                tip += f" (paired Δ to the best {diff:+.{decimals}f} over n={int(row['vs_best_n'])} seeds, " \
                       f"Holm-adjusted p = {p_value:.3g})"
            return value, f"{int(value)}", tip
        cols.append(SiteColumn("rank", "rank", "rank", rank, group="result", ascending=True,
                               tooltip=f"1 + the number of methods of the same setting significantly better "
                                       f"({TEST_NAME}, α = {ALPHA:g}); methods the test cannot tell apart share a "
                                       f"rank; bold = the top group"))
    if "mean_rank" in frame and frame["mean_rank"].notna().any():
        cols.append(_number_column("mean_rank", "mean rank", "{:.2f}", group="result", ascending=True,
                                   tooltip="mean rank over the quantized settings; a setting where the method ran "
                                           "but has no result counts as last"))
    return cols


def _paper_column() -> SiteColumn:
    def paper(row):
        value = _num(row.get("paper_value"))
        if value is None:
            return None, "", ""
        return value, f"{value:.2f}", f"{row.get('paper_source', '')}; {row.get('paper_setting', '')}"
    return SiteColumn("paper_value", "paper", "paper_value", paper, group="published",
                      tooltip="the published number for this setting (source and setting in the cell's tooltip); "
                              "quoted where dataset, arch, bits and method match, not re-run here, not ranked")


def _cost_columns(frame: pd.DataFrame) -> tuple[list[SiteColumn], list[tuple[str, str]]]:
    """The bracketed cost columns, grouped by their device or bench setting, and the footnotes naming them."""
    settings: dict[str, list[str]] = {}
    for column in frame.columns:
        match = re.fullmatch(r"(\w+) \[(.+)\]", column)
        if match and frame[column].notna().any() and not match.group(1).startswith(("target_reached", "target_runs")):
            settings.setdefault(match.group(2), []).append(column)
    cols, notes = [], []
    for index, (setting, names) in enumerate(settings.items()):
        mark = _SUPERSCRIPTS[index] if index < len(_SUPERSCRIPTS) else f"[{index + 1}]"
        bench = all(n.startswith("bench_") for n in names)
        group = f"{'bench' if bench else 'training cost'} {mark}"
        notes.append((mark, ("measured by `qbench bench` on " if bench else "measured while training on ") + setting))
        order = list(_COST_NAMES)
        for name in sorted(names, key=lambda n: (order.index(n.split(" [")[0]) if n.split(" [")[0] in order else 99,
                                                 n)):
            key = name.split(" [")[0]
            title, fmt = _COST_NAMES.get(key, (key.replace("_", " "), "{:.4g}"))
            tip = f"{_COST_TIPS.get(key, key.replace('_', ' '))} [{setting}]"
            column = _number_column(name, title, fmt, group=group, tooltip=tip, ascending=not key.endswith("img_s"))
            if key == "time_to_target_s":
                column = _time_to_target(name, setting, column)
            cols.append(column)
    return cols, notes


def _time_to_target(name: str, setting: str, column: SiteColumn) -> SiteColumn:
    reached, runs = f"target_reached [{setting}]", f"target_runs [{setting}]"

    def render(row):
        value = _num(row.get(name))
        k, n = _num(row.get(reached)), _num(row.get(runs))
        counts = f" ({int(k)}/{int(n)})" if k is not None and n is not None else ""
        target = _num(row.get("target_val_top1"))
        tip = f"target val_top1 {target:.2f}" if target is not None else ""
        if value is None:
            return None, f"not reached{counts}" if n else "—", tip
        return value, fmt_seconds(value) + counts, tip
    column.render = render
    return column


def _other_columns(frame: pd.DataFrame) -> list[SiteColumn]:
    cols = []
    if "model_size_bits" in frame and frame["model_size_bits"].notna().any():
        def size(row):
            value = _num(row.get("model_size_bits"))
            return (None, "—", "") if value is None else (value, fmt_size(value), f"{value:,.0f} bits")
        cols.append(SiteColumn("model_size_bits", "model size", "model_size_bits", size, group="model", ascending=True,
                               tooltip="size of the weights at their bit-widths (median over seeds)"))
    if "tune_trials" in frame and frame["tune_trials"].notna().any():
        def trials(row):
            value, epochs = _num(row.get("tune_trials")), _num(row.get("tune_epochs_per_trial"))
            if value is None:
                return None, "—", ""
            return value, f"{value:.0f}" + (f" × {epochs:.0f} ep" if epochs is not None else ""), ""
        cols.append(SiteColumn("tune_trials", "trials", "tune_trials", trials, group="tuning",
                               tooltip="finished tuning trials × epochs per trial (qbench tune)"))
        cols.append(_number_column("tune_cpu_hours", "CPU-h", "{:.3f}", group="tuning", tooltip="tuning CPU hours"))
        if frame.get("tune_gpu_hours", pd.Series(dtype=float)).fillna(0).any():
            cols.append(_number_column("tune_gpu_hours", "GPU-h", "{:.3f}", group="tuning",
                                       tooltip="tuning GPU hours"))
    return cols


def _identity_columns(frame: pd.DataFrame) -> list[SiteColumn]:
    def method(row):
        name = str(row.get("method_name", row["method"]))
        try:
            paper = get_method_class(name).paper
        except Exception:  # noqa: BLE001 - an unregistered method: no paper to cite
            paper = ""
        return str(row["method"]), str(row["method"]), f"{name} ({method_family(name)})" + (f": {paper}" if paper else "")

    cols = [SiteColumn("method", "method", "method", method, numeric=False, frozen=True, swatch=True,
                       tooltip="the leaderboard row: method, (tuned) for tuned runs, [hyperparameters] of a variant"),
            SiteColumn("family", "family", "method_name", lambda r: (method_family(str(r["method_name"])),) * 2 + ("",),
                       numeric=False, group="setting", tooltip="what the method changes: the weight quantizer, the "
                       "activation estimator, the update rule, or nothing (the FP baseline)")]
    for key in ("tuned", "dataset", "arch", "bits", "policy"):
        values = set(frame[key].map(str)) if key in frame else set()
        if key in frame and not (key == "policy" and values <= {"", "nan"}):
            cols.append(_text_column(key, "first/last" if key == "policy" else key, group="setting",
                                     tooltip={"tuned": "trained with the parameters found by qbench tune",
                                              "policy": "precision of the first and last layers"}.get(key, "")))
    return cols


def site_columns(board) -> tuple[list[SiteColumn], list[tuple[str, str]]]:
    """The page's columns for ``board`` and the footnotes (mark, text) of its device groups."""
    frame = board.cells
    if not isinstance(board, Leaderboard):  # a theory board: every column as it is
        return [_text_column(k, k, group="") if not pd.api.types.is_numeric_dtype(frame[k])
                else _number_column(k, k, "{:.4g}") for k in frame.columns], []
    cols = _identity_columns(frame) + _result_columns(frame, board.metric)
    if "paper_value" in frame and frame["paper_value"].notna().any():
        cols.append(_paper_column())
    costs, notes = _cost_columns(frame)
    cols += costs + _other_columns(frame)
    shown = {c.source for c in cols} | _FOLDED | {c for c in frame.columns if re.fullmatch(r"\w+ \[.+\]", c)}
    shown |= {"tune_cpu_hours", "tune_gpu_hours", "model_size_bits", "paper_value"}
    generic = [_generic_column(c, frame) for c in frame.columns if c not in shown and frame[c].notna().any()
               and not (frame[c].map(str) == "").all()]
    result_end = max(i for i, c in enumerate(cols) if c.group == "result") + 1
    return cols[:result_end] + generic + cols[result_end:], notes


def cell_key(parts: Any) -> str:
    """The key that joins a table row and its runs: the row label and its setting."""
    return " | ".join("" if is_missing(p) else str(p) for p in parts)


def _row_key(board, row: pd.Series) -> str:
    if isinstance(board, Leaderboard):
        return cell_key((row["method"], row["dataset"], row["arch"], row["bits"], row["policy"]))
    return cell_key((row.get("part"), row.get("name")))


def site_rows(board, columns: list[SiteColumn]) -> list[dict]:
    """One dict per cell: ``key``, per column its sort value (``<key>``), text (``<key>__text``) and tooltip
    (``<key>__tip``), the method's colour (``_color``) and the fields the filters use."""
    rows = []
    for _, row in board.cells.iterrows():
        record: dict[str, Any] = {"_key": _row_key(board, row)}
        for column in columns:
            value, text, tip = column.render(row)
            record[column.key], record[f"{column.key}__text"] = value, text
            if tip:
                record[f"{column.key}__tip"] = tip
        if "method_name" in row:
            record["_method"] = str(row["method_name"])
            record["_color"] = method_style(str(row["method"]), str(row["method_name"])).color
            record["_runs"] = int(row.get("n_runs", 0) or 0)
        if bool(row.get("top_group", False)):  # the statistically tied top group of its column: bold, as in the tables
            record["_top"] = True
        rows.append(record)
    return rows


def site_filters(board, rows: list[dict]) -> list[dict]:
    """The filters of the page: [{field, label, values}] for :data:`FILTER_FIELDS` with two or more values (the
    method filter picks the base method, so it keeps the tuned rows and variants)."""
    filters = []
    for name in FILTER_FIELDS:
        field_name = "_method" if name == "method" and rows and "_method" in rows[0] else name
        values = sorted({str(r.get(f"{field_name}__text", r.get(field_name, ""))) for r in rows if field_name in r}
                        - {"", "—"})
        if len(values) > 1:
            filters.append({"field": field_name, "label": name, "values": values})
    return filters


def _git(value: Any) -> str:
    return "" if is_missing(value) else str(value)[:12]


def runs_table(board, runs: pd.DataFrame) -> list[dict]:
    """The runs of the page: one dict per run with its cell key, seed, status, the board's metric, epochs, wall
    time, the commit and versions of its ``env.json``, and the command that reproduces it."""
    if runs.empty:
        return []
    runs = runs.sort_values("run_id", kind="stable")
    train = isinstance(board, Leaderboard)
    metric = getattr(board, "metric", "")
    labels = label_runs(runs) if train else None
    out = []
    for index, (_, run) in enumerate(runs.iterrows()):
        if train:
            column = column_of(run)
            key = cell_key((labels.iloc[index], column.dataset, column.arch, column.bits, column.policy))
        else:
            part = run.get("theory_part", "estimator")
            key = cell_key((part, run.get("estimator") if part == "estimator" else run.get("quantizer")))
        error = "" if is_missing(run.get("error")) else str(run["error"]).strip().splitlines()[0][:200]
        seed = _num(run.get("seed"))
        out.append({
            "cell": key, "run_id": str(run["run_id"]), "seed": None if seed is None else int(seed),
            "status": str(run["status"]), "value": _num(run.get(metric)) if metric else None,
            "epochs": _epochs(run), "wall_time": "" if _num(run.get("wall_time_s")) is None
            else fmt_seconds(float(run["wall_time_s"])),
            "commit": _git(run.get(f"{ENV_PREFIX}git_sha")),
            "versions": ", ".join(f"{k} {run[ENV_PREFIX + k]}" for k in ("qbench", "torch")
                                  if not is_missing(run.get(ENV_PREFIX + k))),
            "device": " ".join(str(run[k]) for k in ("device", "device_name") if not is_missing(run.get(k))),
            "command": f"qbench run --from results/{run['suite']}/{run['run_id']}/config.yaml",
            "error": error,
        })
    return out


def _epochs(run: pd.Series) -> str:
    done, planned = _num(run.get("epochs_completed")), _num(run.get("epochs"))
    if done is None:
        return ""
    return f"{int(done)}/{int(planned)}" if planned is not None else f"{int(done)}"


def description(runs: pd.DataFrame) -> str:
    """The suite's one-line description (its config's ``description``), when its runs agree on one."""
    if "cfg.description" not in runs.columns:
        return ""
    texts = {" ".join(str(v).split()) for v in runs["cfg.description"] if not is_missing(v) and str(v).strip()}
    return texts.pop() if len(texts) == 1 else ""


def summary(board, runs: pd.DataFrame) -> dict:
    """What the index shows of a suite: title, description, counts, settings, and the best row of each quantized
    setting (a training suite)."""
    status = Counter(runs["status"]) if "status" in runs else Counter()
    out: dict[str, Any] = {
        "suite": board.suite, "title": board.title, "kind": board.kind, "description": description(runs),
        "runs": int(len(runs)), "status": {s: int(status[s]) for s in status_words(status)}, "best": [],
        "settings": [],
        "methods": int(runs["method"].nunique()) if "method" in runs else 0,
    }
    if isinstance(board, Leaderboard):
        cells = board.cells
        settings = cells[["dataset", "arch", "bits", "policy"]].drop_duplicates()
        out["settings"] = [" ".join(p for p in s if p) for s in settings.itertuples(index=False)]
        for setting in settings.itertuples(index=False):
            mask = np.ones(len(cells), dtype=bool)
            for key, value in zip(("dataset", "arch", "bits", "policy"), setting):
                mask &= (cells[key] == value).to_numpy()
            group = cells[mask & cells["mean"].notna().to_numpy()]
            if group.empty or setting.bits == FP_BITS:
                continue
            best = group.sort_values(["mean", "method"], ascending=[board.metric.endswith("loss"), True]).iloc[0]
            out["best"].append({"setting": " ".join(p for p in setting if p), "method": str(best["method"]),
                                "value": round(float(best["mean"]), 2), "metric": board.metric})
    return json.loads(json.dumps(out, default=str))

