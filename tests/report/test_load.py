"""qbench.report.load: run folders → one row each, identity from the runner's ``cell`` block, unreadable folders
skipped and listed, filters."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from qbench.config import load_config, to_yaml
from qbench.errors import QbenchError
from qbench.registry import create_method
from qbench.report import build_leaderboard, filter_runs, load_runs, parse_where, render_markdown, report, scan_runs
from qbench.results import SCHEMA_VERSION, atomic_write_json, atomic_write_text
from qbench.bits import parse_bits
from qbench.registry import parse_method_spec
from qbench.run.runner import Cell, failure_record, cell_config, record_config

SUITE = "toy"


def test_load_runs_flattens_config_results_and_marks_killed_runs(suite_runs):
    df = suite_runs
    assert len(df) == 19
    assert {"cfg.train.lr", "cfg.data.name", "cfg.cell.method", "cfg.cell.policy", "env.torch"} <= set(df.columns)
    assert (df["cfg.train.lr"] == 0.1).all()
    assert df["cfg.train.milestones"].iloc[0] == "[1, 2]"  # lists become JSON text, one scalar per cell
    killed = df[df["run_id"].str.contains("ste-cifar10-resnet20_cifar-W1A2-fp-cpu-s2")].iloc[0]
    assert killed["status"] == "incomplete"
    # fields recovered from the config's cell block so the killed run lands in its cell
    assert (killed["method"], killed["bits"], killed["seed"], killed["arch"]) == ("ste", "W1A2", 2, "resnet20_cifar")
    assert (killed["dataset"], killed["epochs"], killed["policy"], killed["kind"]) == ("cifar10", 3, "fp", "train")
    assert np.isnan(killed["test_top1"]) and killed["epochs_completed"] == 3
    assert isinstance(df["metrics"].iloc[0], list) and len(df["metrics"].iloc[0]) == 3
    # output order does not depend on directory listing order
    assert list(df["run_id"]) == sorted(df["run_id"])


def test_load_all_suites_skips_bench_and_leaderboard_dirs(tmp_path, write_run):
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


def test_newer_schema_version_raises_naming_file_and_version(tmp_path, write_run):
    run_dir = write_run(tmp_path, "bcgd", "W1A4", 0, 88.0, result_overrides={"schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(QbenchError) as info:
        load_runs(tmp_path, SUITE)
    message = str(info.value)
    assert str(run_dir / "result.json") in message and f"schema_version {SCHEMA_VERSION + 1}" in message
    assert "upgrade qbench" in message and "\n" not in message


def test_old_or_unversioned_records_load_with_nan_for_missing_fields(tmp_path, write_run, cell):
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


def test_records_without_a_cell_block_are_identified_by_result_json(tmp_path, write_run):
    """Records not written by qbench's runner (no ``cell:`` in config.yaml, or no config at all) still load."""
    first = write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    atomic_write_text(first / "config.yaml", yaml.safe_dump({"train": {"lr": 0.1}}))
    second = write_run(tmp_path, "bcgd", "W1A4", 1, 89.0)
    (second / "config.yaml").unlink()
    df = load_runs(tmp_path, SUITE)
    assert list(df["method"]) == ["bcgd", "bcgd"] and list(df["bits"]) == ["W1A4", "W1A4"]
    assert list(df["seed"]) == [0, 1] and list(df["dataset"]) == ["cifar10", "cifar10"]


# ---------------------------------------------------------------------------------------- records of the real runner
def _quickstart_cell(root: Path, method: str, seed: int):
    """config.yaml of one quickstart cell exactly as the runner writes it (no training): (run dir, the written
    config as a dict, the suite config, the cell)."""
    cfg = load_config("quickstart", ["data.name=digits", "train.epochs=1", f"results_dir={root}"])
    cell = Cell(method, "lenet5", parse_bits("W1A4"), "fp", seed)
    data = record_config(cell_config(cfg, cell), cell)
    run_dir = root / "quickstart" / cell.run_id
    atomic_write_text(run_dir / "config.yaml", to_yaml(data))
    return run_dir, data, cfg, cell


