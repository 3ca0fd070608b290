"""The benchmark sweep: FP and every method × bits × arch measured in one process, one row each.

Every model of one arch sees the **same synthetic batch** (seeded) and starts from the **same initial weights**
(``torch.manual_seed(seed)`` before each build), and the FP model (method ``fp`` at ``W32A32``) is measured in the same
process with the same settings; it is the reference of ``ratio_train_to_fp`` / ``ratio_infer_to_fp`` (a time ratio:
> 1 means slower than FP). ``rounds > 1`` repeats the whole sweep (FP and every method, each model rebuilt) and merges
the samples, so slow drift of a shared machine hits every method alike. A row whose model cannot be built or compiled
(``torch.compile`` failure, unsupported bit-width) is recorded with its ``error`` and NaN timings instead of stopping
the sweep.

Rows carry the keys :data:`BENCH_KEYS` read by :func:`qbench.report.load_bench`, plus :data:`EXTRA_KEYS`. With
``results_dir`` and ``suite`` they are written atomically to ``<results_dir>/<suite>/bench/<device>-<settings>.json``
(:meth:`qbench.results.ResultsLayout.bench_path`), merged with the rows already in that file (a re-run replaces the
rows of the same method, arch, bits and policy).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch

from .. import __version__
from ..bits import FP_BITS
from ..config import ModelConfig, TrainConfig
from ..errors import ConfigError
from ..registry import create_method, supported_bits
from ..quant.apply import quantize_model
from ..results import ResultsLayout, atomic_write_json
from ..run.device import device_name
from ..run.models import create_model
from .measure import bench_setup, measure_inference, measure_train_step, merge_timings, num_threads, synthetic_batch

__all__ = ["BENCH_KEYS", "EXTRA_KEYS", "run_bench", "format_bench", "settings_slug", "bench_pairs"]

#: keys every row carries (read by qbench.report.load_bench)
BENCH_KEYS = (
    "method", "arch", "bits", "device", "device_name", "threads", "batch_size", "amp_dtype", "channels_last",
    "compile", "train_step_ms_median", "train_step_ms_iqr", "train_img_s", "infer_img_s", "ratio_train_to_fp",
    "ratio_infer_to_fp", "peak_mem_mb", "torch", "qbench",
)
#: further keys of every row
EXTRA_KEYS = (
    "policy", "infer_ms_median", "infer_ms_iqr", "train_samples", "infer_samples", "peak_mem_kind", "input_size",
    "num_classes", "optimizer", "rounds", "seed", "cuda", "error",
)
_AMP_NAME = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def _input_shape(input_size: Any, in_chans: int | None) -> tuple[int, int, int]:
    if isinstance(input_size, int):
        if in_chans is None:
            raise ConfigError("input_size given as one number needs in_chans")
        return (int(in_chans), int(input_size), int(input_size))
    size = tuple(int(s) for s in input_size)
    if len(size) == 3:
        if in_chans is not None and size[0] != int(in_chans):
            raise ConfigError(f"input_size {size} has {size[0]} channels but in_chans={in_chans}")
        return size  # type: ignore[return-value]
    if len(size) == 2 and in_chans is not None:
        return (int(in_chans), *size)  # type: ignore[return-value]
    raise ConfigError(f"input_size must be (C, H, W), (H, W) with in_chans, or an int; got {input_size!r}")


def bench_pairs(methods: Iterable[str], bits_list: Iterable[str] | Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """(method, bits) pairs: FP first, once, at W32A32 (the reference), then every method × bits.

    ``bits_list`` is one list for every method or ``{method: [bits, ...]}`` (a suite's ``method_bits``); pairs a
    method does not support are left out, as a suite's cells are (:func:`qbench.registry.supported_bits`)."""
    out = [("fp", FP_BITS)]
    for method in methods:
        method = str(method).lower()
        if method == "fp":
            continue
        for bits in supported_bits(method, bits_list.get(method, ()) if isinstance(bits_list, Mapping) else bits_list):
            if (method, str(bits)) not in out:
                out.append((method, str(bits)))
    return out


def settings_slug(*, device: str, device_name: str, threads: int, batch_size: int, amp_dtype: str | None,
                  channels_last: bool, compile: bool, policy: str = "fp") -> str:
    """File-name slug of the measurement settings, e.g. ``intel-r-xeon-r-processor-t2-bs128-fp32-policy_fp``."""
    parts = [re.sub(r"[^a-z0-9]+", "-", str(device_name).lower()).strip("-") or "unknown"]
    if device == "cpu":
        parts.append(f"t{threads}")
    parts += [f"bs{batch_size}", amp_dtype or "fp32"]
    if channels_last:
        parts.append("cl")
    if compile:
        parts.append("compiled")
    parts.append(f"policy_{policy}")
    return "-".join(parts)


def _row_key(row: dict) -> tuple:
    return (str(row.get("method")).lower(), row.get("arch"), row.get("bits"), row.get("policy"))


def _write_rows(path: Path, rows: list[dict]) -> None:
    old: list[dict] = []
    if path.exists():
        try:
            content = json.loads(path.read_text())
            if isinstance(content, list) and all(isinstance(r, dict) for r in content):
                old = content
        except (OSError, ValueError):
            old = []  # a torn or foreign file is replaced
    new_keys = {_row_key(r) for r in rows}
    atomic_write_json(path, [r for r in old if _row_key(r) not in new_keys] + rows)


def run_bench(*, archs: Sequence[str], methods: Sequence[str],
              bits_list: Sequence[str] | Mapping[str, Sequence[str]], input_size,
              num_classes: int, in_chans: int | None = None, batch_size: int = 128, device: str = "auto",
              amp_dtype: str | None = None, channels_last: bool = False, compile: bool = False, policy: str = "fp",
              threads: int | None = None, steps: int = 20, warmup: int = 5, min_run_time: float = 1.0,
              results_dir=None, suite: str | None = None, seed: int = 0, recipe: TrainConfig | None = None,
              model: ModelConfig | None = None, layer_bits: dict[str, str] | None = None, rounds: int = 1, method_hparams: dict[str, dict] | None = None,
              log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Measure FP (once per arch, ``W32A32``) and every method at every bit-width; one row each.

    Args:
        archs, methods, bits_list: the sweep (``fp`` among ``methods`` is measured once per arch whatever the bits;
            it is always measured, as the reference of the ratios).
        input_size: (C, H, W), (H, W) or an int with ``in_chans``; num_classes: range of the random labels.
        batch_size, device ("auto" | "cpu" | "cuda"), amp_dtype (None | "bf16" | "fp16"), channels_last, compile:
            the measurement settings, recorded in every row (AMP and channels_last are CUDA-only, as in training).
        policy, layer_bits: the layer precision policy and per-layer globs for ``quantize_model``
            (:mod:`qbench.config.policy`).
        threads: CPU threads, fixed for the whole sweep (default ``torch.get_num_threads()``).
        steps, warmup, min_run_time: timing protocol (see :mod:`qbench.bench.measure`).
        results_dir, suite: when both are given, write the rows where ``qbench report`` reads them.
        seed: initial weights and the synthetic batch; recipe: the suite's ``train`` block (its optimizer);
        model: the suite's ``model`` block (constructor kwargs, 32-px adapter); rounds: repeat the sweep and merge.
        method_hparams: ``{method: {hparam: value}}`` of each method.
        log: called with one line per measured row (e.g. ``print``).

    Returns: a DataFrame with the columns :data:`BENCH_KEYS` + :data:`EXTRA_KEYS`.
    """
    setup = bench_setup(device, amp_dtype, channels_last, compile)
    dev = setup.device
    recipe = recipe or TrainConfig()
    # The bench times steps, not weights: no download and no checkpoint.
    model_cfg = dataclasses.replace(model or ModelConfig(), pretrained=False, checkpoint=None)
    shape = _input_shape(input_size, in_chans)
    threads = int(threads) if threads is not None else torch.get_num_threads()
    method_hparams = {str(k).lower(): dict(v or {}) for k, v in (method_hparams or {}).items()}
    name = device_name(dev)
    pairs = bench_pairs(methods, bits_list)
    common = {
        "device": dev.type, "device_name": name, "threads": threads, "batch_size": int(batch_size),
        "amp_dtype": _AMP_NAME.get(setup.amp_dtype), "channels_last": setup.channels_last,
        "compile": setup.compile, "torch": torch.__version__, "qbench": __version__, "policy": policy,
        "input_size": list(shape), "num_classes": int(num_classes), "optimizer": recipe.optimizer,
        "rounds": int(rounds), "seed": int(seed), "cuda": torch.version.cuda if dev.type == "cuda" else None,
    }
    timing = dict(warmup=warmup, steps=steps, min_run_time=min_run_time, threads=threads)
    rows: list[dict] = []
    with num_threads(threads):
        for arch in archs:
            batch = synthetic_batch(shape, num_classes, batch_size, setup, seed)
            train_parts: dict[tuple, list] = {p: [] for p in pairs}
            infer_parts: dict[tuple, list] = {p: [] for p in pairs}
            peak: dict[tuple, float] = {}
            peak_kind: dict[tuple, str] = {}
            errors: dict[tuple, str] = {}
            for _ in range(max(int(rounds), 1)):
                for pair in pairs:
                    if pair in errors:
                        continue
                    method_name, bits = pair
                    net = None
                    try:
                        torch.manual_seed(int(seed))
                        net = create_model(arch, model_cfg, num_classes=int(num_classes), in_chans=shape[0],
                                           input_size=shape)
                        method = create_method(method_name, **method_hparams.get(method_name, {}))
                        quantize_model(net, method, bits, policy, input_size=shape, layer_bits=layer_bits)
                        net.to(dev)
                        if setup.channels_last:
                            net.to(memory_format=torch.channels_last)
                        forward = torch.compile(net) if setup.compile else net
                        train = measure_train_step(net, method, setup, batch, recipe=recipe, forward_model=forward,
                                                   **timing)
                        infer = measure_inference(net, setup, batch, forward_model=forward, **timing)
                    except Exception as exc:  # noqa: BLE001 - a failing row (compile, bits) must not stop the sweep
                        text = str(exc).strip()
                        errors[pair] = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
                        if log:
                            log(f"{arch} {method_name} {bits}: FAILED {errors[pair]}")
                        continue
                    finally:
                        del net
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
                    train_parts[pair].append(train)
                    infer_parts[pair].append(infer)
                    peaks = [v for v in (peak.get(pair, math.nan), train["peak_mem_mb"]) if not math.isnan(v)]
                    peak[pair] = max(peaks) if peaks else math.nan
                    peak_kind[pair] = train["peak_mem_kind"]
                    if log:
                        log(f"{arch} {method_name} {bits}: train {train['median_ms']:.2f} ms "
                            f"(IQR {train['iqr_ms']:.2f}), infer {infer['median_ms']:.2f} ms")
            arch_rows = []
            for pair in pairs:
                method_name, bits = pair
                row = {"method": method_name, "arch": arch, "bits": bits, **common}
                if pair in errors or not train_parts[pair]:
                    row.update(train_step_ms_median=math.nan, train_step_ms_iqr=math.nan, train_img_s=math.nan,
                               infer_img_s=math.nan, infer_ms_median=math.nan, infer_ms_iqr=math.nan,
                               train_samples=0, infer_samples=0, peak_mem_mb=math.nan, peak_mem_kind=None,
                               error=errors.get(pair, "not measured"))
                else:
                    tr, inf = merge_timings(train_parts[pair]), merge_timings(infer_parts[pair])
                    row.update(train_step_ms_median=tr["median_ms"], train_step_ms_iqr=tr["iqr_ms"],
                               train_img_s=batch_size / (tr["median_ms"] / 1e3),
                               infer_img_s=batch_size / (inf["median_ms"] / 1e3),
                               infer_ms_median=inf["median_ms"], infer_ms_iqr=inf["iqr_ms"],
                               train_samples=tr["samples"], infer_samples=inf["samples"],
                               peak_mem_mb=peak.get(pair, math.nan), peak_mem_kind=peak_kind.get(pair), error=None)
                arch_rows.append(row)
            fp = arch_rows[0]  # ("fp", W32A32) is always first
            for row in arch_rows:
                row["ratio_train_to_fp"] = _ratio(row["train_step_ms_median"], fp["train_step_ms_median"])
                row["ratio_infer_to_fp"] = _ratio(row["infer_ms_median"], fp["infer_ms_median"])
            rows.extend(arch_rows)

    columns = list(BENCH_KEYS) + list(EXTRA_KEYS)
    records = [{k: r.get(k) for k in columns} for r in rows]
    df = pd.DataFrame.from_records(records, columns=columns)
    if results_dir is not None and suite:
        slug = settings_slug(device=dev.type, device_name=name, threads=threads, batch_size=int(batch_size),
                             amp_dtype=common["amp_dtype"], channels_last=setup.channels_last,
                             compile=setup.compile, policy=policy)
        _write_rows(ResultsLayout(results_dir, suite).bench_path(dev.type, slug), records)
    return df


def _ratio(value: float, reference: float) -> float:
    if value is None or reference is None or not (reference > 0) or math.isnan(value):
        return math.nan
    return float(value) / float(reference)


def format_bench(df: pd.DataFrame) -> str:
    """A readable table: per arch, each method × bits with its train-step time (median ± IQR), img/s and the time
    ratio to FP (× FP, > 1 = slower), inference img/s and ratio, peak memory; one header line per setting."""
    if df is None or len(df) == 0:
        return "(no benchmark rows)"
    lines: list[str] = []
    settings = ["device", "device_name", "threads", "batch_size", "amp_dtype", "channels_last", "compile"]
    present = [c for c in settings if c in df]
    groups = df.groupby(present, dropna=False, sort=False) if present else [((), df)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        info = dict(zip(present, key))
        head = f"{info.get('device', '?')}: {info.get('device_name', '?')}"
        if str(info.get("device")) == "cpu":
            head += f", {info.get('threads')} threads"
        amp = info.get("amp_dtype")
        head += f", batch {info.get('batch_size')}, {amp if isinstance(amp, str) and amp else 'fp32'}"
        if bool(info.get("channels_last")):
            head += ", channels_last"
        if bool(info.get("compile")):
            head += ", compiled"
        if "torch" in part:
            head += f", torch {part['torch'].iloc[0]}"
        lines.append(head)
        table = pd.DataFrame({
            "arch": part["arch"],
            "method": part["method"],
            "bits": part["bits"],
            "train ms": [_pm(m, i) for m, i in zip(part["train_step_ms_median"], part["train_step_ms_iqr"])],
            "train img/s": [_num(v, 0) for v in part["train_img_s"]],
            "train ×FP": [_num(v, 2) for v in part["ratio_train_to_fp"]],
            "infer img/s": [_num(v, 0) for v in part["infer_img_s"]],
            "infer ×FP": [_num(v, 2) for v in part["ratio_infer_to_fp"]],
            "peak MB": [_num(v, 1) for v in part["peak_mem_mb"]],
        })
        if "error" in part and part["error"].notna().any():
            table["error"] = [str(e)[:60] if isinstance(e, str) else "" for e in part["error"]]
        lines.append(table.to_string(index=False))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _num(value: Any, digits: int) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _pm(median: Any, iqr: Any) -> str:
    m = _num(median, 2)
    return m if m == "-" else f"{m} ± {_num(iqr, 2)}"
