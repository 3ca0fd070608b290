"""Model surgery: turn any timm model into a quantized one for a method and a bit-width WxAy.

* **Weights** of every targeted Conv/Linear are intercepted with ``torch.nn.utils.parametrize`` (no class swapping),
  so timm's special layers keep working: ``Conv2dSame`` pads then calls conv with ``self.weight``, ``StdConv2d``
  standardises ``self.weight`` (here the quantized tensor — its per-channel standardisation then acts like a
  per-channel scale and offset of the quantized kernel), BEiT's attention reads ``self.qkv.weight`` functionally.
* **Activations**: modules of the method's ``activation_types`` (ReLU family by default) are replaced by the
  method's activation quantizer.
* **Inputs** of quantized layers that are not a quantized activation's output (ViT blocks, MobileNet's linear
  bottlenecks, pooled features) get the method's input quantizer through a forward pre-hook. Which layers need one is
  found by a probe forward pass that tracks tensor identity: a layer whose every input is a quantized activation's
  output tensor needs none; the network input itself is never quantized (AQE paper, spec §5). The grid is unsigned
  when the probe saw only non-negative inputs (pooled ReLU features), signed otherwise. A targeted layer that is
  never called as a module (BEiT's ``qkv``: its weight is used by ``F.linear`` in the parent) gets the hook on its
  parent, whose first input is that layer's input.
* **Policy**: ``fp`` keeps the first and last layers (``pretrained_cfg["first_conv"]`` / ``["classifier"]``, as in
  timm) in float; ``quantized`` quantizes them too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..bits import Bits, parse_bits
from ..errors import ConfigError, QbenchError
from .weight import WeightParametrization

__all__ = [
    "POLICIES",
    "TARGET_LAYER_TYPES",
    "QuantInfo",
    "quantize_model",
    "freeze_quantized",
    "quantized_layers",
    "first_last_layers",
    "model_size_bits",
]

POLICIES = ("fp", "quantized")
TARGET_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
INPUT_QUANTIZER_ATTR = "qbench_input_quantizer"
# Modules that keep values on the grid of their input (a max of grid points is a grid point): a layer fed by a
# quantized activation through them needs no second quantizer.
GRID_PRESERVING_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Identity, nn.Dropout, nn.Flatten,
                         nn.AdaptiveMaxPool2d)


@dataclass
class QuantInfo:
    """What the surgery did; stored as ``model.qbench_info`` (not part of the state dict)."""

    method: Any
    bits: Bits
    policy: str
    first: list[str]
    last: list[str]
    quantized: list[str] = field(default_factory=list)  # layers whose weight is parametrized
    float_layers: list[str] = field(default_factory=list)  # targeted types kept in float by the policy
    activations: list[str] = field(default_factory=list)  # replaced activation modules
    input_quantized: list[str] = field(default_factory=list)  # modules carrying an input quantizer hook
    layers: list[nn.Module] = field(default_factory=list, repr=False)


def _config_names(model: nn.Module, key: str) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    value = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _resolve_layer(model: nn.Module, name: str, last: bool) -> str | None:
    """The targeted layer named by a pretrained_cfg entry: the module itself, or its first (last) Conv/Linear."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    if isinstance(module, TARGET_LAYER_TYPES):
        return name
    inner = [n for n, m in module.named_modules() if isinstance(m, TARGET_LAYER_TYPES)]
    if not inner:
        return None
    return f"{name}.{inner[-1] if last else inner[0]}"


