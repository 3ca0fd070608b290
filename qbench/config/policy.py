"""Layer precision policies: which precision the first layer, the last layer and every other layer get.

The papers differ here, and a benchmark that runs one setting for all of them compares unlike things:

==================  ================================  ===============================================================
name                first / last layer                who uses it
==================  ================================  ===============================================================
``fp``              float / float                     XNOR-Net, DoReFa, Bi-Real, the STE paper; the BCGD paper's
                                                      ImageNet "first/last FP" row
``quantized``       cell bits / cell bits             BNN (every layer, input excepted), the AQE paper
``int8_first_last`` W8A8 / W8A8                       LSQ, PACT, DSQ and MQBench's "academic" setting (8-bit weights
                                                      and inputs of the first and last layer)
``last_fp``         cell bits / float                 the BCGD authors' CIFAR code (every conv quantized incl. the
                                                      first, the final FC float)
==================  ================================  ===============================================================

Any other combination is written as a mapping, ``policy: {first: W8A8, last: fp}`` (values: ``fp``, ``same`` = the
cell's bits, or a bit spec), and gets a canonical name such as ``first-W8A8_last-fp`` for run ids and leaderboard
columns. Every other layer runs at the cell's bits unless a ``layer_bits`` glob (``{"layer4.*": W4A4, "fc": W8A8}``)
says otherwise (:func:`qbench.quant.apply.quantize_model` applies both and refuses a policy or glob that matches no
layer). "First" and "last" are the layers timm's ``pretrained_cfg`` names (``first_conv``, ``classifier``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..bits import parse_bits
from ..errors import BitsError, ConfigError

__all__ = ["FLOAT", "SAME", "POLICY_NAMES", "LayerPolicy", "parse_policy", "parse_layer_precision"]

FLOAT = "fp"  # a layer kept in float (weights and inputs)
SAME = "same"  # a layer at the cell's bits
#: the named policies: name → (first layer, last layer)
POLICY_NAMES = {
    "fp": (FLOAT, FLOAT),
    "quantized": (SAME, SAME),
    "int8_first_last": ("W8A8", "W8A8"),
    "last_fp": (SAME, FLOAT),
}
_STRUCTURED = re.compile(r"^first-(?P<first>[A-Za-z0-9]+)_last-(?P<last>[A-Za-z0-9]+)$")


def parse_layer_precision(value: Any, where: str) -> str:
    """``fp``, ``same`` or a normalised bit spec (``W8A8``); a one-line ConfigError naming ``where`` otherwise."""
    text = str(value).strip()
    if text.lower() in (FLOAT, "float"):
        return FLOAT
    if text.lower() in (SAME, "quantized"):
        return SAME
    try:
        return str(parse_bits(text))
    except BitsError:
        raise ConfigError(f"{where}={value!r}: write fp, same (the cell's bits) or a bit spec such as W8A8") from None


@dataclass(frozen=True)
class LayerPolicy:
    """The precision of the first and the last layer (``fp``, ``same`` or a bit spec); the rest run at the cell's
    bits."""

    first: str
    last: str

    @property
    def name(self) -> str:
        """The canonical name (run ids, leaderboard columns): a named policy's name, else ``first-<p>_last-<p>``."""
        for name, pair in POLICY_NAMES.items():
            if pair == (self.first, self.last):
                return name
        return f"first-{self.first}_last-{self.last}"

    def __str__(self) -> str:
        return self.name


def parse_policy(value: Any) -> LayerPolicy:
    """A policy from its name (``fp``, ``quantized``, ``int8_first_last``, ``last_fp``), its canonical structured name
    (``first-W8A8_last-fp``) or a mapping ``{first: ..., last: ...}`` (a missing key means ``same``)."""
    if isinstance(value, LayerPolicy):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - {"first", "last"})
        if unknown:
            raise ConfigError(f"policy {dict(value)}: unknown key {unknown[0]!r}; write {{first: ..., last: ...}}")
        return LayerPolicy(parse_layer_precision(value.get("first", SAME), "policy.first"),
                           parse_layer_precision(value.get("last", SAME), "policy.last"))
    text = str(value)
    if text in POLICY_NAMES:
        return LayerPolicy(*POLICY_NAMES[text])
    match = _STRUCTURED.match(text)
    if match:
        return LayerPolicy(parse_layer_precision(match["first"], "policy first"),
                           parse_layer_precision(match["last"], "policy last"))
    raise ConfigError(f"unknown policy {text!r}; choose {', '.join(POLICY_NAMES)} or write {{first: W8A8, last: fp}}")
