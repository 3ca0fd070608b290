"""Throughput of the training step and of inference: the FP model against every method, in one process.

What is measured (design.md, "Throughput"; the protocol of timm's ``benchmark.py``):

* **Training step** — exactly the sequence of the training loop (spec §0): forward at Q(w) (the parametrizations),
  cross-entropy on random labels, backward with the method's estimators, ``method.before_step(model)``,
  ``optimizer.step()``, ``method.after_step(model)``, ``optimizer.zero_grad(set_to_none=True)``. The model is in
  train mode. The loop's divergence guard (``isfinite(loss)``, a host sync) is left out: it is the same for every
  method and is not part of the step's cost.
* **Inference** — eval mode (every quantizer hard), ``torch.no_grad()``, the same synthetic batch.

Every model of one arch sees the **same synthetic batch** (seeded) and starts from the **same initial weights**
(``torch.manual_seed(seed)`` before each build), and the FP model (method ``fp`` at ``W32A32``) is measured in the same
process with the same settings; it is the reference of ``ratio_train_to_fp`` / ``ratio_infer_to_fp`` (a time ratio:
> 1 means slower than FP).

Timing:

* **CUDA** — ``warmup`` untimed steps, then at least ``steps`` timed steps (more until ``min_run_time`` seconds
  have passed), each between two ``torch.cuda.Event(enable_timing=True)`` with a synchronisation after it; median and
  IQR (p75 − p25) of the per-step times. Peak memory: ``torch.cuda.max_memory_allocated`` since the start of the
  measurement (model, gradients, optimizer state and activations; only one model is alive at a time). Optional
  AMP (``torch.autocast(device_type="cuda", dtype=bf16|fp16)``, a ``GradScaler`` for fp16), ``channels_last`` and
  ``torch.compile``.
* **CPU** — ``torch.utils.benchmark.Timer.blocked_autorange(min_run_time=...)`` at a fixed thread count
  (``threads``, default ``torch.get_num_threads()``), topped up with single blocks until at least ``steps`` samples;
  median and IQR from the (merged) ``Measurement``. A sample is the mean of one block of ``number_per_run`` steps,
  so the CPU IQR is that of block means. Peak memory: the rise of the process's peak resident set size (``VmHWM``,
  reset through ``/proc/self/clear_refs``) over the resident size at the start of the measurement, after
  ``gc.collect()`` and ``malloc_trim(0)``: the gradients, optimizer state and activations the step adds on top of
  the resident model. It depends on the allocator and is not comparable with the CUDA figure (which also includes
  the model); NaN where the kernel does not allow the reset (non-Linux).
  As in the training loop, AMP and ``channels_last`` are CUDA features: on the CPU they are off and the rows say so.

``rounds > 1`` repeats the whole sweep (FP and every method, each model rebuilt) and merges the samples, so slow
drift of a shared machine hits every method alike.

A row whose model cannot be built or compiled (``torch.compile`` failure, unsupported bit-width) is recorded with
its ``error`` and NaN timings instead of stopping the sweep.

Rows (one per method × bits × arch, plus ``fp`` at ``W32A32`` per arch) carry the keys :data:`BENCH_KEYS` read by
:func:`qbench.leaderboard.load_bench`, plus :data:`EXTRA_KEYS`. With ``results_dir`` and ``suite`` they are written
atomically to ``<results_dir>/<suite>/bench/<device>-<settings-slug>.json``, merged with the rows already in that
file (a re-run replaces the rows of the same method, arch, bits and policy).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ConfigError

__all__ = [
    "BENCH_KEYS",
    "EXTRA_KEYS",
    "FP_BITS",
    "measure_train_step",
    "measure_inference",
    "run_bench",
    "format_bench",
    "bench_path",
    "settings_slug",
]

#: keys every row carries (read by qbench.leaderboard.load_bench)
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
FP_BITS = "W32A32"
_AMP = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
        "half": torch.float16}
_AMP_NAME = {torch.bfloat16: "bf16", torch.float16: "fp16"}


# ------------------------------------------------------------------------------------------------------- helpers
def _device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("bench device 'cuda' requested but CUDA is not available; use device=cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"bench device '{device}' is not supported; use cpu, cuda or auto")
    return device


def _amp_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    """None / False / "none" / "fp32" → no AMP; "bf16" / "fp16" (or the torch dtypes) on CUDA. Off on the CPU."""
    if amp is None or amp is False or (isinstance(amp, str) and amp.lower() in ("", "none", "false", "fp32", "float32")):
        return None
    if isinstance(amp, torch.dtype):
        dtype = amp
    else:
        key = str(amp).lower()
        if key == "true":
            key = "bf16"
        if key not in _AMP:
            raise ConfigError(f"unknown bench AMP dtype '{amp}'; use none, bf16 or fp16")
        dtype = _AMP[key]
    if dtype not in _AMP_NAME:
        raise ConfigError(f"bench AMP dtype must be bfloat16 or float16, got {dtype}")
    return dtype if device.type == "cuda" else None  # AMP is a CUDA feature here, as in the training loop


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from ..results import _cpu_name

    return _cpu_name()


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


def _synthetic_batch(input_size, num_classes: int, batch_size: int, device, seed: int, channels_last: bool):
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn((int(batch_size), *tuple(input_size)), generator=g)
    y = torch.randint(0, int(num_classes), (int(batch_size),), generator=g)
    x, y = x.to(device), y.to(device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _build_optimizer(model: nn.Module, method, optimizer: str) -> torch.optim.Optimizer:
    """The optimizer of the training loop's default recipe (SGD momentum 0.9 with weight decay; Adam/AdamW), so the
    step includes the cost of momentum and decay. The learning rate is small: the bench trains on random labels."""
    groups = method.param_groups(model) if method is not None else [
        {"params": [p for p in model.parameters() if p.requires_grad]}]
    name = str(optimizer).lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    if name == "adam":
        return torch.optim.Adam(groups, lr=1e-4, weight_decay=1e-4)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=1e-4, weight_decay=1e-4)
    raise ConfigError(f"unknown bench optimizer '{optimizer}'; choose sgd, adam or adamw")


@contextlib.contextmanager
def _num_threads(threads: int | None):
    if threads is None:
        yield torch.get_num_threads()
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield int(threads)
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------------------------- CPU peak memory
def _read_status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _malloc_trim() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


class _CpuPeakMemory:
    """Rise of the peak RSS over the RSS at start (MiB); NaN when /proc/self/clear_refs cannot reset the peak."""

    kind = "cpu_rss_hwm_delta"

    def __init__(self):
        gc.collect()
        _malloc_trim()
        self.ok = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:  # "5" resets the peak RSS (VmHWM) to the current RSS
                fh.write("5")
            self.ok = True
        except OSError:
            pass
        self.start = _read_status_kb("VmRSS")

    def peak_mb(self) -> float:
        peak = _read_status_kb("VmHWM")
        if not self.ok or peak is None or self.start is None:
            return math.nan
        return max(peak - self.start, 0.0) / 1024.0


# ------------------------------------------------------------------------------------------------------ timing
def _stats_ms(times_s: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(times_s, dtype=float) * 1e3
    if arr.size == 0:
        return math.nan, math.nan
    p25, p50, p75 = np.percentile(arr, [25, 50, 75])
    return float(p50), float(p75 - p25)


def _time_cuda(fn: Callable[[], None], device, *, warmup: int, steps: int, min_run_time: float) -> dict:
    for _ in range(max(int(warmup), 0)):
        fn()
    torch.cuda.synchronize(device)
    times: list[float] = []
    started = time.perf_counter()
    cap = max(int(steps), 1) * 50
    while len(times) < max(int(steps), 1) or (time.perf_counter() - started < min_run_time and len(times) < cap):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    median, iqr = _stats_ms(times)
    return {"median_ms": median, "iqr_ms": iqr, "samples": len(times), "times_s": times}


def _time_cpu(fn: Callable[[], None], *, threads: int, warmup: int, steps: int, min_run_time: float,
              label: str = "") -> dict:
    from torch.utils import benchmark

    with _num_threads(threads):
        for _ in range(max(int(warmup), 0)):
            fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=int(threads), label=label)
    measurements = [timer.blocked_autorange(min_run_time=float(min_run_time))]
    number = measurements[0].number_per_run
    samples = len(measurements[0].times)
    while samples < max(int(steps), 1):
        measurements.append(timer.timeit(number=number))
        samples += 1
    merged = benchmark.Measurement.merge(measurements)[0] if len(measurements) > 1 else measurements[0]
    return {"median_ms": float(merged.median) * 1e3, "iqr_ms": float(merged.iqr) * 1e3, "samples": len(merged.times),
            "times_s": list(merged.times)}


def _merge_timings(parts: list[dict]) -> dict:
    """Samples of several rounds merged; median and IQR recomputed over all samples."""
    if len(parts) == 1:
        return parts[0]
    times = [t for p in parts for t in p["times_s"]]
    median, iqr = _stats_ms(times)
    return {"median_ms": median, "iqr_ms": iqr, "samples": len(times), "times_s": times}


# --------------------------------------------------------------------------------------------------- measuring
class _NoMethod:
    """Stands in for a method when a plain model is measured: no hooks."""

    def param_groups(self, model):
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def before_step(self, model):
        pass

    def after_step(self, model):
        pass


def _prepare(model: nn.Module, device, channels_last: bool, compile: bool | nn.Module):
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if isinstance(compile, nn.Module):
        return compile
    return torch.compile(model) if compile else model


def measure_train_step(model: nn.Module, method=None, *, input_size, num_classes: int, batch_size: int,
                       device: str | torch.device = "auto", amp_dtype=None, channels_last: bool = False,
                       compile: bool | nn.Module = False, warmup: int = 5, steps: int = 20,
                       min_run_time: float = 1.0, optimizer: str = "sgd", threads: int | None = None,
                       seed: int = 0, batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Time the training step of ``model`` (quantized by ``quantize_model`` for ``method``, or plain).

    Args:
        model: the (quantized) model; moved to ``device`` and put in train mode.
        method: the Method whose hooks run around the optimizer step (None: a plain model, no hooks).
        input_size: (C, H, W) of the synthetic input; num_classes: range of the random labels.
        amp_dtype: None, "bf16"/"fp16" or a torch dtype (CUDA only; off on the CPU).
        channels_last: NHWC model and input (CUDA only, as in the training loop).
        compile: ``torch.compile`` the forward (or pass an already compiled wrapper of ``model``).
        warmup, steps: untimed steps, then at least ``steps`` timed samples; min_run_time: seconds of timing.
        optimizer: "sgd" (momentum 0.9, weight decay) | "adam" | "adamw".
        threads: CPU threads (default ``torch.get_num_threads()``).
        batch: (x, y) to use instead of a synthetic batch made from ``seed``.

    Returns: ``{"median_ms", "iqr_ms", "img_s", "samples", "peak_mem_mb", "peak_mem_kind", "times_s"}``.
    """
    device = _device(device)
    dtype = _amp_dtype(amp_dtype, device)
    channels_last = bool(channels_last) and device.type == "cuda"
    method = method if method is not None else _NoMethod()
    threads = int(threads) if threads is not None else torch.get_num_threads()
    forward_model = _prepare(model, device, channels_last, compile)
    model.train()
    if batch is None:
        batch = _synthetic_batch(input_size, num_classes, batch_size, device, seed, channels_last)
    x, y = batch
    opt = _build_optimizer(model, method, optimizer)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    criterion = nn.CrossEntropyLoss()
    opt.zero_grad(set_to_none=True)

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            loss = criterion(forward_model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        method.before_step(model)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        method.after_step(model)
        opt.zero_grad(set_to_none=True)

    return _measure(step, device, batch_size=x.shape[0], warmup=warmup, steps=steps, min_run_time=min_run_time,
                    threads=threads, label="train_step")


def measure_inference(model: nn.Module, *, input_size, batch_size: int, device: str | torch.device = "auto",
                      amp_dtype=None, channels_last: bool = False, compile: bool | nn.Module = False,
                      warmup: int = 5, steps: int = 20, min_run_time: float = 1.0, threads: int | None = None,
                      seed: int = 0, num_classes: int = 10,
                      batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Time one inference forward (eval mode, ``torch.no_grad()``, hard quantizers) of a batch; same keys as
    :func:`measure_train_step`. The model is left in train mode afterwards if it was in train mode before."""
    device = _device(device)
    dtype = _amp_dtype(amp_dtype, device)
    channels_last = bool(channels_last) and device.type == "cuda"
    threads = int(threads) if threads is not None else torch.get_num_threads()
    forward_model = _prepare(model, device, channels_last, compile)
    if batch is None:
        batch = _synthetic_batch(input_size, num_classes, batch_size, device, seed, channels_last)
    x = batch[0]
    was_training = model.training
    model.eval()

    def forward() -> None:
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            forward_model(x)

    try:
        return _measure(forward, device, batch_size=x.shape[0], warmup=warmup, steps=steps,
                        min_run_time=min_run_time, threads=threads, label="inference")
    finally:
        model.train(was_training)


def _measure(fn, device, *, batch_size: int, warmup: int, steps: int, min_run_time: float, threads: int,
             label: str) -> dict:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        with _num_threads(threads):
            out = _time_cuda(fn, device, warmup=warmup, steps=steps, min_run_time=min_run_time)
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["peak_mem_kind"] = "cuda_max_allocated"
    else:
        mem = _CpuPeakMemory()
        out = _time_cpu(fn, threads=threads, warmup=warmup, steps=steps, min_run_time=min_run_time, label=label)
        out["peak_mem_mb"] = mem.peak_mb()
        out["peak_mem_kind"] = mem.kind
    out["img_s"] = batch_size / (out["median_ms"] / 1e3) if out["median_ms"] > 0 else math.nan
    return out


# ---------------------------------------------------------------------------------------------------- the sweep
def _configs(methods: Iterable[str], bits_list: Iterable[str] | Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """(method, bits) pairs: FP first, once, at W32A32 (the reference), then every method × bits.

    ``bits_list`` is one list for every method or ``{method: [bits, ...]}`` (a suite's ``method_bits``); pairs a
    method does not support are left out, as a suite's cells are (:func:`qbench.runner.supported_bits`)."""
    from ..run.runner import supported_bits

    out = [("fp", FP_BITS)]
    for method in methods:
        method = str(method).lower()
        if method == "fp":
            continue
        for bits in supported_bits(method, bits_list.get(method, ()) if isinstance(bits_list, Mapping) else bits_list):
            if (method, bits) not in out:
                out.append((method, bits))
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


def bench_path(results_dir, suite: str, device: str, slug: str) -> Path:
    return Path(results_dir) / str(suite) / "bench" / f"{device}-{slug}.json"


def _row_key(row: dict) -> tuple:
    return (str(row.get("method")).lower(), row.get("arch"), row.get("bits"), row.get("policy"))


def _write_rows(path: Path, rows: list[dict]) -> None:
    from ..results import atomic_write_json

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
              amp_dtype=None, channels_last: bool = False, compile: bool = False, policy: str = "fp",
              threads: int | None = None, steps: int = 20, warmup: int = 5, min_run_time: float = 1.0,
              results_dir=None, suite: str | None = None, seed: int = 0, optimizer: str = "sgd",
              rounds: int = 1, method_hparams: dict[str, dict] | None = None,
              log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Measure FP (once per arch, ``W32A32``) and every method at every bit-width; one row each.

    Args:
        archs, methods, bits_list: the sweep (``fp`` among ``methods`` is measured once per arch whatever the bits;
            it is always measured, as the reference of the ratios).
        input_size: (C, H, W), (H, W) or an int with ``in_chans``; num_classes: range of the random labels.
        batch_size, device ("auto" | "cpu" | "cuda"), amp_dtype (None | "bf16" | "fp16"), channels_last, compile:
            the measurement settings, recorded in every row (AMP and channels_last are CUDA-only, as in training).
        policy: layer policy for ``quantize_model`` ("fp": first/last layers float, "quantized").
        threads: CPU threads, fixed for the whole sweep (default ``torch.get_num_threads()``).
        steps, warmup, min_run_time: timing protocol (see the module docstring).
        results_dir, suite: when both are given, write the rows to
            ``<results_dir>/<suite>/bench/<device>-<settings-slug>.json`` for ``qbench report``.
        seed: initial weights and the synthetic batch; optimizer: "sgd" | "adam" | "adamw".
        rounds: repeat the sweep and merge the samples (robust to drift on shared machines).
        method_hparams: ``{method: {hparam: value}}`` passed to ``quantize_model``.
        log: called with one line per measured row (e.g. ``print``).

    Returns: a DataFrame with the columns :data:`BENCH_KEYS` + :data:`EXTRA_KEYS`.
    """
    from .. import __version__
    from ..run.models import create_model
    from ..registry import quantize_model

    dev = _device(device)
    dtype = _amp_dtype(amp_dtype, dev)
    cl = bool(channels_last) and dev.type == "cuda"
    shape = _input_shape(input_size, in_chans)
    in_chans = shape[0]
    threads = int(threads) if threads is not None else torch.get_num_threads()
    method_hparams = {str(k).lower(): dict(v or {}) for k, v in (method_hparams or {}).items()}
    name = _device_name(dev)
    configs = _configs(methods, bits_list)
    common = {
        "device": dev.type, "device_name": name, "threads": threads, "batch_size": int(batch_size),
        "amp_dtype": _AMP_NAME.get(dtype) if dtype is not None else None, "channels_last": cl,
        "compile": bool(compile), "torch": torch.__version__, "qbench": __version__, "policy": policy,
        "input_size": list(shape), "num_classes": int(num_classes), "optimizer": optimizer, "rounds": int(rounds),
        "seed": int(seed), "cuda": torch.version.cuda if dev.type == "cuda" else None,
    }

    rows: list[dict] = []
    with _num_threads(threads):
        for arch in archs:
            batch = _synthetic_batch(shape, num_classes, batch_size, dev, seed, cl)
            train_parts: dict[tuple, list] = {c: [] for c in configs}
            infer_parts: dict[tuple, list] = {c: [] for c in configs}
            peak: dict[tuple, float] = {}
            peak_kind: dict[tuple, str] = {}
            errors: dict[tuple, str] = {}
            for _ in range(max(int(rounds), 1)):
                for cfg in configs:
                    if cfg in errors:
                        continue
                    method_name, bits = cfg
                    model = None
                    try:
                        torch.manual_seed(int(seed))
                        model = create_model(arch, num_classes=int(num_classes), in_chans=in_chans, input_size=shape)
                        model = quantize_model(model, method_name, bits, policy, input_size=shape,
                                               **method_hparams.get(method_name, {}))
                        method = model.qbench_info.method
                        model.to(dev)
                        if cl:
                            model.to(memory_format=torch.channels_last)
                        forward_model = torch.compile(model) if compile else model
                        kw = dict(input_size=shape, batch_size=batch_size, device=dev, amp_dtype=dtype,
                                  channels_last=cl, compile=forward_model, warmup=warmup, steps=steps,
                                  min_run_time=min_run_time, threads=threads, batch=batch)
                        train = measure_train_step(model, method, num_classes=num_classes, optimizer=optimizer, **kw)
                        infer = measure_inference(model, num_classes=num_classes, **kw)
                    except Exception as exc:  # a failing row (compile, unsupported bits) must not stop the sweep
                        errors[cfg] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                        if log:
                            log(f"{arch} {method_name} {bits}: FAILED {errors[cfg]}")
                        continue
                    finally:
                        del model
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
                    train_parts[cfg].append(train)
                    infer_parts[cfg].append(infer)
                    peak[cfg] = float(np.nanmax([peak.get(cfg, math.nan), train["peak_mem_mb"]])) \
                        if not (math.isnan(peak.get(cfg, math.nan)) and math.isnan(train["peak_mem_mb"])) else math.nan
                    peak_kind[cfg] = train["peak_mem_kind"]
                    if log:
                        log(f"{arch} {method_name} {bits}: train {train['median_ms']:.2f} ms "
                            f"(IQR {train['iqr_ms']:.2f}), infer {infer['median_ms']:.2f} ms")
            arch_rows = []
            for cfg in configs:
                method_name, bits = cfg
                row = {"method": method_name, "arch": arch, "bits": bits, **common}
                if cfg in errors or not train_parts[cfg]:
                    row.update(train_step_ms_median=math.nan, train_step_ms_iqr=math.nan, train_img_s=math.nan,
                               infer_img_s=math.nan, infer_ms_median=math.nan, infer_ms_iqr=math.nan,
                               train_samples=0, infer_samples=0, peak_mem_mb=math.nan, peak_mem_kind=None,
                               error=errors.get(cfg, "not measured"))
                else:
                    tr, inf = _merge_timings(train_parts[cfg]), _merge_timings(infer_parts[cfg])
                    row.update(train_step_ms_median=tr["median_ms"], train_step_ms_iqr=tr["iqr_ms"],
                               train_img_s=batch_size / (tr["median_ms"] / 1e3),
                               infer_img_s=batch_size / (inf["median_ms"] / 1e3),
                               infer_ms_median=inf["median_ms"], infer_ms_iqr=inf["iqr_ms"],
                               train_samples=tr["samples"], infer_samples=inf["samples"],
                               peak_mem_mb=peak.get(cfg, math.nan), peak_mem_kind=peak_kind.get(cfg), error=None)
                arch_rows.append(row)
            fp = arch_rows[0]  # ("fp", W32A32) is always first
            for row in arch_rows:
                row["ratio_train_to_fp"] = _ratio(row["train_step_ms_median"], fp["train_step_ms_median"])
                row["ratio_infer_to_fp"] = _ratio(row["infer_ms_median"], fp["infer_ms_median"])
            rows.extend(arch_rows)

    columns = list(BENCH_KEYS) + list(EXTRA_KEYS)
    df = pd.DataFrame.from_records([{k: r.get(k) for k in columns} for r in rows], columns=columns)
    if results_dir is not None and suite:
        slug = settings_slug(device=dev.type, device_name=name, threads=threads, batch_size=int(batch_size),
                             amp_dtype=common["amp_dtype"], channels_last=cl, compile=bool(compile), policy=policy)
        _write_rows(bench_path(results_dir, suite, dev.type, slug), [{k: r.get(k) for k in columns} for r in rows])
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
