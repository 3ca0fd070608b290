"""torch.compile of every registered method (issue #13): the compiled training step gives the eager step's losses,
gradients and updated weights, and the quantizers trace without a graph break.

Backend ``aot_eager``: dynamo traces the forward (``fullgraph=True`` turns any graph break into an error) and
AOTAutograd traces the backward of every autograd Function, then runs the traced graphs eagerly — exactly what
inductor compiles, without its C++ code generation, which costs tens of seconds per graph on a 2-core CI machine.
One cell also runs inductor's CPU backend end to end (marked ``slow``: ~1 CPU-minute of C++ compilation). The
matrix takes ~2 CPU-minutes. ``train.compile`` resolution is checked without a GPU.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import qbench
from qbench.bits import parse_bits
from qbench.config import TrainConfig, load_config
from qbench.errors import ConfigError
from qbench.registry import get_method_class
from qbench.run.device import compile_model, resolve_compile, train_setup
from qbench.run.train import build_optimizer, train_step

ACT_BITS = ("W1A1", "W2A2", "W4A4")
WEIGHT_ONLY_BITS = ("W1A32", "W2A32", "W4A32")
# losses, gradients and weights after two steps: aot_eager runs the same kernels, up to decompositions' rounding
RTOL, ATOL = 1e-5, 1e-6


def _cells() -> list:
    """Every registered method at each of its supported bit-widths among W1A1/W2A2/W4A4, or W1/W2/W4 weights with
    float activations for a weight-only method. The default run compiles each method at its lowest bit-width (each
    compile costs seconds on 2 cores); the other bit-widths are marked slow: `pytest -m slow tests/run/test_compile.py`."""
    cells = []
    for name in qbench.list_methods():
        cls = get_method_class(name)
        bits = [b for b in ACT_BITS if cls.unsupported_bits(parse_bits(b)) is None]
        bits = bits or [b for b in WEIGHT_ONLY_BITS if cls.unsupported_bits(parse_bits(b)) is None]
        cells += [pytest.param(name, b, marks=[pytest.mark.slow] if i else []) for i, b in enumerate(bits)]
    return cells


class _Net(nn.Module):
    """conv → BN → ReLU → conv → BN → conv → ReLU → linear: under policy ``fp`` the two middle convs are quantized,
    with an activation quantizer after each ReLU, and the second one's input is a BN output (an input quantizer).
    Small on purpose: tracing cost grows with the number of operations."""

    pretrained_cfg = {"first_conv": "conv", "classifier": "fc", "input_size": (1, 6, 6)}

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn1, self.act = nn.BatchNorm2d(3), nn.ReLU()
        self.mid = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(3)
        self.conv2, self.act2 = nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.ReLU()
        self.fc = nn.Linear(3 * 36, 3)

    def forward(self, x):
        x = self.bn2(self.mid(self.act(self.bn1(self.conv(x)))))
        return self.fc(self.act2(self.conv2(x)).flatten(1))


def _twins(name: str, bits: str):
    """An eager model and an identical copy after one eager step each (data-dependent initialisations — LSQ's step,
    DSQ's range, the input quantizers' maxima — happen on the first training batch, outside any compiled graph)."""
    torch.manual_seed(0)
    eager = _Net()
    qbench.quantize_model(eager, name, bits, "fp")
    twin = copy.deepcopy(eager)  # its own method instance (qbench_info.method), tracking the copy's modules
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 1, 6, 6, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(3)]
    runs = []
    for model in (eager, twin):
        method = model.qbench_info.method
        method.on_epoch_start(model, 0, 4)
        opt = build_optimizer(method.param_groups(model), TrainConfig(lr=0.05, momentum=0.9, weight_decay=1e-4))
        train_step(model, method, opt, *batches[0], criterion=nn.CrossEntropyLoss())
        runs.append((model, method, opt))
    return runs, batches[1:]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {f"param {n}": p.detach().clone() for n, p in model.named_parameters()}
    out.update({f"grad {n}": p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})
    out.update({f"buffer {n}": b.detach().clone() for n, b in model.named_buffers()})
    return out


def _assert_close(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}, {key}: {m}")


@pytest.mark.parametrize("name,bits", _cells())
def test_compiled_step_matches_eager_without_graph_breaks(name, bits, one_thread):
    torch._dynamo.reset()
    ((eager, m_eager, opt_eager), (twin, m_twin, opt_twin)), batches = _twins(name, bits)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)  # a graph break raises
    for epoch, (x, y) in enumerate(batches, start=1):
        # a new epoch between the steps: schedules (IR-Net's t and k, BinaryRelax's λ) reach the compiled graph
        m_eager.on_epoch_start(eager, epoch, 4)
        m_twin.on_epoch_start(twin, epoch, 4)
        loss_e, logits_e = train_step(eager, m_eager, opt_eager, x, y, criterion=nn.CrossEntropyLoss())
        loss_c, logits_c = train_step(compiled, m_twin, opt_twin, x, y, criterion=nn.CrossEntropyLoss())
        torch.testing.assert_close(loss_c, loss_e, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(logits_c, logits_e, rtol=RTOL, atol=ATOL)
        _assert_close(_state(eager), _state(twin), f"{name} {bits} step {epoch}")


@pytest.mark.parametrize("name,bits", [("lsq", "W2A2"), ("dsq", "W2A2"), ("aqe", "W2A2"), ("xnor", "W1A1")])
def test_compiled_evaluation_matches_eager(name, bits, one_thread):
    """Evaluation (``qbench bench``'s compiled inference): the hard quantizers, the input quantizers' running range."""
    torch._dynamo.reset()
    ((eager, _, _), (twin, _, _)), batches = _twins(name, bits)
    eager.eval()
    twin.eval()
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(batches[0][0]), eager(batches[0][0]), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_inductor_cpu_backend_end_to_end(one_thread):
    """The real compiler on the CPU (C++ code generation) for a method with custom autograd Functions in weights and
    activations (DSQ's soft backward, the input quantizers): same losses and weights as eager within float32
    rounding of fused kernels. ~1 CPU-minute of C++ compilation, so ``slow``:
    ``pytest -m slow tests/run/test_compile.py``."""
    torch._dynamo.reset()
    ((eager, m_eager, opt_eager), (twin, m_twin, opt_twin)), batches = _twins("dsq", "W2A2")
    compiled = torch.compile(twin, fullgraph=True)
    for x, y in batches:
        loss_e, _ = train_step(eager, m_eager, opt_eager, x, y, criterion=nn.CrossEntropyLoss())
        loss_c, _ = train_step(compiled, m_twin, opt_twin, x, y, criterion=nn.CrossEntropyLoss())
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)
    for key, value in _state(eager).items():
        torch.testing.assert_close(_state(twin)[key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("mode,device,expected", [
    ("auto", "cpu", (False, None)), ("auto", "cuda", (True, None)),
    ("true", "cpu", (True, None)), ("false", "cuda", (False, None)),
    ("reduce-overhead", "cuda", (True, "reduce-overhead")), ("reduce-overhead", "cpu", (True, None)),
])
def test_train_compile_resolution_needs_no_gpu(mode, device, expected):
    assert resolve_compile(mode, torch.device(device)) == expected
    setup = train_setup(TrainConfig(compile=mode), torch.device(device))
    assert (setup.compile, setup.compile_mode) == expected


def test_train_compile_config_values():
    assert load_config("quickstart").train.compile == "auto"  # the default
    for given, expected in (("true", "true"), ("True", "true"), ("false", "false"), ("AUTO", "auto"),
                            ("reduce-overhead", "reduce-overhead")):
        assert load_config("quickstart", [f"train.compile={given}"]).train.compile == expected
    with pytest.raises(ConfigError, match="train.compile"):
        load_config("quickstart", ["train.compile=max-autotune"])
    model = nn.Linear(2, 2)
    assert compile_model(model, train_setup(TrainConfig(compile="auto"), torch.device("cpu"))) is model
