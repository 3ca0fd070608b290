"""Model surgery, parametrized over list_methods() × models × bit-widths {1, 2, 4} (issue: core, what must hold)."""

import functools

import pytest
import timm
import torch
from torch.nn.utils import parametrize

import qbench
import qbench.run.models  # noqa: F401  (registers the papers' architectures into timm)
from qbench.bits import parse_bits
from qbench.errors import BitsError, ConfigError, UnknownMethodError
from qbench.quant.apply import first_last_layers, freeze_quantized, model_size_bits, quantized_layers
from qbench.run.train import train_step

BITS = (1, 2, 4)
# Light models: every method × every bit-width. (name, kwargs, input size)
LIGHT = [
    ("lenet5", {}, (1, 28, 28)),
    ("resnet20_cifar", {}, (3, 32, 32)),
    ("test_resnet", {}, (3, 32, 32)),
    ("test_efficientnet", {}, (3, 32, 32)),
    ("test_vit", {}, None),
    ("test_convnext", {}, (3, 32, 32)),
]
# Heavy models required by the issue: each in a few cells (methods rotate over bit-widths and policies).
HEAVY = [  # the real timm classes and layer types at 32×32 inputs (narrower or shallower where timm takes the argument)
    ("resnet18", {}, (3, 32, 32)),
    ("mobilenetv2_100", {}, (3, 32, 32)),
    ("efficientnet_b0", {}, (3, 32, 32)),
    ("tf_efficientnet_b0", {}, (3, 32, 32)),  # Conv2dSame
    ("resnetv2_50x1_bit", {"channels": (128, 256, 512, 1024)}, (3, 32, 32)),  # StdConv2d; a quarter of the widths
    ("convnext_atto", {}, (3, 32, 32)),
    ("deit_tiny_patch16_224", {"img_size": 32, "depth": 2}, (3, 32, 32)),
    ("beit_base_patch16_224", {"img_size": 32, "depth": 2}, (3, 32, 32)),  # attention reads qkv.weight functionally
]


def _methods():
    return qbench.list_methods()


def _cells():
    cells = []
    for arch, kw, size in LIGHT:
        for m in _methods():
            for b in BITS:
                cells.append(pytest.param(arch, kw, size, m, b, "fp" if b != 2 else "quantized",
                                          id=f"{arch}-{m}-W{b}A{b}"))
    for i, (arch, kw, size) in enumerate(HEAVY):
        for j, m in enumerate(_methods()):
            b = BITS[(i + j) % 3]
            policy = "fp" if (i + j) % 2 == 0 else "quantized"
            cells.append(pytest.param(arch, kw, size, m, b, policy, id=f"{arch}-{m}-W{b}A{b}-{policy}"))
    return cells


@functools.lru_cache(maxsize=None)
def _fresh_state(arch, kw_items):
    torch.manual_seed(0)
    return timm.create_model(arch, num_classes=10, **dict(kw_items)).state_dict()


def _build(arch, kw):
    model = timm.create_model(arch, num_classes=10, **kw)
    return model


def _supported(method, spec):
    """Whether the method supports the bit-width spec (weight and activation sides, Method.unsupported_bits)."""
    return qbench.registry.get_method_class(method).unsupported_bits(parse_bits(spec)) is None


