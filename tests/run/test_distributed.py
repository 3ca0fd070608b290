"""torchrun on the CPU (gloo): DDP equals one process with the same global batch, and a killed job resumes.

The equivalence tests run qbench's real path on both sides, unchanged: ``run_cell`` under ``torchrun
--nproc_per_node=2`` with ``WORLD_SIZE=2`` (this file is also the torchrun worker, see ``_worker``) and ``run_cell`` in
one process. The training loaders order every epoch like ``DistributedSampler`` in one process too (``num_replicas=1``,
same seed), so step k of both runs sees the same global batch: rank r takes the positions r, r+2, … of the same
permutation, and the two per-rank halves of a global batch of 32 are exactly that permutation's k-th block of 32.

The model is ``qbench_ddp_tinynet`` (registered below): three convolutions and a linear classifier **without
BatchNorm or dropout**. DDP averages gradients but not BatchNorm batch statistics, so a BN model's per-rank statistics
(over 16 images) differ from the full batch's (32) and the runs would not be comparable step by step. The data is
``digits`` (no augmentation: the per-rank augmentation streams would differ too), 256 training images, an exact
multiple of the global batch, so every rank's batch has the same size and the mean of the per-rank mean losses is
the full batch's mean loss.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from timm.models import register_model
from torch import nn

import qbench.run.distributed as qdist
from qbench.config import load_config
from qbench.errors import QbenchError
from qbench.run.runner import cell_config, plan_cells, run_cell, run_suite

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
EQUIV_METHODS = ("fp", "ste", "bcgd", "aqe")
EQUIV = ["data.name=digits", "data.train_subset=256", "data.batch_size=32", "model.archs=[qbench_ddp_tinynet]",
         "bits=[W1A4]", "seeds=[0]", "policies=[fp]", "train.epochs=2", "train.lr=0.05", "train.device=cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyNet(nn.Module):
    """conv–ReLU ×3 (the middle two quantized under policy fp), global average pool, linear; no BN, no dropout."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 8, **_):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.act3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)
        self.pretrained_cfg = self.default_cfg = {"first_conv": "conv1", "classifier": "fc",
                                                  "input_size": (in_chans, 8, 8), "num_classes": num_classes}

    def forward(self, x):
        x = self.act3(self.conv3(self.act2(self.conv2(self.act1(self.conv1(x))))))
        return self.fc(self.pool(x).flatten(1))


if "qbench_ddp_tinynet" not in __import__("timm").list_models("qbench_ddp_tinynet"):
    @register_model
    def qbench_ddp_tinynet(pretrained: bool = False, **kwargs) -> TinyNet:
        return TinyNet(**kwargs)


class NaNOnRank1(TinyNet):
    """TinyNet whose logits turn NaN on rank 1 only, from its third training forward on: one rank diverges alone."""

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.train_calls = getattr(self, "train_calls", 0) + 1
            if qdist.rank() == 1 and self.train_calls >= 3:
                out = out * float("nan")
        return out


if "qbench_ddp_nan_on_rank1" not in __import__("timm").list_models("qbench_ddp_nan_on_rank1"):
    @register_model
    def qbench_ddp_nan_on_rank1(pretrained: bool = False, **kwargs) -> NaNOnRank1:
        return NaNOnRank1(**kwargs)


def _cell_config(method: str, results_dir):
    """(the resolved config of the one cell of ``method``, that cell)."""
    cfg = load_config("quickstart", [*EQUIV, f"methods=[{method}]", f"results_dir={results_dir}"])
    (cell,) = plan_cells(cfg)
    return cell_config(cfg, cell, {"model.save_final": True}), cell  # the final weights (model.pt) are compared


def _worker(out: str) -> None:
    """torchrun entry point: train every method of EQUIV_METHODS with run_cell under DDP (WORLD_SIZE=2)."""
    torch.set_num_threads(1)
    with qdist.session("cpu"):
        assert qdist.world_size() == 2
        for method in EQUIV_METHODS:
            cfg, cell = _cell_config(method, out)
            run_cell(cfg, cell, Path(out) / "suite" / cell.run_id, progress=False, log=lambda _m: None)


