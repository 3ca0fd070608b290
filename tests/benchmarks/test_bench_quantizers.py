"""Micro-benchmarks (pytest-benchmark) of every weight quantizer and activation quantizer/estimator — the shared ones of
qbench.quant and the methods' own (DSQ, PACT, DoReFa, LSQ, the sign estimators, IR-Net's Libra weights, AQE, the
relaxed and stochastic weights) and the exact ternary projection's sort — forward + backward on a ResNet-18-sized
layer: weights 512×512×3×3 (layer4's conv), activations 32×256×14×14 (layer3's output).

Each benchmark also checks its result (shape, values on the quantizer's grid, at most ``levels`` distinct values,
the documented gradient, finite), so CI runs this file with ``--benchmark-disable`` (pyproject's default) as
correctness tests: every function runs once, untimed. Timing and baseline comparison (see the README):

    pytest tests/benchmarks --benchmark-enable --benchmark-autosave
    pytest tests/benchmarks --benchmark-enable --benchmark-compare --benchmark-compare-fail=median:10%

Threads: ``QBENCH_BENCH_THREADS`` (default: torch's) is fixed for the module and stored in each result's extra_info;
compare only runs taken with the same thread count on the same machine.
"""

from __future__ import annotations

import functools

import pytest
import torch

from qbench.methods.aqe import AQEWeight
from qbench.methods.binaryconnect import StochasticSignWeight
from qbench.methods.binaryrelax import RelaxedWeight
from qbench.methods.dorefa import DoReFaActivation
from qbench.methods.dsq import DSQQuantizer, DSQWeight
from qbench.methods.irnet import LibraWeight
from qbench.methods.pact import PACTActivation
from qbench.methods.proxquant import ProxQuantWeight
from qbench.quant import activation as aq
from qbench.quant import dorefa as qd
from qbench.quant import learned as ql
from qbench.quant import sign as qs
from qbench.quant import weight as wq

WEIGHT_SHAPE = (512, 512, 3, 3)
ACT_SHAPE = (32, 256, 14, 14)


