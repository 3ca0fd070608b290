"""The learned-quantizer zoo (DoReFa, PACT, LSQ, DSQ; spec §10) against their papers' formulas.

Each quantizer is checked on hand-picked points and against an independent oracle: brute-force nearest level, the
closed form in float64, finite differences, or autograd through a hand-written reference of the paper's surrogate
(LSQ's own code listing for ∂v̂/∂s and the gradient scale, PACT eq. 1 for ∂/∂α, DSQ eq. 3–6 for the tanh surrogate).
"""

import math
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import _tiny
import qbench
from qbench.config import TrainConfig
from qbench.errors import BitsError, ConfigError
from qbench.methods.dorefa import DoReFaActivation
from qbench.methods.dsq import DSQQuantizer, DSQWeight, dsq_hard, dsq_quantize
from qbench.methods.pact import PACTActivation, pact_quantize
from qbench.quant import learned as ql
from qbench.quant.dorefa import DoReFaWeight, dorefa_weight, quantize_k
from qbench.quant.apply import freeze_quantized, quantized_layers
from qbench.run.train import build_optimizer, train_step

D = torch.float64
ZOO = ("dorefa", "pact", "lsq", "dsq")


def TinyNet():
    """_tiny.TinyNet with a 4-channel mid conv."""
    return _tiny.TinyNet(mid_channels=4)


class TinyMLP(nn.Module):
    """linear → linear → relu → linear: under the quantized policy the second layer's input is signed (not a ReLU
    output) and gets the method's input quantizer."""

    pretrained_cfg = {"first_conv": "a", "classifier": "c", "input_size": (1, 1, 6)}

    def __init__(self):
        super().__init__()
        self.a, self.b, self.act, self.c = nn.Linear(6, 5), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 2)

    def forward(self, x):
        return self.c(self.act(self.b(self.a(x))))  # Linear on the last dim: a sees the network input itself


def _grads(fn, *tensors, weight=None):
    """Output and the gradients of Σ weight·fn(*tensors) w.r.t. each input."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    y = fn(*leaves)
    (y * (weight if weight is not None else torch.ones_like(y))).sum().backward()
    return (y.detach(), *[t.grad for t in leaves])


# ------------------------------------------------------------------------------------------ shared building blocks
def test_round_ste_grad_scale_and_ste_replace_are_exact_forward_and_as_stated_backward():
    x = torch.tensor([0.2, 0.7, 1.49, -2.6])
    y, gx = _grads(ql.round_ste, x)
    assert y.tolist() == [0.0, 1.0, 1.0, -3.0] and gx.tolist() == [1.0] * 4
    y, gx = _grads(lambda t: ql.grad_scale(t, 0.25), x)
    assert torch.equal(y, x) and gx.tolist() == [0.25] * 4
    q = torch.tensor([0.1, 0.3, 0.3, 0.9])
    y, gx = _grads(lambda t: ql.ste_replace(t, q), x)
    assert torch.equal(y, q) and gx.tolist() == [1.0] * 4  # exactly q: no x + (q − x) rounding residue


def test_split_param_groups_without_options_is_the_old_single_group():
    model = TinyNet()
    qbench.quantize_model(model, "ste", "W1A4", "fp")
    groups = model.qbench_info.method.param_groups(model)
    assert len(groups) == 1 and [id(p) for p in groups[0]["params"]] == [id(p) for p in model.parameters()]


def test_split_param_groups_gives_a_role_its_own_options():
    model = nn.Sequential(nn.Linear(3, 3), PACTActivation(2, alpha_init=4.0), nn.Linear(3, 1), PACTActivation(2))
    groups = ql.split_param_groups(model, {"clip": {"weight_decay": 0.5}, "step": {"lr": 1.0}})
    assert len(groups) == 2  # no "step" parameter in this model: no empty group
    main, clip = groups
    assert clip["weight_decay"] == 0.5 and clip["qbench_role"] == "clip"
    assert [id(p) for p in clip["params"]] == [id(model[1].alpha), id(model[3].alpha)]
    assert len(main["params"]) == 4 and "weight_decay" not in main
    with pytest.raises(ConfigError, match="optimizer options only"):
        ql.split_param_groups(model, {"clip": {"params": []}})


# ------------------------------------------------------------------------------------------------------------ LSQ
def _paper_lsq(v, s, q_n, q_p, g):
    """The LSQ paper's own code listing (gradscale, hardtanh, roundpass), used as the autograd oracle."""
    s = (s - s * g).detach() + s * g
    x = F.hardtanh(v / s, -q_n, q_p)
    x_bar = (x.round() - x).detach() + x
    return x_bar * s


