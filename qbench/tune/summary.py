"""What a study cost and found: its summary (``<results_dir>/<suite>/tuning/<slug>.json``, read by the leaderboard),
the table ``qbench tune`` logs at the end, and the best parameters ``qbench run tuned=true`` trains with."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from ..config import SuiteConfig, recipe_dims
from ..errors import QbenchError
from ..results import ResultsLayout, atomic_write_json
from ..run.runner import Cell
from .space import (
    DEFAULTS_ATTR,
    META_ATTR,
    SURPLUS_ATTR,
    StudySpec,
    format_params,
    method_space,
    overrides_from_params,
)
from .storage import journal_path, open_storage, storage_label, storage_url

__all__ = ["study_summary", "summary_path", "write_summary", "log_table", "tuned_overrides"]

_STATE_KEYS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
               TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


def summary_path(cfg: SuiteConfig, spec: StudySpec) -> Path:
    return ResultsLayout(cfg.results_dir, cfg.name).study_summary_path(spec.slug)


def _best(trials: list) -> Any:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def study_summary(cfg: SuiteConfig, spec: StudySpec, study: optuna.Study) -> dict:
    """What a study cost and found; written to ``<results_dir>/<suite>/tuning/<slug>.json``."""
    trials = study.get_trials(deepcopy=False)
    count = {key: 0 for key in _STATE_KEYS.values()}
    hours = {"cpu": 0.0, "gpu": 0.0}
    devices: dict[str, int] = {}
    for t in trials:
        if t.user_attrs.get(SURPLUS_ATTR):
            continue
        count[_STATE_KEYS[t.state]] += 1
        if t.duration is not None:
            hours["gpu" if t.user_attrs.get("device") == "cuda" else "cpu"] += t.duration.total_seconds() / 3600
        if t.user_attrs.get("device_name"):
            devices[t.user_attrs["device_name"]] = devices.get(t.user_attrs["device_name"], 0) + 1
    base = spec.method.partition(":")[0]
    best = _best(trials)
    default = next((t for t in trials if t.user_attrs.get(DEFAULTS_ATTR) and t.state.is_finished()
                    and t.state != TrialState.FAIL), None)
    default_value = None
    if default is not None:
        default_value = default.value if default.state == TrialState.COMPLETE else None
    meta = study.user_attrs.get(META_ATTR) or {}
    return {
        "study": spec.name, "suite": spec.suite, "method": spec.method, "arch": spec.arch, "bits": spec.bits,
        "policy": spec.policy, "storage": storage_label(cfg),
        "n_trials": int(cfg.tune.n_trials), "epochs_per_trial": int(cfg.tune.epochs),
        "pruner": str(cfg.tune.pruner), "sampler_seed": int(cfg.tune.seed),
        "trials_complete": count["complete"], "trials_pruned": count["pruned"], "trials_failed": count["failed"],
        "trials_running": count["running"], "trials_waiting": count["waiting"],
        "trials_finished": count["complete"] + count["pruned"],
        "trial_hours": hours["cpu"] + hours["gpu"], "cpu_hours": hours["cpu"], "gpu_hours": hours["gpu"],
        "device": max(devices, key=devices.get) if devices else None,
        "search_space": (meta.get("method_space", []) + meta.get("recipe_space", [])),
        "method_search_space": bool(meta.get("method_space")),
        "best_trial": best.number if best else None, "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else None,
        "best_overrides": overrides_from_params(best.params, base) if best else None,
        "default_trial": default.number if default else None,
        "default_state": default.state.name.lower() if default else None,
        "default_value": default_value, "default_params": dict(default.params) if default else None,
        "objective": "val_top1 after the trial's last epoch (validation split; diverged = 0.0)",
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_summary(cfg: SuiteConfig, spec: StudySpec, study: optuna.Study) -> dict:
    summary = study_summary(cfg, spec, study)
    atomic_write_json(summary_path(cfg, spec), summary)
    return summary


def _pct(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def log_table(summaries: list[dict], log: Callable[[str], None]) -> None:
    """The studies' results as a markdown table, one log line per row."""
    if not summaries:
        return
    log("")
    log("| study | trials (done/pruned/failed) | default val | best val | best parameters | hours |")
    log("|:--|:--|--:|--:|:--|--:|")
    for s in summaries:
        default = "pruned" if s["default_state"] == "pruned" else _pct(s["default_value"])
        log(f"| {s['study']} | {s['trials_finished']}/{s['trials_pruned']}/{s['trials_failed']} | {default} | "
            f"{_pct(s['best_value'])} | {format_params(s['best_params'] or {})} | {s['trial_hours']:.3f} |")


_STORAGE_CACHE: dict[str, Any] = {}  # one storage per process for the cells of a tuned `qbench run`


def tuned_overrides(cfg: SuiteConfig, cell: Cell) -> dict[str, Any]:
    """The best parameters of the cell's study as dotted config keys (``train.lr``, ``method_hparams.bcgd.rho``); not
    ``train.epochs`` — a tuned run trains on the suite's full schedule."""
    spec = StudySpec.of_cell(cfg, cell)
    first = f"run `qbench tune suite={cfg.name} method={spec.method.partition(':')[0]}` first"
    space = method_space(cfg, spec, recipe_dims(cfg.tune.recipe_space))
    if space.empty:
        return {}  # nothing is tunable: the tuned run is the default run
    url = storage_url(cfg)
    key = url or str(journal_path(cfg))
    if key not in _STORAGE_CACHE:
        if not url and not journal_path(cfg).is_file():
            raise QbenchError(f"no tuning study '{spec.name}' (no journal at {journal_path(cfg)}); {first}")
        _STORAGE_CACHE[key] = open_storage(cfg)
    try:
        study = optuna.load_study(study_name=spec.name, storage=_STORAGE_CACHE[key])
    except KeyError:
        raise QbenchError(f"no tuning study '{spec.name}' in {storage_label(cfg)}; {first}") from None
    best = _best(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if best is None:
        raise QbenchError(f"tuning study '{spec.name}' has no completed trial yet; {first}")
    return overrides_from_params(best.params, space.base)
