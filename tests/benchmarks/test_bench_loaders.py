"""Micro-benchmarks (pytest-benchmark) of the loaders on the CPU device: one training epoch of the device-resident
loaders (mnist5k; a CIFAR-shaped split with crop + flip) and one batch of the two ImageFolder paths (PIL in the
process vs the device path's decode + crop on CPU tensors) on generated ~400×450 JPEGs.

Each benchmark checks its result (shapes, dtype, finite values), so CI runs this file with ``--benchmark-disable``
(pyproject's default) as correctness tests. Timing:

    pytest tests/benchmarks/test_bench_loaders.py --benchmark-enable

``QBENCH_BENCH_THREADS`` (default: torch's) fixes the threads; compare runs taken with the same count on the same
machine. For img/s of every path on a GPU, run ``python tests/benchmarks/data_paths.py --device cuda``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qbench.config import DataConfig
from qbench.run.data import (CIFAR10_MEAN, CIFAR10_STD, RandomCropFlip, TensorBatches, TensorImageDataset,
                             build_datasets, build_loaders)

from .data_paths import make_image_folder

CPU = torch.device("cpu")


def one_epoch(loader) -> int:
    n = 0
    for x, y in loader:
        n += y.numel()
    return n


@pytest.mark.benchmark(group="resident loader epoch")
def test_resident_mnist5k_epoch(info):
    data = DataConfig(name="mnist5k", batch_size=64)
    train, _, _ = build_loaders(build_datasets(data), data, device=CPU)
    assert isinstance(train, TensorBatches)
    assert info(one_epoch, train) == 3600
    x, _ = next(iter(train))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and torch.isfinite(x).all()


@pytest.mark.benchmark(group="resident loader epoch")
def test_resident_cifar_shaped_epoch(info):
    images = torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    split = TensorImageDataset(images, np.arange(10_000) % 10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                               augment=RandomCropFlip(padding=4))
    train = TensorBatches(split, batch_size=512, device=CPU, shuffle=True, augment=True)
    assert info(one_epoch, train) == 10_000
    x, _ = next(iter(train))
    assert x.shape == (512, 3, 32, 32) and torch.isfinite(x).all()


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("jpegs"), 64)


@pytest.mark.benchmark(group="imagefolder batch of 32, 224 px, in this process")
@pytest.mark.parametrize("decode", ["cpu", "gpu"])
@pytest.mark.parametrize("split", ["train", "eval"])
def test_imagefolder_batch(info, jpeg_folder, decode, split):
    data = DataConfig(name="imagenet", root=str(jpeg_folder), decode=decode, batch_size=32, val_fraction=0.01)
    train, _, _ = build_loaders(build_datasets(data), data, device=CPU)
    loader = train if split == "train" else train.sequential()  # the eval transform on the same images
    x, y = info(lambda: next(iter(loader)))
    assert x.shape == (32, 3, 224, 224) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert y.shape == (32,)
