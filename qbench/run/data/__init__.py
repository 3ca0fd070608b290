"""Datasets in their real on-disk formats, their train / val / test splits, and the loaders (see :mod:`.build`)."""

from .build import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, IMAGENET_MEAN, IMAGENET_STD, MNIST_MEAN,
                    MNIST_STD, DatasetSplits, build_datasets, build_loaders)
from .memory import (BatchedSamples, FakeImageDataset, InMemoryImageDataset, TensorImageDataset, collate_batched,
                     random_crop_flip)
from .readers import read_cifar, read_idx
from .splits import stratified_split

__all__ = [
    "DatasetSplits",
    "build_datasets",
    "build_loaders",
    "InMemoryImageDataset",
    "TensorImageDataset",
    "FakeImageDataset",
    "BatchedSamples",
    "collate_batched",
    "random_crop_flip",
    "stratified_split",
    "read_idx",
    "read_cifar",
    "MNIST_MEAN",
    "MNIST_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
