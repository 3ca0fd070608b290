"""Run records: where every file under ``results_dir`` lives, atomic writes, and reading records back.

:class:`ResultsLayout` is the one owner of the paths (``results/<suite>/<run_id>/...``, the tuning folder, the bench
rows, the leaderboards); nothing else joins paths under ``results_dir``. Every file is written atomically (write to a
temporary file in the same directory, fsync, ``os.replace``), so a run killed at any point leaves either the old or the
new version of each file, never a torn one.

Record schema (``result.json``, ``schema_version`` 1):
    schema_version, qbench_version, suite, run_id, status ("complete" | "failed" | "diverged"), error (str | null),
    method, tuned (bool), method_hparams (dict), arch, bits ("W1A4"), wbits, abits, policy, seed, dataset,
    epochs (planned), epochs_completed, test_top1, test_top5, test_loss, val_top1, best_val_top1, train_loss,
    wall_time_s, train_img_s, infer_img_s, peak_mem_mb, device ("cpu" | "cuda"), device_name,
    num_params, num_quantized_params, model_size_bits
``metrics.jsonl``: one JSON object per epoch: epoch, lr, train_loss, train_acc, val_loss, val_top1, val_top5,
    epoch_time_s, train_img_s, wall_time_s, and the recurrence diagnostics (loss_q, hamming_to_best, flip_rate, visit).
``config.yaml``: the resolved suite config narrowed to the run, plus a ``cell`` block (method, arch, bits, policy, seed,
    tuned, stage, run_id) naming the run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import __version__

__all__ = [
    "SCHEMA_VERSION",
    "FINISHED",
    "CONFIG_FILE",
    "RESULT_FILE",
    "METRICS_FILE",
    "ENV_FILE",
    "CHECKPOINT_FILE",
    "MODEL_FILE",
    "TRACEBACK_FILE",
    "ResultsLayout",
    "SuiteRun",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "write_jsonl",
    "read_jsonl",
    "load_result",
    "env_info",
    "cpu_name",
    "to_jsonable",
]

SCHEMA_VERSION = 1
FINISHED = ("complete", "diverged")  # statuses a re-run skips
CONFIG_FILE = "config.yaml"
RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
ENV_FILE = "env.json"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"  # final weights of a run with model.save_final (what model.init_from_run loads)
TRACEBACK_FILE = "traceback.txt"


@dataclass(frozen=True)
class ResultsLayout:
    """Every path of one suite's records under ``results_dir``::

        <results_dir>/<suite>/<run_id>/{config.yaml, metrics.jsonl, result.json, env.json, checkpoint.pt, model.pt}
        <results_dir>/<suite>/tuning/{journal.log, <study>.json, <study>/trial_<n>/}
        <results_dir>/<suite>/bench/<device>-<settings>.json
        <results_dir>/leaderboards/<suite>.{md,csv,html,tex,png}
    """

    results_dir: Path
    suite: str

    def __init__(self, results_dir: str | os.PathLike, suite: str):
        object.__setattr__(self, "results_dir", Path(results_dir))
        object.__setattr__(self, "suite", str(suite))

    @property
    def suite_dir(self) -> Path:
        return self.results_dir / self.suite

    def run_dir(self, run_id: str) -> Path:
        return self.suite_dir / run_id

    @property
    def tuning_dir(self) -> Path:
        return self.suite_dir / "tuning"

    @property
    def journal_path(self) -> Path:
        return self.tuning_dir / "journal.log"

    def study_summary_path(self, slug: str) -> Path:
        return self.tuning_dir / f"{slug}.json"

    def trial_dir(self, slug: str, number: int) -> Path:
        return self.tuning_dir / slug / f"trial_{number}"

    @property
    def bench_dir(self) -> Path:
        return self.suite_dir / "bench"

    def bench_path(self, device: str, settings_slug: str) -> Path:
        return self.bench_dir / f"{device}-{settings_slug}.json"

    @property
    def leaderboards_dir(self) -> Path:
        return self.results_dir / "leaderboards"


@dataclass
class SuiteRun:
    """What one ``qbench run`` of a suite did: the records it wrote, the run ids it skipped and those that failed."""

    results: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, other: "SuiteRun") -> None:
        self.results += other.results
        self.skipped += other.skipped
        self.failed += other.failed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert tensors, numpy scalars, paths and non-finite floats into JSON-safe values (NaN/inf become null)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Rewrite a whole JSON-lines file atomically (the files are small: one row per epoch)."""
    atomic_write_text(path, "".join(json.dumps(to_jsonable(r), sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_result(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``result.json`` as a dict, or None when it is missing or not a readable JSON object."""
    try:
        record = json.loads((Path(run_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def env_info() -> dict:
    """Versions and hardware of this process, stored as ``env.json`` beside every run."""
    import timm  # the heavy libraries only when a record is written
    import torch

    cuda = torch.cuda.is_available()
    return {
        "qbench": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": "cuda" if cuda else "cpu",
        "cpu_name": cpu_name(),
        "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "git_sha": _git_sha(),
    }
