"""Leaderboard figures: accuracy vs bits, training curves, accuracy vs cost (Pareto), recurrence diagnostics, and the
theory suite's figures (coarse gradient descent, the recurrence toy), all drawn from run records.

Every figure follows :mod:`qbench.report.figure`: one colour and marker per method across every figure of every suite,
paper sizes (one column, 3.4 in, or the text width, 7 in), the legend outside the axes, one panel per method family
when a figure has more than :data:`~qbench.report.figure.MAX_METHODS_PER_PANEL` rows, point labels only where they
collide with nothing, and each file written as PNG with SVG and PDF beside it (byte-stable). Each ``*_figure`` function
returns the matplotlib figure (for tests and notebooks); each ``plot_*`` function draws and writes it and returns the
PNG path. matplotlib is imported lazily, so ``import qbench.report`` never pays for it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..bits import FP_BITS
from ..errors import QbenchError
from ..results import read_jsonl
from .board import DEFAULT_METRIC, build_leaderboard, column_of, label_runs
from .figure import (COLUMN_WIDTH, TEXT_WIDTH, family_groups, figure_style, legend_columns, legend_height,
                     legend_outside, method_style, new_figure, panel_grid, panel_legend, place_labels, save_figure,
                     unique_handles)
from .load import is_theory

__all__ = ["accuracy_vs_bits_figure", "curves_figure", "pareto_figure", "recurrence_figure", "theory_training_figure",
           "recurrence_toy_figure", "plot_accuracy_vs_bits", "plot_curves", "plot_pareto", "plot_recurrence",
           "write_plots", "plot_theory_training", "plot_recurrence_toy", "write_theory_plots"]

RECURRENCE_KEYS = ("loss_q", "hamming_to_best", "flip_rate")
_FP_STYLE = dict(color="black", linestyle="--", linewidth=1.0)


def _integer_epochs(ax) -> None:
    """Whole epochs on the x axis (a single epoch gets one tick, not a crowd of fractions around it)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [float(x) for line in ax.get_lines() for x in line.get_xdata()]
    if epochs and min(epochs) == max(epochs):
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _cells(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    # The leaderboard's own aggregation, so plots and tables always agree on labels, columns and statistics.
    return build_leaderboard(df, metric=metric).cells


def _metric_label(metric: str) -> str:
    return f"{metric} (%)" if "top" in metric else metric


def _panel_title(ax, parts: Sequence[str | None]) -> None:
    text = " · ".join(p for p in parts if p)
    if text:
        ax.set_title(text)


def _below_legends(groups: list, extras: Sequence[str], width: float) -> tuple[list[int], float]:
    """Legend columns for each panel column of ``groups`` (its labels plus ``extras``, e.g. the FP line) and the
    height their legends need under the panels."""
    col_width = width / len(groups)
    ncols = [legend_columns([*members, *extras], col_width) for _, members in groups]
    size = max(legend_height(len(members) + len(extras), n) for (_, members), n in zip(groups, ncols))
    return ncols, size


def _fill_legends(axes, holders, ncols: Sequence[int]) -> None:
    """Each legend holder under a column gets the entries of that column's panels."""
    for c, (holder, ncol) in enumerate(zip(holders, ncols)):
        panel_legend(holder, *unique_handles(row[c] for row in axes), ncol=ncol)


def _figure_width(groups: list) -> float:
    return COLUMN_WIDTH if groups[0][0] is None else TEXT_WIDTH


# --------------------------------------------------------------------------------------------------- accuracy vs bits
def accuracy_vs_bits_figure(cells: pd.DataFrame, *, metric: str = DEFAULT_METRIC):
    """One row of panels per (dataset, arch), one panel per method family when there are many rows: the metric per
    bit-width (mean ± std over seeds), the FP baseline as a dashed line in every panel; legends under the panels."""
    panels = list(dict.fromkeys(zip(cells["dataset"], cells["arch"])))
    quantized_all = cells[cells["bits"] != FP_BITS]
    labels = list(dict.fromkeys(quantized_all["method"]))
    methods = dict(zip(quantized_all["method"], quantized_all["method_name"]))
    groups = family_groups(labels, [methods[label] for label in labels]) if labels else [(None, [])]
    fp_cells = cells[(cells["bits"] == FP_BITS) & cells["mean"].notna()]
    fp_names = list(dict.fromkeys(f"{label} ({FP_BITS})" for label in fp_cells["method"]))
    width = _figure_width(groups)
    legend_ncols, legend_size = _below_legends(groups, fp_names, width)
    fig, axes, holders = panel_grid(len(panels), len(groups), width=width, panel_height=2.0, legend_size=legend_size)
    for row, (dataset, arch) in enumerate(panels):
        panel = cells[(cells["dataset"] == dataset) & (cells["arch"] == arch)]
        quantized = panel[panel["bits"] != FP_BITS]
        show_policy = quantized["policy"].nunique() > 1  # the policy joins the tick only when the panel mixes them
        ticks_of = [b + (f" [{p}]" if show_policy and p else "") for b, p in zip(quantized["bits"], quantized["policy"])]
        quantized = quantized.assign(_tick=ticks_of)
        ticks = list(dict.fromkeys(ticks_of))  # cells come ordered from high to low precision; keep that order
        for col, (family, members) in enumerate(groups):
            ax = axes[row][col]
            for label, rows in quantized[quantized["method"].isin(members)].groupby("method", sort=False):
                style = method_style(label, rows["method_name"].iloc[0])
                x = [ticks.index(t) for t in rows["_tick"]]
                ax.errorbar(x, rows["mean"], yerr=rows["std"].fillna(0.0), capsize=2, label=label,
                            **style.line_kwargs())
            for _, fp in panel[(panel["bits"] == FP_BITS) & panel["mean"].notna()].iterrows():
                ax.axhline(fp["mean"], label=f"{fp['method']} ({FP_BITS})", **_FP_STYLE)
            ax.set_xticks(range(len(ticks)), ticks, rotation=30 if len(ticks) > 3 else 0)
            _panel_title(ax, [f"{dataset} {arch}" if len(panels) > 1 or family is None else None, family])
            ax.set_xlabel("bits")
            if col == 0:
                ax.set_ylabel(_metric_label(metric))
    _fill_legends(axes, holders, legend_ncols)
    return fig


def plot_accuracy_vs_bits(df: pd.DataFrame, path: str | Path, *, metric: str = DEFAULT_METRIC) -> Path:
    """:func:`accuracy_vs_bits_figure` of the runs ``df``, written to ``path`` (PNG; SVG and PDF beside it)."""
    with figure_style():
        return save_figure(accuracy_vs_bits_figure(_cells(df, metric), metric=metric), path)[0]


# -------------------------------------------------------------------------------------------------- training curves
def _runs_from(source: Any) -> dict[str, list[list[dict]]]:
    """Normalise the accepted inputs to {label: [rows of one run, ...]}."""
    if isinstance(source, (str, Path)):
        run_dir = Path(source)
        rows = read_jsonl(run_dir / "metrics.jsonl")
        if not rows:
            raise QbenchError(f"no metrics in {run_dir / 'metrics.jsonl'}; pass a run directory that trained an epoch")
        return {run_dir.name: [rows]}
    if isinstance(source, Mapping):
        out = {}
        for label, value in source.items():
            value = list(value)
            out[str(label)] = value if value and isinstance(value[0], list) else [value]
        return out
    rows = list(source)
    return {"run": [rows]}


def _series(runs: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds of ``key`` per epoch (epochs a seed did not log are skipped for that seed)."""
    by_epoch: dict[float, list[float]] = {}
    for rows in runs:
        for i, row in enumerate(rows):
            value = row.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            by_epoch.setdefault(float(row.get("epoch", i)), []).append(float(value))
    epochs = np.array(sorted(by_epoch))
    return epochs, np.array([np.mean(by_epoch[e]) for e in epochs])


def _epoch_grid(runs: dict[str, list[list[dict]]], panels: Sequence[tuple[str, Sequence[tuple[str, bool]]]],
                title: str | None, methods: Mapping[str, str] | None):
    """Rows of per-epoch panels (one row, or one per method family when there are many labels), each with its
    legend at its right; ``panels`` is ``[(y label, [(metrics key, is the main line), ...])]``: the main line in the
    row's style, the others thin and dotted in the same colour. The FP baseline's lines are in every row."""
    from matplotlib.lines import Line2D

    methods = dict(methods or {})
    labels = list(runs)
    groups = family_groups(labels, [methods.get(label) or label for label in labels]) if labels else [(None, [])]
    grouped = {label for _, members in groups for label in members}
    baseline = [label for label in labels if label not in grouped]
    secondary = any(not main for _, keys in panels for _, main in keys)
    keys_legend = ([Line2D([], [], color="grey", marker="o", markersize=3), Line2D([], [], color="grey", ls=":")],
                   ["validation", "training"]) if secondary else ([], [])
    longest = max((len(label) for label in labels), default=10)
    legend_width = min(2.0, 0.45 + 0.055 * longest)
    rows_needed = max(len(members) + len(baseline) + len(keys_legend[1]) for _, members in groups)
    fig, axes, holders = panel_grid(len(groups), len(panels), width=TEXT_WIDTH,
                                    panel_height=max(1.7, legend_height(rows_needed, 1)), legend="right",
                                    legend_size=legend_width, sharey=False)
    for row, (family, members) in enumerate(groups):
        for col, (ylabel, keys) in enumerate(panels):
            ax = axes[row][col]
            for label in [*baseline, *members]:
                style = method_style(label, methods.get(label))
                for key, main in keys:
                    epochs, values = _series(runs[label], key)
                    if not len(epochs):
                        continue
                    if main:
                        ax.plot(epochs, values, label=label, markersize=3, **style.line_kwargs())
                    else:
                        ax.plot(epochs, values, color=style.color, linestyle=":", linewidth=0.8, alpha=0.8)
            _integer_epochs(ax)
            ax.set_ylabel(ylabel)
            if row == len(groups) - 1:
                ax.set_xlabel("epoch")
            if family is not None and col == 0:
                ax.set_title(family, loc="left")
        handles, names = unique_handles(axes[row])
        panel_legend(holders[row], handles + keys_legend[0], names + keys_legend[1])
    if title:
        fig.suptitle(title)
    return fig


def curves_figure(source: Any, *, title: str | None = None, methods: Mapping[str, str] | None = None):
    """Training and validation curves per epoch: loss and accuracy. ``source``: a run directory, one run's metrics
    rows, or ``{label: rows | [rows of each seed]}`` (seed mean); ``methods``: {label: method name} for the styles.
    Validation solid with markers, training dotted in the same colour."""
    return _epoch_grid(_runs_from(source), [("loss", [("val_loss", True), ("train_loss", False)]),
                                            ("accuracy (%)", [("val_top1", True), ("train_acc", False)])],
                       title, methods)


def plot_curves(source: Any, path: str | Path, *, title: str | None = None,
                methods: Mapping[str, str] | None = None) -> Path:
    """:func:`curves_figure`, written to ``path`` (PNG; SVG and PDF beside it)."""
    with figure_style():
        return save_figure(curves_figure(source, title=title, methods=methods), path)[0]


def _has_diagnostics(seeds: list[list[dict]]) -> bool:
    return any(row.get(key) is not None for rows in seeds for row in rows for key in RECURRENCE_KEYS)


def recurrence_figure(source: Any, *, title: str | None = None, methods: Mapping[str, str] | None = None):
    """Recurrence diagnostics per epoch (spec §6): loss at Q(w), Hamming distance of Q(w) to the best, flip rate.
    ``source`` as in :func:`curves_figure`."""
    runs = _runs_from(source)
    if not any(_has_diagnostics(seeds) for seeds in runs.values()):
        raise QbenchError("no recurrence diagnostics (loss_q, hamming_to_best, flip_rate) in these metrics; "
                          "train with the diagnostics enabled")
    runs = {label: seeds for label, seeds in runs.items() if _has_diagnostics(seeds)}
    return _epoch_grid(runs, [("loss at Q(w)", [("loss_q", True)]), ("Hamming to best Q", [("hamming_to_best", True)]),
                              ("flip rate", [("flip_rate", True)])], title, methods)


def plot_recurrence(source: Any, path: str | Path, *, title: str | None = None,
                    methods: Mapping[str, str] | None = None) -> Path:
    """:func:`recurrence_figure`, written to ``path`` (PNG; SVG and PDF beside it)."""
    with figure_style():
        return save_figure(recurrence_figure(source, title=title, methods=methods), path)[0]


# ------------------------------------------------------------------------------------------------------ Pareto front
_COST_LABELS = {"train_img_s": "train img/s", "infer_img_s": "inference img/s", "wall_time_s": "wall time (s)"}


def _pareto_front(cost: np.ndarray, accuracy: np.ndarray, higher_is_cheaper: bool) -> list[int]:
    """Indices of the points no other point beats on both axes, by cost."""
    cheapness = cost if higher_is_cheaper else -cost
    front = [i for i in range(len(cost))
             if not any(cheapness[j] >= cheapness[i] and accuracy[j] >= accuracy[i]
                        and (cheapness[j] > cheapness[i] or accuracy[j] > accuracy[i]) for j in range(len(cost)))]
    return sorted(front, key=lambda i: cost[i])


def pareto_figure(cells: pd.DataFrame, *, metric: str = DEFAULT_METRIC, cost: str = "train_img_s"):
    """Accuracy vs training cost, one row of panels per device (CPU and GPU figures never share an axis), one panel
    per method family when there are many rows (every other cell in grey behind them). The Pareto front of the
    device's cells is the dashed line; each point is labelled with its bits where the label collides with nothing."""
    if cost not in _COST_LABELS:
        raise QbenchError(f"unknown cost {cost!r}; choose train_img_s, infer_img_s or wall_time_s")
    cost_columns = [c for c in cells.columns if c.startswith(f"{cost} [")]
    points = {c[len(cost) + 2:-1]: cells[["method", "method_name", "bits", "mean", c]].dropna(subset=["mean", c])
              .rename(columns={c: "cost"}) for c in cost_columns}
    points = {device: frame for device, frame in sorted(points.items()) if len(frame)}
    if not points:
        raise QbenchError(f"no run recorded {cost}; report without the Pareto plot or rerun with throughput enabled")
    higher_is_cheaper = cost.endswith("img_s")
    every = pd.concat(points.values())
    labels = list(dict.fromkeys(every["method"]))
    methods = dict(zip(every["method"], every["method_name"]))
    groups = family_groups(labels, [methods[label] for label in labels])
    if groups[0][0] is not None:  # faceted: the baseline joins the first panel so it is not lost
        grouped = {label for _, members in groups for label in members}
        groups[0] = (groups[0][0], [label for label in labels if label not in grouped] + groups[0][1])
    width = _figure_width(groups)
    legend_ncols, legend_size = _below_legends(groups, ["Pareto front"], width)
    fig, axes, holders = panel_grid(len(points), len(groups), width=width, panel_height=2.2, legend_size=legend_size)
    to_label = []
    for row, (device, frame) in enumerate(points.items()):
        cost_values = frame["cost"].to_numpy(dtype=float)
        accuracy = frame["mean"].to_numpy(dtype=float)
        front = _pareto_front(cost_values, accuracy, higher_is_cheaper)
        log_x = cost_values.min() > 0 and cost_values.max() / cost_values.min() > 5
        for col, (family, members) in enumerate(groups):
            ax = axes[row][col]
            if col:
                ax.sharex(axes[row][0])
            if len(groups) > 1:
                ax.scatter(cost_values, accuracy, s=9, color="#d0d0d0", zorder=1, linewidths=0)
            ax.plot(cost_values[front], accuracy[front], color="black", linestyle="--", linewidth=0.8,
                    label="Pareto front", zorder=2)
            mine = frame[frame["method"].isin(members)]
            for label, rows in mine.groupby("method", sort=False):
                ax.scatter(rows["cost"], rows["mean"], s=22, label=label, zorder=3,
                           **method_style(label, rows["method_name"].iloc[0]).scatter_kwargs())
            others = [(c, m) for c, m, label in zip(cost_values, accuracy, frame["method"]) if label not in members]
            front_line = list(zip(cost_values[front], accuracy[front]))
            to_label.append((ax, [(c, m, b) for c, m, b in zip(mine["cost"], mine["mean"], mine["bits"])], others,
                             front_line))
            if log_x:
                ax.set_xscale("log")
            ax.set_xlabel(_COST_LABELS[cost])
            if col == 0:
                ax.set_ylabel(_metric_label(metric))
            _panel_title(ax, [device if len(points) > 1 or family is None else None, family])
    _fill_legends(axes, holders, legend_ncols)
    fig.canvas.draw()  # the final layout: labels are placed in display space
    for ax, pts, others, front_line in to_label:
        place_labels(ax, pts, obstacles=others, lines=[front_line])
    return fig


def plot_pareto(df: pd.DataFrame, path: str | Path, *, metric: str = DEFAULT_METRIC, cost: str = "train_img_s") -> Path:
    """:func:`pareto_figure` of the runs ``df`` (``cost``: ``train_img_s`` or ``infer_img_s``, higher is cheaper, or
    ``wall_time_s``, lower is cheaper), written to ``path`` (PNG; SVG and PDF beside it)."""
    if cost not in _COST_LABELS:
        raise QbenchError(f"unknown cost {cost!r}; choose train_img_s, infer_img_s or wall_time_s")
    with figure_style():
        return save_figure(pareto_figure(_cells(df, metric), metric=metric, cost=cost), path)[0]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def write_plots(
    df_runs: pd.DataFrame, results_dir: str | Path, out_dir: str | Path, suite: str, *, metric: str = DEFAULT_METRIC
) -> list[Path]:
    """All figures of a suite into ``out_dir``, each as PNG, SVG and PDF: ``<suite>_accuracy_vs_bits``,
    ``<suite>_pareto`` (when runs recorded throughput), and per setting (arch × bits) ``<suite>_curves_<...>`` /
    ``<suite>_recurrence_<...>`` with one line per method (seed mean). Metrics come from the ``metrics`` column, else
    from ``results_dir/<suite>/<run_id>/metrics.jsonl``. Returns every written path, each PNG before its SVG and PDF.
    """
    if is_theory(df_runs):
        return write_theory_plots(df_runs, results_dir, out_dir, suite)
    out_dir = Path(out_dir)
    with figure_style():
        cells = _cells(df_runs, metric)
        paths = save_figure(accuracy_vs_bits_figure(cells, metric=metric), out_dir / f"{suite}_accuracy_vs_bits.png")
        has_throughput = df_runs["train_img_s"].notna().any() and (df_runs["status"] == "complete").any()
        if has_throughput:
            paths += save_figure(pareto_figure(cells, metric=metric), out_dir / f"{suite}_pareto.png")
        paths += _setting_figures(df_runs, results_dir, out_dir, suite)
    return paths


def _setting_figures(df_runs: pd.DataFrame, results_dir: str | Path, out_dir: Path, suite: str) -> list[Path]:
    runs = df_runs.copy()
    if "metrics" not in runs:
        runs["metrics"] = [read_jsonl(Path(results_dir) / str(s) / str(r) / "metrics.jsonl")
                           for s, r in zip(runs["suite"], runs["run_id"])]
    runs["_label"] = label_runs(runs)
    runs["_column"] = runs.apply(column_of, axis=1)
    vary_policy = len({c.policy for c in runs["_column"] if c.policy}) > 1
    # One figure per suite stage as well (config.stages): a continuation's epochs 1..k are not the epochs of the run
    # it continues, and its small loss changes would vanish on the axis of a from-scratch training curve.
    stages = runs["stage"] if "stage" in runs.columns else pd.Series("", index=runs.index)
    runs["_stage"] = stages.map(lambda v: v if isinstance(v, str) else "")
    paths: list[Path] = []
    for column, stage in sorted({(c, st) for c, st in zip(runs["_column"], runs["_stage"])}):
        group = runs[(runs["_column"] == column) & (runs["_stage"] == stage)]
        group = group.sort_values(["_label", "seed", "run_id"], kind="stable")
        curves: dict[str, list[list[dict]]] = {}
        for label, rows in zip(group["_label"], group["metrics"]):
            if isinstance(rows, list) and rows:
                curves.setdefault(label, []).append(rows)
        if not curves:
            continue
        methods = dict(zip(group["_label"], group["method"]))
        parts = (column.dataset, column.arch, column.bits, column.policy if vary_policy else "", stage)
        name = _slug("_".join(p for p in parts if p))
        setting = " ".join(p for p in parts if p)
        paths += save_figure(curves_figure(curves, title=f"{suite}: {setting}", methods=methods),
                       out_dir / f"{suite}_curves_{name}.png")
        with_diagnostics = {label: seeds for label, seeds in curves.items() if _has_diagnostics(seeds)}
        if with_diagnostics:
            paths += save_figure(recurrence_figure(with_diagnostics, title=f"{suite}: {setting}", methods=methods),
                           out_dir / f"{suite}_recurrence_{name}.png")
    return paths


# ------------------------------------------------------------------------------------------------ theory suites
def theory_training_figure(curves: Mapping[str, Sequence[Mapping]], *, title: str | None = None):
    """Coarse gradient descent on the spec §8 model (STE paper, Algorithm 1): population loss f (log scale) and
    θ(w, w*) per step, one colour per estimator; solid = the first training draw, dashed = median over the draws."""
    fig, axes = new_figure(2, 1, width=TEXT_WIDTH, height=3.6, sharex=True)
    loss_ax, theta_ax = axes[0][0], axes[1][0]
    for index, (label, rows) in enumerate(curves.items()):
        color = f"C{index % 10}"
        steps = [float(r.get("step", i)) for i, r in enumerate(rows)]
        for ax, key, style, suffix, floor in ((loss_ax, "loss", "-", "", 1e-16),
                                              (loss_ax, "loss_median", "--", " (median)", 1e-16),
                                              (theta_ax, "theta", "-", "", None),
                                              (theta_ax, "theta_median", "--", " (median)", None)):
            values = [r.get(key) for r in rows]
            if any(v is None for v in values):
                continue
            values = np.asarray(values, dtype=float)
            if floor is not None:
                ax.semilogy(steps, np.maximum(values, floor), style, color=color, lw=1.0, label=f"{label}{suffix}")
            else:
                ax.plot(steps, values, style, color=color, lw=1.0, label=f"{label}{suffix}")
    loss_ax.set_ylabel("population loss f")
    theta_ax.set_ylabel("θ(w, w*)")
    theta_ax.axhline(math.pi, color="black", lw=0.6, ls=":")  # the spurious critical angle (spec §8)
    theta_ax.set_xlabel("step")
    legend_outside(fig, *unique_handles([loss_ax]))
    if title:
        fig.suptitle(title)
    return fig


def plot_theory_training(curves: Mapping[str, Sequence[Mapping]], path: str | Path, *,
                         title: str | None = None) -> Path:
    """:func:`theory_training_figure`, written to ``path`` (PNG; SVG and PDF beside it)."""
    with figure_style():
        return save_figure(theory_training_figure(curves, title=title), path)[0]


def recurrence_toy_figure(rows: Sequence[Mapping], *, quantizer: str, lr: float, optimum_loss: float):
    """The recurrence toy of spec §6 (REC paper: projected coarse gradient descent on the spec §8 model) from its
    per-step rows (``loss_q``, ``hamming``, ``visit``; t = 0..steps): three panels over the steps — the loss at Q(w_t)
    with the quantized optimum's loss, the normalised Hamming distance of Q(w_t) to the optimum, and a tick at every
    visit of the optimum; the dotted line starts the last quarter, where the record's recurrence checks look."""
    steps = np.arange(len(rows))
    loss_q = np.array([float(r["loss_q"]) for r in rows])
    hamming = np.array([float(r["hamming"]) for r in rows])
    visits = np.flatnonzero([bool(r["visit"]) for r in rows])
    last = len(rows) - 1
    late_visits = int(np.count_nonzero(visits >= (3 * last) // 4))
    fig, axes = new_figure(3, 1, width=TEXT_WIDTH, height=4.2, sharex=True)
    ax_loss, ax_ham, ax_visit = axes[:, 0]
    ax_loss.plot(steps, loss_q, lw=0.4, color="C0", label="f at Q(w_t)")
    ax_loss.axhline(optimum_loss, color="C3", lw=1.0, ls="--", label="quantized optimum")
    ax_loss.set_ylabel("loss at Q(w_t)")
    ax_ham.plot(steps, hamming, lw=0.4, color="C1")
    ax_ham.set_ylabel("Hamming to optimum")
    ax_visit.vlines(visits, 0, 1, lw=0.3, color="C2", label="visit of the optimum")
    ax_visit.set_yticks([])
    ax_visit.grid(False)
    ax_visit.set_ylabel("visits")
    ax_visit.set_xlabel("step t")
    ax_visit.axvline(3 * last / 4, color="k", lw=0.8, ls=":", label="last quarter starts")
    legend_outside(fig, *unique_handles(fig.axes))
    fig.suptitle(f"projected coarse gradient, {quantizer} Q, η = {lr}: {visits.size} visits, {late_visits} in the last "
                 "quarter")
    return fig


def plot_recurrence_toy(rows: Sequence[Mapping], path: str | Path, *, quantizer: str, lr: float,
                        optimum_loss: float) -> Path:
    """:func:`recurrence_toy_figure`, written to ``path`` (PNG; SVG and PDF beside it)."""
    with figure_style():
        return save_figure(recurrence_toy_figure(rows, quantizer=quantizer, lr=lr, optimum_loss=optimum_loss), path)[0]


def write_theory_plots(df_runs: pd.DataFrame, results_dir: str | Path, out_dir: str | Path, suite: str) -> list[Path]:
    """Figures of a theory suite, drawn from its records, each as PNG, SVG and PDF: ``<suite>_training_s<seed>``
    (loss and θ of every estimator, :func:`theory_training_figure`) and ``<suite>_recurrence_toy_<quantizer>_s<seed>``
    (the spec §6 toy, :func:`recurrence_toy_figure`: loss at Q(w_t), Hamming distance to the optimum, visits)."""
    out_dir = Path(out_dir)
    runs = df_runs[df_runs["status"] == "complete"].copy()
    if "metrics" not in runs:
        runs["metrics"] = [read_jsonl(Path(results_dir) / str(s) / str(r) / "metrics.jsonl")
                           for s, r in zip(runs["suite"], runs["run_id"])]
    part = runs["theory_part"] if "theory_part" in runs.columns else pd.Series("estimator", index=runs.index)
    paths: list[Path] = []
    estimators = runs[part == "estimator"]
    with figure_style():
        for seed in sorted(estimators["seed"].dropna().unique()):
            group = estimators[estimators["seed"] == seed]
            curves = {str(e): rows for e, rows in zip(group["estimator"], group["metrics"])
                      if isinstance(rows, list) and rows}
            if curves:
                title = f"{suite}: coarse gradient descent, seed {int(seed)}"
                paths += save_figure(theory_training_figure(curves, title=title), out_dir / f"{suite}_training_s{int(seed)}.png")
        for _, row in runs[part == "recurrence"].sort_values(["quantizer", "seed"], kind="stable").iterrows():
            rows = row["metrics"]
            if not isinstance(rows, list) or not rows:
                continue
            path = out_dir / f"{suite}_recurrence_toy_{_slug(str(row['quantizer']))}_s{int(row['seed'])}.png"
            paths += save_figure(recurrence_toy_figure(rows, quantizer=str(row["quantizer"]), lr=float(row["lr"]),
                                                 optimum_loss=float(row["optimum_loss"])), path)
    return paths
