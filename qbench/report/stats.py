"""The statistics of a leaderboard: t intervals of a cell mean, ranks by mean, bootstrap rank stability, medians.

Scores are oriented so that higher is better (a loss is negated by the caller). Every function is deterministic: the
bootstrap draws from a fixed-seed generator in a fixed label order, so the same records always give the same numbers.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

from .load import is_missing

__all__ = ["t_interval", "rank_by_mean", "bootstrap_rank_stability", "finite_median"]


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean: x̄ ± t_{(1+c)/2, n−1} · s/√n (s with ddof=1).

    NaN for fewer than two values (no spread to estimate); a degenerate (x̄, x̄) when all values are equal.
    """
    if len(values) < 2:
        return (np.nan, np.nan)
    from scipy import stats  # heavy: only a report with a multi-seed cell pays for it

    mean = float(np.mean(values))
    sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    if sem == 0.0:
        return (mean, mean)
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return (float(low), float(high))


def rank_by_mean(means: Mapping[str, float]) -> dict[str, int]:
    """Competition ranks: 1 + the number of labels with a strictly higher mean (ties share the better rank)."""
    return {label: 1 + sum(other > mean for other in means.values()) for label, mean in means.items()}


def bootstrap_rank_stability(
    scores: Mapping[str, np.ndarray], ranks: Mapping[str, int], n_resamples: int, seed: int
) -> dict[str, float]:
    """Fraction of seed resamples in which each label keeps its rank (higher score = better).

    Each resample draws every label's seeds with replacement (a nonparametric bootstrap of each cell mean, Efron &
    Tibshirani 1993) and ranks the resampled means as :func:`rank_by_mean` does. A cell with one seed has no spread
    to resample, so its own stability is NaN rather than a misleading 1.0.
    """
    if n_resamples <= 0:
        return {label: np.nan for label in scores}
    labels = sorted(scores)  # fixed order → the same draws for the same data, whatever order the caller used
    rng = np.random.default_rng(seed)
    means = np.empty((len(labels), n_resamples))
    for i, label in enumerate(labels):
        values = scores[label]
        picks = rng.integers(0, len(values), size=(n_resamples, len(values)))
        means[i] = values[picks].mean(axis=1)
    # rank = 1 + number of labels with a strictly better resampled mean (ties share the better rank)
    boot_ranks = 1 + (means[None, :, :] > means[:, None, :]).sum(axis=1)
    return {
        label: float(np.mean(boot_ranks[i] == ranks[label])) if len(scores[label]) >= 2 else np.nan
        for i, label in enumerate(labels)
    }


def finite_median(values: Iterable[float]) -> float:
    """Median of the values a record has (missing ones left out); NaN when none. Costs use medians because timing
    noise has outliers."""
    finite = [float(v) for v in values if not is_missing(v)]
    return float(np.median(finite)) if finite else np.nan
