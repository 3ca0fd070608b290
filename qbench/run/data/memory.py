"""In-memory image datasets whose batches are produced by tensor ops (MNIST family, CIFAR, fake).

They implement ``__getitems__``: the DataLoader hands them a whole batch of indices, one ``index_select`` gathers it,
and :func:`collate_batched` passes the ready tensors through — a mnist5k epoch of batch 128 costs a few milliseconds
of loading. Their random augmentation draws from a per-dataset ``torch.Generator`` that the loaders seed (and re-seed
in every worker), so a CPU run with a fixed seed is deterministic without touching the global RNG.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

__all__ = [
    "BatchedSamples",
    "collate_batched",
    "random_crop_flip",
    "InMemoryImageDataset",
    "TensorImageDataset",
    "FakeImageDataset",
    "FAKE_MEAN",
    "FAKE_STD",
    "FAKE_NUM_CLASSES",
]

FAKE_MEAN, FAKE_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
FAKE_NUM_CLASSES = 10



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

    Subclasses implement :meth:`load` (raw images of the given storage indices as an N×C×H×W tensor whose values are
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
    def load(self, storage_indices: Tensor) -> Tensor:
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
        images = self.load(storage)
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

    def load(self, storage_indices: Tensor) -> Tensor:
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

    def load(self, storage_indices: Tensor) -> Tensor:
        out = torch.empty((len(storage_indices), *self.image_size), dtype=torch.uint8)
        g = torch.Generator()
        for row, index in enumerate(storage_indices.tolist()):
            g.manual_seed(self.seed * 1_000_003 + index + 1)
            noise = torch.randint(0, 256, self.image_size, generator=g, dtype=torch.int16)
            template = self.templates[self._all_targets[index]].to(torch.int16)
            out[row] = ((template + noise) // 2).to(torch.uint8)
        return out
