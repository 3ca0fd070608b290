"""The one-pass gradient gates (qbench.quant.gates) and every backward rewritten with them, against the masked
products they replace written out here (``grad * mask``): the same values, bounds and ties included (issue #13)."""

from __future__ import annotations

import math

import pytest
import torch

from qbench.quant import activation as aq
from qbench.quant import gates
from qbench.quant import learned as ql
from qbench.quant import sign as qs
from qbench.quant import weight as wq

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _probe(dtype, bounds=(-1.0, 0.0, 1.0, 0.7, 3.0)):
    """Random values plus every bound and its neighbours in ``dtype``, ±0, ±inf."""
    g = torch.Generator().manual_seed(0)
    vals = [torch.randn(200, generator=g, dtype=torch.float64) * 2]
    for b in bounds:
        t = torch.tensor([b], dtype=dtype)
        vals.append(torch.cat([t, torch.nextafter(t, t + 1), torch.nextafter(t, t - 1)]).double())
    vals.append(torch.tensor([0.0, -0.0, math.inf, -math.inf], dtype=torch.float64))
    return torch.cat(vals).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_next_float_is_the_neighbour_in_the_dtype(dtype):
    for value in (0.0, 1.0, -1.0, 0.5, 0.7, -3.0, 255.0, 1e-3, 2.0**-126, -(2.0**-140), 1.5e-5):
        t = torch.tensor(value, dtype=dtype)
        if not torch.isfinite(t):
            continue
        for up in (True, False):
            ref = torch.nextafter(t, torch.tensor(math.inf if up else -math.inf, dtype=dtype)).item()
            assert gates.next_float(value, dtype, up) == ref, (value, up)


def _exact(bound: float, dtype) -> bool:
    """Whether ``bound`` is a number of ``dtype``. A bound a 16-bit dtype cannot represent may move by one ulp (the
    documented contract of qbench.quant.gates), so those (bound, dtype) pairs are not compared with the masked
    product."""
    return torch.tensor(bound, dtype=dtype).item() == bound or dtype not in (torch.float16, torch.bfloat16)


@pytest.mark.parametrize("t,dtype", [(t, d) for t in (0.0, 1.0, 0.7, -1.0) for d in DTYPES if _exact(t, d)])
@pytest.mark.parametrize("inclusive", [False, True])
def test_keep_above_and_below_equal_the_masked_product(dtype, inclusive, t):
    x = _probe(dtype)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    above = (x >= t) if inclusive else (x > t)
    below = (x <= t) if inclusive else (x < t)
    assert torch.equal(gates.keep_above(g, x, t, inclusive), g * above)
    # −inf is outside keep_below's open range (−inf, t) (documented); the masked product kept it
    assert torch.equal(gates.keep_below(g, x, t, inclusive), g * (below & (x > -math.inf)))
    # a tensor bound (a learned α) compares through the difference: exact too (finite inputs)
    tt = torch.tensor(t, dtype=dtype)
    finite = torch.isfinite(x)
    assert torch.equal(gates.keep_above(g, x, tt, inclusive)[finite], (g * (x >= tt if inclusive else x > tt))[finite])
    assert torch.equal(gates.keep_below(g, x, tt, inclusive)[finite], (g * (x <= tt if inclusive else x < tt))[finite])


@pytest.mark.parametrize("lo,hi,dtype", [(lo, hi, d) for lo, hi in ((-1.0, 1.0), (0.0, 3.0), (-1.0, 0.7))
                                         for d in DTYPES if _exact(lo, d) and _exact(hi, d)])
@pytest.mark.parametrize("lo_inc,hi_inc", [(False, False), (True, True), (True, False), (False, True)])
def test_keep_between_equals_the_masked_product(dtype, lo_inc, hi_inc, lo, hi):
    x = _probe(dtype)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    mask = ((x >= lo) if lo_inc else (x > lo)) & ((x <= hi) if hi_inc else (x < hi))
    assert torch.equal(gates.keep_between(g, x, lo, hi, lo_inc, hi_inc), g * mask)


def test_gated_elements_are_zero_and_nan_inputs_pass():
    g = torch.tensor([-2.0, 3.0, 5.0])
    out = gates.keep_above(g, torch.tensor([0.0, 1.0, math.nan]), 0.5)
    assert out.tolist()[:2] == [0.0, 3.0] and math.copysign(1, out[0].item()) == 1  # +0.0, not −0.0
    assert out[2].item() == 5.0  # documented: a NaN input passes its gradient


# --------------------------------------------------------------------------- the backward passes built on the gates
def _grad(fn, x, g, *extra):
    x = x.detach().clone().requires_grad_(True)
    extra = [e.detach().clone().requires_grad_(True) for e in extra]
    fn(x, *extra).backward(g)
    return [x.grad, *[e.grad for e in extra]]


