"""Bit-width specs: ``"W1A4"`` = 1-bit weights, 4-bit activations. 32 (or ``FP``) means float on that side."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BitsError

__all__ = ["Bits", "parse_bits", "FLOAT_BITS", "FP_BITS"]

FLOAT_BITS = 32
#: the bit spec of a full-precision run (method ``fp``): float weights and activations
FP_BITS = "W32A32"
_PATTERN = re.compile(r"^W(\d+|FP)A(\d+|FP)$", re.IGNORECASE)


@dataclass(frozen=True)
class Bits:
    weight: int
    act: int

    @property
    def weight_float(self) -> bool:
        return self.weight >= FLOAT_BITS

    @property
    def act_float(self) -> bool:
        return self.act >= FLOAT_BITS

    def __str__(self) -> str:
        return f"W{self.weight}A{self.act}"


def parse_bits(spec: "str | Bits") -> Bits:
    """Parse ``"W1A4"``, ``"w2a2"``, ``"W32A2"`` (float weights), ``"WFPA4"``; ``"FP"`` is ``W32A32``."""
    if isinstance(spec, Bits):
        return spec
    text = str(spec).strip()
    if text.upper() in ("FP", "FP32"):
        return Bits(FLOAT_BITS, FLOAT_BITS)
    m = _PATTERN.match(text)
    if not m:
        raise BitsError(f"bad bit-width '{spec}'; write it as W<bits>A<bits>, e.g. W1A4, W2A2, W32A4 (32 = float)")
    w, a = (FLOAT_BITS if g.upper() == "FP" else int(g) for g in m.groups())
    for side, b in (("weight", w), ("activation", a)):
        if b < 1 or (b > 16 and b != FLOAT_BITS):
            raise BitsError(f"bad {side} bit-width {b} in '{spec}'; use 1..16 or 32 for float")
    return Bits(w, a)