def first_last_layers(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the first and last layers from timm's ``pretrained_cfg`` (first_conv, classifier); when a model
    has no such entry, the first and last Conv/Linear in module order."""
    targets = [n for n, m in model.named_modules() if isinstance(m, TARGET_LAYER_TYPES)]
    first = [r for n in _config_names(model, "first_conv") if (r := _resolve_layer(model, n, last=False))]
    last = [r for n in _config_names(model, "classifier") if (r := _resolve_layer(model, n, last=True))]
    if not first and targets:
        first = [targets[0]]
    if not last and targets:
        last = [targets[-1]]
    return first, last


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _input_pre_hook(module: nn.Module, args: tuple, kwargs: dict):
    quantizer = getattr(module, INPUT_QUANTIZER_ATTR)
    if args and isinstance(args[0], Tensor):
        return (quantizer(args[0]), *args[1:]), kwargs
    for key, value in kwargs.items():  # a module called with its input as a keyword
        if isinstance(value, Tensor):
            return args, {**kwargs, key: quantizer(value)}
    return None


def _probe_inputs(model: nn.Module, hosts: list[str], act_modules: list[nn.Module],
                  example: Tensor) -> dict[str, dict]:
    """One eval forward with hooks: for each host module, was it called, were all its inputs quantized activation
    outputs or the network input, and were they all non-negative."""
    produced: dict[int, Tensor] = {}  # keep references so ids are not reused during the probe
    seen: dict[str, dict] = {}
    handles = []

    def record_output(_m, _inp, out):
        if isinstance(out, Tensor):
            produced[id(out)] = out

    def pass_through(_m, inp, out):
        if inp and isinstance(inp[0], Tensor) and id(inp[0]) in produced and isinstance(out, Tensor):
            produced[id(out)] = out

    def make_pre(name):
        def pre(_m, args, kwargs):
            x = args[0] if args and isinstance(args[0], Tensor) else next(
                (v for v in kwargs.values() if isinstance(v, Tensor)), None)
            if x is None:
                return
            info = seen.setdefault(name, {"quantized": True, "network_input": True, "nonneg": True})
            info["quantized"] &= id(x) in produced
            info["network_input"] &= x is example
            info["nonneg"] &= bool((x >= 0).all())
        return pre

    for m in act_modules:
        handles.append(m.register_forward_hook(record_output))
    for m in model.modules():
        if isinstance(m, GRID_PRESERVING_TYPES):
            handles.append(m.register_forward_hook(pass_through))
    for name in hosts:
        handles.append(model.get_submodule(name).register_forward_pre_hook(make_pre(name), with_kwargs=True))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


def _example_input(model: nn.Module, input_size) -> Tensor:
    if input_size is None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        input_size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if input_size is None:
        raise QbenchError("cannot infer the model's input size for the activation probe; pass input_size=(C, H, W)")
    ref = next(model.parameters(), None)
    device = ref.device if ref is not None else "cpu"
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    g = torch.Generator().manual_seed(0)
    return torch.randn((2, *tuple(input_size)[-3:]), generator=g).to(device=device, dtype=dtype)


def quantize_model(model: nn.Module, method, bits: str | Bits, policy: str, *,
                   input_size: tuple[int, ...] | None = None) -> nn.Module:
    """Quantize ``model`` in place for ``method`` (a :class:`~qbench.method.Method` instance) at ``bits`` and return
    it. :func:`qbench.quantize_model` (the registry's) also takes a registered method's name and its hyperparameters,
    and has the defaults.

    Args:
        model: any ``nn.Module``; timm models tell their first/last layers through ``pretrained_cfg``.
        method: the method instance whose quantizers are placed (it is stored as ``model.qbench_info.method``).
        bits: ``"W1A4"`` etc.; 32 on a side keeps it float (``"W32A2"`` is the STE paper's setting).
        policy: ``"fp"`` keeps the first and last layers float, ``"quantized"`` quantizes them too.
        input_size: (C, H, W) for the placement probe; default ``pretrained_cfg["input_size"]``.
    """
    if isinstance(method, str):  # the registry sits above the surgery: names are resolved by qbench.quantize_model
        raise TypeError(f"quant.apply.quantize_model takes a Method instance, got the name {method!r}; "
                        f"use qbench.quantize_model(model, {method!r}, ...) to create it from the registry")
    bits = parse_bits(bits)
    if policy not in POLICIES:
        raise ConfigError(f"unknown layer policy '{policy}'; choose one of {', '.join(POLICIES)}")
    if getattr(model, "qbench_info", None) is not None:
        raise QbenchError("this model is already quantized; build a fresh model to quantize it again")
    method.check_bits(bits)

    first, last = first_last_layers(model)
    keep_float = set(first) | set(last) if policy == "fp" else set()
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, TARGET_LAYER_TYPES)]
    info = QuantInfo(method=method, bits=bits, policy=policy, first=first, last=last)
    quantize_weights = not bits.weight_float

    for name, module in targets:
        if name in keep_float:
            info.float_layers.append(name)
            continue
        info.quantized.append(name)
        parametrization = method.weight_quantizer(bits.weight) if quantize_weights else None
        if parametrization is not None:
            parametrize.register_parametrization(module, "weight", parametrization)
            info.layers.append(module)

    if not bits.act_float:
        act_modules = []
        for name, module in list(model.named_modules()):
            if isinstance(module, method.activation_types):
                new = method.activation_quantizer(bits.act)
                if new is not None:
                    _set_submodule(model, name, new)
                    info.activations.append(name)
                    act_modules.append(new)
        if info.quantized and method.input_quantizer(bits.act, signed=True) is not None:
            _place_input_quantizers(model, method, bits, info, act_modules, input_size)

    model.qbench_info = info
    return model


def _place_input_quantizers(model, method, bits, info: QuantInfo, act_modules, input_size) -> None:
    parents = {n.rpartition(".")[0] for n in info.quantized}
    hosts = sorted(set(info.quantized) | {p for p in parents if p})
    seen = _probe_inputs(model, hosts, act_modules, _example_input(model, input_size))
    chosen: dict[str, bool] = {}  # host -> signed
    for name in info.quantized:
        host = name
        if name not in seen:  # weight read functionally by the parent (BEiT qkv): quantize the parent's input
            host = name.rpartition(".")[0]
            if host not in seen:
                continue  # never reached by the forward pass (e.g. an unused head)
        record = seen[host]
        if record["quantized"] or record["network_input"]:
            continue
        chosen[host] = not record["nonneg"]
    for host, signed in chosen.items():
        module = model.get_submodule(host)
        module.add_module(INPUT_QUANTIZER_ATTR, method.input_quantizer(bits.act, signed=signed))
        module.register_forward_pre_hook(_input_pre_hook, with_kwargs=True)
        info.input_quantized.append(host)


def quantized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every layer whose weight carries a qbench weight parametrization."""
    out = []
    for name, module in model.named_modules():
        plist = getattr(getattr(module, "parametrizations", None), "weight", None)
        if plist is not None and isinstance(plist[0], WeightParametrization):
            out.append((name, module))
    return out


def weight_parametrization(module: nn.Module) -> WeightParametrization:
    return module.parametrizations.weight[0]


def freeze_quantized(model: nn.Module) -> nn.Module:
    """Export: remove the weight parametrizations, leaving the hard-quantized values (evaluation mode) as the
    layers' plain ``weight`` parameters. The activation and input quantizers stay (they are hard at evaluation)."""
    model.eval()
    with torch.no_grad():
        for _, module in quantized_layers(model):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    info = getattr(model, "qbench_info", None)
    if info is not None:
        info.layers = []
    return model


def model_size_bits(model: nn.Module) -> int:
    """Storage size in bits: ⌈log2 levels⌉ per quantized weight plus one 32-bit scale per quantized tensor (per
    output channel for a ``per_channel`` quantizer); every other parameter (float first/last layers, BN, biases,
    learned α) at 32 bits."""
    total = 0
    quantized_ids = set()
    for _, module in quantized_layers(model):
        p = module.parametrizations.weight
        latent = p.original
        quantized_ids.add(id(latent))
        scales = latent.shape[0] if getattr(p[0], "per_channel", False) else 1  # one 32-bit scale per channel
        total += math.ceil(math.log2(max(p[0].levels, 2))) * latent.numel() + 32 * scales
    for param in model.parameters():
        if id(param) not in quantized_ids:
            total += 32 * param.numel()
    return total
