"""``qbench run``: expand a training suite into cells (method × arch × policy × bits × seed), train each, write records.

One code path for every training suite: the 10-second quickstart and ImageNet differ only in their config. A cell whose
``result.json`` says ``complete`` or ``diverged`` is skipped, so re-running a suite resumes it; a cell killed mid-way
continues from its last epoch checkpoint; a cell that raises is recorded as ``failed`` with its error and the suite
goes on. ``shard=i/n`` runs a deterministic 1/n of the cells (several machines share one results directory).
``seeds=auto`` adds seeds, round by round, to the leaderboard columns whose top group is not yet separated
(:func:`qbench.paired.plan_seeds`, decided from the records on disk).

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
from ..config import (SEEDS_AUTO, DataConfig, SuiteConfig, fingerprint, fingerprint_diff, parse_policy, parse_shard,
                      stage_configs, to_dict, to_yaml, with_overrides)
from ..errors import QbenchError
from ..paired import plan_seeds
from ..quant.apply import model_size_bits, quantize_model
from ..registry import create_method, load_plugin, method_label, parse_method_spec, supported_bits
from ..results import (CHECKPOINT_FILE, CONFIG_FILE, ENV_FILE, FINISHED, METRICS_FILE, MODEL_FILE, RESULT_FILE,
                       SCHEMA_VERSION, TRACEBACK_FILE, CellLock, ResultsLayout, SuiteRun, atomic_write_bytes,
                       atomic_write_json, atomic_write_text, check_writable, env_info, load_result, quarantine,
                       read_config, remove_temp_files)
from .data import DatasetSplits, build_datasets, build_loaders
from .device import device_name, dist_env, peak_mem_mb, resolve_device, seed_everything, train_setup
from .distributed import broadcast_object, unwrap
from .loggers import Trackers, open_trackers, require_loggers
from .models import create_model, load_checkpoint
from .train import evaluate, fit, loss_at_q

__all__ = ["Cell", "plan_cells", "cell_config", "record_config", "load_splits", "run_suite", "run_cell",
           "failure_record", "warm_start", "resolve_init_run", "save_model", "AUTO_METRIC", "auto_seed_plan"]


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
    seeds_rule: str = ""  # "auto": seeds=auto chose this seed (recorded; not part of the run id)

    @property
    def run_id(self) -> str:
        tag = f"{method_label(self.method)}-tuned" if self.tuned else method_label(self.method)
        prefix = f"{self.stage}_" if self.stage else ""
        return f"{prefix}{tag}_{self.arch}_{self.bits}_{self.policy}_s{self.seed}"

    def record(self) -> dict[str, Any]:
        """The ``cell`` block of the run's ``config.yaml``: what names the run (read by ``qbench report`` and
        ``qbench run --from``)."""
        return {"method": self.method, "arch": self.arch, "bits": str(self.bits), "policy": self.policy,
                "seed": self.seed, "tuned": self.tuned, "stage": self.stage, "run_id": self.run_id,
                **({"seeds_rule": self.seeds_rule} if self.seeds_rule else {})}


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
        method_bits = supported_bits(method, cfg.method_bits.get(method, cfg.bits), on_unsupported)
        policies = list(dict.fromkeys(parse_policy(p).name for p in cfg.policies))
        cells += [Cell(method, arch, bits, policy, seed, cfg.tuned, cfg.stage)
                  for arch in cfg.model.archs for policy in policies for bits in method_bits
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
    """What ``config.yaml`` holds: the run's resolved config plus its ``cell`` block (with the config's result
    fingerprint, :func:`qbench.config.fingerprint`)."""
    return {**to_dict(cfg), "cell": {**cell.record(), "fingerprint": fingerprint(cfg)}}


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
    quantize_model(model, method, cell.bits, cell.policy, input_size=splits.input_size, layer_bits=cfg.layer_bits)
    init_from, init_loss_q = None, None
    if cfg.model.init_from_run:
        # After the surgery, so the latent weights, BN statistics and quantizer state (α) all come from the source
        # run; a checkpoint.pt of this cell (resume) still wins inside fit.
        init_from = warm_start(model, run_dir.parent, cell, cfg.model.init_from_run)
        init_loss_q = loss_at_q(model, loaders[0], device, cfg.train.diag_batches, world)
    train_model = _wrap_ddp(model, device) if world > 1 else model
    trackers = _open_trackers(cfg, cell, run_dir, resume) if writer else Trackers()
    try:
        fit_result = fit(train_model, method, loaders, cfg.train, setup, seed=cell.seed, run_dir=run_dir,
                         resume=resume, progress=progress, epoch_callback=trackers.chain(epoch_callback), rank=rank,
                         world_size=world, log=log)
    except BaseException as exc:
        trackers.finish({"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise
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
        "model_size_bits": model_size_bits(model), "fingerprint": fingerprint(cfg),
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
            (run_dir / TRACEBACK_FILE).unlink(missing_ok=True)  # an earlier failure of this cell is history now
    trackers.finish(result)
    return result


def _open_trackers(cfg: SuiteConfig, cell: Cell, run_dir: Path, resume: bool) -> Trackers:
    """The experiment trackers of ``cfg.loggers`` for this run (:mod:`qbench.run.loggers`), named by the run dir's
    path under the results dir; a run resuming from its checkpoint continues its tracker runs."""
    try:
        name = run_dir.resolve().relative_to(Path(cfg.results_dir).resolve()).as_posix()
    except ValueError:
        name = run_dir.name
    return open_trackers(cfg.loggers, run_dir, name=name, config=record_config(cfg, cell), suite=cfg.name,
                         results_dir=cfg.results_dir, resumed=resume and (run_dir / CHECKPOINT_FILE).exists())


def _record_identity(cfg: SuiteConfig, cell: Cell) -> dict:
    """The fields that name a run in its ``result.json``: the same for a finished and a failed record."""
    return {"schema_version": SCHEMA_VERSION, "qbench_version": __version__, "suite": cfg.name,
            "run_id": cell.run_id, "method": parse_method_spec(cell.method)[0], "tuned": cell.tuned,
            "arch": cell.arch, "bits": str(cell.bits), "policy": cell.policy, "seed": cell.seed,
            "dataset": cfg.data.name, "epochs": cfg.train.epochs, "kind": "train", "stage": cell.stage or None,
            **({"seeds_rule": cell.seeds_rule} if cell.seeds_rule else {})}


def failure_record(cfg: SuiteConfig, cell: Cell, exc: BaseException) -> dict:
    """The ``result.json`` of a cell that raised: its identity, the error, and the method's hyperparameters when the
    method can still be created (so the report files it under its real row)."""
    record = {**_record_identity(cfg, cell), "status": "failed", "error": f"{type(exc).__name__}: {exc}",
              "fingerprint": fingerprint(cfg)}
    try:
        base, hparams = parse_method_spec(cell.method, cfg.method_hparams)
        record["method_hparams"] = create_method(base, **hparams).config
    except QbenchError:
        pass  # an unknown method or hyperparameter is the error itself
    return record


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
              tuned_params: Callable[[Cell], dict] | None = None, seeds_rule: str = "") -> SuiteRun:
    """Run every (remaining) cell of a training suite; returns what ran, what was skipped and what failed.

    Stages (``cfg.stages``) run in order: a later stage may warm-start from an earlier one's runs
    (``model.init_from_run``). ``seeds_rule="auto"`` marks the records of cells whose seeds seeds=auto chose."""
    if cfg.kind != "train":
        raise QbenchError(f"suite '{cfg.name}' is a {cfg.kind} suite; `qbench run` sends it to its own runner")
    if cfg.stages:
        outcome = SuiteRun()
        for stage_cfg in stage_configs(cfg):
            log(f"== stage {stage_cfg.stage} ==")
            outcome.add(run_suite(stage_cfg, resume=resume, progress=progress, log=log, tuned_params=tuned_params))
        return outcome
    if cfg.seeds == SEEDS_AUTO:
        return _run_auto_seeds(cfg, resume=resume, progress=progress, log=log, tuned_params=tuned_params,
                               seeds_rule=SEEDS_AUTO)
    for plugin in cfg.plugins:
        load_plugin(plugin)
    for name in cfg.methods:
        # An unknown method or hyperparameter fails before any cell runs.
        base, hparams = parse_method_spec(name, cfg.method_hparams)
        create_method(base, **hparams)
    # A missing or malformed dataset root is a config error for the whole suite: one line, before any cell runs.
    load_splits(cfg.data)
    require_loggers(cfg.loggers)  # so is a logger whose package is missing
    layout = ResultsLayout(cfg.results_dir, cfg.name)
    cells = [dataclasses.replace(c, seeds_rule=seeds_rule) for c in plan_cells(cfg, on_unsupported=log)]
    outcome = SuiteRun()
    rank, world, _ = dist_env()
    if cfg.data.batch_size % world:
        raise QbenchError(f"data.batch_size={cfg.data.batch_size} is the global batch and must be divisible by the "
                          f"{world} processes of this torchrun job")
    if rank == 0:
        check_writable(layout.suite_dir)
    run_cfgs = {}
    for cell in cells:
        overrides = tuned_params(cell) if (cell.tuned and tuned_params is not None) else None
        run_cfgs[cell] = cell_config(cfg, cell, overrides)
    if resume:
        _check_records_match(layout, cells, run_cfgs)
    for index, cell in enumerate(cells, 1):
        run_dir = layout.run_dir(cell.run_id)
        lock = CellLock(run_dir)
        # Rank 0 decides under torchrun (run.distributed), so every rank runs the same cells.
        decision = broadcast_object(_claim(cell, run_dir, lock, resume, log) if rank == 0 else None)
        if decision == "done":
            outcome.skipped.append(cell.run_id)
            continue
        if decision != "run":
            outcome.locked.append(cell.run_id)
            log(f"[{index}/{len(cells)}] {cell.run_id}: skipped, {decision}")
            continue
        log(f"[{index}/{len(cells)}] {cell.run_id}")
        try:
            result = run_cell(run_cfgs[cell], cell, run_dir, resume=resume, progress=progress, log=log)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded and the suite goes on
            result = failure_record(run_cfgs[cell], cell, exc)
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
        finally:
            lock.release()
        outcome.results.append(result)
    return outcome


def _check_records_match(layout: ResultsLayout, cells: list[Cell], run_cfgs: dict[Cell, SuiteConfig]) -> None:
    """Resume and skip only cells whose existing record was made with the same result-relevant config: otherwise one
    line, before anything runs, naming the keys that differ and the two ways on. Rank 0 reads; every rank raises."""
    problem = None
    if dist_env()[0] == 0:
        for cell in cells:
            saved = read_config(layout.run_dir(cell.run_id))
            if saved is None:
                continue
            diff = fingerprint_diff(saved, run_cfgs[cell])
            if diff:
                problem = (f"cell {cell.run_id} in {layout.suite_dir} was run with {', '.join(diff)}; to replace its "
                           "record re-run with --fresh, or keep it and give this config its own results_dir=... or "
                           "name=...")
                break
    problem = broadcast_object(problem)
    if problem:
        raise QbenchError(problem)


def _claim(cell: Cell, run_dir: Path, lock: CellLock, resume: bool, log: Callable[[str], None]) -> str:
    """Rank 0's decision for one cell: "done" (finished, skip), "run" (this process holds the cell's lock and the
    folder is ready), or why another process has it."""
    if resume and (load_result(run_dir) or {}).get("status") in FINISHED:
        return "done"
    if not lock.acquire():
        return f"another qbench process trains it ({lock.holder()})"
    # Under the lock: another process may have finished the cell since the first look.
    record = load_result(run_dir)
    if resume and (record or {}).get("status") in FINISHED:
        lock.release()
        return "done"
    if record is None and (run_dir / RESULT_FILE).exists():
        log(f"  {run_dir / RESULT_FILE} is not a readable record; moved to {quarantine(run_dir / RESULT_FILE)}")
    remove_temp_files(run_dir)
    if not resume:
        for name in (CHECKPOINT_FILE, METRICS_FILE, RESULT_FILE, MODEL_FILE, TRACEBACK_FILE):
            (run_dir / name).unlink(missing_ok=True)
    return "run"


# ------------------------------------------------------------------------------------------------------ seeds=auto
#: the result field seeds=auto decides on: the report's default metric, so the runner and the table agree
AUTO_METRIC = "test_top1"


def auto_seed_plan(cfg: SuiteConfig, only: set[str] | None = None) -> dict[tuple[str, str, str], dict[str, list[int]]]:
    """What ``seeds=auto`` runs next, from the records under ``cfg.results_dir``: {(arch, bits, policy): {method spec:
    [seeds]}} (:func:`qbench.paired.plan_seeds` per leaderboard column; FP is its own column of one method).

    A record counts once it is finished (complete, or diverged: no score); a failed or killed cell does not, so it is
    planned again and retried. ``only``: count just these run ids (``--fresh`` ignores records of earlier runs)."""
    layout = ResultsLayout(cfg.results_dir, cfg.name)
    columns: dict[tuple[str, str, str], dict[str, dict[int, float | None]]] = {}
    for cell in plan_cells(dataclasses.replace(cfg, seeds=list(range(cfg.seeds_max)))):
        runs = columns.setdefault((cell.arch, str(cell.bits), cell.policy), {}).setdefault(cell.method, {})
        record = load_result(layout.run_dir(cell.run_id)) if only is None or cell.run_id in only else None
        if record is not None and record.get("status") in FINISHED:
            value = record.get(AUTO_METRIC) if record["status"] == "complete" else None
            runs[cell.seed] = None if value is None else float(value)
    plans = {column: plan_seeds(runs, seeds_min=cfg.seeds_min, seeds_max=cfg.seeds_max)
             for column, runs in columns.items()}
    return {column: plan for column, plan in plans.items() if plan}


def _run_auto_seeds(cfg: SuiteConfig, **kwargs: Any) -> SuiteRun:
    """``seeds=auto``: seeds 0 … seeds_min − 1 everywhere, then round after round the seeds :func:`auto_seed_plan`
    asks for, until it asks for nothing new (a cell that failed, or that another process holds, is not retried in the
    same invocation). Rank 0 reads the records and every rank gets its plan, so a torchrun job runs the same cells
    on every rank."""
    log = kwargs["log"]
    fresh = not kwargs["resume"]
    outcome = run_suite(dataclasses.replace(cfg, seeds=list(range(cfg.seeds_min))), **kwargs)
    attempted = _attempted(outcome)
    while True:
        plan = broadcast_object(auto_seed_plan(cfg, attempted if fresh else None) if dist_env()[0] == 0 else None)
        calls: dict[tuple[str, str, str, tuple[int, ...]], list[str]] = {}
        for (arch, bits, policy), methods in plan.items():
            for method, seeds in methods.items():
                todo = tuple(s for s in seeds if Cell(method, arch, parse_bits(bits), policy, s, cfg.tuned).run_id
                             not in attempted)
                if todo:
                    calls.setdefault((arch, bits, policy, todo), []).append(method)
        if not calls:
            return outcome
        for (arch, bits, policy, seeds), methods in sorted(calls.items()):
            log(f"seeds=auto: {arch} {bits} [{policy}] is not separated yet: seed{'s' if len(seeds) > 1 else ''} "
                f"{', '.join(map(str, seeds))} for {', '.join(methods)}")
            narrowed = dataclasses.replace(cfg, methods=methods, bits=[bits], method_bits={}, policies=[policy],
                                           seeds=list(seeds), model=dataclasses.replace(cfg.model, archs=[arch]))
            step = run_suite(narrowed, **kwargs)
            attempted |= _attempted(step)
            outcome.add(step)


def _attempted(outcome: SuiteRun) -> set[str]:
    """The run ids this invocation ran, or left to another process: never planned twice in one invocation."""
    return {r["run_id"] for r in outcome.results} | set(outcome.failed) | set(outcome.locked)
