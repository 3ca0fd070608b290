
import os

import pytest
import torch

# One intra-op thread in the tests and in the processes they start: the tests train tiny models, where a second
# thread gains nothing, and on a 2-core machine that also runs something else (pytest -n 2, a torchrun test's two
# ranks, another job) OpenMP's spinning threads make a tiny model's step 20-150x slower (measured: MobileNetV2
# forward+backward on 2×3×64×64, 0.045 s with one thread, 6.8 s with two while the other core was busy).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
torch.manual_seed(0)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """One intra-op thread for tests that train tiny models: on a shared 2-core machine OpenMP's spinning threads
    make a tiny CPU run ~20× slower when the cores are oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
