"""Datasets in their real on-disk formats, their train / val / test splits, and the loaders that feed the training
device (see :mod:`.build`)."""

from .build import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, DATA_PATHS, IMAGENET_MEAN, IMAGENET_STD,
                    MNIST_MEAN, MNIST_STD, DatasetSplits, build_datasets, build_loaders, data_path)
from .decode import DeviceImageTransform, random_resized_crop_params
from .loaders import EpochLoader, FileBatches, TensorBatches
from .memory import FakeImageDataset, InMemoryImageDataset, RandomCropFlip, TensorImageDataset
from .readers import read_cifar, read_idx
from .splits import stratified_split

__all__ = [
    "DatasetSplits",
    "DATA_PATHS",
    "build_datasets",
    "build_loaders",
    "data_path",
    "EpochLoader",
    "TensorBatches",
    "FileBatches",
    "DeviceImageTransform",
    "random_resized_crop_params",
    "InMemoryImageDataset",
    "TensorImageDataset",
    "FakeImageDataset",
    "RandomCropFlip",
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
