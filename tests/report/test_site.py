"""``qbench report --format site``: a static site that opens from disk with no network, byte-stable, light, showing
every column of the board (new ones too) — and, in a real browser (the system Chromium driven by Playwright), a page
that loads without a console message, sorts, filters, shows the CSV's numbers and the runs behind a row."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import sync_playwright

import qbench
from qbench.bits import FP_BITS
from qbench.cli import main
from qbench.report import TheoryBoard, build_leaderboard, load_runs, report, report_all
from qbench.report.site import ASSET_FILES, SITE_DIR, suite_page

DATA = Path(__file__).parent / "data"
REPO = Path(qbench.__file__).parent.parent
SCREENSHOT = REPO / "results" / "site-screenshot.png"  # a CI artifact; results/* is git-ignored
CHROMIUM = Path("/usr/bin/chromium")
ZOO = "zoo"
MAX_PAGE_BYTES = 2_000_000


@pytest.fixture(scope="module")
def site(tmp_path_factory, request):
    """The golden quickstart records (real runs: failed, killed, diverged included) with figures, and a zoo-sized
    suite without, reported into one site."""
    root = tmp_path_factory.mktemp("site") / "results"
    shutil.copytree(DATA / "golden", root)
    request.getfixturevalue("zoo_suite")(root, ZOO)
    report("quickstart", root, formats=["md", "csv", "site"])
    report(ZOO, root, formats=["site"], plots=False)
    return root, root / "leaderboards"


def _local_links(page: Path) -> list[Path]:
    html = page.read_text()
    return [(page.parent / link).resolve() for link in re.findall(r'(?:src|href)="([^"#:]+)"', html)]


def test_the_site_is_a_self_contained_folder(site):
    root, out = site
    assert (out / "index.html").exists()
    for suite in ("quickstart", ZOO):
        page = out / SITE_DIR / f"{suite}.html"
        links = _local_links(page)
        assert all(link.exists() for link in links), [str(p) for p in links if not p.exists()]
        assert all(out.resolve() in link.parents for link in links)  # nothing outside the site's folder
        html = page.read_text()
        assert "http://" not in html and "https://" not in html  # no network: no CDN, no font, no analytics
        assert str(root) not in html and str(out) not in html  # no absolute paths
        weight = page.stat().st_size + sum(link.stat().st_size for link in set(links)
                                           if link.suffix in (".js", ".css", ".png"))
        assert weight < MAX_PAGE_BYTES, (suite, weight)
    index = (out / "index.html").read_text()
    assert 'href="site/quickstart.html"' in index and f'href="site/{ZOO}.html"' in index


def test_vendored_assets_are_the_pinned_files(site):
    _, out = site
    assets = out / SITE_DIR / "assets"
    assert sorted(p.name for p in assets.iterdir()) == sorted(ASSET_FILES)
    vendor = json.loads((assets / "VENDOR.json").read_text())["tabulator-tables"]
    assert vendor["version"] == "6.5.3" and vendor["license"] == "MIT"
    for name, digest in vendor["files"].items():
        assert hashlib.sha256((assets / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (assets / vendor["license_file"]).read_text()
    assert (assets / "tabulator.min.js").read_text().startswith("/* Tabulator v6.5.3")


def test_the_site_is_byte_stable(site, tmp_path):
    root, out = site
    again = tmp_path / "again"
    report("quickstart", root, out_dir=again, formats=["md", "csv", "site"])
    report(ZOO, root, out_dir=again, formats=["site"], plots=False)
    for path in sorted(p for p in again.rglob("*") if p.is_file()):
        assert path.read_bytes() == (out / path.relative_to(again)).read_bytes(), path.name


def test_a_column_the_board_gains_appears_on_the_page_without_a_site_change(site):
    root, _ = site
    runs = load_runs(root, "quickstart")
    board = build_leaderboard(runs, suite="quickstart")
    board.cells["sig_group"] = ["a", "a", "b", "ab"][: len(board.cells)]  # e.g. a significance letter
    html = suite_page(board, runs)
    data = json.loads(re.search(r'<script type="application/json" id="qbench-data">(.*?)</script>', html,
                                re.S).group(1).replace("<\\/", "</"))
    column = next(c for c in data["columns"] if c["source"] == "sig_group")
    assert column["group"] == "more" and [r["sig_group__text"] for r in data["rows"]] == list(board.cells["sig_group"])


def test_report_all_reports_every_suite_into_one_index(site, tmp_path):
    root, _ = site
    (root / "mlruns" / "0" / "abc").mkdir(parents=True)  # a tracker's folder is not a suite
    paths = report_all(root, out_dir=tmp_path / "all", formats=["site"], plots=False)
    assert {p.name for p in paths} >= {"quickstart.html", f"{ZOO}.html", "index.html", "quickstart.csv"}
    summaries = sorted(p.stem for p in (tmp_path / "all" / SITE_DIR).glob("*.json"))
    assert summaries == ["quickstart", ZOO]


def _csv(out: Path, suite: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO((out / f"{suite}.csv").read_text()), keep_default_na=False, dtype=str)


def _column_texts(page, field: str) -> list[str]:
    return page.eval_on_selector_all(f'#leaderboard .tabulator-row .tabulator-cell[tabulator-field="{field}"]',
                                     "cells => cells.map(c => c.textContent.trim())")


def test_the_page_in_a_real_browser(site):
    _, out = site
    assert CHROMIUM.exists(), "the browser test needs Debian's chromium: apt-get install -y chromium"
    csv = _csv(out, ZOO)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            messages, requests = [], []
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((out / SITE_DIR / f"{ZOO}.html").as_uri())
            page.wait_for_function("window.qbench && window.qbench.ready", timeout=30_000)
            assert messages == []
            assert requests and all(url.startswith("file://") for url in requests)

            # The numbers are the CSV's: every row's value at full precision, and its text.
            rows = page.evaluate("window.qbench.table.getData()")
            assert len(rows) == len(csv) == len(_column_texts(page, "mean"))
            by_key = {r["_key"]: r for r in rows}
            for _, cell in csv.iterrows():
                row = by_key[" | ".join([cell["method"], cell["dataset"], cell["arch"], cell["bits"], cell["policy"]])]
                assert row["mean"] == float(cell["mean"])
                assert row["mean__text"] == f"{float(cell['mean']):.2f} ± {float(cell['std']):.2f}"
                rank = None if pd.isna(cell["rank"]) or cell["rank"] == "" else float(cell["rank"])
                assert row.get("rank") == rank and row["n"] == int(cell["n"])
                if rank is None and cell["bits"] != FP_BITS:  # two seeds: the paired test was not possible
                    assert row["rank__text"] == "no test"

            # Sorting by the metric reorders the rows as the CSV's means sort: best first, then the other way.
            means = [round(float(m), 2) for m in csv["mean"]]
            assert [float(t.split(" ± ")[0]) for t in _column_texts(page, "mean")] != sorted(means, reverse=True)
            for expected in (sorted(means, reverse=True), sorted(means)):
                page.click('#leaderboard .tabulator-col[tabulator-field="mean"] .tabulator-col-title')
                assert [float(t.split(" ± ")[0]) for t in _column_texts(page, "mean")] == expected

            # A filter hides exactly the other rows; the method filter keeps a method's tuned row.
            page.select_option("#filter-bits", "W1A1")
            assert set(_column_texts(page, "bits")) == {"W1A1"}
            assert len(_column_texts(page, "bits")) == (csv["bits"] == "W1A1").sum()
            page.select_option("#filter-method", "ste")
            assert sorted(_column_texts(page, "method")) == ["ste", "ste (tuned)"]
            assert page.text_content("#row-count") == f"2 of {len(csv)} rows"

            # A row's runs: clicking it shows exactly the runs of that cell.
            page.click("#leaderboard .tabulator-row >> nth=0")
            shown_runs = page.evaluate("window.qbench.runs.getData('active').map(r => r.run_id)")
            cell = csv[(csv["bits"] == "W1A1") & (csv["method"] == _column_texts(page, "method")[0])].iloc[0]
            assert len(shown_runs) == int(cell["n_runs"]) and all("W1A1" in r for r in shown_runs)
            page.click("#filter-reset")
            assert page.text_content("#row-count") == f"{len(csv)} of {len(csv)} rows"

            # The quickstart page: its figures load, and the screenshot a person would see is kept for CI.
            page.goto((out / SITE_DIR / "quickstart.html").as_uri())
            page.wait_for_function("window.qbench && window.qbench.ready", timeout=30_000)
            page.eval_on_selector_all("#figures img", "imgs => imgs.forEach(i => i.loading = 'eager')")
            page.wait_for_function("[...document.querySelectorAll('#figures figure:not(details figure) img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            assert messages == []
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")


def test_the_cli_writes_one_suite_or_every_suite(site, tmp_path, capsys):
    root, _ = site
    assert main(["report", "suite=quickstart", f"results_dir={root}", "--format", "site", "--no-plots",
                 "--out", str(tmp_path / "one")]) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["index.html", "quickstart.csv", SITE_DIR]
    assert main(["report", "--all", f"results_dir={root}", "--format", "site", "--no-plots",
                 "--out", str(tmp_path / "all")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"site: {tmp_path / 'all' / 'index.html'}")
    assert sorted(p.stem for p in (tmp_path / "all" / SITE_DIR).glob("*.html")) == ["quickstart", ZOO]
    assert main(["report", "--all", "suite=quickstart", f"results_dir={root}"]) == 2
    assert "only results_dir" in capsys.readouterr().err


def test_a_theory_board_gets_a_page_with_its_own_columns_and_runs():
    cells = pd.DataFrame({"part": ["estimator", "estimator", "recurrence"], "name": ["relu", "relu", "binary"],
                          "metric": ["cos_mean", "cos_min", "n_visits"], "n": [1, 1, 1],
                          "mean": [0.61, 0.02, 12.0]})
    board = TheoryBoard("theory-toy", pd.DataFrame({"estimator": ["relu"]}), cells, header=["a `theory` suite"])
    runs = pd.DataFrame({"suite": ["theory-toy"] * 2, "run_id": ["relu_s0", "binary_s0"], "status": ["complete"] * 2,
                         "seed": [0, 0], "theory_part": ["estimator", "recurrence"], "estimator": ["relu", None],
                         "quantizer": [None, "binary"]})
    html = suite_page(board, runs)
    data = json.loads(re.search(r'id="qbench-data">(.*?)</script>', html, re.S).group(1).replace("<\\/", "</"))
    assert [c["key"] for c in data["columns"]] == list(cells.columns)
    assert [f["label"] for f in data["filters"]] == ["part", "name", "metric"]
    assert [r["cell"] for r in data["runs"]] == ["recurrence | binary", "estimator | relu"]
    assert {r["_key"] for r in data["rows"]} == {"estimator | relu", "recurrence | binary"}
    assert "<code>theory</code>" in html and "estimator or quantizer and check" in html


def test_the_page_marks_the_paired_tests_top_group_and_rank(tmp_path, write_run):
    """Three paired seeds: the clearly better method is the top group (bold on the page, rank 1, its Holm p in the
    tooltip of the others), the worse one has rank 2 — the same answer as the tables'."""
    from qbench.report.site_data import site_columns, site_rows

    for seed, noise in enumerate((0.0, 0.3, -0.2)):
        write_run(tmp_path, "bcgd", "W1A4", seed, 95.0 + noise, suite="paired")
        write_run(tmp_path, "ste", "W1A4", seed, 90.0 + noise + 0.05 * seed, suite="paired")
    board = build_leaderboard(load_runs(tmp_path, "paired"), suite="paired")
    columns, _ = site_columns(board)
    rows = {r["_method"]: r for r in site_rows(board, columns)}
    assert rows["bcgd"].get("_top") is True and "_top" not in rows["ste"]
    assert (rows["bcgd"]["rank__text"], rows["ste"]["rank__text"]) == ("1", "2")
    assert rows["ste"]["rank__tip"].startswith("significantly worse than the best (paired Δ to the best -")
    cells = board.cells.set_index("method")
    assert bool(cells.loc["bcgd", "top_group"]) and not bool(cells.loc["ste", "top_group"])