def _complete_record(data: dict, acc: float) -> dict:
    """The fields run_cell writes for a completed cell that the report reads (method_hparams = Method.config)."""
    cell = data["cell"]
    base, overrides = parse_method_spec(cell["method"], data["method_hparams"])
    return {
        "schema_version": SCHEMA_VERSION, "qbench_version": "0.1.0", "suite": data["name"], "run_id": cell["run_id"],
        "status": "complete", "error": None, "method": base, "tuned": False,
        "method_hparams": create_method(base, **overrides).config, "arch": cell["arch"], "bits": cell["bits"],
        "wbits": 1, "abits": 4, "policy": cell["policy"], "seed": cell["seed"], "dataset": data["data"]["name"],
        "epochs": data["train"]["epochs"], "epochs_completed": 1, "test_top1": acc, "val_top1": acc,
        "device": "cpu", "device_name": "Test CPU", "kind": "train", "stage": None,
    }


def test_killed_and_failed_runs_of_the_real_runner_land_in_their_cell(tmp_path):
    """Issue #12: a run killed before result.json and a failure record (no method_hparams) are counted in their real
    (method, arch, bits) cell: no `unknown` row, no bogus hyperparameter row, the killed seed counted incomplete."""
    spec = "ste:estimator=identity"
    for seed, acc in ((0, 95.0), (1, 96.0)):
        run_dir, data, _, _ = _quickstart_cell(tmp_path, spec, seed)
        atomic_write_json(run_dir / "result.json", _complete_record(data, acc))
    other_dir, other, _, _ = _quickstart_cell(tmp_path, "ste:estimator=clipped_relu", 0)
    atomic_write_json(other_dir / "result.json", _complete_record(other, 90.0))
    failed_dir, _, cfg, cell = _quickstart_cell(tmp_path, spec, 2)
    atomic_write_json(failed_dir / "result.json", failure_record(cfg, cell, RuntimeError("out of memory")))
    _quickstart_cell(tmp_path, spec, 3)  # killed: config.yaml only

    runs = load_runs(tmp_path, "quickstart")
    identity = runs[["method", "arch", "bits", "policy", "seed", "dataset", "epochs", "suite", "status"]]
    killed = identity[identity["seed"] == 3].iloc[0].tolist()
    assert killed == ["ste", "lenet5", "W1A4", "fp", 3, "digits", 1, "quickstart", "incomplete"]
    # the failure record and the killed run carry the hyperparameters their config gave them, as the runner's Method
    expected = json.dumps(create_method("ste", estimator="identity").config, sort_keys=True)
    assert set(runs.loc[runs["cfg.cell.method"] == spec, "method_hparams"]) == {expected}
    board = build_leaderboard(runs)
    assert list(board.table["method"]) == ["ste [estimator=identity]", "ste [estimator=clipped_relu]"]
    text = board.table.set_index("method").loc["ste [estimator=identity]", "lenet5 W1A4"]
    mean, std = np.mean([95.0, 96.0]), np.std([95.0, 96.0], ddof=1)
    assert text == f"{mean:.2f} ± {std:.2f} (n=2, 1 failed, 1 incomplete)"
    assert "unknown" not in render_markdown(board)


def test_a_record_without_status_counts_as_incomplete_and_is_named(tmp_path, write_run, cell):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    run_dir = write_run(tmp_path, "bcgd", "W1A4", 1, 99.0)
    result = json.loads((run_dir / "result.json").read_text())
    del result["status"]
    atomic_write_json(run_dir / "result.json", result)
    runs = load_runs(tmp_path, SUITE)
    assert runs.loc[runs["seed"] == 1, "status"].item() == "incomplete"
    board = build_leaderboard(runs)
    assert cell(board, "bcgd", "resnet20_cifar W1A4") == "88.00 (n=1, 1 incomplete)"  # 99.0 is not averaged in
    assert f"incomplete: `{run_dir.name}`: result.json has no status; counted as incomplete" in board.notes


# ---------------------------------------------------------------------------------------------- unreadable folders
BROKEN = {
    "bad-json": ("result.json", "{not json", "result.json is not valid JSON"),
    "not-object": ("result.json", "[1, 2]", "result.json is not a qbench run record (expected a JSON object)"),
    "bad-yaml": ("config.yaml", "cell: [unclosed", "config.yaml is not valid YAML"),
    "torn-metrics": ("metrics.jsonl", '{"epoch": 0, "val_top1": 5', "metrics.jsonl has a malformed line"),
    "bad-env": ("env.json", "{", "env.json is not valid JSON"),
}


