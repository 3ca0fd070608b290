"""qbench.report.costs: time to target, device-labelled cost columns (CPU and GPU never share one), bench rows and
tuning budgets."""

from __future__ import annotations

import numpy as np
import pytest

from qbench.report import build_leaderboard, load_bench, load_runs, load_tuning
from qbench.results import atomic_write_json

SUITE = "toy"


def test_time_to_target_defaults_to_fp_final_val_minus_one(tmp_path, write_run):
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


def test_cpu_and_gpu_figures_never_share_a_column(tmp_path, write_run):
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


def test_tuning_cost_is_attached_to_tuned_rows_including_fp(tmp_path, write_run):
    """Study summaries (as `qbench tune` writes them) give tuned rows their trials and CPU hours; the FP column has no
    policy, so its study (policy fp) still matches; untuned rows show no cost."""
    for seed in range(2):
        write_run(tmp_path, "fp", "W32A32", seed, 91.0 + seed, tuned=True)
        write_run(tmp_path, "bcgd", "W1A4", seed, 88.0 + seed, tuned=True)
        write_run(tmp_path, "bcgd", "W1A4", seed, 87.0 + seed)
    tuning = tmp_path / SUITE / "tuning"
    for method, bits, hours in (("fp", "W32A32", 0.25), ("bcgd", "W1A4", 1.5)):
        atomic_write_json(tuning / f"{method}_resnet20_cifar_{bits}_fp.json", {
            "study": f"{SUITE}/{method}", "method": method, "arch": "resnet20_cifar", "bits": bits, "policy": "fp",
            "trials_finished": 7, "epochs_per_trial": 3, "cpu_hours": hours, "gpu_hours": 0.0})
    board = build_leaderboard(load_runs(tmp_path, SUITE), tuning=load_tuning(tmp_path, SUITE))
    costs = board.costs.set_index("method")
    assert costs.loc["fp (tuned)", "tuning CPU-h"] == "0.250" and costs.loc["bcgd (tuned)", "tuning CPU-h"] == "1.500"
    assert costs.loc["bcgd (tuned)", "tuning trials"] == "7 × 3 ep" and costs.loc["bcgd", "tuning trials"] == "—"
    assert "tuning GPU-h" not in costs.columns
