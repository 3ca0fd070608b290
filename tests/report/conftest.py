"""Run records for the report tests, in the runner's real format.

Every run directory is written with the qbench.results writers: ``config.yaml`` is the suite config narrowed to the
cell with its ``cell:`` block (what :func:`qbench.run.runner.cell_config` writes), ``result.json`` holds the method's
full hyperparameters (the registered defaults updated with the overrides, as :class:`qbench.method.Method` records
them), and a killed run is a folder without ``result.json``. The helpers are handed out as fixtures because test
modules of this folder cannot import each other.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from qbench.report import load_runs
from qbench.report.load import method_defaults
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
    spec = method + (":" + ",".join(f"{k}={v}" for k, v in sorted(hparams.items())) if hparams else "")
    config = {
        "name": suite, "kind": "train", "data": {"name": dataset, "root": "/data"}, "model": {"archs": [arch]},
        "methods": [spec], "method_hparams": {}, "bits": [bits], "seeds": [seed], "policies": [policy],
        "train": {"epochs": 3, "lr": 0.1, "milestones": [1, 2]}, "tuned": tuned,
        "cell": {"method": spec, "arch": arch, "bits": bits, "policy": policy, "seed": seed, "tuned": tuned,
                 "stage": "", "run_id": run_id},
    }
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
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
        method_hparams={**method_defaults(method), **(hparams or {})}, arch=arch, bits=bits, wbits=wbits,
        abits=abits, policy=policy, seed=seed, dataset=dataset, epochs=3,
        epochs_completed=3 if status == "complete" else 2,
        test_top1=acc if status == "complete" else None, test_top5=top5, test_loss=0.5, val_top1=curve[-1],
        best_val_top1=max(curve), train_loss=0.4, wall_time_s=30.0, train_img_s=train_img_s,
        infer_img_s=3 * train_img_s, peak_mem_mb=512.0, device=device, device_name=device_name, num_params=1000,
        num_quantized_params=900, model_size_bits=900 * wbits + 100 * 32, kind="train", stage=None,
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


@pytest.fixture(name="write_run")
def write_run_fixture():
    """:func:`write_run`: one run directory in the runner's format."""
    return write_run


@pytest.fixture(name="standard_suite")
def standard_suite_fixture():
    """:func:`standard_suite`: a suite with every kind of run status."""
    return standard_suite


@pytest.fixture
def suite_runs(tmp_path: Path) -> pd.DataFrame:
    standard_suite(tmp_path / "results")
    return load_runs(tmp_path / "results", SUITE)


def cell(board, method: str, column: str) -> str:
    table = board.table.set_index("method")
    return table.loc[method, column]


@pytest.fixture(name="cell")
def cell_fixture():
    """``cell(board, method, column)``: one cell of a board's accuracy table."""
    return cell
