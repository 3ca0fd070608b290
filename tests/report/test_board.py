"""qbench.report.board: cell statistics against numpy/scipy, honesty of the cells (failed, killed, missing seeds),
tie-aware ranks and the top group against scipy's paired t-test and statsmodels' Holm, Δ FP, row labels, top-5 and
paper references."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from statsmodels.stats.multitest import multipletests

from qbench.bits import FP_BITS
from qbench.config.policy import POLICY_NAMES
from qbench.report import build_leaderboard, load_runs, render_markdown, write_leaderboard
from qbench.report.paper_refs import PAPER_REFS, match_paper_refs

SUITE = "toy"


def test_mean_std_ci_match_numpy_and_scipy(tmp_path, write_run, cell):
    values = [70.13, 71.31, 72.02, 69.5]
    for seed, acc in enumerate(values):
        write_run(tmp_path, "bcgd", "W1A4", seed, acc)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    row = board.cells.iloc[0]
    array = np.array(values)
    mean, std = array.mean(), array.std(ddof=1)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=std / np.sqrt(len(values)))
    assert row["n"] == 4
    assert row["mean"] == pytest.approx(mean, rel=1e-12)
    assert row["std"] == pytest.approx(std, rel=1e-12)
    assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    # the half-width is t_{0.975, n-1}·s/√n, not 1.96·s/√n
    assert high - mean == pytest.approx(stats.t.ppf(0.975, 3) * std / 2, rel=1e-12)
    assert cell(board, "bcgd", "resnet20_cifar W1A4") == f"{mean:.2f} ± {std:.2f} (n=4)"


def test_csv_has_numeric_columns_matching_the_cells(tmp_path, suite_runs):
    paths = write_leaderboard(suite_runs, tmp_path / "out", SUITE, formats=("csv",))
    csv = pd.read_csv(paths[0])
    for column in ("mean", "std", "n", "ci95_low", "ci95_high", "gap_to_fp", "rank", "vs_best_diff", "vs_best_p",
                   "mean_rank"):
        assert pd.api.types.is_numeric_dtype(csv[column]), column
    bcgd = csv[(csv["method"] == "bcgd") & (csv["bits"] == "W1A4")].iloc[0]
    assert bcgd["mean"] == pytest.approx(np.mean([88.0, 88.4, 88.9]))
    assert bcgd["n"] == 3 and bcgd["n_failed"] == 0
    ste = csv[(csv["method"] == "ste") & (csv["bits"] == "W1A4")].iloc[0]
    assert (ste["n"], ste["n_failed"], ste["n_runs"]) == (2, 1, 3)


def test_failed_killed_and_missing_runs_are_shown_not_dropped(suite_runs, cell):
    board = build_leaderboard(suite_runs)
    assert cell(board, "ste", "resnet20_cifar W1A4") == "86.70 ± 0.99 (n=2, 1 failed)"
    assert cell(board, "ste", "resnet20_cifar W1A2") == "80.50 ± 0.71 (n=2, 1 incomplete)"
    assert cell(board, "aqe", "resnet20_cifar W1A2") == "79.00 (n=1, 2 missing)"
    assert cell(board, "bcgd", "resnet20_cifar W1A2") == "diverged"
    markdown = render_markdown(board)
    assert "(n=2, 1 failed)" in markdown and "| diverged " in markdown and "2 missing" in markdown
    assert "failed: `ste-cifar10-resnet20_cifar-W1A4-fp-cpu-s2`: failed at epoch 2" in markdown  # the error is quoted
    assert "1 failed, 3 diverged, 1 incomplete" in markdown


def test_repeated_seed_is_flagged(tmp_path, write_run, cell):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, device="cpu")
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.6, device="cuda", device_name="Test GPU")
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "bcgd", "resnet20_cifar W1A4") == "88.30 ± 0.42 (n=2, 1 repeated seed)"


def test_all_failed_cell_shows_the_status(tmp_path, write_run, cell):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    write_run(tmp_path, "bcgd", "W1A4", 1, 88.5)
    write_run(tmp_path, "ste", "W1A4", 0, status="failed")
    write_run(tmp_path, "ste", "W1A4", 1, status="failed")
    write_run(tmp_path, "aqe", "W1A4", 0, status="failed")
    write_run(tmp_path, "aqe", "W1A4", 1, status="diverged")
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "ste", "resnet20_cifar W1A4") == "failed"
    assert cell(board, "aqe", "resnet20_cifar W1A4") == "failed / diverged"
    assert "resnet20_cifar W1A4 rank" not in board.table.columns  # one method with a result: nothing to rank


def test_gap_to_fp_uses_the_fp_mean_of_the_same_arch(tmp_path, write_run, cell):
    for seed, (fp20, fp56) in enumerate([(91.0, 93.0), (92.0, 94.0)]):
        write_run(tmp_path, "fp", "W32A32", seed, fp20)
        write_run(tmp_path, "fp", "W32A32", seed, fp56, arch="resnet56_cifar")
        write_run(tmp_path, "bcgd", "W1A4", seed, 88.0 + seed)
        write_run(tmp_path, "bcgd", "W1A2", seed, 85.0 + seed)
        write_run(tmp_path, "bcgd", "W1A4", seed, 90.0 + seed, arch="resnet56_cifar")
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    cells = board.cells.set_index(["arch", "bits", "method"])
    assert cells.loc[("resnet20_cifar", "W1A4", "bcgd"), "gap_to_fp"] == pytest.approx(88.5 - 91.5)
    assert cells.loc[("resnet20_cifar", "W1A2", "bcgd"), "gap_to_fp"] == pytest.approx(85.5 - 91.5)
    assert cells.loc[("resnet56_cifar", "W1A4", "bcgd"), "gap_to_fp"] == pytest.approx(90.5 - 93.5)
    assert cell(board, "bcgd", "resnet20_cifar W1A4 Δ FP") == "-3.00"
    assert cell(board, "bcgd", "resnet56_cifar W1A4 Δ FP") == "-3.00"
    assert "resnet20_cifar W32A32 Δ FP" not in board.table.columns  # FP is the reference, not a competitor


def _oracle_ranks(scores: dict[str, list[float]]) -> dict[str, int]:
    """1 + the number of methods significantly better: scipy's paired t-test on every pair, statsmodels' Holm."""
    pairs = list(itertools.combinations(sorted(scores), 2))
    p = [stats.ttest_rel(scores[a], scores[b]).pvalue for a, b in pairs]
    reject = multipletests(p, alpha=0.05, method="holm")[0]
    beaten = dict.fromkeys(scores, 0)
    for (a, b), significant in zip(pairs, reject):
        if significant:
            beaten[b if np.mean(scores[a]) > np.mean(scores[b]) else a] += 1
    return {label: 1 + count for label, count in beaten.items()}


def test_rank_is_the_paired_test_and_the_top_group_is_bold(tmp_path, write_run, cell):
    # "best" beats the others on every seed by a wide margin; "mid" and "close" overlap.
    scores = {"best": [90.0, 90.1, 90.2, 90.3], "mid": [80.0, 82.0, 81.0, 83.0], "close": [81.5, 80.5, 82.5, 81.0]}
    for label, values in scores.items():
        for seed, acc in enumerate(values):
            write_run(tmp_path, label, "W1A4", seed, acc)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    cells = board.cells.set_index("method")
    expected = _oracle_ranks(scores)
    assert expected == {"best": 1, "mid": 2, "close": 2}
    assert {label: cells.loc[label, "rank"] for label in scores} == expected
    assert cells["top_group"].to_dict() == {"best": True, "mid": False, "close": False}
    assert cell(board, "best", "resnet20_cifar W1A4 rank") == "1"
    assert cell(board, "close", "resnet20_cifar W1A4 rank") == "2"
    # the difference to the best, paired, with its Holm p (the oracle's)
    p = [stats.ttest_rel(scores[a], scores[b]).pvalue for a, b in itertools.combinations(sorted(scores), 2)]
    holm = dict(zip(itertools.combinations(sorted(scores), 2), multipletests(p, method="holm")[1]))
    assert cells.loc["mid", "vs_best_p"] == pytest.approx(holm[("best", "mid")], rel=1e-9)
    assert cells.loc["mid", "vs_best_diff"] == pytest.approx(np.mean(scores["mid"]) - np.mean(scores["best"]))
    assert cells.loc["mid", "vs_best_n"] == 4 and np.isnan(cells.loc["best", "vs_best_p"])
    assert list(board.table["method"]) == ["best", "mid", "close"]  # by mean rank (mid's mean is 0.12 higher)
    assert board.table_best.set_index(board.table["method"])["resnet20_cifar W1A4"].to_dict() == \
        {"best": True, "mid": False, "close": False}
    markdown = render_markdown(board)
    assert "| **90.15 ± 0.13 (n=4)** " in markdown and "| 81.38 ± 0.85 (n=4) " in markdown  # bold in Markdown too
    significance = board.significance.set_index("setting").loc["resnet20_cifar W1A4"]
    assert significance["seeds"] == "4" and significance["test"] == "paired t-test over seeds, Holm (α = 0.05)"
    assert significance["top group"] == "best (best, 90.15)"
    p_mid = holm[("best", "mid")]
    assert significance["below the top group"] == f"rank 2: mid (-8.65, p={p_mid:.3f}), rank 2: close (-8.77, p<0.001)"


def test_methods_that_cannot_be_told_apart_share_the_top_rank(tmp_path, write_run, cell):
    # two identical-in-distribution methods: a tie is reported as a tie, not as ranks 1 and 2
    for seed, (a, b) in enumerate([(88.0, 88.2), (89.0, 88.6), (90.0, 90.3)]):
        write_run(tmp_path, "bcgd", "W1A4", seed, a)
        write_run(tmp_path, "ste", "W1A4", seed, b)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert board.cells.set_index("method")["rank"].to_dict() == {"bcgd": 1, "ste": 1}
    assert board.table_best["resnet20_cifar W1A4"].tolist() == [True, True]
    assert _oracle_ranks({"bcgd": [88.0, 89.0, 90.0], "ste": [88.2, 88.6, 90.3]}) == {"bcgd": 1, "ste": 1}


def test_fewer_than_three_paired_seeds_say_no_test(tmp_path, write_run, cell):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    write_run(tmp_path, "ste", "W1A4", 0, 86.0)
    write_run(tmp_path, "ste", "W1A4", 1, 86.5)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "bcgd", "resnet20_cifar W1A4 rank") == "no test (<3 seeds)"
    assert cell(board, "ste", "resnet20_cifar W1A4 rank") == "no test (<3 seeds)"
    assert not board.table_best["resnet20_cifar W1A4"].any()  # nothing is bold without a test
    row = board.significance.set_index("setting").loc["resnet20_cifar W1A4"]
    assert row["test"] == "none: fewer than 3 common seeds" and row["seeds"] == "1–2"


def test_only_seeds_both_methods_have_are_paired(tmp_path, write_run):
    # ste's seed 2 failed and seed 3 is bcgd's only: the pair is tested on seeds 0, 1, 4, 5
    bcgd = {0: 90.0, 1: 91.0, 2: 90.5, 3: 91.2, 4: 90.8, 5: 91.1}
    ste = {0: 88.0, 1: 88.9, 4: 88.7, 5: 89.2}
    for seed, acc in bcgd.items():
        write_run(tmp_path, "bcgd", "W1A4", seed, acc)
    for seed, acc in ste.items():
        write_run(tmp_path, "ste", "W1A4", seed, acc)
    write_run(tmp_path, "ste", "W1A4", 2, status="failed")
    cells = build_leaderboard(load_runs(tmp_path, SUITE)).cells.set_index("method")
    common = sorted(ste)
    assert cells.loc["ste", "vs_best_n"] == 4
    assert cells.loc["ste", "vs_best_p"] == pytest.approx(
        stats.ttest_rel([bcgd[s] for s in common], [ste[s] for s in common]).pvalue, rel=1e-9)
    assert cells.loc["ste", "vs_best_diff"] == pytest.approx(np.mean([ste[s] - bcgd[s] for s in common]))


def test_seeds_chosen_by_seeds_auto_are_not_missing(tmp_path, write_run, cell):
    auto = {"seeds_rule": "auto"}
    for seed in range(5):  # the tied top group got seeds 3 and 4, the clearly worse method stopped at 3
        write_run(tmp_path, "bcgd", "W1A4", seed, 90.0 + 0.2 * seed, result_overrides=auto)
        write_run(tmp_path, "ste", "W1A4", seed, 90.1 + 0.15 * seed, result_overrides=auto)
    for seed in range(3):
        write_run(tmp_path, "aqe", "W1A4", seed, 80.0 + 0.1 * seed, result_overrides=auto)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "aqe", "resnet20_cifar W1A4") == "80.10 ± 0.10 (n=3)"
    assert any(note.startswith("seeds=auto: ") for note in board.notes)
    write_run(tmp_path, "pcg", "W1A4", 0, 85.0)  # a fixed-seed cell keeps its missing seeds
    assert cell(build_leaderboard(load_runs(tmp_path, SUITE)), "pcg", "resnet20_cifar W1A4") == "85.00 (n=1, 4 missing)"


def test_lower_is_better_metric_ranks_ascending(tmp_path, write_run):
    for seed in range(3):
        write_run(tmp_path, "bcgd", "W1A4", seed, 88.0, result_overrides={"test_loss": 0.3 + 0.01 * seed})
        write_run(tmp_path, "ste", "W1A4", seed, 80.0, result_overrides={"test_loss": 0.9 + 0.02 * seed})
    cells = build_leaderboard(load_runs(tmp_path, SUITE), metric="test_loss").cells.set_index("method")
    assert cells.loc["bcgd", "rank"] == 1 and cells.loc["ste", "rank"] == 2
    assert cells.loc["ste", "vs_best_diff"] == pytest.approx(0.6 + 0.01)  # in metric units: a higher loss


def test_fp_is_the_reference_and_tuned_rows_compete_among_themselves(tmp_path, write_run):
    for seed in range(3):
        write_run(tmp_path, "fp", "W32A32", seed, 95.0 + seed)
        write_run(tmp_path, "fp", "W32A32", seed, 96.0 + seed, tuned=True)
        write_run(tmp_path, "bcgd", "W1A4", seed, 90.0 + 0.1 * seed)
        write_run(tmp_path, "ste", "W1A4", seed, 80.0 + 0.2 * seed)
        write_run(tmp_path, "ste", "W1A4", seed, 99.0 - 0.1 * seed, tuned=True)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    cells = board.cells.set_index(["method", "bits"])
    assert pd.isna(cells.loc[("fp", "W32A32"), "rank"]) and not cells.loc[("fp", "W32A32"), "top_group"]
    assert "resnet20_cifar W32A32 rank" not in board.table.columns
    assert cells.loc[("bcgd", "W1A4"), "rank"] == 1 and cells.loc[("ste", "W1A4"), "rank"] == 2
    # ste (tuned) beats every default row, but it is alone among the tuned rows: not ranked against the defaults
    assert pd.isna(cells.loc[("ste (tuned)", "W1A4"), "rank"])
    assert list(board.significance["setting"]) == ["resnet20_cifar W1A4"]


def test_tuned_and_hyperparameter_variants_are_separate_rows(tmp_path, write_run):
    write_run(tmp_path, "ste", "W32A2", 0, 88.0, hparams={"estimator": "identity", "lr": 0.1})
    write_run(tmp_path, "ste", "W32A2", 0, 90.0, hparams={"estimator": "clipped_relu", "lr": 0.1})
    write_run(tmp_path, "ste", "W32A2", 0, 91.0, hparams={"estimator": "clipped_relu", "lr": 0.05}, tuned=True)
    # a hyperparameter that differs only between columns (here a per-bits value) does not split the row
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, hparams={"alpha_init": 0.19})
    write_run(tmp_path, "bcgd", "W1A2", 0, 85.0, hparams={"alpha_init": 0.65})
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert set(board.table["method"]) == {"ste [estimator=identity]", "ste [estimator=clipped_relu]", "ste (tuned)",
                                          "bcgd"}


def test_top5_shown_for_cifar100_and_imagenet_only(tmp_path, write_run, cell):
    for seed in range(2):
        write_run(tmp_path, "bcgd", "W1A4", seed, 60.0 + seed, dataset="cifar100", top5=85.0 + seed)
        write_run(tmp_path, "bcgd", "W1A4", seed, 88.0 + seed, dataset="cifar10", top5=99.0)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "bcgd", "cifar100 resnet20_cifar W1A4 top-5") == "85.50 ± 0.71"
    assert "cifar10 resnet20_cifar W1A4 top-5" not in board.table.columns


def test_paper_reference_only_where_the_setting_matches(tmp_path, write_run, cell):
    # STE paper Table 1 quantizes every activation (policy quantized)
    write_run(tmp_path, "ste", "W32A2", 0, 46.0, hparams={"estimator": "identity"}, policy="quantized")
    write_run(tmp_path, "ste", "W32A2", 0, 88.0, hparams={"estimator": "clipped_relu"}, policy="quantized")
    write_run(tmp_path, "bcgd", "W32A2", 0, 87.0, policy="quantized")
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    column = "resnet20_cifar W32A2 paper (source, setting)"
    assert cell(board, "ste [estimator=identity]", column).startswith("46.52 (STE, Yin et al. ICLR 2019")
    assert "identity STE" in cell(board, "ste [estimator=identity]", column)
    assert cell(board, "ste [estimator=identity]", column).endswith("; policy quantized)")  # the policy is named
    assert cell(board, "ste [estimator=clipped_relu]", column).startswith("88.39 (")
    assert cell(board, "bcgd", column) == ""
    # a record that stores only overridden hyperparameters is compared at the method's registered default
    write_run(tmp_path, "ste", "W32A4", 0, 90.0, result_overrides={"method_hparams": {}}, policy="quantized")
    board = build_leaderboard(load_runs(tmp_path, SUITE), where={"bits": "W32A4"})
    assert cell(board, "ste", "resnet20_cifar W32A4 paper (source, setting)").startswith("91.24 (")
    # the same setting under another policy, or with other layers at other bits: no quote
    other = tmp_path / "other"
    write_run(other, "ste", "W32A4", 0, 90.0, policy="fp")
    assert "resnet20_cifar W32A4 paper (source, setting)" not in build_leaderboard(load_runs(other, SUITE)).table
    mixed = tmp_path / "mixed"
    config = write_run(mixed, "ste", "W32A4", 0, 90.0, policy="quantized") / "config.yaml"
    config.write_text(config.read_text() + "layer_bits: {layer3.*: W32A8}\n")
    assert "resnet20_cifar W32A4 paper (source, setting)" not in build_leaderboard(load_runs(mixed, SUITE)).table
    # another dataset, another policy or another bit-width: no quote
    assert match_paper_refs(dataset="cifar100", arch="resnet20_cifar", bits="W32A2", method="ste",
                            policy="quantized", hparams={"estimator": "identity"}) == []
    imagenet = dict(dataset="imagenet", arch="resnet18.tv_in1k", bits="W1A4", method="bcgd")
    assert [r.value for r in match_paper_refs(**imagenet, policy="quantized")] == [64.36]
    assert [r.value for r in match_paper_refs(**imagenet, policy="fp")] == [65.46]
    assert match_paper_refs(**imagenet) == []  # policy unknown → the number is not quoted
    assert match_paper_refs(**imagenet, policy="last_fp") == []
    assert match_paper_refs(**imagenet, policy="fp", layer_bits={"layer4.*": "W4A4"}) == []  # not the paper's layers
    # a policy written as a mapping is compared by its canonical name
    lsq = dict(dataset="imagenet", arch="resnet18", bits="W4A4", method="lsq",
               hparams={"scale_grad": True, "per_channel": False})
    assert [r.value for r in match_paper_refs(**lsq, policy={"first": "W8A8", "last": "W8A8"})] == [71.1]
    assert match_paper_refs(**lsq, policy={"first": "W8A8", "last": "fp"}) == []


def test_every_paper_reference_names_its_setting():
    for ref in PAPER_REFS:
        assert ref.source and ref.setting and ref.spec, ref
        # a quantized number is meaningless without the first/last-layer precision it was measured under
        assert (ref.policy in POLICY_NAMES) if ref.bits != FP_BITS else ref.policy is None, ref


def test_fp_reference_survives_view_filters(suite_runs, cell):
    board = build_leaderboard(suite_runs, where={"bits": "W1A4"})
    assert "resnet20_cifar W1A2" not in board.table.columns
    assert "fp" not in set(board.table["method"])
    # the FP reference survives a view filter on bits/method, but not a filter that changes the setting
    assert cell(board, "bcgd", "resnet20_cifar W1A4 Δ FP") == "-3.07"
    seed0 = build_leaderboard(suite_runs, where={"seed": "0", "bits": "W1A4"})
    assert cell(seed0, "bcgd", "resnet20_cifar W1A4 Δ FP") == "-3.00"  # 88.0 vs FP seed 0 (91.0), not the FP mean


def test_seeds_run_with_different_configs_are_not_pooled(tmp_path, write_run, cell):
    """Issue #14: the seeds of one cell are pooled only when their configs agree on everything that changes a result
    (qbench.config.result_config); presentation keys (data.root, results_dir) may differ."""
    for seed, acc in enumerate([70.0, 71.0, 72.0]):
        run_dir = write_run(tmp_path, "bcgd", "W1A4", seed, acc)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config["data"]["root"] = f"/elsewhere/{seed}"  # hardware/presentation: still one experiment
        if seed == 2:
            config["train"]["lr"] = 0.5
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    text = cell(board, "bcgd", "resnet20_cifar W1A4")
    assert text.startswith("not pooled") and "train.lr" in text
    row = board.cells.iloc[0]
    assert row["n"] == 0 and np.isnan(row["mean"]) and row["not_pooled"] == "train.lr"
    (tmp_path / SUITE).joinpath(sorted(p.name for p in (tmp_path / SUITE).iterdir())[-1]).rename(tmp_path / "aside")
    again = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(again, "bcgd", "resnet20_cifar W1A4").startswith("70.50 ± 0.71 (n=2")
