"""Run records: ``results/<suite>/<run_id>/{config.yaml, metrics.jsonl, result.json, env.json, checkpoint.pt}``.

Every file is written atomically (write to a temporary file in the same directory, fsync, ``os.replace``), so a run
killed at any point leaves either the old or the new version of each file, never a torn one.

Record schema (``result.json``, ``schema_version`` 1):
    schema_version, qbench_version, suite, run_id, status ("complete" | "failed" | "diverged"), error (str | null),
    method, tuned (bool), method_hparams (dict), arch, bits ("W1A4"), wbits, abits, policy, seed, dataset,
    epochs (planned), epochs_completed, test_top1, test_top5, test_loss, val_top1, best_val_top1, train_loss,
    wall_time_s, train_img_s, infer_img_s, peak_mem_mb, device ("cpu" | "cuda"), device_name,
    num_params, num_quantized_params, model_size_bits
``metrics.jsonl``: one JSON object per epoch: epoch, lr, train_loss, train_acc, val_loss, val_top1, val_top5,
    epoch_time_s, train_img_s, wall_time_s, and the recurrence diagnostics (loss_q, hamming_to_best, flip_rate, visit).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

__all__ = [
    "SCHEMA_VERSION",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "write_jsonl",
    "read_jsonl",
    "env_info",
    "to_jsonable",
]

SCHEMA_VERSION = 1


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


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def env_info() -> dict:
    """Versions and hardware of this process, stored as ``env.json`` beside every run."""
    import torch
    import timm

    from . import __version__

    cuda = torch.cuda.is_available()
    return {
        "qbench": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": "cuda" if cuda else "cpu",
        "cpu_name": _cpu_name(),
        "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "git_sha": _git_sha(),
    }
