import os

import pytest
import torch

# Deterministic, modest thread use: CI has 2 cores and several helpers may share them.
torch.manual_seed(0)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
