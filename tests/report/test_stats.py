"""qbench.report.stats against independent oracles: scipy's t quantile and Friedman statistic, the exact permutation
distribution of tiny designs, Demšar's table of q_α, scikit-posthocs' Nemenyi test, numpy's nan-median, and a
simulation of the false-positive rate of the test across columns."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scikit_posthocs as sp
from scipy import stats

from qbench.report.stats import block_ranks, finite_median, friedman_nemenyi, nemenyi_cd, t_interval


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


def test_finite_median_ignores_missing_values():
    values = [3.0, None, 1.0, float("nan"), 10.0, 2.0]
    assert finite_median(values) == np.nanmedian(np.array([v if v is not None else np.nan for v in values]))
    assert math.isnan(finite_median([None, float("nan")]))


def test_block_ranks_give_mid_ranks_to_ties_and_rank_a_missing_result_last():
    scores = np.array([[90.0, 80.0, 85.0, np.nan], [70.0, 70.0, 60.0, 50.0]])
    np.testing.assert_array_equal(block_ranks(scores), [[1, 3, 2, 4], [1.5, 1.5, 3, 4]])
    np.testing.assert_array_equal(block_ranks(np.array([[1.0, np.nan, np.nan]])), [[1, 2.5, 2.5]])


def test_friedman_statistic_matches_scipy_with_and_without_ties():
    rng = np.random.default_rng(0)
    for scores in (rng.normal(size=(6, 4)), np.round(rng.normal(size=(8, 5)), 0)):  # the second has ties
        result = friedman_nemenyi(scores, list("abcde"[: scores.shape[1]]), n_permutations=100)
        assert result.statistic == pytest.approx(stats.friedmanchisquare(*scores.T).statistic, rel=1e-10)
        np.testing.assert_allclose(result.avg_ranks, stats.rankdata(-scores, axis=1).mean(axis=0))


def _exact_friedman_p(scores: np.ndarray) -> float:
    """P(Σ_j R_j² ≥ observed) over every within-block permutation of the ranks (all (k!)^N of them)."""
    ranks = stats.rankdata(-scores, axis=1)
    observed = np.sum(ranks.sum(axis=0) ** 2)
    perms = [np.array(p) for p in itertools.permutations(range(ranks.shape[1]))]
    hits = total = 0
    for combo in itertools.product(perms, repeat=ranks.shape[0]):
        sums = sum(row[p] for row, p in zip(ranks, combo))
        hits += np.sum(sums ** 2) >= observed - 1e-9
        total += 1
    return hits / total


def test_permutation_p_value_converges_to_the_exact_one_and_to_chi2_for_many_blocks():
    scores = np.array([[3.0, 2.0, 1.0], [2.9, 2.1, 1.5], [1.0, 3.0, 2.0]])  # 216 permutations: enumerate them
    exact = _exact_friedman_p(scores)
    p = friedman_nemenyi(scores, list("abc"), n_permutations=40_000).p_value
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / 40_000) + 1e-4, (p, exact)
    rng = np.random.default_rng(1)
    many = rng.normal(size=(60, 4)) + np.array([0.0, 0.1, 0.2, 0.3])  # many blocks: the χ² approximation holds
    p = friedman_nemenyi(many, list("abcd")).p_value
    assert p == pytest.approx(stats.friedmanchisquare(*many.T).pvalue, abs=0.01)
    # a fixed seed: the same scores give the same p-value
    assert friedman_nemenyi(many, list("abcd")).p_value == p


def test_nemenyi_critical_difference_matches_demsar_and_scikit_posthocs():
    # Demšar 2006, Table 5(a): q_0.05 for k = 2 … 10
    table = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    for k, q in zip(range(2, 11), table):
        q_alpha, cd = nemenyi_cd(k, 7)
        assert q_alpha == pytest.approx(q, abs=1e-3)  # the table has three decimals
        assert cd == pytest.approx(q_alpha * math.sqrt(k * (k + 1) / (6 * 7)), rel=1e-12)
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(12, 5)) + np.array([2.0, 1.5, 0.5, 0.0, -0.5])
    result = friedman_nemenyi(scores, list("abcde"))
    assert result.significant
    reference = sp.posthoc_nemenyi_friedman(scores).to_numpy()  # p-values of every pair
    for i, j in itertools.combinations(range(5), 2):
        assert result.differ("abcde"[i], "abcde"[j]) == (reference[i, j] < 0.05), (i, j, reference[i, j])
    assert any(result.differ(a, b) for a, b in itertools.combinations("abcde", 2))
    assert not all(result.differ(a, b) for a, b in itertools.combinations("abcde", 2))


def test_cliques_join_the_methods_within_the_critical_difference():
    # five methods, ranks constructed so that the CD (2.49 for k = 5, N = 6) separates a from d and e only
    scores = np.array([[5, 4, 3, 2, 1], [5, 4, 3, 1, 2], [5, 3, 4, 2, 1], [4, 5, 3, 2, 1], [5, 4, 1, 3, 2],
                       [5, 2, 4, 3, 1]], dtype=float)
    result = friedman_nemenyi(scores, list("abcde"))
    assert result.significant
    expected_ranks = stats.rankdata(-scores, axis=1).mean(axis=0)
    cd = result.cd
    for a, b in itertools.combinations(range(5), 2):
        assert result.differ("abcde"[a], "abcde"[b]) == (abs(expected_ranks[a] - expected_ranks[b]) > cd)
    for clique in result.cliques():
        ranks = [result.rank_of(m) for m in clique]
        assert max(ranks) - min(ranks) <= cd
    covered = {m for clique in result.cliques() for m in clique}
    assert covered == set("abcde")
    # not significant: one clique of everybody, nobody differs
    flat = friedman_nemenyi(np.array([[1.0, 2, 3], [3, 2, 1], [2, 3, 1]]), list("abc"))
    assert not flat.significant and len(flat.cliques()) == 1 and set(flat.cliques()[0]) == set("abc")


def test_friedman_rejects_equal_methods_at_about_alpha_where_approximations_do_not():
    """Equal methods over N = 3 … 5 columns: the permutation test rejects in ≤ α of simulated suites; Iman and
    Davenport's F (Demšar's recommendation) rejects too often at N = 3, the χ² approximation too rarely."""
    rng = np.random.default_rng(3)
    k, sims = 5, 600
    for n_blocks in (3, 5):
        data = rng.normal(size=(sims, n_blocks, k))
        rate = np.mean([friedman_nemenyi(x, list("abcde"), n_permutations=99, seed=i).p_value <= 0.05
                        for i, x in enumerate(data)])
        assert 0.02 <= rate <= 0.075, (n_blocks, rate)
    data = rng.normal(size=(20_000, 3, k))
    avg = stats.rankdata(data, axis=2).mean(axis=1)
    chi2 = 12 * 3 / (k * (k + 1)) * np.sum((avg - (k + 1) / 2) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        iman_davenport = (3 - 1) * chi2 / (3 * (k - 1) - chi2)
    assert np.mean(stats.f.sf(iman_davenport, k - 1, (k - 1) * 2) <= 0.05) > 0.058
    assert np.mean(stats.chi2.sf(chi2, k - 1) <= 0.05) < 0.03
