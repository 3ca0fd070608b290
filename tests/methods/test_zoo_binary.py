"""The binary/ternary zoo (spec §10): BinaryConnect, BNN, XNOR-Net/BWN, TWN, BinaryRelax, IR-Net, Bi-Real, ProxQuant.

Every quantizer and estimator is checked against its paper's formula on hand-picked points and against an independent
oracle: brute force for the per-channel scale, autograd of a hand-written surrogate or finite differences for the
surrogate gradients, a float twin network for "the gradient taken at Q(w)". Update rules (clipping, prox, relaxation)
are checked exactly; schedules at their endpoints.
"""

import functools
import itertools
import math

import pytest
import timm
import torch
from torch import nn

import _tiny
import qbench
from _tiny import mid_latent as _latent, setup_tiny
import qbench.run.models  # noqa: F401  (registers lenet5 into timm)
from qbench.theory import gaussian as theory
from qbench.errors import BitsError, ConfigError
from qbench.quant import sign as qs
from qbench.quant import weight as wq
from qbench.quant.apply import freeze_quantized, model_size_bits, quantized_layers
from qbench.config import TrainConfig
from qbench.run.train import build_optimizer, train_step

ZOO = ("binaryconnect", "bnn", "xnor", "bwn", "twn", "binaryrelax", "irnet", "bireal", "proxquant")
# a bit-width each method supports (W2 for TWN; weight-only methods at A32)
ZOO_BITS = {"binaryconnect": "W1A32", "bnn": "W1A1", "xnor": "W1A1", "bwn": "W1A32", "twn": "W2A32",
            "binaryrelax": "W2A32", "irnet": "W1A1", "bireal": "W1A1", "proxquant": "W1A32"}


def TinyNet():
    """_tiny.TinyNet with BN before each ReLU and a 3×3 mid conv of 4 channels (BNN/XNOR-style blocks)."""
    return _tiny.TinyNet(**_NET)


_NET = {"mid_channels": 4, "mid_kernel": 3, "batch_norm": True}


def _setup(method, bits, **hp):
    return setup_tiny(method, bits, net=_NET, **hp)


def _twin_grad(weight, x, y, act=None):
    """Gradient of the loss w.r.t. ``mid.weight`` of an unquantized TinyNet (same init) whose ``mid.weight`` is the
    given tensor — the independent oracle for "the gradient taken at Q(w)" (or at u, or at the float w)."""
    torch.manual_seed(0)
    twin = TinyNet()
    if act is not None:
        twin.act, twin.act2 = act(), act()
    twin.mid.weight = nn.Parameter(weight.detach().clone())
    nn.functional.cross_entropy(twin(x), y).backward()
    return twin.mid.weight.grad.detach()


def _one_line_error(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg


# ----------------------------------------------------------------------------------------------------------------------
# Estimators (qbench.quant.sign)
# ----------------------------------------------------------------------------------------------------------------------


def test_hardtanh_ste_hand_points():
    # BNN §1.3: g_r = g_q·1{|r| ≤ 1}
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0001, 3.0])
    assert qs.hardtanh_ste_grad(x).tolist() == [0, 1, 1, 1, 1, 1, 0, 0]
    assert qs.hardtanh_ste_grad(x, clip=0.5).tolist() == [0, 0, 1, 1, 1, 0, 0, 0]


def _approx_sign_F(x):
    """Bi-Real eq. 4, written piece by piece: −1 | 2x + x² | 2x − x² | 1."""
    return torch.where(x < -1, -torch.ones_like(x),
                       torch.where(x < 0, 2 * x + x * x, torch.where(x < 1, 2 * x - x * x, torch.ones_like(x))))


def test_approx_sign_grad_hand_points_and_autograd_of_the_papers_polynomial():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0], dtype=torch.float64)
    # 2 + 2x on [−1, 0), 2 − 2x on [0, 1), 0 elsewhere
    assert qs.approx_sign_grad(x).tolist() == [0.0, 0.0, 1.0, 2.0, 1.5, 0.0, 0.0]
    grid = torch.linspace(-2, 2, 4001, dtype=torch.float64).requires_grad_(True)  # includes −1, 0, 1
    _approx_sign_F(grid).sum().backward()
    assert torch.allclose(qs.approx_sign_grad(grid.detach()), grid.grad, atol=1e-12)


