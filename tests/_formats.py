"""Writers of the datasets' real on-disk formats, for tests: MNIST IDX files, the CIFAR-10/100 python pickles and an
ImageNet-style ImageFolder. Each writes what the official distribution holds (file names, keys, dtypes, layout), only
with a few random images."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np

__all__ = ["write_idx", "make_mnist", "cifar_pickle", "make_cifar10", "make_cifar100", "make_image_folder"]


def write_idx(path, array: np.ndarray, *, gz: bool = False) -> None:
    """IDX as LeCun documents it: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian uint32 dims, raw data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(payload)


def make_mnist(folder, n_train=50, n_test=20, *, gz=False, seed=0):
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "train-images-idx3-ubyte": rng.randint(0, 256, (n_train, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.randint(0, 256, (n_test, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10)[::-1].astype(np.uint8),
    }
    for name, array in data.items():
        write_idx(folder / name, array, gz=gz)
    return data


def cifar_pickle(path, images: np.ndarray, labels: np.ndarray, label_key: bytes, extra: dict | None = None) -> None:
    """The CIFAR python-version layout: b'data' is N×3072 uint8 (R, G, B planes of row-major 32×32 images)."""
    entry = {b"batch_label": b"testing batch", label_key: [int(v) for v in labels],
             b"data": images.reshape(len(images), 3072).astype(np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}
    entry.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def make_cifar10(root, per_batch=4, n_test=6, seed=0):
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch}; returns (train_x, train_y, test_x, test_y)."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        x = rng.randint(0, 256, (per_batch, 3, 32, 32)).astype(np.uint8)
        y = rng.randint(0, 10, per_batch)
        cifar_pickle(folder / f"data_batch_{i}", x, y, b"labels")
        train_x.append(x), train_y.append(y)
    test_x = rng.randint(0, 256, (n_test, 3, 32, 32)).astype(np.uint8)
    test_y = rng.randint(0, 10, n_test)
    cifar_pickle(folder / "test_batch", test_x, test_y, b"labels")
    return np.concatenate(train_x), np.concatenate(train_y), test_x, test_y


def make_cifar100(root, train_labels=tuple(range(0, 100, 5)), test_labels=(99, 1, 2, 3), seed=1):
    """root/cifar-100-python/{train, test} with fine and coarse labels; returns (train_x, test_x)."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train_x = rng.randint(0, 256, (len(train_labels), 3, 32, 32)).astype(np.uint8)
    cifar_pickle(folder / "train", train_x, np.asarray(train_labels), b"fine_labels",
                 {b"coarse_labels": [0] * len(train_labels)})
    test_x = rng.randint(0, 256, (len(test_labels), 3, 32, 32)).astype(np.uint8)
    cifar_pickle(folder / "test", test_x, np.asarray(test_labels), b"fine_labels",
                 {b"coarse_labels": [7] * len(test_labels)})
    return train_x, test_x


def make_image_folder(root, classes=("cat", "dog", "emu"), n_train=5, n_val=2, ext=".png"):
    """root/{train,val}/<class>/<i><ext>: random 20×24 RGB images (``ext=".JPEG"`` as in the ImageNet archives)."""
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.randint(0, 256, (20, 24, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}{ext}")
