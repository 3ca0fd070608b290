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
* **Layer precision** (:mod:`qbench.config.policy`): the policy sets the precision of the first and last layers
  (``pretrained_cfg["first_conv"]`` / ``["classifier"]``, as in timm): ``fp`` keeps them float, ``quantized`` runs them
  at the cell's bits, ``int8_first_last`` at W8A8 (MQBench's academic setting), ``last_fp`` keeps only the classifier
  float; ``layer_bits`` globs over module names then set any layer (and activation module) to other bits or ``fp``.
  A layer that runs at bits other than the cell's gets its own input quantizer at its activation bits (MQBench
  quantizes the first layer's 8-bit input, too). A layer whose bits the method does not support (a binary method's
  8-bit first layer) gets qbench's generic uniform quantizers (:func:`generic_weight_quantizer`, the EMA min-max
  :class:`~qbench.quant.activation.InputQuantizer`), listed in ``qbench_info.generic``.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..bits import Bits, parse_bits
from ..config.policy import FLOAT, SAME, LayerPolicy, parse_layer_precision, parse_policy
from ..errors import ConfigError, QbenchError
from .activation import InputQuantizer
from .weight import StraightThroughWeight, WeightParametrization, binary, num_levels, uniform

__all__ = [
    "TARGET_LAYER_TYPES",
    "QuantInfo",
    "quantize_model",
    "freeze_quantized",
    "quantized_layers",
    "first_last_layers",
    "model_size_bits",
    "generic_weight_quantizer",
    "INPUT_QUANTIZER_ATTR",
]

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
    policy: str  # the policy's canonical name (config.policy.LayerPolicy.name)
    first: list[str]
    last: list[str]
    quantized: list[str] = field(default_factory=list)  # layers run at some bits (weights and/or inputs quantized)
    float_layers: list[str] = field(default_factory=list)  # targeted layers kept in float (policy or layer_bits)
    activations: list[str] = field(default_factory=list)  # replaced activation modules
    input_quantized: list[str] = field(default_factory=list)  # modules carrying an input quantizer hook
    precision: dict[str, str] = field(default_factory=dict)  # every targeted layer → "fp" or its bits ("W8A8")
    generic: list[str] = field(default_factory=list)  # layers at bits the method does not support: generic quantizers
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


def generic_weight_quantizer(bits: int) -> WeightParametrization:
    """qbench's method-independent weight quantizer for a layer whose bits the method does not support (a binary
    method's 8-bit first layer under ``int8_first_last``): the symmetric uniform grid scaled by max|w| (MQBench's
    min-max observer, what its academic setting uses for the 8-bit first and last layers) with a straight-through
    backward; binary δ·sign(w) at 1 bit."""
    fn = binary if bits == 1 else functools.partial(uniform, bits=bits)
    return StraightThroughWeight(fn, num_levels(bits))


def _layer_precisions(names: list[str], first: list[str], last: list[str], policy: LayerPolicy, bits: Bits,
                      layer_bits: Mapping[str, str], activation_names: list[str]) -> tuple[dict, dict]:
    """(targeted layer → Bits or None for float, activation module → Bits or None) after the policy and the
    ``layer_bits`` globs (applied in the order written: a later glob wins where two match). A glob that matches no
    layer is an error naming the layers that exist."""

    def resolve(value: str, where: str) -> Bits | None:
        value = parse_layer_precision(value, where)
        return None if value == FLOAT else bits if value == SAME else parse_bits(value)

    layers: dict[str, Bits | None] = dict.fromkeys(names, bits)
    for role, members, value in (("first", first, policy.first), ("last", last, policy.last)):
        for name in members:
            layers[name] = resolve(value, f"policy.{role}")
    activations: dict[str, Bits | None] = {}
    for glob, value in layer_bits.items():
        matched = [n for n in names if fnmatch.fnmatchcase(n, glob)]
        matched_acts = [n for n in activation_names if fnmatch.fnmatchcase(n, glob)]
        if not matched and not matched_acts:
            shown = ", ".join(names[:12]) + (f", … {len(names) - 12} more" if len(names) > 12 else "")
            raise ConfigError(f"layer_bits glob {glob!r} matches no layer of this model; its layers: {shown}")
        precision = resolve(value, f"layer_bits[{glob!r}]")
        layers.update(dict.fromkeys(matched, precision))
        activations.update(dict.fromkeys(matched_acts, precision))
    return layers, activations


