"""``qbench bench``: train-step and inference throughput of FP and every method, in one process.

:mod:`.measure` times one model (the training loop's own step); :mod:`.sweep` runs FP and every method × bits × arch
and records rows; :mod:`.suite` maps a suite config onto the sweep.
"""

from .measure import bench_setup, measure_inference, measure_train_step
from .suite import DATASET_SHAPES, bench_suite
from .sweep import BENCH_KEYS, EXTRA_KEYS, bench_pairs, format_bench, run_bench, settings_slug

__all__ = ["bench_suite", "run_bench", "format_bench", "bench_pairs", "settings_slug", "bench_setup",
           "measure_train_step", "measure_inference", "BENCH_KEYS", "EXTRA_KEYS", "DATASET_SHAPES"]
