"""``qbench report suite=S``: load → board → render, plus the plots and the critical-difference diagram."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .board import DEFAULT_METRIC, DEFAULT_TARGET_DROP, Leaderboard, build_leaderboard
from .cd_diagram import write_cd_diagram
from .load import filter_runs, load_bench, load_tuning, parse_where, scan_runs
from .plots import write_plots
from .render import DEFAULT_FORMATS, write_board

__all__ = ["report"]


def report(
    suite: str,
    results_dir: str | Path = "results",
    out_dir: str | Path | None = None,
    where: Mapping[str, Any] | Sequence[str] | None = None,
    formats: Sequence[str] | None = None,
    plots: bool = True,
    *,
    metric: str = DEFAULT_METRIC,
    target: float | None = None,
    target_drop: float = DEFAULT_TARGET_DROP,
) -> list[Path]:
    """Tables (md/csv/html/tex) and PNG plots of a suite under ``<results_dir>/leaderboards`` (or ``out_dir``), with
    the critical-difference diagram (PNG and SVG) when the suite has enough columns for Friedman's test.

    ``where`` is a ``{key: value}`` dict or a list of ``key=value`` strings. Unreadable run folders are skipped and
    listed at the end of the notes. Returns the written paths.
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "leaderboards"
    runs, skipped = scan_runs(results_dir, suite)
    if where is not None and not isinstance(where, Mapping):
        where = parse_where(where, runs.columns)
    board = build_leaderboard(
        runs, where=where, suite=suite, bench=load_bench(results_dir, suite), metric=metric, target=target,
        target_drop=target_drop, tuning=load_tuning(results_dir, suite), skipped=skipped,
    )
    paths = write_board(board, out_dir, suite, tuple(formats or DEFAULT_FORMATS))
    if plots:
        paths += write_plots(filter_runs(runs, where), results_dir, out_dir, suite, metric=metric)
        paths += write_cd_diagram(board.friedman if isinstance(board, Leaderboard) else None, out_dir, suite)
    return paths
