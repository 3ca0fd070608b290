"""The cost side of a leaderboard: throughput, memory, wall time and time to target per device, ``qbench bench``
rows and ``qbench tune`` budgets merged into the cells, and the cost table.

Every cost figure carries its device (and, for bench rows, the measurement settings) in its column name, so CPU and GPU
numbers never share a column, a bold "best" or a ranking.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .display import fmt_seconds, fmt_size
from .load import as_bool, is_missing
from .stats import finite_median

__all__ = ["device_label", "run_costs", "merge_bench", "merge_tuning", "cost_table", "has_costs"]


def device_label(device: Any, name: Any) -> str:
    """``cpu: <CPU name>`` / ``cuda: <GPU name>``: the device a figure was measured on."""
    device = "unknown device" if is_missing(device) else str(device)
    return device if is_missing(name) or not str(name).strip() else f"{device}: {str(name).strip()}"


def _bench_label(row: Mapping) -> str:
    """Device plus the measurement settings, so benchmark figures from different settings never share a column."""
    parts = [device_label(row.get("device"), row.get("device_name"))]
    if str(row.get("device")) == "cpu" and not is_missing(row.get("threads")):
        parts.append(f"{int(row['threads'])} threads")
    if not is_missing(row.get("batch_size")):
        parts.append(f"bs {int(row['batch_size'])}")
    amp = row.get("amp_dtype")
    parts.append("fp32" if is_missing(amp) or str(amp).lower() in ("", "none", "false") else str(amp))
    if as_bool(row.get("channels_last")):
        parts.append("channels_last")
    if as_bool(row.get("compile")):
        parts.append("compiled")
    return ", ".join(parts)


def _time_to_target(metrics: Any, target: float) -> float:
    """Wall time at the first epoch whose val_top1 reaches ``target`` (NaN when never reached or not logged).

    ``wall_time_s`` in metrics.jsonl is the elapsed time since the run started; rows without it fall back to the sum
    of ``epoch_time_s`` so far.
    """
    if not isinstance(metrics, list) or math.isnan(target):
        return np.nan
    elapsed = 0.0
    for row in metrics:
        elapsed += float(row.get("epoch_time_s") or 0.0)
        value = row.get("val_top1")
        if value is not None and float(value) >= target:
            wall = row.get("wall_time_s")
            return float(wall) if wall is not None else elapsed
    return np.nan


def run_costs(complete: pd.DataFrame, target_value: float) -> dict[str, Any]:
    """A cell's cost columns from its completed runs (with a ``_device`` column of :func:`device_label`s), one set per
    device: median train/infer img/s, peak memory and wall time, and time to ``target_value`` with how many runs
    reached it; plus the median model size."""
    costs: dict[str, Any] = {}
    for device, dev_group in complete.groupby("_device", sort=True):
        for key in ("train_img_s", "infer_img_s", "peak_mem_mb", "wall_time_s"):
            costs[f"{key} [{device}]"] = finite_median(dev_group[key])
        if not math.isnan(target_value):
            times = [_time_to_target(m, target_value) for m in dev_group["metrics"]]
            costs[f"time_to_target_s [{device}]"] = finite_median(times)
            costs[f"target_reached [{device}]"] = sum(not math.isnan(t) for t in times)
            costs[f"target_runs [{device}]"] = len(times)
    costs["model_size_bits"] = finite_median(complete["model_size_bits"])
    costs["model_size_mb"] = costs["model_size_bits"] / 8e6
    return costs


_BENCH_FIELDS = ("train_img_s", "infer_img_s", "train_step_ms_median", "train_step_ms_iqr", "ratio_train_to_fp",
                 "ratio_infer_to_fp", "peak_mem_mb")


def merge_bench(cell_rows: list[dict], bench: pd.DataFrame | None) -> list[str]:
    """Add ``bench_<field> [<device + settings>]`` to the cells of the same (method, arch, bits); return the labels.

    Throughput does not depend on tuned hyperparameters, so a bench row serves every row label of its method.
    """
    if bench is None or bench.empty:
        return []
    labels: set[str] = set()
    for _, brow in bench.iterrows():
        blabel = _bench_label(brow)
        labels.add(blabel)
        key = (str(brow["method"]).lower(), str(brow.get("arch")), str(brow.get("bits")))
        for row in cell_rows:
            if (row["method_name"], row["arch"], row["bits"]) == key:
                for name in _BENCH_FIELDS:
                    if name in brow and not is_missing(brow[name]):
                        row[f"bench_{name} [{blabel}]"] = float(brow[name])
    return sorted(labels)


def merge_tuning(cell_rows: list[dict], tuning: pd.DataFrame | None) -> None:
    """Give each tuned row the cost of the study that tuned it: ``tune_trials`` (finished: complete + pruned),
    ``tune_epochs_per_trial``, ``tune_cpu_hours``, ``tune_gpu_hours``. The budget is part of the result (issue: equal
    budgets made visible), so a tuned row without its study summary shows "—" rather than a guess."""
    if tuning is None or tuning.empty:
        return
    studies = {}
    for _, study in tuning.iterrows():
        base = str(study["method"]).partition(":")[0].lower()
        key = (base, str(study.get("arch")), str(study.get("bits")), str(study.get("policy")))
        studies.setdefault(key, []).append(study)
    for row in cell_rows:
        if not row["tuned"]:
            continue
        if row["policy"]:
            matches = studies.get((row["method_name"], row["arch"], row["bits"], str(row["policy"])), [])
        else:  # full-precision columns carry no policy (it is moot for a float model): any study of that column
            matches = [m for key, found in studies.items() if key[:3] == (row["method_name"], row["arch"], row["bits"])
                       for m in found]
        if not matches:
            continue
        # Several variants of one method (ste:estimator=identity, …=relu) tuned in one column: their costs add.
        row["tune_trials"] = sum(int(m.get("trials_finished") or 0) for m in matches)
        row["tune_epochs_per_trial"] = int(matches[0].get("epochs_per_trial") or 0)
        row["tune_cpu_hours"] = sum(float(m.get("cpu_hours") or 0.0) for m in matches)
        row["tune_gpu_hours"] = sum(float(m.get("gpu_hours") or 0.0) for m in matches)


# (numeric column prefix, display name, formatter, "max" | "min" | None for which value is best)
_COST_SPECS = (
    ("train_img_s", "train img/s", lambda v: f"{v:,.0f}", "max"),
    ("infer_img_s", "infer img/s", lambda v: f"{v:,.0f}", "max"),
    ("peak_mem_mb", "peak mem MB", lambda v: f"{v:,.0f}", "min"),
    ("wall_time_s", "wall time", fmt_seconds, "min"),
    ("time_to_target_s", "time to target", fmt_seconds, "min"),
    ("bench_train_img_s", "bench train img/s", lambda v: f"{v:,.0f}", "max"),
    ("bench_infer_img_s", "bench infer img/s", lambda v: f"{v:,.0f}", "max"),
    ("bench_train_step_ms_median", "bench train ms/step", lambda v: f"{v:.2f}", "min"),
    ("bench_ratio_train_to_fp", "bench train ratio to FP", lambda v: f"{v:.2f}", None),
    ("bench_ratio_infer_to_fp", "bench infer ratio to FP", lambda v: f"{v:.2f}", None),
    ("bench_peak_mem_mb", "bench peak mem MB", lambda v: f"{v:,.0f}", "min"),
)


def _time_to_target_texts(rows: Sequence[dict], values: Sequence[float], device: str) -> list[str]:
    """``20.0 s (1/2)``: the median time and how many runs reached the target; "not reached (0/2)" is a result too."""
    texts = []
    for row, value in zip(rows, values):
        runs_n = row.get(f"target_runs [{device}]", 0)
        reached = row.get(f"target_reached [{device}]", 0)
        if not runs_n:
            texts.append("—")
        else:
            texts.append(f"{'not reached' if is_missing(value) else fmt_seconds(value)} ({reached}/{runs_n})")
    return texts


def cost_table(rows: list[dict], vary_dataset: bool, vary_policy: bool,
               bench_labels: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cost table (one line per cell record of ``rows``, in that order) and its "best value" marks."""
    devices = sorted({key.split(" [", 1)[1][:-1] for r in rows for key in r if key.startswith("train_img_s [")})
    data: dict[str, list] = {"method": [r["method"] for r in rows]}
    if vary_dataset:
        data["dataset"] = [r["dataset"] for r in rows]
    data["arch"] = [r["arch"] for r in rows]
    data["bits"] = [r["bits"] for r in rows]
    if vary_policy:
        data["policy"] = [r["policy"] or "—" for r in rows]
    best: dict[str, list[bool]] = {name: [False] * len(rows) for name in data}
    for prefix, display, formatter, direction in _COST_SPECS:
        for device in bench_labels if prefix.startswith("bench_") else devices:
            key = f"{prefix} [{device}]"
            values = [r.get(key, np.nan) for r in rows]
            attempted = any(r.get(f"target_runs [{device}]") for r in rows)  # "not reached" is a result too
            if all(is_missing(v) for v in values) and not (prefix == "time_to_target_s" and attempted):
                continue  # a figure nobody measured is noise in the table
            name = f"{display} [{device}]"
            if prefix == "time_to_target_s":
                data[name] = _time_to_target_texts(rows, values, device)
            else:
                data[name] = ["—" if is_missing(v) else formatter(v) for v in values]
            finite = [v for v in values if not is_missing(v)]
            # all-equal figures have no "best"; bolding every cell would only add noise
            winner = None
            if direction and len(set(finite)) > 1:
                winner = max(finite) if direction == "max" else min(finite)
            best[name] = [winner is not None and v == winner for v in values]
    sizes = [r["model_size_bits"] for r in rows]
    if any(not is_missing(v) for v in sizes):
        data["model size"] = ["—" if is_missing(v) else fmt_size(v) for v in sizes]
        best["model size"] = [False] * len(rows)  # FP is biggest by construction; "smallest" says nothing
    if any("tune_trials" in r for r in rows):
        # What tuning cost, next to what it bought; CPU and GPU hours never share a column.
        data["tuning trials"] = [f"{r['tune_trials']} × {r['tune_epochs_per_trial']} ep" if "tune_trials" in r
                                 else "—" for r in rows]
        best["tuning trials"] = [False] * len(rows)
        for kind, label in (("cpu", "tuning CPU-h"), ("gpu", "tuning GPU-h")):
            if any(r.get(f"tune_{kind}_hours") for r in rows):
                data[label] = [f"{r[f'tune_{kind}_hours']:.3f}" if "tune_trials" in r else "—" for r in rows]
                best[label] = [False] * len(rows)
    return pd.DataFrame(data), pd.DataFrame(best)


def has_costs(costs: pd.DataFrame) -> bool:
    """Whether the cost table has any figure beyond its key columns (method, arch, bits, ...)."""
    return any(c.endswith("]") or c == "model size" for c in costs.columns)
