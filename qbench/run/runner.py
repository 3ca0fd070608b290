"""``qbench run``: expand a training suite into cells (method × arch × policy × bits × seed), train each, write records.

One code path for every training suite: the 10-second quickstart and ImageNet differ only in their config. A cell whose
``result.json`` says ``complete`` or ``diverged`` is skipped, so re-running a suite resumes it; a cell killed mid-way
continues from its last epoch checkpoint; a cell that raises is recorded as ``failed`` with its error and the suite
goes on. ``shard=i/n`` runs a deterministic 1/n of the cells (several machines share one results directory).

The typed :class:`~qbench.config.SuiteConfig` travels unchanged to the training step: :func:`cell_config` narrows it to
one cell, :func:`run_cell` hands its ``data``, ``model`` and ``train`` blocks to the builders and :func:`~.train.fit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..bits import FP_BITS, Bits, parse_bits
from ..config import DataConfig, SuiteConfig, parse_shard, stage_configs, to_dict, to_yaml, with_overrides
from ..errors import QbenchError
from ..quant.apply import model_size_bits, quantize_model
from ..registry import create_method, load_plugin, method_label, parse_method_spec, supported_bits
from ..results import (CHECKPOINT_FILE, CONFIG_FILE, ENV_FILE, FINISHED, METRICS_FILE, MODEL_FILE, RESULT_FILE,
                       SCHEMA_VERSION, TRACEBACK_FILE, ResultsLayout, SuiteRun, atomic_write_bytes, atomic_write_json,
                       atomic_write_text, env_info, load_result)
from .data import DatasetSplits, build_datasets, build_loaders
from .device import device_name, dist_env, peak_mem_mb, resolve_device, seed_everything, train_setup
from .distributed import broadcast_object, unwrap
from .models import create_model, load_checkpoint
from .train import evaluate, fit, loss_at_q

__all__ = ["Cell", "plan_cells", "cell_config", "record_config", "load_splits", "run_suite", "run_cell",
           "warm_start", "resolve_init_run", "save_model"]


@dataclass(frozen=True)
class Cell:
    """One run of a suite: a method spec at one (arch, bits, policy, seed)."""

    method: str  # a method spec, e.g. "ste:estimator=identity"
    arch: str
    bits: Bits
    policy: str
    seed: int
    tuned: bool = False
    stage: str = ""  # the suite stage (config.stage_configs); prefixes the run id so stages never share a run dir

    @property
    def run_id(self) -> str:
        tag = f"{method_label(self.method)}-tuned" if self.tuned else method_label(self.method)
        prefix = f"{self.stage}_" if self.stage else ""
        return f"{prefix}{tag}_{self.arch}_{self.bits}_{self.policy}_s{self.seed}"

    def record(self) -> dict[str, Any]:
        """The ``cell`` block of the run's ``config.yaml``: what names the run (read by ``qbench report`` and
        ``qbench run --from``)."""
        return {"method": self.method, "arch": self.arch, "bits": str(self.bits), "policy": self.policy,
                "seed": self.seed, "tuned": self.tuned, "stage": self.stage, "run_id": self.run_id}


def plan_cells(cfg: SuiteConfig, *, on_unsupported: Callable[[str], None] | None = None) -> list[Cell]:
    """All cells of a suite in a fixed order; FP runs once per arch and seed at W32A32 (its policy is moot).

    Each method runs at ``method_bits[method]`` if the suite sets it, else at ``bits``; a bit-width the method does
    not support is left out, with the reason passed to ``on_unsupported`` (:func:`qbench.registry.supported_bits`): a
    zoo suite names one list of bit-widths for every method."""
    cells: list[Cell] = []
    fp_bits = parse_bits(FP_BITS)
    for method in cfg.methods:
        if method == "fp":
            cells += [Cell("fp", arch, fp_bits, "fp", seed, cfg.tuned, cfg.stage)
                      for arch in cfg.model.archs for seed in cfg.seeds]
            continue
        method_bits = [parse_bits(b) for b in supported_bits(method, cfg.method_bits.get(method, cfg.bits),
                                                             on_unsupported)]
        cells += [Cell(method, arch, bits, policy, seed, cfg.tuned, cfg.stage)
                  for arch in cfg.model.archs for policy in cfg.policies for bits in method_bits
                  for seed in cfg.seeds]
    if cfg.shard:
        i, n = parse_shard(cfg.shard)
        # A stable hash of the run id (not Python's salted hash) so every machine computes the same partition.
        cells = [c for c in cells if int(hashlib.sha1(c.run_id.encode()).hexdigest(), 16) % n == i]
    return cells


def cell_config(cfg: SuiteConfig, cell: Cell, overrides: dict[str, Any] | None = None) -> SuiteConfig:
    """The resolved config of one run: the suite's config narrowed to the cell, plus (tuned, trial) overrides."""
    narrowed = dataclasses.replace(
        cfg, methods=[cell.method], bits=[str(cell.bits)], seeds=[cell.seed], policies=[cell.policy], shard=None,
        method_bits={}, model=dataclasses.replace(cfg.model, archs=[cell.arch]))
    return with_overrides(narrowed, overrides) if overrides else narrowed


