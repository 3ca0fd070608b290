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
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import __version__
from .config import check_path_segment
from .errors import QbenchError

try:  # POSIX advisory locks (also over NFS through lockd); absent on Windows, where cells are not locked
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None

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
    "CellLock",
    "check_path_segment",
    "check_writable",
    "quarantine",
    "remove_temp_files",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "write_jsonl",
    "read_jsonl",
    "load_result",
    "read_config",
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
LOCK_FILE = ".lock"


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
        object.__setattr__(self, "suite", check_path_segment(suite, "suite name"))

    @property
    def suite_dir(self) -> Path:
        return self.results_dir / self.suite

    def run_dir(self, run_id: str) -> Path:
        return self.suite_dir / check_path_segment(run_id, "run id")

    @property
    def tuning_dir(self) -> Path:
        return self.suite_dir / "tuning"

    @property
    def journal_path(self) -> Path:
        return self.tuning_dir / "journal.log"

    def study_summary_path(self, slug: str) -> Path:
        return self.tuning_dir / f"{check_path_segment(slug, 'study name')}.json"

    def trial_dir(self, slug: str, number: int) -> Path:
        return self.tuning_dir / check_path_segment(slug, "study name") / f"trial_{int(number)}"

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
    """What one ``qbench run`` of a suite did: the records it wrote, the run ids it skipped (finished before), those that
    failed, and those another process was training."""

    results: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished before: nothing to do
    failed: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)  # another process was training them (CellLock)

    def add(self, other: "SuiteRun") -> None:
        self.results += other.results
        self.skipped += other.skipped
        self.failed += other.failed
        self.locked += other.locked


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Records are created with the user's umask (0644 typically), as open() would: mkstemp's 0600 would hide a shared
# results folder from teammates. Read once: os.umask can only be read by setting it.
_FILE_MODE = 0o666 & ~_umask()
TEMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, _FILE_MODE)
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
    """Every row of a JSON-lines file ([] when it does not exist); a torn or non-object line raises ValueError."""
    path = Path(path)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path} has a line that is not a JSON object")
    return rows


def quarantine(path: str | os.PathLike) -> Path:
    """Move an unreadable record file aside as ``<name>.corrupt-<UTC time>`` (kept for inspection, never read again)
    and return the new path."""
    path = Path(path)
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
    os.replace(path, target)
    return target


def remove_temp_files(folder: str | os.PathLike) -> int:
    """Delete the temporary files an interrupted atomic write left in ``folder`` (``.<name>.*.tmp``); returns how many.
    Only call it while holding the folder's :class:`CellLock`: a live writer's temp file would be deleted too."""
    removed = 0
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def check_writable(folder: str | os.PathLike) -> None:
    """One line at start-up, not a traceback per cell, when ``folder`` cannot be created or written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".qbench-write-test.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise QbenchError(f"results_dir {folder} is not writable ({exc.strerror or type(exc).__name__}); pass "
                          "results_dir=<a folder you can write>") from None


class CellLock:
    """An advisory lock on one run folder, so several ``qbench run`` processes (terminals, machines sharing a folder
    over NFS with shards) split a suite's cells instead of training each twice.

    A POSIX record lock (``fcntl.lockf``) on ``<run_dir>/.lock``: the kernel (or NFS's lock manager) releases it when the
    holder dies, so a lock never goes stale. The holder writes its host, pid and start time into the file so another
    process can say who holds the cell. ``acquire()`` never waits: False means someone else trains this cell now.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self._fh = None

    def acquire(self) -> bool:
        if fcntl is None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}))
        fh.flush()
        self._fh = fh
        return True

    def holder(self) -> str:
        """``host:pid since <time>`` of the process holding the lock, as it wrote it."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"{info.get('host', '?')}:{info.get('pid', '?')} since {info.get('since', '?')}"
        except (OSError, ValueError):
            return "another process"

    def release(self) -> None:
        if self._fh is not None:
            fcntl.lockf(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "CellLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def load_result(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``result.json`` as a dict, or None when it is missing or not a readable JSON object."""
    try:
        record = json.loads((Path(run_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_config(run_dir: str | os.PathLike) -> dict | None:
    """The run's saved ``config.yaml`` as a dict, or None when it is missing or unreadable."""
    try:
        data = yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


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
