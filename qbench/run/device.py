"""Where and how a run executes: the device, AMP, channels_last and compile settings, torchrun's rank, seeding.

One place for what the training loop, ``qbench bench`` and the tuner all need, so the three agree: a suite whose
``train`` block runs in the loop also runs in the bench. :func:`train_setup` resolves a :class:`TrainConfig` for a
device without touching the device, so what a suite would do on CUDA is testable on a CPU-only machine.
"""

from __future__ import annotations

import os
import random
import resource
from dataclasses import dataclass

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import ConfigError, QbenchError
from ..results import cpu_name

__all__ = [
    "AMP_DTYPES",
    "TrainSetup",
    "dist_env",
    "resolve_device",
    "device_name",
    "amp_dtype",
    "train_setup",
    "resolve_compile",
    "compile_model",
    "seed_everything",
    "peak_mem_mb",
]

#: autocast dtype of each ``train.amp`` mode (config.AMP_MODES); "false" trains in float32
AMP_DTYPES = {"false": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainSetup:
    """The execution settings of one run, resolved for its device."""

    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype (CUDA only), None = float32
    channels_last: bool  # NHWC activations (CUDA only)
    compile: bool  # torch.compile the model
    compile_mode: str | None = None  # torch.compile's mode ("reduce-overhead": CUDA graphs); None: its default

    @property
    def grad_scaler(self) -> bool:
        """fp16 autocast needs a GradScaler against gradient underflow; bf16 has float32's range."""
        return self.amp_dtype == torch.float16


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def resolve_device(name: str = "auto") -> torch.device:
    """``train.device``: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; under torchrun with several
    processes on CUDA, each process takes the GPU of its ``LOCAL_RANK``."""
    name = str(name or "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device={name} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise QbenchError(f"train.device={name} but CUDA is not available here; use train.device=cpu or auto")
        _, world, local_rank = dist_env()
        if world > 1:
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    return device


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, the CPU's model name otherwise (recorded with every run and benchmark row)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``train.amp`` mode on ``device``: AMP is a CUDA feature here, so the CPU always runs
    float32 and the same suite runs (slowly) there."""
    if mode not in AMP_DTYPES:
        raise ConfigError(f"unknown train.amp '{mode}'; use false, bf16 or fp16")
    return AMP_DTYPES[mode] if device.type == "cuda" else None


def resolve_compile(mode: str, device: torch.device) -> tuple[bool, str | None]:
    """``train.compile`` on ``device``: (compile the model?, torch.compile's mode).

    * ``auto`` — compiled on CUDA, eager on the CPU: on a GPU the quantizers' elementwise passes fuse into the
      surrounding kernels (issue #13: ≤ 1.10× the FP step compiled), while on the CPU compiling costs tens of seconds
      per model and recompilation that a short run does not win back (the eager CPU step is ≤ 1.5× FP already).
    * ``true`` / ``false`` — always / never.
    * ``reduce-overhead`` — compiled with CUDA graphs on CUDA (``mode="reduce-overhead"``): it pays where the step
      is bound by kernel launches (CIFAR ResNet-20, LeNet-5: each quantizer adds launches, not FLOPs) and costs
      memory for the graphs' static buffers, so it is asked for, not guessed from the model size; on the CPU there
      are no CUDA graphs and it compiles in the default mode.
    """
    if mode not in ("auto", "true", "false", "reduce-overhead"):
        raise ConfigError(f"unknown train.compile '{mode}'; use auto, true, false or reduce-overhead")
    if mode == "auto":
        return device.type == "cuda", None
    if mode == "reduce-overhead":
        return True, "reduce-overhead" if device.type == "cuda" else None
    return mode == "true", None


def train_setup(train: TrainConfig, device: torch.device) -> TrainSetup:
    """The settings the training loop (and ``qbench bench``) uses for ``train`` on ``device``; needs no GPU."""
    compile_, mode = resolve_compile(str(train.compile), device)
    return TrainSetup(device=device, amp_dtype=amp_dtype(train.amp, device),
                      channels_last=bool(train.channels_last) and device.type == "cuda", compile=compile_,
                      compile_mode=mode)


def compile_model(model: torch.nn.Module, setup: TrainSetup) -> torch.nn.Module:
    """What the training step calls: ``model`` itself, or its ``torch.compile`` wrapper in the setup's mode. The
    update rules (``Method.before_step``/``after_step``) stay outside the compiled forward and change the latent
    weights in place, which the compiled graph reads as inputs at every call."""
    if not setup.compile:
        return model
    return torch.compile(model, mode=setup.compile_mode) if setup.compile_mode else torch.compile(model)


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's global RNGs from one seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def peak_mem_mb(device: torch.device) -> float:
    """Peak memory in MiB: allocated tensors on CUDA; on the CPU the process's peak resident set (``ru_maxrss``,
    KiB on Linux), the whole process, labelled as such in the records."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
