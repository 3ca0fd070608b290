"""Fixtures of the micro-benchmarks: a fixed thread count per module (``QBENCH_BENCH_THREADS``, default: torch's),
stored with each result."""

import os

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def fixed_threads():
    old = torch.get_num_threads()
    threads = int(os.environ.get("QBENCH_BENCH_THREADS", old))
    torch.set_num_threads(threads)
    yield threads
    torch.set_num_threads(old)


@pytest.fixture
def info(benchmark, fixed_threads):
    benchmark.extra_info.update(threads=fixed_threads, torch=torch.__version__)
    return benchmark