def test_ede_grad_is_the_derivative_of_k_tanh_tx():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for t, k in [(0.1, 10.0), (1.0, 1.0), (10.0, 1.0), (0.37, 1 / 0.37)]:
        xr = x.clone().requires_grad_(True)
        (k * torch.tanh(t * xr)).sum().backward()
        assert torch.allclose(qs.ede_grad(x, t, k), xr.grad, atol=1e-12)
        h = 1e-6  # central finite differences of the surrogate F(x) = k·tanh(t·x)
        fd = (k * torch.tanh(t * (x + h)) - k * torch.tanh(t * (x - h))) / (2 * h)
        assert torch.allclose(qs.ede_grad(x, t, k), fd, atol=1e-6)
    assert qs.ede_grad(torch.tensor([0.0]), 0.1, 10.0).item() == pytest.approx(1.0)  # k·t at 0


def test_ede_schedule_at_epochs_0_half_and_N():
    N = 10
    assert qs.ede_schedule(0, N) == pytest.approx((0.1, 10.0))  # t = T_min, k = 1/t
    assert qs.ede_schedule(N // 2, N) == pytest.approx((1.0, 1.0))  # geometric midpoint of [0.1, 10]
    assert qs.ede_schedule(N, N) == pytest.approx((10.0, 1.0))  # t = T_max, k = max(1/t, 1) = 1
    t3, k3 = qs.ede_schedule(3, N)
    assert t3 == pytest.approx(0.1 * 10 ** (3 / N * 2)) and k3 == pytest.approx(1 / t3)
    # log10 t is linear in the epoch with slope log10(T_max/T_min)/N
    logs = [math.log10(qs.ede_schedule(i, N)[0]) for i in range(N + 1)]
    assert all(b - a == pytest.approx(2 / N) for a, b in zip(logs, logs[1:]))
    assert qs.ede_schedule(N // 2, N, t_min=1e-3)[0] == pytest.approx(0.1)  # the authors' code's T_min


@pytest.mark.parametrize("estimator,fn", [
    ("hardtanh", qs.hardtanh_ste_grad),
    ("approx_sign", qs.approx_sign_grad),
    ("ede", functools.partial(qs.ede_grad, t=0.5, k=2.0)),
])
def test_sign_activation_forward_and_backward(estimator, fn):
    m = qs.SignActivation(estimator)
    m.set_ede(0.5, 2.0)
    x = torch.tensor([-2.0, -0.7, -1e-3, 0.0, 0.3, 0.99, 1.5]).requires_grad_(True)
    g = torch.tensor([0.5, -1.0, 2.0, 1.5, -0.25, 3.0, 1.0])
    y = m(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]  # sign(0) = +1: always two levels
    y.backward(g)
    assert torch.allclose(x.grad, g * fn(x.detach()))


def test_xnor_sample_scale_forward_and_backward():
    m = qs.SignActivation("hardtanh", scale="sample")
    x = torch.tensor([[[-0.5, 2.0], [0.25, -1.25]], [[3.0, -3.0], [0.5, 0.5]]]).requires_grad_(True)
    g = torch.arange(8.0).reshape(2, 2, 2)
    y = m(x)
    beta = torch.tensor([(0.5 + 2.0 + 0.25 + 1.25) / 4, (3 + 3 + 0.5 + 0.5) / 4]).reshape(2, 1, 1)  # mean|x_n|
    assert torch.equal(y, beta * torch.where(x >= 0, 1.0, -1.0))
    y.backward(g)
    assert torch.allclose(x.grad, g * beta * (x.detach().abs() <= 1))  # β a constant in the backward


def test_estimators_plug_into_the_theory_module():
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    for name in qs.SIGN_ESTIMATORS:
        fn = qs.estimator_grad(name, t=2.0, k=1.0)
        assert torch.equal(theory.estimator_derivative(fn)(x), fn(x))
    assert torch.equal(qs.estimator_grad("ede", t=2.0, k=1.0)(x), qs.ede_grad(x, 2.0, 1.0))


def test_bad_estimator_inputs_are_one_line_errors():
    with pytest.raises(ConfigError) as exc:
        qs.SignActivation("nope")
    _one_line_error(exc, "hardtanh", "approx_sign", "ede")
    with pytest.raises(ConfigError) as exc:
        qs.SignActivation("ede", scale="channel")
    _one_line_error(exc, "sample")
    with pytest.raises(ConfigError) as exc:
        qs.ScaledSignWeight(grad="exact")
    _one_line_error(exc, "xnor", "magnitude_aware")
    with pytest.raises(ConfigError) as exc:
        qs.ede_schedule(0, 0)
    _one_line_error(exc, "epochs")
    with pytest.raises(ConfigError) as exc:
        qs.ede_schedule(0, 10, t_min=10.0, t_max=0.1)
    _one_line_error(exc, "t_min")


# ----------------------------------------------------------------------------------------------------------------------
# Per-output-channel binary weights (XNOR-Net / BWN, Bi-Real)
# ----------------------------------------------------------------------------------------------------------------------


def test_channel_binary_is_the_brute_force_optimum_per_channel(gen):
    w = torch.randn(3, 1, 2, 2, generator=gen, dtype=torch.float64)
    q = qs.channel_binary(w)
    alphas = torch.linspace(0, 3, 30001, dtype=torch.float64)
    for c in range(3):
        wc = w[c].flatten()
        best = (float("inf"), None, None)
        for signs in itertools.product((-1.0, 1.0), repeat=wc.numel()):  # every B ∈ {±1}⁴ and α on a fine grid
            B = torch.tensor(signs, dtype=torch.float64)
            err = ((wc[None, :] - alphas[:, None] * B[None, :]) ** 2).sum(1)
            i = int(err.argmin())
            if err[i] < best[0]:
                best = (float(err[i]), float(alphas[i]), B)
        _, alpha, B = best
        assert torch.equal(q[c].flatten().sign(), B)
        assert q[c].abs().unique().item() == pytest.approx(alpha, abs=1e-4)  # grid step 1e-4
        assert q[c].abs().unique().item() == pytest.approx(float(wc.abs().mean()))  # ‖w_c‖₁/n
    assert qs.channel_abs_mean(w).shape == (3, 1, 1, 1)


def test_scaled_sign_weight_backward_rules():
    w = torch.tensor([[0.5, -1.5, 0.25, -0.75], [2.0, 0.1, -0.2, 0.3]], dtype=torch.float64)
    g = torch.tensor([[1.0, 2.0, -1.0, 0.5], [-2.0, 1.0, 3.0, 0.25]], dtype=torch.float64)
    alpha = w.abs().mean(1, keepdim=True)
    inside = (w.abs() <= 1).to(w.dtype)
    expected = {
        "xnor": g * (1 / 4 + alpha * inside),  # XNOR-Net §3.1: ∂C/∂W̃·(1/n + α·1{|W| ≤ 1})
        "magnitude_aware": g * alpha * inside,  # Bi-Real §3.3: ∂L/∂W_b·α·1{|W| ≤ 1}
    }
    # "autograd": the exact chain rule through α(w), from a hand-written reference with a clip-STE sign
    wr = w.clone().requires_grad_(True)
    clipped = wr.clamp(-1, 1)
    ref = wr.abs().mean(1, keepdim=True) * (wr.detach().sign() + clipped - clipped.detach())
    ref.backward(g)
    expected["autograd"] = wr.grad
    for rule, grad in expected.items():
        latent = w.clone().requires_grad_(True)
        param = qs.ScaledSignWeight(grad=rule)
        out = param(latent)
        assert torch.allclose(out.detach(), alpha * w.sign())
        out.backward(g)
        assert torch.allclose(latent.grad, grad), rule
        assert torch.equal(param.hard(w), qs.channel_binary(w))


# ----------------------------------------------------------------------------------------------------------------------
# BinaryConnect, BNN
# ----------------------------------------------------------------------------------------------------------------------


def test_binaryconnect_step_cancels_outside_and_clips_exactly():
    model, method, x, y = _setup("binaryconnect", "W1A32")
    with torch.no_grad():
        _latent(model)[0, 0].fill_(1.5)  # outside [−1, 1]: gradient cancelled, then clipped back to 1
    w0 = _latent(model).detach().clone()
    g = _twin_grad(wq.sign_nonzero(w0), x, y)  # the gradient at w_b = sign(w) (eq. 1)
    opt = torch.optim.SGD(method.param_groups(model), lr=0.3, momentum=0.0)
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    expected = torch.clamp(w0 - 0.3 * g * (w0.abs() <= 1), -1, 1)  # Algorithm 1: w ← clip(w − η·∂C/∂w_b)
    assert torch.allclose(_latent(model).detach(), expected, atol=1e-7)
    assert (_latent(model)[0, 0] == 1.0).all()
    assert (expected.abs() == 1).any() and (g[0, 0] != 0).any()  # clipping and cancellation both exercised
    model.eval()
    assert torch.equal(model.mid.weight, wq.sign_nonzero(_latent(model).detach()))


def test_binaryconnect_stochastic_probability_is_the_hard_sigmoid():
    from qbench.methods.binaryconnect import StochasticSignWeight, hard_sigmoid

    w = torch.tensor([-2.0, -0.5, 0.0, 0.5, 0.9, 2.0])
    assert hard_sigmoid(w).tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 0.95, 1.0])
    param = StochasticSignWeight()
    torch.manual_seed(0)
    n = 20000
    draws = torch.stack([param(w) for _ in range(n)])
    assert set(draws.unique().tolist()) == {-1.0, 1.0}
    freq = (draws > 0).double().mean(0)
    p = hard_sigmoid(w).double()
    assert ((freq - p).abs() <= 5 * torch.sqrt(p * (1 - p) / n) + 1e-12).all()  # eq. 2, within 5σ
    param.eval()
    assert torch.equal(param(w), wq.sign_nonzero(w))  # evaluation: deterministic sign


