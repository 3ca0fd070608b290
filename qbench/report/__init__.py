"""``qbench report``: run records → leaderboards (md, csv, html, tex) and plots.

The package follows the data flow, and imports only point down it::

    load         run folders, bench rows, tuning summaries → DataFrames; filters
    stats        t intervals, medians, Friedman's test and Nemenyi's critical difference
    display      status words, number formats, the Table a board hands to the renderers
    costs        device-labelled cost columns, bench and tuning merges, the cost table
    theory_board the report of a theory suite
    compare      the comparisons: paired t-tests within a column (qbench.paired), Friedman across columns
    board        runs → Leaderboard (labels, columns, cells, accuracy table, significance table, notes)
    render       board → md / csv / html / tex, write_leaderboard
    figure       what every figure shares: method colours and markers, paper style, legends, labels, PNG+SVG+PDF
    plots        the figures (matplotlib imported lazily)
    cd_diagram   the critical-difference diagram
    site_data    board cells and runs → the columns, rows, filters and runs of a web page
    site         the static web site: one page per suite and an index (vendored Tabulator, no network)
    pipeline     report(): load → board → render, plus figures, the CD diagram and site; report_all(): every suite
"""

from .board import Leaderboard, build_leaderboard
from .load import filter_runs, load_bench, load_runs, load_tuning, parse_where, scan_runs
from .pipeline import report, report_all
from .render import render_csv, render_html, render_latex, render_markdown, write_leaderboard
from .theory_board import TheoryBoard, build_theory_leaderboard

__all__ = [
    "report",
    "report_all",
    "load_runs",
    "scan_runs",
    "load_bench",
    "load_tuning",
    "parse_where",
    "filter_runs",
    "Leaderboard",
    "TheoryBoard",
    "build_leaderboard",
    "build_theory_leaderboard",
    "render_markdown",
    "render_csv",
    "render_html",
    "render_latex",
    "write_leaderboard",
]
