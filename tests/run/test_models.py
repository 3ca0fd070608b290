"""qbench.run.models: the registered architectures, the 32-px adapter, create_model and checkpoints."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from torch import nn
from torch.nn.utils import parametrize

import qbench.run.models.zoo as qm
from qbench.config import ModelConfig
from qbench.errors import QbenchError
from qbench.run.models import ARCHS, CONVNET_AQE_WIDTHS, ShortcutA, adapt_to_32px, create_model, load_checkpoint

ACTIVATIONS = (nn.ReLU, nn.Hardtanh)


def call_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    """(name, module, input, output) of every leaf-module call, in execution order."""
    calls, handles = [], []
    for name, module in model.named_modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: calls.append((name, m, args[0], out))))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return calls


@pytest.mark.parametrize("arch", ARCHS)
def test_registered_model_builds_and_runs(arch):
    assert arch in timm.list_models()
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=7)
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] == 7
    x = torch.randn(2, *cfg["input_size"])
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    first = model.get_submodule(cfg["first_conv"])
    classifier = model.get_submodule(cfg["classifier"])
    assert isinstance(first, nn.Conv2d) and first.in_channels == cfg["input_size"][0]
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 7
    assert model.get_classifier() is classifier
    assert len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_activation_is_its_own_module_called_once(arch):
    model = timm.create_model(arch, num_classes=10).eval()
    all_names = [n for n, _ in model.named_modules(remove_duplicate=False)]
    assert len(all_names) == len(list(model.named_modules())), "a module object is reused at several places"
    calls = call_order(model, torch.randn(2, *model.pretrained_cfg["input_size"]))
    called = [name for name, m, _, _ in calls if isinstance(m, ACTIVATIONS)]
    declared = [name for name, m in model.named_modules() if isinstance(m, ACTIVATIONS)]
    assert declared and sorted(called) == sorted(declared)  # each activation module runs exactly once


def test_reset_classifier_and_pre_logits():
    for arch in ("lenet5", "resnet20_cifar", "vgg11_cifar", "convnet_aqe_a"):
        model = timm.create_model(arch).eval()
        model.reset_classifier(4)
        x = torch.randn(2, *model.pretrained_cfg["input_size"])
        assert model(x).shape == (2, 4)
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        assert features.shape == (2, model.num_features)


# --- LeNet-5 ----------------------------------------------------------------------------------------------------------


def test_lenet5_affine_free_bn_before_each_relu():
    model = timm.create_model("lenet5").eval()
    calls = call_order(model, torch.randn(2, 1, 28, 28))
    relus = [i for i, (_, m, _, _) in enumerate(calls) if isinstance(m, nn.ReLU)]
    assert len(relus) == 3
    for i in relus:
        _, previous, _, previous_out = calls[i - 1]
        assert isinstance(previous, nn.modules.batchnorm._BatchNorm) and not previous.affine
        assert calls[i][2] is previous_out  # the ReLU consumes exactly the BN output
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 3 and all(not bn.affine for bn in bns)
    assert model.pretrained_cfg["input_size"] == (1, 28, 28)


def test_lenet5_builds_for_digits_8px():
    model = create_model("lenet5", num_classes=10, in_chans=1, input_size=(1, 8, 8)).eval()
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert model.pretrained_cfg["input_size"] == (1, 8, 8)
    assert model.conv1.padding == (2, 2)
    rgb = create_model("lenet5", num_classes=10, in_chans=3, input_size=32)
    assert rgb.pretrained_cfg["input_size"] == (3, 32, 32) and len(rgb.pretrained_cfg["mean"]) == 3
    assert rgb.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# --- CIFAR ResNets ----------------------------------------------------------------------------------------------------


def test_option_a_shortcut_has_no_parameters():
    shortcut = ShortcutA(16, 32, stride=2)
    assert not list(shortcut.parameters()) and not list(shortcut.buffers())
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()


@pytest.mark.parametrize("depth,params", [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6), (110, 1.7e6)])
def test_cifar_resnet_parameter_counts(depth, params):
    """He et al. 2016, Table 6: 0.27M / 0.46M / 0.66M / 0.85M / 1.7M parameters."""
    model = timm.create_model(f"resnet{depth}_cifar", num_classes=10)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - params) / params < 0.02, n
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == depth  # option A: no 1×1 projection convs, so the depth counts every weighted layer
    assert all(m.kernel_size == (3, 3) for m in weighted if isinstance(m, nn.Conv2d))
    shortcuts = [m for m in model.modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2


def test_resnet20_exact_parameter_count():
    assert sum(p.numel() for p in timm.create_model("resnet20_cifar").parameters()) == 269_722


# --- VGG-11 and the AQE ConvNets --------------------------------------------------------------------------------------


def test_vgg11_cifar_matches_bcgd_code_layout():
    model = timm.create_model("vgg11_cifar", num_classes=10)
    keys = set(model.state_dict())
    for key in ("features.conv0.weight", "features.conv0.bias", "features.norm0.running_mean",
                "features.conv7.weight", "classifier.weight", "classifier.bias"):
        assert key in keys
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 128, 256, 256, 512, 512, 512, 512]
    assert model.classifier.in_features == 512
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5


@pytest.mark.parametrize("letter", sorted(CONVNET_AQE_WIDTHS))
def test_convnet_aqe_is_the_bnn_convnet_at_a_width(letter):
    model = timm.create_model(f"convnet_aqe_{letter}", num_classes=10)
    w = CONVNET_AQE_WIDTHS[letter]
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert convs == [round(c * w) for c in (128, 128, 256, 256, 512, 512)]
    assert fcs == [round(1024 * w), round(1024 * w), 10]
    assert sum(isinstance(m, nn.Hardtanh) for m in model.modules()) == 8
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # conv -> [max-pool] -> BN -> hard-tanh, BN after every conv / FC (BNN, arXiv 1602.02830)
    calls = call_order(model.eval(), torch.randn(2, 3, 32, 32))
    kinds = [type(m).__name__ for _, m, _, _ in calls]
    for i, kind in enumerate(kinds):
        if kind in ("Conv2d", "Linear"):
            following = kinds[i + 1:i + 3]
            assert "BatchNorm2d" in following or "BatchNorm1d" in following


def test_convnet_aqe_d_is_bnn_size():
    model = timm.create_model("convnet_aqe_d")
    assert 13.9e6 < sum(p.numel() for p in model.parameters()) < 14.1e6  # BNN's CIFAR ConvNet: ~14M


# --- 32-px adapter ----------------------------------------------------------------------------------------------------


def test_adapt_to_32px_resnet18():
    model = adapt_to_32px(timm.create_model("resnet18", num_classes=10)).eval()
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 32, 32) and cfg["pool_size"] == (4, 4)
    assert model.get_submodule(cfg["first_conv"]) is model.conv1
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[-2:] == (4, 4)


def test_resnet18_cifar_is_adapted():
    model = timm.create_model("resnet18_cifar", num_classes=100, in_chans=1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.pretrained_cfg["input_size"] == (1, 32, 32) and model.pretrained_cfg["num_classes"] == 100
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 100)


def test_adapt_to_32px_conv_stem_and_unsupported():
    model = create_model("mobilenetv3_small_050", ModelConfig(adapt_32px=True), num_classes=10, in_chans=3)
    assert model.conv_stem.stride == (1, 1) and model.pretrained_cfg["input_size"] == (3, 32, 32)
    with pytest.raises(QbenchError, match="adapt_to_32px supports"):
        adapt_to_32px(nn.Sequential(nn.Linear(2, 2)))


# --- create_model and checkpoints -------------------------------------------------------------------------------------


def test_create_model_errors():
    with pytest.raises(QbenchError, match="unknown model.arch 'resnet20_cifr'.*resnet20_cifar"):
        create_model("resnet20_cifr", num_classes=10, in_chans=3)
    with pytest.raises(QbenchError, match="3 channels but in_chans=1"):
        create_model("resnet20_cifar", num_classes=10, in_chans=1, input_size=(3, 32, 32))
    with pytest.raises(QbenchError, match="remove the unsupported model option"):
        create_model("resnet20_cifar", ModelConfig(kwargs={"no_such_option": 1}), num_classes=10, in_chans=3)
    with pytest.raises(QbenchError, match="resnet20_cifar has no pretrained weights; set model.pretrained=false"):
        create_model("resnet20_cifar", ModelConfig(pretrained=True), num_classes=10, in_chans=3)


def test_pretrained_without_network_is_one_line_naming_the_fix(monkeypatch):
    """timm fetches resnet18's weights from the hub; without network that must not be a traceback per cell."""
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise ConnectionError("[Errno 101] Network is unreachable\n(more lines)")

    monkeypatch.setattr(builder, "load_pretrained", offline)
    with pytest.raises(QbenchError) as err:
        create_model("resnet18", ModelConfig(pretrained=True), num_classes=10, in_chans=3)
    message = str(err.value)
    assert "\n" not in message and "Network is unreachable" in message
    assert "could not be fetched" in message and "model.checkpoint=" in message


