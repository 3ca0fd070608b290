"""Records you can trust (issue #14): no code runs from a results folder, a resumed or skipped cell is the run its config
says, corrupt or concurrent state never breaks a suite, nothing is written outside results_dir.

Processes that must be killed or run side by side are forked from this (already imported) test process and run the real
CLI (`qbench.cli.main`), so a SIGKILL lands on a real `qbench run` without paying the import of torch per attempt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from qbench.cli import main
from qbench.config import load_config
from qbench.results import CellLock
from qbench.run.runner import plan_cells, run_suite

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["suite=quickstart", "data.name=digits", "data.train_subset=384", "data.batch_size=64", "bits=[W1A4]",
        "seeds=[0]", "train.epochs=3", "train.device=cpu"]
TWO_CELLS = [*TINY, "methods=[fp,ste]", "model.save_final=true"]


def _run(results, *extra) -> int:
    return main(["run", "--no-progress", *TWO_CELLS, f"results_dir={results}", *extra])


def _records(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((results / "quickstart").glob("*/result.json"))}


def _fork(fn) -> int:
    """Run ``fn()`` in a forked child (exit code 0 on success); returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            torch.set_num_threads(1)
            with open(os.devnull, "w") as sink:
                sys.stdout = sys.stderr = sink
                code = int(fn() or 0)
        finally:
            os._exit(code)
    return pid


