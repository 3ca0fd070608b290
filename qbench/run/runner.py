"""``qbench run``: expand a suite into cells (method × arch × policy × bits × seed), train each, write run records.

One code path for every suite: the 10-second quickstart and ImageNet differ only in their config. A cell whose
``result.json`` says ``complete`` or ``diverged`` is skipped, so re-running a suite resumes it; a cell killed mid-way
continues from its last epoch checkpoint; a cell that raises is recorded as ``failed`` with its error and the suite
goes on. ``shard=i/n`` runs a deterministic 1/n of the cells (several machines share one results directory).
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import parse_shard, to_dict, to_yaml
from ..errors import QbenchError
from ..results import SCHEMA_VERSION, atomic_write_bytes, atomic_write_json, atomic_write_text, env_info

__all__ = ["Cell", "plan_cells", "supported_bits", "run_suite", "run_cell", "cell_config", "load_result", "warm_start",
           "resolve_init_run", "save_model", "FINISHED", "MODEL_FILE"]

FINISHED = ("complete", "diverged")
FP_BITS = "W32A32"
MODEL_FILE = "model.pt"  # final weights of a run with model.save_final (what model.init_from_run loads)


@dataclass(frozen=True)
class Cell:
    method: str
    arch: str
    bits: str
    policy: str
    seed: int
    tuned: bool = False
    stage: str = ""  # the suite stage (config.stage_configs); prefixes the run id so stages never share a run dir

    @property
    def run_id(self) -> str:
        label = self.method.replace(":", "-").replace(",", "-").replace("/", "_")
        tag = f"{label}-tuned" if self.tuned else label
        prefix = f"{self.stage}_" if self.stage else ""
        return f"{prefix}{tag}_{self.arch}_{self.bits}_{self.policy}_s{self.seed}"


def parse_method_spec(spec: str, method_hparams: dict | None = None) -> tuple[str, dict]:
    """``"ste:estimator=identity,alpha=0.5"`` → ("ste", {...}): a suite can run variants of one method side by side
    (the STE paper's three estimators). The suite's ``method_hparams[<name>]`` apply first, inline values win."""
    import yaml

    base, _, inline = str(spec).partition(":")
    hparams = dict((method_hparams or {}).get(base) or {})
    for item in filter(None, inline.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise QbenchError(f"bad method variant '{spec}'; write method:key=value[,key=value]")
        hparams[key.strip()] = yaml.safe_load(value)
    return base, hparams


def supported_bits(method: str, bits_list, on_unsupported: Callable[[str], None] | None = None) -> list[str]:
    """The bit-widths of ``bits_list`` that ``method`` (a method spec) supports, normalised ("W1A4"); each one left
    out (``Method.unsupported_bits``: e.g. a weight-only method at W1A1) is reported to ``on_unsupported``. An unknown
    method keeps every bit-width: it fails with its own one-line error where it is created."""
    from ..bits import parse_bits
    from ..registry import get_method_class

    try:
        method_class = get_method_class(parse_method_spec(method, None)[0])
    except QbenchError:
        method_class = None
    kept = []
    for bits in bits_list:
        parsed = parse_bits(bits)
        reason = method_class.unsupported_bits(parsed) if method_class is not None else None
        if reason is None:
            kept.append(str(parsed))
        elif on_unsupported is not None:
            on_unsupported(f"{method} {parsed}: left out, {reason}")
    return kept


def plan_cells(cfg, *, on_unsupported: Callable[[str], None] | None = None) -> list[Cell]:
    """All cells of a suite in a fixed order; FP runs once per arch and seed at W32A32 (its policy is moot).

    Each method runs at ``method_bits[method]`` if the suite sets it, else at ``bits``; a bit-width the method does
    not support is left out, with the reason passed to ``on_unsupported`` (see :func:`supported_bits`): a zoo suite
    names one list of bit-widths for every method."""
    cells: list[Cell] = []
    stage = str(cfg.get("stage") or "")
    for method in cfg.methods:
        if method == "fp":
            for arch in cfg.model.archs:
                for seed in cfg.seeds:
                    cells.append(Cell("fp", arch, FP_BITS, "fp", int(seed), bool(cfg.tuned), stage))
            continue
        method_bits = supported_bits(method, cfg.method_bits.get(method, cfg.bits), on_unsupported)
        for arch in cfg.model.archs:
            for policy in cfg.policies:
                for bits in method_bits:
                    for seed in cfg.seeds:
                        cells.append(Cell(method, arch, bits, policy, int(seed), bool(cfg.tuned), stage))
    if cfg.shard:
        i, n = parse_shard(cfg.shard)
        # A stable hash of the run id (not Python's salted hash) so every machine computes the same partition.
        cells = [c for c in cells if int(hashlib.sha1(c.run_id.encode()).hexdigest(), 16) % n == i]
    return cells


def cell_config(cfg, cell: Cell, extra: dict[str, Any] | None = None) -> dict:
    """The resolved config of one run: the suite's config narrowed to the cell, plus tuned/extra overrides."""
    data = to_dict(cfg)
    data.update(methods=[cell.method], bits=[cell.bits], seeds=[cell.seed], policies=[cell.policy], shard=None,
                method_bits={})
    data["model"]["archs"] = [cell.arch]
    for key, value in (extra or {}).items():
        node = data
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    data["cell"] = {"method": cell.method, "arch": cell.arch, "bits": cell.bits, "policy": cell.policy,
                    "seed": cell.seed, "tuned": cell.tuned, "stage": cell.stage, "run_id": cell.run_id}
    return data


def load_result(run_dir: Path) -> dict | None:
    import json

    path = Path(run_dir) / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise QbenchError(f"train.device={name} but CUDA is not available here; use train.device=cpu or auto")
    return torch.device(name)


_DATA_CACHE: dict[str, Any] = {}


def _datasets(data_cfg: dict):
    from .data import build_datasets

    key = repr(sorted(data_cfg.items()))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset at a time in memory
        _DATA_CACHE[key] = build_datasets(
            data_cfg["name"], data_cfg.get("root"), download=bool(data_cfg.get("download")),
            val_fraction=float(data_cfg.get("val_fraction", 0.1)), split_seed=int(data_cfg.get("split_seed", 0)),
            augment=bool(data_cfg.get("augment", True)), input_size=data_cfg.get("input_size"),
            train_subset=data_cfg.get("train_subset"))
    return _DATA_CACHE[key]


def _peak_mem_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux: the process's peak resident set (the whole process, labelled as such).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def run_cell(cfg_dict: dict, run_dir: Path, *, resume: bool = True, progress: bool = True,
             epoch_callback: Callable | None = None, evaluate_test: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Train one cell from its resolved config; write config.yaml, env.json, metrics.jsonl, result.json."""
    import torch

    from .data import build_loaders
    from .models import create_model
    from ..quant.apply import model_size_bits, quantize_model
    from ..registry import create_method, load_plugin
    from .train import evaluate, fit, loss_at_q

    for plugin in cfg_dict.get("plugins") or []:
        load_plugin(plugin)
    cell = cfg_dict["cell"]
    rank, world, local_rank = _distributed()
    writer = rank == 0
    run_dir = Path(run_dir)
    if writer:
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg_dict))
        atomic_write_json(run_dir / "env.json", env_info())
    train_cfg = cfg_dict["train"]
    device = _device(train_cfg.get("device", "auto"))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    seed = int(cell["seed"])
    _seed_everything(seed)
    splits = _datasets(cfg_dict["data"])
    d = cfg_dict["data"]
    loaders = build_loaders(splits, batch_size=int(d["batch_size"]) // world, eval_batch_size=d.get("eval_batch_size"),
                            num_workers=int(d.get("num_workers", 0)), seed=seed,
                            pin_memory=bool(d.get("pin_memory")) and device.type == "cuda",
                            persistent_workers=bool(d.get("persistent_workers")), distributed=world > 1)
    m = cfg_dict["model"]
    _seed_everything(seed)
    model = create_model(cell["arch"], num_classes=splits.num_classes, in_chans=splits.input_size[0],
                         input_size=splits.input_size, pretrained=bool(m.get("pretrained")),
                         checkpoint=m.get("checkpoint"), adapt_32px=bool(m.get("adapt_32px")), **(m.get("kwargs") or {}))
    base_method, hparams = parse_method_spec(cell["method"], cfg_dict.get("method_hparams"))
    method = create_method(base_method, **hparams)
    model = model.to(device)
    quantize_model(model, method, cell["bits"], cell["policy"], input_size=splits.input_size)
    init_from, init_loss_q = None, None
    diag_batches = int(train_cfg.get("diag_batches", 4) or 0)  # the slice of fit's per-epoch loss at Q(w)
    if m.get("init_from_run"):
        # After the surgery, so the latent weights, BN statistics and quantizer state (α) all come from the source
        # run; a checkpoint.pt of this cell (resume) still wins inside fit.
        init_from = warm_start(model, run_dir.parent, cell, m["init_from_run"])
        init_loss_q = loss_at_q(model, loaders[0], device, diag_batches, world)
    train_model = model
    if world > 1:
        train_model = _wrap_ddp(model, device)
    fit_result = fit(train_model, method, loaders, train_cfg, device=device, seed=seed, run_dir=run_dir,
                     resume=resume, progress=progress, epoch_callback=epoch_callback, rank=rank, world_size=world,
                     log=log)
    history = fit_result.history
    result = {
        "schema_version": SCHEMA_VERSION, "qbench_version": _version(), "suite": cfg_dict.get("name"),
        "run_id": cell["run_id"], "status": fit_result.status, "error": fit_result.error, "method": base_method,
        "tuned": bool(cell.get("tuned")), "method_hparams": method.config, "arch": cell["arch"], "bits": cell["bits"],
        "wbits": model.qbench_info.bits.weight, "abits": model.qbench_info.bits.act, "policy": cell["policy"],
        "seed": seed, "dataset": d["name"], "epochs": int(train_cfg["epochs"]),
        "epochs_completed": fit_result.epochs_completed,
        "val_top1": history[-1]["val_top1"] if history else None,
        "best_val_top1": max((h["val_top1"] for h in history), default=None),
        "train_loss": history[-1]["train_loss"] if history else None,
        "wall_time_s": fit_result.wall_time_s, "train_img_s": fit_result.train_img_s,
        "device": device.type, "device_name": _device_name(device),
        "num_params": sum(p.numel() for p in model.parameters()),
        "num_quantized_params": sum(mod.parametrizations.weight.original.numel() for mod in model.qbench_info.layers),
        "model_size_bits": model_size_bits(model),
        "kind": "train", "stage": cell.get("stage") or None,
    }
    if init_from is not None:
        # The same quantity at the start and at the end of the continuation (per-epoch loss_q exists only for models
        # with quantized weights; a W32A4 model has none), so "did the loss go up?" is read off the record.
        final_loss_q = loss_at_q(model, loaders[0], device, diag_batches, world) \
            if fit_result.status == "complete" else None
        result.update(init_from_run=init_from, init_loss_q=init_loss_q, final_loss_q=final_loss_q)
    if fit_result.status == "complete" and evaluate_test:
        t0 = time.perf_counter()
        test = evaluate(model, loaders[2], device)
        elapsed = time.perf_counter() - t0
        result.update(test_top1=test["top1"], test_top5=test["top5"], test_loss=test["loss"],
                      infer_img_s=test["n"] / elapsed if elapsed > 0 else None)
    result["peak_mem_mb"] = _peak_mem_mb(device)
    if writer and fit_result.status == "complete" and m.get("save_final"):
        save_model(model, run_dir / MODEL_FILE)  # before result.json: a complete record implies its model.pt
    if writer:
        atomic_write_json(run_dir / "result.json", result)
        if fit_result.status in FINISHED:
            (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    return result


def resolve_init_run(template: str, cell: dict) -> str:
    """``model.init_from_run`` with the cell's {arch} {bits} {policy} {seed} filled in."""
    try:
        return str(template).format(arch=cell["arch"], bits=cell["bits"], policy=cell["policy"], seed=cell["seed"])
    except (KeyError, IndexError, ValueError) as exc:
        raise QbenchError(f"model.init_from_run '{template}' has a bad placeholder ({exc}); use only {{arch}}, "
                          "{bits}, {policy} and {seed}") from None


def warm_start(model, suite_dir: Path, cell: dict, template: str) -> str:
    """Load the final weights (``model.pt``) of the completed run ``template`` (see :func:`resolve_init_run`) of the
    same results dir into ``model``; returns that run id. Same architecture and quantizer structure load exactly;
    otherwise :func:`qbench.models.load_checkpoint`'s mapping (float ⇄ latent weights) applies, with its warning."""
    from .models import load_checkpoint

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
    import io

    import torch

    from .distributed import unwrap

    buffer = io.BytesIO()
    torch.save(unwrap(model).state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _wrap_ddp(model, device):
    from torch.nn.parallel import DistributedDataParallel

    # The update rules (BCGD blend, AQE clipping) act on model.qbench_info.layers, the same module objects DDP
    # wraps, so they run identically on every rank after the gradients are all-reduced.
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ddp.qbench_info = model.qbench_info
    return ddp


def _device_name(device) -> str:
    import torch

    from ..results import _cpu_name

    return torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()


def _version() -> str:
    from .. import __version__

    return __version__


def _failure_record(cfg_dict: dict, exc: BaseException) -> dict:
    cell = cfg_dict["cell"]
    return {"schema_version": SCHEMA_VERSION, "qbench_version": _version(), "suite": cfg_dict.get("name"),
            "run_id": cell["run_id"], "status": "failed", "error": f"{type(exc).__name__}: {exc}",
            "method": cell["method"].partition(":")[0], "tuned": bool(cell.get("tuned")), "arch": cell["arch"],
            "bits": cell["bits"],
            "policy": cell["policy"], "seed": cell["seed"], "dataset": cfg_dict["data"]["name"],
            "epochs": int(cfg_dict["train"]["epochs"]), "kind": "train", "stage": cell.get("stage") or None}


@dataclass
class SuiteRun:
    results: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def run_suite(cfg, *, resume: bool = True, progress: bool = True, log: Callable[[str], None] = print,
              tuned_params: Callable[[Cell], dict] | None = None) -> SuiteRun:
    """Run every (remaining) cell of a suite; returns what ran, what was skipped and what failed."""
    if cfg.kind == "theory":
        from ..theory.suite import run_theory_suite_records

        return run_theory_suite_records(cfg, resume=resume, log=log)
    if cfg.get("stages"):
        from ..config import stage_configs

        # Stages run in order (a later stage may warm-start from an earlier one's runs: model.init_from_run).
        outcome = SuiteRun()
        for stage_cfg in stage_configs(cfg):
            log(f"== stage {stage_cfg.stage} ==")
            part = run_suite(stage_cfg, resume=resume, progress=progress, log=log, tuned_params=tuned_params)
            outcome.results += part.results
            outcome.skipped += part.skipped
            outcome.failed += part.failed
        return outcome
    from .distributed import broadcast_object
    from ..registry import create_method, load_plugin

    for plugin in cfg.plugins:
        load_plugin(plugin)
    method_hparams = to_dict(cfg).get("method_hparams")
    for name in cfg.methods:
        # An unknown method or hyperparameter fails before any cell runs.
        base, hparams = parse_method_spec(name, method_hparams)
        create_method(base, **hparams)
    # A missing or malformed dataset root is a config error for the whole suite: one line, before any cell runs.
    _datasets(to_dict(cfg)["data"])
    suite_dir = Path(cfg.results_dir) / cfg.name
    cells = plan_cells(cfg, on_unsupported=log)
    outcome = SuiteRun()
    rank, world, _ = _distributed()
    if cfg.data.batch_size % world:
        raise QbenchError(f"data.batch_size={cfg.data.batch_size} is the global batch and must be divisible by the "
                          f"{world} processes of this torchrun job")
    for index, cell in enumerate(cells, 1):
        run_dir = suite_dir / cell.run_id
        # Rank 0's view decides under torchrun, so every rank runs the same cells (qbench.distributed).
        previous = broadcast_object(load_result(run_dir) if rank == 0 else None)
        if resume and previous and previous.get("status") in FINISHED:
            outcome.skipped.append(cell.run_id)
            continue
        if not resume and run_dir.exists() and rank == 0:
            for name in ("checkpoint.pt", "metrics.jsonl", "result.json", MODEL_FILE):
                (run_dir / name).unlink(missing_ok=True)
        extra = tuned_params(cell) if (cell.tuned and tuned_params is not None) else {}
        cfg_dict = cell_config(cfg, cell, extra)
        log(f"[{index}/{len(cells)}] {cell.run_id}")
        try:
            result = run_cell(cfg_dict, run_dir, resume=resume, progress=progress, log=log)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded and the suite goes on
            result = _failure_record(cfg_dict, exc)
            if rank == 0:
                atomic_write_json(run_dir / "result.json", result)
                atomic_write_text(run_dir / "traceback.txt", traceback.format_exc())
            outcome.failed.append(cell.run_id)
            log(f"  failed: {result['error'].splitlines()[0]} (traceback in {run_dir / 'traceback.txt'})")
        else:
            if result["status"] == "diverged":
                log(f"  diverged: {result['error']}")
            elif result.get("test_top1") is not None:
                log(f"  test top-1 {result['test_top1']:.2f}%  ({result['wall_time_s']:.1f} s)")
        outcome.results.append(result)
    return outcome
