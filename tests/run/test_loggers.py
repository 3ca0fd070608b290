"""Experiment trackers (``loggers: [tensorboard, mlflow, wandb]``): what a run writes to each, read back offline with
the trackers' own readers; resuming continues a tracker run; a missing package or an unknown name is one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from qbench.config import fingerprint, load_config
from qbench.errors import ConfigError, QbenchError
from qbench.run.loggers import TRACKERS_FILE, metric_tags, open_trackers, require_loggers
from qbench.run.runner import run_suite

TINY = ["data.name=digits", "model.archs=[lenet5]", "train.epochs=2", "seeds=[0]", "bits=[W1A4]",
        "data.batch_size=64", "train.lr=0.05", "methods=[ste]"]
RUN_ID = "ste_lenet5_W1A4_fp_s0"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tiny run with TensorBoard and MLflow (local file store) on, and its qbench record."""
    root = tmp_path_factory.mktemp("tracked")
    cfg = load_config("quickstart", [*TINY, f"results_dir={root}", "loggers=[tensorboard,mlflow]"])
    run_suite(cfg, progress=False, log=lambda _msg: None)
    run_dir = root / "quickstart" / RUN_ID
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return root, run_dir, rows, json.loads((run_dir / "result.json").read_text())


def test_metric_tags_group_the_row_and_drop_what_is_not_a_number():
    row = {"epoch": 3, "lr": 0.1, "train_loss": 0.5, "train_acc": 90.0, "val_top1": 88.0, "train_img_s": 1000.0,
           "loss_q": 0.7, "hamming_to_best": 0.0, "flip_rate": float("nan"), "visit": True, "note": "x", "val_top5": None}
    assert metric_tags(row) == {"lr": 0.1, "train/loss": 0.5, "train/acc": 90.0, "val/top1": 88.0,
                                "train_img_s": 1000.0, "recurrence/loss_q": 0.7, "recurrence/hamming_to_best": 0.0,
                                "recurrence/visit": 1.0}


def test_tensorboard_gets_every_epoch_the_diagnostics_and_the_config(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir, rows, result = tracked
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert scalars["val/top1"] == [(r["epoch"], pytest.approx(r["val_top1"])) for r in rows]
    assert scalars["train/loss"] == [(r["epoch"], pytest.approx(r["train_loss"])) for r in rows]
    assert scalars["recurrence/loss_q"] == [(r["epoch"], pytest.approx(r["loss_q"])) for r in rows]
    assert [s for s, _ in scalars["recurrence/hamming_to_best"]] == [1, 2]
    assert scalars["final/test_top1"] == [(2, pytest.approx(result["test_top1"]))]
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    config = yaml.safe_load("\n".join(line[4:] for line in config_text.splitlines()))
    assert config["cell"]["run_id"] == RUN_ID and config["loggers"] == ["tensorboard", "mlflow"]


def test_mlflow_file_store_has_one_run_per_record_with_metrics_params_and_config(tracked):
    from mlflow.tracking import MlflowClient

    root, run_dir, rows, result = tracked
    client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("quickstart")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == f"quickstart/{RUN_ID}" and run.info.status == "FINISHED"
    assert run.data.tags["qbench.run_id"] == RUN_ID and run.data.tags["qbench.status"] == "complete"
    history = client.get_metric_history(run.info.run_id, "val/top1")
    assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r["val_top1"])) for r in rows]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "recurrence/flip_rate")] == [2]  # nan at 1
    assert run.data.metrics["final/test_top1"] == pytest.approx(result["test_top1"])
    assert run.data.params["train.lr"] == "0.05" and run.data.params["methods"] == '["ste"]'
    config = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml", str(root))).read_text())
    assert config["cell"]["run_id"] == RUN_ID
    assert json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]["run_id"] == run.info.run_id


def test_loggers_change_neither_the_fingerprint_nor_the_record(tracked, tmp_path):
    _, _, rows, result = tracked
    plain = load_config("quickstart", [*TINY, f"results_dir={tmp_path}"])
    assert result["fingerprint"] == fingerprint(plain)
    untracked = run_suite(plain, progress=False, log=lambda _msg: None).results[0]
    assert untracked["test_top1"] == result["test_top1"] and untracked["train_loss"] == result["train_loss"]
    assert not (tmp_path / "quickstart" / RUN_ID / "tensorboard").exists()
    assert not (tmp_path / "mlruns").exists()


def test_a_resumed_run_continues_its_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "s" / "r"
    kwargs = dict(name="s/r", config={"name": "s", "cell": {"run_id": "r"}}, suite="s", results_dir=tmp_path)
    first = open_trackers(["mlflow"], run_dir, resumed=False, **kwargs)
    first.epoch(0, {"epoch": 1, "val_top1": 10.0})  # then the process is killed: no finish
    second = open_trackers(["mlflow"], run_dir, resumed=True, **kwargs)
    second.epoch(1, {"epoch": 2, "val_top1": 20.0})
    second.finish({"status": "complete", "test_top1": 21.0})
    fresh = open_trackers(["mlflow"], run_dir, resumed=False, **kwargs)  # --fresh: a new MLflow run
    fresh.finish({"status": "failed"})
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id], order_by=["attributes.status"])
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    assert [(m.step, m.value) for m in client.get_metric_history(runs[1].info.run_id, "val/top1")] == [
        (1, 10.0), (2, 20.0)]


def test_wandb_writes_an_offline_run_with_the_metrics(tmp_path, monkeypatch):
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "s" / "r"
    trackers = open_trackers(["wandb"], run_dir, name="s/r", config={"name": "s", "train": {"lr": 0.1}}, suite="s",
                             results_dir=tmp_path, resumed=False)
    trackers.epoch(0, {"epoch": 1, "val_top1": 10.0, "loss_q": 0.25})
    trackers.finish({"status": "complete", "test_top1": 11.0})
    wandb.teardown()  # what the process's exit does: the W&B service writes out what it still holds
    (offline,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data = offline.read_bytes()
    assert b"val/top1" in data and b"recurrence/loss_q" in data and b"final/test_top1" in data


def test_unknown_or_repeated_loggers_are_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        load_config("quickstart", ["loggers=[tensorbord]"])
    with pytest.raises(ConfigError, match="twice"):
        load_config("quickstart", ["loggers=[mlflow,mlflow]"])
    assert load_config("quickstart").loggers == []


def test_a_missing_package_is_one_line_naming_the_extra_before_any_cell_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    with pytest.raises(QbenchError) as exc:
        require_loggers(["wandb"])
    assert 'pip install "qbench-bench[wandb]"' in str(exc.value) and "\n" not in str(exc.value)
    cfg = load_config("quickstart", [*TINY, f"results_dir={tmp_path}", "loggers=[wandb]"])
    with pytest.raises(QbenchError, match=r"qbench-bench\[wandb\]"):
        run_suite(cfg, progress=False, log=lambda _msg: None)
    assert not (tmp_path / "quickstart").exists()
