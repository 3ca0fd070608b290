"""The papers' architectures, registered into timm, plus a 32-px adapter for timm's ImageNet models.

After ``import qbench.models``, ``timm.create_model("resnet20_cifar", num_classes=10)`` works like any timm model, and
every registered model carries a ``pretrained_cfg`` whose ``first_conv`` / ``classifier`` name real module paths (the
quantizer surgery keeps those layers in float under ``policy.first_last=fp``) and whose ``input_size`` / ``num_classes``
/ ``mean`` / ``std`` describe the model as built.

Registered (``ARCHS``):

==================  ================================================================================================
lenet5              LeNet-5 for MNIST as in the STE paper (Yin et al., ICLR 2019, arXiv 1903.05662, §4): conv–BN–ReLU–
                    pool ×2, FC–BN–ReLU, FC, with **BatchNorm without affine parameters before every activation**.
resnet{20,32,44,    He et al., *Deep residual learning*, CVPR 2016 (arXiv 1512.03385) §4.2 CIFAR ResNets: 3 stages of
56,110}_cifar       16/32/64 channels, n = (depth − 2)/6 basic blocks each, **option-A shortcuts** (§3.3).
vgg11_cifar         VGG-11 with BatchNorm as in the BCGD authors' code (``penhunt/full-quantization-DNN``,
                    ``nets/vgg_type.py``): cfg [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M] + Linear(512, K);
                    module names match that code, so its state dicts load unchanged.
convnet_aqe_{a..d}  The binarized CIFAR ConvNet of BNN (Courbariaux, Hubara et al. 2016, arXiv 1602.02830):
                    2×128C3–MP2–2×256C3–MP2–2×512C3–MP2–2×1024FC–K, at width ×¼, ×½, ×¾, ×1 for Models A–D (the
                    width ladder is our [choice], see :class:`ConvNetAQE`).
resnet18_cifar      timm's ``resnet18`` passed through :func:`adapt_to_32px`.
==================  ================================================================================================

Every activation is its own module instance (``nn.ReLU`` / ``nn.Hardtanh``), never ``F.relu`` and never one module
reused at several places: the surgery replaces activation *modules*, and methods with a learned per-layer resolution
(BCGD's α) need one quantizer per use.

:func:`qbench.run.models.create_model` (:mod:`.factory`) is the entry point of the training loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import timm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..data import CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, MNIST_STD
from ...errors import QbenchError

# A list, not a tuple: timm's register_model appends each registered entrypoint name to the module's __all__.
__all__ = [
    "ARCHS",
    "LeNet5",
    "ShortcutA",
    "BasicBlockCifar",
    "CifarResNet",
    "VGGCifar",
    "ConvNetAQE",
    "CONVNET_AQE_WIDTHS",
    "adapt_to_32px",
    "pair",
]


def pair(size) -> tuple[int, int]:
    """(H, W) from an int side or an (H, W) / (C, H, W) sequence."""
    if isinstance(size, Sequence):
        size = tuple(int(s) for s in size)
        return size[-2:] if len(size) >= 2 else (size[0], size[0])
    return int(size), int(size)


class _TimmClassifierMixin:
    """The parts of timm's classifier API the rest of qbench (and timm utilities) rely on."""

    num_classes: int
    num_features: int
    fc: nn.Module

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------------------------------
# LeNet-5 (STE paper)
# ------------------------------------------------------------------------------------------------------------------


