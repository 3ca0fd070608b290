"""The loaders the training loop iterates: ready ``(x, y)`` batches on the training device, with the epoch hooks of
:class:`EpochLoader`.

* :class:`TensorBatches` — the in-memory datasets (MNIST family, CIFAR, fake). The split lives on the training device as
  one uint8 tensor; each batch is one ``index_select``, the augmentation (:class:`~.memory.RandomCropFlip`), the
  resize and the normalisation, all tensor ops there — no worker processes, no host-to-device copy per batch (the way
  the fastest CIFAR training code feeds a GPU, e.g. Keller Jordan's airbench). The CPU runs the same code with
  ``device=cpu``.
* :class:`FileBatches` — a ``DataLoader`` over files (ImageFolder): its worker processes either decode and transform
  with PIL, or only read the file bytes; each batch is finished by a callable on the device (:mod:`.decode`).

Order and sharding: a training loader orders every epoch exactly like ``DistributedSampler(num_replicas=world_size,
rank=rank, seed=shuffle_seed(seed))`` — one seeded permutation per epoch, rank ``r`` taking its positions ``r, r + W,
…`` — in one process too (``world_size=1``). So N processes see, step by step, the same global batches as one process
with the same global batch. The in-memory loaders also draw the augmentation of every sample from ``(seed, epoch)``
alone, the same on every rank: with them a DDP run and a one-process run see the very same augmented images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .memory import InMemoryImageDataset
from .transfer import to_device

__all__ = ["EpochLoader", "TensorBatches", "FileBatches", "shuffle_seed", "epoch_seed"]


@runtime_checkable
class EpochLoader(Protocol):
    """What the training loop needs of a loader (:func:`qbench.run.train.fit`)."""

    batch_size: int  # per process

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of the current epoch, ``(inputs, labels)`` on the loader's device."""

    def __len__(self) -> int:
        """Batches per epoch (per process)."""

    def set_epoch(self, epoch: int) -> None:
        """Make the order and the augmentation of :meth:`__iter__` those of ``epoch`` (a function of the seed, the
        rank and ``epoch`` only: a resumed run replays exactly)."""

    def sequential(self) -> EpochLoader:
        """The same images in storage order, with the eval transform and the same per-process batch size, not
        sharded: the fixed training slice of the recurrence diagnostics."""


def shuffle_seed(seed: int) -> int:
    """The ``DistributedSampler`` seed of a run seed (spread out, so seed s + 1 is not seed s one epoch later)."""
    return int(seed) * 100_003


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of an epoch's augmentation stream."""
    return int(seed) * 1_000_003 + 7919 * (int(epoch) + 1) + int(rank)


def _sampler(dataset, seed: int, rank: int, world_size: int, drop_last: bool) -> DistributedSampler:
    # With explicit num_replicas and rank, DistributedSampler needs no process group.
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=shuffle_seed(seed),
                              drop_last=drop_last)


class TensorBatches:
    """Batches of an in-memory split held on ``device`` (see the module doc).

    ``shuffle`` makes it a training loader (sharded by ``rank`` / ``world_size``, reshuffled by :meth:`set_epoch`);
    ``augment`` applies the dataset's augmentation. The images go to the device on the first iteration, not before,
    so building a loader touches no device.
    """

    def __init__(self, dataset: InMemoryImageDataset, *, batch_size: int, device: torch.device, shuffle: bool = False,
                 augment: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        self.dataset, self.batch_size, self.device = dataset, int(batch_size), torch.device(device)
        self.augment = dataset.augment if augment else None
        self.seed, self.drop_last, self.epoch = int(seed), bool(drop_last), 0
        self.sampler = _sampler(dataset, seed, rank, world_size, drop_last) if shuffle else None
        self._stored: tuple[Tensor, Tensor] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def stored(self) -> tuple[Tensor, Tensor]:
        """(uint8 images, labels) of the split on the device, moved there once."""
        if self._stored is None:
            images, targets = self.dataset.tensors()
            self._stored = images.to(self.device), targets.to(self.device)
        return self._stored

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        images, targets = self.stored()
        if self.sampler is None:
            order = torch.arange(len(self.dataset), device=self.device)
        else:
            order = to_device(torch.as_tensor(list(self.sampler), dtype=torch.long), self.device)
        params = None
        if self.augment is not None:
            # One draw per sample of the split, from (seed, epoch) alone: the same on every rank and device.
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            params = to_device(self.augment.draw(len(self.dataset), generator), self.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                break
            x = self.dataset.transform(images.index_select(0, index),
                                       None if params is None else params.index_select(0, index))
            yield x, targets.index_select(0, index)

    def sequential(self) -> TensorBatches:
        view = TensorBatches(self.dataset, batch_size=self.batch_size, device=self.device)
        view._stored = self.stored()  # one copy of the split on the device
        return view


class FileBatches:
    """Batches of a map-style dataset read by ``DataLoader`` worker processes, finished on ``device``.

    ``finish(batch, generator) -> (x, y)`` turns what the workers collated into device tensors (the device decode and
    augmentation of :mod:`.decode`, drawing its randomness from ``generator``); without it the batch is moved to the
    device as it is. ``plain`` is ``(dataset, finish)`` of :meth:`sequential` (the same images with the eval
    transform); None: this loader's own (val / test loaders, which do not augment).
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, device: torch.device, shuffle: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False, num_workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool = False, collate_fn: Callable | None = None,
                 finish: Callable | None = None, plain: tuple[Dataset, Callable | None] | None = None):
        self.dataset, self.batch_size, self.device = dataset, int(batch_size), torch.device(device)
        self.finish, self.plain, self.seed, self.rank = finish, plain, int(seed), int(rank)
        self.sampler = _sampler(dataset, seed, rank, world_size, drop_last) if shuffle else None
        self.generator = torch.Generator()  # finish's random draws
        self._workers = dict(num_workers=num_workers, pin_memory=pin_memory, collate_fn=collate_fn)
        self.loader = DataLoader(dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=drop_last,
                                 persistent_workers=persistent_workers and num_workers > 0,
                                 generator=torch.Generator(), **self._workers)
        self._sequential: FileBatches | None = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        # The loader's generator seeds its workers (the PIL transforms' RNG); ours, the device augmentation.
        seed = epoch_seed(self.seed, epoch, self.rank)
        self.loader.generator.manual_seed(seed)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        non_blocking = self._workers["pin_memory"]
        for batch in self.loader:
            if self.finish is not None:
                yield self.finish(batch, self.generator)
            else:
                x, y = batch
                yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)

    def sequential(self) -> FileBatches:
        if self._sequential is None:
            dataset, finish = self.plain if self.plain is not None else (self.dataset, self.finish)
            self._sequential = FileBatches(dataset, batch_size=self.batch_size, device=self.device, finish=finish,
                                           **self._workers)
        return self._sequential
