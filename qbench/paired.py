"""Paired comparisons of methods over seeds: which methods of one leaderboard column are statistically tied at the
top, a tie-aware rank, and which seeds ``qbench run seeds=auto`` runs next.

Both the report (bold top group, rank column) and the runner (where to spend more seeds) decide with these functions,
and neither may import the other (layering), so they live here, below both, with numpy and scipy only.

The design, for a family of methods compared in one column (same dataset, arch, bits, policy, protocol):

* **Paired.** Runs of one column that share a seed share the initial weights and the data order, so the differences
  between two methods are compared seed by seed: the seed-to-seed variation that both methods share cancels, which is
  what makes three to five seeds informative at all. Only seeds both methods have a result for are paired.
* **Paired t-test**, two-sided, on the per-seed differences d_s = x_a,s − x_b,s: t = d̄ / (s_d / √n), n − 1 degrees
  of freedom (Student 1908; ``scipy.stats.ttest_rel`` computes the same). Not Wilcoxon's signed-rank test or a
  sign-flip permutation test: with n seeds their smallest two-sided p-value is 2 / 2^n (0.25 at n = 3, 0.0625 at
  n = 5), so below six seeds they can never reject at α = 0.05, and a bootstrap of three differences has no
  coverage to speak of. The t-test assumes the differences are roughly normal; a test accuracy is an average over
  thousands of images and its seed-to-seed variation a sum of many small effects, and with n = 3 nothing better
  can be checked. Two runs with identical differences on every seed (s_d = 0) are taken at the t-test's limit:
  p = 1 when d̄ = 0, p = 0 otherwise.
* **All pairs, Holm.** Every pair with at least :data:`MIN_SEEDS` common seeds is tested and the p-values are
  adjusted by Holm's step-down procedure (Holm 1979, Scand. J. Statist. 6:65-70), which controls the family-wise
  error rate under any dependence between the tests. Testing only "each method vs the best" would be cheaper in
  multiplicity, but the best is picked by the same data: in a simulation of equal methods (k = 5, n = 3…10) that
  rule claims a difference in 7-9 % of columns at α = 0.05, the all-pairs family in 4.5-5 %.
* **Tie-aware rank** = 1 + the number of methods significantly better (Holm-adjusted p ≤ α, and a higher mean on
  the paired seeds). The **top group** is rank 1: no method is significantly better. Methods that cannot be told
  apart share a rank; a column of identical methods is all rank 1.
* Fewer than :data:`MIN_SEEDS` common seeds: the pair is not tested (with n = 2 the t-test has one degree of freedom
  and no power after any correction). A method with no tested pair has no rank.

Power: with n = 3 seeds (2 degrees of freedom) and five methods (10 pairs), the first Holm step needs |t| > 14.1; with
n = 5 it needs 4.6 and with n = 10, 3.7. Three seeds only separate large, consistent differences; ``seeds=auto``
(:func:`plan_seeds`) adds seeds where the top group is undecided.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = ["ALPHA", "MIN_SEEDS", "Pair", "Comparison", "holm", "paired_t", "pairwise", "ranks", "compare",
           "stopping_alpha", "settled", "plan_seeds"]

#: the significance level of every test qbench reports
ALPHA = 0.05
#: the fewest common seeds a pair is tested on
MIN_SEEDS = 3


def holm(pvalues: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values along the last axis: with p_(1) ≤ … ≤ p_(m),
    p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)). NaN entries are not in the family (m counts the others) and stay
    NaN.

    Rejecting where p̃ ≤ α is Holm's procedure at level α (the same numbers as statsmodels' ``multipletests(...,
    method="holm")``). Ties keep their input order, so the result does not depend on how equal p-values are sorted.
    """
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, axis=-1, kind="stable")  # NaN sorts last
    ordered = np.take_along_axis(p, order, axis=-1)
    m = np.sum(~np.isnan(p), axis=-1, keepdims=True)
    scaled = (m - np.arange(p.shape[-1])) * ordered
    # NaNs are last, so the running maximum over the family is not touched by them
    adjusted = np.minimum(1.0, np.maximum.accumulate(np.where(np.isnan(scaled), -np.inf, scaled), axis=-1))
    adjusted = np.where(np.isnan(ordered), np.nan, adjusted)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def paired_t(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paired t-test of ``a`` against ``b`` along the last axis over the positions where both are finite:
    (common count n, mean of a − b, two-sided p), NaN where n < 2."""
    from scipy import stats  # scipy is heavy; a config or a runner that never compares does not pay for it

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    valid = ~np.isnan(d)
    n = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, d, 0.0).sum(axis=-1) / n
        var = np.where(valid, (d - mean[..., None]) ** 2, 0.0).sum(axis=-1) / (n - 1)
        t = mean / np.sqrt(var / n)
        p = 2.0 * stats.t.sf(np.abs(t), n - 1)
    # identical differences on every seed (s_d = 0): the limit of t → 0 (p = 1) or |t| → ∞ (p = 0)
    p = np.where(var == 0.0, np.where(mean == 0.0, 1.0, 0.0), p)
    return n, mean, np.where(n >= 2, p, np.nan)


def pairwise(scores: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of methods of a column, tested: ``scores`` is (..., k methods, seeds), higher is better, NaN where a
    method has no score for a seed. Returns (n, diff, p_holm, better), each (..., k, k): the common seeds of i and j,
    the mean of score_i − score_j over them, the Holm-adjusted p over the column's tested pairs (NaN where fewer than
    :data:`MIN_SEEDS` common seeds), and whether i is significantly better than j (p_holm ≤ α and diff > 0)."""
    x = np.asarray(scores, dtype=float)
    k = x.shape[-2]
    n, diff, p = paired_t(x[..., :, None, :], x[..., None, :, :])
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    family = np.where(upper & (n >= MIN_SEEDS), p, np.nan)
    flat = holm(family.reshape(*family.shape[:-2], k * k)).reshape(family.shape)
    p_holm = np.where(upper, flat, np.swapaxes(flat, -1, -2))  # symmetric: the test of (i, j) is the test of (j, i)
    better = (p_holm <= alpha) & (diff > 0)
    return n, diff, p_holm, better


def ranks(scores: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Tie-aware ranks (..., k): 1 + the number of methods significantly better (:func:`pairwise`); NaN for a method
    with no tested pair."""
    n, _, _, better = pairwise(scores, alpha)
    return _ranks_from(n, better)


def _ranks_from(n: np.ndarray, better: np.ndarray) -> np.ndarray:
    tested = ((n >= MIN_SEEDS) & ~np.eye(n.shape[-1], dtype=bool)).any(axis=-1)
    return np.where(tested, 1.0 + better.sum(axis=-2), np.nan)


@dataclass(frozen=True)
class Pair:
    """The paired test of methods ``a`` and ``b`` (a < b by name) over their ``n`` common seeds."""

    a: str
    b: str
    n: int
    diff: float  # mean over the common seeds of score_a − score_b (higher score = better)
    p_holm: float  # two-sided paired t-test, Holm-adjusted over the column's tested pairs
    better: str | None  # the significantly better of the two (p_holm ≤ α), or None


@dataclass(frozen=True)
class Comparison:
    """The comparison of one column's methods (see the module docstring). Scores are higher-is-better."""

    alpha: float
    means: dict[str, float]  # every method with at least one score: the mean over its own seeds
    seeds: dict[str, int]  # how many scored seeds each method has
    pairs: tuple[Pair, ...]  # the tested pairs (≥ MIN_SEEDS common seeds)
    rank: dict[str, int] = field(default_factory=dict)  # tested methods: 1 + number significantly better

    @property
    def tested(self) -> bool:
        return bool(self.pairs)

    @property
    def top_group(self) -> tuple[str, ...]:
        """Rank-1 methods, best mean first."""
        return tuple(sorted((m for m, r in self.rank.items() if r == 1), key=lambda m: (-self.means[m], m)))

    @property
    def best(self) -> str | None:
        """The highest mean of the top group (None when nothing was tested)."""
        top = self.top_group
        return top[0] if top else None

    def pair(self, a: str, b: str) -> Pair | None:
        """The tested pair of ``a`` and ``b`` in either order, or None."""
        for pair in self.pairs:
            if {pair.a, pair.b} == {a, b}:
                return pair
        return None

    def difference(self, label: str, other: str) -> tuple[int, float, float] | None:
        """(common seeds, mean of label − other, Holm p) of a tested pair, oriented from ``label``; None if untested."""
        pair = self.pair(label, other)
        if pair is None:
            return None
        return pair.n, pair.diff if pair.a == label else -pair.diff, pair.p_holm


def compare(scores: Mapping[str, Mapping[int, float | None]], alpha: float = ALPHA) -> Comparison:
    """Paired t-tests of every pair of methods over their common seeds, Holm-adjusted; tie-aware ranks.

    ``scores``: method → {seed: score}, higher is better (negate a loss first); None and NaN scores are left out.
    Methods are processed in sorted order, so the same scores always give the same result.
    """
    clean = {m: {int(s): float(v) for s, v in seeds.items() if v is not None and not math.isnan(float(v))}
             for m, seeds in scores.items()}
    clean = {m: seeds for m, seeds in sorted(clean.items()) if seeds}
    labels = list(clean)
    seed_list = sorted(set().union(*clean.values())) if clean else []
    matrix = np.full((len(labels), len(seed_list)), np.nan)
    for i, m in enumerate(labels):
        for j, s in enumerate(seed_list):
            matrix[i, j] = clean[m].get(s, np.nan)
    n, diff, p_holm, better = pairwise(matrix, alpha)
    rank = _ranks_from(n, better)
    pairs = tuple(
        Pair(a, b, int(n[i, j]), float(diff[i, j]), float(p_holm[i, j]),
             a if better[i, j] else b if better[j, i] else None)
        for (i, a), (j, b) in itertools.combinations(enumerate(labels), 2) if n[i, j] >= MIN_SEEDS
    )
    return Comparison(alpha, {m: float(np.mean(list(v.values()))) for m, v in clean.items()},
                      {m: len(v) for m, v in clean.items()}, pairs,
                      {m: int(r) for m, r in zip(labels, rank) if not math.isnan(r)})


# ------------------------------------------------------------------------------------------------ seeds=auto
def stopping_alpha(alpha: float, seeds_min: int, seeds_max: int) -> float:
    """The level at which ``seeds=auto`` calls a column settled: α divided by the number of looks (seeds_min,
    seeds_min + 1, …, seeds_max seeds), a Bonferroni bound over the looks.

    Stopping as soon as a test at α rejects is optional stopping: for two equal methods looked at after 3…10 seeds it
    declares a winner in about 16 % of columns, not 5 %. Stopping at α / looks and reporting at α keeps the report's
    false-positive rate near α (about 6 % in the same simulation; tests/run/test_sequential.py checks it).
    """
    return alpha / max(1, seeds_max - seeds_min + 1)


def settled(comparison: Comparison) -> bool:
    """Nothing more to learn from more seeds: fewer than two methods have a score, or every method with a score was
    tested and the top group is a single method."""
    if len(comparison.means) < 2:
        return True
    return comparison.tested and set(comparison.rank) == set(comparison.means) and len(comparison.top_group) == 1


def plan_seeds(runs: Mapping[str, Mapping[int, float | None]], *, seeds_min: int, seeds_max: int,
               alpha: float = ALPHA) -> dict[str, list[int]]:
    """The seeds each method of one column runs next under ``seeds=auto``; empty when the column is done.

    ``runs``: method → {seed: score or None} for every seed the method has a record of (None: it ran but has no
    score: failed, diverged). The rule, a function of the records only (so re-running continues where it stopped and
    the same records give the same seeds):

    1. every method first gets seeds 0 … seeds_min − 1;
    2. the column is compared (:func:`compare`) at :func:`stopping_alpha`; if it is :func:`settled`, it is done;
    3. otherwise the next seed is one past the highest seed of the column (at most seeds_max − 1), and every method
       of the top group, and every method with scores but no tested pair, runs every seed up to it that it lacks
       (a method that re-enters the top group, or whose cell failed, catches up, so its pairs stay complete). Methods
       already significantly worse get no more seeds: compute goes where the answer is undecided.
    """
    missing = {m: [s for s in range(seeds_min) if s not in seeds] for m, seeds in runs.items()}
    if any(missing.values()):
        return {m: seeds for m, seeds in sorted(missing.items()) if seeds}
    scores = {m: {s: v for s, v in seeds.items() if v is not None} for m, seeds in runs.items()}
    comparison = compare(scores, stopping_alpha(alpha, seeds_min, seeds_max))
    if settled(comparison):
        return {}
    last = min(1 + max(s for seeds in runs.values() for s in seeds), seeds_max - 1)
    open_methods = [m for m in comparison.means if comparison.rank.get(m, 1) == 1]
    plan = {m: [s for s in range(last + 1) if s not in runs[m]] for m in sorted(open_methods)}
    return {m: seeds for m, seeds in plan.items() if seeds}
