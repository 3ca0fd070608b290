
import pytest
import torch

# Deterministic, modest thread use: CI has 2 cores and several helpers may share them.
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
