"""The tiny conv net the method tests quantize: conv → [BN] → ReLU → conv(mid) → [BN] → ReLU → linear on 1×4×4 input.

Its pretrained_cfg names the first conv and the classifier, so under policy ``fp`` only ``mid`` is quantized and a
test can check one layer's latent weight exactly."""

from __future__ import annotations

import torch
from torch import nn

import qbench

__all__ = ["TinyNet", "setup_tiny", "mid_latent"]


class TinyNet(nn.Module):
    pretrained_cfg = {"first_conv": "conv", "classifier": "fc", "input_size": (1, 4, 4)}

    def __init__(self, mid_channels: int = 3, mid_kernel: int = 1, batch_norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3) if batch_norm else nn.Identity()
        self.act = nn.ReLU()
        self.mid = nn.Conv2d(3, mid_channels, mid_kernel, padding=mid_kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels) if batch_norm else nn.Identity()
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(16 * mid_channels, 2)

    def forward(self, x):
        return self.fc(self.act2(self.bn2(self.mid(self.act(self.bn1(self.conv(x)))))).flatten(1))


def setup_tiny(method, bits="W1A4", *, net: dict | None = None, **hparams):
    """A seeded TinyNet quantized by ``method`` at ``bits`` (policy fp), a batch (x, y) and the method instance."""
    torch.manual_seed(0)
    model = TinyNet(**(net or {}))
    qbench.quantize_model(model, method, bits, "fp", **hparams)
    x = torch.randn(8, 1, 4, 4)
    y = torch.randint(0, 2, (8,))
    return model, model.qbench_info.method, x, y


def mid_latent(model):
    return model.mid.parametrizations.weight.original
