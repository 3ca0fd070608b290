"""The critical-difference diagram of a leaderboard (Demšar 2006, JMLR 7:1-30, Fig. 1-2): the methods' average ranks
over the quantized columns on one axis, Nemenyi's critical difference as a bar above it, and a thick line joining each
group of methods that are not significantly different (all of them when Friedman's test does not reject).

Drawn on a ``matplotlib.figure.Figure`` with the Agg canvas (headless whatever backend the user configured, no global
pyplot state), as :mod:`qbench.report.plots` does; written as PNG, SVG and PDF like every figure, atomically and
byte-stable (:func:`qbench.report.figure.save_figure`).
"""

from __future__ import annotations

from pathlib import Path

from .figure import figure_style, save_figure
from .stats import Friedman

__all__ = ["plot_cd_diagram", "write_cd_diagram"]


def plot_cd_diagram(friedman: Friedman, title: str = "") -> "object":
    """The diagram as a matplotlib Figure: axis from rank 1 (best, left) to k, best half labelled on the left."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(friedman.labels)
    order = sorted(friedman.labels, key=lambda m: (friedman.rank_of(m), m))
    cliques = [c for c in friedman.cliques() if len(c) > 1]
    left = (k + 1) // 2
    rows = max(left, k - left)
    height = 1.4 + 0.28 * rows + 0.12 * len(cliques)
    width = 8.0
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    title_lines = title.count("\n") + 1 if title else 0
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.96 - 0.1 * title_lines))
    # room for the longest label on each side: a label of n characters at 9 pt is about 0.07·n + 0.15 inches, and the
    # margin m (data units) must hold it in a width of k + 1 + 2m data units over 0.98·width inches
    label_inches = 0.07 * max(len(f"{m} ({friedman.rank_of(m):.2f})") for m in order) + 0.15
    margin = label_inches * (k + 1) / (0.98 * width - 2 * label_inches) + 0.3
    ax.set_xlim(0.5 - margin, k + 0.5 + margin)
    bottom = -(rows + 1.2 + 0.4 * len(cliques))
    ax.set_ylim(bottom, 1.6)
    ax.axis("off")
    # the rank axis with integer ticks
    ax.plot([1, k], [0, 0], color="black", linewidth=1)
    for tick in range(1, k + 1):
        ax.plot([tick, tick], [0, 0.12], color="black", linewidth=1)
        ax.text(tick, 0.22, str(tick), ha="center", va="bottom", fontsize=9)
    # Nemenyi's critical difference, above the axis from rank 1
    if friedman.cd <= k - 1:
        ax.plot([1, 1 + friedman.cd], [1.05, 1.05], color="black", linewidth=2)
        ax.text(1 + friedman.cd / 2, 1.15, f"CD = {friedman.cd:.2f}", ha="center", va="bottom", fontsize=9)
    # the methods: a leader from the axis down to the label, best half on the left, the rest on the right
    for index, label in enumerate(order):
        rank = friedman.rank_of(label)
        on_left = index < left
        level = -(index + 1) if on_left else -(k - index)
        level -= 0.4 * len(cliques)
        end = 0.5 - 0.3 if on_left else k + 0.5 + 0.3
        ax.plot([rank, rank, end], [0, level, level], color="black", linewidth=0.8)
        ax.text(end - 0.05 if on_left else end + 0.05, level, f"{label} ({rank:.2f})",
                ha="right" if on_left else "left", va="center", fontsize=9)
    # the groups of methods that are not significantly different
    for index, clique in enumerate(cliques):
        low, high = friedman.rank_of(clique[0]), friedman.rank_of(clique[-1])
        y = -0.35 - 0.4 * index
        ax.plot([low - 0.03, high + 0.03], [y, y], color="black", linewidth=3, solid_capstyle="round")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_cd_diagram(friedman: Friedman | None, out_dir: str | Path, suite: str) -> list[Path]:
    """``<suite>_cd.png`` (and .svg, .pdf: :func:`~qbench.report.figure.save_figure`) under ``out_dir``; nothing
    when there was no Friedman test."""
    if friedman is None:
        return []
    p_value = "p < 0.001" if friedman.p_value < 0.001 else f"p = {friedman.p_value:.3f}"
    verdict = (f"Friedman {p_value}, Nemenyi at α = {friedman.alpha:g}" if friedman.significant
               else f"Friedman {p_value}: no significant difference at α = {friedman.alpha:g}")
    title = f"{suite}: average rank over {friedman.n_blocks} quantized columns\n{verdict}"  # two lines: never clipped
    with figure_style():
        return save_figure(plot_cd_diagram(friedman, title), Path(out_dir) / f"{suite}_cd.png")
