"""Recurrence diagnostics for real networks (spec §6; REC = Long, Yin, Xin, arXiv 2012.05529).

Per epoch, for every method with quantized weights: the loss at Q(w_t) (the training loss measured in evaluation
mode, i.e. with hard-quantized weights and activations), the normalised Hamming distance of Q(w_t) to the best
epoch's Q (best = lowest loss at Q so far), the flip rate mean(Q(w_t) ≠ Q(w_{t−1})), and whether this epoch is a
"visit" (distance 0 to the best, or a loss equal to the best). Q is compared through scale-free integer level codes
(:func:`qbench.quant.weight.level_codes`), so a drifting scale alone is not counted as a flip.
"""

from __future__ import annotations

import torch
from torch import nn

from ..quant.latent import latent_weights

__all__ = ["RecurrenceTracker"]


class RecurrenceTracker:
    """Keeps Q(w) codes of the previous and the best epoch (int8 on the CPU: 1 byte per weight)."""

    def __init__(self):
        self.previous: list[torch.Tensor] | None = None
        self.best: list[torch.Tensor] | None = None
        self.best_loss = float("inf")

    @staticmethod
    def codes(model: nn.Module) -> list[torch.Tensor]:
        out = []
        with torch.no_grad():
            for latent, param in latent_weights(model):
                # int16: codes of up to 16-bit grids fit (int8 wrapped around above 127 levels)
                out.append(param.codes(latent).to(torch.int16).cpu().flatten())
        return out

    @staticmethod
    def _distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
        n = sum(x.numel() for x in a)
        return float(sum(int((x != y).sum()) for x, y in zip(a, b)) / n) if n else 0.0

    def state_dict(self) -> dict:
        return {"previous": self.previous, "best": self.best, "best_loss": self.best_loss}

    def load_state_dict(self, state: dict) -> None:
        self.previous, self.best, self.best_loss = state["previous"], state["best"], state["best_loss"]

    def update(self, model: nn.Module, loss_q: float) -> dict:
        """Record this epoch's Q(w) with its loss and return the diagnostics row (empty for a float model)."""
        codes = self.codes(model)
        if not codes:
            return {}
        flip = self._distance(codes, self.previous) if self.previous is not None else float("nan")
        if loss_q <= self.best_loss or self.best is None:
            self.best, self.best_loss = codes, loss_q
        hamming = self._distance(codes, self.best)
        self.previous = codes
        return {"loss_q": loss_q, "hamming_to_best": hamming, "flip_rate": flip,
                "visit": bool(hamming == 0.0 or loss_q == self.best_loss)}
