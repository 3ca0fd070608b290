"""Tests of qbench.theory.quadrature: E g by Gaussian quadrature against the closed forms of spec §8 (STE paper)."""

from __future__ import annotations

import numpy as np
import torch

from qbench.theory.gaussian import expected_coarse_grad, random_instance
from qbench.theory.quadrature import QuadratureEstimator


def test_quadrature_matches_closed_forms():
    mus = {"identity": torch.ones_like, "relu": lambda x: (x > 0).double(),
           "clipped_relu": lambda x: ((x > 0) & (x < 1)).double()}
    for name, mu in mus.items():
        quad = QuadratureEstimator(mu)
        worst = 0.0
        for seed in range(30):
            inst = random_instance(5, 8, seed)
            exact = expected_coarse_grad(name, *inst.args())
            worst = max(worst, float(np.abs(quad.expected_grad(*inst.args()) - exact).max() / np.abs(exact).max()))
        # identity/relu have no jump inside a grid cell; clipped ReLU's jump at 1/‖w‖ costs O(grid spacing)
        assert worst < (1e-6 if name != "clipped_relu" else 2e-2), (name, worst)