class LeNet5(_TimmClassifierMixin, nn.Module):
    """LeNet-5 for MNIST in the setting of the STE paper (Yin et al., ICLR 2019, arXiv 1903.05662, §4).

    From the paper: LeNet-5 on MNIST, with a **BatchNorm layer without scale and shift inserted right before each
    activation** — the quantized ReLU then sees normalised pre-activations, which is what lets the paper fix the
    resolution α from a half-normal fit. [choice] The widths are those of the Caffe/PyTorch-examples LeNet that the
    quantization literature usually calls LeNet-5 (20C5–MP2–50C5–MP2–500FC–K); they are constructor arguments.
    Layers feeding a BN have no bias (the BN mean subtraction would cancel it).

    Small inputs: with ``img_size < 16`` (e.g. sklearn ``digits`` at 8×8) the two 5×5 convolutions use padding 2
    ("same") so the feature map survives both poolings (8 → 4 → 2); at 28×28 they are unpadded as in LeNet
    (28 → 24 → 12 → 8 → 4). The first FC is sized for ``img_size``; a model is built for one input size.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size=28, channels: tuple[int, int] = (20, 50),
                 hidden: int = 500, device=None, dtype=None):
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.img_size = pair(img_size)
        padding = 2 if min(self.img_size) < 16 else 0
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_chans, c1, 5, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm2d(c1, affine=False)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm2d(c2, affine=False)
        self.act2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        # Each 5×5 conv changes the side by 2·padding − 4, each pool halves it.
        h, w = (((s + 2 * padding - 4) // 2 + 2 * padding - 4) // 2 for s in self.img_size)
        if h < 1 or w < 1:
            raise ValueError(f"lenet5: input {self.img_size} is too small (feature map {h}×{w})")
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(c2 * h * w, hidden, bias=False)
        self.bn3 = nn.BatchNorm1d(hidden, affine=False)
        self.act3 = nn.ReLU()
        self.num_features = hidden
        self.fc = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.pool1(self.act1(self.bn1(self.conv1(x))))
        return self.pool2(self.act2(self.bn2(self.conv2(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.act3(self.bn3(self.fc1(self.flatten(x))))
        return x if pre_logits else self.fc(x)


# ------------------------------------------------------------------------------------------------------------------
# CIFAR ResNets (He et al. 2016, option A)
# ------------------------------------------------------------------------------------------------------------------


class ShortcutA(nn.Module):
    """Option-A projection shortcut (He et al. 2016, §3.3 "(A) zero-padding shortcuts are used for increasing
    dimensions, and all shortcuts are parameter-free"): subsample by ``stride`` and append zero channels. No
    parameters, as in the paper's CIFAR experiments (§4.2) and the BCGD code's ``DownsampleA``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("ShortcutA only increases the channel count")
        self.extra_channels, self.stride = out_channels - in_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels)) if self.extra_channels else x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class BasicBlockCifar(nn.Module):
    """Two 3×3 conv–BN layers with an identity / option-A shortcut; ReLU after the first BN and after the addition
    (He et al. 2016, Fig. 2). Two distinct ``nn.ReLU`` modules, one per use."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        needs_projection = stride != 1 or in_channels != channels
        self.downsample = ShortcutA(in_channels, channels, stride) if needs_projection else None
        self.act2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + shortcut)


class CifarResNet(_TimmClassifierMixin, nn.Module):
    """CIFAR ResNet-(6n+2) of He et al. 2016, §4.2: a 3×3 conv with 16 filters, then 3 stages of n basic blocks on
    feature maps of 32/16/8 pixels with 16/32/64 filters (subsampling by stride-2 convs), global average pooling and a
    K-way FC. Shortcuts are identity / option A throughout, so ResNet-20 has 0.27M parameters (Table 6).
    Initialisation: He normal for the convs (the paper's [13]), BN γ = 1, β = 0."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3, widths=(16, 32, 64),
                 device=None, dtype=None):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        blocks = (depth - 2) // 6
        self.depth, self.num_classes, self.in_chans = depth, num_classes, in_chans
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU()
        in_channels = widths[0]
        for stage, width in enumerate(widths, start=1):
            layers = []
            for i in range(blocks):
                stride = 2 if stage > 1 and i == 0 else 1
                layers.append(BasicBlockCifar(in_channels, width, stride))
                in_channels = width
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.num_features = in_channels
        self.fc = nn.Linear(in_channels, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.flatten(self.global_pool(x))
        return x if pre_logits else self.fc(x)


# ------------------------------------------------------------------------------------------------------------------
# VGG-11 (BCGD code)
# ------------------------------------------------------------------------------------------------------------------

VGG_CIFAR_CFGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
}


