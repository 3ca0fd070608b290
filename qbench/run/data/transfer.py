"""Host-to-device copies that never wait for the GPU.

A plain ``tensor.to("cuda")`` from pageable memory makes PyTorch synchronise with the current stream, so a loader that
copies even a few bytes per batch that way stalls until the previous training step has finished, and the GPU then
waits for the loader: the two no longer overlap. :func:`to_device` stages the tensor in page-locked memory (PyTorch's
caching host allocator, cheap after the first batches) and copies it asynchronously.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["to_device"]


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``, copied without a host synchronisation when it goes from the CPU to a GPU."""
    if tensor.device == device or device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return (tensor if tensor.is_pinned() else tensor.pin_memory()).to(device, non_blocking=True)
