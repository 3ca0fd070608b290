"""Stratified, seeded splits: the fixed test splits, the validation carve and the training subset."""

from __future__ import annotations

import numpy as np

from ...errors import DataError

__all__ = ["stratified_split", "carve"]



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


def carve(name: str, targets: np.ndarray, val_fraction: float, split_seed: int,
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
