"""Layer precision policies and per-layer bits (issue #15): which layers end up at which precision, checked by
inspecting the quantized model — its weight parametrizations (levels = the grid), activation modules and input
quantizers — on a timm ResNet-18, the CIFAR ResNet-20 and a ViT."""

from __future__ import annotations

import pytest
import torch

from qbench.config import LayerPolicy, ModelConfig, load_config, parse_policy
from qbench.errors import ConfigError
from qbench.quant.activation import InputQuantizer, QuantReLU
from qbench.quant.apply import INPUT_QUANTIZER_ATTR, first_last_layers
from qbench.quant.weight import num_levels
from qbench.registry import create_method, quantize_model
from qbench.run.models import create_model
from qbench.run.runner import plan_cells

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = {  # arch → (input size, first layer, last layer) as timm's pretrained_cfg names them
    "resnet18": ((3, 32, 32), "conv1", "fc"),
    "resnet20_cifar": ((3, 32, 32), "conv1", "fc"),
    "vit_tiny_patch16_224": ((3, 32, 32), "patch_embed.proj", "head"),
}


def _model(arch):
    size = ARCHS[arch][0]
    kwargs = {"patch_size": 8} if arch.startswith("vit") else {}
    torch.manual_seed(0)
    return create_model(arch, ModelConfig(kwargs=kwargs), num_classes=10, in_chans=3, input_size=size)


def _weight_levels(model, name):
    module = model.get_submodule(name)
    plist = getattr(getattr(module, "parametrizations", None), "weight", None)
    return None if plist is None else plist[0].levels


def _input_bits(model, name):
    quantizer = getattr(model.get_submodule(name), INPUT_QUANTIZER_ATTR, None)
    return None if quantizer is None else quantizer.bits


