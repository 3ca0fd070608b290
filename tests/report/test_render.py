"""qbench.report.render: Markdown text, byte-stable writers, the top-group marks in Markdown/HTML/LaTeX, format
errors."""

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

# bcgd − ste = 5, 4, 3 on seeds 0, 1, 2: paired t = 4 / (1/√3) = 6.93 with 2 degrees of freedom, p = 0.020 (one pair:
# Holm changes nothing), so bcgd alone is the top group (bold) and ste ranks 2.
EXPECTED_TWO_METHODS = """\
| method   | resnet20_cifar W1A4    | resnet20_cifar W1A4 rank   |
|:---------|:-----------------------|:---------------------------|
| bcgd     | **89.00 ± 1.00 (n=3)** | 1                          |
| ste      | 85.00 ± 2.00 (n=3)     | 2                          |"""


def _two_methods(root, write_run):
    for seed, (a, b) in enumerate([(88.0, 83.0), (89.0, 85.0), (90.0, 87.0)]):
        write_run(root, "bcgd", "W1A4", seed, a)
        write_run(root, "ste", "W1A4", seed, b)
    return build_leaderboard(load_runs(root, SUITE))


def test_markdown_matches_expected_text(tmp_path, write_run):
    markdown = render_markdown(_two_methods(tmp_path, write_run))
    accuracy_table = markdown.split("## Accuracy (test_top1)\n\n", 1)[1].split("\n\n", 1)[0]
    assert accuracy_table == EXPECTED_TWO_METHODS
    significance = markdown.split("## Significance (α = 0.05)\n\n", 1)[1].split("\n\n", 1)[0]
    assert significance.splitlines()[-1] == (
        "| resnet20_cifar W1A4 | 3       | paired t-test over seeds, Holm (α = 0.05) | bcgd (best, 89.00) "
        "| rank 2: ste (-4.00, p=0.020) |")
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


def test_html_bolds_the_top_group(tmp_path, write_run):
    text = render_html(_two_methods(tmp_path, write_run))
    assert 'id="T_qbench_accuracy"' in text  # the fixed uuid
    style = text.split("</style>", 1)[0]
    # bcgd is row 0, column 1 (W1A4): the top group
    assert "#T_qbench_accuracy_row0_col1" in style and "font-weight: bold" in style
    assert 'id="T_qbench_accuracy_row0_col1" class="data row0 col1" >89.00 ± 1.00 (n=3)</td>' in text
    assert "#T_qbench_accuracy_row1_col1" not in style
    assert 'id="T_qbench_significance"' in text  # the tests in words


def test_latex_escapes_and_bolds(tmp_path, write_run):
    text = render_latex(_two_methods(tmp_path, write_run))
    assert r"resnet20\_cifar W1A4" in text and r"$\pm$" in text
    assert r"\textbf{89.00 $\pm$ 1.00 (n=3)}" in text and r"\textbf{85.00" not in text
    assert "\\begin{tabular}" in text and "\\toprule" in text


def test_report_rejects_unknown_format(tmp_path, suite_runs):
    with pytest.raises(QbenchError, match="unknown report format 'pdf'"):
        write_leaderboard(suite_runs, tmp_path, SUITE, formats=("pdf",))


def test_import_qbench_does_not_import_matplotlib():
    code = "import sys, qbench; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys, qbench.report; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