def test_bnn_step_and_sign_activations():
    model, method, x, y = _setup("bnn", "W1A1")
    assert isinstance(model.act, qs.SignActivation) and model.act.estimator == "hardtanh"
    with torch.no_grad():
        _latent(model).mul_(8)  # some |w| > 1
    w0 = _latent(model).detach().clone()
    g = _twin_grad(wq.sign_nonzero(w0), x, y, act=lambda: qs.SignActivation("hardtanh"))
    opt = torch.optim.SGD(method.param_groups(model), lr=0.2, momentum=0.0)
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    expected = torch.clamp(w0 - 0.2 * g * (w0.abs() <= 1), -1, 1)  # Algorithm 1 with the STE, then Clip
    assert torch.allclose(_latent(model).detach(), expected, atol=1e-7)
    assert _latent(model).abs().max() <= 1.0
    model.eval()
    assert set(model.mid.weight.unique().tolist()) <= {-1.0, 1.0}
    h = model.act(model.bn1(model.conv(x)))
    assert set(h.unique().tolist()) == {-1.0, 1.0}


# ----------------------------------------------------------------------------------------------------------------------
# XNOR-Net, BWN, TWN
# ----------------------------------------------------------------------------------------------------------------------


def test_xnor_uses_channel_scales_and_scaled_sign_inputs():
    model, method, x, y = _setup("xnor", "W1A1")
    assert model.act.scale == "sample" and model.act2.scale == "sample"
    model.eval()
    assert torch.equal(model.mid.weight, qs.channel_binary(_latent(model).detach()))
    h = model.act(model.bn1(model.conv(x)))
    for n in range(h.shape[0]):  # every sample takes exactly ±β_n
        assert h[n].abs().unique().numel() == 1
    # the weight gradient follows XNOR-Net §3.1, checked against the twin gradient at α_c·sign(w)
    model.train()
    w0 = _latent(model).detach().clone()
    g = _twin_grad(qs.channel_binary(w0), x, y, act=lambda: qs.SignActivation("hardtanh", scale="sample"))
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    alpha = qs.channel_abs_mean(w0)
    assert torch.allclose(_latent(model).grad, g * (1 / w0[0].numel() + alpha * (w0.abs() <= 1)), atol=1e-6)


