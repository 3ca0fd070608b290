"""The comparison across columns end to end: ``qbench report`` of a suite with enough columns states Friedman's test and
Nemenyi's critical difference (checked against scipy and the formula) and draws the CD diagram as PNG and SVG,
byte-stable; with too few columns it says so and draws nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qbench.report import build_leaderboard, load_runs, report
from qbench.report.cd_diagram import write_cd_diagram

SUITE = "toy"
BITS = ("W1A1", "W1A2", "W1A4")
# Per column, per method: four seeds. "a" is best and "d" worst in every column, b and c swap places.
MEANS = {"W1A1": {"a": 80.0, "b": 76.0, "c": 75.0, "d": 70.0}, "W1A2": {"a": 85.0, "b": 82.0, "c": 83.0, "d": 79.0},
         "W1A4": {"a": 90.0, "b": 88.5, "c": 88.0, "d": 86.0}}
NOISE = (0.0, 0.3, -0.2, 0.1)


def _suite(root, write_run):
    for bits in BITS:
        for method, mean in MEANS[bits].items():
            for seed, noise in enumerate(NOISE):
                write_run(root, method, bits, seed, mean + noise * (1 + "abcd".index(method)))
    for seed in range(4):
        write_run(root, "fp", "W32A32", seed, 95.0)


def test_friedman_over_the_columns_matches_scipy_and_the_nemenyi_formula(tmp_path, write_run):
    _suite(tmp_path, write_run)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    friedman = board.friedman
    cell_means = np.array([[np.mean([MEANS[b][m] + n * (1 + "abcd".index(m)) for n in NOISE]) for m in "abcd"]
                           for b in BITS])
    assert friedman.labels == tuple("abcd") and friedman.n_blocks == 3
    assert friedman.statistic == pytest.approx(stats.friedmanchisquare(*cell_means.T).statistic)
    assert friedman.avg_ranks == pytest.approx(tuple(stats.rankdata(-cell_means, axis=1).mean(axis=0)))
    q = stats.studentized_range.ppf(0.95, 4, np.inf) / math.sqrt(2)
    assert friedman.cd == pytest.approx(q * math.sqrt(4 * 5 / (6 * 3)))
    # a ranks 1 and d ranks 4 in all three columns: with 3 columns the exact permutation p-value of this concordance
    # is small, and the rank gap 3 exceeds the CD (2.71): d is worse than a; b, c are within the CD of both
    assert friedman.significant and friedman.differ("a", "d") and not friedman.differ("a", "b")
    row = board.significance.set_index("setting").loc["across 3 quantized columns"]
    assert row["top group"] == "a (1.00), b (2.33), c (2.67)" and row["below the top group"] == "d (4.00)"
    statement = next(n for n in board.notes if n.startswith("Across the 3 quantized columns"))
    assert "a, b, c are indistinguishable" in statement and "d is worse than a" in statement
    assert "mean rank" in board.table.columns
    assert board.cells.set_index(["method", "bits"])["mean_rank"].xs("W1A1", level="bits").to_dict() == \
        pytest.approx({"a": 1.0, "b": 7 / 3, "c": 8 / 3, "d": 4.0})


def test_report_draws_the_cd_diagram_byte_stable(tmp_path, write_run):
    _suite(tmp_path, write_run)
    paths = report(SUITE, results_dir=tmp_path, plots=True, formats=("md",))
    cd = {p.suffix: p.read_bytes() for p in paths if p.stem == f"{SUITE}_cd"}
    assert set(cd) == {".png", ".svg", ".pdf"}  # like every figure (qbench.report.figure.save_figure)
    assert cd[".png"].startswith(b"\x89PNG\r\n\x1a\n") and b"<svg" in cd[".svg"]
    assert b"<dc:date>" not in cd[".svg"]
    # the same records give the same bytes
    again = write_cd_diagram(build_leaderboard(load_runs(tmp_path, SUITE)).friedman, tmp_path / "again", SUITE)
    assert {p.suffix: p.read_bytes() for p in again} == cd


def test_too_few_columns_say_so_and_draw_nothing(tmp_path, write_run):
    for method, mean in MEANS["W1A1"].items():
        for seed, noise in enumerate(NOISE):
            write_run(tmp_path, method, "W1A1", seed, mean + noise)
            write_run(tmp_path, method, "W1A2", seed, mean + 1 + noise)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert board.friedman is None
    assert ("Across columns: no Friedman test (2 quantized columns with the same methods: a test across columns "
            "needs at least 3).") in board.notes
    assert write_cd_diagram(board.friedman, tmp_path / "out", SUITE) == []


def test_methods_and_columns_outside_a_complete_design_are_left_out(tmp_path, write_run):
    _suite(tmp_path, write_run)
    for seed, noise in enumerate(NOISE):
        write_run(tmp_path, "e", "W1A1", seed, 60.0 + noise)  # a method of one column only
        write_run(tmp_path, "a", "W2A2", seed, 91.0 + noise)  # a column of one method only
    friedman = build_leaderboard(load_runs(tmp_path, SUITE)).friedman
    assert friedman.labels == tuple("abcd") and friedman.n_blocks == 3
