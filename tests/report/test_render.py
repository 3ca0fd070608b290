"""qbench.report.render: Markdown text, byte-stable writers, HTML/LaTeX best-value marks, format errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from qbench.errors import QbenchError
from qbench.report import (
    build_leaderboard,
    load_runs,
    render_html,
    render_latex,
    render_markdown,
    report,
    write_leaderboard,
)

SUITE = "toy"

EXPECTED_TWO_METHODS = """\
| method   | resnet20_cifar W1A4   | resnet20_cifar W1A4 rank   |
|:---------|:----------------------|:---------------------------|
| bcgd     | 89.00 ± 1.00 (n=3)    | 1 (1.00)                   |
| ste      | 85.00 ± 2.00 (n=3)    | 2 (1.00)                   |"""


def test_markdown_matches_expected_text(tmp_path, write_run):
    for seed, (a, b) in enumerate([(88.0, 83.0), (89.0, 85.0), (90.0, 87.0)]):
        write_run(tmp_path, "bcgd", "W1A4", seed, a)
        write_run(tmp_path, "ste", "W1A4", seed, b)
    markdown = render_markdown(build_leaderboard(load_runs(tmp_path, SUITE)))
    table = "\n".join(line for line in markdown.splitlines() if line.startswith("|"))
    accuracy_table = table.split("\n| method ", 1)[0]  # drop the cost table that follows
    assert accuracy_table == EXPECTED_TWO_METHODS
    assert markdown.startswith(f"# qbench leaderboard: {SUITE}\n")
    assert "6 runs (6 complete); devices: cpu: Test CPU; records from qbench 0.1.0; report by qbench" in markdown


def test_outputs_are_byte_stable_across_directories_and_mtimes(tmp_path, standard_suite):
    outputs = []
    for index, name in enumerate(("first", "second")):
        root = tmp_path / name / "results"
        standard_suite(root)
        for path in root.rglob("*"):
            os.utime(path, (1_000_000 + index * 777, 1_000_000 + index * 777))
        paths = report(SUITE, results_dir=root, plots=False)
        assert sorted(p.name for p in paths) == [f"{SUITE}.{ext}" for ext in ("csv", "html", "md", "tex")]
        outputs.append({p.suffix: p.read_bytes() for p in paths})
    for suffix in (".md", ".csv", ".html", ".tex"):
        assert outputs[0][suffix] == outputs[1][suffix], suffix
        assert b"tmp" not in outputs[0][suffix]  # no absolute paths leak into the tables


def test_html_bolds_the_best_value_of_each_column(suite_runs):
    text = render_html(build_leaderboard(suite_runs))
    assert 'id="T_qbench_accuracy"' in text  # the fixed uuid
    style = text.split("</style>", 1)[0]
    # bcgd (tuned) is row 1, column 2 (W1A4): the best W1A4 mean
    assert "#T_qbench_accuracy_row1_col2" in style and "font-weight: bold" in style
    assert 'id="T_qbench_accuracy_row1_col2" class="data row1 col2" >89.10 ± 0.10 (n=3)</td>' in text
    assert "#T_qbench_accuracy_row2_col2" not in style


def test_latex_escapes_and_bolds(suite_runs):
    text = render_latex(build_leaderboard(suite_runs))
    assert r"resnet20\_cifar W1A4" in text and r"$\pm$" in text
    assert r"\textbf{89.10 $\pm$ 0.10 (n=3)}" in text
    assert "\\begin{tabular}" in text and "\\toprule" in text


def test_report_rejects_unknown_format(tmp_path, suite_runs):
    with pytest.raises(QbenchError, match="unknown report format 'pdf'"):
        write_leaderboard(suite_runs, tmp_path, SUITE, formats=("pdf",))


def test_import_qbench_does_not_import_matplotlib():
    code = "import sys, qbench; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys, qbench.report; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
