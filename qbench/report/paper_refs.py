"""Published accuracies a leaderboard may quote next to our own numbers (spec ``methods.md`` §3–§5 and §9).

A paper number is only meaningful in its own setting, so every :class:`PaperRef` carries the source, a human-readable
setting, and the keys that must match a leaderboard cell before the number is shown there: dataset, arch, bits, method,
and where the paper fixes them the first/last-layer policy and method hyperparameters (e.g. the STE estimator). The
leaderboard quotes the number in a separate, labelled column and never ranks it against our runs.

Arch and method names are matched against *aliases* because the paper's network (e.g. the AQE paper's "Model D") may
be registered in qbench under a different name; timm pretrained tags (``resnet18.tv_in1k``) are ignored. All values are
top-1 accuracy in percent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["PaperRef", "PAPER_REFS", "match_paper_refs", "normalize_arch"]

# Short citations; the full references are in the spec header (methods.md).
_BCGD = "BCGD, Yin et al. arXiv 1808.05240"
_STE = "STE, Yin et al. ICLR 2019 Tab. 1"
_AQE = "AQE, Chen et al. arXiv 2003.04296"
_MQBENCH = "MQBench, Li et al. NeurIPS 2021"
_NNCF = "NNCF model zoo"
_LARQ = "Larq zoo"


@dataclass(frozen=True)
class PaperRef:
    """One published number and the setting it belongs to."""

    value: float  # top-1 accuracy, percent
    source: str  # short citation
    setting: str  # what the paper did, in words (shown next to the number)
    dataset: str
    archs: tuple[str, ...]  # accepted qbench arch names (aliases)
    bits: str  # "W1A4"; float weights/activations are 32
    methods: tuple[str, ...]  # accepted qbench method names (aliases)
    policy: str | None = None  # first/last-layer policy the paper used ("fp" | "quantized"), None = not stated
    hparams: Mapping[str, Any] = field(default_factory=dict)  # method hyperparameters the paper fixes
    spec: str = ""  # where in the spec the number is recorded

    def label(self) -> str:
        """The text a leaderboard shows: value, source and setting."""
        return f"{self.value:.2f} ({self.source}; {self.setting})"


def _ste_table(dataset: str, archs: tuple[str, ...], arch_text: str, values: dict[int, tuple[float, float, float]]):
    # STE paper Table 1: float weights, activations quantized to 2 or 4 bits with a fixed resolution, one row per
    # backward estimator of the quantized ReLU (identity / ReLU / clipped ReLU).
    refs = []
    for abits, triple in values.items():
        estimators = (("identity", "identity"), ("relu", "ReLU"), ("clipped_relu", "clipped ReLU"))
        for (estimator, text), value in zip(estimators, triple):
            refs.append(
                PaperRef(
                    value=value,
                    source=_STE,
                    setting=f"{dataset_label(dataset)} {arch_text}, float weights, {abits}-bit act., {text} STE",
                    dataset=dataset,
                    archs=archs,
                    bits=f"W32A{abits}",
                    methods=("ste",),
                    hparams={"estimator": estimator},
                    spec="methods.md §4",
                )
            )
    return refs


def dataset_label(name: str) -> str:
    return {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet"}.get(name, name)


_RESNET18 = ("resnet18",)
_MODEL_D = ("aqe_model_d", "model_d", "convnet_d")  # the AQE paper's "Model D" ConvNet

PAPER_REFS: tuple[PaperRef, ...] = (
    # §3 BCGD, ImageNet ResNet-18 W1A4 (binary weights, 4-bit activations), 80 epochs.
    PaperRef(64.36, _BCGD, "ImageNet ResNet-18 W1A4, all layers binary, 80 ep", "imagenet", _RESNET18, "W1A4",
             ("bcgd",), policy="quantized", spec="methods.md §3"),
    PaperRef(65.46, _BCGD, "ImageNet ResNet-18 W1A4, first/last layer FP", "imagenet", _RESNET18, "W1A4",
             ("bcgd",), policy="fp", spec="methods.md §3"),
    # The BCGD authors' curve: BinaryConnect (= projected coarse gradient, BCGD with rho = 0) at 80 epochs.
    PaperRef(62.98, _BCGD, "ImageNet ResNet-18 W1A4, BinaryConnect curve, all layers binary, 80 ep", "imagenet",
             _RESNET18, "W1A4", ("pcg", "binaryconnect"), policy="quantized", spec="methods.md §3"),
    # §4 STE paper Table 1 (validation accuracy; identity / ReLU / clipped ReLU).
    *_ste_table("mnist", ("lenet5", "lenet_5"), "LeNet-5", {2: (98.49, 99.24, 99.23), 4: (98.98, 99.32, 99.24)}),
    *_ste_table("cifar10", ("vgg11_cifar", "vgg11"), "VGG-11", {2: (86.58, 88.69, 90.92), 4: (90.19, 92.01, 92.08)}),
    *_ste_table("cifar10", ("resnet20_cifar", "resnet20"), "ResNet-20",
                {2: (46.52, 48.05, 88.39), 4: (54.16, 86.59, 91.24)}),
    # §5 AQE, ConvNet "Model D", all layers quantized except the network input.
    PaperRef(53.0, _AQE, "CIFAR-100 ConvNet Model D W1A1, all layers binary", "cifar100", _MODEL_D, "W1A1",
             ("aqe",), policy="quantized", spec="methods.md §5"),
    PaperRef(51.5, _AQE, "CIFAR-100 ConvNet Model D W1A1, BNN STE baseline", "cifar100", _MODEL_D, "W1A1",
             ("bnn",), policy="quantized", spec="methods.md §5"),
    PaperRef(84.4, _AQE, "CIFAR-10 ConvNet Model D W1A1, all layers binary", "cifar10", _MODEL_D, "W1A1",
             ("aqe",), policy="quantized", spec="methods.md §5"),
    PaperRef(91.0, _AQE, "CIFAR-10 ConvNet Model D, full precision", "cifar10", _MODEL_D, "W32A32",
             ("fp",), spec="methods.md §5"),
    # §9 peers.
    PaperRef(71.06, _MQBENCH, "ImageNet ResNet-18, full precision", "imagenet", _RESNET18, "W32A32", ("fp",),
             spec="methods.md §9"),
    PaperRef(70.6, _MQBENCH, "ImageNet MobileNetV2 W4A4 LSQ, academic setting", "imagenet",
             ("mobilenetv2_100", "mobilenet_v2", "mobilenetv2"), "W4A4", ("lsq",), spec="methods.md §9"),
    PaperRef(61.67, _NNCF, "ImageNet ResNet-18, XNOR weights + binarized activations", "imagenet", _RESNET18, "W1A1",
             ("xnor",), spec="methods.md §9"),
    PaperRef(61.63, _NNCF, "ImageNet ResNet-18, DoReFa weights + binarized activations", "imagenet", _RESNET18,
             "W1A1", ("dorefa",), spec="methods.md §9"),
    PaperRef(57.47, _LARQ, "ImageNet Bi-Real Net W1A1", "imagenet", ("birealnet", "birealnet18", "bireal_net18"),
             "W1A1", ("bireal",), spec="methods.md §9"),
    PaperRef(65.01, _LARQ, "ImageNet Real-to-Binary Net W1A1", "imagenet", ("realtobinarynet", "real_to_bin_net"),
             "W1A1", ("real_to_bin", "realtobin"), spec="methods.md §9"),
)


def normalize_arch(arch: str) -> str:
    """``resnet18.tv_in1k`` → ``resnet18``: the pretrained tag does not change the architecture."""
    return str(arch).split(".", 1)[0].lower()


def _normalize_dataset(name: str) -> str:
    # "imagenet-1k", "ImageNet" and "imagenet1k" name the same data; "cifar-10" is "cifar10".
    text = str(name).lower().replace("-", "").replace("_", "")
    return "imagenet" if text.startswith("imagenet") else text


def match_paper_refs(
    *,
    dataset: str,
    arch: str,
    bits: str,
    method: str,
    policy: str | None = None,
    hparams: Mapping[str, Any] | None = None,
) -> list[PaperRef]:
    """References whose setting matches a leaderboard cell.

    A reference that fixes the policy or a hyperparameter matches only when the cell's runs record the same value;
    an unknown value (None / absent) does not match, because quoting a number from a different setting is worse than
    quoting none.
    """
    hparams = hparams or {}
    found = []
    for ref in PAPER_REFS:
        if _normalize_dataset(ref.dataset) != _normalize_dataset(dataset):
            continue
        if normalize_arch(arch) not in ref.archs or str(bits).upper() != ref.bits:
            continue
        if str(method).lower() not in ref.methods:
            continue
        if ref.policy is not None and (policy is None or str(policy).lower() != ref.policy):
            continue
        if any(str(hparams.get(key)).lower() != str(value).lower() for key, value in ref.hparams.items()):
            continue
        found.append(ref)
    return found