def test_lsq_forward_hand_points_and_step_gradient_eq3():
    q_n, q_p = ql.lsq_bounds(2, signed=True)
    assert (q_n, q_p) == (2, 1) and ql.lsq_bounds(3, signed=False) == (0, 7)
    v = torch.tensor([-3.0, -1.1, -0.3, 0.2, 0.26, 0.8, 2.0], dtype=D)
    s = torch.full_like(v, 0.5)  # one step per element: ∂v̂/∂s element-wise
    y, gv, gs = _grads(lambda a, b: ql.lsq_quantize(a, b, q_n, q_p), v, s)
    # v/s = −6, −2.2, −0.6, 0.4, 0.52, 1.6, 4 → clip, round to {−2, −1, 0, 1}
    assert y.tolist() == [-1.0, -1.0, -0.5, 0.0, 0.5, 0.5, 0.5]
    assert gv.tolist() == [0, 0, 1, 1, 1, 0, 0]  # eq. 5: 1 strictly inside (−Q_N, Q_P)
    # eq. 3: −Q_N below, −v/s + round(v/s) inside, Q_P above
    expected = [-2, -2, 0.6 - 1, -0.4, -0.52 + 1, 1, 1]
    assert gs.tolist() == pytest.approx(expected, abs=1e-12)


def test_lsq_forward_is_the_nearest_level_by_brute_force(gen):
    for bits, signed in ((2, True), (3, True), (4, False), (2, False)):
        q_n, q_p = ql.lsq_bounds(bits, signed)
        v = torch.randn(500, generator=gen, dtype=D) * 2
        s = torch.tensor(0.37, dtype=D)
        levels = torch.arange(-q_n, q_p + 1, dtype=D) * s
        nearest = levels[(v[:, None] - levels[None, :]).abs().argmin(dim=1)]
        assert torch.allclose(ql.lsq_quantize(v, s, q_n, q_p), nearest, atol=1e-12)


@pytest.mark.parametrize("per_channel", [False, True])
def test_lsq_gradients_match_the_papers_code_listing(gen, per_channel):
    v = torch.randn(4, 3, 5, generator=gen, dtype=D)
    s = (torch.rand(4, 1, 1, generator=gen, dtype=D) + 0.2) if per_channel else torch.tensor(0.4, dtype=D)
    q_n, q_p = ql.lsq_bounds(3, signed=True)
    g = 1 / math.sqrt(v[0].numel() * q_p)
    w = torch.randn(v.shape, generator=gen, dtype=D)  # a random upstream gradient
    ours = _grads(lambda a, b: ql.lsq_quantize(a, b, q_n, q_p, g), v, s, weight=w)
    ref = _grads(lambda a, b: _paper_lsq(a, b, q_n, q_p, g), v, s, weight=w)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-12)


def test_lsq_gradient_scale_is_one_over_sqrt_n_qp():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    grads = {}
    for scale in (True, False):
        p = ql.LearnedStepWeight(4, scale_grad=scale)
        p(w)  # first forward: initialises s
        y = p(w.clone().requires_grad_(True))
        y.sum().backward()
        grads[scale] = p.step.grad.item()
    assert grads[True] == pytest.approx(grads[False] / math.sqrt(w.numel() * 7), rel=1e-6)
    x = torch.randn(8, 3, 5, 5).abs()
    for count, n in (("example", 75), ("batch", 600)):
        act = ql.LearnedStepQuantizer(2, signed=False, feature_count=count)
        base = ql.LearnedStepQuantizer(2, signed=False, scale_grad=False)
        for m in (act, base):
            m.train()
            m(x).sum().backward()
        assert act.step.grad.item() == pytest.approx(base.step.grad.item() / math.sqrt(n * 3), rel=1e-6)


def test_lsq_weight_init_per_tensor_and_per_channel():
    torch.manual_seed(0)
    w = torch.randn(5, 3, 2, 2)
    p = ql.LearnedStepWeight(3)
    p(w)
    assert p.step.item() == pytest.approx(2 * w.abs().mean().item() / math.sqrt(3), rel=1e-6)  # LSQ §2.1, Q_P = 3
    pc = ql.LearnedStepWeight(3, per_channel=True)
    q = pc(w)
    assert pc.step.shape == (5, 1, 1, 1)
    assert torch.allclose(pc.step.detach().flatten(), 2 * w.abs().mean(dim=(1, 2, 3)) / math.sqrt(3))
    for c in range(5):  # every channel on its own grid of ≤ 2^b levels
        assert torch.allclose(q[c] / pc.step[c].detach(), (q[c] / pc.step[c].detach()).round(), atol=1e-5)
        assert q[c].unique().numel() <= 8