@pytest.mark.parametrize("arch,kw,size,method,bits,policy", _cells())
def test_surgery_levels_policy_and_one_step(arch, kw, size, method, bits, policy):
    torch.manual_seed(0)
    model = _build(arch, kw)
    spec = f"W{bits}A{bits}"
    if not _supported(method, spec) and _supported(method, f"W{bits}A32"):
        # a weight-only method (activation_bits=(32,)) refuses WbAb; its weight surgery is checked at WbA32
        with pytest.raises(BitsError):
            qbench.quantize_model(model, method, spec, policy, input_size=size)
        spec = f"W{bits}A32"
    if not _supported(method, spec):
        with pytest.raises(BitsError):
            qbench.quantize_model(model, method, spec, policy, input_size=size)
        return
    qbench.quantize_model(model, method, spec, policy, input_size=size)
    info = model.qbench_info
    m = info.method
    layers = dict(quantized_layers(model))

    # The first/last policy is honoured.
    first_last = set(info.first) | set(info.last)
    assert first_last, "every model must expose its first and last layers"
    if policy == "fp":
        assert not first_last & set(layers)
    elif method != "fp":
        assert first_last <= set(layers)
    if method == "fp":
        assert not layers and not info.input_quantized and not info.activations
    else:
        assert layers, "a quantized method must parametrize some layer"

    # Every targeted weight takes at most the method's number of levels (hard values at evaluation).
    model.eval()
    for name, layer in layers.items():
        assert parametrize.is_parametrized(layer, "weight")
        weight = layer.weight.detach()
        if getattr(layer.parametrizations.weight[0], "per_channel", False):  # one scale per output channel
            n_values = max(row.unique().numel() for row in weight.reshape(weight.shape[0], -1))
        else:
            n_values = weight.unique().numel()
        levels = layer.parametrizations.weight[0].levels
        assert n_values <= levels, f"{name}: {n_values} values > {levels} levels"

    # A forward+backward step runs and changes the latent weights.
    model.train()
    shape = size or model.pretrained_cfg["input_size"]
    x = torch.randn(4, *shape)
    y = torch.randint(0, 10, (4,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(m.param_groups(model), lr=0.05, momentum=0.9)
    loss, logits = train_step(model, m, opt, x, y, criterion=torch.nn.CrossEntropyLoss())
    assert torch.isfinite(loss) and logits.shape == (4, 10)
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    latent = [n for n in before if n.endswith("parametrizations.weight.original")]
    if latent:
        assert set(latent) & set(changed), "no latent weight changed"
    else:
        assert changed


def test_policy_read_from_pretrained_cfg():
    model = timm.create_model("resnet18", num_classes=10)
    assert first_last_layers(model) == (["conv1"], ["fc"])
    model = timm.create_model("deit_tiny_patch16_224", num_classes=10, img_size=32)
    assert first_last_layers(model) == (["patch_embed.proj"], ["head"])


def test_beit_qkv_input_is_quantized_through_the_parent():
    model = timm.create_model("beit_base_patch16_224", num_classes=10, img_size=32, depth=1)
    qbench.quantize_model(model, "ste", "W2A4", "fp", input_size=(3, 32, 32))
    info = model.qbench_info
    assert "blocks.0.attn.qkv" in info.quantized
    assert "blocks.0.attn" in info.input_quantized  # qkv.weight is read by F.linear inside Attention.forward


def test_relu_fed_layers_need_no_input_quantizer_and_network_input_is_never_quantized():
    model = timm.create_model("resnet20_cifar", num_classes=10)
    qbench.quantize_model(model, "bcgd", "W1A4", "quantized", input_size=(3, 32, 32))
    info = model.qbench_info
    assert "conv1" in info.quantized and "conv1" not in info.input_quantized
    # the only non-ReLU-fed quantized layer is the classifier after global pooling (non-negative → unsigned grid)
    assert info.input_quantized == ["fc"]
    assert model.fc.qbench_input_quantizer.signed is False


def test_freeze_exports_quantized_values():
    torch.manual_seed(0)
    model = timm.create_model("lenet5", num_classes=10)
    qbench.quantize_model(model, "lbw", "W2A4", "quantized")
    model.eval()
    x = torch.randn(3, 1, 28, 28)
    expected = model(x)
    q_weights = {n: m.weight.detach().clone() for n, m in quantized_layers(model)}
    freeze_quantized(model)
    assert not quantized_layers(model)
    for name, w in q_weights.items():
        layer = model.get_submodule(name)
        assert not parametrize.is_parametrized(layer)
        assert torch.equal(layer.weight.detach(), w)
        assert layer.weight.unique().numel() <= 3
    assert torch.allclose(model(x), expected)


def test_model_size_counts_bits():
    model = timm.create_model("lenet5", num_classes=10)
    fp_bits = model_size_bits(model)
    assert fp_bits == 32 * sum(p.numel() for p in model.parameters())
    qbench.quantize_model(model, "ste", "W1A4", "quantized")
    n_q = sum(m.parametrizations.weight.original.numel() for _, m in quantized_layers(model))
    assert model_size_bits(model) == fp_bits - 31 * n_q + 32 * len(quantized_layers(model))


def test_bad_inputs_are_one_line_errors():
    model = timm.create_model("lenet5", num_classes=10)
    with pytest.raises(UnknownMethodError) as exc:
        qbench.quantize_model(model, "nope", "W1A4")
    assert "bcgd" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(BitsError, match="W1, W2, W4"):
        qbench.quantize_model(model, "bcgd", "W3A4")
    with pytest.raises(BitsError, match="W<bits>A<bits>"):
        qbench.quantize_model(model, "ste", "1-4")
    with pytest.raises(ConfigError, match="fp, quantized"):
        qbench.quantize_model(model, "ste", "W1A4", policy="half")
    with pytest.raises(ConfigError, match="valid:"):
        qbench.quantize_model(model, "ste", "W1A4", rho=0.1)
    qbench.quantize_model(model, "ste", "W1A4")
    with pytest.raises(qbench.QbenchError, match="already quantized"):
        qbench.quantize_model(model, "ste", "W1A4")


def test_surgery_takes_an_instance_and_the_registry_resolves_names():
    from _tiny import TinyNet

    from qbench.quant import apply

    with pytest.raises(TypeError, match=r"qbench.quantize_model\(model, 'ste'"):
        apply.quantize_model(TinyNet(), "ste", "W2A4", "fp")
    method = qbench.create_method("ste", estimator="relu")
    model = apply.quantize_model(TinyNet(), method, "W2A4", "fp")
    assert model.qbench_info.method is method and quantized_layers(model)
    with pytest.raises(ConfigError, match="not both"):
        qbench.quantize_model(TinyNet(), method, "W2A4", estimator="identity")
    by_name = qbench.quantize_model(TinyNet(), "ste", "W2A4", estimator="relu")
    assert by_name.qbench_info.method.config == method.config
