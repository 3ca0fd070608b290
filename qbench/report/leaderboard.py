"""``qbench report``: run records → leaderboard tables (Markdown, CSV, HTML, LaTeX) and plots.

Pipeline::

    load_runs(results_dir, suite)      one DataFrame row per run dir (result.json + flattened config.yaml + metrics)
    load_bench(results_dir, suite)     rows written by ``qbench bench`` (optional cost columns)
    build_leaderboard(runs, ...)       → Leaderboard: display tables + a long numeric table (the CSV)
    write_leaderboard(runs, out, S)    → out/S.{md,csv,html,tex}, each written atomically and byte-stable
    report(S)                          all of the above plus the PNG plots (:mod:`qbench.plots`)

Honesty rules the tables follow:

* A cell is ``mean ± std (n=k, …)`` over seeds. Runs that failed, diverged or never finished ("incomplete": a run dir
  with ``config.yaml`` but no ``result.json``) and seeds that are missing are *counted in the cell text*, never averaged
  in and never silently dropped; a cell with no usable run shows the statuses instead of a number.
* Ranks come with a bootstrap rank stability (seeds resampled within each cell, fixed RNG seed), because a rank decided
  by 0.1 points on three seeds is not a result.
* Cost figures carry the device in the column header; CPU and GPU numbers never share a column (and so never a bold
  "best" or a ranking).
* Published numbers (:mod:`qbench.paper_refs`) are quoted only where dataset, arch, bits and method (and the paper's
  policy / hyperparameters) match, in their own labelled column, and never ranked.

Schema versions (documented choice): a ``result.json`` without ``schema_version`` or with an older one is loaded and
fields it lacks become NaN (or are recovered from ``config.yaml``); a *newer* version raises a one-line
:class:`~qbench.errors.QbenchError` naming the file, because fields may have changed meaning.

Byte stability: outputs contain no timestamps and no absolute paths, runs are sorted before anything is computed, the
bootstrap uses a fixed seed, and the HTML Styler gets a fixed uuid, so the same records always give the same bytes.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import QbenchError
from ..results import SCHEMA_VERSION, atomic_write_text, read_jsonl

__all__ = [
    "RESULT_FIELDS",
    "DEFAULT_FORMATS",
    "load_runs",
    "load_bench",
    "load_tuning",
    "parse_where",
    "filter_runs",
    "Leaderboard",
    "build_leaderboard",
    "render_markdown",
    "render_csv",
    "render_html",
    "render_latex",
    "write_leaderboard",
    "report",
    "build_theory_leaderboard",
]

# result.json fields of schema_version 1 (see qbench.results); every run row has these columns, NaN where unknown.
RESULT_FIELDS = (
    "schema_version", "qbench_version", "suite", "run_id", "status", "error", "method", "tuned", "method_hparams",
    "arch", "bits", "wbits", "abits", "policy", "seed", "dataset", "epochs", "epochs_completed", "test_top1",
    "test_top5", "test_loss", "val_top1", "best_val_top1", "train_loss", "wall_time_s", "train_img_s", "infer_img_s",
    "peak_mem_mb", "device", "device_name", "num_params", "num_quantized_params", "model_size_bits",
)
_NUMERIC_FIELDS = (
    "schema_version", "wbits", "abits", "seed", "epochs", "epochs_completed", "test_top1", "test_top5", "test_loss",
    "val_top1", "best_val_top1", "train_loss", "wall_time_s", "train_img_s", "infer_img_s", "peak_mem_mb",
    "num_params", "num_quantized_params", "model_size_bits",
)
# Where a run killed before result.json (or an old record lacking a field) keeps that field in its config.yaml.
# The config schema belongs to qbench.config; these are the spellings it may use, first match wins.
_CONFIG_FALLBACKS = {
    "suite": ("suite", "suite.name"),
    "method": ("method", "method.name"),
    "tuned": ("tuned", "method.tuned"),
    "arch": ("arch", "model.arch", "model.name"),
    "bits": ("bits", "model.bits", "quant.bits"),
    "policy": ("policy.first_last", "policy"),
    "seed": ("seed", "train.seed"),
    "dataset": ("dataset", "data.name"),
    "epochs": ("epochs", "train.epochs"),
    "method_hparams": ("method_hparams", "method.hparams", "hparams"),
}
CONFIG_PREFIX = "cfg."
HPARAM_PREFIX = "hp."
ENV_PREFIX = "env."
STATUS_ORDER = ("complete", "failed", "diverged", "incomplete")
DEFAULT_FORMATS = ("md", "csv", "html", "tex")
FP_METHOD = "fp"
FP_BITS = "W32A32"
# Datasets whose leaderboards conventionally quote top-5 as well (with 10 classes top-5 is uninformative).
TOP5_DATASETS = ("imagenet", "cifar100")
HTML_UUID = "qbench"  # fixed so the HTML output is byte-stable (Styler otherwise draws a random uuid)


# ----------------------------------------------------------------------------------------------------------- loading
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise QbenchError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); delete that run dir and rerun it"
        ) from None


def _read_config(path: Path) -> dict:
    if not path.exists():
        return {}
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QbenchError(f"{path} is not valid YAML ({first}); delete that run dir and rerun it") from None
    return config if isinstance(config, dict) else {}


def _read_result(path: Path) -> dict:
    result = _read_json(path)
    if not isinstance(result, dict):
        raise QbenchError(f"{path} is not a qbench run record (expected a JSON object); move it out of the results dir")
    version = result.get("schema_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise QbenchError(f"{path} has schema_version {version!r}, not an integer; it is not a qbench run record")
    if version is not None and version > SCHEMA_VERSION:
        from .. import __version__

        raise QbenchError(
            f"{path} has schema_version {version} but qbench {__version__} reads up to {SCHEMA_VERSION}; "
            f"upgrade qbench to report these results"
        )
    return result


def _policy_text(policy: Any) -> Any:
    # The record may hold the policy as "fp" or as the config's mapping {"first_last": "fp", ...}.
    if isinstance(policy, Mapping):
        return policy.get("first_last", json.dumps(policy, sort_keys=True, default=str))
    return policy


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _load_run(run_dir: Path, suite_name: str) -> dict:
    config = _read_config(run_dir / "config.yaml")
    result_path = run_dir / "result.json"
    result = _read_result(result_path) if result_path.exists() else {"status": "incomplete"}
    for fld, spellings in _CONFIG_FALLBACKS.items():
        if _is_missing(result.get(fld)):
            for dotted in spellings:
                value = _lookup(config, dotted)
                if value is not None and not (fld != "method_hparams" and isinstance(value, Mapping)):
                    result[fld] = value
                    break
    metrics_path = run_dir / "metrics.jsonl"
    try:
        metrics = read_jsonl(metrics_path)
    except json.JSONDecodeError as exc:
        raise QbenchError(
            f"{metrics_path} has a malformed line ({exc.msg}); delete that run dir and rerun it"
        ) from None
    if _is_missing(result.get("epochs_completed")):
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
    if _is_missing(row.get("suite")):
        row["suite"] = suite_name
    if _is_missing(row.get("run_id")):
        row["run_id"] = run_dir.name
    row.update(_flatten(config, CONFIG_PREFIX))
    env_path = run_dir / "env.json"
    if env_path.exists():
        env = _read_json(env_path)
        if isinstance(env, dict):
            row.update(_flatten(env, ENV_PREFIX))
    row["run_dir"] = str(run_dir)
    row["metrics"] = metrics
    return row


def _bits_pair(bits: Any) -> tuple[float, float]:
    from ..bits import parse_bits

    try:
        parsed = parse_bits(str(bits))
    except Exception:  # an unknown spelling must not stop a report; it sorts last
        return (np.nan, np.nan)
    return (float(parsed.weight), float(parsed.act))


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if not _is_missing(value) else False


def load_runs(results_dir: str | Path = "results", suite: str | None = None) -> pd.DataFrame:
    """One row per run directory under ``results_dir/<suite>/`` (every suite when ``suite`` is None).

    Columns: the result.json fields (:data:`RESULT_FIELDS`, NaN where a record lacks them), the config flattened as
    ``cfg.<dotted.key>``, the method hyperparameters as ``hp.<name>``, env.json as ``env.<key>``, ``run_dir`` and
    ``metrics`` (the list of per-epoch rows). A run dir with a config but no result.json has status "incomplete".
    """
    root = Path(results_dir)
    if suite is not None:
        suite_dirs = [root / suite]
    else:
        suite_dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    rows = []
    for suite_dir in suite_dirs:
        if not suite_dir.is_dir():
            continue
        for run_dir in sorted(p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (run_dir / "result.json").exists() or (run_dir / "config.yaml").exists():
                rows.append(_load_run(run_dir, suite_dir.name))
    if not rows:
        where = root / suite if suite is not None else root
        raise QbenchError(f"no run records under {where}; run `qbench run suite={suite or '<suite>'}` first")
    df = pd.DataFrame.from_records(rows)
    for column in _NUMERIC_FIELDS:
        df[column] = pd.to_numeric(df[column], errors="coerce")
    df["tuned"] = df["tuned"].map(_as_bool)
    df["status"] = df["status"].map(lambda s: "complete" if _is_missing(s) else str(s).lower())
    for column in ("method", "arch", "bits", "dataset"):
        df[column] = df[column].map(lambda v: "unknown" if _is_missing(v) else str(v))
    df["method"] = df["method"].str.lower()
    for column in ("suite", "run_id"):  # a numeric run id in JSON must still sort with the others
        df[column] = df[column].map(str)
    pairs = df["bits"].map(_bits_pair)
    df["wbits"] = df["wbits"].fillna(pairs.map(lambda p: p[0]))
    df["abits"] = df["abits"].fillna(pairs.map(lambda p: p[1]))
    return df.sort_values(["suite", "run_id"], kind="stable").reset_index(drop=True)


def load_bench(results_dir: str | Path, suite: str) -> pd.DataFrame:
    """Rows of ``results_dir/<suite>/bench/*.json`` (lists of dicts from ``qbench bench``); empty when there are none.

    Files are read in name order and a later row for the same (method, arch, bits, device setting) replaces an earlier
    one, so re-running the benchmark updates the table.
    """
    bench_dir = Path(results_dir) / suite / "bench"
    rows: list[dict] = []
    for path in sorted(bench_dir.glob("*.json")) if bench_dir.is_dir() else []:
        content = _read_json(path)
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
    keys = [c for c in ("method", "arch", "bits", *_BENCH_SETTING_KEYS) if c in bench]
    return bench.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def load_tuning(results_dir: str | Path, suite: str) -> pd.DataFrame:
    """The study summaries ``results_dir/<suite>/tuning/<study>.json`` written by ``qbench tune`` (one row per study:
    method, arch, bits, policy, finished trials, epochs per trial, CPU and GPU hours); empty when none exist."""
    tuning_dir = Path(results_dir) / suite / "tuning"
    rows = []
    for path in sorted(tuning_dir.glob("*.json")) if tuning_dir.is_dir() else []:
        content = _read_json(path)
        if isinstance(content, dict) and "study" in content and "method" in content:
            rows.append(content)
    return pd.DataFrame.from_records(rows)


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
            _resolve_column(key, columns)
    return where


def _resolve_column(key: str, columns: Sequence[str]) -> str:
    for candidate in (key, CONFIG_PREFIX + key, HPARAM_PREFIX + key, ENV_PREFIX + key):
        if candidate in columns:
            return candidate
    shown = [c for c in RESULT_FIELDS if c in columns and c not in ("schema_version", "error", "method_hparams")][:8]
    shown += sorted(c for c in columns if c.startswith(CONFIG_PREFIX))[:4]
    raise QbenchError(f"unknown filter key {key!r}; valid keys include {', '.join(shown)}")


def _as_text(value: Any) -> str:
    """How a cell compares against a ``key=value`` filter: integers without '.0', booleans lower-case."""
    if _is_missing(value):
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
        column = _resolve_column(key, list(df.columns))
        wanted_text = _as_text(wanted)
        if wanted_text.lower() in ("true", "false"):
            wanted_text = wanted_text.lower()
        mask &= df[column].map(_as_text) == wanted_text
    return df[mask]


# ------------------------------------------------------------------------------------------------------- statistics
def _label_runs(df: pd.DataFrame) -> pd.Series:
    """Leaderboard row label per run: method, "(tuned)" for tuned runs, and the hyperparameters that differ.

    Untuned runs of one method that share a column (dataset, arch, bits, policy) but differ in a hyperparameter (e.g.
    the STE estimator) are different settings: averaging them would mix two experiments, so they get separate rows
    labelled by the differing keys. Values that differ only *between* columns (a per-arch lr, a per-bits α init)
    do not split rows. Tuned runs never split: their hyperparameters come from the tuner.
    """
    untuned = df[~df["tuned"]]
    columns = untuned.apply(_column_of, axis=1) if len(untuned) else pd.Series([], dtype=object)
    varying: dict[str, set[str]] = {}
    for (method, _), group in untuned.groupby([untuned["method"], columns], sort=True):
        known = [json.loads(h) for h in group["method_hparams"] if isinstance(h, str)]
        keys = set().union(*known) if known else set()
        differing = {k for k in keys if len({json.dumps(d.get(k), sort_keys=True, default=str) for d in known}) > 1}
        varying.setdefault(method, set()).update(differing)

    def label(row: pd.Series) -> str:
        if row["tuned"]:
            return f"{row['method']} (tuned)"
        keys = sorted(varying.get(row["method"], ()))
        if not keys:
            return row["method"]
        if not isinstance(row["method_hparams"], str):
            return f"{row['method']} [hparams unknown]"
        hp = json.loads(row["method_hparams"])
        shown = ", ".join(f"{k}={_short(hp.get(k))}" for k in keys)
        return f"{row['method']} [{shown}]"

    def staged(row: pd.Series) -> str:
        # Runs of different suite stages (config.stages) are different experiments even with equal settings.
        stage = row.get("stage")
        return f"{stage}: {label(row)}" if isinstance(stage, str) and stage else label(row)

    return df.apply(staged, axis=1) if len(df) else pd.Series([], dtype=object)


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


@dataclass(frozen=True, order=True)
class _Column:
    """One leaderboard column: a (dataset, arch, bits, policy) setting. Sorts from high to low precision."""

    dataset: str
    arch: str
    neg_wbits: float
    neg_abits: float
    bits: str
    policy: str


def _column_of(row: pd.Series) -> _Column:
    wbits = row["wbits"] if not _is_missing(row["wbits"]) else -math.inf
    abits = row["abits"] if not _is_missing(row["abits"]) else -math.inf
    # The first/last-layer policy is meaningless for a float model, so FP runs of every policy share one column.
    full_precision = wbits >= 32 and abits >= 32
    policy = "" if full_precision or _is_missing(row["policy"]) else str(row["policy"])
    return _Column(str(row["dataset"]), str(row["arch"]), -float(wbits), -float(abits), str(row["bits"]), policy)


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    if len(values) < 2:
        return (np.nan, np.nan)
    from scipy import stats

    mean = float(np.mean(values))
    sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    if sem == 0.0:
        return (mean, mean)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    return (float(low), float(high))


def _bootstrap_stability(
    scores: dict[str, np.ndarray], ranks: dict[str, int], n_resamples: int, seed: int
) -> dict[str, float]:
    """Fraction of seed resamples in which each label keeps its rank (higher score = better).

    A cell with one seed has no spread to resample, so its own stability is NaN rather than a misleading 1.0.
    """
    if n_resamples <= 0:
        return {label: np.nan for label in scores}
    labels = sorted(scores)  # fixed order → the same draws for the same data, whatever order the caller used
    rng = np.random.default_rng(seed)
    means = np.empty((len(labels), n_resamples))
    for i, label in enumerate(labels):
        values = scores[label]
        picks = rng.integers(0, len(values), size=(n_resamples, len(values)))
        means[i] = values[picks].mean(axis=1)
    # rank = 1 + number of labels with a strictly better resampled mean (ties share the better rank)
    boot_ranks = 1 + (means[None, :, :] > means[:, None, :]).sum(axis=1)
    return {
        label: float(np.mean(boot_ranks[i] == ranks[label])) if len(scores[label]) >= 2 else np.nan
        for i, label in enumerate(labels)
    }


def _device_label(device: Any, name: Any) -> str:
    device = "unknown device" if _is_missing(device) else str(device)
    return device if _is_missing(name) or not str(name).strip() else f"{device}: {str(name).strip()}"


_BENCH_SETTING_KEYS = ("device", "device_name", "threads", "batch_size", "amp_dtype", "channels_last", "compile")


def _bench_label(row: Mapping) -> str:
    """Device plus the measurement settings, so benchmark figures from different settings never share a column."""
    parts = [_device_label(row.get("device"), row.get("device_name"))]
    if str(row.get("device")) == "cpu" and not _is_missing(row.get("threads")):
        parts.append(f"{int(row['threads'])} threads")
    if not _is_missing(row.get("batch_size")):
        parts.append(f"bs {int(row['batch_size'])}")
    amp = row.get("amp_dtype")
    parts.append("fp32" if _is_missing(amp) or str(amp).lower() in ("", "none", "false") else str(amp))
    if _as_bool(row.get("channels_last")):
        parts.append("channels_last")
    if _as_bool(row.get("compile")):
        parts.append("compiled")
    return ", ".join(parts)


def _time_to_target(metrics: Any, target: float) -> float:
    """Wall time at the first epoch whose val_top1 reaches ``target`` (NaN when never reached or not logged).

    ``wall_time_s`` in metrics.jsonl is the elapsed time since the run started; rows without it fall back to the sum
    of ``epoch_time_s`` so far.
    """
    if not isinstance(metrics, list) or math.isnan(target):
        return np.nan
    elapsed = 0.0
    for row in metrics:
        elapsed += float(row.get("epoch_time_s") or 0.0)
        value = row.get("val_top1")
        if value is not None and float(value) >= target:
            wall = row.get("wall_time_s")
            return float(wall) if wall is not None else elapsed
    return np.nan


def _final_val(row: pd.Series) -> float:
    if not _is_missing(row.get("val_top1")):
        return float(row["val_top1"])
    metrics = row.get("metrics")
    if isinstance(metrics, list):
        for entry in reversed(metrics):
            if entry.get("val_top1") is not None:
                return float(entry["val_top1"])
    return np.nan


def _median(values: Iterable[float]) -> float:
    finite = [float(v) for v in values if not _is_missing(v)]
    return float(np.median(finite)) if finite else np.nan


def _uniform(values: Iterable[Any]) -> Any:
    distinct = {json.dumps(v, sort_keys=True, default=str) for v in values}
    return json.loads(distinct.pop()) if len(distinct) == 1 else None


# ------------------------------------------------------------------------------------------------------ leaderboard
@dataclass
class Leaderboard:
    """Everything the writers need; build it with :func:`build_leaderboard`.

    ``table`` has one row per method label and, per column setting (arch × bits, plus dataset/policy when a suite
    varies them): the cell text, top-5 (ImageNet/CIFAR-100), Δ FP, rank (stability) and the paper reference.
    ``costs`` has one row per (method, setting) with device-labelled cost columns. ``cells`` is the long numeric
    table written as CSV. ``table_best`` / ``costs_best`` mark the best value of each column (bold in HTML/LaTeX).
    """

    suite: str
    metric: str
    table: pd.DataFrame
    table_best: pd.DataFrame
    costs: pd.DataFrame
    costs_best: pd.DataFrame
    cells: pd.DataFrame
    header: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "train"  # "theory": build_theory_leaderboard's board, rendered by _render_theory
    sections: list = field(default_factory=list)  # theory: further (title, DataFrame) tables after ``table``


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _fmt_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _fmt_size(bits: float) -> str:
    size = bits / 8
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    return f"{size:.2f} GB"


def _status_words(counts: Counter) -> list[str]:
    known = [s for s in STATUS_ORDER if counts.get(s)]
    return known + sorted(s for s in counts if s not in STATUS_ORDER and counts[s])


def _cell_text(mean: float, std: float, n: int, bad: Counter, missing: int, decimals: int, repeated: int = 0) -> str:
    if n == 0:
        words = _status_words(bad)
        text = " / ".join(words) if words else "missing"
        return f"{text} ({missing} missing)" if missing and words else text
    number = _fmt(mean, decimals) if n < 2 else f"{_fmt(mean, decimals)} ± {_fmt(std, decimals)}"
    extras = [f"n={n}"] + [f"{bad[s]} {s}" for s in _status_words(bad)]
    if missing:
        extras.append(f"{missing} missing")
    if repeated:
        extras.append(f"{repeated} repeated seed" + ("s" if repeated > 1 else ""))
    return f"{number} ({', '.join(extras)})"


def build_leaderboard(
    df: pd.DataFrame,
    *,
    metric: str = "test_top1",
    where: Mapping[str, Any] | None = None,
    bench: pd.DataFrame | None = None,
    target: float | None = None,
    target_drop: float = 1.0,
    n_bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    decimals: int = 2,
    suite: str | None = None,
    tuning: pd.DataFrame | None = None,
) -> Leaderboard:
    """Aggregate runs into a leaderboard.

    Args:
        df: runs from :func:`load_runs`.
        metric: the result field ranked (higher is better unless its name ends in "loss").
        where: ``{key: value}`` filters (see :func:`parse_where`). The FP reference (Δ FP, default target) ignores
            the keys that only pick methods or bit-widths (method, tuned, bits, hyperparameters), so a view such as
            ``bits=W1A4`` keeps its gap to FP.
        bench: rows from :func:`load_bench`, merged as device-labelled cost columns.
        target: val_top1 (%) for the "time to target" column; default: the FP baseline's final val_top1 of the same
            dataset and arch minus ``target_drop`` points (no FP run for that arch → no time to target there).
        n_bootstrap, bootstrap_seed: seed resamples for rank stability (0 disables it).
        decimals: digits shown in the text tables (the CSV keeps full precision).
        suite: the name in titles and the CSV; default: the suites of the runs.
        tuning: study summaries from :func:`load_tuning`; tuned rows get what their tuning cost (trials, CPU/GPU-h).
    """
    runs = filter_runs(df, where)
    if runs.empty:
        raise QbenchError(f"no runs match the filter {dict(where or {})}; drop or correct a key=value")
    if _is_theory(runs):
        return build_theory_leaderboard(runs, suite=suite)
    if metric not in runs.columns or not pd.api.types.is_numeric_dtype(runs[metric]):
        numeric = [c for c in _NUMERIC_FIELDS if c in runs.columns and ("top" in c or "loss" in c)]
        raise QbenchError(f"unknown metric {metric!r}; choose one of {', '.join(numeric)}")
    higher_is_better = not metric.endswith("loss")
    runs = runs.copy()
    runs["_label"] = _label_runs(runs)
    runs["_column"] = runs.apply(_column_of, axis=1)
    runs["_device"] = [_device_label(d, n) for d, n in zip(runs["device"], runs["device_name"])]
    suite = suite or ", ".join(sorted(runs["suite"].map(str).unique()))

    columns = sorted(runs["_column"].unique())
    vary_dataset = len({c.dataset for c in columns}) > 1
    vary_policy = len({c.policy for c in columns if c.policy}) > 1

    def title(col: _Column) -> str:
        parts = ([col.dataset] if vary_dataset else []) + [col.arch, col.bits]
        if vary_policy and col.policy:
            parts.append(f"[first/last {col.policy}]")
        return " ".join(parts)

    fp_mean, fp_final_val = _fp_baselines(_reference_runs(df, where), metric)

    def target_for(col: _Column) -> float:
        if target is not None:
            return float(target)
        return fp_final_val.get((col.dataset, col.arch), np.nan) - target_drop

    top5_metric = metric.replace("top1", "top5") if "top1" in metric else None
    if top5_metric not in runs.columns or runs[top5_metric].isna().all():
        top5_metric = None
    context = dict(
        metric=metric, sign=1.0 if higher_is_better else -1.0, suite=suite, decimals=decimals, top5_metric=top5_metric,
        expected_seeds={int(s) for s in runs["seed"].dropna()},
    )
    cell_rows = [
        _cell_record(label, col, group, fp_mean=fp_mean.get((col.dataset, col.arch), np.nan),
                     target_value=target_for(col), **context)
        for (label, col), group in runs.groupby(["_label", "_column"], sort=True)
    ]
    bench_labels = _merge_bench(cell_rows, bench)
    _merge_tuning(cell_rows, tuning)
    _assign_ranks(cell_rows, n_bootstrap, bootstrap_seed)
    labels, mean_rank = _order_labels(cell_rows)

    table, table_best = _accuracy_table(
        cell_rows, labels, columns, title, mean_rank, top5_metric, decimals, higher_is_better
    )
    costs, costs_best = _cost_table(cell_rows, labels, columns, vary_dataset, vary_policy, bench_labels)
    cells = _cells_frame(cell_rows, labels, columns)
    header, notes = _header_and_notes(runs, suite, metric, columns, target, target_drop, target_for,
                                      n_bootstrap, bootstrap_seed, bool(bench_labels), table, costs)
    notes += _warm_start_notes(runs)
    return Leaderboard(suite, metric, table, table_best, costs, costs_best, cells, header, notes)


# Filter keys that select *which methods / bit-widths are shown*; the FP reference ignores them, so that a view such
# as ``where bits=W1A4`` keeps its Δ FP. Every other key (epochs, lr, dataset, ...) still applies to the reference.
_VIEW_KEYS = ("method", "tuned", "bits", "wbits", "abits", "method_hparams")


def _reference_runs(df: pd.DataFrame, where: Mapping[str, Any] | None) -> pd.DataFrame:
    """The runs the FP baseline is taken from: ``df`` filtered by ``where`` minus the view keys."""
    columns = list(df.columns)
    resolved = {key: _resolve_column(key, columns) for key in (where or {})}
    setting = {
        key: value for key, value in (where or {}).items()
        if resolved[key] not in _VIEW_KEYS and not resolved[key].startswith(HPARAM_PREFIX)
    }
    reference = filter_runs(df, setting).copy()
    reference["_label"] = _label_runs(reference)
    return reference


def _fp_baselines(runs: pd.DataFrame, metric: str) -> tuple[dict, dict]:
    """Per (dataset, arch): the FP mean of ``metric`` (the Δ FP reference) and the FP final val_top1 (for targets).

    The untuned "fp" row is preferred when FP was also run tuned or with hyperparameter variants.
    """
    is_fp = (runs["method"] == FP_METHOD) & (runs["wbits"] >= 32) & (runs["abits"] >= 32)
    fp_runs = runs[is_fp & (runs["status"] == "complete")]
    fp_mean: dict[tuple[str, str], float] = {}
    fp_final_val: dict[tuple[str, str], float] = {}
    preferred_last = sorted(fp_runs["_label"].unique(), key=lambda lab: (lab != FP_METHOD, lab), reverse=True)
    for label in preferred_last:  # later labels overwrite earlier ones, so the preferred label wins
        for (dataset, arch), group in fp_runs[fp_runs["_label"] == label].groupby(["dataset", "arch"]):
            values = group[metric].dropna()
            if len(values):
                fp_mean[(dataset, arch)] = float(values.mean())
            finals = [v for v in (_final_val(r) for _, r in group.iterrows()) if not math.isnan(v)]
            if finals:
                fp_final_val[(dataset, arch)] = float(np.mean(finals))
    return fp_mean, fp_final_val


def _cell_record(
    label: str, col: _Column, group: pd.DataFrame, *, metric: str, sign: float, suite: str, decimals: int,
    top5_metric: str | None, expected_seeds: set[int], fp_mean: float, target_value: float,
) -> dict:
    """Statistics, status counts, costs and paper reference of one (method label, column) cell."""
    group = group.sort_values(["seed", "run_id"], kind="stable")
    is_complete = group["status"] == "complete"
    values = group.loc[is_complete & group[metric].notna(), metric].to_numpy(dtype=float)
    bad = Counter(group.loc[~is_complete, "status"])
    no_value = int((is_complete & group[metric].isna()).sum())
    if no_value:
        bad[f"without {metric}"] = no_value
    seeds_present = {int(s) for s in group["seed"].dropna()}
    missing = len(expected_seeds - seeds_present)
    n = len(values)
    # The same seed run twice (e.g. again on another device) is two samples but not two independent seeds: say so.
    usable_seeds = group.loc[is_complete & group[metric].notna(), "seed"].dropna()
    repeated = len(usable_seeds) - usable_seeds.nunique()
    mean = float(values.mean()) if n else np.nan
    std = float(values.std(ddof=1)) if n >= 2 else np.nan
    low, high = _t_interval(values)
    row: dict[str, Any] = {
        "suite": suite, "dataset": col.dataset, "arch": col.arch, "bits": col.bits, "policy": col.policy,
        "method": label, "method_name": group["method"].iloc[0], "tuned": bool(group["tuned"].iloc[0]),
        "metric": metric, "n": n, "mean": mean, "std": std, "sem": std / math.sqrt(n) if n >= 2 else np.nan,
        "ci95_low": low, "ci95_high": high, "n_runs": len(group), "n_complete": int(is_complete.sum()),
        "n_failed": bad.get("failed", 0), "n_diverged": bad.get("diverged", 0),
        "n_incomplete": bad.get("incomplete", 0), "n_without_metric": no_value, "n_missing_seeds": missing,
        "n_repeated_seeds": repeated, "seeds": ";".join(str(s) for s in sorted(seeds_present)),
        "_text": _cell_text(mean, std, n, bad, missing, decimals, repeated), "_scores": sign * values, "_column": col,
    }
    if top5_metric:
        top5 = group.loc[is_complete, top5_metric].dropna().to_numpy(dtype=float)
        row["top5_mean"] = float(top5.mean()) if len(top5) else np.nan
        row["top5_std"] = float(top5.std(ddof=1)) if len(top5) >= 2 else np.nan
        row["top5_n"] = len(top5)
    row["fp_mean"] = fp_mean
    row["gap_to_fp"] = mean - fp_mean
    row["target_val_top1"] = target_value
    # Costs from the runs themselves, one set of columns per device; medians because timing noise has outliers.
    complete = group[is_complete]
    for device, dev_group in complete.groupby("_device", sort=True):
        for key in ("train_img_s", "infer_img_s", "peak_mem_mb", "wall_time_s"):
            row[f"{key} [{device}]"] = _median(dev_group[key])
        if not math.isnan(target_value):
            times = [_time_to_target(m, target_value) for m in dev_group["metrics"]]
            row[f"time_to_target_s [{device}]"] = _median(times)
            row[f"target_reached [{device}]"] = sum(not math.isnan(t) for t in times)
            row[f"target_runs [{device}]"] = len(times)
    row["model_size_bits"] = _median(complete["model_size_bits"])
    row["model_size_mb"] = row["model_size_bits"] / 8e6
    row.update(_paper_fields(col, group, row["method_name"], metric))
    return row


def _method_defaults(method: str) -> dict[str, Any]:
    """The registered defaults of a method's hyperparameters ({} for an unknown method).

    A record may store only the hyperparameters a user overrode; a paper reference fixing, say, the STE estimator must
    then compare against the default the run actually used.
    """
    if method not in _DEFAULTS_CACHE:
        try:
            from ..registry import get_method_class

            _DEFAULTS_CACHE[method] = {k: h.default for k, h in get_method_class(method).hparams.items()}
        except Exception:  # unregistered or broken plugin: no defaults, so no guessed match
            _DEFAULTS_CACHE[method] = {}
    return _DEFAULTS_CACHE[method]


_DEFAULTS_CACHE: dict[str, dict[str, Any]] = {}


def _paper_fields(col: _Column, group: pd.DataFrame, method: str, metric: str) -> dict:
    """The published number(s) for this cell, when the cell's setting is the paper's (top-1 metrics only)."""
    from .paper_refs import match_paper_refs

    refs = []
    if metric.endswith("top1"):
        recorded = _uniform(json.loads(h) if isinstance(h, str) else None for h in group["method_hparams"]) or {}
        hparams = {**_method_defaults(method), **recorded}
        policy = _uniform(p if not _is_missing(p) else None for p in group["policy"])
        refs = match_paper_refs(dataset=col.dataset, arch=col.arch, bits=col.bits, method=method, policy=policy,
                                hparams=hparams)
    return {
        "paper_value": refs[0].value if refs else np.nan,
        "paper_source": refs[0].source if refs else "",
        "paper_setting": refs[0].setting if refs else "",
        "_paper_text": "; ".join(ref.label() for ref in refs),
    }


_BENCH_FIELDS = ("train_img_s", "infer_img_s", "train_step_ms_median", "train_step_ms_iqr", "ratio_train_to_fp",
                 "ratio_infer_to_fp", "peak_mem_mb")


def _merge_bench(cell_rows: list[dict], bench: pd.DataFrame | None) -> list[str]:
    """Add ``bench_<field> [<device + settings>]`` to the cells of the same (method, arch, bits); return the labels.

    Throughput does not depend on tuned hyperparameters, so a bench row serves every row label of its method.
    """
    if bench is None or bench.empty:
        return []
    labels: set[str] = set()
    for _, brow in bench.iterrows():
        blabel = _bench_label(brow)
        labels.add(blabel)
        key = (str(brow["method"]).lower(), str(brow.get("arch")), str(brow.get("bits")))
        for row in cell_rows:
            if (row["method_name"], row["arch"], row["bits"]) == key:
                for name in _BENCH_FIELDS:
                    if name in brow and not _is_missing(brow[name]):
                        row[f"bench_{name} [{blabel}]"] = float(brow[name])
    return sorted(labels)


def _merge_tuning(cell_rows: list[dict], tuning: pd.DataFrame | None) -> None:
    """Give each tuned row the cost of the study that tuned it: ``tune_trials`` (finished: complete + pruned),
    ``tune_epochs_per_trial``, ``tune_cpu_hours``, ``tune_gpu_hours``. The budget is part of the result (issue: equal
    budgets made visible), so a tuned row without its study summary shows "—" rather than a guess."""
    if tuning is None or tuning.empty:
        return
    studies = {}
    for _, study in tuning.iterrows():
        base = str(study["method"]).partition(":")[0].lower()
        key = (base, str(study.get("arch")), str(study.get("bits")), str(study.get("policy")))
        studies.setdefault(key, []).append(study)
    for row in cell_rows:
        if not row["tuned"]:
            continue
        if row["policy"]:
            matches = studies.get((row["method_name"], row["arch"], row["bits"], str(row["policy"])), [])
        else:  # full-precision columns carry no policy (it is moot for a float model): any study of that column
            matches = [m for key, found in studies.items() if key[:3] == (row["method_name"], row["arch"], row["bits"])
                       for m in found]
        if not matches:
            continue
        # Several variants of one method (ste:estimator=identity, …=relu) tuned in one column: their costs add.
        row["tune_trials"] = sum(int(m.get("trials_finished") or 0) for m in matches)
        row["tune_epochs_per_trial"] = int(matches[0].get("epochs_per_trial") or 0)
        row["tune_cpu_hours"] = sum(float(m.get("cpu_hours") or 0.0) for m in matches)
        row["tune_gpu_hours"] = sum(float(m.get("gpu_hours") or 0.0) for m in matches)


def _assign_ranks(cell_rows: list[dict], n_bootstrap: int, bootstrap_seed: int) -> None:
    """Rank (1 = best mean) and bootstrap rank stability of each cell within its column."""
    by_column: dict[_Column, list[dict]] = {}
    for row in cell_rows:
        by_column.setdefault(row["_column"], []).append(row)
    for rows in by_column.values():
        ranked = {r["method"]: r["_scores"] for r in rows if r["n"] > 0}
        score_means = {label: float(np.mean(scores)) for label, scores in ranked.items()}
        ranks = {label: 1 + sum(other > m for other in score_means.values()) for label, m in score_means.items()}
        stability = _bootstrap_stability(ranked, ranks, n_bootstrap, bootstrap_seed)
        for row in rows:
            row["rank"] = ranks.get(row["method"], np.nan)
            row["rank_stability"] = stability.get(row["method"], np.nan)
            # A cell whose runs produced no result counts as last in the mean rank; skipping it would reward failing.
            row["_rank_for_mean"] = row["rank"] if row["n"] > 0 else len(ranked) + 1


def _order_labels(cell_rows: list[dict]) -> tuple[list[str], dict[str, float]]:
    """Row order: FP first (the reference), then by mean rank over the quantized columns, then by name.

    A method that ran in a column but produced no result there counts as ranked last in that column.
    """
    labels = sorted({r["method"] for r in cell_rows})
    mean_rank = {}
    for label in labels:
        quantized = [r["_rank_for_mean"] for r in cell_rows if r["method"] == label and r["bits"] != FP_BITS]
        mean_rank[label] = float(np.mean(quantized)) if quantized else np.nan
    fp_labels = {r["method"] for r in cell_rows if r["method_name"] == FP_METHOD}
    labels.sort(key=lambda lab: (lab not in fp_labels, math.isnan(mean_rank[lab]), np.nan_to_num(mean_rank[lab]), lab))
    for row in cell_rows:
        row["mean_rank"] = mean_rank[row["method"]]
    return labels, mean_rank


def _accuracy_table(cell_rows, labels, columns, title, mean_rank, top5_metric, decimals, higher_is_better):
    lookup = {(r["method"], r["_column"]): r for r in cell_rows}
    data: dict[str, list[str]] = {"method": list(labels)}
    best: dict[str, list[bool]] = {"method": [False] * len(labels)}
    quantized_columns = [c for c in columns if c.bits != FP_BITS]
    for col in columns:
        rows = [lookup.get((label, col)) for label in labels]
        name = title(col)
        means = [r["mean"] if r is not None and r["n"] > 0 else np.nan for r in rows]
        finite = [m for m in means if not math.isnan(m)]
        winner = (max(finite) if higher_is_better else min(finite)) if finite else None
        data[name] = [r["_text"] if r is not None else "—" for r in rows]
        best[name] = [winner is not None and m == winner for m in means]
        if top5_metric and col.dataset.lower().replace("-", "").startswith(TOP5_DATASETS):
            texts, values = [], []
            for r in rows:
                if r is None or not r.get("top5_n"):
                    texts.append("—")
                    values.append(np.nan)
                else:
                    mean5, std5 = r["top5_mean"], r["top5_std"]
                    spread = "" if math.isnan(std5) else f" ± {_fmt(std5, decimals)}"
                    texts.append(_fmt(mean5, decimals) + spread)
                    values.append(mean5)
            top = max([v for v in values if not math.isnan(v)], default=None)
            data[f"{name} top-5"] = texts
            best[f"{name} top-5"] = [top is not None and v == top for v in values]
        # the FP column is the reference itself: a gap of +0.00 there says nothing
        if col.bits != FP_BITS and any(r is not None and not math.isnan(r["fp_mean"]) for r in rows):
            data[f"{name} Δ FP"] = [
                f"{r['gap_to_fp']:+.{decimals}f}" if r is not None and r["n"] > 0 else "—" for r in rows
            ]
            best[f"{name} Δ FP"] = [False] * len(rows)
        if sum(r is not None for r in rows) >= 2:  # a column with one method has nothing to rank
            data[f"{name} rank"] = [
                "—" if r is None or _is_missing(r["rank"]) else
                f"{int(r['rank'])}" + ("" if _is_missing(r["rank_stability"]) else f" ({r['rank_stability']:.2f})")
                for r in rows
            ]
            best[f"{name} rank"] = [False] * len(rows)
        if any(r is not None and r["_paper_text"] for r in rows):
            data[f"{name} paper (source, setting)"] = ["" if r is None else r["_paper_text"] for r in rows]
            best[f"{name} paper (source, setting)"] = [False] * len(rows)
    if len(quantized_columns) > 1:
        data["mean rank"] = ["—" if math.isnan(mean_rank[lab]) else f"{mean_rank[lab]:.2f}" for lab in labels]
        finite = [mean_rank[lab] for lab in labels if not math.isnan(mean_rank[lab])]
        best["mean rank"] = [bool(finite) and mean_rank[lab] == min(finite) for lab in labels]
    return pd.DataFrame(data), pd.DataFrame(best)


# (numeric column prefix, display name, formatter, "max" | "min" | None for which value is best)
_COST_SPECS = (
    ("train_img_s", "train img/s", lambda v: f"{v:,.0f}", "max"),
    ("infer_img_s", "infer img/s", lambda v: f"{v:,.0f}", "max"),
    ("peak_mem_mb", "peak mem MB", lambda v: f"{v:,.0f}", "min"),
    ("wall_time_s", "wall time", _fmt_seconds, "min"),
    ("time_to_target_s", "time to target", _fmt_seconds, "min"),
    ("bench_train_img_s", "bench train img/s", lambda v: f"{v:,.0f}", "max"),
    ("bench_infer_img_s", "bench infer img/s", lambda v: f"{v:,.0f}", "max"),
    ("bench_train_step_ms_median", "bench train ms/step", lambda v: f"{v:.2f}", "min"),
    ("bench_ratio_train_to_fp", "bench train ratio to FP", lambda v: f"{v:.2f}", None),
    ("bench_ratio_infer_to_fp", "bench infer ratio to FP", lambda v: f"{v:.2f}", None),
    ("bench_peak_mem_mb", "bench peak mem MB", lambda v: f"{v:,.0f}", "min"),
)


def _cost_table(cell_rows, labels, columns, vary_dataset, vary_policy, bench_labels):
    order = {label: i for i, label in enumerate(labels)}
    col_order = {col: i for i, col in enumerate(columns)}
    rows = sorted(cell_rows, key=lambda r: (col_order[r["_column"]], order[r["method"]]))
    devices = sorted({key.split(" [", 1)[1][:-1] for r in rows for key in r if key.startswith("train_img_s [")})
    data: dict[str, list] = {"method": [r["method"] for r in rows]}
    if vary_dataset:
        data["dataset"] = [r["dataset"] for r in rows]
    data["arch"] = [r["arch"] for r in rows]
    data["bits"] = [r["bits"] for r in rows]
    if vary_policy:
        data["policy"] = [r["policy"] or "—" for r in rows]
    best: dict[str, list[bool]] = {name: [False] * len(rows) for name in data}
    for prefix, display, formatter, direction in _COST_SPECS:
        for device in bench_labels if prefix.startswith("bench_") else devices:
            key = f"{prefix} [{device}]"
            values = [r.get(key, np.nan) for r in rows]
            attempted = any(r.get(f"target_runs [{device}]") for r in rows)  # "not reached" is a result too
            if all(_is_missing(v) for v in values) and not (prefix == "time_to_target_s" and attempted):
                continue  # a figure nobody measured is noise in the table
            name = f"{display} [{device}]"
            if prefix == "time_to_target_s":
                texts = []
                for r, v in zip(rows, values):
                    runs_n = r.get(f"target_runs [{device}]", 0)
                    reached = r.get(f"target_reached [{device}]", 0)
                    if not runs_n:
                        texts.append("—")
                    else:
                        texts.append(f"{'not reached' if _is_missing(v) else _fmt_seconds(v)} ({reached}/{runs_n})")
                data[name] = texts
            else:
                data[name] = ["—" if _is_missing(v) else formatter(v) for v in values]
            finite = [v for v in values if not _is_missing(v)]
            # all-equal figures have no "best"; bolding every cell would only add noise
            winner = None
            if direction and len(set(finite)) > 1:
                winner = max(finite) if direction == "max" else min(finite)
            best[name] = [winner is not None and v == winner for v in values]
    sizes = [r["model_size_bits"] for r in rows]
    if any(not _is_missing(v) for v in sizes):
        data["model size"] = ["—" if _is_missing(v) else _fmt_size(v) for v in sizes]
        best["model size"] = [False] * len(rows)  # FP is biggest by construction; "smallest" says nothing
    if any("tune_trials" in r for r in rows):
        # What tuning cost, next to what it bought; CPU and GPU hours never share a column.
        data["tuning trials"] = [f"{r['tune_trials']} × {r['tune_epochs_per_trial']} ep" if "tune_trials" in r
                                 else "—" for r in rows]
        best["tuning trials"] = [False] * len(rows)
        for kind, label in (("cpu", "tuning CPU-h"), ("gpu", "tuning GPU-h")):
            if any(r.get(f"tune_{kind}_hours") for r in rows):
                data[label] = [f"{r[f'tune_{kind}_hours']:.3f}" if "tune_trials" in r else "—" for r in rows]
                best[label] = [False] * len(rows)
    return pd.DataFrame(data), pd.DataFrame(best)


def _cells_frame(cell_rows, labels, columns) -> pd.DataFrame:
    order = {label: i for i, label in enumerate(labels)}
    col_order = {col: i for i, col in enumerate(columns)}
    rows = sorted(cell_rows, key=lambda r: (col_order[r["_column"]], order[r["method"]]))
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    frame = pd.DataFrame.from_records(public)
    # fixed leading columns, then the device-labelled cost columns in sorted order → a stable CSV header
    leading = [c for c in dict.fromkeys(k for r in public for k in r) if " [" not in c]
    trailing = sorted(c for c in frame.columns if " [" in c)
    counts = ("n", "n_runs", "n_complete", "n_failed", "n_diverged", "n_incomplete", "n_without_metric",
              "n_missing_seeds", "n_repeated_seeds", "rank", "top5_n")
    for column in counts + tuple(c for c in trailing if c.startswith(("target_reached", "target_runs"))):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame[leading + trailing]


def _header_and_notes(runs, suite, metric, columns, target, target_drop, target_for, n_bootstrap, bootstrap_seed,
                      has_bench, table, costs):
    from .. import __version__

    status = Counter(runs["status"])
    status_text = ", ".join(f"{status[s]} {s}" for s in _status_words(status))
    devices = sorted(set(runs.loc[runs["status"] == "complete", "_device"])) or ["none recorded"]
    versions = sorted({str(v) for v in runs["qbench_version"] if not _is_missing(v)}) or ["unknown"]
    header = [
        f"Suite `{suite}`: {len(runs)} runs ({status_text}); devices: {'; '.join(devices)}; "
        f"records from qbench {', '.join(versions)}; report by qbench {__version__}.",
        f"Metric: `{metric}`, mean ± std over seeds (n = seeds with a result).",
    ]
    notes = [
        "Failed, diverged and incomplete runs and missing seeds are counted in their cell, never averaged in; "
        "95% confidence intervals (t-distribution) are in the CSV.",
    ]
    if any(c.endswith(" Δ FP") for c in table.columns):
        notes.append(f"Δ FP: cell mean minus the FP baseline (method `{FP_METHOD}`, {FP_BITS}) of the same arch.")
    if n_bootstrap > 0:
        notes.append(
            f"rank (stability): 1 = best mean in the column; stability = fraction of {n_bootstrap} bootstrap "
            f"resamples of the seeds within each cell (rng seed {bootstrap_seed}) in which the method keeps that rank "
            f"(not shown for a single seed)."
        )
    if "mean rank" in table.columns:
        notes.append("mean rank: over the quantized columns; a column where the method ran but has no result "
                     "counts as last.")
    if any(c.startswith("time to target") for c in costs.columns):
        if target is not None:
            notes.append(f"time to target: wall time to the first epoch with val_top1 ≥ {float(target):.2f}.")
        else:
            targets = sorted({(c.arch, target_for(c)) for c in columns if not math.isnan(target_for(c))})
            listed = ", ".join(f"{arch} {value:.2f}" for arch, value in targets)
            notes.append(
                f"time to target: wall time to the first epoch with val_top1 ≥ target, target = FP final val_top1 "
                f"minus {target_drop:.2f} ({listed}); (k/n) = runs that reached it."
            )
    if _has_costs(costs):
        notes.append("Cost figures are medians over seeds, per device; figures from different devices are never "
                     "compared" + ("; bench columns come from `qbench bench`." if has_bench else "."))
    if any(c.endswith("paper (source, setting)") for c in table.columns):
        notes.append("paper (source, setting): published numbers, quoted where dataset, arch, bits and method (and "
                     "the paper's policy / hyperparameters) match; not re-run here and not ranked.")
    broken = runs[runs["status"].isin(["failed", "diverged"])]
    for _, run in broken.head(20).iterrows():
        lines = [] if _is_missing(run["error"]) else str(run["error"]).strip().splitlines()
        error = lines[0][:160] if lines else ""
        notes.append(f"{run['status']}: `{run['run_id']}`" + (f": {error}" if error else ""))
    if len(broken) > 20:
        notes.append(f"… and {len(broken) - 20} more failed/diverged runs (see the CSV and the run dirs).")
    return header, notes


# ---------------------------------------------------------------------------------------------------------- writers
def _has_costs(costs: pd.DataFrame) -> bool:
    """Whether the cost table has any figure beyond its key columns (method, arch, bits, ...)."""
    return any(c.endswith("]") or c == "model size" for c in costs.columns)


def render_markdown(board: Leaderboard) -> str:
    """GitHub-flavoured Markdown: header, accuracy table, cost table, notes. No timestamps (byte-stable)."""
    if board.kind == "theory":
        return _render_theory(board, "md")
    parts = [f"# qbench leaderboard: {board.suite}", "", *board.header, "",
             f"## Accuracy ({board.metric})", "", board.table.to_markdown(index=False, disable_numparse=True), ""]
    if _has_costs(board.costs):
        parts += ["## Cost", "", board.costs.to_markdown(index=False, disable_numparse=True), ""]
    if board.notes:
        parts += ["## Notes", "", *[f"- {note}" for note in board.notes], ""]
    return "\n".join(parts)


def render_csv(board: Leaderboard) -> str:
    """The long numeric table: one row per (setting, method) with mean, std, n, ci95_low/high, ranks, costs."""
    if board.kind == "theory":
        return _render_theory(board, "csv")
    return board.cells.to_csv(index=False, lineterminator="\n")


def _styled(frame: pd.DataFrame, best: pd.DataFrame, uuid: str, css: str):
    from pandas.io.formats.style import Styler

    styler = Styler(frame, uuid=uuid, cell_ids=False)
    marks = best.reindex(index=frame.index, columns=frame.columns, fill_value=False)
    styler.apply(lambda _: marks.map(lambda is_best: css if is_best else ""), axis=None)
    return styler.hide(axis="index")


def render_html(board: Leaderboard) -> str:
    """A standalone HTML page; the best value of each column is bold. Fixed Styler uuids keep it byte-stable."""
    if board.kind == "theory":
        return _render_theory(board, "html")
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>qbench leaderboard: {esc(board.suite)}</title>", "</head>", "<body>",
        f"<h1>qbench leaderboard: {esc(board.suite)}</h1>",
        *[f"<p>{esc(line)}</p>" for line in board.header],
        f"<h2>Accuracy ({esc(board.metric)})</h2>",
        _styled(board.table, board.table_best, f"{HTML_UUID}_accuracy", "font-weight: bold;").to_html(),
    ]
    if _has_costs(board.costs):
        cost_styler = _styled(board.costs, board.costs_best, f"{HTML_UUID}_cost", "font-weight: bold;")
        parts += ["<h2>Cost</h2>", cost_styler.to_html()]
    if board.notes:
        parts += ["<h2>Notes</h2>", "<ul>", *[f"<li>{esc(note)}</li>" for note in board.notes], "</ul>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "—": "--", "≥": r"$\geq$", "…": r"\dots{}"}


def _latex_escape(text: Any) -> str:
    escaped = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for symbol, command in _LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, command)
    return escaped


def render_latex(board: Leaderboard) -> str:
    """LaTeX tables (booktabs rules) via the pandas Styler; best values in \\textbf; header and notes as comments."""
    if board.kind == "theory":
        return _render_theory(board, "tex")

    def table(frame: pd.DataFrame, best: pd.DataFrame, caption: str, label: str) -> str:
        escaped = frame.map(_latex_escape)
        escaped.columns = [_latex_escape(c) for c in frame.columns]
        marks = best.copy()
        marks.columns = escaped.columns
        styler = _styled(escaped, marks, f"{HTML_UUID}_{label}", "textbf: --rwrap;")
        return styler.to_latex(
            hrules=True, caption=_latex_escape(caption), label=f"tab:qbench-{_latex_slug(board.suite)}-{label}",
            position_float="centering", column_format="l" * len(frame.columns),
        )

    parts = [f"% qbench leaderboard: {board.suite}", *[f"% {line}" for line in board.header], "",
             table(board.table, board.table_best, f"qbench {board.suite}: {board.metric}", "accuracy")]
    if _has_costs(board.costs):
        parts += ["", table(board.costs, board.costs_best, f"qbench {board.suite}: cost", "cost")]
    parts += ["", *[f"% {note}" for note in board.notes], ""]
    return "\n".join(parts)


def _latex_slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "suite"


_RENDERERS = {"md": render_markdown, "csv": render_csv, "html": render_html, "tex": render_latex}


def write_leaderboard(
    df_runs: pd.DataFrame,
    out_dir: str | Path,
    suite: str,
    formats: Sequence[str] = DEFAULT_FORMATS,
    where: Mapping[str, Any] | None = None,
    **build_kwargs: Any,
) -> list[Path]:
    """Build the leaderboard of ``df_runs`` and write ``out_dir/<suite>.<fmt>`` atomically for each format.

    ``build_kwargs`` go to :func:`build_leaderboard` (metric, bench, target, target_drop, n_bootstrap, ...).
    """
    unknown = [f for f in formats if f not in _RENDERERS]
    if unknown:
        raise QbenchError(f"unknown report format {unknown[0]!r}; choose from {', '.join(_RENDERERS)}")
    board = build_leaderboard(df_runs, where=where, suite=suite, **build_kwargs)
    out_dir = Path(out_dir)
    paths = []
    for fmt in formats:
        path = out_dir / f"{suite}.{fmt}"
        atomic_write_text(path, _RENDERERS[fmt](board))
        paths.append(path)
    return paths


def report(
    suite: str,
    results_dir: str | Path = "results",
    out_dir: str | Path | None = None,
    where: Mapping[str, Any] | Sequence[str] | None = None,
    formats: Sequence[str] | None = None,
    plots: bool = True,
    *,
    metric: str = "test_top1",
    target: float | None = None,
    target_drop: float = 1.0,
) -> list[Path]:
    """``qbench report suite=S``: tables (md/csv/html/tex) and PNG plots under ``<results_dir>/leaderboards``.

    ``where`` is a ``{key: value}`` dict or a list of ``key=value`` strings. Returns the written paths.
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "leaderboards"
    runs = load_runs(results_dir, suite)
    if where is not None and not isinstance(where, Mapping):
        where = parse_where(where, runs.columns)
    bench = load_bench(results_dir, suite)
    paths = write_leaderboard(
        runs, out_dir, suite, formats=tuple(formats or DEFAULT_FORMATS), where=where, bench=bench, metric=metric,
        target=target, target_drop=target_drop, tuning=load_tuning(results_dir, suite),
    )
    if plots:
        from .plots import write_plots

        paths += write_plots(filter_runs(runs, where), results_dir, out_dir, suite, metric=metric)
    return paths


# ------------------------------------------------------------------------------------------------ warm-start notes
def _warm_start_notes(runs: pd.DataFrame) -> list[str]:
    """One note per row label whose runs continued another run (``model.init_from_run``): where the loss at Q(w) on
    the training slice started and ended, and the first and last epoch's training loss (seed means) — the numbers
    that say whether a continuation was pushed away from its starting minimum (STE paper's repulsion experiment)."""
    if "init_from_run" not in runs.columns:
        return []
    notes = []
    warm = runs[runs["init_from_run"].map(lambda v: isinstance(v, str) and bool(v)) & (runs["status"] == "complete")]
    for label, group in warm.groupby("_label", sort=True):
        def mean_of(values) -> str:
            values = [float(v) for v in values if not _is_missing(v)]
            return f"{np.mean(values):.5g}" if values else "—"

        first = [rows[0].get("train_loss") for rows in group["metrics"] if isinstance(rows, list) and rows]
        last = [rows[-1].get("train_loss") for rows in group["metrics"] if isinstance(rows, list) and rows]
        sources = sorted(set(group["init_from_run"]))
        source = f"`{sources[0]}`" if len(sources) == 1 else f"{len(sources)} runs"
        notes.append(
            f"`{label}` continues {source} (model.init_from_run): loss at Q(w) on the training slice "
            f"{mean_of(group.get('init_loss_q', []))} → {mean_of(group.get('final_loss_q', []))}; train_loss first → "
            f"last epoch {mean_of(first)} → {mean_of(last)} (mean over {len(group)} seed"
            f"{'s' if len(group) != 1 else ''})."
        )
    return notes


# ------------------------------------------------------------------------------------------------ theory records
# Records of `kind: theory` suites (qbench.theory_suite): rows are estimators (and recurrence-toy quantizers), columns
# the spec §8 / §6 checks. Kept apart from the training leaderboard: nothing here is a rank or an accuracy.
_THEORY_ORDER = ("identity", "relu", "clipped_relu")
_THEORY_METRICS = (
    "cos_mean", "cos_min", "cos_mc_mean", "cos_mc_min", "mc_max_abs_err", "mc_max_stderr", "mc_max_z",
    "inner_product_rel_err", "spurious_grad_norm", "spurious_grad_norm_formula", "spurious_grad_norm_mc",
    "spurious_grad_mc_stderr", "train_final_loss", "train_final_theta", "train_initial_loss_median",
    "train_final_loss_median", "train_global_rate", "train_spurious_rate", "train_loss_rise_rate", "wall_time_s",
)
_RECURRENCE_METRICS = (
    "n_visits", "visits_last_quarter", "first_visit", "last_visit", "distinct_states_last_quarter", "visit_fraction",
    "mean_flip_rate", "mean_hamming_last_quarter", "optimum_loss", "min_loss_q", "mean_loss_q_last_quarter",
    "wall_time_s",
)


def _is_theory(runs: pd.DataFrame) -> bool:
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


def _theory_values(group: pd.DataFrame, key: str) -> np.ndarray:
    if key not in group.columns:
        return np.array([])
    values = pd.to_numeric(group[key], errors="coerce").to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _theory_num(group: pd.DataFrame, key: str, spec: str, reduce: str = "mean") -> str:
    """Seed mean (± std when seeds disagree), or the min/max over seeds; "—" where no complete record has a value."""
    values = _theory_values(group, key)
    if not len(values):
        return "—"
    if reduce == "min":
        return format(values.min(), spec)
    if reduce == "max":
        return format(values.max(), spec)
    mean = format(values.mean(), spec)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{mean} ± {format(std, spec)}" if len(values) > 1 and format(std, spec) != format(0.0, spec) else mean


def _theory_checks(group: pd.DataFrame) -> str:
    columns = sorted(c for c in group.columns if c.startswith("checks."))
    results: dict[str, bool] = {}
    for column in columns:
        values = [v for v in group[column] if not _is_missing(v)]
        if values:
            results[column[len("checks."):]] = all(_as_bool(v) for v in values)
    if not results:
        return "—"
    failed = [name for name, ok in results.items() if not ok]
    return f"{len(results)}/{len(results)} pass" if not failed else "FAIL: " + ", ".join(failed)


def _theory_seeds(group: pd.DataFrame) -> str:
    counts = Counter(group["status"])
    ok = counts.pop("complete", 0)
    extras = [f"{counts[s]} {s}" for s in _status_words(counts)]
    return ", ".join([f"n={ok}"] + extras)


def _theory_estimator_table(est: pd.DataFrame) -> pd.DataFrame:
    labels = sorted(est["estimator"].map(str).unique(),
                    key=lambda e: (_THEORY_ORDER.index(e) if e in _THEORY_ORDER else len(_THEORY_ORDER), e))
    rows = []
    for label in labels:
        group = est[est["estimator"].map(str) == label]
        done = group[group["status"] == "complete"]
        source = _uniform(done.get("estimator_source", pd.Series(dtype=object)).dropna()) if len(done) else None
        rows.append({
            "estimator": label,
            "E g from": source if isinstance(source, str) else "—",
            "cos(E g, ∂f/∂w) mean [min]":
                f"{_theory_num(done, 'cos_mean', '.3f')} [{_theory_num(done, 'cos_min', '.3f', 'min')}]",
            "cos, Monte Carlo mean [min]":
                f"{_theory_num(done, 'cos_mc_mean', '.3f')} [{_theory_num(done, 'cos_mc_min', '.3f', 'min')}]",
            "E g vs MC: max |Δ| (max z)":
                f"{_theory_num(done, 'mc_max_abs_err', '.1e', 'max')} ({_theory_num(done, 'mc_max_z', '.1f', 'max')})",
            "‖E g‖ at θ = π [spec §8]": f"{_theory_num(done, 'spurious_grad_norm', '.4f')} "
                                        f"[{_theory_num(done, 'spurious_grad_norm_formula', '.4f')}]",
            "‖E g‖ at θ = π, MC ± se": f"{_theory_num(done, 'spurious_grad_norm_mc', '.4f')} ± "
                                       f"{_theory_num(done, 'spurious_grad_mc_stderr', '.4f')}",
            "training: final f, θ (draw 1)":
                f"{_theory_num(done, 'train_final_loss', '.2e')}, {_theory_num(done, 'train_final_theta', '.3f')}",
            "global / spurious / loss-rise rate":
                " / ".join(_theory_num(done, k, ".2f") for k in ("train_global_rate", "train_spurious_rate",
                                                               "train_loss_rise_rate")),
            "checks": _theory_checks(done),
            "seeds": _theory_seeds(group),
            "wall time": _fmt_seconds(_median(_theory_values(done, "wall_time_s"))),
        })
    return pd.DataFrame(rows)


def _theory_recurrence_table(rec: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for quantizer in sorted(rec["quantizer"].map(str).unique()):
        group = rec[rec["quantizer"].map(str) == quantizer]
        done = group[group["status"] == "complete"]
        rows.append({
            "Q": quantizer,
            "steps, η": f"{_theory_num(done, 'steps', '.0f')}, {_theory_num(done, 'lr', 'g')}",
            "visits of Q(w*)": _theory_num(done, "n_visits", ".0f"),
            "in the last quarter": _theory_num(done, "visits_last_quarter", ".0f"),
            "first / last visit": f"{_theory_num(done, 'first_visit', '.0f', 'min')} / "
                                  f"{_theory_num(done, 'last_visit', '.0f', 'max')}",
            "distinct Q(w_t), last quarter": _theory_num(done, "distinct_states_last_quarter", ".0f"),
            "mean flip rate": _theory_num(done, "mean_flip_rate", ".4f"),
            "mean Hamming to Q(w*), last quarter": _theory_num(done, "mean_hamming_last_quarter", ".3f"),
            "f at Q(w*) / min f at Q(w_t)":
                f"{_theory_num(done, 'optimum_loss', '.4f')} / {_theory_num(done, 'min_loss_q', '.4f', 'min')}",
            "checks": _theory_checks(done),
            "seeds": _theory_seeds(group),
        })
    return pd.DataFrame(rows)


def _theory_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """The CSV: one row per (part, estimator or quantizer, metric) with n, mean, std, min, max over complete seeds."""
    rows = []
    for part, key, metrics in (("estimator", "estimator", _THEORY_METRICS),
                               ("recurrence", "quantizer", _RECURRENCE_METRICS)):
        subset = runs[runs["theory_part"] == part] if "theory_part" in runs.columns else runs.iloc[0:0]
        for label in sorted(subset[key].map(str).unique()) if len(subset) else []:
            done = subset[(subset[key].map(str) == label) & (subset["status"] == "complete")]
            for metric in metrics:
                values = _theory_values(done, metric)
                rows.append({"part": part, "name": label, "metric": metric, "n": len(values),
                             "mean": values.mean() if len(values) else np.nan,
                             "std": values.std(ddof=1) if len(values) > 1 else np.nan,
                             "min": values.min() if len(values) else np.nan,
                             "max": values.max() if len(values) else np.nan})
    return pd.DataFrame(rows, columns=["part", "name", "metric", "n", "mean", "std", "min", "max"])


def build_theory_leaderboard(runs: pd.DataFrame, *, suite: str | None = None) -> Leaderboard:
    """The report of a theory suite (records of :mod:`qbench.theory_suite`): a table of estimators with the spec §8
    checks as columns, a table of the spec §6 recurrence toy per quantizer, and the notes that define each column."""
    from .. import __version__

    runs = runs.copy()
    if "theory_part" not in runs.columns:
        runs["theory_part"] = "estimator"
    for column in ("estimator", "quantizer"):
        if column not in runs.columns:
            runs[column] = None
    suite = suite or ", ".join(sorted(runs["suite"].map(str).unique()))
    est = runs[runs["theory_part"] == "estimator"]
    rec = runs[runs["theory_part"] == "recurrence"]
    table = _theory_estimator_table(est) if len(est) else pd.DataFrame({"estimator": []})
    status = Counter(runs["status"])
    versions = sorted({str(v) for v in runs["qbench_version"] if not _is_missing(v)}) or ["unknown"]
    status_text = ", ".join(f"{status[s]} {s}" for s in _status_words(status))
    header = [
        f"Suite `{suite}` (theory): {len(runs)} records ({status_text});"
        f" records from qbench {', '.join(versions)}; report by qbench {__version__}.",
        "Two-linear-layer Gaussian model y = vᵀσ(Zw), σ(x) = 1{x > 0} (spec §8; Yin et al., *Understanding "
        "straight-through estimator …*, ICLR 2019) and the recurrence toy of spec §6 (Long, Yin, Xin, arXiv "
        "2012.05529). Values are seed means (± std where seeds differ).",
    ]
    options = {k[len("cfg.theory."):]: v for k, v in runs.iloc[0].items()
               if str(k).startswith("cfg.theory.") and not _is_missing(v)}
    if options:
        header.append("Options: " + ", ".join(f"{k}={options[k]}" for k in sorted(options)) + ".")
    notes = [
        "cos(E g, ∂f/∂w): cosine of the expected coarse gradient (closed form or quadrature) with the population "
        "gradient ∂f/∂w, "
        "mean [min] over the random draws (theory.n_draws); Monte Carlo: the same with E g from theory.mc_samples "
        "samples on the first theory.mc_draws draws. STE paper: positive for relu and clipped relu.",
        "E g vs MC: largest |E g − Monte Carlo| over draws and coordinates, and the largest ratio to the Monte "
        "Carlo standard error (z); z below ~4 means the closed form (or quadrature) is right.",
        "‖E g‖ at θ = π: at the spurious critical point v = (I+J)⁻¹(J−I)v*, w = −‖w‖w* of the first draw; [spec §8] "
        "is 2(m−1)(1ᵀv*)²/(√(2π)(m+1)²) for identity and 0 for relu: the identity STE does not stop there. MC ± se: "
        "the Monte Carlo norm and the norm of its standard error (its noise floor).",
        "training: coarse gradient descent (STE paper, Algorithm 1) from theory.train_draws draws: final f and θ of "
        "the first draw (curves in the plots); rates = share of draws that reach the global minimum (final f < 1e-6 × "
        "initial), end at the spurious θ = π, or whose loss climbs in the second half.",
        "Estimators other than identity / relu / clipped_relu come from a method's activation quantizer (its "
        "backward is its μ'); their E g is one-dimensional Gaussian quadrature (qbench.theory_suite."
        "QuadratureEstimator, checked against Monte Carlo like the closed forms), so every column applies.",
    ]
    sections = []
    if len(rec):
        sections.append(("Recurrence toy (spec §6; REC paper)", _theory_recurrence_table(rec)))
        notes.append("Recurrence toy: projected coarse gradient w ← w − η·E g_relu(Q(w)) (BCGD with ρ = 0) on the "
                     "spec §8 model with v = v*; a visit is Q(w_t) equal to the quantized optimum Q(w*). REC paper: "
                     "the iterates keep visiting the optimum without converging, so visits in the last quarter and "
                     "several distinct Q(w_t) there are the checks (never exact counts).")
    broken = runs[runs["status"] != "complete"]
    for _, run in broken.head(20).iterrows():
        lines = [] if _is_missing(run.get("error")) else str(run["error"]).strip().splitlines()
        notes.append(f"{run['status']}: `{run['run_id']}`" + (f": {lines[0][:160]}" if lines else ""))
    empty = pd.DataFrame()
    best = pd.DataFrame(False, index=table.index, columns=table.columns)
    return Leaderboard(suite, "theory", table, best, empty, empty, _theory_cells(runs), header, notes,
                       kind="theory", sections=sections)


def _render_theory(board: Leaderboard, fmt: str) -> str:
    """Markdown / CSV / HTML / LaTeX of a theory board: header, the estimator table, further sections, notes."""
    title = "Estimators on the two-linear-layer Gaussian model (spec §8)"
    tables = [(title, board.table)] + [(t, f) for t, f in board.sections]
    if fmt == "csv":
        return board.cells.to_csv(index=False, lineterminator="\n")
    if fmt == "md":
        parts = [f"# qbench theory report: {board.suite}", "", *board.header, ""]
        for name, frame in tables:
            parts += [f"## {name}", "", frame.to_markdown(index=False, disable_numparse=True), ""]
        if board.notes:
            parts += ["## Notes", "", *[f"- {note}" for note in board.notes], ""]
        return "\n".join(parts)
    if fmt == "html":
        esc = html.escape
        parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                 f"<title>qbench theory report: {esc(board.suite)}</title>", "</head>", "<body>",
                 f"<h1>qbench theory report: {esc(board.suite)}</h1>",
                 *[f"<p>{esc(line)}</p>" for line in board.header]]
        for index, (name, frame) in enumerate(tables):
            none = pd.DataFrame(False, index=frame.index, columns=frame.columns)
            parts += [f"<h2>{esc(name)}</h2>", _styled(frame, none, f"{HTML_UUID}_theory{index}", "").to_html()]
        if board.notes:
            parts += ["<h2>Notes</h2>", "<ul>", *[f"<li>{esc(note)}</li>" for note in board.notes], "</ul>"]
        return "\n".join(parts + ["</body>", "</html>", ""])
    parts = [f"% qbench theory report: {board.suite}", *[f"% {line}" for line in board.header], ""]
    for index, (name, frame) in enumerate(tables):
        escaped = frame.map(_latex_escape)
        escaped.columns = [_latex_escape(c) for c in frame.columns]
        none = pd.DataFrame(False, index=escaped.index, columns=escaped.columns)
        parts += [_styled(escaped, none, f"{HTML_UUID}_theory{index}", "").to_latex(
            hrules=True, caption=_latex_escape(f"qbench {board.suite}: {name}"),
            label=f"tab:qbench-{_latex_slug(board.suite)}-theory{index}", position_float="centering",
            column_format="l" * len(frame.columns)), ""]
    return "\n".join(parts + [*[f"% {note}" for note in board.notes], ""])