def test_lsq_activation_step_is_set_by_the_first_training_batch_not_by_the_probe():
    torch.manual_seed(0)
    model = TinyNet()
    qbench.quantize_model(model, "lsq", "W2A2", "fp")  # runs the eval-mode placement probe on random input
    assert not bool(model.act.initialized) and model.act.step.item() == 1.0
    seen = {}
    model.act.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].detach().clone()))
    model.train()
    model(torch.randn(8, 1, 4, 4))
    assert bool(model.act.initialized)
    # the quantizer replaces the ReLU: s₀ from relu(x), the data it represents (issue #15)
    assert model.act.step.item() == pytest.approx(2 * seen["x"].clamp(min=0).mean().item() / math.sqrt(3), rel=1e-6)
    # weights: initialised from the weights when the model was quantized
    p = model.mid.parametrizations.weight
    assert p[0].step.item() == pytest.approx(2 * p.original.abs().mean().item() / math.sqrt(1), rel=1e-6)


@pytest.mark.parametrize("bits", [2, 4])
def test_lsq_activation_init_is_on_the_relu_output_and_signed_init_on_the_input(bits):
    """LSQ §2.1 s₀ = 2·⟨|v|⟩/√Q_P over the data being quantized: relu(x) for the unsigned quantizer that replaces a
    ReLU (Q_P = 2^b − 1), x itself for a signed input (Q_P = 2^{b−1} − 1). Issue #15: the unsigned step was
    initialised from x, negatives included, ~2× too large on N(0, 1)."""
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(bits))
    unsigned = ql.LearnedStepQuantizer(bits, signed=False).train()
    unsigned(x)
    relu_x = torch.where(x > 0, x, torch.zeros_like(x))
    expected = 2 * relu_x.abs().mean().item() / math.sqrt(2**bits - 1)
    assert unsigned.step.item() == pytest.approx(expected, rel=1e-6)
    signed = ql.LearnedStepQuantizer(bits, signed=True).train()
    signed(x)
    assert signed.step.item() == pytest.approx(2 * x.abs().mean().item() / math.sqrt(2 ** (bits - 1) - 1), rel=1e-6)
    # the evaluation-mode probe uses the same s₀ without keeping it
    probe = ql.LearnedStepQuantizer(bits, signed=False).eval()
    assert torch.allclose(probe(x), ql.lsq_quantize(x, torch.tensor(expected), 0, 2**bits - 1), atol=1e-6)
    assert not probe.is_initialized()


def test_lsq_signed_input_quantizer_and_one_bit_refusal():
    torch.manual_seed(0)
    model = TinyMLP()
    qbench.quantize_model(model, "lsq", "W2A2", "quantized")
    assert model.qbench_info.input_quantized == ["b"]
    iq = model.b.qbench_input_quantizer
    assert iq.signed and (iq.q_n, iq.q_p) == (2, 1)
    with pytest.raises(BitsError) as exc:
        qbench.quantize_model(TinyNet(), "lsq", "W1A1")
    assert "W2" in str(exc.value) and "\n" not in str(exc.value)


def test_lsq_training_step_moves_the_step_the_right_way():
    for sign in (-1.0, 1.0):
        act = ql.LearnedStepQuantizer(2, signed=False)
        act.train()
        x = torch.full((4, 6), 10.0)
        act(x)  # initialise
        act.step.data.fill_(1.0)  # every input above Q_P·s = 3: ∂v̂/∂s = Q_P
        opt = torch.optim.SGD(act.parameters(), lr=0.1)
        s0 = act.step.item()
        (sign * act(x).sum()).backward()
        assert act.step.grad.item() == pytest.approx(sign * 3 * 24 / math.sqrt(6 * 3))  # Q_P·count·g
        opt.step()
        # loss −Σv̂ (sign −1) wants larger outputs: s grows; +Σv̂: s shrinks
        assert (act.step.item() - s0) * sign < 0


