"""Experiment trackers a training run also writes to (``loggers: [tensorboard, mlflow, wandb]``; none by default).

qbench's own record (``metrics.jsonl``, ``result.json``) stays the source of every leaderboard; a tracker gets a copy,
where researchers already look:

* ``tensorboard``: event files in ``<run_dir>/tensorboard/`` (``tensorboard --logdir results/<suite>``), written with
  torch's ``SummaryWriter``.
* ``mlflow``: the tracking server of ``MLFLOW_TRACKING_URI`` when set, else MLflow's local file store
  ``<results_dir>/mlruns`` (``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri results/mlruns``); one
  experiment per suite, one MLflow run per qbench run.
* ``wandb``: Weights & Biases, offline unless ``WANDB_MODE`` says otherwise (files under ``<run_dir>/wandb/``;
  ``wandb sync`` uploads them later); project ``WANDB_PROJECT`` or ``qbench``, grouped by suite.

Each gets, per epoch, the metrics row of ``metrics.jsonl`` (train/val loss and accuracy, lr, throughput and the
recurrence diagnostics ``loss_q``, ``hamming_to_best``, ``flip_rate``, ``visit``) at step = epoch; at the start the
resolved config (``config.yaml``'s content); at the end the run's status and final numbers (``final/test_top1``, ...).
A resumed run continues its tracker run (the ids are kept in ``<run_dir>/trackers.json``). The packages are optional
and imported only when a logger is asked for; a missing one is a one-line error naming the extra to install, raised
before any cell trains (:func:`require_loggers`). Loggers never change a run's result (they are not part of its
fingerprint, :data:`qbench.config.RESULT_IRRELEVANT`).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from ..config import LOGGERS
from ..errors import QbenchError
from ..results import atomic_write_json

__all__ = ["LOGGER_EXTRAS", "TRACKERS_FILE", "require_loggers", "metric_tags", "Trackers", "open_trackers"]

#: logger name → (module to import, the pip extra of qbench-bench that installs it)
LOGGER_EXTRAS = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
                 "wandb": ("wandb", "wandb")}
#: where a run keeps the ids of its tracker runs, so a resumed run continues them
TRACKERS_FILE = "trackers.json"
_RECURRENCE_KEYS = ("loss_q", "hamming_to_best", "flip_rate", "visit")


def _import(name: str):
    module, extra = LOGGER_EXTRAS[name]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise QbenchError(f"loggers: {name} needs its package ({exc.name or module} is not installed); "
                          f'pip install "qbench-bench[{extra}]" or drop it from loggers') from None


def require_loggers(names: Sequence[str]) -> None:
    """Import every logger's package now: a missing one is a one-line error before any cell trains."""
    for name in names:
        if name not in LOGGERS:
            raise QbenchError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
        _import(name)


def metric_tags(row: Mapping[str, Any]) -> dict[str, float]:
    """A metrics row as tracker scalars: ``train_loss`` → ``train/loss``, ``val_top1`` → ``val/top1``, the
    recurrence diagnostics under ``recurrence/``; the epoch (the step), non-numbers and non-finite values left out."""
    tags = {}
    for key, value in row.items():
        if key == "epoch" or isinstance(value, str) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            continue
        if key in _RECURRENCE_KEYS:
            tag = f"recurrence/{key}"
        elif key.startswith(("train_", "val_")) and key != "train_img_s":
            tag = key.replace("_", "/", 1)
        else:
            tag = key
        tags[tag] = number
    return tags


def _final(result: Mapping[str, Any]) -> dict[str, float]:
    return {f"final/{tag}": value for tag, value in metric_tags(result).items()
            if not tag.startswith(("schema_version", "seed", "wbits", "abits", "epochs", "tuned"))}


def _flat(config: Mapping, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value, default=str) if not isinstance(value, str) else value
    return out


