"""The seed methods' update rules against the spec's formulas computed by hand (spec §3-§7)."""

import pytest
import torch
from torch import nn

import qbench
from _bcgd_code import quantize_fbit, quantize_tnn
from _tiny import mid_latent as _latent, setup_tiny as _setup
from qbench.quant import weight as wq
from qbench.run.train import train_step


def _grad_at_q(model, x, y):
    """Gradient w.r.t. the quantized weight Q(w) of `mid`, computed independently with a float copy."""
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return _latent(model).grad.detach().clone()


@pytest.mark.parametrize("rho", [1e-5, 0.3])
def test_bcgd_step_matches_spec_formula_with_momentum_and_decay(rho):
    model, method, x, y = _setup("bcgd", rho=rho, rho_max=1.0)  # ρ ≤ rho_max from the first epoch on (the code)
    lr, mom, wd = 0.1, 0.95, 1e-4
    opt = torch.optim.SGD(method.param_groups(model), lr=lr, momentum=mom, weight_decay=wd)
    w0 = _latent(model).detach().clone()
    g = _grad_at_q(model, x, y)  # straight-through: the gradient taken at Q(w)
    q = wq.binary(w0)
    # Spec §3 in the code's order: blend, then SGD (momentum buffer starts as the first gradient) with weight decay
    # evaluated at the blended point: w1 = wb − lr·(g + wd·wb), wb = (1−ρ)w0 + ρQ(w0).
    wb = (1 - rho) * w0 + rho * q
    w1 = wb - lr * (g + wd * wb)
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    assert torch.allclose(_latent(model).detach(), w1, atol=1e-7)
    # Second step: momentum buf2 = mom·buf1 + (g2 + wd·wb2)
    buf1 = g + wd * wb
    g2 = _grad_at_q(model, x, y)
    q2 = wq.binary(w1)
    wb2 = (1 - rho) * w1 + rho * q2
    w2 = wb2 - lr * (mom * buf1 + g2 + wd * wb2)
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    assert torch.allclose(_latent(model).detach(), w2, atol=1e-6)


def test_rho_zero_is_the_projected_coarse_gradient_step():
    runs = {}
    for name, hp in (("bcgd", {"rho": 0.0}), ("pcg", {})):
        model, method, x, y = _setup(name, **hp)
        opt = torch.optim.SGD(method.param_groups(model), lr=0.1, momentum=0.0)
        w0 = _latent(model).detach().clone()
        g = _grad_at_q(model, x, y)
        train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
        assert torch.allclose(_latent(model).detach(), w0 - 0.1 * g, atol=1e-7)  # w ← w − η·g̃(Q(w))
        runs[name] = _latent(model).detach()
    assert torch.equal(runs["bcgd"], runs["pcg"])


@pytest.mark.parametrize("rho0,rate,cap", [(1e-3, 10.0, 0.05), (1e-5, 1.01, 0.01), (0.3, 1.0, 0.01),
                                            (0.1, 0.5, 0.01)])
def test_bcgd_rho_schedule_updates_before_every_epoch_the_first_included(rho0, rate, cap):
    """The authors' train_alm1_alpha (train_net_alpha.py line 344) runs ``rho = min(rho_rate*rho, .01)`` at the top
    of each epoch, before its steps (issue #15: qbench used ρ_0 unchanged in the first epoch)."""
    m = qbench.create_method("bcgd", rho=rho0, rho_rate=rate, rho_max=cap)
    expected, rho = [], rho0
    for epoch in range(3):  # the code's loop, written out
        rho = min(rate * rho, cap)
        expected.append(rho)
    rhos = []
    for epoch in range(3):
        m.on_epoch_start(None, epoch, 3)
        rhos.append(m.rho_t)
    assert rhos == pytest.approx(expected, rel=1e-12)
    assert m.rho_at(0) == pytest.approx(min(rate * rho0, cap), rel=1e-12)  # ρ of the first epoch is updated once