# ----------------------------------------------------------------------------------------------------------- PACT
def test_pact_forward_and_backward_hand_points():
    alpha = torch.tensor(2.0, dtype=D)
    x = torch.tensor([-1.0, 0.0, 0.3, 0.34, 1.1, 1.9, 2.0, 5.0], dtype=D)
    y, gx, ga = _grads(lambda a, b: pact_quantize(a, b, 2), x, alpha)
    # y = clip(x, 0, 2); round(y·3/2)·2/3 (eq. 1–2)
    assert y.tolist() == pytest.approx([0, 0, 0, 2 / 3, 4 / 3, 2, 2, 2])
    assert gx.tolist() == [0, 1, 1, 1, 1, 1, 0, 0]  # STE 1{0 ≤ x < α}
    assert ga.item() == 2.0  # eq. 3: Σ 1{x ≥ α}


def test_pact_gradients_match_eq1_reference_and_finite_differences(gen):
    alpha = torch.tensor(1.3, dtype=D)
    x = torch.randn(400, generator=gen, dtype=D) * 2
    x = x[(x.abs() > 1e-3) & ((x - alpha).abs() > 1e-3)]  # away from the kinks

    def reference(a, al):  # eq. 1 written as ½(|x| − |x − α| + α); eq. 3 treats y_q as y (STE)
        y = 0.5 * (a.abs() - (a - al).abs() + al)
        q = torch.round(y * 3 / al) * al / 3
        return y + (q - y).detach()

    w = torch.randn(x.shape, generator=gen, dtype=D)
    ours = _grads(lambda a, b: pact_quantize(a, b, 2), x, alpha, weight=w)
    ref = _grads(reference, x, alpha, weight=w)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-12)
    # the α-gradient is the derivative of the clip, by central differences
    h = 1e-6
    clip = lambda al: torch.minimum(x.clamp_min(0), al)  # noqa: E731
    fd = ((w * clip(alpha + h)).sum() - (w * clip(alpha - h)).sum()) / (2 * h)
    assert ours[2].item() == pytest.approx(fd.item(), abs=1e-6)


def test_pact_eval_levels_and_alpha_weight_decay_in_its_own_group():
    method = qbench.create_method("pact", alpha_decay=0.01)
    model = nn.Sequential(nn.Linear(4, 4), PACTActivation(2, alpha_init=10.0))
    groups = method.param_groups(model)
    opt = build_optimizer(groups, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.5))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.01]
    x = torch.randn(16, 4)
    model.eval()
    y = model(x)
    alpha = model[1].alpha.item()
    assert torch.allclose(y / (alpha / 3), (y / (alpha / 3)).round(), atol=1e-5) and y.max() <= alpha
    model.train()
    model(x).sum().backward()
    assert model[1].alpha.grad.item() == 0.0  # no input reaches α = 10: only the decay moves α
    opt.step()
    assert model[1].alpha.item() == pytest.approx(10.0 * (1 - 0.1 * 0.01), rel=1e-7)  # α ← α − η·λ_α·α


def test_pact_training_step_moves_alpha_toward_clipped_inputs():
    act = PACTActivation(2, alpha_init=1.0)
    opt = torch.optim.SGD(act.parameters(), lr=0.1)
    (-act(torch.full((10,), 3.0)).sum()).backward()  # every input clipped, the loss wants larger outputs
    opt.step()
    assert act.alpha.item() == pytest.approx(1.0 + 0.1 * 10)
    act.alpha.data.fill_(-1.0)
    ql.project_learned_(act)
    assert act.alpha.item() == pytest.approx(act.alpha_min)


def test_pact_one_bit_activations_are_left_out():
    reason = qbench.registry.get_method_class("pact").unsupported_bits(qbench.bits.parse_bits("W1A1"))
    assert reason and "A2" in reason


