"""The training loop: one path for the 10-second quickstart and the ImageNet suite.

Per step (spec §0): forward at Q(w) (the parametrizations), loss, backward with the method's estimators, then the
method's update rule around the optimizer step: ``before_step`` (BCGD's blend), ``optimizer.step()``,
``after_step`` (clipping, projections). Evaluation runs in ``eval()`` mode, where every quantizer is hard.

:func:`train_step` is that step and nothing else: no host synchronisation, so a GPU never waits on Python inside it,
and ``qbench bench`` times exactly this function. The loop keeps its running loss and accuracy on the device and
checks for a non-finite loss every :data:`FINITE_CHECK_EVERY` steps on CUDA (every step on the CPU, where a check
costs nothing) and at the end of every epoch; a non-finite loss stops the run as ``diverged``.

Each epoch appends a row to ``metrics.jsonl`` and writes ``checkpoint.pt`` (atomically); ``fit(..., resume=True)``
continues from the last complete epoch with the same result as an uninterrupted run on the CPU, because every
source of randomness is re-seeded from (seed, epoch) at the start of each epoch.
"""

from __future__ import annotations

import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from ..method import Method
from ..results import CHECKPOINT_FILE, METRICS_FILE, atomic_write_bytes, quarantine, read_jsonl, write_jsonl
from .data import EpochLoader
from .device import TrainSetup, compile_model
from .diagnostics import RecurrenceTracker
from .distributed import broadcast_object, load_on_main, unwrap

__all__ = [
    "FINITE_CHECK_EVERY",
    "Diverged",
    "FitResult",
    "build_optimizer",
    "build_scheduler",
    "train_step",
    "evaluate",
    "loss_at_q",
    "fit",
]

#: steps between two checks of the loss for NaN/inf on CUDA (each check waits for the GPU)
FINITE_CHECK_EVERY = 25


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class FitResult:
    status: str  # "complete" | "diverged"
    epochs_completed: int
    history: list[dict] = field(default_factory=list)
    error: str | None = None
    wall_time_s: float = 0.0
    train_img_s: float = float("nan")


def build_optimizer(param_groups: list[dict], train: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``param_groups`` (groups may carry their own options, e.g. PACT's α decay)."""
    if train.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov,
                               weight_decay=train.weight_decay)
    if train.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=train.lr, weight_decay=train.weight_decay)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=train.lr, weight_decay=train.weight_decay)
    raise ConfigError(f"unknown train.optimizer '{train.optimizer}'")  # config.validate allows no other