def record_config(cfg: SuiteConfig, cell: Cell) -> dict:
    """What ``config.yaml`` holds: the run's resolved config plus its ``cell`` block."""
    return {**to_dict(cfg), "cell": cell.record()}


_SPLITS_CACHE: dict[str, DatasetSplits] = {}


def load_splits(data: DataConfig) -> DatasetSplits:
    """The dataset of ``data``, built once per process for consecutive cells (one dataset in memory at a time)."""
    # Loader-only keys do not change the dataset.
    key = repr(dataclasses.replace(data, batch_size=1, eval_batch_size=None, num_workers=0, pin_memory=False,
                                   persistent_workers=False, decode="auto"))
    if key not in _SPLITS_CACHE:
        _SPLITS_CACHE.clear()
        _SPLITS_CACHE[key] = build_datasets(data)
    return _SPLITS_CACHE[key]


def run_cell(cfg: SuiteConfig, cell: Cell, run_dir: Path, *, resume: bool = True, progress: bool = True,
             epoch_callback: Callable | None = None, evaluate_test: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Train one cell with its resolved config (:func:`cell_config`); write config.yaml, env.json, metrics.jsonl,
    result.json under ``run_dir`` (rank 0 only under torchrun). Returns the record."""
    for plugin in cfg.plugins:
        load_plugin(plugin)
    rank, world, _ = dist_env()
    writer = rank == 0
    run_dir = Path(run_dir)
    if writer:
        atomic_write_text(run_dir / CONFIG_FILE, to_yaml(record_config(cfg, cell)))
        atomic_write_json(run_dir / ENV_FILE, env_info())
    device = resolve_device(cfg.train.device)
    setup = train_setup(cfg.train, device)
    seed_everything(cell.seed)
    splits = load_splits(cfg.data)
    loaders = build_loaders(splits, cfg.data, seed=cell.seed, rank=rank, world_size=world,
                            pin_memory=cfg.data.pin_memory and device.type == "cuda", device=device)
    seed_everything(cell.seed)
    model = create_model(cell.arch, cfg.model, num_classes=splits.num_classes, in_chans=splits.input_size[0],
                         input_size=splits.input_size)
    base_method, hparams = parse_method_spec(cell.method, cfg.method_hparams)
    method = create_method(base_method, **hparams)
    model = model.to(device)
    quantize_model(model, method, cell.bits, cell.policy, input_size=splits.input_size)
    init_from, init_loss_q = None, None
    if cfg.model.init_from_run:
        # After the surgery, so the latent weights, BN statistics and quantizer state (α) all come from the source
        # run; a checkpoint.pt of this cell (resume) still wins inside fit.
        init_from = warm_start(model, run_dir.parent, cell, cfg.model.init_from_run)
        init_loss_q = loss_at_q(model, loaders[0], device, cfg.train.diag_batches, world)
    train_model = _wrap_ddp(model, device) if world > 1 else model
    fit_result = fit(train_model, method, loaders, cfg.train, setup, seed=cell.seed, run_dir=run_dir, resume=resume,
                     progress=progress, epoch_callback=epoch_callback, rank=rank, world_size=world, log=log)
    history = fit_result.history
    result = {
        **_record_identity(cfg, cell), "status": fit_result.status, "error": fit_result.error,
        "method_hparams": method.config, "wbits": model.qbench_info.bits.weight, "abits": model.qbench_info.bits.act,
        "epochs_completed": fit_result.epochs_completed,
        "val_top1": history[-1]["val_top1"] if history else None,
        "best_val_top1": max((h["val_top1"] for h in history), default=None),
        "train_loss": history[-1]["train_loss"] if history else None,
        "wall_time_s": fit_result.wall_time_s, "train_img_s": fit_result.train_img_s,
        "device": device.type, "device_name": device_name(device),
        "num_params": sum(p.numel() for p in model.parameters()),
        "num_quantized_params": sum(mod.parametrizations.weight.original.numel() for mod in model.qbench_info.layers),
        "model_size_bits": model_size_bits(model),
    }
    if init_from is not None:
        # The same quantity at the start and at the end of the continuation (per-epoch loss_q exists only for models
        # with quantized weights; a W32A4 model has none), so "did the loss go up?" is read off the record.
        final_loss_q = loss_at_q(model, loaders[0], device, cfg.train.diag_batches, world) \
            if fit_result.status == "complete" else None
        result.update(init_from_run=init_from, init_loss_q=init_loss_q, final_loss_q=final_loss_q)
    if fit_result.status == "complete" and evaluate_test:
        t0 = time.perf_counter()
        test = evaluate(model, loaders[2], device, amp_dtype=setup.amp_dtype, channels_last=setup.channels_last)
        elapsed = time.perf_counter() - t0
        result.update(test_top1=test["top1"], test_top5=test["top5"], test_loss=test["loss"],
                      infer_img_s=test["n"] / elapsed if elapsed > 0 else None)
    result["peak_mem_mb"] = peak_mem_mb(device)
    if writer and fit_result.status == "complete" and cfg.model.save_final:
        save_model(model, run_dir / MODEL_FILE)  # before result.json: a complete record implies its model.pt
    if writer:
        atomic_write_json(run_dir / RESULT_FILE, result)
        if fit_result.status in FINISHED:
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return result


def _record_identity(cfg: SuiteConfig, cell: Cell) -> dict:
    """The fields that name a run in its ``result.json``: the same for a finished and a failed record."""
    return {"schema_version": SCHEMA_VERSION, "qbench_version": __version__, "suite": cfg.name,
            "run_id": cell.run_id, "method": parse_method_spec(cell.method)[0], "tuned": cell.tuned,
            "arch": cell.arch, "bits": str(cell.bits), "policy": cell.policy, "seed": cell.seed,
            "dataset": cfg.data.name, "epochs": cfg.train.epochs, "kind": "train", "stage": cell.stage or None}


def _failure_record(cfg: SuiteConfig, cell: Cell, exc: BaseException) -> dict:
    return {**_record_identity(cfg, cell), "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def resolve_init_run(template: str, cell: Cell) -> str:
    """``model.init_from_run`` with the cell's {arch} {bits} {policy} {seed} filled in."""
    try:
        return str(template).format(arch=cell.arch, bits=cell.bits, policy=cell.policy, seed=cell.seed)
    except (KeyError, IndexError, ValueError) as exc:
        raise QbenchError(f"model.init_from_run '{template}' has a bad placeholder ({exc}); use only {{arch}}, "
                          "{bits}, {policy} and {seed}") from None


def warm_start(model, suite_dir: Path, cell: Cell, template: str) -> str:
    """Load the final weights (``model.pt``) of the completed run ``template`` (see :func:`resolve_init_run`) of the
    same results dir into ``model``; returns that run id. Same architecture and quantizer structure load exactly;
    otherwise :func:`qbench.run.models.load_checkpoint`'s mapping (float ⇄ latent weights) applies, with its
    warning."""
    run_id = resolve_init_run(template, cell)
    source = Path(suite_dir) / run_id
    record = load_result(source)
    status = (record or {}).get("status", "not run")
    if status != "complete":
        raise QbenchError(f"model.init_from_run: run '{run_id}' is {status} in {suite_dir}; run the suite (or stage) "
                          "that trains it first, or fix the run id")
    path = source / MODEL_FILE
    if not path.is_file():
        raise QbenchError(f"model.init_from_run: run '{run_id}' kept no {MODEL_FILE}; set model.save_final=true where "
                          "it is trained and rerun that run with --fresh")
    load_checkpoint(model, path)
    return run_id


def save_model(model, path: Path) -> None:
    """The model's state dict (latent weights, BN statistics, quantizer state), written atomically."""
    buffer = io.BytesIO()
    torch.save(unwrap(model).state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _wrap_ddp(model, device):
    # The update rules (BCGD blend, AQE clipping) act on model.qbench_info.layers, the same module objects DDP
    # wraps, so they run identically on every rank after the gradients are all-reduced.
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ddp.qbench_info = model.qbench_info
    return ddp


def run_suite(cfg: SuiteConfig, *, resume: bool = True, progress: bool = True, log: Callable[[str], None] = print,
              tuned_params: Callable[[Cell], dict] | None = None) -> SuiteRun:
    """Run every (remaining) cell of a training suite; returns what ran, what was skipped and what failed.

    Stages (``cfg.stages``) run in order: a later stage may warm-start from an earlier one's runs
    (``model.init_from_run``)."""
    if cfg.kind != "train":
        raise QbenchError(f"suite '{cfg.name}' is a {cfg.kind} suite; `qbench run` sends it to its own runner")
    if cfg.stages:
        outcome = SuiteRun()
        for stage_cfg in stage_configs(cfg):
            log(f"== stage {stage_cfg.stage} ==")
            outcome.add(run_suite(stage_cfg, resume=resume, progress=progress, log=log, tuned_params=tuned_params))
        return outcome
    for plugin in cfg.plugins:
        load_plugin(plugin)
    for name in cfg.methods:
        # An unknown method or hyperparameter fails before any cell runs.
        base, hparams = parse_method_spec(name, cfg.method_hparams)
        create_method(base, **hparams)
    # A missing or malformed dataset root is a config error for the whole suite: one line, before any cell runs.
    load_splits(cfg.data)
    layout = ResultsLayout(cfg.results_dir, cfg.name)
    cells = plan_cells(cfg, on_unsupported=log)
    outcome = SuiteRun()
    rank, world, _ = dist_env()
    if cfg.data.batch_size % world:
        raise QbenchError(f"data.batch_size={cfg.data.batch_size} is the global batch and must be divisible by the "
                          f"{world} processes of this torchrun job")
    for index, cell in enumerate(cells, 1):
        run_dir = layout.run_dir(cell.run_id)
        # Rank 0's view decides under torchrun, so every rank runs the same cells (run.distributed).
        previous = broadcast_object(load_result(run_dir) if rank == 0 else None)
        if resume and previous and previous.get("status") in FINISHED:
            outcome.skipped.append(cell.run_id)
            continue
        if not resume and run_dir.exists() and rank == 0:
            for name in (CHECKPOINT_FILE, METRICS_FILE, RESULT_FILE, MODEL_FILE):
                (run_dir / name).unlink(missing_ok=True)
        overrides = tuned_params(cell) if (cell.tuned and tuned_params is not None) else None
        log(f"[{index}/{len(cells)}] {cell.run_id}")
        try:
            run_cfg = cell_config(cfg, cell, overrides)
            result = run_cell(run_cfg, cell, run_dir, resume=resume, progress=progress, log=log)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded and the suite goes on
            result = _failure_record(cfg, cell, exc)
            if rank == 0:
                atomic_write_json(run_dir / RESULT_FILE, result)
                atomic_write_text(run_dir / TRACEBACK_FILE, traceback.format_exc())
            outcome.failed.append(cell.run_id)
            log(f"  failed: {result['error'].splitlines()[0]} (traceback in {run_dir / TRACEBACK_FILE})")
        else:
            if result["status"] == "diverged":
                log(f"  diverged: {result['error']}")
            elif result.get("test_top1") is not None:
                log(f"  test top-1 {result['test_top1']:.2f}%  ({result['wall_time_s']:.1f} s)")
        outcome.results.append(result)
    return outcome