# --------------------------------------------------------------------------------------------------------- DoReFa
def test_dorefa_quantize_k_hand_points():
    r = torch.tensor([0.0, 0.1, 0.2, 0.4, 0.9, 1.0])
    y, gr = _grads(lambda t: quantize_k(t, 2), r)
    assert y.tolist() == pytest.approx([0, 0, 1 / 3, 1 / 3, 1, 1])  # round(3r)/3 (eq. 5)
    assert gr.tolist() == [1.0] * 6  # straight through


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_dorefa_weights_closed_form_levels_and_backward(gen, bits):
    w = torch.randn(7, 9, generator=gen, dtype=D) * 0.3
    n = 2**bits - 1
    t = torch.tanh(w)
    expected = 2 * torch.round((t / (2 * t.abs().max()) + 0.5) * n) / n - 1  # eq. 9, float64 closed form
    q = DoReFaWeight(bits).hard(w)
    assert torch.allclose(q, expected, atol=1e-12)
    grid = torch.arange(n + 1, dtype=D) * 2 / n - 1
    assert (q[..., None] - grid).abs().min(dim=-1).values.max() < 1e-12 and q.unique().numel() <= 2**bits
    assert q.abs().max().item() == pytest.approx(1.0)  # the largest |w| maps to ±1
    # backward: straight through round, exact through tanh and the max — i.e. the gradient of the smooth map
    # w ↦ tanh(w)/max|tanh(w)|, checked by central differences along a random direction
    u = torch.randn(w.shape, generator=gen, dtype=D)
    up = torch.randn(w.shape, generator=gen, dtype=D)
    _, gw = _grads(lambda a: dorefa_weight(a, bits), w, weight=up)
    smooth = lambda a: torch.tanh(a) / torch.tanh(a).abs().max()  # noqa: E731
    h = 1e-6
    fd = ((up * smooth(w + h * u)).sum() - (up * smooth(w - h * u)).sum()) / (2 * h)
    assert (gw * u).sum().item() == pytest.approx(fd.item(), rel=1e-6)