def test_bwn_is_weight_only():
    with pytest.raises(BitsError) as exc:
        _setup("bwn", "W1A1")
    _one_line_error(exc, "quantizes weights only", "A32")
    model, _, _, _ = _setup("bwn", "W1A32")
    assert isinstance(model.act, nn.ReLU) and not model.qbench_info.input_quantized
    model.eval()
    assert torch.equal(model.mid.weight, qs.channel_binary(_latent(model).detach()))


def twn_ternary(w, threshold=0.7):
    """The twn method's quantizer: TWN's strict support |w| > Δ (arXiv 1605.04711 eq. 5)."""
    return wq.ternary_twn(w, threshold, strict=True)


def test_twn_formula_hand_picked_and_optimal_scale():
    w = torch.tensor([0.1, -0.5, 0.9, -1.3, 0.05, 0.6], dtype=torch.float64)
    # Δ = 0.7·mean|w| = 0.7·0.575 = 0.4025; I = {−0.5, 0.9, −1.3, 0.6}; α = 3.3/4 = 0.825
    assert twn_ternary(w).tolist() == pytest.approx([0.0, -0.825, 0.825, -0.825, 0.0, 0.825])
    # α is the L2-optimal scale for that support (grid oracle)
    t = torch.tensor([0.0, -1, 1, -1, 0, 1], dtype=torch.float64)
    alphas = torch.linspace(0, 2, 200001, dtype=torch.float64)
    best = alphas[((w[None] - alphas[:, None] * t[None]) ** 2).sum(1).argmin()]
    assert float(best) == pytest.approx(0.825, abs=1e-5)
    # the paper's test is strict, |w| > Δ: a weight exactly at Δ is zeroed (ternary_twn's ≥ keeps it)
    tie = torch.tensor([0.75, 0.25, -1.0, 2.0])  # mean|w| = 1, Δ = 0.75 at threshold 0.75
    assert twn_ternary(tie, 0.75).tolist() == [0.0, 0.0, -1.5, 1.5]
    assert wq.ternary_twn(tie, 0.75)[0] != 0


