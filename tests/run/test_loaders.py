"""The device-resident loaders (qbench.run.data.TensorBatches) on the CPU device: shapes and dtypes, determinism,
the augmentation's range, the per-epoch reshuffle, epoch length and ``drop_last``, the sequential view, and the DDP
sharding — checked against ``DistributedSampler`` and, with two real gloo processes (a torchrun subprocess, this file
is its worker), against one process with the same global batch.

Every test dataset labels sample ``i`` with ``i``, so a batch's labels say exactly which samples it holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from qbench.run.data import RandomCropFlip, TensorBatches, TensorImageDataset

REPO = Path(__file__).resolve().parents[2]
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def identity_dataset(n: int = 100, size: int = 8, augment: bool = True, seed: int = 0) -> TensorImageDataset:
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return TensorImageDataset(images, np.arange(n), mean=MEAN, std=STD,
                              augment=RandomCropFlip(padding=4) if augment else None)


def raw(x: torch.Tensor) -> torch.Tensor:
    """Normalised inputs back to uint8 levels."""
    mean, std = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.int64)


def epoch(loader, e: int):
    loader.set_epoch(e)
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]), [len(y) for _, y in batches]


def test_shapes_dtypes_and_epoch_length():
    data = identity_dataset(100)
    loader = TensorBatches(data, batch_size=32, device=torch.device("cpu"), shuffle=True, augment=True)
    x, y, sizes = epoch(loader, 0)
    assert x.dtype == torch.float32 and x.shape == (100, 3, 8, 8) and y.dtype == torch.int64
    assert sizes == [32, 32, 32, 4] and len(loader) == 4
    assert sorted(y.tolist()) == list(range(100))  # a permutation of the split
    dropping = TensorBatches(data, batch_size=32, device=torch.device("cpu"), shuffle=True, drop_last=True)
    assert epoch(dropping, 0)[2] == [32, 32, 32] and len(dropping) == 3


def test_deterministic_for_a_seed_reshuffled_per_epoch_and_resumable():
    data = identity_dataset(100)

    def make(seed):
        return TensorBatches(data, batch_size=16, device=torch.device("cpu"), shuffle=True, augment=True, seed=seed)

    a, b, other = make(0), make(0), make(1)
    first = epoch(a, 0)
    assert torch.equal(first[0], epoch(b, 0)[0]) and torch.equal(first[1], epoch(b, 0)[1])
    assert not torch.equal(first[1], epoch(other, 0)[1])
    second = epoch(a, 1)
    assert not torch.equal(first[1], second[1])  # a new order every epoch ...
    by_sample = [x[y.argsort()] for x, y, _ in (first, second)]
    assert not torch.equal(*by_sample)  # ... and a new augmentation
    # an epoch depends on (seed, epoch) only: what a resumed run relies on
    for e in (3, 1, 0):
        replay = epoch(make(0), e)
        assert torch.equal(replay[0], epoch(a, e)[0]) and torch.equal(replay[1], epoch(a, e)[1])


def test_augmentation_is_a_padded_crop_or_its_mirror_and_covers_the_range():
    data = identity_dataset(64, size=8)
    images = data.images.numpy().astype(np.int64)
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    loader = TensorBatches(data, batch_size=64, device=torch.device("cpu"), shuffle=True, augment=True)
    seen = set()
    for e in range(4):
        x, y, _ = epoch(loader, e)
        out = raw(x).numpy()
        for row, i in enumerate(y.tolist()):
            matches = [(dy, dx, m) for dy in range(9) for dx in range(9) for m in (0, 1)
                       if np.array_equal(out[row], padded[i, :, dy:dy + 8, dx:dx + 8][..., ::-1] if m
                                         else padded[i, :, dy:dy + 8, dx:dx + 8])]
            assert matches, f"sample {i}: not a crop of the zero-padded image or of its mirror"
            seen.update(matches)
    offsets = {(dy, dx) for dy, dx, _ in seen}
    assert {0, 8} <= {dy for dy, _ in offsets} and {0, 8} <= {dx for _, dx in offsets}  # the full ±4 range
    assert {m for *_, m in seen} == {0, 1}


def test_params_are_the_same_as_the_map_style_augmentation():
    data = identity_dataset(20)
    params = data.augment.draw(20, torch.Generator().manual_seed(5))
    direct = data.transform(data.images, params)
    data.reseed(5)
    assert torch.equal(direct, data.batch(range(20))[0])


def test_sequential_view_is_unaugmented_in_order_and_shares_the_storage():
    data = identity_dataset(50)
    loader = TensorBatches(data, batch_size=16, device=torch.device("cpu"), shuffle=True, augment=True, rank=1,
                           world_size=2)
    view = loader.sequential()
    x, y, sizes = epoch(view, 0)
    assert y.tolist() == list(range(50)) and sizes == [16, 16, 16, 2]  # the whole split, not this rank's shard
    assert torch.equal(raw(x), data.images.to(torch.int64))
    assert view.stored()[0] is loader.stored()[0]


def test_eval_loader_is_the_whole_split_in_order():
    data = identity_dataset(30)
    loader = TensorBatches(data, batch_size=7, device=torch.device("cpu"))
    x, y, sizes = epoch(loader, 5)
    assert y.tolist() == list(range(30)) and sizes == [7, 7, 7, 7, 2]
    assert torch.equal(raw(x), data.images.to(torch.int64))


@pytest.mark.parametrize("n, world", [(100, 2), (101, 2), (50, 4)])
def test_shards_follow_distributed_sampler_and_add_up_to_the_global_batches(n, world):
    data = identity_dataset(n)
    global_batch = 8 * world
    one = TensorBatches(data, batch_size=global_batch, device=torch.device("cpu"), shuffle=True, augment=True, seed=4)
    ranks = [TensorBatches(data, batch_size=global_batch // world, device=torch.device("cpu"), shuffle=True,
                           augment=True, seed=4, rank=r, world_size=world) for r in range(world)]
    for e in (0, 1):
        reference = []
        for r, loader in enumerate(ranks):
            sampler = DistributedSampler(data, num_replicas=world, rank=r, shuffle=True, seed=4 * 100_003)
            sampler.set_epoch(e)
            reference.append(list(sampler))
            assert epoch(loader, e)[1].tolist() == reference[-1]
        one.set_epoch(e)
        for r, loader in enumerate(ranks):
            loader.set_epoch(e)
        # step k: the ranks' batches together are one process's batch k, with the same augmented images
        for k, (x_one, y_one) in enumerate(one):
            parts = [batch for batch in (list(loader)[k] for loader in ranks)]
            x_all, y_all = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            if len(y_one) == len(y_all):
                assert sorted(y_all.tolist()) == sorted(y_one.tolist())
                assert torch.equal(x_all[y_all.argsort()], x_one[y_one.argsort()])


def test_two_gloo_processes_shard_one_permutation(tmp_path):
    """Two real processes (torchrun, gloo): per epoch, disjoint shards of one seeded permutation, each rank's batches
    those of DistributedSampler, together one process's epoch with the same augmented images."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           __file__, "shard-worker", str(tmp_path)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads((tmp_path / "shards.json").read_text())
    data = identity_dataset(101)
    one = TensorBatches(data, batch_size=16, device=torch.device("cpu"), shuffle=True, augment=True, seed=7)
    for e in (0, 1):
        x, y, _ = epoch(one, e)
        shards = [got[str(e)][r] for r in (0, 1)]
        labels = [s["labels"] for s in shards]
        assert len(labels[0]) == len(labels[1]) == 51  # ceil(101 / 2): one duplicate pads the odd count
        assert set(labels[0]) | set(labels[1]) == set(range(101))
        assert len(set(labels[0]) & set(labels[1])) == 1
        for r in (0, 1):
            sampler = DistributedSampler(data, num_replicas=2, rank=r, shuffle=True, seed=7 * 100_003)
            sampler.set_epoch(e)
            assert labels[r] == list(sampler)
            sums = torch.tensor(shards[r]["sums"], dtype=torch.float64)
            expected = torch.stack([x[y.tolist().index(i)].double().sum() for i in labels[r]])
            torch.testing.assert_close(sums, expected, rtol=0, atol=1e-9)


def _shard_worker(out: str) -> None:
    """torchrun entry point: each rank iterates its shard of two epochs and rank 0 gathers them."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    loader = TensorBatches(identity_dataset(101), batch_size=8, device=torch.device("cpu"), shuffle=True,
                           augment=True, seed=7, rank=rank, world_size=world)
    result = {}
    for e in (0, 1):
        x, y, _ = epoch(loader, e)
        mine = {"labels": y.tolist(), "sums": x.double().sum(dim=(1, 2, 3)).tolist()}
        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
        result[e] = gathered
    if rank == 0:
        Path(out, "shards.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "shard-worker":
    _shard_worker(sys.argv[2])