def test_bcgd_alpha_is_trained_with_the_weights():
    model, method, x, y = _setup("bcgd")
    alphas = [p for n, p in model.named_parameters() if n.endswith("alpha")]
    assert len(alphas) == 2
    in_groups = {id(p) for g in method.param_groups(model) for p in g["params"]}
    assert all(id(a) in in_groups for a in alphas)


def test_aqe_clips_weights_to_unit_interval():
    model, method, x, y = _setup("aqe")
    with torch.no_grad():
        _latent(model).mul_(10)
    opt = torch.optim.SGD(method.param_groups(model), lr=0.1)
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    assert _latent(model).abs().max() <= 1.0
    assert (_latent(model).abs() == 1.0).any()


def test_aqe_weights_blend_in_training_and_hard_in_eval():
    model, method, _, _ = _setup("aqe", alpha=0.7)
    w = _latent(model).detach()
    model.train()
    assert torch.allclose(model.mid.weight, 0.7 * wq.sign_nonzero(w) + 0.3 * w)
    model.eval()
    assert torch.equal(model.mid.weight, wq.sign_nonzero(w))


def test_aqe_linear_ramp_sets_every_module():
    model, method, _, _ = _setup("aqe", alpha_schedule="linear", alpha=0.5, alpha_final=1.0)
    method.on_epoch_start(model, 2, 3)
    assert model.mid.parametrizations.weight[0].alpha == 1.0
    assert model.act.alpha == 1.0


def test_ste_one_bit_cancels_and_clips():
    model, method, x, y = _setup("ste")
    with torch.no_grad():
        _latent(model)[0].fill_(3.0)
    opt = torch.optim.SGD(method.param_groups(model), lr=0.0)
    g = _grad_at_q(model, x, y)
    assert (g[0] == 0).all() and (g[1:] != 0).any()
    train_step(model, method, opt, x, y, criterion=nn.CrossEntropyLoss())
    assert _latent(model).abs().max() <= 1.0


def test_ste_float_weights_quantized_activations():
    model, method, _, _ = _setup("ste", bits="W32A2", estimator="identity")
    assert not qbench.quantized_layers(model)
    assert model.act.bits == 2 and model.act.estimator == "identity"


