"""``qbench bench``: train-step and inference throughput of FP and every method, in one process."""

from .suite import bench_suite

__all__ = ["bench_suite"]