def _act_probe(top):
    """Activations with exact hits on 0, the top of the range, ±1 and their neighbours."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(400, generator=g) * 2
    specials = []
    for b in (0.0, float(top), 1.0, -1.0, -float(top)):
        t = torch.tensor([b])
        specials += [t, torch.nextafter(t, t + 1), torch.nextafter(t, t - 1)]
    return torch.cat([base, *specials])


@pytest.mark.parametrize("estimator", aq.ESTIMATORS)
@pytest.mark.parametrize("alpha_grad", [None, *aq.ALPHA_GRADS])
def test_quant_relu_backward_equals_the_masks_it_replaces(estimator, alpha_grad):
    bits = 2
    m = aq.QuantReLU(bits, estimator=estimator, learn_alpha=alpha_grad is not None, alpha_grad=alpha_grad or "mean")
    alpha = float(m.alpha.detach())
    top = (2**bits - 1) * torch.tensor(alpha)
    x = _act_probe(top)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    xr = x.clone().requires_grad_(True)
    m(xr).backward(g)
    # the previous implementation, written out
    in_range = (x > 0) & (x <= top)
    expected = {"identity": g, "relu": g * (x > 0), "clipped_relu": g * in_range}[estimator]
    assert torch.equal(xr.grad, expected)
    if alpha_grad is not None:
        L = 2**bits - 1
        g_inside = g * in_range
        if alpha_grad == "exact":
            total = (g_inside * torch.ceil(x / torch.tensor(alpha))).sum()
        else:
            total = g_inside.sum() * {"mean": float(2 ** (bits - 1)), "pact": 0.0, "min": 1.0}[alpha_grad]
        total = total + L * torch.where(x > top, g, 0.0).sum()
        assert torch.equal(m.alpha.grad, torch.clamp(0.01 * total, -1.0, 1.0).reshape(()))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_aqe_forward_and_backward_equal_the_previous_formulas(bits):
    x = _act_probe(0.5)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    if bits == 2:  # h: 0 where |a| ≤ Δ, sign(a) elsewhere
        assert torch.equal(aq.aqe_h(x, 2, 0.5), torch.where(x.abs() <= 0.5, torch.zeros_like(x), torch.sign(x)))
    (gx,) = _grad(aq.AQEActivation(bits, alpha=0.3).train(), x, g)
    assert torch.equal(gx, g * (2 * 0.3) * (x.abs() <= 1).to(g.dtype))  # eq. 22


@pytest.mark.parametrize("signed", [True, False])
def test_input_quantizer_backward_is_the_clipped_identity(signed):
    x = _act_probe(1.0)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    m = aq.InputQuantizer(4, signed=signed).train()
    (gx,) = _grad(m, x, g)
    top = x.abs().max() if signed else x.max()  # the batch's range while training: everything inside
    lo = -top if signed else torch.zeros(())
    assert torch.equal(gx, g * ((x >= lo) & (x <= x.abs().max())).to(g.dtype))


@pytest.mark.parametrize("estimator", qs.SIGN_ESTIMATORS)
def test_sign_activation_backward_equals_the_estimator_product(estimator):
    x = _act_probe(0.5)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    m = qs.SignActivation(estimator, clip=0.5, t=0.8, k=1.25)
    (gx,) = _grad(m, x, g)
    assert torch.equal(gx, g * m.grad_fn()(x).to(g.dtype))  # the estimator function μ'(x) (the theory's)
    assert torch.equal(gx, _grad(lambda t: qs.sign_with_estimator(t, m.grad_fn()), x, g)[0])
    assert torch.equal(m(x), torch.where(x >= 0, 1.0, -1.0))  # sign(0) = +1


def test_sign_nonzero_values_and_no_gradient_path():
    w = torch.tensor([-2.0, -0.0, 0.0, 1e-30, -1e-30, math.inf, -math.inf], requires_grad=True)
    q = wq.sign_nonzero(w)
    assert q.tolist() == [-1, 1, 1, 1, -1, 1, -1] and not q.requires_grad  # a constant of the step, as before


@pytest.mark.parametrize("signed,bits", [(True, 2), (False, 4), (True, 8)])
def test_lsq_backward_equals_the_previous_where_formula(signed, bits):
    q_n, q_p = ql.lsq_bounds(bits, signed)
    s = torch.tensor(0.37)
    v = torch.cat([_act_probe(1.0) * 2, torch.tensor([-q_n, q_p, q_p - 0.5, 0.5]) * s])
    g = torch.randn(v.shape, generator=torch.Generator().manual_seed(8))
    gv, gs = _grad(lambda a, b: ql.lsq_quantize(a, b, q_n, q_p, 0.1), v, g, s)
    vs = v / s
    below, above = vs <= -q_n, vs >= q_p
    inside = ~(below | above)
    assert torch.equal(gv, g * inside.to(g.dtype))
    ds = torch.where(inside, torch.round(vs) - vs, torch.where(below, -float(q_n), float(q_p)).to(vs.dtype))
    assert torch.equal(gs, (g * ds).sum_to_size(s.shape) * 0.1)  # eq. 3 × g, the same sum
    assert torch.equal(ql.lsq_quantize(v, s, q_n, q_p), torch.clamp(torch.round(v / s), -q_n, q_p) * s)


def test_straight_through_cancellation_at_the_clip():
    w = torch.tensor([-1.5, -1.0, -0.3, 0.0, 1.0, torch.nextafter(torch.tensor(1.0), torch.tensor(2.0)).item()])
    g = torch.arange(1.0, 7.0)
    (gw,) = _grad(wq.StraightThroughWeight(wq.binary, 2, cancel_outside=1.0), w, g)
    assert torch.equal(gw, g * (w.abs() <= 1.0))
