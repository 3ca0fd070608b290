"""Run records → DataFrames: ``results/<suite>/<run_id>/`` folders, ``qbench bench`` rows and ``qbench tune`` summaries.

A run's identity (suite, method, tuned, arch, bits, policy, seed, stage, run id) comes from the ``cell`` block the
runner writes into every ``config.yaml`` (:func:`qbench.run.runner.cell_config`), so a run killed before its
``result.json`` exists still lands in its real cell (a theory record's cell also names its part and estimator or
quantizer). Its dataset and planned epochs come from ``result.json``, else, for a training run, from the config narrowed
to the cell (``data.name``, ``train.epochs``); a theory record's dataset is its model, not the config's (unused) data
section. Records without a ``cell`` block (written by hand or by other tools) are identified by their ``result.json``.

The method hyperparameters are the ones ``result.json`` recorded (the plugin's defaults included). A record that lacks
them (a failure record, a killed run) gets what its config says: the registered defaults, then the suite's
``method_hparams.<method>``, then the inline ``key=value`` of the method spec (``ste:estimator=identity``), so it joins
the row of its completed seeds instead of a row of its own.

Status: ``complete`` | ``failed`` | ``diverged`` as recorded; a run folder with a config but no ``result.json`` (killed
or still running) is ``incomplete``, and so is a ``result.json`` without a status (its ``error`` says so), because
nothing vouches that it finished.

Unreadable folders (bad JSON, a ``result.json`` that is not an object, bad YAML, a torn ``metrics.jsonl``) are skipped,
logged and returned as :class:`SkippedRun` so the report can list them; they never stop a report. A ``result.json``
of a *newer* schema version raises a one-line :class:`~qbench.errors.QbenchError`: its fields may have changed meaning,
and the fix is to upgrade qbench, not to drop the run.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from .. import __version__
from ..bits import parse_bits
from ..errors import QbenchError
from ..config import fingerprint, result_config
from ..registry import get_method_class, parse_method_spec
from ..results import SCHEMA_VERSION, read_jsonl

__all__ = [
    "RESULT_FIELDS",
    "NUMERIC_FIELDS",
    "CONFIG_PREFIX",
    "HPARAM_PREFIX",
    "ENV_PREFIX",
    "BENCH_SETTING_KEYS",
    "SkippedRun",
    "scan_runs",
    "load_runs",
    "load_bench",
    "load_tuning",
    "parse_where",
    "filter_runs",
    "resolve_column",
    "is_missing",
    "as_bool",
    "uniform",
    "is_theory",
    "method_defaults",
]

log = logging.getLogger(__name__)

# result.json fields of schema_version 1 (see qbench.results); every run row has these columns, NaN where unknown.
RESULT_FIELDS = (
    "schema_version", "qbench_version", "suite", "run_id", "status", "error", "method", "tuned", "method_hparams",
    "arch", "bits", "wbits", "abits", "policy", "seed", "dataset", "epochs", "epochs_completed", "test_top1",
    "test_top5", "test_loss", "val_top1", "best_val_top1", "train_loss", "wall_time_s", "train_img_s", "infer_img_s",
    "peak_mem_mb", "device", "device_name", "num_params", "num_quantized_params", "model_size_bits",
)
#: the fields converted to numbers (NaN where a record lacks them or holds something else)
NUMERIC_FIELDS = (
    "schema_version", "wbits", "abits", "seed", "epochs", "epochs_completed", "test_top1", "test_top5", "test_loss",
    "val_top1", "best_val_top1", "train_loss", "wall_time_s", "train_img_s", "infer_img_s", "peak_mem_mb",
    "num_params", "num_quantized_params", "model_size_bits",
)
CONFIG_PREFIX = "cfg."
HPARAM_PREFIX = "hp."
ENV_PREFIX = "env."
#: the measurement settings of a ``qbench bench`` row: rows that differ in one of them are different measurements
BENCH_SETTING_KEYS = ("device", "device_name", "threads", "batch_size", "amp_dtype", "channels_last", "compile")
# Where the dataset and the planned epochs sit in a config (qbench.config.SuiteConfig), for runs without result.json.
_CONFIG_SETTING_KEYS = {"dataset": "data.name", "epochs": "train.epochs"}


@dataclass(frozen=True)
class SkippedRun:
    """A run folder the report could not read: ``run`` is ``<suite>/<run dir>`` (relative, so reports carry no
    absolute paths) and ``reason`` says which file is broken and how."""

    run: str
    reason: str

    def note(self) -> str:
        """The line the report lists for this folder."""
        return f"unreadable, skipped: `{self.run}`: {self.reason}; delete that run dir and rerun it"


class _Unreadable(Exception):
    """A run folder's file cannot be parsed; the message names the file and the parse error."""