def test_dorefa_one_bit_weights_and_activations():
    w = torch.tensor([[0.5, -0.1], [0.0, -2.0]])
    y, gw = _grads(lambda a: dorefa_weight(a, 1), w, weight=torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    e = w.abs().mean().item()  # eq. 7: E|w|·sign(w), sign(0) = +1
    assert y.flatten().tolist() == pytest.approx([e, -e, e, -e]) and gw.tolist() == [[1, 2], [3, 4]]
    x = torch.tensor([-0.5, 0.01, 0.2, 0.4, 0.9, 0.99, 1.7])  # (the clip's kinks 0 and 1 left out)
    y, gx = _grads(DoReFaActivation(2), x)
    assert y.tolist() == pytest.approx([0, 0, 1 / 3, 1 / 3, 1, 1, 1])  # q_2(clip(x, 0, 1))
    assert gx.tolist() == [0, 1, 1, 1, 1, 1, 0]  # the clip's derivative, straight through round


# ------------------------------------------------------------------------------------------------------------ DSQ
def _dsq_reference(x, lo, hi, alpha, bits):
    """DSQ eq. 1, 3–6 written out: s = 1/tanh(½kΔ) (not the 1/(1 − α) shortcut), clipping by where()."""
    n = 2**bits - 1
    delta = (hi - lo) / n
    xc = torch.where(x < lo, lo, torch.where(x > hi, hi, x))
    i = torch.floor((xc - lo) / delta).clamp(0, n - 1).detach()
    m = lo + (i + 0.5) * delta
    k = torch.log(2 / alpha - 1) / delta
    s = 1 / torch.tanh(0.5 * k * delta)
    return lo + delta * (i + (s * torch.tanh(k * (xc - m)) + 1) / 2)


def test_dsq_alpha_k_s_relations_and_continuity_at_the_grid():
    lo, hi, bits = torch.tensor(-0.6, dtype=D), torch.tensor(0.9, dtype=D), 2
    delta = (hi - lo) / 3
    for a in (0.05, 0.2, 0.5):
        alpha = torch.tensor(a, dtype=D)
        k = math.log(2 / a - 1) / delta
        assert 1 - math.tanh(0.5 * k * delta) == pytest.approx(a)  # eq. 5: α = 1 − tanh(½kΔ)
        grid = lo + delta * torch.arange(4, dtype=D)
        # φ = ∓1 at the interval ends: the soft quantizer passes through every level (continuous, eq. 4)
        assert torch.allclose(dsq_quantize(grid, lo, hi, alpha, bits, soft=True), grid, atol=1e-12)


def test_dsq_soft_forward_and_gradients_match_the_reference_and_finite_differences(gen):
    lo, hi, alpha, bits = torch.tensor(-0.6, dtype=D), torch.tensor(0.9, dtype=D), torch.tensor(0.3, dtype=D), 2
    x = torch.rand(300, generator=gen, dtype=D) * 2 - 0.9  # some outside [l, u] on both sides
    w = torch.randn(x.shape, generator=gen, dtype=D)
    for soft in (True, False):
        ours = _grads(lambda *a: dsq_quantize(*a, bits, soft=soft), x, lo, hi, alpha, weight=w)
        ref = _grads(lambda *a: _dsq_reference(*a, bits), x, lo, hi, alpha, weight=w)
        if soft:
            assert torch.allclose(ours[0], ref[0], atol=1e-12)
        # the hard forward keeps the soft backward (Q_S's derivative in x, l, u and α)
        for a, b in zip(ours[1:], ref[1:]):
            assert torch.allclose(a, b, atol=1e-9)
    # finite differences of the soft quantizer in x (inside) and in α
    h = 1e-6
    inside = x[(x > lo) & (x < hi)]
    f = lambda t: _dsq_reference(t, lo, hi, alpha, bits)  # noqa: E731
    _, gx = _grads(lambda t: dsq_quantize(t, lo, hi, alpha, bits, soft=True), inside)
    assert torch.allclose(gx, (f(inside + h) - f(inside - h)) / (2 * h), atol=1e-6)
    fa = lambda a: (w * _dsq_reference(x, lo, hi, a, bits)).sum()  # noqa: E731
    _, ga = _grads(lambda a: dsq_quantize(x, lo, hi, a, bits, soft=True), alpha, weight=w)
    assert ga.item() == pytest.approx(((fa(alpha + h) - fa(alpha - h)) / (2 * h)).item(), rel=1e-6)
    # the surrogate's slope at the first midpoint m_0 = l + ½Δ is ½Δ·s·k = ½·log(2/α − 1)/(1 − α) (eq. 3–6)
    m0 = (lo + (hi - lo) / 6).reshape(1)
    _, g_mid = _grads(lambda t: dsq_quantize(t, lo, hi, alpha, bits), m0)
    assert g_mid.item() == pytest.approx(0.5 * math.log(2 / 0.3 - 1) / (1 - 0.3))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_dsq_hard_is_the_nearest_level_and_soft_approaches_it(gen, bits):
    lo, hi = torch.tensor(-0.7, dtype=D), torch.tensor(1.1, dtype=D)
    x = torch.rand(500, generator=gen, dtype=D) * 3 - 1.3
    levels = lo + (hi - lo) / (2**bits - 1) * torch.arange(2**bits, dtype=D)
    nearest = levels[(x.clamp(-0.7, 1.1)[:, None] - levels).abs().argmin(dim=1)]
    for q in (dsq_hard(x, lo, hi, bits), dsq_quantize(x, lo, hi, torch.tensor(0.2, dtype=D), bits)):
        assert torch.allclose(q, nearest, atol=1e-12)
    errs = [(dsq_quantize(x, lo, hi, torch.tensor(a, dtype=D), bits, soft=True) - nearest).abs().mean().item()
            for a in (0.5, 0.1, 0.01, 1e-4)]
    # α → 0: the soft function approaches the hard one (kΔ = log(2/α − 1) grows only logarithmically)
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.5 * errs[0]


def test_dsq_modules_eval_hard_and_a_training_step_in_the_direction_of_the_gradient():
    torch.manual_seed(0)
    act = DSQQuantizer(2, signed=False, bound_grad_scale="none")
    act.train()
    x = torch.rand(4, 8) * 2
    act(x)  # first training batch: l = 0, u = max
    assert act.lo.item() == 0.0 and act.hi.item() == pytest.approx(x.max().item())
    act.eval()
    y = act(x * 3)
    levels = act.hi.item() / 3 * torch.arange(4)
    assert (y[..., None] - levels).abs().min(dim=-1).values.max() < 1e-6
    act.train()
    opt = torch.optim.SGD(act.parameters(), lr=0.01)
    above = torch.full((2, 3), 5.0)  # all clipped at u: the loss −Σy wants a larger u
    u0, a0 = act.hi.item(), act.alpha.item()
    w = torch.linspace(-1, 1, 32).reshape(4, 8)
    (-act(above).sum() + (w * act(x)).sum()).backward()
    # the α-gradient by central differences of the same loss through the soft surrogate (hard forward keeps it)
    h = 1e-6

    def loss_at(a):
        lo, hi = act.lo.detach().double(), act.hi.detach().double()
        return (-_dsq_reference(above.double(), lo, hi, a, 2).sum()
                + (w.double() * _dsq_reference(x.double(), lo, hi, a, 2)).sum())

    fd = (loss_at(torch.tensor(a0 + h, dtype=D)) - loss_at(torch.tensor(a0 - h, dtype=D))) / (2 * h)
    assert act.alpha.grad.item() == pytest.approx(fd.item(), rel=1e-4)
    opt.step()
    assert act.hi.item() > u0
    assert act.alpha.item() - a0 == pytest.approx(-0.01 * fd.item(), rel=1e-4)
    act.alpha.data.fill_(0.9)
    ql.project_learned_(act)
    assert act.alpha.item() == act.alpha_max


def test_dsq_weight_bounds_start_at_min_max_and_the_bound_gradient_scale():
    torch.manual_seed(0)
    w = torch.randn(6, 10)
    grads = {}
    for mode in ("none", "lsq"):
        p = DSQWeight(2, bound_grad_scale=mode)
        p(w)  # registration's first forward sets l, u
        assert p.lo.item() == w.min().item() and p.hi.item() == w.max().item()
        p(w.clone().requires_grad_(True)).pow(2).sum().backward()
        grads[mode] = p.hi.grad.item()
    assert grads["lsq"] == pytest.approx(grads["none"] / math.sqrt(60 * 3), rel=1e-6)


@pytest.mark.parametrize("bits", [2, 4])
def test_dsq_weight_codes_are_grid_indices(bits):
    """The recurrence diagnostics compare level indices; DSQ's grid l + jΔ is asymmetric, so its codes are j
    (brute force: the index of the nearest grid point of the hard weights)."""
    torch.manual_seed(0)
    w = torch.randn(6, 10) * 0.1 + 0.03
    p = DSQWeight(bits)
    p(w)
    grid = p.lo + (p.hi - p.lo) / (2**bits - 1) * torch.arange(2**bits)
    expected = (p.hard(w)[..., None] - grid).abs().argmin(-1)
    codes = p.codes(w)
    assert torch.equal(codes.long(), expected) and codes.min() >= 0 and codes.max() <= 2**bits - 1


# ---------------------------------------------------------------------------------------- the methods end to end
@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("bits", ["W2A2", "W4A4"])
def test_zoo_method_trains_evaluates_hard_and_freezes_to_the_quantized_values(name, bits):
    torch.manual_seed(0)
    model = TinyNet()
    qbench.quantize_model(model, name, bits, "fp")
    method = model.qbench_info.method
    b = int(bits[1])
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 2, (8,))
    learned = {n: p.detach().clone() for n, p in model.named_parameters()
               if n.rsplit(".", 1)[-1] in ("step", "alpha", "lo", "hi")}
    opt = torch.optim.SGD(method.param_groups(model), lr=0.05, momentum=0.9)
    for _ in range(2):
        loss, _ = train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
        assert torch.isfinite(loss)
    moved = [n for n, p in model.named_parameters() if n in learned and not torch.equal(p.detach(), learned[n])]
    if name != "dorefa":
        assert learned and moved, "the learned quantizer parameters must be trained"
    model.eval()
    weight = model.mid.weight.detach().clone()
    p = model.mid.parametrizations.weight
    assert torch.equal(weight, p[0].hard(p.original))  # eval forward = hard()
    assert weight.unique().numel() <= p[0].levels == 2**b
    acts = model.act(model.conv(x))
    assert acts.unique().numel() <= 2**b  # activations hard at evaluation
    expected = model(x)
    freeze_quantized(model)
    assert not quantized_layers(model) and torch.equal(model.mid.weight.detach(), weight)
    assert torch.allclose(model(x), expected)