# --------------------------------------------------------------------------------------- no code from a results folder
class _Payload:
    """Pickles to a call that writes a marker file: what a planted checkpoint would run on an unsafe load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_a_planted_checkpoint_is_never_executed_and_the_cell_starts_over(tmp_path, capsys):
    cfg = load_config(None, [*TINY, "methods=[ste]", f"results_dir={tmp_path}"])
    (cell,) = plan_cells(cfg)
    run_dir = tmp_path / "quickstart" / cell.run_id
    run_dir.mkdir(parents=True)
    marker = tmp_path / "marker"
    torch.save({"epoch": 1, "model": _Payload(marker)}, run_dir / "checkpoint.pt")
    outcome = run_suite(cfg, progress=False)
    assert not marker.exists()
    assert outcome.results[0]["status"] == "complete" and outcome.results[0]["epochs_completed"] == 3
    assert "unreadable" in capsys.readouterr().out
    assert list(run_dir.glob("checkpoint.pt.corrupt-*"))


# ------------------------------------------------------------------------------------------ config fingerprint
def test_a_changed_config_neither_resumes_nor_skips_a_cell(tmp_path, capsys):
    assert _run(tmp_path, "methods=[ste]") == 0
    (run_id, record), = _records(tmp_path).items()
    saved = (tmp_path / "quickstart" / run_id / "config.yaml").read_text()
    # A finished cell is not skipped under another result-relevant config: one line, exit 2, the record untouched.
    assert _run(tmp_path, "methods=[ste]", "train.lr=0.5", "method_hparams.ste.estimator=identity") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.lr=0.05 (now 0.5)" in err and "method_hparams.ste" in err
    assert "--fresh" in err and "results_dir=" in err
    assert (tmp_path / "quickstart" / run_id / "config.yaml").read_text() == saved
    # A killed cell (no result.json yet) is not resumed under another config either.
    (tmp_path / "quickstart" / run_id / "result.json").unlink()
    assert _run(tmp_path, "methods=[ste]", "train.lr=0.5") == 2
    # Presentation and hardware keys may change freely; --fresh replaces the record with what was asked.
    assert _run(tmp_path, "methods=[ste]", "data.num_workers=0", "train.compile=false", "bench.rounds=2") == 0
    assert _run(tmp_path, "methods=[ste]", "train.lr=0.5", "--fresh") == 0
    again = _records(tmp_path)[run_id]
    assert again["fingerprint"] != record["fingerprint"]
    assert "lr: 0.5" in (tmp_path / "quickstart" / run_id / "config.yaml").read_text()


# ------------------------------------------------------------------------------------------------- corrupt state
def test_corrupt_checkpoint_metrics_and_result_restart_from_a_readable_state(tmp_path, capsys):
    assert _run(tmp_path, "methods=[ste]") == 0
    (run_id, reference), = _records(tmp_path).items()
    run_dir = tmp_path / "quickstart" / run_id
    ref_model = torch.load(run_dir / "model.pt", weights_only=True)

    # A truncated checkpoint (full disk) and a torn metrics file: moved aside, the cell trains again from scratch.
    (run_dir / "result.json").unlink()
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    (run_dir / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo')
    assert _run(tmp_path, "methods=[ste]") == 0
    out = capsys.readouterr().out
    assert "checkpoint.pt is unreadable" in out and len(out.splitlines()) < 40  # one line, no traceback
    assert list(run_dir.glob("checkpoint.pt.corrupt-*"))
    again = _records(tmp_path)[run_id]
    assert again["test_top1"] == reference["test_top1"] and again["status"] == "complete"

    # A result.json that is valid JSON but not an object is not a record: moved aside, the cell re-runs.
    (run_dir / "result.json").write_text("[1, 2, 3]")
    assert _run(tmp_path, "methods=[ste]") == 0
    assert "not a readable record" in capsys.readouterr().out
    model = torch.load(run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(model[k], ref_model[k]) for k in ref_model)


def test_leftover_temp_files_and_stale_tracebacks_are_cleaned(tmp_path):
    run_id = "ste_lenet5_W1A4_fp_s0"
    run_dir = tmp_path / "quickstart" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / ".result.json.abc123.tmp").write_text("half a record")
    (run_dir / "traceback.txt").write_text("an old failure")
    assert _run(tmp_path, "methods=[ste]") == 0
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "traceback.txt").exists()


def test_records_follow_the_users_umask(tmp_path):
    code = (f"import os; os.umask(0o022); from qbench.cli import main; "
            f"raise SystemExit(main({['run', '--no-progress', *TINY, 'methods=[fp]', 'train.epochs=1', f'results_dir={tmp_path}']!r}))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    for name in ("config.yaml", "result.json", "metrics.jsonl", "env.json"):
        path = next((tmp_path / "quickstart").glob(f"*/{name}"))
        assert path.stat().st_mode & 0o777 == 0o644, name


def test_an_unwritable_results_dir_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert _run(blocker / "results", "methods=[fp]") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qbench: error: results_dir") and "\n" not in err


@pytest.mark.parametrize("override,what", [("name=../outside", "name"), ("arch=x/../../../outside_arch", "model.archs"),
                                           ('methods=["ste:estimator=../../x"]', "method")])
def test_names_cannot_escape_results_dir(tmp_path, capsys, override, what):
    assert _run(tmp_path / "results", override) == 2
    assert what in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere


def test_flags_and_overrides_in_any_order(tmp_path):
    assert main(["run", "suite=quickstart", "--no-progress", *TINY[1:], "methods=[fp]", "train.epochs=1",
                 f"results_dir={tmp_path}"]) == 0
    assert main(["run", *TINY, "--no-progress", "methods=[fp]", "train.epochs=1", "--fresh",
                 f"results_dir={tmp_path}"]) == 0


# ------------------------------------------------------------------------------------------------------- concurrency
def test_two_concurrent_runs_train_each_cell_exactly_once(tmp_path):
    cells = ["methods=[fp,ste,bcgd,pcg]"]
    logs = [tmp_path / f"log{i}.txt" for i in range(2)]

    def one(log: Path):
        def run():
            with open(log, "w") as fh:
                sys.stdout = fh
                return main(["run", "--no-progress", *TWO_CELLS, *cells, f"results_dir={tmp_path / 'r'}"])
        return run

    pids = [_fork(one(log)) for log in logs]
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    assert codes == [0, 0]
    trained = [line.split()[1] for log in logs for line in log.read_text().splitlines()
               if line.startswith("[") and "skipped" not in line]
    records = _records(tmp_path / "r")
    assert sorted(trained) == sorted(records) and len(records) == 4  # every cell trained once, by one process
    assert all(r["status"] == "complete" for r in records.values())


def test_a_held_cell_lock_is_reported_with_its_holder_and_released_when_the_holder_dies(tmp_path):
    run_dir = tmp_path / "cell"
    read, write = os.pipe()

    def hold():
        lock = CellLock(run_dir)
        assert lock.acquire()
        os.write(write, b"x")
        time.sleep(60)

    pid = _fork(hold)
    os.read(read, 1)
    other = CellLock(run_dir)
    assert not other.acquire() and f":{pid} since" in other.holder()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert other.acquire()  # the kernel released the dead holder's lock: never stale
    other.release()


# ---------------------------------------------------------------------------------------------- fault injection
def test_kill_9_at_twenty_random_points_then_the_records_equal_an_uninterrupted_run(tmp_path):
    """A seeded schedule of SIGKILLs at random points of a 2-cell suite, then a run to the end: the final records equal
    an uninterrupted run's (test metrics and weights bit-identical)."""
    reference = tmp_path / "reference"
    assert _run(reference) == 0
    rng = np.random.RandomState(14)
    killed = tmp_path / "killed"
    started = time.perf_counter()
    assert _fork(lambda: _run(tmp_path / "timing")) and os.wait()[1] == 0
    full = time.perf_counter() - started  # one uninterrupted run, forked like the attempts below
    kills = 0
    for _ in range(20):
        pid = _fork(lambda: _run(killed))
        time.sleep(rng.uniform(0.0, full))
        try:
            os.kill(pid, signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    assert kills >= 10  # most attempts were interrupted mid-run
    assert _run(killed) == 0
    ref, res = _records(reference), _records(killed)
    assert set(ref) == set(res) and len(ref) == 2
    for run_id in ref:
        for key in ("status", "test_top1", "test_top5", "test_loss", "val_top1", "train_loss", "epochs_completed"):
            assert res[run_id][key] == ref[run_id][key], (run_id, key)
        a = torch.load(reference / "quickstart" / run_id / "model.pt", weights_only=True)
        b = torch.load(killed / "quickstart" / run_id / "model.pt", weights_only=True)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), run_id
        rows_a = (reference / "quickstart" / run_id / "metrics.jsonl").read_text().splitlines()
        rows_b = (killed / "quickstart" / run_id / "metrics.jsonl").read_text().splitlines()
        strip = lambda rows: [{k: v for k, v in json.loads(r).items() if "time" not in k and "img_s" not in k}
                              for r in rows]
        assert strip(rows_a) == strip(rows_b)
