"""qbench.run.data: every reader on tiny files written in the real on-disk formats, the splits, and the loaders."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from qbench.config import DATASETS, DataConfig, SuiteConfig, validate
from qbench.run.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    MNIST_MEAN,
    MNIST_STD,
    DatasetSplits,
    EpochLoader,
    FileBatches,
    RandomCropFlip,
    TensorBatches,
    read_cifar,
    read_idx,
    stratified_split,
)
from qbench.errors import ConfigError, DataError, QbenchError
from qbench.run.data import build_datasets as _build_datasets
from qbench.run.data import build_loaders as _build_loaders

from _formats import cifar_pickle, make_cifar10, make_cifar100, make_image_folder, make_mnist, write_idx


def build_datasets(name, root=None, **options):
    """The splits of a dataset from the DataConfig the runner would pass."""
    return _build_datasets(DataConfig(name=name, root=None if root is None else str(root), **options))


def build_loaders(splits, *, seed=0, rank=0, world_size=1, **options):
    return _build_loaders(splits, DataConfig(name=splits.name, **options), seed=seed, rank=rank,
                          world_size=world_size)

# ---------------------------------------------------------------------------------------------------------------------
# Reading back (the writers of the real formats are in tests/_formats.py)
# ---------------------------------------------------------------------------------------------------------------------


def unnormalize(images: torch.Tensor, mean, std, scale=255.0) -> np.ndarray:
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    return ((images * std + mean) * scale).round().numpy().astype(np.int64)


def all_of(dataset):
    return dataset.batch(range(len(dataset)))


# ---------------------------------------------------------------------------------------------------------------------
# MNIST (IDX)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_idx_round_trip(tmp_path, gz, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    data = make_mnist(folder, gz=gz)
    splits = build_datasets("mnist", str(tmp_path), val_fraction=0.2, split_seed=3)
    assert isinstance(splits, DatasetSplits)
    assert (splits.name, splits.num_classes, splits.input_size) == ("mnist", 10, (1, 28, 28))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 20)

    images, labels = all_of(splits.test)
    assert images.dtype == torch.float32 and images.shape == (20, 1, 28, 28)
    assert labels.dtype == torch.int64
    np.testing.assert_array_equal(labels.numpy(), data["t10k-labels-idx1-ubyte"])
    np.testing.assert_array_equal(unnormalize(images, MNIST_MEAN, MNIST_STD)[:, 0], data["t10k-images-idx3-ubyte"])

    # train + val partition the official training split, pixels and labels exact.
    train_pos, val_pos = splits.train.indices.numpy(), splits.val.indices.numpy()
    assert not set(train_pos) & set(val_pos)
    assert sorted({*train_pos, *val_pos}) == list(range(50))
    for split, pos in ((splits.train, train_pos), (splits.val, val_pos)):
        images, labels = all_of(split)
        np.testing.assert_array_equal(labels.numpy(), data["train-labels-idx1-ubyte"][pos])
        np.testing.assert_array_equal(unnormalize(images, MNIST_MEAN, MNIST_STD)[:, 0],
                                      data["train-images-idx3-ubyte"][pos])
    # stratified: 10 classes × 5 images, 20 % held out -> one image of each class in val
    assert sorted(splits.val.targets.tolist()) == list(range(10))


def test_mnist_single_sample_and_no_augmentation(tmp_path):
    data = make_mnist(tmp_path)
    splits = build_datasets("mnist", tmp_path)  # augment=True by default: the MNIST family has none
    image, label = splits.train[0]
    assert image.shape == (1, 28, 28) and isinstance(label, int)
    index = int(splits.train.indices[0])
    assert label == data["train-labels-idx1-ubyte"][index]
    np.testing.assert_array_equal(unnormalize(image[None], MNIST_MEAN, MNIST_STD)[0, 0],
                                  data["train-images-idx3-ubyte"][index])
    assert splits.train.augment is None


def test_mnist_splits_deterministic_and_test_fixed(tmp_path):
    make_mnist(tmp_path, n_train=200)
    a = build_datasets("mnist", tmp_path, split_seed=0)
    b = build_datasets("mnist", tmp_path, split_seed=0)
    c = build_datasets("mnist", tmp_path, split_seed=1)
    assert torch.equal(a.val.indices, b.val.indices) and torch.equal(a.train.indices, b.train.indices)
    assert not torch.equal(a.val.indices, c.val.indices)
    assert torch.equal(a.test.indices, c.test.indices)
    assert len(a.val) == 20


def test_mnist_missing_root_names_expected_files():
    with pytest.raises(DataError) as info:
        build_datasets("mnist", None)
    message = str(info.value)
    assert "\n" not in message
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "data.root", "MNIST/raw"):
        assert name in message


def test_mnist_missing_file(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte not found.*train-labels-idx1-ubyte"):
        build_datasets("mnist", tmp_path)


def test_idx_malformed(tmp_path):
    make_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + bad.read_bytes()[4:])
    with pytest.raises(DataError, match="not an IDX file"):
        build_datasets("mnist", tmp_path)
    truncated = tmp_path / "labels-idx1-ubyte"
    write_idx(truncated, np.arange(10, dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(truncated)
    assert issubclass(DataError, QbenchError)


def test_read_idx_gz(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-idx3-ubyte", array, gz=True)
    out = read_idx(tmp_path / "x-idx3-ubyte.gz")
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR (python pickles)
# ---------------------------------------------------------------------------------------------------------------------


def test_cifar10_round_trip(tmp_path):
    train_x, train_y, test_x, test_y = make_cifar10(tmp_path)
    splits = build_datasets("cifar10", str(tmp_path), val_fraction=0.25, augment=False)
    assert (splits.num_classes, splits.input_size) == (10, (3, 32, 32))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 6)
    images, labels = all_of(splits.test)
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    np.testing.assert_array_equal(labels.numpy(), test_y)
    np.testing.assert_array_equal(unnormalize(images, CIFAR10_MEAN, CIFAR10_STD), test_x)
    pos = splits.train.indices.numpy()
    images, labels = all_of(splits.train)
    np.testing.assert_array_equal(labels.numpy(), train_y[pos])
    np.testing.assert_array_equal(unnormalize(images, CIFAR10_MEAN, CIFAR10_STD), train_x[pos])
    assert not set(pos) & set(splits.val.indices.numpy())


def test_cifar10_root_may_be_the_batches_folder(tmp_path):
    make_cifar10(tmp_path)
    splits = build_datasets("cifar10", tmp_path / "cifar-10-batches-py")
    assert len(splits.test) == 6


def test_cifar10_train_augmentation_is_crop_and_flip(tmp_path):
    train_x, *_ = make_cifar10(tmp_path)
    splits = build_datasets("cifar10", tmp_path, val_fraction=0.0)
    assert splits.val.augment is None and splits.test.augment is None and splits.train.augment is not None
    splits.train.reseed(0)
    images, _ = all_of(splits.train)
    augmented = unnormalize(images, CIFAR10_MEAN, CIFAR10_STD)
    assert not np.array_equal(augmented, train_x)
    padded = np.pad(train_x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    for i in range(len(train_x)):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(np.array_equal(augmented[i], w) or np.array_equal(augmented[i], w[..., ::-1]) for w in windows)


def test_random_crop_flip_without_padding_is_flip_or_identity():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = RandomCropFlip(padding=0)(images, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, images))
    assert 0 < sum(flipped) < 16


def test_cifar100_fine_labels(tmp_path):
    make_cifar100(tmp_path)
    splits = build_datasets("cifar100", tmp_path, val_fraction=0.0)
    assert splits.num_classes == 100
    assert splits.test.targets.tolist() == [99, 1, 2, 3]
    assert sorted(splits.train.targets.tolist()) == list(range(0, 100, 5))


def test_cifar_missing_root_message():
    with pytest.raises(DataError) as info:
        build_datasets("cifar10", None)
    message = str(info.value)
    for part in ("data_batch_1..5", "test_batch", "cifar-10-batches-py", "data.root", "data.download=true"):
        assert part in message
    with pytest.raises(DataError, match=r"train and test under .*cifar-100-python"):
        build_datasets("cifar100", None)


def test_cifar_missing_file_and_malformed(tmp_path):
    make_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        build_datasets("cifar10", tmp_path)
    cifar_pickle(folder / "data_batch_3", np.zeros((2, 3, 32, 32), np.uint8), [0, 1], b"fine_labels")
    with pytest.raises(DataError, match=r"lacks the keys b'data' and b'labels'"):
        build_datasets("cifar10", tmp_path)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="expected uint8 N×3072"):
        build_datasets("cifar10", tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot unpickle"):
        build_datasets("cifar10", tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# ImageFolder
# ---------------------------------------------------------------------------------------------------------------------


def test_imagenet_image_folder(tmp_path):
    make_image_folder(tmp_path)
    splits = build_datasets("imagenet", str(tmp_path), input_size=16, val_fraction=0.2, split_seed=5)
    assert (splits.num_classes, splits.input_size) == (3, (3, 16, 16))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 6)
    image, label = splits.train[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label in (0, 1, 2)
    assert splits.test[0][0].shape == (3, 16, 16)
    assert sorted(splits.test[i][1] for i in range(6)) == [0, 0, 1, 1, 2, 2]
    # val: one image per class, disjoint from train, eval transform (deterministic)
    assert not set(splits.train.indices) & set(splits.val.indices)
    assert sorted(splits.val[i][1] for i in range(3)) == [0, 1, 2]
    assert torch.equal(splits.val[0][0], splits.val[0][0])
    again = build_datasets("imagenet", str(tmp_path), input_size=16, val_fraction=0.2, split_seed=5)
    assert again.val.indices == splits.val.indices
    loaders = build_loaders(splits, batch_size=4)  # on the CPU: the PIL path
    assert all(isinstance(loader, FileBatches) and isinstance(loader, EpochLoader) for loader in loaders)
    images, labels = next(iter(loaders[2]))
    assert images.shape == (4, 3, 16, 16) and labels.dtype == torch.int64


def test_imagenet_missing_folders(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        build_datasets("imagenet", tmp_path)
    assert f"expected ImageFolder class folders under {tmp_path}/train and {tmp_path}/val" in str(info.value)
    with pytest.raises(DataError, match="data.root"):
        build_datasets("imagenet", None)


# ---------------------------------------------------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------------------------------------------------


def test_mnist5k_real_digits():
    splits = build_datasets("mnist5k")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3600, 400, 1000)
    assert splits.input_size == (1, 28, 28) and splits.mean == MNIST_MEAN
    assert np.bincount(splits.test.targets).tolist() == [100] * 10  # stratified, fixed
    image, label = splits.test[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    other = build_datasets("mnist5k", split_seed=7)
    assert torch.equal(other.test.indices, splits.test.indices)
    assert not torch.equal(other.val.indices, splits.val.indices)
    assert set(other.val.indices.tolist()) | set(other.train.indices.tolist()) == \
        set(splits.val.indices.tolist()) | set(splits.train.indices.tolist())
    assert not set(splits.test.indices.tolist()) & set(splits.train.indices.tolist())


def test_digits_native_and_resized():
    splits = build_datasets("digits")
    assert (len(splits.train) + len(splits.val), len(splits.test)) == (1437, 360)
    assert splits.input_size == (1, 8, 8)
    images, _ = all_of(splits.test)
    raw = images * splits.std[0] + splits.mean[0]
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6  # values 0..16 scaled to [0, 1]
    bigger = build_datasets("digits", input_size=16)
    assert bigger.input_size == (1, 16, 16) and bigger.train[0][0].shape == (1, 16, 16)


def test_fake_is_deterministic():
    a, b = build_datasets("fake", input_size=12), build_datasets("fake", input_size=12)
    assert a.input_size == (3, 12, 12) and a.num_classes == 10
    assert torch.equal(a.train[3][0], b.train[3][0]) and a.train[3][1] == b.train[3][1]
    assert torch.equal(all_of(a.test)[0], all_of(b.test)[0])


def test_unknown_dataset_and_bad_options():
    with pytest.raises(ConfigError, match="unknown data.name 'svhn'.*mnist5k"):
        validate(SuiteConfig(name="t", data=DataConfig(name="svhn")))
    with pytest.raises(ConfigError, match="val_fraction"):
        validate(SuiteConfig(name="t", data=DataConfig(name="digits", val_fraction=1.0)))
    assert DATASETS == ("mnist5k", "digits", "mnist", "cifar10", "cifar100", "imagenet", "fake")


def test_train_subset_caps_training_set():
    splits = build_datasets("digits", train_subset=100)
    assert len(splits.train) == 100
    assert len(splits.val) == round(0.1 * 1437)
    assert not set(splits.train.indices.tolist()) & set(splits.val.indices.tolist())


def test_stratified_split_counts():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    keep, held = stratified_split(labels, 12, seed=0)
    assert len(held) == 12 and len(keep) == 48
    assert np.bincount(labels[held]).tolist() == [2, 4, 6]
    assert np.array_equal(held, stratified_split(labels, 12, seed=0)[1])
    _, odd = stratified_split(labels, 7, seed=0)  # largest remainder keeps the total exact
    assert len(odd) == 7


# ---------------------------------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------------------------------


def test_loader_determinism_same_seed_same_first_batch(tmp_path):
    make_cifar10(tmp_path, per_batch=8)
    first = []
    for seed in (0, 0, 1):
        splits = build_datasets("cifar10", tmp_path)  # with augmentation
        train, _, _ = build_loaders(splits, batch_size=8, seed=seed)
        first.append(next(iter(train)))
    assert torch.equal(first[0][0], first[1][0]) and torch.equal(first[0][1], first[1][1])
    assert not torch.equal(first[0][0], first[2][0])


def test_loader_shapes_and_eval_order():
    splits = build_datasets("mnist5k")
    train, val, test = build_loaders(splits, batch_size=128, eval_batch_size=500)
    images, labels = next(iter(train))
    assert images.shape == (128, 1, 28, 28) and labels.shape == (128,)
    batches = list(test)
    assert [len(b[1]) for b in batches] == [500, 500]
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.from_numpy(splits.test.targets))
    assert len(list(val)) == 1


def test_loaders_are_resident_and_touch_no_device_until_used(tmp_path):
    make_cifar10(tmp_path, per_batch=8)
    splits = build_datasets("cifar10", tmp_path)
    loaders = build_loaders(splits, batch_size=10, seed=3, num_workers=2)  # workers are moot for in-memory data
    assert all(isinstance(loader, TensorBatches) and isinstance(loader, EpochLoader) for loader in loaders)
    assert all(loader._stored is None for loader in loaders)
    runs = []
    for _ in range(2):
        train, _, _ = build_loaders(splits, batch_size=10, seed=3)
        runs.append([x for x, _ in train])
    assert len(runs[0]) == 4
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_mnist5k_epoch_covers_every_training_sample_once():
    # Speed is measured by benchmarks, not asserted here; this checks the batched in-memory path is complete.
    splits = build_datasets("mnist5k")
    train, _, _ = build_loaders(splits, batch_size=128)
    labels = torch.cat([y for _, y in train])
    assert labels.numel() == 3600
    assert torch.equal(torch.bincount(labels, minlength=10), torch.bincount(
        torch.as_tensor([splits.train[i][1] for i in range(len(splits.train))]), minlength=10))


def test_train_loader_shards_like_distributed_sampler():
    from torch.utils.data import DistributedSampler

    splits = build_datasets("digits")
    shards = [build_loaders(splits, batch_size=64, seed=2, rank=r, world_size=2) for r in (0, 1)]
    for train, val, _ in shards:
        assert train.batch_size == 32  # data.batch_size is the global batch
        assert val.sampler is None and len(list(val)) == len(val)  # eval: whole split on every rank
    epochs = []
    for epoch in (0, 1):
        halves = []
        for rank, (train, _, _) in enumerate(shards):
            train.set_epoch(epoch)
            halves.append(torch.cat([y for _, y in train]))
            reference = DistributedSampler(splits.train, num_replicas=2, rank=rank, shuffle=True, seed=2 * 100_003)
            reference.set_epoch(epoch)
            assert halves[-1].tolist() == splits.train.targets[list(reference)].tolist()
        assert len(halves[0]) == len(halves[1]) == (len(splits.train) + 1) // 2
        epochs.append(torch.cat(halves))
    assert not torch.equal(epochs[0], epochs[1])
    # the two ranks together see every training sample once per epoch (one duplicate pads an odd count)
    labels = torch.as_tensor([splits.train[i][1] for i in range(len(splits.train))])
    counts = torch.bincount(epochs[0], minlength=10) - torch.bincount(labels, minlength=10)
    assert counts.sum() == len(splits.train) % 2 and (counts >= 0).all()


class _Planted:
    """Pickles to a call that writes a marker file: what a planted data file would run on a plain pickle.load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_planted_cifar_pickle_is_refused_without_running_it(tmp_path, protocol):
    """Issue #14: the CIFAR reader admits only the globals of the format (numpy arrays, bytes); a payload is one
    DataError line naming the global, and nothing runs. Real-format files written with either protocol still load."""
    make_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    images = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3, 32, 32)
    with open(folder / "data_batch_2", "wb") as f:  # the genuine format, pickled with this protocol
        pickle.dump({b"data": images.reshape(2, 3072), b"labels": [3, 4], b"batch_label": b"x"}, f, protocol=protocol)
    x, y = read_cifar(folder / "data_batch_2")
    assert np.array_equal(x, images) and y.tolist() == [3, 4]
    marker = tmp_path / "marker"
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _Planted(marker), b"labels": [0]}, f, protocol=protocol)
    with pytest.raises(DataError) as exc:
        build_datasets("cifar10", tmp_path)
    assert "global" in str(exc.value) and "not part of the CIFAR format" in str(exc.value)
    assert "\n" not in str(exc.value) and not marker.exists()
