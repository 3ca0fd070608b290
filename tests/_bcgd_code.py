"""The BCGD authors' weight quantizers written out in numpy, as independent oracles for tests.

Transcribed from ``penhunt/full-quantization-DNN``, ``BCGD_cifar/util/quant.py``: ``quantize_tnn`` (line 25, 2 bits)
and ``quantize_fbit`` (line 38, 4 bits, its loop over the bins; other bit-widths by the same loop with 2^b − 1 in
place of 15 and level L = 2^{b−1} − 1 in place of 7). The code's guards Δ ≤ 100 and δ ≤ 10 never act on the test
tensors."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["quantize_tnn", "quantize_fbit"]


def quantize_tnn(kernel: torch.Tensor) -> np.ndarray:
    """``delta = 0.7·mean|w|``, ``index = |w| ≥ delta``, ``scale = mean(|w|·index)`` over all n entries,
    Q = scale·index·sign(w)."""
    w = kernel.detach().double().numpy()
    data = np.abs(w)
    index = (data >= 0.7 * data.mean()).astype(np.float64)
    scale = (data * index).mean()
    return scale * index * np.sign(w)


def quantize_fbit(kernel: torch.Tensor, bits: int = 4) -> np.ndarray:
    """The code's loop: δ = max|w|/15; for i = 3, 5, …, 15 the bin (i − 2)δ < |w| ≤ iδ gets level (i − 1)/2, the last
    bin |w| > 13δ level 7; least-squares scale Σ|w|q / Σq²."""
    top = 2 ** (bits - 1) - 1  # 7 at 4 bits
    w = kernel.detach().double().numpy()
    data = np.abs(w)
    delta = data.max() / (2 * top + 1)
    q = np.zeros_like(data)
    for i in range(3, 2 * top + 3, 2):
        if i < 2 * top + 1:
            index = (data > (i - 2) * delta) & (data <= i * delta)
        else:
            index = data > (2 * top - 1) * delta
        q += (i - 1) / 2 * index
    scale = (data * q).sum() / (q * q).sum()
    return scale * q * np.sign(w)