def build_scheduler(optimizer, train: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor: multistep (γ at each milestone epoch), cosine with linear warm-up (per step),
    exponential (γ per epoch), constant."""
    name, gamma = train.schedule, float(train.gamma)
    milestones = sorted(int(m) for m in train.milestones)
    warmup = int(round(float(train.warmup_epochs) * steps_per_epoch))
    total = max(1, train.epochs * steps_per_epoch)
    min_factor = float(train.min_lr_factor)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        epoch = step // max(1, steps_per_epoch)
        if name == "multistep":
            return gamma ** sum(epoch >= m for m in milestones)
        if name == "exponential":
            return gamma**epoch
        if name == "cosine":
            t = (step - warmup) / max(1, total - warmup)
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(model: nn.Module, method: Method, optimizer, x: torch.Tensor, y: torch.Tensor, *, criterion,
               scaler=None, amp_dtype=None, grad_clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of spec §0's skeleton; returns (loss, logits), detached, still on the device (no host sync)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(x)
        loss = criterion(logits, y)
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    method.step_lr = float(optimizer.param_groups[0]["lr"])  # η_t of this step, for prox-type rules (Method.step_lr)
    method.before_step(model)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    method.after_step(model)
    return loss.detach(), logits.detach()


def _check_finite(nonfinite: torch.Tensor, loss: torch.Tensor) -> None:
    """Raise :class:`Diverged` when any loss since the last check was NaN/inf — on every rank at the same step: a
    rank that stopped alone would leave the others waiting forever in DDP's gradient all-reduce."""
    flag = nonfinite.to(torch.int32)
    if torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    if bool(flag):
        here = float(loss)
        raise Diverged(f"loss became {here}" if not math.isfinite(here) else
                       f"loss became non-finite on another rank (this rank: {here:.4g})")


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, *, amp_dtype=None, channels_last: bool = False,
             max_batches: int | None = None) -> dict:
    """Loss, top-1 and top-5 (percent) with hard-quantized weights and activations (``model.eval()``)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct1 = torch.zeros((), dtype=torch.int64, device=device)
    correct5 = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    try:
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = _to_device(x, y, device, channels_last)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += (top[:, 0] == y).sum()
            correct5 += (top == y[:, None]).any(dim=1).sum()
            n += y.numel()
    finally:
        model.train(was_training)
    if n == 0:
        return {"loss": float("nan"), "top1": float("nan"), "top5": float("nan"), "n": 0}
    return {"loss": float(loss_sum) / n, "top1": 100.0 * int(correct1) / n, "top5": 100.0 * int(correct5) / n, "n": n}


def _to_device(x, y, device, channels_last: bool):
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def _seed_epoch(loader: EpochLoader, seed: int, epoch: int) -> None:
    """Re-seed every RNG the epoch uses from (seed, epoch): torch's global RNG here, the shuffle and the augmentation
    through the loader's ``set_epoch`` (the loader knows the seed and the rank). This is what makes a resumed run
    identical to an uninterrupted one."""
    torch.manual_seed(seed * 100_003 + epoch)
    loader.set_epoch(epoch)


def _save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def fit(model: nn.Module, method: Method, loaders: tuple[EpochLoader, ...], train: TrainConfig, setup: TrainSetup, *,
        seed: int = 0, run_dir: str | Path | None = None, resume: bool = True, progress: bool = True,
        epoch_callback: Callable[[int, dict], None] | None = None, rank: int = 0, world_size: int = 1,
        log: Callable[[str], None] = print) -> FitResult:
    """Train for ``train.epochs`` epochs on ``setup.device``; write metrics and a checkpoint each epoch when
    ``run_dir`` is given. ``loaders`` are (train, val, …) :class:`~qbench.run.data.EpochLoader` s
    (:func:`~qbench.run.data.build_loaders`).

    ``epoch_callback(epoch, row)`` is called after each epoch (Optuna's report/prune hook; it may raise to stop).
    Only rank 0 writes files under torchrun.
    """
    train_loader, val_loader = loaders[0], loaders[1]
    device, amp_dtype, channels_last = setup.device, setup.amp_dtype, setup.channels_last
    epochs = train.epochs
    steps_per_epoch = min(len(train_loader), train.max_steps_per_epoch or len(train_loader))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = nn.CrossEntropyLoss(label_smoothing=float(train.label_smoothing))
    optimizer = build_optimizer(method.param_groups(model), train)
    scheduler = build_scheduler(optimizer, train, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if setup.grad_scaler else None
    forward_model = compile_model(model, setup)
    check_every = 1 if device.type == "cpu" else FINITE_CHECK_EVERY
    tracker = RecurrenceTracker()
    history: list[dict] = []
    start_epoch, wall_offset = 0, 0.0
    run_dir = Path(run_dir) if run_dir is not None else None
    writer = run_dir is not None and rank == 0

    # Rank 0 reads the checkpoint and broadcasts it (run.distributed): every rank agrees whether to resume.
    state = load_on_main(run_dir / CHECKPOINT_FILE, map_location=device, log=log) \
        if run_dir is not None and resume else None
    if state is not None:
        history = broadcast_object(_readable_history(run_dir, state["epoch"] + 1, log) if writer else None)
        if history is None:  # the per-epoch rows of the checkpoint's epochs are gone: start over, recorded as such
            if writer:
                log(f"moved {quarantine(run_dir / CHECKPOINT_FILE)} aside as well; starting over")
            state = None
    if state is not None:
        torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state["model"], "module.")
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        tracker.load_state_dict(state["tracker"])
        start_epoch, wall_offset = state["epoch"] + 1, float(state.get("wall_time_s", 0.0))
        log(f"resumed from {run_dir / CHECKPOINT_FILE} after epoch {start_epoch}")

    t_start = time.perf_counter() - wall_offset
    images_seen, train_time = 0, 0.0
    for epoch in range(start_epoch, epochs):
        _seed_epoch(train_loader, seed, epoch)
        method.on_epoch_start(model, epoch, epochs)
        model.train()
        # Running sums stay on the device: reading them each step would wait for the GPU every step.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        seen = 0
        t0 = time.perf_counter()
        bar = _progress(train_loader, steps_per_epoch, f"epoch {epoch + 1}/{epochs}", progress and rank == 0)
        try:
            for step, (x, y) in enumerate(bar):
                if step >= steps_per_epoch:
                    break
                x, y = _to_device(x, y, device, channels_last)
                loss, logits = train_step(forward_model, method, optimizer, x, y, criterion=criterion, scaler=scaler,
                                          amp_dtype=amp_dtype, grad_clip=train.grad_clip)
                scheduler.step()
                nonfinite |= ~torch.isfinite(loss)
                loss_sum += loss.double() * y.numel()
                correct += (logits.argmax(1) == y).sum()
                seen += y.numel()
                if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                    _check_finite(nonfinite, loss)
                if hasattr(bar, "set_postfix") and step % 10 == 0:
                    bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{100 * int(correct) / seen:.1f}",
                                    img_s=f"{seen * world_size / max(time.perf_counter() - t0, 1e-9):.0f}")
            _check_finite(nonfinite, loss_sum)
        except Diverged as exc:
            _close(bar)
            return FitResult("diverged", epoch, history, f"epoch {epoch + 1}: {exc}",
                             time.perf_counter() - t_start, _rate(images_seen, train_time))
        _close(bar)
        epoch_time = time.perf_counter() - t0
        images_seen += seen * world_size
        train_time += epoch_time
        train_loss, train_acc = _reduce(float(loss_sum), int(correct), seen, device, world_size)
        val = evaluate(model, val_loader, device, amp_dtype=amp_dtype, channels_last=channels_last)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
               "train_acc": train_acc, "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
               "epoch_time_s": epoch_time, "train_img_s": seen * world_size / max(epoch_time, 1e-9),
               "wall_time_s": time.perf_counter() - t_start}
        # Recurrence diagnostics (spec §6): loss at Q(w_t) on a fixed training slice, so epochs are comparable.
        if getattr(model, "qbench_info", None) is not None and model.qbench_info.layers:
            loss_q = loss_at_q(model, train_loader, device, train.diag_batches, world_size,
                               amp_dtype=amp_dtype, channels_last=channels_last)
            if loss_q is not None:
                row.update(tracker.update(model, loss_q))
        history.append(row)
        if progress and rank == 0:
            log(f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f} acc {train_acc:.2f}  "
                f"val top1 {val['top1']:.2f}  {row['train_img_s']:.0f} img/s")
        if writer:
            write_jsonl(run_dir / METRICS_FILE, history)
            _save_checkpoint(run_dir / CHECKPOINT_FILE, {
                "epoch": epoch, "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                "tracker": tracker.state_dict(), "wall_time_s": row["wall_time_s"]})
        if epoch_callback is not None:
            epoch_callback(epoch, row)
    return FitResult("complete", epochs, history, None, time.perf_counter() - t_start,
                     _rate(images_seen, train_time))


def _readable_history(run_dir: Path, epochs: int, log: Callable[[str], None]) -> list[dict] | None:
    """The first ``epochs`` rows of ``metrics.jsonl``, or None (the file moved aside) when it is torn or too short."""
    path = run_dir / METRICS_FILE
    try:
        rows = read_jsonl(path)
    except ValueError as exc:  # a torn line: json.JSONDecodeError or a UnicodeDecodeError
        log(f"{path} is unreadable ({type(exc).__name__}); moved to {quarantine(path)}")
        return None
    if len(rows) < epochs:
        if path.exists():
            log(f"{path} has {len(rows)} rows but the checkpoint is after epoch {epochs}; moved to {quarantine(path)}")
        return None
    return rows[:epochs]


def loss_at_q(model: nn.Module, train_loader: EpochLoader, device, diag_batches: int, world_size: int = 1, *,
              amp_dtype=None, channels_last: bool = False) -> float | None:
    """Loss at Q(w) (eval mode: hard quantizers) on a fixed slice of the training set — the first ``diag_batches``
    batches of a sequential, un-augmented pass; None when ``diag_batches`` is 0. Under torchrun the loader's batch is
    the per-rank one: ``world_size`` times as many batches keep the slice (diag_batches global batches) the same as
    in one process."""
    if not diag_batches:
        return None
    return evaluate(model, train_loader.sequential(), device, amp_dtype=amp_dtype, channels_last=channels_last,
                    max_batches=diag_batches * world_size)["loss"]


def _rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def _reduce(loss_sum: float, correct: int, seen: int, device, world_size: int) -> tuple[float, float]:
    if world_size > 1:
        t = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        loss_sum, correct, seen = float(t[0]), float(t[1]), float(t[2])
    return loss_sum / max(seen, 1), 100.0 * correct / max(seen, 1)


def _on_terminal() -> bool:
    """Whether a person watches this process on a terminal (stdout and stderr both TTYs): a progress bar redraws its
    line with carriage returns, which a log file (a cluster job, ``nohup``, CI) would keep as one long line per
    refresh; there the epoch summary line is the progress report."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


def _progress(loader, total: int, desc: str, enabled: bool):
    if not enabled or not _on_terminal():
        return loader
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a bare install should still train
        return loader
    return tqdm(loader, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)


def _close(bar) -> None:
    if hasattr(bar, "close"):
        bar.close()