def _randn(shape, seed, scale=1.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


# ------------------------------------------------------------------------------------------------ weight quantizers
# (id, quantize function, levels, cancel_outside) — every quantizer of qbench.quant.weight and how methods use it.
WEIGHT_QUANTIZERS = [
    ("binary", wq.binary, 2, None),
    ("binary_cancel", wq.binary, 2, 1.0),  # STE's 1-bit BinaryConnect cancellation 1{|w| ≤ 1}
    ("ternary_twn", wq.ternary_twn, 3, None),
    ("ternary_twn_code_scale", functools.partial(wq.ternary_twn, bcgd_code_scale=True), 3, None),
    ("ternary_exact", wq.ternary_exact, 3, None),
    ("pow2_3bit", functools.partial(wq.pow2, bits=3), 7, None),
    ("pow2_4bit", functools.partial(wq.pow2, bits=4), 15, None),
    ("pow2_4bit_refit2", functools.partial(wq.pow2, bits=4, refits=2), 15, None),
    ("uniform_2bit", functools.partial(wq.uniform, bits=2), 3, None),
    ("uniform_4bit", functools.partial(wq.uniform, bits=4), 15, None),
    ("bcgd_4bit", wq.bcgd_4bit, 15, None),
]


@pytest.mark.benchmark(group="weight quantizer fwd+bwd 512x512x3x3")
@pytest.mark.parametrize("name,fn,levels,cancel", WEIGHT_QUANTIZERS, ids=[q[0] for q in WEIGHT_QUANTIZERS])
def test_weight_quantizer(info, name, fn, levels, cancel):
    # Kaiming-like scale (std √(2/fan_in)), a few latents beyond ±1 so the cancellation has something to cancel.
    w = _randn(WEIGHT_SHAPE, 0, (2 / (512 * 9)) ** 0.5)
    w.view(-1)[:100] = 1.5
    w.requires_grad_(True)
    g = _randn(WEIGHT_SHAPE, 1)
    param = wq.StraightThroughWeight(fn, levels, cancel_outside=cancel)

    def step():
        q = param(w)
        (grad,) = torch.autograd.grad(q, w, grad_outputs=g)
        return q.detach(), grad

    q, grad = info(step)
    assert q.shape == w.shape and q.dtype == w.dtype
    assert torch.isfinite(q).all() and torch.isfinite(grad).all()
    values = q.unique()
    assert values.numel() <= levels, f"{name}: {values.numel()} distinct values > {levels}"
    # on a scaled integer grid: q = step·code; the distinct codes are at most the levels (power-of-two grids have
    # codes 1, 2, 4, … 2^{n−1}, so the largest code can exceed the number of levels while the count cannot)
    nz = q.abs()[q != 0]
    assert nz.numel() > 0
    codes = wq.level_codes(q)
    torch.testing.assert_close(codes.to(q.dtype) * nz.min(), q, rtol=1e-5, atol=0)
    assert codes.unique().numel() <= levels
    # quantizing a quantized tensor is a projection onto the same grid for the fixed-point quantizers
    if name in ("binary", "binary_cancel", "ternary_exact"):
        torch.testing.assert_close(fn(q), q, rtol=1e-5, atol=1e-8)
    # straight-through backward: the gradient taken at Q(w) reaches w unchanged (or cancelled where |w| > 1)
    expected = g if cancel is None else g * (w.detach().abs() <= cancel)
    assert torch.equal(grad, expected)
    assert param.hard(w) is not None and torch.equal(param.hard(w), q)  # cached forward value reused


# -------------------------------------------------------------------------------------------- activation quantizers
def _act_input(seed):
    return _randn(ACT_SHAPE, seed).requires_grad_(True)  # a BN-normalised pre-activation


def _run_act(module, x, g, extra=()):
    def step():
        y = module(x)
        grads = torch.autograd.grad(y, [x, *extra], grad_outputs=g)
        return y.detach(), grads

    return step


def _check_relu_grid(y, alpha, bits):
    L = 2**bits - 1
    k = y / alpha
    torch.testing.assert_close(k, torch.round(k), rtol=0, atol=1e-4)
    assert float(k.min()) >= 0 and float(k.max()) <= L + 1e-4
    assert y.unique().numel() <= 2**bits


@pytest.mark.benchmark(group="QuantReLU fwd+bwd 32x256x14x14")
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("estimator", aq.ESTIMATORS)
def test_quant_relu_estimator(info, estimator, bits):
    x, g = _act_input(2), _randn(ACT_SHAPE, 3)
    m = aq.QuantReLU(bits, estimator=estimator)
    y, (gx,) = info(_run_act(m, x, g))
    alpha = float(m.alpha)
    assert y.shape == x.shape
    _check_relu_grid(y, alpha, bits)
    xd, top = x.detach(), (2**bits - 1) * alpha
    mask = {"identity": torch.ones_like(xd, dtype=torch.bool), "relu": xd > 0,
            "clipped_relu": (xd > 0) & (xd <= top)}[estimator]
    assert torch.isfinite(gx).all()
    assert torch.equal(gx, g * mask)


@pytest.mark.benchmark(group="QuantReLU learned alpha fwd+bwd 32x256x14x14")
@pytest.mark.parametrize("alpha_grad", aq.ALPHA_GRADS)
def test_quant_relu_learned_alpha(info, alpha_grad):
    bits = 4
    x, g = _act_input(4), _randn(ACT_SHAPE, 5)
    m = aq.QuantReLU(bits, estimator="clipped_relu", learn_alpha=True, alpha_grad=alpha_grad)
    y, (gx, ga) = info(_run_act(m, x, g, extra=(m.alpha,)))
    assert y.shape == x.shape
    _check_relu_grid(y, float(m.alpha.detach()), bits)
    assert torch.isfinite(gx).all() and torch.isfinite(ga).all()
    assert ga.shape == m.alpha.shape and abs(float(ga)) <= m.alpha_grad_clip
    if alpha_grad != "pact":
        assert float(ga) != 0.0  # the inside part contributes for every variant but PACT's
    # reference: BCGD code's ∂σ/∂α
    xd, a = x.detach().double(), float(m.alpha)
    L = 2**bits - 1
    inside, above = (xd > 0) & (xd <= L * a), xd > L * a
    d_in = {"mean": torch.full_like(xd, 2.0 ** (bits - 1)), "exact": torch.ceil(xd / a),
            "pact": torch.zeros_like(xd), "min": torch.ones_like(xd)}[alpha_grad]
    ref = (g.double() * torch.where(inside, d_in, L * above.double())).sum() * m.alpha_grad_scale
    ref = float(ref.clamp(-m.alpha_grad_clip, m.alpha_grad_clip))
    assert float(ga) == pytest.approx(ref, rel=1e-3, abs=1e-5)


@pytest.mark.benchmark(group="AQE activation fwd+bwd 32x256x14x14")
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_aqe_activation(info, bits):
    x, g = _act_input(6), _randn(ACT_SHAPE, 7)
    m = aq.AQEActivation(bits, alpha=0.5).train()
    y, (gx,) = info(_run_act(m, x, g))
    xd = x.detach()
    h = aq.aqe_h(xd, bits)
    assert y.shape == x.shape
    torch.testing.assert_close(y, 0.5 * h + 0.5 * xd)  # ĥ = α·h(a) + (1−α)·a (AQE eq. 18)
    assert h.unique().numel() <= m.levels
    assert torch.isfinite(gx).all()
    torch.testing.assert_close(gx, g * (2 * 0.5) * (xd.abs() <= 1))  # 2α·1{|a| ≤ 1} (eq. 22)
    m.eval()
    with torch.no_grad():
        assert m(xd).unique().numel() <= m.levels


@pytest.mark.benchmark(group="InputQuantizer fwd+bwd 32x256x14x14")
@pytest.mark.parametrize("signed,bits", [(True, 4), (False, 4), (True, 1)], ids=["signed4", "unsigned4", "signed1"])
def test_input_quantizer(info, signed, bits):
    x = _randn(ACT_SHAPE, 8)
    if not signed:
        x = x.clamp_min(0)  # pooled ReLU features
    x.requires_grad_(True)
    g = _randn(ACT_SHAPE, 9)
    m = aq.InputQuantizer(bits, signed=signed).train()
    y, (gx,) = info(_run_act(m, x, g))
    assert y.shape == x.shape and torch.isfinite(y).all()
    max_levels = (2**bits - 1 if signed and bits > 1 else 2) if signed else 2**bits
    assert y.unique().numel() <= max_levels
    if signed and bits == 1:
        assert (y.abs() - x.detach().abs().mean()).abs().max() < 1e-6  # mean|x|·sign(x)
        assert (y >= 0).sum() > 0 and (y < 0).sum() > 0
    else:
        L = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        step = x.detach().abs().max() / L
        k = y / step
        torch.testing.assert_close(k, torch.round(k), rtol=0, atol=1e-3)
        assert float(k.abs().max()) <= L + 1e-3
        if not signed:
            assert float(y.min()) >= 0
    # straight through inside the range [−max|x|, max|x|] (the training range is the batch's own): everywhere here
    assert torch.isfinite(gx).all() and torch.equal(gx, g)


# ------------------------------------------------------------------ the zoo's quantizers and estimators (issue #13)
# Every weight parametrization and activation quantizer a registered method places has a forward+backward benchmark
# here, checked as above (grid, levels, the documented gradient); `qbench list methods` names their methods.


def _weights(seed=10):
    w = _randn(WEIGHT_SHAPE, seed, (2 / (512 * 9)) ** 0.5)
    w.view(-1)[:100] = 1.5  # a few latents beyond ±1 (cancellation, clipping)
    return w.requires_grad_(True)


def _run_weight(param, w, g, extra=()):
    def step():
        q = param(w)
        grads = torch.autograd.grad(q, [w, *extra], grad_outputs=g)
        return q.detach(), grads

    return step


def _per_channel_values(q):
    return max(row.unique().numel() for row in q.reshape(q.shape[0], -1))


# (id, parametrization factory, at most this many values (per output channel when per_channel), extra parameters)
ZOO_WEIGHTS = [
    ("xnor", lambda: qs.ScaledSignWeight("xnor")),
    ("magnitude_aware", lambda: qs.ScaledSignWeight("magnitude_aware")),
    ("scaled_sign_autograd", lambda: qs.ScaledSignWeight("autograd")),
    ("libra_ede", lambda: LibraWeight(t=0.5, k=2.0)),
    ("dorefa_1bit", lambda: qd.DoReFaWeight(1)),
    ("dorefa_4bit", lambda: qd.DoReFaWeight(4)),
    ("lsq_4bit", lambda: ql.LearnedStepWeight(4)),
    ("lsq_4bit_per_channel", lambda: ql.LearnedStepWeight(4, per_channel=True)),
    ("dsq_4bit", lambda: DSQWeight(4)),
    ("aqe_2bit", lambda: AQEWeight(2, 0.5, "twn")),
    ("binaryrelax_exact", lambda: RelaxedWeight(wq.ternary_exact, 3, lam=1.04)),
    ("stochastic_sign", lambda: StochasticSignWeight(cancel_outside=1.0)),
    ("proxquant", lambda: ProxQuantWeight()),
]


@pytest.mark.benchmark(group="zoo weight quantizer fwd+bwd 512x512x3x3")
@pytest.mark.parametrize("name,make", ZOO_WEIGHTS, ids=[q[0] for q in ZOO_WEIGHTS])
def test_zoo_weight_quantizer(info, name, make):
    w, g = _weights(), _randn(WEIGHT_SHAPE, 11)
    param = make().train()
    param.hard(w)  # data-dependent initialisation (LSQ's step, DSQ's range) from the weights, as at registration
    extra = [p for p in param.parameters() if p.requires_grad]
    q, grads = info(_run_weight(param, w, g, extra))
    assert q.shape == w.shape and torch.isfinite(q).all() and all(torch.isfinite(t).all() for t in grads)
    hard = param.hard(w)
    values = _per_channel_values(hard) if param.per_channel else hard.unique().numel()
    assert values <= param.levels, f"{name}: {values} values > {param.levels}"
    gw = grads[0]
    if name == "stochastic_sign":  # eq. 2 sampled, straight through with the 1{|w| ≤ 1} cancellation
        assert set(q.unique().tolist()) <= {-1.0, 1.0} and torch.equal(gw, g * (w.detach().abs() <= 1))
    elif name == "proxquant":  # the training forward is the float weight itself
        assert torch.equal(q, w.detach()) and torch.equal(gw, g)
    elif name == "binaryrelax_exact":  # u = (w + λQ(w))/(1 + λ), gradient straight through (Algorithm 1)
        torch.testing.assert_close(q, (w.detach() + 1.04 * hard) / 2.04)
        assert torch.equal(gw, g)
    elif name == "magnitude_aware":  # Bi-Real §3.3: g·α_c·1{|w| ≤ 1}
        alpha = qs.channel_abs_mean(w.detach())
        torch.testing.assert_close(gw, g * alpha * (w.detach().abs() <= 1))
    elif name == "lsq_4bit":  # eq. 5: straight through strictly inside the grid
        vs = w.detach() / param.step.detach()
        assert torch.equal(gw, g * ((vs > -param.q_n) & (vs < param.q_p)))
    elif name != "aqe_2bit":
        torch.testing.assert_close(q, hard)  # the training forward is the hard value


# (id, module factory, at most this many values, gradient check or None)
ZOO_ACTIVATIONS = [
    ("sign_hardtanh", lambda: qs.SignActivation("hardtanh"), 2, lambda x: (x.abs() <= 1).float()),
    ("sign_approx_sign", lambda: qs.SignActivation("approx_sign"), 2, qs.approx_sign_grad),
    ("sign_ede", lambda: qs.SignActivation("ede", t=0.5, k=2.0), 2, lambda x: qs.ede_grad(x, 0.5, 2.0)),
    ("sign_sample_scaled", lambda: qs.SignActivation("hardtanh", scale="sample"), None, None),
    ("pact_4bit", lambda: PACTActivation(4, alpha_init=3.0), 16, lambda x: ((x >= 0) & (x < 3.0)).float()),
    ("dorefa_4bit", lambda: DoReFaActivation(4), 16, lambda x: ((x > 0) & (x < 1)).float()),
    ("lsq_4bit", lambda: ql.LearnedStepQuantizer(4), 16, None),
    ("lsq_4bit_signed", lambda: ql.LearnedStepQuantizer(4, signed=True), 16, None),
    ("dsq_4bit", lambda: DSQQuantizer(4), 16, None),
    ("dsq_4bit_soft", lambda: DSQQuantizer(4, train_forward="soft"), None, None),
]


@pytest.mark.benchmark(group="zoo activation quantizer fwd+bwd 32x256x14x14")
@pytest.mark.parametrize("name,make,levels,mu", ZOO_ACTIVATIONS, ids=[a[0] for a in ZOO_ACTIVATIONS])
def test_zoo_activation_quantizer(info, name, make, levels, mu):
    x, g = _act_input(12), _randn(ACT_SHAPE, 13)
    m = make().train()
    m(x)  # the first training batch initialises learned ranges and steps
    extra = [p for p in m.parameters() if p.requires_grad]
    y, grads = info(_run_act(m, x, g, extra=extra))
    assert y.shape == x.shape and torch.isfinite(y).all() and all(torch.isfinite(t).all() for t in grads)
    if levels is not None:
        assert y.unique().numel() <= levels
    if mu is not None:  # the estimator μ'(x) times the incoming gradient
        torch.testing.assert_close(grads[0], g * mu(x.detach()))
    if name == "sign_sample_scaled":  # XNOR-Net §3.2: β_n·sign(x), β_n = mean|x_n|; gradient β·1{|x| ≤ 1}
        beta = x.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
        torch.testing.assert_close(y, beta * wq.sign_nonzero(x))
        torch.testing.assert_close(grads[0], g * beta * (x.detach().abs() <= 1))


@pytest.mark.benchmark(group="exact ternary projection's sort 512x512x3x3")
def test_sort_magnitudes_benchmark(info):
    """The exact ternary projection's one sort (LBW, BinaryRelax at 2 bits), on a ResNet-18 layer4 conv."""
    a = _randn(WEIGHT_SHAPE, 14).abs().flatten()
    values, order = info(lambda: wq.sort_magnitudes(a))
    assert torch.equal(values, a[order]) and bool((values[:-1] >= values[1:]).all())