def test_unreadable_run_folders_are_skipped_listed_and_logged(tmp_path, write_run, cell, caplog):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    write_run(tmp_path, "bcgd", "W1A4", 1, 89.0)
    names = {}
    for seed, (kind, (file, text, _)) in enumerate(BROKEN.items(), start=2):
        run_dir = write_run(tmp_path, "ste", "W1A4", seed, 80.0)
        (run_dir / file).write_text(text)
        names[kind] = run_dir.name
    with caplog.at_level(logging.WARNING, logger="qbench.report.load"):
        runs, skipped = scan_runs(tmp_path, SUITE)
    assert list(runs["method"]) == ["bcgd", "bcgd"]
    assert {s.run for s in skipped} == {f"{SUITE}/{name}" for name in names.values()}
    for kind, (_, _, reason) in BROKEN.items():
        (entry,) = [s for s in skipped if s.run.endswith(names[kind])]
        assert entry.reason.startswith(reason)
        assert sum(names[kind] in record.getMessage() for record in caplog.records) == 1
    paths = report(SUITE, results_dir=tmp_path, plots=False, formats=("md",))
    markdown = paths[0].read_text()
    assert cell(build_leaderboard(runs), "bcgd", "resnet20_cifar W1A4") == "88.50 ± 0.71 (n=2)"
    notes = markdown.split("## Notes", 1)[1].strip().splitlines()
    listed = [line for line in notes if "unreadable, skipped" in line]
    assert len(listed) == len(BROKEN) and notes[-len(BROKEN):] == listed  # once each, at the end
    assert str(tmp_path) not in markdown  # relative names only


def test_a_tree_of_only_unreadable_runs_is_one_clear_line(tmp_path, write_run):
    run_dir = write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    (run_dir / "result.json").write_text("{not json")
    with pytest.raises(QbenchError, match="result.json is not valid JSON") as info:
        load_runs(tmp_path, SUITE)
    assert "no readable run records" in str(info.value) and "\n" not in str(info.value)


def test_broken_bench_file_is_one_clear_line(tmp_path, write_run):
    write_run(tmp_path, "bcgd", "W1A4", 0, 88.0)
    atomic_write_text(tmp_path / SUITE / "bench" / "cpu.json", "[{")
    with pytest.raises(QbenchError, match=r"cpu.json is not valid JSON .*qbench bench suite=toy"):
        report(SUITE, results_dir=tmp_path, plots=False)


# ------------------------------------------------------------------------------------------------------- filtering
def test_where_filters_on_result_config_and_hparam_keys(suite_runs):
    assert set(filter_runs(suite_runs, {"method": "bcgd"})["method"]) == {"bcgd"}
    assert len(filter_runs(suite_runs, parse_where(["train.epochs=3", "tuned=true"]))) == 3
    assert len(filter_runs(suite_runs, {"seed": "0", "bits": "W1A4"})) == 3


def test_unknown_where_key_lists_valid_keys(suite_runs):
    with pytest.raises(QbenchError) as info:
        parse_where(["metod=bcgd"], suite_runs.columns)
    assert "unknown filter key 'metod'" in str(info.value) and "method" in str(info.value)
    with pytest.raises(QbenchError, match="write key=value"):
        parse_where(["bcgd"])
    with pytest.raises(QbenchError, match="no runs match"):
        build_leaderboard(suite_runs, where={"method": "nope"})



def test_a_killed_theory_record_lands_in_its_estimator_row(tmp_path):
    """The theory suite's cell names its part and estimator (qbench.theory.suite); a killed record is counted there."""
    for seed, with_result in ((0, True), (1, False)):
        run_dir = tmp_path / "theory" / f"relu_gaussian_s{seed}"
        cell = {"part": "estimator", "name": "relu", "seed": seed, "run_id": run_dir.name, "method": "relu",
                "arch": "gaussian2l-m5n8", "bits": "W32A1", "policy": "quantized", "tuned": False}
        config = {"name": "theory", "kind": "theory", "data": {"name": "mnist5k"}, "cell": cell}  # data: unused
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config))
        if with_result:
            atomic_write_json(run_dir / "result.json", {
                "schema_version": SCHEMA_VERSION, "kind": "theory", "theory_part": "estimator", "estimator": "relu",
                "status": "complete", "method": "relu", "seed": seed, "cos_mean": 0.3, "wall_time_s": 1.0})
    runs = load_runs(tmp_path, "theory")
    killed = runs[runs["seed"] == 1].iloc[0]
    assert (killed["kind"], killed["theory_part"], killed["estimator"]) == ("theory", "estimator", "relu")
    assert killed["dataset"] == "unknown"  # not the config's unused data section
    board = build_leaderboard(runs)
    assert board.kind == "theory" and board.table.set_index("estimator").loc["relu", "seeds"] == "n=1, 1 incomplete"