# ------------------------------------------------------------------------------------------------- value helpers
def is_missing(value: Any) -> bool:
    """None or a float NaN: a value a record does not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def as_bool(value: Any) -> bool:
    """A record's truth value: "true"/"1"/"yes" for text, False where missing."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if not is_missing(value) else False


def uniform(values: Iterable[Any]) -> Any:
    """The one value all ``values`` share (compared as JSON), or None when they differ or there are none."""
    distinct = {json.dumps(v, sort_keys=True, default=str) for v in values}
    return json.loads(distinct.pop()) if len(distinct) == 1 else None


def is_theory(runs: pd.DataFrame) -> bool:
    """Whether every run is a theory record; a mix of theory and training records is a one-line error."""
    if "kind" not in runs.columns:
        return False
    theory = runs["kind"].map(lambda k: k == "theory")
    if theory.all():
        return True
    if theory.any():
        raise QbenchError("these records mix theory and training runs; report one suite at a time "
                          "(qbench report suite=<name>)")
    return False


@lru_cache(maxsize=None)
def _defaults_of(method: str) -> tuple[tuple[str, Any], ...]:
    try:
        return tuple((k, h.default) for k, h in get_method_class(method).hparams.items())
    except Exception:  # unregistered or broken plugin: no defaults, so nothing is guessed
        return ()


def method_defaults(method: str) -> dict[str, Any]:
    """The registered defaults of a method's hyperparameters ({} for an unknown method).

    A record may store only the hyperparameters a user set; comparing it with a record that stores them all (or with a
    paper's setting) needs the defaults the run actually used.
    """
    return dict(_defaults_of(method))