class VGGCifar(nn.Module):
    """VGG with BatchNorm for CIFAR as in the BCGD authors' code (``penhunt/full-quantization-DNN``,
    ``nets/vgg_type.py``, used by the BCGD and STE papers): every conv is 3×3 / pad 1 with bias, followed by BN and
    ReLU; "M" is a 2×2 max-pool; after five pools a 32×32 input is 512×1×1 and a single ``Linear(512, K)`` classifies.
    Module names (``features.conv0``, ``features.norm0``, ``features.relu0``, ``features.pool0``, …, ``classifier``)
    follow that code so its state dicts load as they are. For another ``img_size`` the classifier input grows to
    512·(H/32)·(W/32)."""

    def __init__(self, depth_cfg: str = "vgg11", num_classes: int = 10, in_chans: int = 3, img_size=32,
                 device=None, dtype=None):
        super().__init__()
        cfg = VGG_CIFAR_CFGS[depth_cfg]
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, pair(img_size)
        features = nn.Sequential()
        channels, conv_index, pool_index = in_chans, 0, 0
        for item in cfg:
            if item == "M":
                features.add_module(f"pool{pool_index}", nn.MaxPool2d(kernel_size=2, stride=2))
                pool_index += 1
            else:
                features.add_module(f"conv{conv_index}", nn.Conv2d(channels, item, kernel_size=3, padding=1))
                features.add_module(f"norm{conv_index}", nn.BatchNorm2d(item))
                features.add_module(f"relu{conv_index}", nn.ReLU())
                channels, conv_index = item, conv_index + 1
        self.features = features
        reduction = 2**pool_index
        h, w = (s // reduction for s in self.img_size)
        if h < 1 or w < 1:
            raise ValueError(f"{depth_cfg}_cifar: input {self.img_size} is smaller than the total stride {reduction}")
        self.flatten = nn.Flatten(1)
        self.num_features = channels * h * w
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.flatten(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------------------------------
# AQE ConvNets (BNN CIFAR ConvNet)
# ------------------------------------------------------------------------------------------------------------------

#: Width multipliers of Models A–D relative to the BNN ConvNet. [choice] — see ConvNetAQE.
CONVNET_AQE_WIDTHS = {"a": 0.25, "b": 0.5, "c": 0.75, "d": 1.0}


class ConvNetAQE(_TimmClassifierMixin, nn.Module):
    """The BNN-style CIFAR ConvNet used by the AQE paper (Chen, Liu, Zhang, Hou, Yang, *Propagating
    Asymptotic-Estimated Gradients for Low Bitwidth Quantized Neural Networks*, arXiv 2003.04296, IEEE JSTSP 2020).

    From the sources:

    * [paper, abstract] AQE is compared with BNN-STE "in the case of the same ConvNet that has 1-bit weights and
      activations" (+1.5 %), i.e. the binarized CIFAR ConvNet of BNN.
    * [BNN, Courbariaux, Hubara et al. 2016, arXiv 1602.02830, CIFAR-10 architecture]
      (2×128C3)–MP2–(2×256C3)–MP2–(2×512C3)–MP2–(2×1024FC)–10, BatchNorm after every conv/FC, hard-tanh activations.
      The authors' code orders each layer conv → [max-pool] → BN → hard-tanh (pooling before the sign so that it is
      not an OR of binary values) and ends with a BN on the logits; both are reproduced here.

    [choice] The definitions of Models A–D could not be found (the paper's table was not available to us); we read
    them as a width ladder on the BNN ConvNet — every channel / unit count × ``width`` with A = ¼, B = ½, C = ¾,
    D = 1 (Model D is exactly the BNN ConvNet). ``width`` and ``fc_width`` are constructor arguments, so the paper's
    exact numbers can be substituted once known. Also [choice]: the hard-tanh activations are ``nn.Hardtanh``
    modules (AQE replaces them with its quantizer); layers feeding a BN have no bias (BN cancels it); the final BN
    on the logits is affine, as in the BNN Theano code (``head_norm=False`` removes it).
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_chans: int = 3, img_size=32,
                 fc_width: int | None = None, head_norm: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, pair(img_size)
        self.width = width
        c1, c2, c3 = (max(1, int(round(c * width))) for c in (128, 256, 512))
        hidden = fc_width or max(1, int(round(1024 * width)))
        plan = ((c1, False), (c1, True), (c2, False), (c2, True), (c3, False), (c3, True))  # (channels, pool after)
        features = nn.Sequential()
        channels = in_chans
        for i, (out, pool) in enumerate(plan, start=1):
            features.add_module(f"conv{i}", nn.Conv2d(channels, out, 3, padding=1, bias=False))
            if pool:
                features.add_module(f"pool{i}", nn.MaxPool2d(2))
            features.add_module(f"bn{i}", nn.BatchNorm2d(out))
            features.add_module(f"act{i}", nn.Hardtanh())
            channels = out
        self.features = features
        h, w = (s // 8 for s in self.img_size)
        if h < 1 or w < 1:
            raise ValueError(f"convnet_aqe: input {self.img_size} is smaller than the total stride 8")
        self.flatten = nn.Flatten(1)
        self.pre_logits = nn.Sequential()
        in_features = channels * h * w
        for i in (1, 2):
            self.pre_logits.add_module(f"fc{i}", nn.Linear(in_features, hidden, bias=False))
            self.pre_logits.add_module(f"bn{i}", nn.BatchNorm1d(hidden))
            self.pre_logits.add_module(f"act{i}", nn.Hardtanh())
            in_features = hidden
        self.num_features = hidden
        self.head_norm_enabled = head_norm
        self.fc = nn.Linear(hidden, num_classes, bias=not head_norm) if num_classes > 0 else nn.Identity()
        self.head_norm = nn.BatchNorm1d(num_classes) if head_norm and num_classes > 0 else nn.Identity()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        use_norm = self.head_norm_enabled and num_classes > 0
        self.fc = nn.Linear(self.num_features, num_classes, bias=not use_norm) if num_classes > 0 else nn.Identity()
        self.head_norm = nn.BatchNorm1d(num_classes) if use_norm else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.pre_logits(self.flatten(x))
        return x if pre_logits else self.head_norm(self.fc(x))


# ------------------------------------------------------------------------------------------------------------------
# 32-px adapter for timm ImageNet models
# ------------------------------------------------------------------------------------------------------------------


def adapt_to_32px(model: nn.Module) -> nn.Module:
    """Adapt a timm ImageNet model to 32×32 inputs, the usual CIFAR modification (e.g. the BCGD / STE papers'
    CIFAR ResNet-18): the stride-2 stem convolution becomes a 3×3 stride-1 convolution and the stem max-pool is
    removed, so the first stage sees 32×32 instead of 8×8.

    Supported: the resnet family (``conv1`` + ``maxpool``; a deep stem ``conv1`` Sequential keeps its convs and its
    first conv's stride becomes 1) and the ``conv_stem`` families (EfficientNet, MobileNet, …: stride set to 1). A
    replaced ``conv1`` is freshly initialised (pretrained 7×7 stem weights do not fit). ``pretrained_cfg`` is updated:
    ``input_size = (C, 32, 32)``, ``pool_size`` re-measured, ``crop_pct = 1``; modified in place and returned.
    """
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d) and hasattr(model, "maxpool"):
        stem = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1, bias=conv1.bias is not None)
        nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
        model.conv1 = stem.to(device=conv1.weight.device, dtype=conv1.weight.dtype)
        model.maxpool = nn.Identity()
    elif isinstance(conv1, nn.Sequential) and hasattr(model, "maxpool"):
        first = next(m for m in conv1.modules() if isinstance(m, nn.Conv2d))
        first.stride = (1, 1)
        model.maxpool = nn.Identity()
    elif isinstance(getattr(model, "conv_stem", None), nn.Conv2d):
        model.conv_stem.stride = (1, 1)
    else:
        raise QbenchError(f"adapt_to_32px supports resnet-family (conv1/maxpool) and conv_stem models, not "
                          f"{type(model).__name__}; use a CIFAR architecture such as resnet20_cifar instead")

    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    in_chans = (model.conv1 if hasattr(model, "conv1") else model.conv_stem)
    in_chans = next(m for m in in_chans.modules() if isinstance(m, nn.Conv2d)).in_channels
    cfg.update(input_size=(in_chans, 32, 32), crop_pct=1.0, fixed_input_size=False)
    cfg.pop("test_input_size", None)
    cfg.pop("test_crop_pct", None)
    if hasattr(model, "forward_features"):
        cfg["pool_size"] = _measure_pool_size(model, (in_chans, 32, 32))
    model.pretrained_cfg = cfg
    model.default_cfg = cfg
    return model


@torch.no_grad()
def _measure_pool_size(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[int, int] | None:
    """Spatial size of ``forward_features`` at ``input_size`` (eval mode, so BN running statistics are untouched)."""
    was_training = model.training
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else None
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    try:
        model.eval()
        out = model.forward_features(torch.zeros(1, *input_size, device=device, dtype=dtype))
        return tuple(int(s) for s in out.shape[-2:]) if out.ndim == 4 else None
    except Exception:  # noqa: BLE001 - the pool size is informative only
        return None
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------------------------------------------------
# timm registration
# ------------------------------------------------------------------------------------------------------------------


def _cfg(**kwargs) -> dict:
    cfg = dict(url="", num_classes=10, input_size=(3, 32, 32), pool_size=None, crop_pct=1.0,
               interpolation="bilinear", mean=CIFAR10_MEAN, std=CIFAR10_STD, fixed_input_size=False,
               license="apache-2.0")
    cfg.update(kwargs)
    return cfg


default_cfgs = generate_default_cfgs({
    # fixed_input_size=True makes timm pass img_size=(H, W) from input_size to the models whose FC size depends on it.
    "lenet5": _cfg(input_size=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD, fixed_input_size=True,
                   first_conv="conv1", classifier="fc", paper_ids="arXiv:1903.05662"),
    **{f"resnet{d}_cifar": _cfg(first_conv="conv1", classifier="fc", pool_size=(8, 8), paper_ids="arXiv:1512.03385")
       for d in (20, 32, 44, 56, 110)},
    "vgg11_cifar": _cfg(fixed_input_size=True, first_conv="features.conv0", classifier="classifier",
                        paper_ids="arXiv:1808.05240"),
    **{f"convnet_aqe_{m}": _cfg(fixed_input_size=True, first_conv="features.conv1", classifier="fc",
                                paper_ids="arXiv:2003.04296")
       for m in CONVNET_AQE_WIDTHS},
    "resnet18_cifar": _cfg(first_conv="conv1", classifier="fc", pool_size=(4, 4)),
})


def _describe_built_model(model: nn.Module) -> nn.Module:
    """Make ``pretrained_cfg`` describe the model as built (these architectures have no pretrained weights whose
    geometry the cfg would otherwise record)."""
    cfg = dict(model.pretrained_cfg)
    height, width = getattr(model, "img_size", cfg["input_size"][-2:])
    cfg.update(input_size=(model.in_chans, height, width), num_classes=model.num_classes)
    if len(cfg.get("mean", ())) != model.in_chans:
        # e.g. lenet5 on 3-channel input: repeat the single-channel statistics.
        cfg.update(mean=tuple(cfg["mean"][:1]) * model.in_chans, std=tuple(cfg["std"][:1]) * model.in_chans)
    model.pretrained_cfg = model.default_cfg = cfg
    return model


def _build(model_cls, variant: str, pretrained: bool, **kwargs) -> nn.Module:
    return _describe_built_model(build_model_with_cfg(model_cls, variant, pretrained, **kwargs))


@register_model
def lenet5(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 with affine-free BN before each ReLU (STE paper, arXiv 1903.05662)."""
    return _build(LeNet5, "lenet5", pretrained, **kwargs)


def _cifar_resnet(depth: int, pretrained: bool, **kwargs) -> CifarResNet:
    return _build(CifarResNet, f"resnet{depth}_cifar", pretrained, depth=depth, **kwargs)


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-20, option-A shortcuts, 0.27M parameters (He et al. 2016, Table 6)."""
    return _cifar_resnet(20, pretrained, **kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-32, option-A shortcuts, 0.46M parameters (He et al. 2016, Table 6)."""
    return _cifar_resnet(32, pretrained, **kwargs)


@register_model
def resnet44_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-44, option-A shortcuts, 0.66M parameters (He et al. 2016, Table 6)."""
    return _cifar_resnet(44, pretrained, **kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-56, option-A shortcuts, 0.85M parameters (He et al. 2016, Table 6)."""
    return _cifar_resnet(56, pretrained, **kwargs)


@register_model
def resnet110_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-110, option-A shortcuts, 1.7M parameters (He et al. 2016, Table 6; used by the BCGD code)."""
    return _cifar_resnet(110, pretrained, **kwargs)


@register_model
def vgg11_cifar(pretrained: bool = False, **kwargs) -> VGGCifar:
    """VGG-11 with BN for CIFAR, as in the BCGD authors' code."""
    return _build(VGGCifar, "vgg11_cifar", pretrained, depth_cfg="vgg11", **kwargs)


def _convnet_aqe(model: str, pretrained: bool, **kwargs) -> ConvNetAQE:
    kwargs.setdefault("width", CONVNET_AQE_WIDTHS[model])
    return _build(ConvNetAQE, f"convnet_aqe_{model}", pretrained, **kwargs)


@register_model
def convnet_aqe_a(pretrained: bool = False, **kwargs) -> ConvNetAQE:
    """AQE ConvNet "Model A": the BNN CIFAR ConvNet at width ×¼ ([choice], see ConvNetAQE)."""
    return _convnet_aqe("a", pretrained, **kwargs)


@register_model
def convnet_aqe_b(pretrained: bool = False, **kwargs) -> ConvNetAQE:
    """AQE ConvNet "Model B": the BNN CIFAR ConvNet at width ×½ ([choice], see ConvNetAQE)."""
    return _convnet_aqe("b", pretrained, **kwargs)


@register_model
def convnet_aqe_c(pretrained: bool = False, **kwargs) -> ConvNetAQE:
    """AQE ConvNet "Model C": the BNN CIFAR ConvNet at width ×¾ ([choice], see ConvNetAQE)."""
    return _convnet_aqe("c", pretrained, **kwargs)


@register_model
def convnet_aqe_d(pretrained: bool = False, **kwargs) -> ConvNetAQE:
    """AQE ConvNet "Model D": the BNN CIFAR ConvNet itself (2×128C3–MP2–2×256C3–MP2–2×512C3–MP2–2×1024FC)."""
    return _convnet_aqe("d", pretrained, **kwargs)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm ``resnet18`` with the 32-px stem of :func:`adapt_to_32px` (3×3 stride-1 conv1, no max-pool).
    ``pretrained=True`` loads timm's ImageNet weights for everything but the replaced stem."""
    # The cfg arguments timm passes refer to this name, not to resnet18's weights.
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    model = adapt_to_32px(timm.create_model("resnet18", pretrained=pretrained, **kwargs))
    if not pretrained:
        # Trained from scratch on CIFAR: describe it like the other CIFAR models.
        model.pretrained_cfg.update(mean=CIFAR10_MEAN, std=CIFAR10_STD)
    model.pretrained_cfg.update(architecture="resnet18_cifar", num_classes=model.num_classes)
    return model


ARCHS: tuple[str, ...] = (
    "lenet5",
    "resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar", "resnet110_cifar",
    "vgg11_cifar",
    "convnet_aqe_a", "convnet_aqe_b", "convnet_aqe_c", "convnet_aqe_d",
    "resnet18_cifar",
)
