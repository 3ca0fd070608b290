"""Leaderboard plots (PNG): accuracy vs bits, training curves, accuracy vs cost (Pareto), recurrence diagnostics,
and the theory suite's figures (coarse gradient descent, the recurrence toy), all drawn from run records.

matplotlib is imported inside the functions, so ``import qbench.report`` never pays for it. Figures
are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly instead of through ``pyplot``: that is headless
whatever backend the user configured, does not switch a notebook's global backend, and leaves no open figures behind.
Every file is written atomically.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..bits import FP_BITS
from ..errors import QbenchError
from ..results import atomic_write_bytes, read_jsonl
from .board import DEFAULT_METRIC, build_leaderboard, column_of, label_runs
from .load import is_theory

__all__ = ["plot_accuracy_vs_bits", "plot_curves", "plot_pareto", "plot_recurrence", "write_plots",
           "plot_theory_training", "plot_recurrence_toy", "write_theory_plots"]

RECURRENCE_KEYS = ("loss_q", "hamming_to_best", "flip_rate")


def _figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # attaches the Agg canvas: rendering needs no display
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    buffer = io.BytesIO()
    # No "Software"/date metadata, so the same data gives the same bytes.
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _cells(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    # The leaderboard's own aggregation, so plots and tables always agree on labels, columns and statistics.
    return build_leaderboard(df, metric=metric).cells


def plot_accuracy_vs_bits(df: pd.DataFrame, path: str | Path, *, metric: str = DEFAULT_METRIC) -> Path:
    """One panel per (dataset, arch): the metric per bit-width, a line per method with ±std error bars; FP dashed."""
    cells = _cells(df, metric)
    panels = list(dict.fromkeys(zip(cells["dataset"], cells["arch"])))
    fig, axes = _figure(ncols=len(panels))
    for ax, (dataset, arch) in zip(axes[0], panels):
        panel = cells[(cells["dataset"] == dataset) & (cells["arch"] == arch)]
        quantized = panel[panel["bits"] != FP_BITS]
        # the first/last-layer policy is part of the x label only when the panel mixes policies
        show_policy = quantized["policy"].nunique() > 1
        tick_of = [b + (f" [{p}]" if show_policy and p else "") for b, p in zip(quantized["bits"], quantized["policy"])]
        quantized = quantized.assign(_tick=tick_of)
        ticks = list(dict.fromkeys(tick_of))  # cells come ordered from high to low precision; keep that order
        for label, rows in quantized.groupby("method", sort=False):
            x = [ticks.index(t) for t in rows["_tick"]]
            ax.errorbar(x, rows["mean"], yerr=rows["std"].fillna(0.0), marker="o", capsize=3, label=label)
        for _, fp in panel[panel["bits"] == FP_BITS].iterrows():
            if not math.isnan(fp["mean"]):
                ax.axhline(fp["mean"], linestyle="--", color="black", linewidth=1, label=f"{fp['method']} ({FP_BITS})")
        ax.set_xticks(range(len(ticks)), ticks, rotation=30 if len(ticks) > 4 else 0)
        ax.set_title(f"{dataset} {arch}")
        ax.set_xlabel("bits")
        ax.set_ylabel(f"{metric} (%)" if "top" in metric else metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


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


def plot_curves(source: Any, path: str | Path, *, title: str | None = None) -> Path:
    """Training and validation curves: loss and accuracy per epoch.

    ``source``: a run directory, one run's metrics rows, or ``{label: rows | [rows of each seed]}`` (seed mean).
    Solid lines are training, dashed lines validation.
    """
    runs = _runs_from(source)
    fig, axes = _figure(ncols=2)
    loss_ax, acc_ax = axes[0]
    for index, (label, seeds) in enumerate(runs.items()):
        color = f"C{index % 10}"
        for ax, key, style, suffix in ((loss_ax, "train_loss", "-", "train"), (loss_ax, "val_loss", "--", "val"),
                                       (acc_ax, "train_acc", "-", "train"), (acc_ax, "val_top1", "--", "val")):
            epochs, values = _series(seeds, key)
            if len(epochs):
                ax.plot(epochs, values, style, color=color, label=f"{label} {suffix}")
    return _finish_epoch_axes(fig, ((loss_ax, "loss"), (acc_ax, "accuracy (%)")), title, path)


_COST_LABELS = {"train_img_s": "train img/s", "infer_img_s": "inference img/s", "wall_time_s": "wall time (s)"}


def plot_pareto(df: pd.DataFrame, path: str | Path, *, metric: str = DEFAULT_METRIC, cost: str = "train_img_s") -> Path:
    """Accuracy vs training cost, one panel per device (CPU and GPU figures are never on one axis).

    ``cost``: ``train_img_s`` (higher is cheaper) or ``wall_time_s`` (lower is cheaper). The Pareto front, the cells
    no other cell beats on both axes, is drawn as a line.
    """
    if cost not in _COST_LABELS:
        raise QbenchError(f"unknown cost {cost!r}; choose train_img_s, infer_img_s or wall_time_s")
    cells = _cells(df, metric)
    cost_columns = [c for c in cells.columns if c.startswith(f"{cost} [")]
    points = {c[len(cost) + 2:-1]: cells[["method", "arch", "bits", "mean", c]].dropna() for c in cost_columns}
    points = {device: frame for device, frame in points.items() if len(frame)}
    if not points:
        raise QbenchError(f"no run recorded {cost}; report without the Pareto plot or rerun with throughput enabled")
    higher_is_cheaper = cost.endswith("img_s")
    fig, axes = _figure(ncols=len(points))
    for ax, (device, frame) in zip(axes[0], sorted(points.items())):
        cost_values = frame.iloc[:, 4].to_numpy(dtype=float)
        accuracy = frame["mean"].to_numpy(dtype=float)
        for label, rows in frame.groupby("method", sort=False):
            ax.scatter(rows.iloc[:, 4], rows["mean"], label=label)
            for _, row in rows.iterrows():
                ax.annotate(f"{row['bits']}", (row.iloc[4], row["mean"]), fontsize="x-small",
                            xytext=(3, 3), textcoords="offset points")
        cheapness = cost_values if higher_is_cheaper else -cost_values
        front = [i for i in range(len(frame))
                 if not any(cheapness[j] >= cheapness[i] and accuracy[j] >= accuracy[i]
                            and (cheapness[j] > cheapness[i] or accuracy[j] > accuracy[i]) for j in range(len(frame)))]
        front.sort(key=lambda i: cost_values[i])
        ax.plot(cost_values[front], accuracy[front], "k--", linewidth=1, label="Pareto front")
        ax.set_xlabel(_COST_LABELS[cost])
        ax.set_ylabel(f"{metric} (%)" if "top" in metric else metric)
        ax.set_title(device, fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def _has_diagnostics(seeds: list[list[dict]]) -> bool:
    return any(row.get(key) is not None for rows in seeds for row in rows for key in RECURRENCE_KEYS)


def plot_recurrence(source: Any, path: str | Path, *, title: str | None = None) -> Path:
    """Recurrence diagnostics per epoch (spec §6): loss at Q(w), Hamming distance of Q(w) to the best, flip rate.

    ``source`` as in :func:`plot_curves`.
    """
    runs = _runs_from(source)
    if not any(_has_diagnostics(seeds) for seeds in runs.values()):
        raise QbenchError("no recurrence diagnostics (loss_q, hamming_to_best, flip_rate) in these metrics; "
                          "train with the diagnostics enabled")
    fig, axes = _figure(ncols=3, width=4.2)
    for index, (label, seeds) in enumerate(runs.items()):
        for ax, key in zip(axes[0], RECURRENCE_KEYS):
            epochs, values = _series(seeds, key)
            if len(epochs):
                ax.plot(epochs, values, marker=".", color=f"C{index % 10}", label=label)
    return _finish_epoch_axes(fig, zip(axes[0], ("loss at Q(w)", "Hamming distance to best Q", "flip rate")),
                              title, path)


def _finish_epoch_axes(fig, axes_and_labels, title: str | None, path: str | Path) -> Path:
    """Label, grid and legend per-epoch axes, title the figure and save it."""
    for ax, ylabel in axes_and_labels:
        _integer_epochs(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def write_plots(
    df_runs: pd.DataFrame, results_dir: str | Path, out_dir: str | Path, suite: str, *, metric: str = DEFAULT_METRIC
) -> list[Path]:
    """All plots of a suite into ``out_dir``: ``<suite>_accuracy_vs_bits.png``, ``<suite>_pareto.png`` (when runs
    recorded throughput), and per setting (arch × bits) ``<suite>_curves_<...>.png`` / ``<suite>_recurrence_<...>.png``
    with one line per method (seed mean). Metrics come from the ``metrics`` column, else from
    ``results_dir/<suite>/<run_id>/metrics.jsonl``.
    """
    if is_theory(df_runs):
        return write_theory_plots(df_runs, results_dir, out_dir, suite)
    out_dir = Path(out_dir)
    paths = [plot_accuracy_vs_bits(df_runs, out_dir / f"{suite}_accuracy_vs_bits.png", metric=metric)]
    has_throughput = df_runs["train_img_s"].notna().any() and (df_runs["status"] == "complete").any()
    if has_throughput:
        paths.append(plot_pareto(df_runs, out_dir / f"{suite}_pareto.png", metric=metric))

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
    for column, stage in sorted({(c, st) for c, st in zip(runs["_column"], runs["_stage"])}):
        group = runs[(runs["_column"] == column) & (runs["_stage"] == stage)]
        group = group.sort_values(["_label", "seed", "run_id"], kind="stable")
        curves: dict[str, list[list[dict]]] = {}
        for label, rows in zip(group["_label"], group["metrics"]):
            if isinstance(rows, list) and rows:
                curves.setdefault(label, []).append(rows)
        if not curves:
            continue
        parts = (column.dataset, column.arch, column.bits, column.policy if vary_policy else "", stage)
        name = _slug("_".join(p for p in parts if p))
        setting = " ".join(p for p in parts if p)
        paths.append(plot_curves(curves, out_dir / f"{suite}_curves_{name}.png", title=f"{suite}: {setting}"))
        with_diagnostics = {label: seeds for label, seeds in curves.items() if _has_diagnostics(seeds)}
        if with_diagnostics:
            paths.append(plot_recurrence(with_diagnostics, out_dir / f"{suite}_recurrence_{name}.png",
                                         title=f"{suite}: {setting}"))
    return paths


# ------------------------------------------------------------------------------------------------ theory suites
def plot_theory_training(curves: Mapping[str, Sequence[Mapping]], path: str | Path, *,
                         title: str | None = None) -> Path:
    """Coarse gradient descent on the spec §8 model (STE paper, Algorithm 1): population loss f (log scale) and
    θ(w, w*) per step, one colour per estimator; solid = the first training draw, dashed = median over the draws."""
    fig, axes = _figure(ncols=1, nrows=2, width=6.5, height=2.8)
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
    for ax in (loss_ax, theta_ax):
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize="x-small", ncol=2)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_recurrence_toy(rows: Sequence[Mapping], path: str | Path, *, quantizer: str, lr: float,
                        optimum_loss: float) -> Path:
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
    fig, axes = _figure(ncols=1, nrows=3, width=7.0, height=2.0)
    ax_loss, ax_ham, ax_visit = axes[:, 0]
    for ax in (ax_ham, ax_visit):
        ax.sharex(ax_loss)
    for ax in (ax_loss, ax_ham):
        ax.tick_params(labelbottom=False)  # one step axis, labelled under the bottom panel
    ax_loss.plot(steps, loss_q, lw=0.4, color="C0", label="f at Q(w_t)")
    ax_loss.axhline(optimum_loss, color="C3", lw=1.0, ls="--", label="quantized optimum")
    ax_loss.set_ylabel("loss at Q(w_t)")
    ax_loss.legend(fontsize="small", loc="upper right")
    ax_ham.plot(steps, hamming, lw=0.4, color="C1")
    ax_ham.set_ylabel("Hamming to optimum")
    ax_visit.vlines(visits, 0, 1, lw=0.3, color="C2")
    ax_visit.set_yticks([])
    ax_visit.set_ylabel("visits")
    ax_visit.set_xlabel("step t")
    ax_visit.axvline(3 * last / 4, color="k", lw=0.8, ls=":")
    fig.suptitle(f"projected coarse gradient, {quantizer} Q, η = {lr}: {visits.size} visits, {late_visits} in the last "
                 "quarter", fontsize="medium")
    for ax in (ax_loss, ax_ham):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def write_theory_plots(df_runs: pd.DataFrame, results_dir: str | Path, out_dir: str | Path, suite: str) -> list[Path]:
    """Plots of a theory suite, drawn from its records: ``<suite>_training_s<seed>.png`` (loss and θ of every
    estimator, :func:`plot_theory_training`) and ``<suite>_recurrence_toy_<quantizer>_s<seed>.png`` (the spec §6 toy,
    :func:`plot_recurrence_toy`: loss at Q(w_t), Hamming distance to the optimum, visits)."""
    out_dir = Path(out_dir)
    runs = df_runs[df_runs["status"] == "complete"].copy()
    if "metrics" not in runs:
        runs["metrics"] = [read_jsonl(Path(results_dir) / str(s) / str(r) / "metrics.jsonl")
                           for s, r in zip(runs["suite"], runs["run_id"])]
    part = runs["theory_part"] if "theory_part" in runs.columns else pd.Series("estimator", index=runs.index)
    paths = []
    estimators = runs[part == "estimator"]
    for seed in sorted(estimators["seed"].dropna().unique()):
        group = estimators[estimators["seed"] == seed]
        curves = {str(e): rows for e, rows in zip(group["estimator"], group["metrics"])
                  if isinstance(rows, list) and rows}
        if curves:
            paths.append(plot_theory_training(curves, out_dir / f"{suite}_training_s{int(seed)}.png",
                                              title=f"{suite}: coarse gradient descent, seed {int(seed)}"))
    for _, row in runs[part == "recurrence"].sort_values(["quantizer", "seed"], kind="stable").iterrows():
        rows = row["metrics"]
        if not isinstance(rows, list) or not rows:
            continue
        path = out_dir / f"{suite}_recurrence_toy_{_slug(str(row['quantizer']))}_s{int(row['seed'])}.png"
        paths.append(plot_recurrence_toy(rows, path, quantizer=str(row["quantizer"]), lr=float(row["lr"]),
                                         optimum_loss=float(row["optimum_loss"])))
    return paths