# ----------------------------------------------------------------------------------------------------- reading
def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → dotted keys; lists become JSON text so every value is a scalar a DataFrame cell can hold."""
    flat: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    key = prefix[:-1]
    if isinstance(obj, (list, tuple)):
        flat[key] = json.dumps(obj, sort_keys=True, default=str)
    else:
        flat[key] = obj
    return flat


def _lookup(config: Mapping, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _parse_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise _Unreadable(f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _read_config(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _Unreadable(f"{path.name} is not valid YAML ({first})") from None
    return config if isinstance(config, dict) else {}


def _read_result(path: Path) -> dict:
    result = _parse_json(path)
    if not isinstance(result, dict):
        raise _Unreadable(f"{path.name} is not a qbench run record (expected a JSON object)")
    version = result.get("schema_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise _Unreadable(f"{path.name} has schema_version {version!r}, not an integer")
    if version is not None and version > SCHEMA_VERSION:
        raise QbenchError(
            f"{path} has schema_version {version} but qbench {__version__} reads up to {SCHEMA_VERSION}; "
            f"upgrade qbench to report these results"
        )
    if is_missing(result.get("status")):
        # Nothing vouches that this run finished, so it is not averaged in (module docstring).
        earlier = result.get("error")
        result["status"] = "incomplete"
        result["error"] = "result.json has no status; counted as incomplete" + (f" ({earlier})" if earlier else "")
    return result


def _read_metrics(path: Path) -> list[dict]:
    try:
        rows = read_jsonl(path)
    except json.JSONDecodeError as exc:
        raise _Unreadable(f"{path.name} has a malformed line ({exc.msg})") from None
    if not all(isinstance(row, dict) for row in rows):
        raise _Unreadable(f"{path.name} has a line that is not a JSON object")
    return rows


def _configured_hparams(config: Mapping, spec: str) -> dict | None:
    """The hyperparameters a run was configured with: the method's registered defaults, the suite's
    ``method_hparams.<method>`` and the spec's inline values (the order :func:`qbench.registry.parse_method_spec` and
    :class:`qbench.method.Method` apply them). None when the spec cannot be parsed."""
    method_hparams = config.get("method_hparams")
    try:
        base, hparams = parse_method_spec(spec, method_hparams if isinstance(method_hparams, Mapping) else None)
    except QbenchError:
        return None
    return {**method_defaults(base), **hparams}


def _identity(config: Mapping) -> tuple[dict[str, Any], str | None]:
    """The run's identity from the ``cell`` block of its config.yaml, and its method spec (``ste:estimator=identity``);
    ({}, None) for a config without a cell block."""
    cell = config.get("cell")
    if not isinstance(cell, Mapping):
        return {}, None
    spec = str(cell.get("method") or "")
    identity = {
        "suite": config.get("name"), "run_id": cell.get("run_id"), "method": spec.partition(":")[0] or None,
        "tuned": cell.get("tuned"), "arch": cell.get("arch"), "bits": cell.get("bits"), "policy": cell.get("policy"),
        "seed": cell.get("seed"), "stage": cell.get("stage") or None, "kind": config.get("kind"),
    }
    if config.get("kind") == "theory" and cell.get("part") in ("estimator", "recurrence"):
        # A theory record's cell (qbench.theory.suite) also names its part and its estimator or quantizer.
        part = cell["part"]
        identity.update(theory_part=part, **{"estimator" if part == "estimator" else "quantizer": cell.get("name")})
    return {key: value for key, value in identity.items() if not is_missing(value)}, spec or None


def _policy_text(policy: Any) -> Any:
    # The record may hold the policy as "fp" or as the config's mapping {"first_last": "fp", ...}.
    if isinstance(policy, Mapping):
        return policy.get("first_last", json.dumps(policy, sort_keys=True, default=str))
    return policy


def _load_run(run_dir: Path, suite_name: str) -> dict:
    config = _read_config(run_dir / "config.yaml")
    result_path = run_dir / "result.json"
    result = _read_result(result_path) if result_path.exists() else {"status": "incomplete"}
    identity, spec = _identity(config)
    result.update(identity)  # the cell names the run (its run dir is named after it): it wins over result.json
    if result.get("kind") != "theory":  # a theory record's data and train sections are unused defaults
        for fld, dotted in _CONFIG_SETTING_KEYS.items():
            if is_missing(result.get(fld)):
                result[fld] = _lookup(config, dotted)
    if not isinstance(result.get("method_hparams"), Mapping) and spec is not None:
        result["method_hparams"] = _configured_hparams(config, spec)
    metrics = _read_metrics(run_dir / "metrics.jsonl")
    env_path = run_dir / "env.json"
    env = _parse_json(env_path) if env_path.exists() else None
    if is_missing(result.get("epochs_completed")):
        result["epochs_completed"] = len(metrics)

    row: dict[str, Any] = {fld: np.nan for fld in RESULT_FIELDS}
    for key, value in result.items():
        if isinstance(value, (Mapping, list, tuple)) and key not in ("method_hparams", "policy"):
            row.update(_flatten(value, f"{key}."))  # unknown nested fields of other schema versions stay visible
        else:
            row[key] = value
    hparams = result.get("method_hparams")
    hparams = hparams if isinstance(hparams, Mapping) else None
    row["method_hparams"] = json.dumps(hparams, sort_keys=True, default=str) if hparams is not None else None
    row.update(_flatten(hparams or {}, HPARAM_PREFIX))
    row["policy"] = _policy_text(result.get("policy"))
    # The per-layer precision beyond the policy (config ``layer_bits``), as JSON text like method_hparams: a paper
    # number is quoted only for the layer precision it was measured under. A config from before the key had none.
    layer_bits = config.get("layer_bits")
    row["layer_bits"] = json.dumps(dict(layer_bits) if isinstance(layer_bits, Mapping) else {}, sort_keys=True)
    if is_missing(row.get("suite")):
        row["suite"] = suite_name
    if is_missing(row.get("run_id")):
        row["run_id"] = run_dir.name
    row.update(_flatten(config, CONFIG_PREFIX))
    # What the run's result depends on (qbench.config.fingerprint): seeds of one cell are pooled only when it agrees.
    row["result_config"] = result_config(config) if config else None
    row["fingerprint"] = fingerprint(config) if config else result.get("fingerprint")
    if isinstance(env, dict):
        row.update(_flatten(env, ENV_PREFIX))
    row["run_dir"] = str(run_dir)
    row["metrics"] = metrics
    return row


def _bits_pair(bits: Any) -> tuple[float, float]:
    try:
        parsed = parse_bits(str(bits))
    except Exception:  # an unknown spelling must not stop a report; it sorts last
        return (np.nan, np.nan)
    return (float(parsed.weight), float(parsed.act))


def scan_runs(results_dir: str | Path = "results", suite: str | None = None) -> tuple[pd.DataFrame, list[SkippedRun]]:
    """:func:`load_runs`, plus the run folders that could not be read (each also logged as a warning).

    Raises a one-line :class:`~qbench.errors.QbenchError` only when no run folder could be read at all.
    """
    root = Path(results_dir)
    if suite is not None:
        suite_dirs = [root / suite]
    else:
        suite_dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    rows, skipped = [], []
    for suite_dir in suite_dirs:
        if not suite_dir.is_dir():
            continue
        for run_dir in sorted(p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not ((run_dir / "result.json").exists() or (run_dir / "config.yaml").exists()):
                continue
            try:
                rows.append(_load_run(run_dir, suite_dir.name))
            except _Unreadable as exc:
                skipped.append(SkippedRun(f"{suite_dir.name}/{run_dir.name}", str(exc)))
                log.warning("skipping unreadable run dir %s: %s", run_dir, exc)
    where = root / suite if suite is not None else root
    if not rows and skipped:
        first = skipped[0]
        raise QbenchError(f"no readable run records under {where}: {len(skipped)} run dir(s) could not be read, e.g. "
                          f"{root / first.run}: {first.reason}; delete or fix them and rerun those cells")
    if not rows:
        raise QbenchError(f"no run records under {where}; run `qbench run suite={suite or '<suite>'}` first")
    df = pd.DataFrame.from_records(rows)
    for column in NUMERIC_FIELDS:
        df[column] = pd.to_numeric(df[column], errors="coerce")
    df["tuned"] = df["tuned"].map(as_bool)
    df["status"] = df["status"].map(lambda s: "incomplete" if is_missing(s) else str(s).lower())
    for column in ("method", "arch", "bits", "dataset"):
        df[column] = df[column].map(lambda v: "unknown" if is_missing(v) else str(v))
    df["method"] = df["method"].str.lower()
    for column in ("suite", "run_id"):  # a numeric run id in JSON must still sort with the others
        df[column] = df[column].map(str)
    pairs = df["bits"].map(_bits_pair)
    df["wbits"] = df["wbits"].fillna(pairs.map(lambda p: p[0]))
    df["abits"] = df["abits"].fillna(pairs.map(lambda p: p[1]))
    return df.sort_values(["suite", "run_id"], kind="stable").reset_index(drop=True), skipped


def load_runs(results_dir: str | Path = "results", suite: str | None = None) -> pd.DataFrame:
    """One row per run directory under ``results_dir/<suite>/`` (every suite when ``suite`` is None).

    Columns: the result.json fields (:data:`RESULT_FIELDS`, NaN where a record lacks them) with the run's identity
    taken from its config's ``cell`` block (module docstring), the config flattened as ``cfg.<dotted.key>``, the
    method hyperparameters as ``hp.<name>``, the config's ``layer_bits`` as JSON text, env.json as ``env.<key>``,
    ``run_dir`` and ``metrics`` (the list of per-epoch rows). Unreadable run folders are skipped with a logged
    warning (:func:`scan_runs` returns them).
    """
    return scan_runs(results_dir, suite)[0]


def load_bench(results_dir: str | Path, suite: str) -> pd.DataFrame:
    """Rows of ``results_dir/<suite>/bench/*.json`` (lists of dicts from ``qbench bench``); empty when there are none.

    Files are read in name order and a later row for the same (method, arch, bits, device setting) replaces an earlier
    one, so re-running the benchmark updates the table.
    """
    bench_dir = Path(results_dir) / suite / "bench"
    rows: list[dict] = []
    for path in sorted(bench_dir.glob("*.json")) if bench_dir.is_dir() else []:
        content = _read_json_file(path, f"rerun `qbench bench suite={suite}`")
        content = [content] if isinstance(content, dict) else content
        if not isinstance(content, list) or not all(isinstance(r, dict) for r in content):
            raise QbenchError(f"{path} is not a list of benchmark rows; rerun `qbench bench suite={suite}`")
        rows.extend(content)
    if not rows:
        return pd.DataFrame()
    bench = pd.DataFrame.from_records(rows)
    for column in ("method", "arch", "bits", "device", "device_name"):
        if column not in bench:
            bench[column] = "unknown"
    bench["method"] = bench["method"].astype(str).str.lower()
    keys = [c for c in ("method", "arch", "bits", *BENCH_SETTING_KEYS) if c in bench]
    return bench.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def load_tuning(results_dir: str | Path, suite: str) -> pd.DataFrame:
    """The study summaries ``results_dir/<suite>/tuning/<study>.json`` written by ``qbench tune`` (one row per study:
    method, arch, bits, policy, finished trials, epochs per trial, CPU and GPU hours); empty when none exist."""
    tuning_dir = Path(results_dir) / suite / "tuning"
    rows = []
    for path in sorted(tuning_dir.glob("*.json")) if tuning_dir.is_dir() else []:
        content = _read_json_file(path, f"rerun `qbench tune suite={suite}`")
        if isinstance(content, dict) and "study" in content and "method" in content:
            rows.append(content)
    return pd.DataFrame.from_records(rows)


def _read_json_file(path: Path, fix: str) -> Any:
    """A bench or tuning file: unlike a run folder it cannot be skipped silently (its rows would vanish), so a broken
    one is a one-line error naming it and the command that rewrites it."""
    try:
        return _parse_json(path)
    except _Unreadable as exc:
        raise QbenchError(f"{path.parent}/{exc}; delete it and {fix}") from None


# ----------------------------------------------------------------------------------------------------------- filters
def parse_where(items: Iterable[str], columns: Iterable[str] | None = None) -> dict[str, str]:
    """``["method=bcgd", "train.lr=0.1"]`` → ``{"method": "bcgd", "train.lr": "0.1"}``.

    With ``columns`` (e.g. ``load_runs(...).columns``) unknown keys are rejected here; otherwise when filtering.
    Keys may name a result field, a config key with or without the ``cfg.`` prefix, or a hyperparameter (``hp.``).
    """
    where: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise QbenchError(f"bad filter {item!r}; write key=value, e.g. method=bcgd or train.lr=0.1")
        where[key.strip()] = value.strip()
    if columns is not None:
        columns = list(columns)
        for key in where:
            resolve_column(key, columns)
    return where


def resolve_column(key: str, columns: Sequence[str]) -> str:
    """The run column a filter key names: itself, or with the ``cfg.``, ``hp.`` or ``env.`` prefix; a one-line error
    listing valid keys otherwise."""
    for candidate in (key, CONFIG_PREFIX + key, HPARAM_PREFIX + key, ENV_PREFIX + key):
        if candidate in columns:
            return candidate
    shown = [c for c in RESULT_FIELDS if c in columns and c not in ("schema_version", "error", "method_hparams")][:8]
    shown += sorted(c for c in columns if c.startswith(CONFIG_PREFIX))[:4]
    raise QbenchError(f"unknown filter key {key!r}; valid keys include {', '.join(shown)}")


def _as_text(value: Any) -> str:
    """How a cell compares against a ``key=value`` filter: integers without '.0', booleans lower-case."""
    if is_missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def filter_runs(df: pd.DataFrame, where: Mapping[str, Any] | None) -> pd.DataFrame:
    """Rows whose columns equal every ``where`` value, compared as text (see :func:`parse_where`)."""
    if not where:
        return df
    mask = pd.Series(True, index=df.index)
    for key, wanted in where.items():
        column = resolve_column(key, list(df.columns))
        wanted_text = _as_text(wanted)
        if wanted_text.lower() in ("true", "false"):
            wanted_text = wanted_text.lower()
        mask &= df[column].map(_as_text) == wanted_text
    return df[mask]