@pytest.mark.parametrize("name,arxiv", list(zip(ZOO, ("1606.06160", "1805.06085", "1902.08153", "1908.05033"))))
def test_zoo_method_metadata(name, arxiv):
    cls = qbench.registry.get_method_class(name)
    assert arxiv in sys.modules[cls.__module__].__doc__ and cls.paper
    assert "first and last" in cls.paper_policy


# ------------------------------------------------- speed rewrites (issue #13) against the implementations they replace
def _dsq_by_autograd(x, lo, hi, alpha, bits, soft):
    """The previous DSQ: Q_S built from autograd operations (every intermediate kept for the backward), the hard
    forward swapped in by ste_replace — the oracle of the one-Function, recomputing version."""
    n = 2**bits - 1
    delta = (hi - lo).clamp_min(1e-8) / n
    xc = torch.minimum(torch.maximum(x, lo), hi)
    with torch.no_grad():
        i = torch.clamp(torch.floor((xc - lo) / delta), 0, n - 1)
    m = lo + (i + 0.5) * delta
    k = torch.log(2.0 / alpha - 1.0) / delta
    s = 1.0 / (1.0 - alpha)
    q_soft = lo + delta * (i + (s * torch.tanh(k * (xc - m)) + 1.0) / 2.0)
    if soft:
        return q_soft
    hard = lo.detach() + delta.detach() * (i + (xc.detach() >= m.detach()).to(x.dtype))
    return ql.ste_replace(q_soft, hard)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-3)])
