"""qbench.report.leaderboard: loading run records, statistics, honesty of the tables, byte-stable writers, paper references.

Every test writes real run directories (config.yaml, metrics.jsonl, result.json, env.json) with the qbench.results
writers into tmp_path, so the loader is exercised on the same files the runner produces.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from qbench.errors import QbenchError
from qbench.report.leaderboard import (
    build_leaderboard,
    filter_runs,
    load_bench,
    load_runs,
    parse_where,
    render_markdown,
    report,
    write_leaderboard,
)
from qbench.report.paper_refs import PAPER_REFS, match_paper_refs
from qbench.results import SCHEMA_VERSION, atomic_write_json, atomic_write_text, write_jsonl

SUITE = "toy"


def write_run(
    root: Path,
    method: str,
    bits: str,
    seed: int,
    acc: float | None = None,
    *,
    suite: str = SUITE,
    arch: str = "resnet20_cifar",
    dataset: str = "cifar10",
    status: str = "complete",
    tuned: bool = False,
    hparams: dict | None = None,
    policy: str = "fp",
    device: str = "cpu",
    device_name: str = "Test CPU",
    train_img_s: float = 100.0,
    top5: float | None = None,
    val_curve: list[float] | None = None,
    with_result: bool = True,
    result_overrides: dict | None = None,
) -> Path:
    """One run directory as the runner writes it; ``with_result=False`` mimics a run killed before finishing."""
    wbits, abits = (int(x) for x in bits[1:].split("A"))
    variant = "".join(f"-{k}={v}" for k, v in sorted((hparams or {}).items()))
    run_id = f"{method}{'-tuned' if tuned else ''}{variant}-{dataset}-{arch}-{bits}-{policy}-{device}-s{seed}"
    run_dir = root / suite / run_id
    config = {
        "suite": suite, "seed": seed, "bits": bits, "tuned": tuned,
        "method": {"name": method, "hparams": hparams or {}},
        "model": {"arch": arch}, "data": {"name": dataset, "root": "/data"},
        "train": {"epochs": 3, "lr": 0.1, "milestones": [1, 2]}, "policy": {"first_last": policy},
    }
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=True))
    curve = val_curve if val_curve is not None else [(acc or 50.0) - 20, (acc or 50.0) - 10, acc or 50.0]
    write_jsonl(run_dir / "metrics.jsonl", [
        dict(epoch=i, lr=0.1, train_loss=2.0 - 0.5 * i, train_acc=v + 1, val_loss=2.1 - 0.5 * i, val_top1=v,
             val_top5=None, epoch_time_s=10.0, train_img_s=train_img_s, wall_time_s=10.0 * (i + 1),
             loss_q=1.0 / (i + 1), hamming_to_best=0.3 / (i + 1), flip_rate=0.05 / (i + 1))
        for i, v in enumerate(curve)
    ])
    atomic_write_json(run_dir / "env.json", {"qbench": "0.1.0", "torch": "2.x", "device": device})
    if not with_result:
        return run_dir
    result = dict(
        schema_version=SCHEMA_VERSION, qbench_version="0.1.0", suite=suite, run_id=run_id, status=status,
        error=None if status == "complete" else f"{status} at epoch 2", method=method, tuned=tuned,
        method_hparams=hparams or {}, arch=arch, bits=bits, wbits=wbits, abits=abits, policy=policy, seed=seed,
        dataset=dataset, epochs=3, epochs_completed=3 if status == "complete" else 2,
        test_top1=acc if status == "complete" else None, test_top5=top5, test_loss=0.5, val_top1=curve[-1],
        best_val_top1=max(curve), train_loss=0.4, wall_time_s=30.0, train_img_s=train_img_s,
        infer_img_s=3 * train_img_s, peak_mem_mb=512.0, device=device, device_name=device_name, num_params=1000,
        num_quantized_params=900, model_size_bits=900 * wbits + 100 * 32,
    )
    result.update(result_overrides or {})
    atomic_write_json(run_dir / "result.json", result)
    return run_dir


def standard_suite(root: Path) -> None:
    """FP, two methods (one also tuned), a failed run, a diverged cell, a killed run and a missing seed."""
    for seed, acc in enumerate([91.0, 91.5, 92.0]):
        write_run(root, "fp", "W32A32", seed, acc)
    for seed, acc in enumerate([88.0, 88.4, 88.9]):
        write_run(root, "bcgd", "W1A4", seed, acc)
    for seed, acc in enumerate([89.0, 89.2, 89.1]):
        write_run(root, "bcgd", "W1A4", seed, acc, tuned=True)
    write_run(root, "ste", "W1A4", 0, 86.0)
    write_run(root, "ste", "W1A4", 1, 87.4)
    write_run(root, "ste", "W1A4", 2, status="failed")
    for seed in range(3):
        write_run(root, "bcgd", "W1A2", seed, status="diverged")
    write_run(root, "ste", "W1A2", 0, 80.0)
    write_run(root, "ste", "W1A2", 1, 81.0)
    write_run(root, "ste", "W1A2", 2, with_result=False)  # killed
    write_run(root, "aqe", "W1A2", 0, 79.0)  # seeds 1 and 2 never ran


@pytest.fixture
def suite_runs(tmp_path: Path) -> pd.DataFrame:
    standard_suite(tmp_path / "results")
    return load_runs(tmp_path / "results", SUITE)


def cell(board, method: str, column: str) -> str:
    table = board.table.set_index("method")
    return table.loc[method, column]


# ------------------------------------------------------------------------------------------------------------ load
def test_load_runs_flattens_config_results_and_marks_killed_runs(suite_runs):
    df = suite_runs
    assert len(df) == 19
    assert {"cfg.train.lr", "cfg.data.name", "cfg.method.name", "cfg.policy.first_last", "env.torch"} <= set(df.columns)
    assert (df["cfg.train.lr"] == 0.1).all()
    assert df["cfg.train.milestones"].iloc[0] == "[1, 2]"  # lists become JSON text, one scalar per cell
    killed = df[df["run_id"].str.contains("ste-cifar10-resnet20_cifar-W1A2-fp-cpu-s2")].iloc[0]
    assert killed["status"] == "incomplete"
    # fields recovered from config.yaml so the killed run lands in its cell
    assert (killed["method"], killed["bits"], killed["seed"], killed["arch"]) == ("ste", "W1A2", 2, "resnet20_cifar")
    assert np.isnan(killed["test_top1"]) and killed["epochs_completed"] == 3
    assert isinstance(df["metrics"].iloc[0], list) and len(df["metrics"].iloc[0]) == 3
    # output order does not depend on directory listing order
    assert list(df["run_id"]) == sorted(df["run_id"])


def test_load_all_suites_skips_bench_and_leaderboard_dirs(tmp_path):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, suite="a")
    write_run(tmp_path, "ste", "W1A4", 0, 86.0, suite="b")
    atomic_write_json(tmp_path / "a" / "bench" / "x.json", [{"method": "bcgd"}])
    atomic_write_text(tmp_path / "leaderboards" / "a.md", "old report")
    df = load_runs(tmp_path)
    assert list(df["suite"]) == ["a", "b"]
    assert list(load_runs(tmp_path, "b")["method"]) == ["ste"]


def test_empty_or_missing_results_dir_is_one_clear_line(tmp_path):
    for results in (tmp_path / "nothing", tmp_path):
        with pytest.raises(QbenchError) as info:
            report(SUITE, results_dir=results)
        message = str(info.value)
        assert "\n" not in message
        assert f"no run records under {results / SUITE}" in message
        assert f"qbench run suite={SUITE}" in message


def test_newer_schema_version_raises_naming_file_and_version(tmp_path):
    run_dir = write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, result_overrides={"schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(QbenchError) as info:
        load_runs(tmp_path, SUITE)
    message = str(info.value)
    assert str(run_dir / "result.json") in message and f"schema_version {SCHEMA_VERSION + 1}" in message
    assert "upgrade qbench" in message and "\n" not in message


def test_old_or_unversioned_records_load_with_nan_for_missing_fields(tmp_path):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, result_overrides={"schema_version": 0})
    run_dir = write_run(tmp_path, "bcgd", "W1A4", 1, 89.0)
    result = json.loads((run_dir / "result.json").read_text())
    for key in ("schema_version", "peak_mem_mb", "infer_img_s", "model_size_bits"):
        del result[key]
    atomic_write_json(run_dir / "result.json", result)
    df = load_runs(tmp_path, SUITE)
    unversioned = df[df["seed"] == 1].iloc[0]
    assert np.isnan(unversioned["peak_mem_mb"]) and np.isnan(unversioned["model_size_bits"])
    assert unversioned["test_top1"] == 89.0
    board = build_leaderboard(df)
    assert cell(board, "bcgd", "resnet20_cifar W1A4") == "88.50 ± 0.71 (n=2)"


def test_corrupt_result_json_names_the_file(tmp_path):
    run_dir = write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    (run_dir / "result.json").write_text("{not json")
    with pytest.raises(QbenchError, match="result.json is not valid JSON"):
        load_runs(tmp_path, SUITE)


# ------------------------------------------------------------------------------------------------------ statistics
def test_mean_std_ci_match_numpy_and_scipy(tmp_path):
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
    for column in ("mean", "std", "n", "ci95_low", "ci95_high", "gap_to_fp", "rank", "rank_stability"):
        assert pd.api.types.is_numeric_dtype(csv[column]), column
    bcgd = csv[(csv["method"] == "bcgd") & (csv["bits"] == "W1A4")].iloc[0]
    assert bcgd["mean"] == pytest.approx(np.mean([88.0, 88.4, 88.9]))
    assert bcgd["n"] == 3 and bcgd["n_failed"] == 0
    ste = csv[(csv["method"] == "ste") & (csv["bits"] == "W1A4")].iloc[0]
    assert (ste["n"], ste["n_failed"], ste["n_runs"]) == (2, 1, 3)


def test_failed_killed_and_missing_runs_are_shown_not_dropped(suite_runs):
    board = build_leaderboard(suite_runs)
    assert cell(board, "ste", "resnet20_cifar W1A4") == "86.70 ± 0.99 (n=2, 1 failed)"
    assert cell(board, "ste", "resnet20_cifar W1A2") == "80.50 ± 0.71 (n=2, 1 incomplete)"
    assert cell(board, "aqe", "resnet20_cifar W1A2") == "79.00 (n=1, 2 missing)"
    assert cell(board, "bcgd", "resnet20_cifar W1A2") == "diverged"
    markdown = render_markdown(board)
    assert "(n=2, 1 failed)" in markdown and "| diverged " in markdown and "2 missing" in markdown
    assert "failed: `ste-cifar10-resnet20_cifar-W1A4-fp-cpu-s2`: failed at epoch 2" in markdown  # the error is quoted
    assert "1 failed, 3 diverged, 1 incomplete" in markdown


def test_repeated_seed_is_flagged(tmp_path):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, device="cpu")
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.6, device="cuda", device_name="Test GPU")
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "bcgd", "resnet20_cifar W1A4") == "88.30 ± 0.42 (n=2, 1 repeated seed)"


def test_all_failed_cell_shows_the_status(tmp_path):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    write_run(tmp_path, "bcgd", "W1A4", 1, 88.5)
    write_run(tmp_path, "ste", "W1A4", 0, status="failed")
    write_run(tmp_path, "ste", "W1A4", 1, status="failed")
    write_run(tmp_path, "aqe", "W1A4", 0, status="failed")
    write_run(tmp_path, "aqe", "W1A4", 1, status="diverged")
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "ste", "resnet20_cifar W1A4") == "failed"
    assert cell(board, "aqe", "resnet20_cifar W1A4") == "failed / diverged"
    assert cell(board, "ste", "resnet20_cifar W1A4 rank") == "—"


def test_gap_to_fp_uses_the_fp_mean_of_the_same_arch(tmp_path):
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


def test_rank_and_bootstrap_stability(tmp_path):
    # "best" beats "mid" on every seed by a wide margin; "mid" and "close" overlap.
    for seed in range(4):
        write_run(tmp_path, "best", "W1A4", seed, 90.0 + 0.1 * seed)
        write_run(tmp_path, "mid", "W1A4", seed, [80.0, 82.0, 81.0, 83.0][seed])
        write_run(tmp_path, "close", "W1A4", seed, [81.5, 80.5, 82.5, 81.0][seed])
    board = build_leaderboard(load_runs(tmp_path, SUITE), n_bootstrap=1000)
    cells = board.cells.set_index("method")
    assert cells.loc["best", "rank"] == 1 and cells.loc["best", "rank_stability"] == 1.0
    assert cells.loc["mid", "rank"] == 2 and cells.loc["close", "rank"] == 3
    assert 0.0 < cells.loc["close", "rank_stability"] < 1.0
    assert 0.0 < cells.loc["mid", "rank_stability"] < 1.0
    assert cell(board, "best", "resnet20_cifar W1A4 rank") == "1 (1.00)"
    assert list(board.table["method"]) == ["best", "mid", "close"]
    # fixed RNG seed: the same records give the same stability
    again = build_leaderboard(load_runs(tmp_path, SUITE), n_bootstrap=1000).cells.set_index("method")
    assert again.loc["close", "rank_stability"] == cells.loc["close", "rank_stability"]


def test_single_seed_cell_has_rank_but_no_stability(tmp_path):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    write_run(tmp_path, "ste", "W1A4", 0, 86.0)
    write_run(tmp_path, "ste", "W1A4", 1, 86.5)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "bcgd", "resnet20_cifar W1A4 rank") == "1"  # one seed: no spread to resample
    assert cell(board, "ste", "resnet20_cifar W1A4 rank") == "2 (1.00)"


def test_lower_is_better_metric_ranks_ascending(tmp_path):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, result_overrides={"test_loss": 0.3})
    write_run(tmp_path, "ste", "W1A4", 0, 80.0, result_overrides={"test_loss": 0.9})
    cells = build_leaderboard(load_runs(tmp_path, SUITE), metric="test_loss").cells.set_index("method")
    assert cells.loc["bcgd", "rank"] == 1 and cells.loc["ste", "rank"] == 2


def test_tuned_and_hyperparameter_variants_are_separate_rows(tmp_path):
    write_run(tmp_path, "ste", "W32A2", 0, 88.0, hparams={"estimator": "identity", "lr": 0.1})
    write_run(tmp_path, "ste", "W32A2", 0, 90.0, hparams={"estimator": "clipped_relu", "lr": 0.1})
    write_run(tmp_path, "ste", "W32A2", 0, 91.0, hparams={"estimator": "clipped_relu", "lr": 0.05}, tuned=True)
    # a hyperparameter that differs only between columns (here a per-bits value) does not split the row
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, hparams={"alpha_init": 0.19})
    write_run(tmp_path, "bcgd", "W1A2", 0, 85.0, hparams={"alpha_init": 0.65})
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert set(board.table["method"]) == {"ste [estimator=identity]", "ste [estimator=clipped_relu]", "ste (tuned)",
                                          "bcgd"}


def test_top5_shown_for_cifar100_and_imagenet_only(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "bcgd", "W1A4", seed, 60.0 + seed, dataset="cifar100", top5=85.0 + seed)
        write_run(tmp_path, "bcgd", "W1A4", seed, 88.0 + seed, dataset="cifar10", top5=99.0)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    assert cell(board, "bcgd", "cifar100 resnet20_cifar W1A4 top-5") == "85.50 ± 0.71"
    assert "cifar10 resnet20_cifar W1A4 top-5" not in board.table.columns


def test_time_to_target_defaults_to_fp_final_val_minus_one(tmp_path):
    write_run(tmp_path, "fp", "W32A32", 0, 91.0, val_curve=[80.0, 88.0, 90.0])  # target = 90 - 1 = 89
    write_run(tmp_path, "bcgd", "W1A4", 0, 89.5, val_curve=[85.0, 89.0, 89.5])  # first ≥ 89 at epoch 1: 20 s
    write_run(tmp_path, "ste", "W1A4", 0, 85.0, val_curve=[80.0, 84.0, 85.0])  # never
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    cells = board.cells.set_index("method")
    assert cells.loc["bcgd", "target_val_top1"] == pytest.approx(89.0)
    assert cells.loc["bcgd", "time_to_target_s [cpu: Test CPU]"] == pytest.approx(20.0)
    assert np.isnan(cells.loc["ste", "time_to_target_s [cpu: Test CPU]"])
    costs = board.costs.set_index("method")
    assert costs.loc["bcgd", "time to target [cpu: Test CPU]"] == "20.0 s (1/1)"
    assert costs.loc["ste", "time to target [cpu: Test CPU]"] == "not reached (0/1)"
    explicit = build_leaderboard(load_runs(tmp_path, SUITE), target=84.0).cells.set_index("method")
    assert explicit.loc["ste", "time_to_target_s [cpu: Test CPU]"] == pytest.approx(20.0)


def test_cpu_and_gpu_figures_never_share_a_column(tmp_path):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, device="cpu", device_name="Test CPU", train_img_s=50.0)
    write_run(tmp_path, "bcgd", "W1A4", 1, 88.4, device="cuda", device_name="NVIDIA H100", train_img_s=9000.0)
    common = dict(method="bcgd", arch="resnet20_cifar", bits="W1A4", batch_size=128, amp_dtype=None,
                  channels_last=False, compile=False, train_step_ms_median=1.0, train_step_ms_iqr=0.1,
                  ratio_train_to_fp=0.9, ratio_infer_to_fp=0.95, peak_mem_mb=100.0, torch="2.x", qbench="0.1.0")
    atomic_write_json(tmp_path / SUITE / "bench" / "cpu.json", [
        dict(common, device="cpu", device_name="Test CPU", threads=2, train_img_s=40.0, infer_img_s=120.0)])
    atomic_write_json(tmp_path / SUITE / "bench" / "gpu.json", [
        dict(common, device="cuda", device_name="NVIDIA H100", threads=16, train_img_s=8000.0, infer_img_s=30000.0,
             amp_dtype="bfloat16")])
    bench = load_bench(tmp_path, SUITE)
    board = build_leaderboard(load_runs(tmp_path, SUITE), bench=bench)
    costs = board.costs.iloc[0]
    assert costs["train img/s [cpu: Test CPU]"] == "50"
    assert costs["train img/s [cuda: NVIDIA H100]"] == "9,000"
    assert costs["bench train img/s [cpu: Test CPU, 2 threads, bs 128, fp32]"] == "40"
    assert costs["bench train img/s [cuda: NVIDIA H100, bs 128, bfloat16]"] == "8,000"
    # every cost column names exactly one device
    for column in board.costs.columns[3:]:
        if column != "model size":
            assert ("[cpu:" in column) != ("[cuda:" in column), column


def test_paper_reference_only_where_the_setting_matches(tmp_path):
    write_run(tmp_path, "ste", "W32A2", 0, 46.0, hparams={"estimator": "identity"})
    write_run(tmp_path, "ste", "W32A2", 0, 88.0, hparams={"estimator": "clipped_relu"})
    write_run(tmp_path, "bcgd", "W32A2", 0, 87.0)
    board = build_leaderboard(load_runs(tmp_path, SUITE))
    column = "resnet20_cifar W32A2 paper (source, setting)"
    assert cell(board, "ste [estimator=identity]", column).startswith("46.52 (STE, Yin et al. ICLR 2019")
    assert "identity STE" in cell(board, "ste [estimator=identity]", column)
    assert cell(board, "ste [estimator=clipped_relu]", column).startswith("88.39 (")
    assert cell(board, "bcgd", column) == ""
    # a record that stores only overridden hyperparameters is compared at the method's registered default
    write_run(tmp_path, "ste", "W32A4", 0, 90.0)
    board = build_leaderboard(load_runs(tmp_path, SUITE), where={"bits": "W32A4"})
    assert cell(board, "ste", "resnet20_cifar W32A4 paper (source, setting)").startswith("91.24 (")
    # another dataset, another policy or another bit-width: no quote
    assert match_paper_refs(dataset="cifar100", arch="resnet20_cifar", bits="W32A2", method="ste",
                            hparams={"estimator": "identity"}) == []
    imagenet = dict(dataset="imagenet", arch="resnet18.tv_in1k", bits="W1A4", method="bcgd")
    assert [r.value for r in match_paper_refs(**imagenet, policy="quantized")] == [64.36]
    assert [r.value for r in match_paper_refs(**imagenet, policy="fp")] == [65.46]
    assert match_paper_refs(**imagenet) == []  # policy unknown → the number is not quoted
    assert all(ref.source and ref.setting and ref.spec for ref in PAPER_REFS)


# ------------------------------------------------------------------------------------------------------- filtering
def test_where_filters_on_result_config_and_hparam_keys(suite_runs):
    assert set(filter_runs(suite_runs, {"method": "bcgd"})["method"]) == {"bcgd"}
    assert len(filter_runs(suite_runs, parse_where(["train.epochs=3", "tuned=true"]))) == 3
    assert len(filter_runs(suite_runs, {"seed": "0", "bits": "W1A4"})) == 3
    board = build_leaderboard(suite_runs, where={"bits": "W1A4"})
    assert "resnet20_cifar W1A2" not in board.table.columns
    assert "fp" not in set(board.table["method"])
    # the FP reference survives a view filter on bits/method, but not a filter that changes the setting
    assert cell(board, "bcgd", "resnet20_cifar W1A4 Δ FP") == "-3.07"
    seed0 = build_leaderboard(suite_runs, where={"seed": "0", "bits": "W1A4"})
    assert cell(seed0, "bcgd", "resnet20_cifar W1A4 Δ FP") == "-3.00"  # 88.0 vs FP seed 0 (91.0), not the FP mean


def test_unknown_where_key_lists_valid_keys(suite_runs):
    with pytest.raises(QbenchError) as info:
        parse_where(["metod=bcgd"], suite_runs.columns)
    assert "unknown filter key 'metod'" in str(info.value) and "method" in str(info.value)
    with pytest.raises(QbenchError, match="write key=value"):
        parse_where(["bcgd"])
    with pytest.raises(QbenchError, match="no runs match"):
        build_leaderboard(suite_runs, where={"method": "nope"})


# ---------------------------------------------------------------------------------------------------------- output
EXPECTED_TWO_METHODS = """\
| method   | resnet20_cifar W1A4   | resnet20_cifar W1A4 rank   |
|:---------|:----------------------|:---------------------------|
| bcgd     | 89.00 ± 1.00 (n=3)    | 1 (1.00)                   |
| ste      | 85.00 ± 2.00 (n=3)    | 2 (1.00)                   |"""


def test_markdown_matches_expected_text(tmp_path):
    for seed, (a, b) in enumerate([(88.0, 83.0), (89.0, 85.0), (90.0, 87.0)]):
        write_run(tmp_path, "bcgd", "W1A4", seed, a)
        write_run(tmp_path, "ste", "W1A4", seed, b)
    markdown = render_markdown(build_leaderboard(load_runs(tmp_path, SUITE)))
    table = "\n".join(line for line in markdown.splitlines() if line.startswith("|"))
    accuracy_table = table.split("\n| method ", 1)[0]  # drop the cost table that follows
    assert accuracy_table == EXPECTED_TWO_METHODS
    assert markdown.startswith(f"# qbench leaderboard: {SUITE}\n")
    assert "6 runs (6 complete); devices: cpu: Test CPU; records from qbench 0.1.0; report by qbench" in markdown


def test_outputs_are_byte_stable_across_directories_and_mtimes(tmp_path):
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
    from qbench.report.leaderboard import render_html

    text = render_html(build_leaderboard(suite_runs))
    assert 'id="T_qbench_accuracy"' in text  # the fixed uuid
    style = text.split("</style>", 1)[0]
    # bcgd (tuned) is row 1, column 2 (W1A4): the best W1A4 mean
    assert "#T_qbench_accuracy_row1_col2" in style and "font-weight: bold" in style
    assert 'id="T_qbench_accuracy_row1_col2" class="data row1 col2" >89.10 ± 0.10 (n=3)</td>' in text
    assert "#T_qbench_accuracy_row2_col2" not in style


def test_latex_escapes_and_bolds(suite_runs):
    from qbench.report.leaderboard import render_latex

    text = render_latex(build_leaderboard(suite_runs))
    assert r"resnet20\_cifar W1A4" in text and r"$\pm$" in text
    assert r"\textbf{89.10 $\pm$ 0.10 (n=3)}" in text
    assert "\\begin{tabular}" in text and "\\toprule" in text


def test_report_rejects_unknown_format(tmp_path, suite_runs):
    with pytest.raises(QbenchError, match="unknown report format 'pdf'"):
        write_leaderboard(suite_runs, tmp_path, SUITE, formats=("pdf",))


def test_import_qbench_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, qbench; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys, qbench.report.leaderboard; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tuning_cost_is_attached_to_tuned_rows_including_fp(tmp_path):
    """Study summaries (as `qbench tune` writes them) give tuned rows their trials and CPU hours; the FP column has no
    policy, so its study (policy fp) still matches; untuned rows show no cost."""
    from qbench.report.leaderboard import load_tuning

    for seed in range(2):
        write_run(tmp_path, "fp", "W32A32", seed, 91.0 + seed, tuned=True)
        write_run(tmp_path, "bcgd", "W1A4", seed, 88.0 + seed, tuned=True)
        write_run(tmp_path, "bcgd", "W1A4", seed, 87.0 + seed)
    tuning = tmp_path / SUITE / "tuning"
    for method, bits, hours in (("fp", "W32A32", 0.25), ("bcgd", "W1A4", 1.5)):
        atomic_write_json(tuning / f"{method}_resnet20_cifar_{bits}_fp.json", {
            "study": f"{SUITE}/{method}", "method": method, "arch": "resnet20_cifar", "bits": bits, "policy": "fp",
            "trials_finished": 7, "epochs_per_trial": 3, "cpu_hours": hours, "gpu_hours": 0.0})
    board = build_leaderboard(load_runs(tmp_path, SUITE), tuning=load_tuning(tmp_path, SUITE), n_bootstrap=0)
    costs = board.costs.set_index("method")
    assert costs.loc["fp (tuned)", "tuning CPU-h"] == "0.250" and costs.loc["bcgd (tuned)", "tuning CPU-h"] == "1.500"
    assert costs.loc["bcgd (tuned)", "tuning trials"] == "7 × 3 ep" and costs.loc["bcgd", "tuning trials"] == "—"
    assert "tuning GPU-h" not in costs.columns
