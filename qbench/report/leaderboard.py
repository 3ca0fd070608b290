"""Compatibility alias: the old module path of the report's public functions, which now live in the modules of
:mod:`qbench.report` (import them from ``qbench.report``). Kept only until ``qbench.theory.suite`` and the tests of
other packages (tune, theory, run, bench) import from ``qbench.report``; then delete this file."""

from . import (
    Leaderboard,
    build_leaderboard,
    build_theory_leaderboard,
    filter_runs,
    load_bench,
    load_runs,
    load_tuning,
    parse_where,
    render_csv,
    render_html,
    render_latex,
    render_markdown,
    report,
    write_leaderboard,
)

__all__ = [
    "Leaderboard",
    "build_leaderboard",
    "build_theory_leaderboard",
    "filter_runs",
    "load_bench",
    "load_runs",
    "load_tuning",
    "parse_where",
    "render_csv",
    "render_html",
    "render_latex",
    "render_markdown",
    "report",
    "write_leaderboard",
]