@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("soft", [False, True])
def test_dsq_function_equals_autograd_through_q_s(dtype, rtol, bits, soft):
    """Forward bit-identical; gradients in x, l, u, α equal within float rounding (the sums are taken in another
    order; float32's tolerance covers the cancellation in l's and u's sums), ties x = l and x = u included (autograd
    splits max/min's gradient half and half there)."""
    g = torch.Generator().manual_seed(bits)
    x = torch.rand(3000, generator=g, dtype=dtype) * 3 - 1.2
    lo, hi = torch.tensor(-0.6, dtype=dtype), torch.tensor(1.1, dtype=dtype)
    x[:3], x[3:6] = lo, hi
    w = torch.randn(x.shape, generator=g, dtype=dtype)
    alpha = torch.tensor(0.2, dtype=dtype)
    ours = _grads(lambda *a: dsq_quantize(*a, bits, soft=soft), x, lo, hi, alpha, weight=w)
    ref = _grads(lambda *a: _dsq_by_autograd(*a, bits, soft), x, lo, hi, alpha, weight=w)
    assert torch.equal(ours[0], ref[0])
    for name, a, b in zip(("x", "l", "u", "alpha"), ours[1:], ref[1:]):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()), msg=name)


def test_dsq_saves_only_its_input_for_the_backward():
    """Peak memory (issue #13: DSQ 3× FP): the autograd graph of one quantizer holds x (and the 0-dim l, u, α), not
    the activation-sized intermediates of Q_S."""
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    y = DSQQuantizer(2).train()(x)
    saved = [t for t in y.grad_fn.saved_tensors if t.numel() > 1]
    assert len(saved) == 1 and torch.equal(saved[0], x)


def test_pact_backward_equals_the_masks_it_replaces():
    alpha = torch.tensor(1.5)
    x = torch.cat([torch.randn(300, generator=torch.Generator().manual_seed(0)) * 2,
                   torch.tensor([0.0, -0.0, 1.5, torch.nextafter(torch.tensor(1.5), torch.tensor(0.0)).item()])])
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    y, gx, ga = _grads(lambda a, b: pact_quantize(a, b, 2), x, alpha, weight=g)
    assert torch.equal(y, torch.round(torch.minimum(x.clamp(min=0), alpha) * (3 / alpha)) * (alpha / 3))  # eq. 1–2
    assert torch.equal(gx, g * ((x >= 0) & (x < alpha)))  # STE, the clip's derivative
    assert torch.equal(ga, (g * (x >= alpha)).sum())  # eq. 3


@pytest.mark.parametrize("act_max", [1.0, 2.5])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_dorefa_activation_equals_autograd_through_quantize_k(bits, act_max):
    x = torch.cat([torch.randn(300, generator=torch.Generator().manual_seed(2)) * 2,
                   torch.tensor([0.0, -0.0, act_max, 1.0])])
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    ours = _grads(DoReFaActivation(bits, act_max), x, weight=g)
    ref = _grads(lambda t: quantize_k(torch.clamp(t, 0.0, act_max) / act_max, bits) * act_max, x, weight=g)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])  # bit-identical, the clip's ends included


def test_lazy_init_flag_follows_the_buffer_through_state_dicts():
    """The initialized buffer is read once and mirrored in a Python flag (no per-step host sync or graph break);
    loading a state dict re-reads it, so a fresh state re-initialises and a trained one is kept."""
    fresh = ql.LearnedStepQuantizer(4).train()
    trained = ql.LearnedStepQuantizer(4).train()
    trained(torch.rand(8, 3) * 4)
    assert trained.is_initialized() and trained._init_seen and bool(trained.initialized)
    step = float(trained.step.detach())
    trained.load_state_dict(fresh.state_dict())  # back to an uninitialised state
    assert not trained._init_seen and not trained.is_initialized()
    trained(torch.rand(8, 3) * 40)  # re-initialised from this batch
    assert float(trained.step.detach()) != step and trained.is_initialized()
    fresh.load_state_dict(trained.state_dict())
    assert fresh.is_initialized() and float(fresh.step.detach()) == float(trained.step.detach())