def _fresh_conv_weight(init: str) -> torch.Tensor:
    """A freshly initialised Conv2d(64, 64, 3), seed 0: PyTorch's default (kaiming-uniform, a = √5) or timm's
    ResNet init (kaiming-normal, fan_out, ReLU gain)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3)
    if init == "kaiming_normal":
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv.weight.detach()


@pytest.mark.parametrize("init", ["default", "kaiming_normal"])
@pytest.mark.parametrize("bits", [2, 4])
def test_ste_auto_weights_are_the_bcgd_authors_quantizers(bits, init):
    """Issue #15: weights=auto at ≥ 2 bits follows the BCGD authors' code (quantize_tnn at 2 bits, quantize_fbit at
    4, written out in _bcgd_code) instead of the max-scaled uniform grid, which zeroes every |w| < max|w|/2 at 2
    bits; that grid stays as weights=auto_uniform."""
    w = _fresh_conv_weight(init)
    new = qbench.create_method("ste").weight_quantizer(bits).hard(w)
    old = qbench.create_method("ste", weights="auto_uniform").weight_quantizer(bits).hard(w)
    expected = quantize_tnn(w) if bits == 2 else quantize_fbit(w, bits)
    assert torch.allclose(new.double(), torch.from_numpy(expected), rtol=1e-6, atol=1e-9)
    assert torch.equal(old, wq.uniform(w, bits))
    assert float((new == 0).float().mean()) < 0.5
    new_err, old_err = float((new - w).norm() / w.norm()), float((old - w).norm() / w.norm())
    assert new_err < old_err
    if bits == 2 and init == "kaiming_normal":  # 97 % zeros under the old grid
        assert float((old == 0).float().mean()) > 0.9 and new_err < 0.65 * old_err
    for rule in ("auto", "auto_uniform"):  # 1 bit: the binary δ·sign(w) either way
        one_bit = qbench.create_method("ste", weights=rule).weight_quantizer(1).hard(w)
        assert torch.equal(one_bit, wq.binary(w))


def test_lbw_uses_exact_ternary_and_pow2():
    for bits, fn in (("W2A4", wq.ternary_exact), ("W3A4", lambda w: wq.pow2(w, 3))):
        model, _, _, _ = _setup("lbw", bits=bits)
        model.eval()
        assert torch.equal(model.mid.weight, fn(_latent(model).detach()))


@pytest.mark.parametrize("name", qbench.list_methods())
def test_every_method_documents_defaults_and_search_space(name):
    import optuna

    cls = qbench.registry.get_method_class(name)
    method = cls()
    assert cls.__doc__ and cls.family in ("baseline", "weight quantizer", "activation estimator", "update rule")
    assert all(h.help for h in cls.hparams.values())
    trial = optuna.trial.FixedTrial({})  # a fixed trial without values: suggest_* must only use declared keys
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = method.search_space(study.ask())
    assert set(space) <= set(cls.hparams), f"search space keys must be hyperparameters: {set(space) - set(cls.hparams)}"
    cls(**space)  # every sampled point is a valid configuration
    del trial



def _methods_and_space_switches():
    """Every registered method with its defaults, and those with a ``learn_alpha`` switch also with it flipped (the
    quantized ReLU tunes ``alpha_grad`` only when α is learned)."""
    cells = []
    for name in qbench.list_methods():
        cls = qbench.registry.get_method_class(name)
        cells.append((name, {}))
        if "learn_alpha" in cls.hparams:
            cells.append((name, {"learn_alpha": not cls.hparams["learn_alpha"].default}))
    return cells


def _declared_distribution(dim):
    """The Optuna distribution an HParam's parsed ``space`` stands for."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dim.kind == "categorical":
        return CategoricalDistribution(dim.choices)
    cls = IntDistribution if dim.kind == "int" else FloatDistribution
    return cls(dim.low, dim.high, log=dim.log)


@pytest.mark.parametrize("name,hparams", _methods_and_space_switches())
def test_search_space_suggests_what_the_hparams_declare(name, hparams):
    import optuna

    cls = qbench.registry.get_method_class(name)
    method = cls(**hparams)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    space = method.search_space(trial)
    searched = [k for k, h in cls.hparams.items() if h.space is not None]
    if isinstance(method, qbench.QuantReLUMethod) and not method.hp.learn_alpha:
        searched.remove("alpha_grad")  # ∂σ/∂α is a no-op with a fixed α
    assert list(trial.distributions) == list(space) == searched  # same names, in declaration order
    for key in searched:
        h = cls.hparams[key]
        assert trial.distributions[key] == _declared_distribution(h.space), key
        if h.choices is not None:  # a hyperparameter with choices is searched over some of them, never a range
            assert h.space.kind == "categorical" and set(h.space.choices) <= set(h.choices), key

def test_aqe_two_bit_weights_use_a_relative_threshold():
    """h(W) at 2 bits: {−1, 0, +1} with Δ = 0.7·mean|W| (TWN's rule) by default — a fixed Δ = 0.5 would zero every
    weight of a standard-initialised layer (|W| ≪ 0.5); the fixed threshold stays available."""
    net = {"mid_channels": 4, "mid_kernel": 3}  # fan-in 27: |W| ≤ 1/√27 at timm/PyTorch's default init
    model, _, _, _ = _setup("aqe", bits="W2A2", net=net)
    model.eval()
    w = _latent(model).detach()
    delta = 0.7 * w.abs().mean()
    expected = torch.where(w.abs() <= delta, torch.zeros_like(w), torch.sign(w))
    assert torch.equal(model.mid.weight, expected) and (expected != 0).any() and (expected == 0).any()
    fixed, _, _, _ = _setup("aqe", bits="W2A2", net=net, weight_ternary_delta=0.5)
    fixed.eval()
    assert w.abs().max() < 0.5 and torch.equal(fixed.mid.weight, torch.zeros_like(w))
