"""``torchrun`` support: the process group and the few collectives the runner needs.

``torchrun --nproc_per_node=N -m qbench run suite=S`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in their environment. The ``qbench run`` command wraps the suite in :func:`session`, which initialises
the default process group once (NCCL when the run trains on CUDA, gloo on the CPU) and destroys it at the end. Inside
it every rank trains the same cell with DistributedDataParallel (see :func:`qbench.runner.run_cell`):

* the suite's ``data.batch_size`` is the *global* batch; each rank loads ``batch_size / WORLD_SIZE`` images through a
  ``DistributedSampler`` that reshuffles every epoch (``set_epoch``), and DDP averages the gradients, so with a
  BatchNorm-free model N ranks take the same steps as one process with the whole batch (tests/test_distributed.py);
  BatchNorm statistics stay per rank (DDP does not sync them; that is the usual DDP behaviour);
* rank 0 decides what happens (which cells are finished, whether a checkpoint exists) and tells the others through
  :func:`broadcast_object`, so every rank runs the same cells and joins the same collectives, and a rank on another
  machine does not need to see the results directory: the checkpoint is read by rank 0 and broadcast
  (:func:`load_on_main`);
* only rank 0 writes records and checkpoints; the checkpoint holds the unwrapped model's state (:func:`unwrap`), so
  a run can resume under any number of processes.

Outside torchrun (``WORLD_SIZE`` unset or 1) every helper is a no-op and nothing imports ``torch.distributed``
state.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..results import quarantine
from .device import dist_env

__all__ = [
    "is_initialized",
    "rank",
    "world_size",
    "is_main",
    "backend_for",
    "init",
    "teardown",
    "session",
    "barrier",
    "broadcast_object",
    "load_on_main",
    "unwrap",
]


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if is_initialized() else dist_env()[0]


def world_size() -> int:
    return torch.distributed.get_world_size() if is_initialized() else dist_env()[1]


def is_main() -> bool:
    """True on rank 0 (and in a plain single-process run): the one process that writes and prints."""
    return rank() == 0


def backend_for(device: str = "auto") -> str:
    """NCCL when the run trains on CUDA (``train.device`` auto with a GPU, cuda, cuda:N), gloo otherwise."""
    device = str(device or "auto")
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda and torch.cuda.is_available() and torch.distributed.is_nccl_available() else "gloo"


def init(device: str = "auto", *, timeout_s: float | None = None) -> bool:
    """Initialise the default process group when running under torchrun with ``WORLD_SIZE > 1``.

    Returns True when this call created the group (the caller then owns :func:`teardown`), False when there is
    nothing to do (a single process, or a group already initialised by someone else). Under NCCL the current CUDA
    device is set to ``LOCAL_RANK`` first, as NCCL requires one device per process.
    """
    rank_, world, local_rank = dist_env()
    if world <= 1 or is_initialized():
        return False
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    kwargs: dict[str, Any] = {}
    if timeout_s is not None:
        kwargs["timeout"] = timedelta(seconds=timeout_s)
    torch.distributed.init_process_group(backend=backend, rank=rank_, world_size=world, **kwargs)
    return True


def teardown() -> None:
    """Destroy the default process group (after a barrier, so no rank leaves while another still talks to it)."""
    if is_initialized():
        with contextlib.suppress(Exception):  # a peer that already died must not hide the real error
            barrier()
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[bool]:
    """``with session(cfg.train.device): ...`` — the process group for the block when under torchrun."""
    created = init(device)
    # On an exception the group is left to the process exit: a barrier (or NCCL's destroy) could wait forever for a
    # peer that is stuck in a collective, while exiting makes the peers' collectives fail and torchrun stop the job.
    yield created
    if created:
        teardown()


def barrier() -> None:
    if is_initialized():
        if torch.distributed.get_backend() == "nccl":
            torch.distributed.barrier(device_ids=[torch.cuda.current_device()])
        else:
            torch.distributed.barrier()


def broadcast_object(obj: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects; tensors inside arrive on the CPU if they were there).
    Outside a process group it returns ``obj`` unchanged."""
    if not is_initialized():
        return obj
    box = [obj if rank() == src else None]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def load_on_main(path: str | os.PathLike, map_location: Any = "cpu",
                 log: Callable[[str], None] = print) -> Any | None:
    """``torch.load(path, weights_only=True)`` on rank 0 (None when the file does not exist), broadcast to every rank.

    Rank 0 alone looks at the file, so all ranks agree whether to resume even while the file is being replaced, and
    ranks on other machines need no access to the results directory. In a process group the state is loaded on the
    CPU and moved by ``load_state_dict``; in a single process it is loaded straight to ``map_location``. A file that
    cannot be read (truncated by a full disk, corrupt) is moved aside (:func:`qbench.results.quarantine`) with one log
    line, and None is returned on every rank: the caller starts from scratch instead of failing on every re-run.
    """
    path = Path(path)
    state = None
    if is_main() and path.exists():
        try:
            state = torch.load(path, map_location=map_location if not is_initialized() else "cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - EOFError, RuntimeError, UnpicklingError: all mean "unreadable"
            log(f"{path} is unreadable ({type(exc).__name__}); moved to {quarantine(path)}; starting over")
    return broadcast_object(state)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers: its state_dict has
    no ``module.`` / ``_orig_mod.`` prefixes, so checkpoints load with or without the wrappers."""
    while True:
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model
