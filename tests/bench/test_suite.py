"""`qbench bench suite=…` maps a suite onto the throughput measurement and records rows for the report."""

import math

from qbench.bench.suite import bench_suite
from qbench.config import load_config
from qbench.report import load_bench


def test_bench_suite_records_fp_and_every_method(tmp_path):
    cfg = load_config("quickstart", ["data.name=digits", "methods=[ste,lbw]", "bits=[W2A4]", "bench.batch_size=8",
                                     "bench.steps=2", "bench.warmup=1", "bench.min_run_time=0.01", "bench.threads=1",
                                     f"results_dir={tmp_path}"])
    df = bench_suite(cfg, log=lambda *_: None)
    assert set(df["method"]) == {"fp", "ste", "lbw"}
    fp = df[df["method"] == "fp"].iloc[0]
    assert fp["bits"] == "W32A32" and fp["ratio_train_to_fp"] == 1.0 and fp["threads"] == 1
    assert all(math.isfinite(r) and r > 0 for r in df["ratio_train_to_fp"])
    loaded = load_bench(tmp_path, "quickstart")
    assert set(loaded["method"]) == {"fp", "ste", "lbw"}
