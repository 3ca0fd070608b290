"""Activation quantizers and estimators against their definitions on hand-picked points (spec §2, §5)."""

import pytest
import torch

from qbench.errors import BitsError, ConfigError
from qbench.quant import activation as aq


def _grads(module, x):
    x = x.clone().requires_grad_(True)
    y = module(x)
    y.backward(torch.ones_like(y))
    return y.detach(), x.grad


def test_quant_relu_forward_ceil_convention():
    alpha, bits = 0.5, 2  # L = 3, levels 0, .5, 1, 1.5
    x = torch.tensor([-1.0, 0.0, 0.1, 0.5, 0.51, 1.0, 1.2, 1.5, 1.6, 9.0])
    y = aq.quant_relu(x, alpha, bits)
    # σ(x) = 0 for x ≤ 0; kα for (k−1)α < x ≤ kα; Lα above.
    assert y.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.5, 1.5, 1.5, 1.5]


@pytest.mark.parametrize(
    "estimator,expected",
    [
        ("identity", [1, 1, 1, 1, 1, 1]),
        ("relu", [0, 0, 1, 1, 1, 1]),
        ("clipped_relu", [0, 0, 1, 1, 0, 0]),
    ],
)
def test_estimator_backward_hand_points(estimator, expected):
    # points: below 0, at 0, inside, at the top boundary Lα = 1.5, just above, far above
    x = torch.tensor([-0.3, 0.0, 0.7, 1.5, 1.5001, 4.0])
    m = aq.QuantReLU(2, estimator=estimator, alpha=0.5)
    _, gx = _grads(m, x)
    assert gx.tolist() == [float(e) for e in expected]


@pytest.mark.parametrize(
    "variant,inside",
    [("mean", lambda x, a, b: 2 ** (b - 1)), ("exact", lambda x, a, b: float(torch.ceil(torch.tensor(x / a)))),
     ("pact", lambda x, a, b: 0.0), ("min", lambda x, a, b: 1.0)],
)
def test_alpha_gradient_variants(variant, inside):
    bits, alpha = 2, 0.5
    L = 2**bits - 1
    x = torch.tensor([-0.2, 0.3, 0.9, 1.5, 2.0])
    g_out = torch.tensor([1.0, 2.0, -1.0, 0.5, 3.0])
    m = aq.QuantReLU(bits, estimator="clipped_relu", alpha=alpha, learn_alpha=True, alpha_grad=variant,
                     alpha_grad_scale=0.01, alpha_grad_clip=1.0)
    y = m(x)
    y.backward(g_out)
    dsig = [0.0] + [inside(v, alpha, bits) for v in (0.3, 0.9, 1.5)] + [float(L)]
    expected = 0.01 * sum(g * d for g, d in zip(g_out.tolist(), dsig))
    assert float(m.alpha.grad) == pytest.approx(max(-1.0, min(1.0, expected)))


def test_alpha_gradient_is_clamped_and_alpha_clamped_each_forward():
    m = aq.QuantReLU(1, learn_alpha=True, alpha=1.0)
    x = torch.full((10_000,), 5.0)  # all above: ∂σ/∂α = L = 1, sum = 1e4 → 0.01·1e4 = 100 → clamp to 1
    m(x).sum().backward()
    assert float(m.alpha.grad) == 1.0
    with torch.no_grad():
        m.alpha.fill_(100.0)
    m(x)
    assert float(m.alpha.detach()) == 5.0
    with torch.no_grad():
        m.alpha.fill_(-1.0)
    m(x)
    assert float(m.alpha.detach()) == pytest.approx(1e-3)


def test_fixed_alpha_is_a_buffer_not_a_parameter():
    m = aq.QuantReLU(2)
    assert "alpha" in dict(m.named_buffers()) and not list(m.parameters())
    assert float(m.alpha) == pytest.approx(aq.ALPHA_INIT[2])


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_alpha_table_is_near_the_half_normal_mse_optimum(bits):
    # Independent oracle: brute-force MSE over a fine α grid on half-normal samples.
    x = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).abs()
    L = 2**bits - 1
    grid = torch.linspace(0.5, 1.5, 401, dtype=torch.float64) * aq.ALPHA_INIT[bits]
    mse = torch.stack([(x - a * torch.clamp(torch.round(x / a), 0, L)).pow(2).mean() for a in grid])
    best = float(grid[mse.argmin()])
    assert aq.optimal_alpha(bits) == pytest.approx(best, rel=0.01)
    assert aq.ALPHA_INIT[bits] == pytest.approx(best, rel=0.015)


def test_other_bit_widths_get_a_computed_alpha():
    a3 = aq.QuantReLU(3).alpha
    assert aq.ALPHA_INIT[4] < float(a3) < aq.ALPHA_INIT[2]


def test_aqe_at_half_equals_bnn_ste():
    a = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.7])
    m = aq.AQEActivation(1, alpha=0.5).train()
    y, g = _grads(m, a)
    assert torch.allclose(y, 0.5 * torch.where(a >= 0, 1.0, -1.0) + 0.5 * a)
    # BNN STE (Hubara et al. 2016): ∂sign/∂a ≈ 1{|a| ≤ 1}; AQE 2α·1{|a| ≤ 1} at α = ½ is exactly that.
    assert g.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_aqe_backward_scales_with_alpha_and_eval_is_hard():
    a = torch.tensor([-1.5, -0.5, 0.2, 0.9, 1.2])
    m = aq.AQEActivation(2, alpha=0.8).train()
    _, g = _grads(m, a)
    assert torch.allclose(g, torch.tensor([0.0, 1.6, 1.6, 1.6, 0.0]))
    m.eval()
    y = m(a)
    assert y.tolist() == [-1.0, 0.0, 0.0, 1.0, 1.0]  # ternary, Δ = 0.5


def test_aqe_h_power_of_two_levels_at_3_bits():
    a = torch.tensor([0.05, 0.13, 0.3, 0.4, 0.7, 0.8, 2.0, -0.3])
    # levels {0, ¼, ½, 1}; thresholds ⅛, ⅜, ¾
    assert aq.aqe_h(a, 3).tolist() == [0.0, 0.25, 0.25, 0.5, 0.5, 1.0, 1.0, -0.25]


def test_input_quantizer_signed_unsigned_and_eval_uses_running_range():
    x = torch.tensor([-1.0, -0.2, 0.0, 0.4, 1.0])
    q = aq.InputQuantizer(2, signed=True).train()
    y = q(x)
    assert y.tolist() == [-1.0, 0.0, 0.0, 0.0, 1.0]  # L = 1: grid {−1, 0, 1}·max|x|
    u = aq.InputQuantizer(2, signed=False).train()
    z = u(torch.tensor([0.0, 0.2, 0.5, 0.9]))
    assert torch.allclose(z, torch.tensor([0.0, 0.3, 0.6, 0.9]))  # L = 3, s = 0.3
    q.eval()
    assert torch.equal(q(x * 10), torch.tensor([-1.0, -1.0, 0.0, 1.0, 1.0]))  # clipped to the running range 1.0
    xg = (x * 10).requires_grad_(True)
    q(xg).sum().backward()
    assert xg.grad.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="clipped_relu"):
        aq.QuantReLU(2, estimator="tanh")
    with pytest.raises(BitsError, match="A32"):
        aq.QuantReLU(0)
