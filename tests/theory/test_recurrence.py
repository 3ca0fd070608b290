"""Tests of qbench.theory.recurrence (spec §6: the REC paper's recurrence toy on the spec §8 model).

Oracles: brute force over all quantized patterns (the exact ternary projection, the quantized optimum) and the REC
paper's claims (recurrent visits of the quantized optimum; Q(w_t) not eventually constant). No expected number is
hard-coded.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from qbench.config import RECURRENCE_QUANTIZERS, RecurrenceConfig
from qbench.errors import ConfigError
from qbench.theory.gaussian import population_loss, random_instance
from qbench.theory.recurrence import quantized_optimum, recurrence_toy, ternary_projection


def test_ternary_projection_is_the_exact_projection():
    gen = np.random.default_rng(0)
    patterns = np.array([p for p in itertools.product((-1.0, 0.0, 1.0), repeat=7) if any(p)])
    for _ in range(5):
        w = gen.standard_normal(7)
        t, alpha = ternary_projection(w)
        best = np.min(w @ w - (patterns @ w) ** 2 / np.sum(patterns**2, axis=1))  # min over α of ‖w − αt‖²
        assert np.sum((w - alpha * t) ** 2) == pytest.approx(best, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("quantizer, levels", [("binary", (-1.0, 1.0)), ("ternary", (-1.0, 0.0, 1.0))])
def test_quantized_optimum_is_best_pattern(quantizer, levels):
    inst = random_instance(5, 8, torch.Generator().manual_seed(8))
    patterns = np.array([p for p in itertools.product(levels, repeat=8) if any(p)])
    losses = [population_loss(inst.v_star, p, inst.v_star, inst.w_star) for p in patterns]
    optimum = quantized_optimum(inst.w_star, quantizer)
    assert population_loss(inst.v_star, optimum, inst.v_star, inst.w_star) == pytest.approx(min(losses), abs=1e-12)


@pytest.mark.parametrize("quantizer", RECURRENCE_QUANTIZERS)
def test_recurrence_toy(quantizer):
    result = recurrence_toy(quantizer, 0, RecurrenceConfig(m=10, n=20, lr=0.05, steps=20000))
    summary = result.summary
    steps = result.steps
    assert result.at_optimum.shape == (steps + 1,)
    # REC paper / spec §6: the optimum is visited, also in the last quarter, and Q(w_t) is not eventually constant.
    assert summary["visits_last_quarter"] > 0
    assert summary["first_visit"] < steps // 4
    assert summary["distinct_states_last_quarter"] > 1
    assert summary["n_visits"] == int(result.at_optimum.sum())
    # With v = v*, the quantized optimum is the best quantized point: no visited state beats it, visits attain it.
    assert result.loss_q.min() >= result.optimum_loss - 1e-12
    np.testing.assert_allclose(result.loss_q[result.at_optimum], result.optimum_loss, atol=1e-12)
    np.testing.assert_array_equal(result.hamming[result.at_optimum], 0.0)


@pytest.mark.parametrize("quantizer", RECURRENCE_QUANTIZERS)
def test_recurrence_toy_recurs_with_v_trained_too(quantizer):
    # The toy's second documented choice (v takes true-gradient steps): the REC claims hold as well, at the short
    # length the theory suite's tests run.
    result = recurrence_toy(quantizer, 0, RecurrenceConfig(steps=2000, train_v=True))
    assert result.summary["train_v"] is True
    assert result.summary["visits_last_quarter"] > 0 and result.summary["distinct_states_last_quarter"] > 1


def test_unknown_quantizer_is_rejected():
    with pytest.raises(ConfigError, match="unknown quantizer 'quaternary'"):
        recurrence_toy("quaternary", 0)