def test_twn_method_is_w2_weight_only():
    model, _, _, _ = _setup("twn", "W2A32")
    model.eval()
    assert torch.equal(model.mid.weight, twn_ternary(_latent(model).detach()))
    assert model.mid.weight.unique().numel() == 3
    for bad in ("W1A32", "W2A2"):
        with pytest.raises(BitsError) as exc:
            _setup("twn", bad)
        _one_line_error(exc, "twn")
    with pytest.raises(ConfigError) as exc:
        qbench.create_method("twn", threshold=-1)
    _one_line_error(exc, "0.7")


# ----------------------------------------------------------------------------------------------------------------------
# BinaryRelax
# ----------------------------------------------------------------------------------------------------------------------


def test_binaryrelax_lambda_schedule_and_hard_phase():
    m = qbench.create_method("binaryrelax")
    # authors' code: λ ← 1.04·λ before each phase-I epoch, from λ₀ = 1
    assert [m.lambda_at(e) for e in range(3)] == pytest.approx([1.04, 1.04**2, 1.04**3])
    assert m.hard_start(200) == 150 and m.hard_start(2) == 1 and m.hard_start(10) == 7
    model, method, _, _ = _setup("binaryrelax", "W1A32")
    param = model.mid.parametrizations.weight[0]
    method.on_epoch_start(model, 149, 200)
    assert not param.hard_phase and param.lam == pytest.approx(1.04**150)
    method.on_epoch_start(model, 150, 200)
    assert param.hard_phase