# (policy, expected (weight levels, input bits) of the first layer, of the last layer) at W2A4 with STE:
# 2-bit weights have num_levels(2) = 3 levels; 8-bit ones num_levels(8) = 255.
CASES = {
    "fp": ((None, None), (None, None)),
    "quantized": ((3, "cell"), (3, "cell")),
    "int8_first_last": ((255, 8), (255, 8)),
    "last_fp": ((3, "cell"), (None, None)),
    "first-W8A8_last-fp": ((255, 8), (None, None)),
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("policy", sorted(CASES))
def test_each_policy_puts_the_first_and_last_layer_at_its_precision(arch, policy):
    model = quantize_model(_model(arch), "ste", "W2A4", policy, input_size=ARCHS[arch][0])
    info = model.qbench_info
    first, last = ARCHS[arch][1:]
    assert first_last_layers(model) == ([first], [last])
    assert info.policy == policy and info.first == [first] and info.last == [last]
    for name, (levels, inputs) in zip((first, last), CASES[policy]):
        assert _weight_levels(model, name) == levels, (name, policy)
        if inputs == "cell":  # at the cell's bits: quantized like any other layer (the network input never is)
            assert info.precision[name] == "W2A4"
        else:
            assert _input_bits(model, name) == inputs, (name, policy)
            assert info.precision[name] == ("fp" if levels is None else "W8A8")
    # every other targeted layer runs at the cell's bits
    middle = [n for n in info.precision if n not in (first, last)]
    assert middle and all(info.precision[n] == "W2A4" and _weight_levels(model, n) == num_levels(2) for n in middle)
    model(torch.randn(2, *ARCHS[arch][0]))  # and it runs


def test_the_named_policies_are_the_papers_settings():
    assert parse_policy("fp") == LayerPolicy("fp", "fp")
    assert parse_policy("quantized") == LayerPolicy("same", "same")
    assert parse_policy("int8_first_last") == LayerPolicy("W8A8", "W8A8")
    assert parse_policy("last_fp") == LayerPolicy("same", "fp")
    assert parse_policy({"first": "w8a8", "last": "float"}).name == "first-W8A8_last-fp"
    assert parse_policy("first-W8A8_last-fp") == parse_policy({"first": "W8A8", "last": "fp"})
    assert parse_policy({"first": "W8A8", "last": "W8A8"}).name == "int8_first_last"  # one name per setting
    with pytest.raises(ConfigError, match="unknown policy"):
        parse_policy("half")
    with pytest.raises(ConfigError, match="policy.first"):
        parse_policy({"first": "W9X9"})


def test_a_binary_method_gets_generic_8_bit_first_and_last_layers():
    """BNN supports W1A1 only: under int8_first_last its first and last layers use qbench's generic uniform 8-bit
    weight quantizer and the EMA min-max input quantizer, and say so."""
    model = quantize_model(_model("resnet20_cifar"), "bnn", "W1A1", "int8_first_last", input_size=(3, 32, 32))
    info = model.qbench_info
    assert info.generic == ["conv1", "fc"]
    assert _weight_levels(model, "conv1") == 255 and isinstance(
        getattr(model.conv1, INPUT_QUANTIZER_ATTR), InputQuantizer)
    assert _weight_levels(model, "layer1.0.conv1") == 2  # the rest is the method's own binary quantizer


def test_layer_bits_globs_set_layers_and_activations():
    model = quantize_model(_model("resnet18"), "ste", "W2A2", "fp", input_size=(3, 32, 32),
                           layer_bits={"layer4.*": "W4A4", "layer4.1.conv2": "fp", "fc": "W8A8"})
    info = model.qbench_info
    assert _weight_levels(model, "layer4.0.conv1") == num_levels(4) and info.precision["layer4.0.conv1"] == "W4A4"
    assert _weight_levels(model, "layer4.1.conv2") is None and "layer4.1.conv2" in info.float_layers  # later wins
    assert _weight_levels(model, "layer3.0.conv1") == num_levels(2)
    assert _weight_levels(model, "fc") == 255 and _input_bits(model, "fc") == 8  # overrides the policy's fp
    act = model.get_submodule("layer4.0.act1")
    assert isinstance(act, QuantReLU) and act.bits == 4
    assert model.get_submodule("layer3.0.act1").bits == 2
    model(torch.randn(2, 3, 32, 32))


def test_a_glob_that_matches_nothing_names_the_layers():
    with pytest.raises(ConfigError) as exc:
        quantize_model(_model("resnet20_cifar"), "ste", "W2A2", "fp", input_size=(3, 32, 32),
                       layer_bits={"layer9.*": "W4A4"})
    message = str(exc.value)
    assert "layer9.*" in message and "conv1" in message and "layer1.0.conv1" in message and "\n" not in message


def test_policies_name_the_run_ids_and_the_config_checks_them(tmp_path):
    cfg = load_config("quickstart", ["methods=[ste]", "bits=[W2A4]", "seeds=[0]",
                                     'policies=[fp,int8_first_last,{first: W8A8, last: fp}]'])
    assert [c.run_id for c in plan_cells(cfg)] == [
        "ste_lenet5_W2A4_fp_s0", "ste_lenet5_W2A4_int8_first_last_s0", "ste_lenet5_W2A4_first-W8A8_last-fp_s0"]
    with pytest.raises(ConfigError, match="layer_bits"):
        load_config("quickstart", ['layer_bits={"layer4.*": W9Z9}'])
    with pytest.raises(ConfigError, match="policies is empty"):
        load_config("quickstart", ["policies=[]"])


def test_the_default_policy_is_unchanged():
    """``fp`` keeps the first/last layers float and puts no input quantizer on them, as before policies existed."""
    method = create_method("bcgd")
    model = quantize_model(_model("resnet20_cifar"), method, "W1A4", "fp", input_size=(3, 32, 32))
    info = model.qbench_info
    assert info.float_layers == ["conv1", "fc"] and not info.generic
    assert _input_bits(model, "conv1") is None and _weight_levels(model, "conv1") is None
