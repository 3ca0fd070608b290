"""``qbench report suite=S``: load → board → render, plus the figures, the critical-difference diagram and the site;
``qbench report --all``: every suite of a results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import QbenchError
from .board import DEFAULT_METRIC, DEFAULT_TARGET_DROP, Leaderboard, build_leaderboard
from .cd_diagram import write_cd_diagram
from .load import filter_runs, load_bench, load_tuning, parse_where, scan_runs
from .plots import write_plots
from .render import DEFAULT_FORMATS, check_formats, write_board
from .site import SITE_DIR, write_site

__all__ = ["report", "report_all", "report_suites", "SITE_FORMAT"]

#: the format name of the web site (``--format site``); it writes the CSV too, which the pages link
SITE_FORMAT = "site"


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
    """Tables (md/csv/html/tex), figures (PNG + SVG + PDF) with the critical-difference diagram when the suite has
    enough columns for Friedman's test, and, with the ``site`` format, the suite's web page
    (:mod:`qbench.report.site`) under ``<results_dir>/leaderboards`` (or ``out_dir``).

    ``where`` is a ``{key: value}`` dict or a list of ``key=value`` strings. Unreadable run folders are skipped and
    listed at the end of the notes. Returns the written paths.
    """
    formats = tuple(formats or DEFAULT_FORMATS)
    check_formats(formats, extra=(SITE_FORMAT,))
    if SITE_FORMAT in formats and "csv" not in formats:
        formats += ("csv",)  # the page's download and the numbers its table shows
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "leaderboards"
    runs, skipped = scan_runs(results_dir, suite)
    if where is not None and not isinstance(where, Mapping):
        where = parse_where(where, runs.columns)
    board = build_leaderboard(
        runs, where=where, suite=suite, bench=load_bench(results_dir, suite), metric=metric, target=target,
        target_drop=target_drop, tuning=load_tuning(results_dir, suite), skipped=skipped,
    )
    paths = write_board(board, out_dir, suite, formats)
    shown = filter_runs(runs, where)
    figures = []
    if plots:
        figures = write_plots(shown, results_dir, out_dir, suite, metric=metric)
        figures += write_cd_diagram(board.friedman if isinstance(board, Leaderboard) else None, out_dir, suite)
    paths += figures
    if SITE_FORMAT in formats:
        paths += write_site(board, shown, out_dir, figures=[p for p in figures if p.suffix == ".png"],
                            downloads=[p for p in paths if p.suffix in (".csv", ".md", ".tex", ".html")])
    return paths


def report_suites(results_dir: str | Path = "results", out_dir: str | Path | None = None) -> list[str]:
    """The suites of ``results_dir``: its folders holding at least one run folder (a ``config.yaml`` or a
    ``result.json``), the output folder and the site excepted."""
    root = Path(results_dir)
    skip = {Path(out_dir).resolve()} if out_dir is not None else set()
    skip |= {(root / "leaderboards").resolve(), (root / "leaderboards" / SITE_DIR).resolve()}
    suites = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if folder.resolve() in skip or folder.name.startswith("."):
            continue
        if any((run / "config.yaml").exists() or (run / "result.json").exists()
               for run in folder.iterdir() if run.is_dir()):
            suites.append(folder.name)
    return suites


def report_all(results_dir: str | Path = "results", out_dir: str | Path | None = None,
               formats: Sequence[str] | None = None, plots: bool = True, **kwargs: Any) -> list[Path]:
    """:func:`report` for every suite of ``results_dir`` (:func:`report_suites`) into one output folder; with the
    ``site`` format the index lists them all. Returns the written paths."""
    suites = report_suites(results_dir, out_dir)
    if not suites:
        raise QbenchError(f"no run records under {results_dir}; run a suite first (qbench run suite=<name>)")
    paths: list[Path] = []
    for suite in suites:
        paths += report(suite, results_dir, out_dir, formats=formats, plots=plots, **kwargs)
    return list(dict.fromkeys(paths))