@pytest.mark.parametrize("bits,Q", [("W1A32", wq.binary), ("W2A32", wq.ternary_exact)])
def test_binaryrelax_forward_at_u_gradient_to_w(bits, Q):
    model, method, x, y = _setup("binaryrelax", bits)
    method.on_epoch_start(model, 4, 10)  # λ = 1.04⁵
    lam = 1.04**5
    w = _latent(model).detach().clone()
    u = (w + lam * Q(w)) / (1 + lam)  # the relaxed point (BinaryRelax §3)
    assert torch.allclose(model.mid.weight, u)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    assert torch.allclose(_latent(model).grad, _twin_grad(u, x, y), atol=1e-6)  # w ← w − γ∇f(u)
    model.eval()
    assert torch.equal(model.mid.weight, Q(w))  # evaluation: hard Q(w)
    model.train()
    method.on_epoch_start(model, 8, 10)  # phase II
    assert torch.equal(model.mid.weight, Q(w))


# ----------------------------------------------------------------------------------------------------------------------
# ProxQuant
# ----------------------------------------------------------------------------------------------------------------------


def test_prox_binary_hand_points_and_brute_force_argmin():
    from qbench.methods.proxquant import prox_binary

    w = torch.tensor([0.3, -0.8, 0.95, -0.02, 1.0, 1.7], dtype=torch.float64)
    assert prox_binary(w, 0.1).tolist() == pytest.approx([0.4, -0.9, 1.0, -0.12, 1.0, 1.6])
    # prox_{τR}(w) = argmin_z ½(z − w)² + τ·min|z ∓ 1|, by brute force on a grid (compared by objective value: at
    # w = 0 the non-convex R_bin has two minimisers ±z, sign(0) = +1 picks the positive one)
    z = torch.linspace(-3, 3, 600001, dtype=torch.float64)

    def objective(v, wi, tau):
        return 0.5 * (v - wi) ** 2 + tau * torch.minimum((v - 1).abs(), (v + 1).abs())

    for tau in (0.05, 0.3, 1.2):
        for wi in w.tolist() + [-1.4, 0.0, 0.1]:
            p = prox_binary(torch.tensor([wi], dtype=torch.float64), tau)
            assert float(objective(p, wi, tau)) == pytest.approx(float(objective(z, wi, tau).min()), abs=1e-9)
            assert abs(float(p) - float(z[objective(z, wi, tau).argmin()])) < 2e-5 or wi == 0.0


def test_proxquant_step_is_gradient_at_float_w_then_prox_then_clip():
    from qbench.methods.proxquant import prox_binary

    model, method, x, y = _setup("proxquant", "W1A32", reg_rate=0.5)
    method.on_epoch_start(model, 3, 10)  # λ_t = reg_rate·epoch = 1.5 (code schedule)
    with torch.no_grad():
        _latent(model)[0].mul_(20)  # some weights beyond ±1
    w0 = _latent(model).detach().clone()
    assert torch.equal(model.mid.weight, w0)  # the training forward uses the float weights
    g = _twin_grad(w0, x, y)
    opt = torch.optim.SGD(method.param_groups(model), lr=0.1, momentum=0.0)
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    assert method.step_lr == 0.1
    expected = torch.clamp(prox_binary(w0 - 0.1 * g, 0.1 * 1.5), -1, 1)  # prox_{η·λ_t·R_bin}, then clip
    assert torch.allclose(_latent(model).detach(), expected, atol=1e-6)
    assert (expected.abs() == 1).any() and ((expected.abs() < 1) & (expected != 0)).any()
    model.eval()
    assert torch.equal(model.mid.weight, wq.sign_nonzero(_latent(model).detach()))


