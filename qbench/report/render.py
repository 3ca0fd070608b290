"""Board → text: Markdown, CSV, standalone HTML and LaTeX, and :func:`write_leaderboard` (all four, written atomically).

The renderers are the same for a training :class:`~qbench.report.board.Leaderboard` and a
:class:`~qbench.report.theory_board.TheoryBoard`: a board has a ``title``, ``header`` lines, ``tables()``
(:class:`~qbench.report.display.Table`), ``notes`` and the long numeric ``cells`` (the CSV).

Byte stability: no timestamps, no absolute paths, and the pandas Styler gets fixed uuids (it otherwise draws random
ones), so the same board always gives the same bytes.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from pandas.io.formats.style import Styler

from ..errors import QbenchError
from ..results import atomic_write_text
from .board import Leaderboard, build_leaderboard
from .display import Table
from .theory_board import TheoryBoard

__all__ = ["DEFAULT_FORMATS", "render_markdown", "render_csv", "render_html", "render_latex", "table_html",
           "check_formats", "write_board", "write_leaderboard"]

DEFAULT_FORMATS = ("md", "csv", "html", "tex")
HTML_UUID = "qbench"  # fixed so the HTML output is byte-stable (Styler otherwise draws a random uuid)
Board = Leaderboard | TheoryBoard


def _marks(table: Table) -> pd.DataFrame:
    """Which cells of ``table.frame`` are marked (the top group, the best cost), aligned with it."""
    if table.best is None:
        return pd.DataFrame(False, index=table.frame.index, columns=table.frame.columns)
    return table.best.reindex(index=table.frame.index, columns=table.frame.columns, fill_value=False).astype(bool)


def render_markdown(board: Board) -> str:
    """GitHub-flavoured Markdown: header, the board's tables (marked cells in **bold**, as in HTML and LaTeX),
    notes. No timestamps (byte-stable)."""
    parts = [f"# {board.title}", "", *board.header, ""]
    for table in board.tables():
        frame = table.frame.astype(str).mask(_marks(table), "**" + table.frame.astype(str) + "**")
        parts += [f"## {table.heading}", "", frame.to_markdown(index=False, disable_numparse=True), ""]
    if board.notes:
        parts += ["## Notes", "", *[f"- {note}" for note in board.notes], ""]
    return "\n".join(parts)


def render_csv(board: Board) -> str:
    """The long numeric table: for a leaderboard one row per (setting, method) with mean, std, n, ci95_low/high,
    status counts, ranks and costs; for a theory board one row per (part, name, metric)."""
    return board.cells.to_csv(index=False, lineterminator="\n")


def _styled(table: Table, frame: pd.DataFrame, css: str) -> Styler:
    """A Styler of ``frame`` (``table.frame`` or an escaped copy) with ``css`` on the table's best cells."""
    styler = Styler(frame, uuid=f"{HTML_UUID}_{table.label}", cell_ids=False)
    marks = _marks(table).set_axis(frame.columns, axis=1)  # the escaped names, for LaTeX
    styler.apply(lambda _: marks.map(lambda is_best: css if is_best else ""), axis=None)
    return styler.hide(axis="index")


def table_html(table: Table) -> str:
    """One board table as an HTML ``<table>`` (with its ``<style>``): the best value of each column is bold."""
    return _styled(table, table.frame, "font-weight: bold;").to_html()


def render_html(board: Board) -> str:
    """A standalone HTML page; marked cells (each column's top group, the best cost) are bold."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{esc(board.title)}</title>", "</head>", "<body>", f"<h1>{esc(board.title)}</h1>",
        *[f"<p>{esc(line)}</p>" for line in board.header],
    ]
    for table in board.tables():
        parts += [f"<h2>{esc(table.heading)}</h2>", table_html(table)]
    if board.notes:
        parts += ["<h2>Notes</h2>", "<ul>", *[f"<li>{esc(note)}</li>" for note in board.notes], "</ul>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "—": "--", "–": "--", "≥": r"$\geq$", "…": r"\dots{}",
                  "α": r"$\alpha$", "<": r"$<$", ">": r"$>$"}


def _latex_escape(text: Any) -> str:
    escaped = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for symbol, command in _LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, command)
    return escaped


def _latex_slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "suite"


def _latex_table(board: Board, table: Table) -> str:
    escaped = table.frame.map(_latex_escape)
    escaped.columns = [_latex_escape(c) for c in table.frame.columns]
    return _styled(table, escaped, "textbf: --rwrap;").to_latex(
        hrules=True, caption=_latex_escape(table.caption), label=f"tab:qbench-{_latex_slug(board.suite)}-{table.label}",
        position_float="centering", column_format="l" * len(table.frame.columns),
    )


def render_latex(board: Board) -> str:
    """LaTeX tables (booktabs rules) via the pandas Styler; marked cells in \\textbf; header and notes as comments."""
    parts = [f"% {board.title}", *[f"% {line}" for line in board.header], ""]
    for index, table in enumerate(board.tables()):
        parts += ([""] if index else []) + [_latex_table(board, table)]
    parts += ["", *[f"% {note}" for note in board.notes], ""]
    return "\n".join(parts)


_RENDERERS = {"md": render_markdown, "csv": render_csv, "html": render_html, "tex": render_latex}


def write_leaderboard(
    df_runs: pd.DataFrame,
    out_dir: str | Path,
    suite: str,
    formats: Sequence[str] = DEFAULT_FORMATS,
    where: Mapping[str, Any] | None = None,
    **build_kwargs: Any,
) -> list[Path]:
    """Build the leaderboard of ``df_runs`` and write ``out_dir/<suite>.<fmt>`` atomically for each format.

    ``build_kwargs`` go to :func:`~qbench.report.board.build_leaderboard` (metric, bench, target, target_drop,
    skipped, ...).
    """
    check_formats(formats)
    return write_board(build_leaderboard(df_runs, where=where, suite=suite, **build_kwargs), out_dir, suite, formats)


def check_formats(formats: Sequence[str], extra: Sequence[str] = ()) -> None:
    """A one-line error for a format that is neither a text renderer (md, csv, html, tex) nor in ``extra``."""
    unknown = [f for f in formats if f not in _RENDERERS and f not in extra]
    if unknown:
        raise QbenchError(f"unknown report format {unknown[0]!r}; choose from {', '.join([*_RENDERERS, *extra])}")


def write_board(board: Board, out_dir: str | Path, suite: str, formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Write ``out_dir/<suite>.<fmt>`` atomically for each text format of ``formats`` (others are left to their
    writers, e.g. the site)."""
    out_dir = Path(out_dir)
    paths = []
    for fmt in formats:
        if fmt in _RENDERERS:
            path = out_dir / f"{suite}.{fmt}"
            atomic_write_text(path, _RENDERERS[fmt](board))
            paths.append(path)
    return paths