def quantize_model(model: nn.Module, method, bits: str | Bits, policy: str | LayerPolicy | Mapping, *,
                   input_size: tuple[int, ...] | None = None, layer_bits: Mapping[str, str] | None = None) -> nn.Module:
    """Quantize ``model`` in place for ``method`` (a :class:`~qbench.method.Method` instance) at ``bits`` and return
    it. :func:`qbench.quantize_model` (the registry's) also takes a registered method's name and its hyperparameters,
    and has the defaults.

    Args:
        model: any ``nn.Module``; timm models tell their first/last layers through ``pretrained_cfg``.
        method: the method instance whose quantizers are placed (it is stored as ``model.qbench_info.method``).
        bits: ``"W1A4"`` etc.; 32 on a side keeps it float (``"W32A2"`` is the STE paper's setting).
        policy: a layer precision policy (:mod:`qbench.config.policy`): ``"fp"``, ``"quantized"``,
            ``"int8_first_last"``, ``"last_fp"`` or ``{"first": ..., "last": ...}``.
        input_size: (C, H, W) for the placement probe; default ``pretrained_cfg["input_size"]``.
        layer_bits: ``{module-name glob: bits | "fp"}`` per-layer precision after the policy.
    """
    if isinstance(method, str):  # the registry sits above the surgery: names are resolved by qbench.quantize_model
        raise TypeError(f"quant.apply.quantize_model takes a Method instance, got the name {method!r}; "
                        f"use qbench.quantize_model(model, {method!r}, ...) to create it from the registry")
    bits = parse_bits(bits)
    policy = parse_policy(policy)
    if getattr(model, "qbench_info", None) is not None:
        raise QbenchError("this model is already quantized; build a fresh model to quantize it again")
    method.check_bits(bits)

    first, last = first_last_layers(model)
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, TARGET_LAYER_TYPES)]
    act_names = [n for n, m in model.named_modules() if isinstance(m, method.activation_types)]
    precision, act_precision = _layer_precisions([n for n, _ in targets], first, last, policy, bits,
                                                 layer_bits or {}, act_names)
    info = QuantInfo(method=method, bits=bits, policy=policy.name, first=first, last=last)
    overridden: dict[str, Bits] = {}  # layers at bits other than the cell's: their own input quantizer

    for name, module in targets:
        layer = precision[name]
        info.precision[name] = "fp" if layer is None else str(layer)
        if layer is None or (layer.weight_float and layer.act_float):
            info.float_layers.append(name)
            continue
        info.quantized.append(name)
        if layer != bits:
            overridden[name] = layer
        supported = method.unsupported_bits(layer) is None
        if not supported:
            info.generic.append(name)
        if not layer.weight_float:
            parametrization = method.weight_quantizer(layer.weight) if supported else \
                generic_weight_quantizer(layer.weight)
            if parametrization is not None:
                parametrize.register_parametrization(module, "weight", parametrization)
                info.layers.append(module)

    act_modules = []
    for name in act_names:
        act_bits = act_precision.get(name, bits)
        if act_bits is None or act_bits.act_float:
            continue
        if act_bits != bits and method.unsupported_bits(Bits(32, act_bits.act)) is not None:
            raise ConfigError(f"layer_bits sets activation {name} to A{act_bits.act}, which method '{method.name}' "
                              f"does not quantize; give that activation its cell's bits or fp")
        new = method.activation_quantizer(act_bits.act)
        if new is not None:
            _set_submodule(model, name, new)
            info.activations.append(name)
            act_modules.append(new)
    cell_layers = [n for n in info.quantized if n not in overridden]
    if (cell_layers and not bits.act_float and method.input_quantizer(bits.act, signed=True) is not None) \
            or any(not b.act_float for b in overridden.values()):
        _place_input_quantizers(model, method, bits, info, act_modules, input_size, overridden)

    model.qbench_info = info
    return model


def _input_quantizer(method, bits: int, signed: bool, generic: bool) -> nn.Module | None:
    return InputQuantizer(bits, signed=signed) if generic else method.input_quantizer(bits, signed=signed)


def _place_input_quantizers(model, method, bits: Bits, info: QuantInfo, act_modules, input_size,
                            overridden: dict[str, Bits]) -> None:
    parents = {n.rpartition(".")[0] for n in info.quantized}
    hosts = sorted(set(info.quantized) | {p for p in parents if p})
    seen = _probe_inputs(model, hosts, act_modules, _example_input(model, input_size))
    chosen: dict[str, tuple[bool, int, bool]] = {}  # host -> (signed, activation bits, generic quantizer)
    for name in info.quantized:
        host = name
        if name not in seen:  # weight read functionally by the parent (BEiT qkv): quantize the parent's input
            host = name.rpartition(".")[0]
            if host not in seen:
                continue  # never reached by the forward pass (e.g. an unused head)
        record = seen[host]
        if name in overridden:
            # Its own precision: quantize its input at its bits whatever produced it (the network input included).
            layer = overridden[name]
            if not layer.act_float:
                generic = name in info.generic
                if generic or method.input_quantizer(layer.act, signed=True) is not None:
                    chosen[host] = (not record["nonneg"], layer.act, generic)
            continue
        if bits.act_float or record["quantized"] or record["network_input"]:
            continue
        chosen.setdefault(host, (not record["nonneg"], bits.act, False))
    for host, (signed, act_bits, generic) in chosen.items():
        quantizer = _input_quantizer(method, act_bits, signed, generic)
        if quantizer is None:
            continue
        module = model.get_submodule(host)
        module.add_module(INPUT_QUANTIZER_ATTR, quantizer)
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