class _TensorBoard:
    def __init__(self, run_dir: Path, name: str, config: Mapping, resumed: bool, ids: dict):
        log_dir = run_dir / "tensorboard"
        if not resumed and log_dir.exists():
            shutil.rmtree(log_dir)  # a fresh start: the old curves would overlay the new ones
        self.writer = _import("tensorboard").SummaryWriter(log_dir=str(log_dir))
        if not resumed:
            text = yaml.safe_dump(dict(config), sort_keys=False)
            self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)
        self.step = 0

    def epoch(self, step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()
        self.step = step

    def finish(self, status: str, final: Mapping[str, float]) -> None:
        for tag, value in final.items():
            self.writer.add_scalar(tag, value, self.step)
        self.writer.add_text("status", status, self.step)
        self.writer.close()


class _MLflow:
    def __init__(self, run_dir: Path, name: str, config: Mapping, resumed: bool, ids: dict, *, results_dir: Path,
                 suite: str):
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = (Path(results_dir) / "mlruns").resolve().as_uri()
            # MLflow 3 keeps the local file store in maintenance mode behind this opt-in; it needs no database.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        tracking = _import("mlflow").tracking
        self.entities = importlib.import_module("mlflow.entities")
        self.client = tracking.MlflowClient(tracking_uri=uri)
        previous = ids.get("mlflow") or {}
        if resumed and previous.get("uri") == uri and previous.get("run_id"):
            self.run_id = previous["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            cell = config.get("cell") or {}
            tags = {f"qbench.{k}": str(v) for k, v in cell.items() if k != "fingerprint"}
            run = self.client.create_run(self._experiment(suite), run_name=name, tags=tags)
            self.run_id = run.info.run_id
            params = [self.entities.Param(k, v[:6000]) for k, v in sorted(_flat(config).items())]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=params[start:start + 100])
            self.client.log_text(self.run_id, yaml.safe_dump(dict(config), sort_keys=False), "config.yaml")
        ids["mlflow"] = {"uri": uri, "run_id": self.run_id}

    def _experiment(self, suite: str) -> str:
        found = self.client.get_experiment_by_name(suite)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(suite)
        except Exception:  # noqa: BLE001 - another process created it in between
            return self.client.get_experiment_by_name(suite).experiment_id

    def _log(self, values: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self.entities.Metric(tag, value, now, step) for tag, value in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
        self.step = step

    def epoch(self, step: int, values: Mapping[str, float]) -> None:
        self._log(values, step)

    def finish(self, status: str, final: Mapping[str, float]) -> None:
        self._log(final, getattr(self, "step", 0))
        self.client.set_tag(self.run_id, "qbench.status", status)
        self.client.set_terminated(self.run_id, "FINISHED" if status in ("complete", "diverged") else "FAILED")


class _WandB:
    def __init__(self, run_dir: Path, name: str, config: Mapping, resumed: bool, ids: dict, *, suite: str):
        wandb = _import("wandb")
        previous = (ids.get("wandb") or {}).get("id") if resumed else None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "qbench"), group=suite, name=name, dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"), config=dict(config), id=previous,
            resume="allow" if previous else None, settings=wandb.Settings(silent=True, console="off"),
        )
        ids["wandb"] = {"id": self.run.id}

    def epoch(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def finish(self, status: str, final: Mapping[str, float]) -> None:
        self.run.summary.update({**final, "status": status})
        self.run.finish(exit_code=0 if status in ("complete", "diverged") else 1)


class Trackers:
    """The trackers of one run: :meth:`epoch` after every epoch, :meth:`finish` once at the end."""

    def __init__(self, trackers: Sequence[Any] = ()):
        self.trackers = list(trackers)

    def epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        """Log one ``metrics.jsonl`` row (``fit``'s epoch callback signature) at step = its epoch."""
        values = metric_tags(row)
        for tracker in self.trackers:
            tracker.epoch(int(row.get("epoch", epoch + 1)), values)

    def chain(self, callback: Callable[[int, dict], None] | None) -> Callable[[int, dict], None] | None:
        """``fit``'s epoch callback: log the row, then call ``callback`` (Optuna's report/prune hook) if any."""
        if not self.trackers:
            return callback

        def on_epoch(epoch: int, row: dict) -> None:
            self.epoch(epoch, row)
            if callback is not None:
                callback(epoch, row)

        return on_epoch

    def finish(self, result: Mapping[str, Any]) -> None:
        """Close every tracker with the run's ``status`` and final numbers (a ``result.json`` dict)."""
        status = str(result.get("status") or "failed")
        final = _final(result)
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.finish(status, final)


def open_trackers(names: Sequence[str], run_dir: str | Path, *, name: str, config: Mapping, suite: str,
                  results_dir: str | Path, resumed: bool) -> Trackers:
    """Start the trackers ``names`` for one run (``config``: the resolved config written to ``config.yaml``;
    ``resumed``: continue the tracker runs of ``<run_dir>/trackers.json`` instead of starting new ones)."""
    if not names:
        return Trackers()
    run_dir = Path(run_dir)
    path = run_dir / TRACKERS_FILE
    try:
        ids = json.loads(path.read_text()) if resumed and path.exists() else {}
    except (OSError, ValueError):
        ids = {}
    trackers = []
    for logger in names:
        if logger == "tensorboard":
            trackers.append(_TensorBoard(run_dir, name, config, resumed, ids))
        elif logger == "mlflow":
            trackers.append(_MLflow(run_dir, name, config, resumed, ids, results_dir=Path(results_dir), suite=suite))
        elif logger == "wandb":
            trackers.append(_WandB(run_dir, name, config, resumed, ids, suite=suite))
        else:
            raise QbenchError(f"unknown logger {logger!r}; choose from {', '.join(LOGGERS)}")
    atomic_write_json(path, ids)
    return Trackers(trackers)
