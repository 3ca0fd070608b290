"""``qbench run seeds=auto``: seeds go to the columns whose top group is not yet separated, up to seeds_max; re-running
continues where it stopped; the same records give the same seeds. Training is replaced by a scorer with a known
answer (the runner's own loop, claims, records and resume logic run for real)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qbench.config import load_config
from qbench.results import RESULT_FILE, atomic_write_json, load_result
from qbench.run import runner
from qbench.run.runner import auto_seed_plan, run_suite

AUTO = ["data.name=digits", "model.archs=[lenet5]", "methods=[fp,ste,bcgd,aqe]", "bits=[W1A1,W1A4]", "seeds=auto",
        "seeds_min=3", "seeds_max=6"]


def _score(method: str, bits: str, seed: int) -> float:
    """W1A1: bcgd is ahead of ste and aqe by 5 points on every seed (separated at once). W1A4: ste and bcgd are tied
    (seed noise only), aqe is far behind. Noise: a fixed function of the seed and the method."""
    noise = float(np.random.default_rng([seed, len(method), ord(method[0])]).normal(0, 0.5))
    shared = float(np.random.default_rng(seed).normal(0, 2))  # a seed effect all methods share
    base = {("W1A1", "bcgd"): 90.0, ("W1A1", "ste"): 85.0, ("W1A1", "aqe"): 84.0,
            ("W1A4", "bcgd"): 95.0, ("W1A4", "ste"): 95.0, ("W1A4", "aqe"): 80.0}.get((bits, method), 97.0)
    return base + shared + noise


@pytest.fixture
def fake_training(monkeypatch):
    """run_cell writes a complete record with a known score instead of training; returns the run ids it trained, in
    order. ``fail`` (a set of run ids) makes those cells raise, as a broken cell would."""
    trained: list[str] = []
    fail: set[str] = set()

    def run_cell(cfg, cell, run_dir, **_):
        if cell.run_id in fail:
            raise RuntimeError("broken on purpose")
        assert cell.seeds_rule == "auto" and cell.record()["seeds_rule"] == "auto"  # what the report reads
        trained.append(cell.run_id)
        record = {"run_id": cell.run_id, "status": "complete", "wall_time_s": 0.0,
                  "test_top1": _score(cell.method, str(cell.bits), cell.seed)}
        atomic_write_json(Path(run_dir) / RESULT_FILE, record)
        return record

    monkeypatch.setattr(runner, "run_cell", run_cell)
    return trained, fail


def _seeds(root: Path) -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted((root / "quickstart").glob(f"*/{RESULT_FILE}")):
        record = json.loads(path.read_text())
        if record["status"] == "complete":
            method, _, bits, _, seed = record["run_id"].split("_")
            found.setdefault((method, bits), []).append(int(seed[1:]))
    return {key: sorted(seeds) for key, seeds in sorted(found.items())}


def test_seeds_go_where_the_top_group_is_undecided(tmp_path, fake_training):
    cfg = load_config("quickstart", [*AUTO, f"results_dir={tmp_path}"])
    run_suite(cfg, progress=False, log=lambda _: None)
    assert _seeds(tmp_path) == {
        ("fp", "W32A32"): [0, 1, 2],  # FP is a column of one method: nothing to decide
        ("aqe", "W1A1"): [0, 1, 2], ("bcgd", "W1A1"): [0, 1, 2], ("ste", "W1A1"): [0, 1, 2],  # separated at once
        ("aqe", "W1A4"): [0, 1, 2],  # significantly worse: no more seeds
        ("bcgd", "W1A4"): [0, 1, 2, 3, 4, 5], ("ste", "W1A4"): [0, 1, 2, 3, 4, 5],  # tied: up to seeds_max
    }
    assert auto_seed_plan(cfg) == {}  # nothing left: a re-run trains nothing
    trained, _ = fake_training
    count = len(trained)
    again = run_suite(cfg, progress=False, log=lambda _: None)
    assert len(trained) == count and not again.results


def test_a_rerun_continues_where_an_interrupted_one_stopped(tmp_path, fake_training, monkeypatch):
    trained, _ = fake_training
    cfg = load_config("quickstart", [*AUTO, f"results_dir={tmp_path / 'whole'}"])
    run_suite(cfg, progress=False, log=lambda _: None)
    whole, order = _seeds(tmp_path / "whole"), list(trained)

    # The same suite, killed after its 16th cell (a KeyboardInterrupt escapes the runner), then run again.
    cut = load_config("quickstart", [*AUTO, f"results_dir={tmp_path / 'cut'}"])
    trained.clear()
    real = runner.run_cell

    def interrupted(cfg, cell, run_dir, **kw):
        if len(trained) == 16:
            raise KeyboardInterrupt
        return real(cfg, cell, run_dir, **kw)

    monkeypatch.setattr(runner, "run_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_suite(cut, progress=False, log=lambda _: None)
    monkeypatch.setattr(runner, "run_cell", real)
    run_suite(cut, progress=False, log=lambda _: None)
    assert _seeds(tmp_path / "cut") == whole
    assert trained == order  # the same cells in the same order: the plan is a function of the records


def test_failed_cells_are_retried_on_the_next_invocation_only(tmp_path, fake_training):
    trained, fail = fake_training
    fail.add("ste_lenet5_W1A4_fp_s3")
    cfg = load_config("quickstart", [*AUTO, f"results_dir={tmp_path}"])
    outcome = run_suite(cfg, progress=False, log=lambda _: None)
    assert outcome.failed == ["ste_lenet5_W1A4_fp_s3"]  # tried once, not once per round
    assert load_result(tmp_path / "quickstart" / "ste_lenet5_W1A4_fp_s3")["status"] == "failed"
    fail.clear()
    run_suite(cfg, progress=False, log=lambda _: None)
    assert _seeds(tmp_path)[("ste", "W1A4")] == [0, 1, 2, 3, 4, 5]


def test_fresh_ignores_the_records_of_earlier_runs(tmp_path, fake_training):
    trained, _ = fake_training
    cfg = load_config("quickstart", [*AUTO, f"results_dir={tmp_path}"])
    run_suite(cfg, progress=False, log=lambda _: None)
    first = list(trained)
    trained.clear()
    run_suite(cfg, resume=False, progress=False, log=lambda _: None)
    assert trained == first
