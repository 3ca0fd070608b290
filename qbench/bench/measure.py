"""Throughput of the training step and of inference: the FP model against every method, in one process.

What is measured (design.md, "Throughput"; the protocol of timm's ``benchmark.py``):

* **Training step** — the training loop's own :func:`qbench.run.train.train_step` (spec §0): forward at Q(w) (the
  parametrizations), cross-entropy on random labels, backward with the method's estimators,
  ``method.before_step(model)``, ``optimizer.step()``, ``method.after_step(model)``, with the optimizer the loop
  builds for the suite's ``train`` recipe (:func:`qbench.run.train.build_optimizer`). The model is in train mode.
  The loop's periodic divergence check is not part of the step.
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
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from ..method import Method
from ..registry import create_method
from ..run.device import TrainSetup, amp_dtype, resolve_device
from ..run.train import build_optimizer, train_step

__all__ = ["bench_setup", "synthetic_batch", "num_threads", "merge_timings", "measure_train_step", "measure_inference"]


def bench_setup(device: str | torch.device = "auto", amp: str | None = None, channels_last: bool = False,
                compile: bool = False) -> TrainSetup:
    """The execution settings of a measurement (``bench.amp_dtype``, ``bench.channels_last``, ``bench.compile`` on
    ``train.device``), resolved as the training loop resolves its own: AMP and channels_last are CUDA features."""
    dev = resolve_device(str(device))
    mode = "false" if amp in (None, False, "", "none", "false", "fp32") else str(amp)
    if mode not in ("false", "bf16", "fp16"):
        raise ConfigError(f"unknown bench AMP dtype '{amp}'; use none, bf16 or fp16")
    return TrainSetup(device=dev, amp_dtype=amp_dtype(mode, dev), channels_last=bool(channels_last) and dev.type == "cuda",
                      compile=bool(compile))


def synthetic_batch(input_size, num_classes: int, batch_size: int, setup: TrainSetup, seed: int):
    """A seeded random batch (x ~ N(0, 1), uniform labels) on the setup's device and memory format."""
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn((int(batch_size), *tuple(input_size)), generator=g)
    y = torch.randint(0, int(num_classes), (int(batch_size),), generator=g)
    x, y = x.to(setup.device), y.to(setup.device)
    if setup.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


@contextlib.contextmanager
def num_threads(threads: int | None):
    """Run the block at ``threads`` intra-op CPU threads (restored afterwards); None keeps torch's setting."""
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

    with num_threads(threads):
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


def merge_timings(parts: list[dict]) -> dict:
    """Samples of several rounds merged; median and IQR recomputed over all samples."""
    if len(parts) == 1:
        return parts[0]
    times = [t for p in parts for t in p["times_s"]]
    median, iqr = _stats_ms(times)
    return {"median_ms": median, "iqr_ms": iqr, "samples": len(times), "times_s": times}


# --------------------------------------------------------------------------------------------------- measuring
def _prepare(model: nn.Module, setup: TrainSetup, forward_model: nn.Module | None) -> nn.Module:
    model.to(setup.device)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    if forward_model is not None:
        return forward_model
    return torch.compile(model) if setup.compile else model


def measure_train_step(model: nn.Module, method: Method | None, setup: TrainSetup, batch: tuple, *,
                       recipe: TrainConfig | None = None, forward_model: nn.Module | None = None, warmup: int = 5,
                       steps: int = 20, min_run_time: float = 1.0, threads: int | None = None) -> dict:
    """Time :func:`qbench.run.train.train_step` of ``model`` (quantized for ``method``; None: a plain model, measured
    as method ``fp``) on ``batch`` = (x, y).

    Args:
        setup: device, AMP, channels_last and compile (:func:`bench_setup`).
        recipe: the ``train`` block whose optimizer (type, momentum, weight decay, lr) the step uses; default the
            schema's recipe.
        forward_model: an already compiled wrapper of ``model`` (default: compile here when ``setup.compile``).
        warmup, steps: untimed steps, then at least ``steps`` timed samples; min_run_time: seconds of timing.
        threads: CPU threads (default ``torch.get_num_threads()``).

    Returns: ``{"median_ms", "iqr_ms", "img_s", "samples", "peak_mem_mb", "peak_mem_kind", "times_s"}``.
    """
    method = method if method is not None else create_method("fp")
    recipe = recipe or TrainConfig()
    forward = _prepare(model, setup, forward_model)
    model.train()
    x, y = batch
    optimizer = build_optimizer(method.param_groups(model), recipe)
    scaler = torch.amp.GradScaler("cuda") if setup.grad_scaler else None
    criterion = nn.CrossEntropyLoss(label_smoothing=float(recipe.label_smoothing))

    def step() -> None:
        train_step(forward, method, optimizer, x, y, criterion=criterion, scaler=scaler, amp_dtype=setup.amp_dtype,
                   grad_clip=recipe.grad_clip)

    return _measure(step, setup.device, batch_size=x.shape[0], warmup=warmup, steps=steps,
                    min_run_time=min_run_time, threads=threads, label="train_step")


def measure_inference(model: nn.Module, setup: TrainSetup, batch: tuple, *, forward_model: nn.Module | None = None,
                      warmup: int = 5, steps: int = 20, min_run_time: float = 1.0,
                      threads: int | None = None) -> dict:
    """Time one inference forward (eval mode, ``torch.no_grad()``, hard quantizers) of ``batch``; same keys as
    :func:`measure_train_step`. The model is left in train mode afterwards if it was in train mode before."""
    forward_model = _prepare(model, setup, forward_model)
    x = batch[0]
    was_training = model.training
    model.eval()

    def forward() -> None:
        with torch.no_grad(), torch.autocast(device_type=setup.device.type, dtype=setup.amp_dtype,
                                             enabled=setup.amp_dtype is not None):
            forward_model(x)

    try:
        return _measure(forward, setup.device, batch_size=x.shape[0], warmup=warmup, steps=steps,
                        min_run_time=min_run_time, threads=threads, label="inference")
    finally:
        model.train(was_training)


def _measure(fn, device, *, batch_size: int, warmup: int, steps: int, min_run_time: float, threads: int | None,
             label: str) -> dict:
    threads = int(threads) if threads is not None else torch.get_num_threads()
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        with num_threads(threads):
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
