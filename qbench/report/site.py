"""``qbench report --format site``: a static web site of the leaderboards that opens from disk or any static host.

Layout under the report's output folder (``results/leaderboards`` by default), which is the site's root::

    index.html                    every suite of the folder (from the site/<suite>.json summaries)
    site/<suite>.html             one page per suite
    site/<suite>.json             the suite's summary for the index
    site/assets/                  vendored, pinned JS/CSS (Tabulator, MIT; VENDOR.json names version and checksums)
    <suite>.csv, <suite>_*.png    the downloads and figures the page links (written by the same report)

A suite page holds: the leaderboard as a sortable, filterable table built from the board's long ``cells`` frame (the
CSV), one row per (method, setting); every column of that frame is shown, so a column the board gains later (e.g. a
significance group) appears without a change here, while the known ones get short headers, units and tooltips (cost
columns are grouped by device, the device and measurement settings in a footnote); the runs behind every row (run
ids, seeds, status, commit, the command that reproduces each); the board's own tables as in the paper (the text of
``board.tables()``, best values bold); the figures (PNG, with SVG and PDF links); a legend of every symbol and the
board's notes. No network, no timestamps: the same records give the same bytes.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .. import __version__
from ..results import atomic_write_bytes, atomic_write_text
from .board import Leaderboard
from .render import Board, table_html
from .site_data import description, runs_table, site_columns, site_filters, site_rows, summary

__all__ = ["SITE_DIR", "ASSET_FILES", "suite_page", "index_page", "write_site", "write_index"]

#: the folder of the suite pages and their assets, under the report's output folder
SITE_DIR = "site"
#: the files of site_assets/ copied next to the pages
ASSET_FILES = ("tabulator.min.js", "tabulator_simple.min.css", "LICENSE.tabulator.txt", "VENDOR.json",
               "qbench-site.js", "qbench-site.css")
_ASSETS = "site_assets"

#: figure file name (after "<suite>_") → caption
_CAPTIONS = (
    (r"accuracy_vs_bits", "Accuracy vs bit-width: mean ± std over seeds per method; dashed: the FP baseline. One "
                          "panel per method family when many methods ran."),
    (r"pareto", "Accuracy vs training throughput per device; dashed: the Pareto front (no cell beats it on both "
                "axes); labels give the bits where they fit, grey points are the other families."),
    (r"curves_(.+)", "Training curves, {0}: validation (solid, markers) and training (dotted) loss and accuracy per "
                     "epoch, mean over seeds."),
    (r"recurrence_toy_(.+)", "Recurrence toy (spec §6), {0}: loss at Q(w_t), Hamming distance to the optimum, "
                             "visits of the optimum."),
    (r"recurrence_(.+)", "Recurrence diagnostics, {0}: loss at Q(w), Hamming distance of Q(w) to the best epoch's, "
                         "flip rate per epoch."),
    (r"training_(.+)", "Coarse gradient descent on the spec §8 model, {0}: population loss and θ(w, w*) per step."),
)


def _asset(name: str) -> bytes:
    return resources.files("qbench.report").joinpath(_ASSETS, name).read_bytes()


def _template(name: str):
    import jinja2

    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["md"] = _inline_markdown
    return env.from_string(_asset(name).decode())


def _inline_markdown(text: Any) -> str:
    """Escape ``text`` and turn its `code` spans into <code>: the board's header and notes use them."""
    import markupsafe

    escaped = html.escape(str(text), quote=False)
    return markupsafe.Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no '</' to end it early), keys sorted: byte-stable."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/")


def _figures(suite: str, figures: Sequence[Path], out_dir: Path) -> list[dict]:
    entries = []
    for png in figures:
        stem = png.stem[len(suite) + 1:] if png.stem.startswith(f"{suite}_") else png.stem
        caption = stem.replace("_", " ")
        for pattern, text in _CAPTIONS:
            match = re.fullmatch(pattern, stem)
            if match:
                caption = text.format(*(g.replace("_", " ") for g in match.groups()))
                break
        main = stem in ("accuracy_vs_bits", "pareto") or not re.match(r"(curves|recurrence)_", stem)
        entries.append({
            "src": f"../{png.name}", "caption": caption, "main": main, "alt": f"{suite}: {caption}",
            "vector": [(fmt.upper(), f"../{png.stem}.{fmt}") for fmt in ("svg", "pdf")
                       if (out_dir / f"{png.stem}.{fmt}").exists()],
        })
    return entries


def suite_page(board: Board, runs: pd.DataFrame, *, figures: Sequence[Path] = (), downloads: Sequence[Path] = (),
               out_dir: str | Path = ".") -> str:
    """The HTML of one suite's page (``figures``: PNG paths in ``out_dir``; ``downloads``: files in ``out_dir`` the
    page links, e.g. the CSV)."""
    out_dir = Path(out_dir)
    columns, footnotes = site_columns(board)
    rows = site_rows(board, columns)
    data = {"suite": board.suite, "kind": board.kind, "metric": getattr(board, "metric", ""),
            "columns": [c.spec() for c in columns], "rows": rows,
            "filters": site_filters(board, rows), "runs": runs_table(board, runs)}
    return _template("suite.html.j2").render(
        board=board, description=description(runs), data_json=_script_json(data), footnotes=footnotes,
        tables=[(table.heading, table_html(table)) for table in board.tables()],
        figures=_figures(board.suite, figures, out_dir), downloads=[(p.suffix[1:].upper(), p.name) for p in downloads],
        version=__version__, metric=getattr(board, "metric", ""), is_train=isinstance(board, Leaderboard),
    )


def index_page(summaries: Sequence[dict]) -> str:
    """The HTML of the site's index: one entry per suite summary (:func:`qbench.report.site_data.summary`)."""
    return _template("index.html.j2").render(suites=sorted(summaries, key=lambda s: s["suite"]), version=__version__)


def write_site(board: Board, runs: pd.DataFrame, out_dir: str | Path, *, figures: Sequence[Path] = (),
               downloads: Sequence[Path] = ()) -> list[Path]:
    """Write the suite's page, its summary, the assets and the index (over every summary in the folder) under
    ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    site = out_dir / SITE_DIR
    paths = []
    for name in ASSET_FILES:
        target = site / "assets" / name
        data = _asset(name)
        if not target.exists() or target.read_bytes() != data:
            atomic_write_bytes(target, data)
        paths.append(target)
    page = site / f"{board.suite}.html"
    atomic_write_text(page, suite_page(board, runs, figures=figures, downloads=downloads, out_dir=out_dir))
    summary_path = site / f"{board.suite}.json"
    atomic_write_text(summary_path, json.dumps(summary(board, runs), indent=1, sort_keys=True, ensure_ascii=False)
                      + "\n")
    return [page, summary_path, *paths, write_index(out_dir)]


def write_index(out_dir: str | Path) -> Path:
    """``out_dir/index.html`` over every suite summary in ``out_dir/site/``."""
    out_dir = Path(out_dir)
    summaries = [json.loads(p.read_text()) for p in sorted((out_dir / SITE_DIR).glob("*.json"))]
    path = out_dir / "index.html"
    atomic_write_text(path, index_page(summaries))
    return path