def test_proxquant_freezes_to_sign_at_the_end_and_counts_steps():
    model, method, x, y = _setup("proxquant", "W1A32")
    assert method.freeze_start(300) == 200 and method.freeze_start(2) == 1
    method.on_epoch_start(model, 6, 10)  # ⌊(2/3)·10⌋ = 6: hard-quantized, frozen
    w0 = _latent(model).detach().clone()
    assert torch.equal(model.mid.weight, wq.sign_nonzero(w0))
    opt = torch.optim.SGD(method.param_groups(model), lr=0.1, momentum=0.9, weight_decay=1e-4)
    fc0 = model.fc.weight.detach().clone()
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    assert _latent(model).grad is None and torch.equal(_latent(model).detach(), w0)
    assert not torch.equal(model.fc.weight.detach(), fc0)  # the rest of the network keeps training
    step_model, step_method, x, y = _setup("proxquant", "W1A32", reg_schedule="step", reg_rate=1e-3)
    opt = torch.optim.SGD(step_method.param_groups(step_model), lr=0.1)
    for _ in range(3):
        train_step(step_model, step_method, opt, x, y, criterion=nn.CrossEntropyLoss())
    assert int(step_model.mid.parametrizations.weight[0].steps) == 3 and step_method.reg_at(3) == pytest.approx(3e-3)
    assert "parametrizations.weight.0.steps" in "".join(step_model.state_dict())  # survives checkpoints


def test_proxquant_trains_its_latent_weights_without_weight_decay():
    """The authors' prox mode has no weight decay (ProxQuant main_binary_reg.py: SGD(params, lr) line 229, the Adam
    regime line 200, weight_decay = 0.0 line 204): the optimizer qbench builds gives proxquant's latent weights
    weight decay 0 and every other parameter the recipe's; the other methods keep the recipe's on theirs."""
    train = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.5)
    model, method, x, y = _setup("proxquant", "W1A32", clip_weights=False)
    opt = build_optimizer(method.param_groups(model), train)
    decay = {id(p): group["weight_decay"] for group in opt.param_groups for p in group["params"]}
    latent = _latent(model)
    assert decay.pop(id(latent)) == 0.0
    assert sorted(decay) == sorted(id(p) for p in model.parameters() if p is not latent)
    assert set(decay.values()) == {0.5}
    # the step at epoch 0 (λ_0 = 0: no prox): w ← w − η·g at the float weights, without η·wd·w
    w0 = latent.detach().clone()
    g = _twin_grad(w0, x, y)
    method.on_epoch_start(model, 0, 3)
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    assert torch.allclose(latent.detach(), w0 - 0.1 * g, atol=1e-7)
    for name in ZOO:
        if name != "proxquant":
            other, other_method, _, _ = _setup(name, ZOO_BITS[name])
            groups = build_optimizer(other_method.param_groups(other), train).param_groups
            holding = [group for group in groups if any(p is _latent(other) for p in group["params"])]
            assert [group["weight_decay"] for group in holding] == [0.5], name


# ----------------------------------------------------------------------------------------------------------------------
# IR-Net, Bi-Real
# ----------------------------------------------------------------------------------------------------------------------


def _libra_reference(w):
    """Libra-PB written out per channel: z = (w − mean)/std (unbiased), 2^round(log2 mean|z|)·sign(z)."""
    out = torch.empty_like(w)
    for c in range(w.shape[0]):
        v = w[c].flatten()
        n = v.numel()
        m = v.sum() / n
        s = torch.sqrt(((v - m) ** 2).sum() / (n - 1))
        z = (v - m) / s
        out[c] = (2.0 ** torch.round(torch.log2(z.abs().mean())) * torch.where(z >= 0, 1.0, -1.0)).reshape(w[c].shape)
    return out


def test_irnet_libra_weights_and_ede_gradient(gen):
    from qbench.methods.irnet import LibraWeight, libra_standardize

    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64) * 0.1 + 0.05
    param = LibraWeight(t=0.7, k=1 / 0.7)
    assert torch.allclose(param.hard(w), _libra_reference(w))
    z = libra_standardize(w)
    assert torch.allclose(z.reshape(4, -1).mean(1), torch.zeros(4, dtype=torch.float64), atol=1e-12)  # balanced
    # backward: sign replaced by k·tanh(t·z) and the chain rule through the standardisation (autograd oracle)
    g = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    latent = w.clone().requires_grad_(True)
    param(latent).backward(g)
    wr = w.clone().requires_grad_(True)
    flat = wr.reshape(4, -1)
    centred = flat - flat.sum(1, keepdim=True) / flat.shape[1]
    zr = (centred / torch.sqrt((centred**2).sum(1, keepdim=True) / (flat.shape[1] - 1))).reshape(w.shape)
    scale = (2.0 ** torch.round(torch.log2(zr.detach().reshape(4, -1).abs().mean(1)))).reshape(4, 1, 1, 1)
    (scale * (1 / 0.7) * torch.tanh(0.7 * zr) * g).sum().backward()
    assert torch.allclose(latent.grad, wr.grad, atol=1e-10)


