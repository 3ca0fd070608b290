"""The runner end to end on tiny real data: records, resume after SIGKILL, divergence, failures, skipping."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qbench.config import load_config
from qbench.run.runner import plan_cells, run_suite

TINY = ["data.name=digits", "model.archs=[lenet5]", "train.epochs=2", "seeds=[0]", "bits=[W1A4]",
        "data.batch_size=64", "train.lr=0.05"]

PLUGIN = '''
import torch
from qbench import Method, register_method
from qbench.method import QuantReLUMethod
from qbench.quant.latent import latent_weights


@register_method("explode_test")
class Explode(QuantReLUMethod):
    """Diverges on purpose: blows the latent weights up after each step."""
    def after_step(self, model):
        with torch.no_grad():
            for latent, _ in latent_weights(model):
                latent.mul_(1e30)


@register_method("broken_test")
class Broken(QuantReLUMethod):
    """Fails on purpose when the model is built."""
    def weight_quantizer(self, bits):
        raise RuntimeError("this quantizer is broken")
'''


def _records(root: Path, suite: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (root / suite).glob("*/result.json")}


def test_suite_writes_complete_records_and_rerun_skips(tmp_path, capsys):
    cfg = load_config("quickstart", [*TINY, "methods=[fp,ste]", f"results_dir={tmp_path}"])
    outcome = run_suite(cfg, progress=False)
    recs = _records(tmp_path, "quickstart")
    assert set(recs) == {c.run_id for c in plan_cells(cfg)} == {"fp_lenet5_W32A32_fp_s0", "ste_lenet5_W1A4_fp_s0"}
    for run_id, rec in recs.items():
        assert rec["status"] == "complete" and 0 <= rec["test_top1"] <= 100 and rec["epochs_completed"] == 2
        run_dir = tmp_path / "quickstart" / run_id
        assert {"config.yaml", "metrics.jsonl", "env.json", "result.json"} <= {p.name for p in run_dir.iterdir()}
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2]
    ste_rows = (tmp_path / "quickstart" / "ste_lenet5_W1A4_fp_s0" / "metrics.jsonl").read_text()
    assert "hamming_to_best" in ste_rows and "flip_rate" in ste_rows  # recurrence diagnostics (spec §6)
    assert not outcome.skipped
    again = run_suite(cfg, progress=False)
    assert sorted(again.skipped) == sorted(recs) and not again.results


def test_cpu_run_is_deterministic(tmp_path):
    results = []
    for i in range(2):
        cfg = load_config("quickstart", [*TINY, "methods=[bcgd]", f"results_dir={tmp_path / str(i)}"])
        results.append(run_suite(cfg, progress=False).results[0])
    assert results[0]["test_top1"] == results[1]["test_top1"]
    assert results[0]["train_loss"] == results[1]["train_loss"]


def test_diverging_and_failing_cells_are_recorded_and_the_suite_goes_on(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    cfg = load_config("quickstart", [*TINY, "methods=[explode_test,broken_test,fp]", f"results_dir={tmp_path}",
                                     f"plugins=[{plugin}]"])
    outcome = run_suite(cfg, progress=False)
    recs = _records(tmp_path, "quickstart")
    assert recs["explode_test_lenet5_W1A4_fp_s0"]["status"] == "diverged"
    assert recs["broken_test_lenet5_W1A4_fp_s0"]["status"] == "failed"
    assert "this quantizer is broken" in recs["broken_test_lenet5_W1A4_fp_s0"]["error"]
    assert recs["fp_lenet5_W32A32_fp_s0"]["status"] == "complete"
    assert outcome.failed == ["broken_test_lenet5_W1A4_fp_s0"]
    # a re-run retries the failed cell only (diverged is a finished outcome)
    again = run_suite(cfg, progress=False)
    assert [r["run_id"] for r in again.results] == ["broken_test_lenet5_W1A4_fp_s0"]


def _qbench(args, results_dir, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "qbench", "run", "suite=quickstart", "method=ste", "seeds=[0]",
                             "bits=[W2A4]", "train.epochs=4", "data.train_subset=1200", f"results_dir={results_dir}",
                             "--no-progress", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **kw)


@pytest.mark.slow  # three CLI processes; tests/run/test_records.py kills a run at twenty points in-process
def test_killed_run_resumes_to_the_same_final_metrics(tmp_path):
    reference = _qbench([], tmp_path / "ref")
    killed = _qbench([], tmp_path / "killed")
    run_dir = tmp_path / "killed" / "quickstart" / "ste_lenet5_W2A4_fp_s0"
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2 and (run_dir / "checkpoint.pt").exists():
            break
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (run_dir / "result.json").exists(), "the run finished before it could be killed"
    resumed = _qbench([], tmp_path / "killed")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resumed from" in out
    reference.communicate(timeout=300)
    ref = json.loads((tmp_path / "ref" / "quickstart" / "ste_lenet5_W2A4_fp_s0" / "result.json").read_text())
    res = json.loads((run_dir / "result.json").read_text())
    assert res["status"] == ref["status"] == "complete"
    assert res["test_top1"] == ref["test_top1"] and res["test_loss"] == pytest.approx(ref["test_loss"], rel=1e-6)
    ref_rows = (tmp_path / "ref" / "quickstart" / "ste_lenet5_W2A4_fp_s0" / "metrics.jsonl").read_text().splitlines()
    res_rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["train_loss"] for r in res_rows] == pytest.approx(
        [json.loads(r)["train_loss"] for r in ref_rows], rel=1e-6)


def test_unsupported_bits_are_left_out_of_the_plan_with_the_reason():
    """A weight-only method (activation_bits=(32,)) at W1A1 is not run with float activations under a W1A1 label."""
    from qbench.bits import parse_bits
    from qbench.errors import BitsError
    from qbench.registry import get_method_class

    cfg = load_config("quickstart", ["methods=[fp,ste,bcgd]", "bits=[W1A4,W3A4]", "seeds=[0]"])
    reasons: list[str] = []
    ids = [c.run_id for c in plan_cells(cfg, on_unsupported=reasons.append)]
    # bcgd supports W1, W2, W4 only (spec §3): its W3A4 cell is left out, ste's is kept.
    assert "bcgd_lenet5_W3A4_fp_s0" not in ids and "ste_lenet5_W3A4_fp_s0" in ids and "bcgd_lenet5_W1A4_fp_s0" in ids
    assert len(reasons) == 1 and reasons[0].startswith("bcgd W3A4: left out") and "W1, W2, W4" in reasons[0]
    weight_only = type("WeightOnly", (get_method_class("ste"),), {"name": "weight_only", "activation_bits": (32,)})
    assert weight_only.unsupported_bits(parse_bits("W1A32")) is None
    assert "quantizes weights only" in weight_only.unsupported_bits(parse_bits("W1A1"))
    with pytest.raises(BitsError, match="A32 keeps float activations"):
        weight_only().check_bits(parse_bits("W1A1"))


def test_method_bits_give_one_method_its_own_bit_widths():
    cfg = load_config("quickstart", ["methods=[fp,ste,bcgd]", "bits=[W1A4]", "seeds=[0]", "method_bits.ste=[W1A32,W2A2]"])
    ids = [c.run_id for c in plan_cells(cfg)]
    assert ids == ["fp_lenet5_W32A32_fp_s0", "ste_lenet5_W1A32_fp_s0", "ste_lenet5_W2A2_fp_s0", "bcgd_lenet5_W1A4_fp_s0"]
    from qbench.errors import ConfigError, QbenchError

    with pytest.raises(ConfigError, match="method_bits.lsq: 'lsq' is not in methods"):
        load_config("quickstart", ["methods=[fp,ste]", "method_bits.lsq=[W2A2]"])
    with pytest.raises(QbenchError, match="W1X4"):
        load_config("quickstart", ["methods=[fp,ste]", "method_bits.ste=[W1X4]"])
