"""Update rules on the latent weights (qbench.quant.latent) against their formulas written out."""

import pytest
import torch

import qbench
from _tiny import TinyNet, mid_latent, setup_tiny
from qbench.quant import latent as ql


def test_latent_weights_are_the_parametrized_originals():
    model, _, _, _ = setup_tiny("ste", "W2A4")
    (latent, param), = ql.latent_weights(model)  # policy fp: only `mid` is quantized
    assert latent is mid_latent(model) and param is model.mid.parametrizations.weight[0]
    assert ql.latent_weights(TinyNet()) == []  # a model quantize_model never saw


@pytest.mark.parametrize("rho", [0.0, 0.25, 1.0])
def test_blend_is_the_convex_combination_with_the_quantized_weights(rho):
    model, _, x, _ = setup_tiny("lbw", "W2A4")
    model(x)  # the forward caches Q(w), which the blend reuses
    w = mid_latent(model).detach().clone()
    q = qbench.quant.weight.ternary_exact(w)  # LBW's 2-bit quantizer, recomputed independently
    ql.blend_latent_weights_(model, rho)
    assert torch.allclose(mid_latent(model).detach(), (1 - rho) * w + rho * q, atol=1e-7)  # BCGD spec §3
    if rho == 0.0:
        assert torch.equal(mid_latent(model).detach(), w)


def test_clip_bounds_every_latent_weight():
    model, _, _, _ = setup_tiny("ste", "W1A4")
    with torch.no_grad():
        mid_latent(model).mul_(10.0)
    w = mid_latent(model).detach().clone()
    ql.clip_latent_weights_(model, bound=0.5)
    assert torch.equal(mid_latent(model).detach(), w.clamp(-0.5, 0.5)) and (w.abs() > 0.5).any()
