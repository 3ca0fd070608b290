"""qbench.bench.measure: one model's training step and inference, timed with the training loop's own step."""

import math

import torch

from qbench.bench import measure
from qbench.bench.measure import bench_setup, measure_inference, measure_train_step, synthetic_batch
from qbench.quant.apply import quantize_model
from qbench.registry import create_method

TINY = dict(steps=2, warmup=1, min_run_time=0.01, threads=1)


def test_measure_functions_on_a_plain_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    setup = bench_setup("cpu")
    batch = synthetic_batch((1, 3, 4), 3, 5, setup, seed=0)
    train = measure_train_step(model, None, setup, batch, **TINY)
    infer = measure_inference(model, setup, batch, **TINY)
    for out in (train, infer):
        assert out["median_ms"] > 0 and out["img_s"] > 0 and out["samples"] >= TINY["steps"]
        assert out["peak_mem_kind"] == "cpu_rss_hwm_delta"
        assert math.isnan(out["peak_mem_mb"]) or out["peak_mem_mb"] >= 0
    assert model.training  # inference leaves the mode as it found it


def test_the_bench_times_the_training_loops_own_step(monkeypatch):
    """Every timed call is qbench.run.train.train_step with the method's hooks: what the bench measures is the step
    the loop runs, not a copy of it."""
    calls = []
    real = measure.train_step

    def counting(model, method, optimizer, x, y, **kw):
        calls.append(method.name)
        return real(model, method, optimizer, x, y, **kw)

    monkeypatch.setattr(measure, "train_step", counting)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    method = create_method("bcgd")
    quantize_model(model, method, "W1A4", "quantized", input_size=(1, 4, 4))
    setup = bench_setup("cpu")
    out = measure_train_step(model, method, setup, synthetic_batch((1, 4, 4), 3, 5, setup, seed=0), **TINY)
    assert calls and set(calls) == {"bcgd"} and len(calls) >= TINY["warmup"] + out["samples"]


def test_bench_setup_resolves_like_the_training_loop():
    setup = bench_setup("cpu", amp="bf16", channels_last=True)
    assert setup.device.type == "cpu" and setup.amp_dtype is None and not setup.channels_last  # CUDA features