def test_create_model_passes_input_size_to_fixed_size_models():
    model = create_model("vgg11_cifar", num_classes=10, in_chans=3, input_size=(3, 64, 64))
    assert model.classifier.in_features == 512 * 2 * 2
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    source = create_model("resnet20_cifar", num_classes=10, in_chans=3)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = create_model("resnet20_cifar", ModelConfig(checkpoint=str(path)), num_classes=10, in_chans=3)
    for (k, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    # wrapped and DDP-prefixed
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    again = create_model("resnet20_cifar", ModelConfig(checkpoint=str(path)), num_classes=10, in_chans=3)
    assert torch.equal(again.fc.weight, source.fc.weight)


def test_checkpoint_mismatch_warns_and_loads_the_rest(tmp_path):
    source = create_model("lenet5", num_classes=10, in_chans=1)
    path = tmp_path / "lenet.pt"
    torch.save(source.state_dict(), path)
    with pytest.warns(UserWarning, match=r"skipped for shape mismatch \(fc.weight"):
        target = create_model("lenet5", ModelConfig(checkpoint=str(path)), num_classes=5, in_chans=1)
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    state = source.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["conv2.weight"]
    torch.save(state, path)
    with pytest.warns(UserWarning, match=r"1 missing \(conv2.weight\); 1 unexpected \(extra.weight\)"):
        load_checkpoint(create_model("lenet5", num_classes=10, in_chans=1), path)


def test_checkpoint_of_parametrized_model_loads_into_float_model(tmp_path):
    class Identity(nn.Module):
        def forward(self, w):
            return w

    source = create_model("lenet5", num_classes=10, in_chans=1)
    parametrize.register_parametrization(source.conv1, "weight", Identity())
    path = tmp_path / "quantized.pt"
    torch.save(source.state_dict(), path)
    assert "conv1.parametrizations.weight.original" in torch.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        target = load_checkpoint(create_model("lenet5", num_classes=10, in_chans=1), path)
    assert torch.equal(target.conv1.weight, source.conv1.parametrizations.weight.original)


def test_checkpoint_missing_or_unreadable(tmp_path):
    with pytest.raises(QbenchError, match="checkpoint file not found"):
        create_model("lenet5", ModelConfig(checkpoint=str(tmp_path / "nope.pt")), num_classes=10, in_chans=1)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(QbenchError, match="cannot read checkpoint"):
        create_model("lenet5", ModelConfig(checkpoint=str(tmp_path / "junk.pt")), num_classes=10, in_chans=1)


def test_module_all_lists_the_registered_models():
    for arch in ARCHS:
        assert arch in qm.__all__ and callable(getattr(qm, arch))
