"""The statistics of a leaderboard: t intervals of a cell mean, medians, and the comparison across columns (Friedman's
test with Nemenyi's post-hoc critical difference, Demšar 2006). The comparisons within a column (paired t-tests over
seeds, Holm) are :mod:`qbench.paired`'s, shared with the runner.

Scores are oriented so that higher is better (a loss is negated by the caller). Every function is deterministic: the
permutation test draws from a fixed-seed generator, so the same records always give the same numbers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..paired import ALPHA
from .load import is_missing

__all__ = ["t_interval", "finite_median", "block_ranks", "Friedman", "friedman_nemenyi", "nemenyi_cd", "MIN_CELLS"]

#: the fewest columns (the "data sets" of Demšar's protocol) a Friedman test is run over
MIN_CELLS = 3


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


def finite_median(values: Iterable[float]) -> float:
    """Median of the values a record has (missing ones left out); NaN when none. Costs use medians because timing
    noise has outliers."""
    finite = [float(v) for v in values if not is_missing(v)]
    return float(np.median(finite)) if finite else np.nan


def block_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks within each row (block) of ``scores`` (blocks × methods), 1 = the highest score; ties share their mean
    rank, and a NaN score (the method ran there without a result) ranks below every score (Demšar 2006, §3.2.2)."""
    from scipy import stats  # heavy: only a report with several columns pays for it

    worst = np.where(np.isnan(scores), -np.inf, np.asarray(scores, dtype=float))
    return stats.rankdata(-worst, axis=1)


@functools.lru_cache(maxsize=256)  # the quantile is a numerical integral: ~20 ms
def nemenyi_cd(k: int, n_blocks: int, alpha: float = ALPHA) -> tuple[float, float]:
    """(q_α, CD) of the Nemenyi test (Demšar 2006, §3.2.2): two of k methods differ when their average ranks over
    N blocks differ by more than CD = q_α·√(k(k+1)/(6N)), with q_α the studentized range quantile of k means at
    infinite degrees of freedom divided by √2 (2.343 for k = 3, 2.728 for k = 5 at α = 0.05, Demšar's Table 5a)."""
    from scipy import stats

    q_alpha = float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    return q_alpha, q_alpha * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


@dataclass(frozen=True)
class Friedman:
    """Friedman's test over the blocks (leaderboard columns) of k methods and Nemenyi's critical difference."""

    labels: tuple[str, ...]
    avg_ranks: tuple[float, ...]  # 1 = best
    n_blocks: int
    statistic: float  # Friedman's χ²_F with the tie correction (what scipy.stats.friedmanchisquare returns)
    p_value: float  # permutation p-value (ranks permuted within each block)
    q_alpha: float
    cd: float
    alpha: float
    n_permutations: int

    @property
    def significant(self) -> bool:
        return self.p_value <= self.alpha

    def rank_of(self, label: str) -> float:
        return self.avg_ranks[self.labels.index(label)]

    def differ(self, a: str, b: str) -> bool:
        """Nemenyi: a and b differ (only after a significant Friedman test, Demšar's protocol)."""
        return self.significant and abs(self.rank_of(a) - self.rank_of(b)) > self.cd

    def cliques(self) -> list[tuple[str, ...]]:
        """Maximal runs of methods (in average-rank order) within CD of each other: the bars of a CD diagram. Every
        method is in at least one (alone, when it differs from all its neighbours)."""
        order = sorted(self.labels, key=lambda m: (self.rank_of(m), m))
        spans = []
        for i, first in enumerate(order):
            j = i
            while j + 1 < len(order) and not self.differ(first, order[j + 1]):
                j += 1
            if not spans or j > spans[-1][1]:
                spans.append((i, j))
        return [tuple(order[i:j + 1]) for i, j in spans]


def friedman_nemenyi(scores: np.ndarray, labels: Sequence[str], alpha: float = ALPHA, *,
                     n_permutations: int = 20_000, seed: int = 0) -> Friedman:
    """Friedman's test of k methods over N blocks (``scores``: N × k, higher is better, NaN = ran without a result)
    and Nemenyi's critical difference (Demšar 2006, JMLR 7:1-30, §3.2.2).

    χ²_F = 12N/(k(k+1))·Σ_j (R̄_j − (k+1)/2)², divided by the tie correction 1 − Σ(t³ − t)/(N·k·(k² − 1)) (Friedman
    1937; as scipy.stats.friedmanchisquare). Its p-value is a permutation test (the null hypothesis makes the k ranks
    of each block exchangeable; the ranks are permuted within each block, a fixed-seed generator), not the χ²
    approximation, which is conservative for few blocks, nor Iman and Davenport's F, which Demšar recommends but which
    rejects in 6-20 % of equal-method simulations at N = 3-5 blocks (tests/report/test_stats.py measures both).
    """
    ranks = block_ranks(np.asarray(scores, dtype=float))
    n_blocks, k = ranks.shape
    avg = ranks.mean(axis=0)
    ties = sum(float(np.sum(c ** 3 - c)) for row in ranks for c in [np.unique(row, return_counts=True)[1]])
    correction = 1.0 - ties / (n_blocks * k * (k * k - 1))
    statistic = 12.0 * n_blocks / (k * (k + 1)) * float(np.sum((avg - (k + 1) / 2.0) ** 2))
    statistic = statistic / correction if correction > 0 else 0.0
    # Within-block permutations leave the correction unchanged, so Σ_j R_j² orders them as χ²_F does.
    observed = float(np.sum(ranks.sum(axis=0) ** 2))
    rng = np.random.default_rng(seed)
    exceed, done = 0, 0
    while done < n_permutations:
        batch = min(4096, n_permutations - done)
        order = np.argsort(rng.random((batch, n_blocks, k)), axis=-1)
        sums = np.take_along_axis(np.broadcast_to(ranks, order.shape), order, axis=-1).sum(axis=1)
        exceed += int(np.sum(np.sum(sums ** 2, axis=-1) >= observed - 1e-9))
        done += batch
    q_alpha, cd = nemenyi_cd(k, n_blocks, alpha)
    return Friedman(tuple(labels), tuple(float(r) for r in avg), n_blocks, float(statistic),
                    (exceed + 1) / (n_permutations + 1), q_alpha, cd, alpha, n_permutations)
