"""qbench.report.stats against independent oracles: scipy's t quantile, brute-force ranks, the exact bootstrap
distribution of tiny samples, numpy's nan-median."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from qbench.report.stats import bootstrap_rank_stability, finite_median, rank_by_mean, t_interval


def test_t_interval_is_mean_plus_minus_t_quantile_times_sem():
    values = np.array([70.13, 71.31, 72.02, 69.5, 70.9])
    n = len(values)
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    assert t_interval(values) == (pytest.approx(mean - half, rel=1e-12), pytest.approx(mean + half, rel=1e-12))
    half90 = stats.t.ppf(0.95, n - 1) * s / math.sqrt(n)
    assert t_interval(values, 0.90)[1] == pytest.approx(mean + half90, rel=1e-12)


def test_t_interval_degenerate_cases():
    assert all(math.isnan(v) for v in t_interval(np.array([80.0])))
    assert t_interval(np.array([80.0, 80.0, 80.0])) == (80.0, 80.0)


def test_rank_by_mean_matches_sorting_with_shared_ranks_for_ties():
    means = {"a": 90.0, "b": 85.0, "c": 90.0, "d": 70.0}
    ranks = rank_by_mean(means)
    for label, mean in means.items():
        assert ranks[label] == 1 + len([m for m in means.values() if m > mean])
    assert ranks == {"a": 1, "c": 1, "b": 3, "d": 4}


def _exact_stability(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Probability that each label keeps its full-sample rank, by enumerating every bootstrap resample."""
    labels = sorted(scores)
    ranks = rank_by_mean({k: float(np.mean(v)) for k, v in scores.items()})
    choices = [list(itertools.product(range(len(scores[k])), repeat=len(scores[k]))) for k in labels]
    kept = dict.fromkeys(labels, 0.0)
    total = 0
    for combo in itertools.product(*choices):
        means = {k: np.mean(scores[k][list(picks)]) for k, picks in zip(labels, combo)}
        for k in labels:
            kept[k] += 1 + sum(other > means[k] for other in means.values()) == ranks[k]
        total += 1
    return {k: kept[k] / total for k in labels}


def test_bootstrap_stability_converges_to_the_exact_bootstrap_probability():
    scores = {"a": np.array([1.0, 3.0]), "b": np.array([2.0, 2.5]), "c": np.array([0.0, 4.0])}
    exact = _exact_stability(scores)
    n = 40_000
    estimate = bootstrap_rank_stability(scores, rank_by_mean({k: v.mean() for k, v in scores.items()}), n, seed=0)
    for label, p in exact.items():
        assert abs(estimate[label] - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-12, label


def test_bootstrap_stability_is_nan_for_single_seeds_and_when_disabled():
    scores = {"a": np.array([1.0, 2.0]), "b": np.array([5.0])}
    ranks = rank_by_mean({k: v.mean() for k, v in scores.items()})
    result = bootstrap_rank_stability(scores, ranks, 100, seed=0)
    assert math.isnan(result["b"]) and result["a"] == 1.0  # a is always below b's single value
    assert all(math.isnan(v) for v in bootstrap_rank_stability(scores, ranks, 0, seed=0).values())
    # the same draws whatever order the caller's dict has
    reordered = bootstrap_rank_stability(dict(reversed(list(scores.items()))), ranks, 100, seed=0)
    assert reordered == pytest.approx(result, nan_ok=True)


def test_finite_median_ignores_missing_values():
    values = [3.0, None, 1.0, float("nan"), 10.0, 2.0]
    assert finite_median(values) == np.nanmedian(np.array([v if v is not None else np.nan for v in values]))
    assert math.isnan(finite_median([None, float("nan")]))