def _diverging_worker(out: str) -> None:
    """torchrun entry point: one cell whose loss is NaN on rank 1 only."""
    torch.set_num_threads(1)
    with qdist.session("cpu"):
        cfg, cell = _cell_config("ste", out)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, archs=["qbench_ddp_nan_on_rank1"]))
        cell = dataclasses.replace(cell, arch="qbench_ddp_nan_on_rank1")
        run_cell(cfg, cell, Path(out) / "suite" / "diverging", progress=False, log=lambda _m: None)


def _env() -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    ddp_out = tmp_path / "ddp"
    proc = subprocess.run([*TORCHRUN, __file__, "worker", str(ddp_out)], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    for method in EQUIV_METHODS:
        cfg, cell = _cell_config(method, tmp_path / "one")
        run_id = cell.run_id
        one = run_cell(cfg, cell, tmp_path / "one" / run_id, progress=False, log=lambda _m: None)
        ddp_dir = ddp_out / "suite" / run_id
        ddp = json.loads((ddp_dir / "result.json").read_text())
        assert ddp["status"] == one["status"] == "complete", method
        # same global batches → same steps: final weights (latent weights, BCGD's learned α, biases) within fp32
        # rounding of the different reduction order
        w_one = torch.load(tmp_path / "one" / run_id / "model.pt", weights_only=True)
        w_ddp = torch.load(ddp_dir / "model.pt", weights_only=True)
        assert set(w_one) == set(w_ddp), "the DDP run must save the unwrapped model's keys (no 'module.')"
        for key in w_one:
            torch.testing.assert_close(w_ddp[key], w_one[key], rtol=1e-4, atol=1e-5, msg=f"{method}: {key}")
        # metrics reduced across ranks equal the one-process metrics; recurrence diagnostics too
        rows_one = [json.loads(r) for r in (tmp_path / "one" / run_id / "metrics.jsonl").read_text().splitlines()]
        rows_ddp = [json.loads(r) for r in (ddp_dir / "metrics.jsonl").read_text().splitlines()]
        assert len(rows_one) == len(rows_ddp) == 2
        for a, b in zip(rows_one, rows_ddp):
            for key in ("train_loss", "train_acc", "val_loss", "val_top1", "loss_q", "hamming_to_best", "flip_rate"):
                if a.get(key) is None or b.get(key) is None:  # absent, or NaN written as null (first flip rate)
                    assert a.get(key) is None and b.get(key) is None and (key in a) == (key in b), (method, key)
                else:
                    assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (method, key)
        if method != "fp":
            assert "hamming_to_best" in rows_ddp[-1]
        assert ddp["test_top1"] == pytest.approx(one["test_top1"], abs=1e-9)
        assert ddp["test_loss"] == pytest.approx(one["test_loss"], rel=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# A killed torchrun job resumes (the real CLI: torchrun -m qbench run ...)
# ---------------------------------------------------------------------------------------------------------------------

RESUME = ["suite=quickstart", "method=ste", "seeds=[0]", "bits=[W2A4]", "train.epochs=3", "data.train_subset=1280",
          "data.batch_size=64", "train.device=cpu"]
RESUME_RUN = "ste_lenet5_W2A4_fp_s0"


def _torchrun_qbench(results_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([*TORCHRUN, "-m", "qbench", "run", *RESUME, f"results_dir={results_dir}",
                             "--no-progress"], env=_env(),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _descendants(pid: int) -> list[int]:
    """Child processes, recursively (torchrun starts each worker in a session of its own, so killing torchrun's
    process group alone would leave the workers running)."""
    out = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in map(int, children):
        out.append(child)
        out.extend(_descendants(child))
    return out


def _kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL the whole job at once, as a lost machine or a scheduler would: torchrun and every worker."""
    pids = _descendants(proc.pid)
    for pid in [proc.pid, *pids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for pid in pids:  # the workers are torchrun's children, not ours: wait until they are gone
        deadline = time.time() + 10
        while Path(f"/proc/{pid}").exists() and time.time() < deadline:
            time.sleep(0.05)


@pytest.mark.slow  # ~1 min of 2 cores: three torchrun jobs of 2 ranks (`pytest -m slow tests/run/test_distributed.py`)
def test_killed_torchrun_job_resumes_to_the_same_final_metrics(tmp_path):
    reference = _torchrun_qbench(tmp_path / "ref")
    killed = _torchrun_qbench(tmp_path / "killed")
    run_dir = tmp_path / "killed" / "quickstart" / RESUME_RUN
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().strip() and (run_dir / "checkpoint.pt").exists():
            break
        if killed.poll() is not None:
            break
        time.sleep(0.05)
    _kill_job(killed)
    assert not (run_dir / "result.json").exists(), "the job finished before it could be killed"
    assert (run_dir / "checkpoint.pt").exists(), killed.stdout.read()[-3000:]

    resumed = _torchrun_qbench(tmp_path / "killed")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-3000:]
    assert "resumed from" in out and out.count("resumed from") == 1, "only rank 0 prints"
    ref_out, _ = reference.communicate(timeout=240)
    assert reference.returncode == 0, ref_out[-3000:]

    ref_dir = tmp_path / "ref" / "quickstart" / RESUME_RUN
    ref = json.loads((ref_dir / "result.json").read_text())
    res = json.loads((run_dir / "result.json").read_text())
    assert res["status"] == ref["status"] == "complete" and res["epochs_completed"] == 3
    assert res["test_top1"] == ref["test_top1"] and res["test_loss"] == pytest.approx(ref["test_loss"], rel=1e-6)
    ref_rows = [json.loads(r) for r in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    res_rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in res_rows] == [1, 2, 3]
    assert [r["train_loss"] for r in res_rows] == pytest.approx([r["train_loss"] for r in ref_rows], rel=1e-6)
    assert [r["val_top1"] for r in res_rows] == [r["val_top1"] for r in ref_rows]
    assert not (run_dir / "checkpoint.pt").exists()  # a finished cell drops its checkpoint


# ---------------------------------------------------------------------------------------------------------------------
# The helpers outside a process group
# ---------------------------------------------------------------------------------------------------------------------


def test_helpers_are_no_ops_in_one_process(tmp_path, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert qdist.dist_env() == (0, 1, 0) and qdist.is_main() and qdist.world_size() == 1
    assert qdist.init("cpu") is False and not qdist.is_initialized()
    with qdist.session("cpu") as created:
        assert created is False
    qdist.barrier()
    assert qdist.broadcast_object({"a": 1}) == {"a": 1}
    assert qdist.backend_for("cpu") == "gloo"
    assert qdist.load_on_main(tmp_path / "missing.pt") is None
    torch.save({"x": torch.ones(2)}, tmp_path / "c.pt")
    assert torch.equal(qdist.load_on_main(tmp_path / "c.pt")["x"], torch.ones(2))
    monkeypatch.setenv("RANK", "1")
    assert not qdist.is_main()


def test_unwrap_strips_ddp_and_compile_wrappers():
    from torch.nn.parallel import DataParallel

    inner = nn.Linear(2, 2)
    assert qdist.unwrap(inner) is inner
    assert qdist.unwrap(DataParallel(inner)) is inner
    assert set(qdist.unwrap(DataParallel(inner)).state_dict()) == {"weight", "bias"}


def test_global_batch_must_divide_by_the_world_size(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    cfg = load_config("quickstart", ["data.name=digits", "method=fp", "seeds=[0]", "data.batch_size=64",
                                     f"results_dir={tmp_path}"])
    with pytest.raises(QbenchError, match="global batch and must be divisible"):
        run_suite(cfg, progress=False)


@pytest.mark.slow  # a torchrun job of 2 ranks (~20 s of 2 cores): `pytest -m slow tests/run/test_distributed.py`
def test_a_rank_that_diverges_alone_stops_every_rank(tmp_path):
    """NaN on one rank only: every rank stops at the same step (no hang in DDP's all-reduce), recorded as diverged."""
    proc = subprocess.run([*TORCHRUN, __file__, "diverging-worker", str(tmp_path)], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "suite" / "diverging" / "result.json").read_text())
    assert result["status"] == "diverged" and "on another rank" in result["error"], result  # rank 0 wrote it


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "worker":
    _worker(sys.argv[2])
if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "diverging-worker":
    _diverging_worker(sys.argv[2])