def test_irnet_epoch_schedule_reaches_weights_and_activations():
    model, method, _, _ = _setup("irnet", "W1A1")
    param = model.mid.parametrizations.weight[0]
    assert (param.t, param.k) == pytest.approx((0.1, 10.0)) and model.act.estimator == "ede"
    for epoch, (t, k) in ((0, (0.1, 10.0)), (5, (1.0, 1.0)), (9, (10 ** 0.8, 1.0))):
        method.on_epoch_start(model, epoch, 10)
        for obj in (param, model.act, model.act2):
            assert (obj.t, obj.k) == pytest.approx((t, k))
    model.eval()
    assert torch.equal(model.mid.weight, _libra_reference(_latent(model).detach()))


def test_bireal_approx_sign_and_magnitude_aware_weights():
    model, method, x, y = _setup("bireal", "W1A1")
    assert model.act.estimator == "approx_sign" and model.act.scale == "none"
    w0 = _latent(model).detach().clone()
    g = _twin_grad(qs.channel_binary(w0), x, y, act=lambda: qs.SignActivation("approx_sign"))
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    assert torch.allclose(_latent(model).grad, g * qs.channel_abs_mean(w0) * (w0.abs() <= 1), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Every zoo method: export, documentation, bits, diagnostics
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_freeze_exports_hard_levels_and_same_outputs(name):
    torch.manual_seed(0)
    model = timm.create_model("lenet5", num_classes=10)
    qbench.quantize_model(model, name, ZOO_BITS[name], "quantized")
    m = model.qbench_info.method
    x = torch.randn(6, 1, 28, 28)
    opt = torch.optim.SGD(m.param_groups(model), lr=0.05)
    m.on_epoch_start(model, 0, 4)
    train_step(model, m, opt, x, torch.randint(0, 10, (6,)), criterion=nn.CrossEntropyLoss())
    model.eval()
    expected = model(x)
    hard = {n: layer.parametrizations.weight[0].hard(layer.parametrizations.weight.original).clone()
            for n, layer in quantized_layers(model)}
    freeze_quantized(model)
    assert not quantized_layers(model)
    for n, q in hard.items():
        w = model.get_submodule(n).weight.detach()
        assert torch.equal(w, q)
        per_row = max(row.unique().numel() for row in w.reshape(w.shape[0], -1))
        assert per_row <= (3 if ZOO_BITS[name].startswith("W2") else 2)
    assert torch.allclose(model(x), expected, atol=1e-5)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_methods_document_paper_policy_and_bits(name):
    cls = qbench.registry.get_method_class(name)
    assert "arXiv " in cls.paper and cls.paper_policy and cls.__doc__
    assert cls.unsupported_bits(qbench.bits.parse_bits(ZOO_BITS[name])) is None
    assert cls.unsupported_bits(qbench.bits.parse_bits("W4A4")) is not None  # binary/ternary only


def test_per_channel_levels_in_size_and_diagnostic_codes():
    model, _, _, _ = _setup("xnor", "W1A1")
    n_out = _latent(model).shape[0]
    float_bits = sum(32 * p.numel() for n, p in model.named_parameters() if "parametrizations" not in n)
    assert model_size_bits(model) == float_bits + _latent(model).numel() + 32 * n_out  # 1 bit + one α per channel
    q = qs.channel_binary(torch.tensor([[0.5, -1.0], [3.0, 1.0], [-0.2, 0.1]]))
    assert wq.level_codes(q, per_channel=True).tolist() == [[1, -1], [1, 1], [-1, 1]]  # scale-free per channel
    assert wq.level_codes(q).abs().max() > 1  # one global scale would mix the channels' α
