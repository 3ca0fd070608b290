"""What a run's result depends on: the result-relevant part of its resolved config and a fingerprint of it.

A run record is only true to its config: resuming a killed cell, skipping a finished one, or pooling seeds into one
leaderboard cell is right only when the config that produced the record and the config asked for now agree on
everything that changes the result. Everything else is presentation or hardware and may change freely
(:data:`RESULT_IRRELEVANT`): where results and data live, how many loader workers run, the device and its speed
settings (compile, channels_last, pinned memory, the decode path), progress and logging, the tuning and bench blocks,
the seeds and the ``seeds: auto`` bounds (a cell's seeds are pooled; the seed is part of the run id) and the run's
cell block (its name). ``train.amp`` stays relevant: bf16 training is another experiment. A narrowed run config keeps
only its own method's ``method_hparams``, so changing another method's hyperparameters in the suite does not touch
this run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .load import to_dict
from .schema import SuiteConfig

__all__ = ["RESULT_IRRELEVANT", "result_config", "fingerprint", "fingerprint_diff"]

#: dotted keys (or whole blocks) that never change a run's result
RESULT_IRRELEVANT = (
    "name", "description", "results_dir", "plugins", "shard", "tune", "bench", "paper", "target_accuracy", "stages",
    "seeds", "seeds_min", "seeds_max", "cell", "loggers",
    "data.root", "data.download", "data.num_workers", "data.pin_memory", "data.persistent_workers",
    "data.eval_batch_size", "data.decode",
    "model.save_final",
    "train.device", "train.compile", "train.channels_last",
)
# The blocks a suite of the other kind does not read.
_KIND_IRRELEVANT = {
    "train": ("theory",),
    "theory": ("train", "data", "model", "bits", "policies", "method_bits", "methods", "tuned"),
}


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key in sorted(value, key=str):
            _flatten(value[key], f"{prefix}{key}.", out)
    else:
        out[prefix[:-1]] = value


def result_config(cfg: SuiteConfig | Mapping) -> dict[str, Any]:
    """The dotted keys of ``cfg`` (a config or a saved ``config.yaml`` dict) that change a run's result, flattened."""
    data = to_dict(cfg) if not isinstance(cfg, Mapping) else dict(cfg)
    kind = str(data.get("kind") or "train")
    methods = data.get("methods") or []
    hparams = data.get("method_hparams") or {}
    if len(methods) == 1 and isinstance(hparams, Mapping):  # a run's config: its own method's hyperparameters only
        base = str(methods[0]).partition(":")[0]
        data["method_hparams"] = {base: hparams.get(base) or {}}
    flat: dict[str, Any] = {}
    _flatten(data, "", flat)
    skip = RESULT_IRRELEVANT + _KIND_IRRELEVANT.get(kind, ())
    return {k: v for k, v in flat.items() if not any(k == s or k.startswith(s + ".") for s in skip)}


def fingerprint(cfg: SuiteConfig | Mapping) -> str:
    """A short stable hash of :func:`result_config` (16 hex digits of SHA-256 over canonical JSON)."""
    text = json.dumps(result_config(cfg), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_diff(old: SuiteConfig | Mapping, new: SuiteConfig | Mapping, limit: int = 4) -> list[str]:
    """``["train.lr=0.05 (now 0.5)", ...]``: the result-relevant keys whose values differ (at most ``limit`` shown,
    then how many more)."""
    a, b = result_config(old), result_config(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    shown = [f"{k}={a.get(k, '<unset>')} (now {b.get(k, '<unset>')})" for k in keys[:limit]]
    return shown + ([f"{len(keys) - limit} more"] if len(keys) > limit else [])
