"""The trial loop: workers that run a study's trials until it has exactly ``tune.n_trials`` finished ones.

Workers
    ``tune.workers=N`` starts N worker processes on this machine; a ``qbench tune`` started with the same storage on
    another machine joins the same studies. A worker claims a trial only while fewer than n_trials trials are
    finished, running or queued, and waits (rather than leaves) while the last trials run elsewhere, so that a trial
    whose worker dies is still retried. Stopping (Ctrl-C) and re-running the same command resumes: completed trials
    are kept, an interrupted trial is re-queued with its parameters, and only the missing trials run.

Dead workers
    An RDB storage has heartbeats: Optuna fails the trial of a worker that stopped beating
    (``optuna.storages.fail_stale_trials``) and its retry callback re-queues it. A journal has none, so a running
    trial whose worker process on this machine is gone is failed here (``study.tell``) and re-queued through the same
    callback (:func:`qbench.tune.storage.retry_callback`), the next time a worker looks at the study.

Sampler and pruner
    TPE re-seeded from ``(tune.seed, trial number)`` for each trial (:class:`SeededTPESampler`), so one worker's
    sequence of suggestions is reproducible and concurrent workers do not repeat each other;
    ``n_startup_trials = clip(n_trials // 3, 2, 10)``; ``constant_liar`` with parallel workers. Pruners:
    ``hyperband`` (default; ``min_resource=1``, ``max_resource=tune.epochs``, reduction factor 3), ``median``
    (``n_startup_trials = clip(n_trials // 4, 1, 5)``, no warm-up steps) or ``none``; one report per epoch (step = the
    epoch number, 1-based). The objective is the validation top-1 after the trial's last epoch; a trial that diverges
    scores 0.0.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import torch
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from ..config import SuiteConfig, TuneConfig
from ..errors import ConfigError, QbenchError
from ..results import ResultsLayout
from ..run.device import resolve_device
from ..run.runner import cell_config, run_cell
from .space import (
    DEFAULTS_ATTR,
    META_ATTR,
    READY_ATTR,
    SURPLUS_ATTR,
    WORKER_ATTR,
    StudySpace,
    StudySpec,
    format_params,
    study_spaces,
)
from .storage import is_rdb, one_line, open_storage, retry_callback, storage_label, storage_url
from .summary import write_summary

__all__ = [
    "SeededTPESampler",
    "make_sampler",
    "make_pruner",
    "prepare_study",
    "load_study",
    "fail_stale_trials",
    "worker_gone",
    "Worker",
    "run_workers",
]

_HOST = socket.gethostname()
_POLL_S = 1.0
_MAX_CONSECUTIVE_FAILURES = 3
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# ------------------------------------------------------------------------------------------- sampler and pruner
class SeededTPESampler(BaseSampler):
    """Optuna's TPE, re-seeded from (seed, trial number) for every trial: a fresh ``TPESampler`` seeded from the pair
    answers every call about that trial."""

    def __init__(self, seed: int, **tpe_options: Any):
        self.seed, self.tpe_options = int(seed), tpe_options
        self._per_trial: dict[int, TPESampler] = {}

    def _tpe(self, trial: FrozenTrial) -> TPESampler:
        if trial.number not in self._per_trial:
            seed = (self.seed * 1_000_003 + trial.number * 7919 + 17) % 2**32
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # constant_liar
                self._per_trial[trial.number] = TPESampler(seed=seed, **self.tpe_options)
        return self._per_trial[trial.number]

    def before_trial(self, study, trial: FrozenTrial) -> None:
        self._tpe(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study, trial: FrozenTrial) -> dict:
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict) -> dict:
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial: FrozenTrial, param_name: str, param_distribution) -> Any:
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._tpe(trial).after_trial(study, trial, state, values)
        del self._per_trial[trial.number]


def make_sampler(tune: TuneConfig, parallel: bool) -> SeededTPESampler:
    n = int(tune.n_trials)
    return SeededTPESampler(int(tune.seed), n_startup_trials=max(2, min(10, n // 3)), constant_liar=parallel)


def make_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, int(tune.epochs)),
                                              reduction_factor=3)
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, int(tune.n_trials) // 4)),
                                           n_warmup_steps=0)
    return optuna.pruners.NopPruner()  # "none" (qbench.config checks the value)


# ------------------------------------------------------------------------------------------------ the studies
def load_study(cfg: SuiteConfig, spec: StudySpec, storage, *, parallel: bool = False) -> optuna.Study:
    return optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(cfg.tune, parallel),
                             pruner=make_pruner(cfg.tune))


def _check_meta(study: optuna.Study, meta: dict, spec: StudySpec, label: str) -> None:
    old = study.user_attrs.get(META_ATTR)
    if not old:
        return
    for key in ("epochs", "seed_for_trials", "recipe_space"):
        if old.get(key) != meta.get(key):
            raise ConfigError(
                f"study '{spec.name}' in {label} was tuned with {key}={old.get(key)} (now {meta.get(key)}); keep "
                f"it so every trial has the same budget, or tune into another results_dir/tune.storage")


def prepare_study(cfg: SuiteConfig, spec: StudySpec, space: StudySpace, storage, *, log: Callable[[str], None],
                  parallel: bool) -> optuna.Study:
    """Create the study (or load it) and enqueue the defaults as trial 0 exactly once, even with several workers on
    several machines starting at once: only the process that created the study enqueues; the others wait for it."""
    meta = space.meta(cfg)
    kwargs = dict(study_name=spec.name, storage=storage, sampler=make_sampler(cfg.tune, parallel),
                  pruner=make_pruner(cfg.tune))
    try:
        study = optuna.create_study(direction="maximize", load_if_exists=False, **kwargs)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kwargs)
        created = False
    _check_meta(study, meta, spec, storage_label(cfg))
    if not created and not study.user_attrs.get(READY_ATTR):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not study.user_attrs.get(READY_ATTR):
            time.sleep(_POLL_S)
    if not study.user_attrs.get(READY_ATTR):
        # We created it, or its creator died before enqueueing: enqueue unless a defaults trial exists.
        if not any(t.user_attrs.get(DEFAULTS_ATTR) for t in study.get_trials(deepcopy=False)):
            params, notes = space.defaults()
            for note in notes:
                log(f"{spec.name}: {note}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a default outside the searched range is enqueued as it is
                study.enqueue_trial(params, user_attrs={DEFAULTS_ATTR: True})
        study.set_user_attr(META_ATTR, meta)
        study.set_user_attr(READY_ATTR, True)
    return study


# ------------------------------------------------------------------------------------------------ dead workers
def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that its parent has not reaped yet is a zombie: dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _worker_of(trial: FrozenTrial) -> dict | None:
    """The identity of the worker running a trial; None while it is being claimed. A retried trial starts with the
    identity of the trial it retries (Optuna's retry copies the user attributes), which names another trial."""
    worker = trial.user_attrs.get(WORKER_ATTR)
    if not worker or worker.get("trial", trial.number) != trial.number:
        return None
    return worker


def worker_gone(trial: FrozenTrial) -> bool:
    """Whether a running trial's worker was another process on this machine that no longer exists."""
    worker = _worker_of(trial)
    return (worker is not None and worker.get("host") == _HOST and worker.get("pid") != os.getpid()
            and not _pid_alive(worker.get("pid")))


def fail_stale_trials(study: optuna.Study, *, heartbeat: bool, retry: Callable) -> None:
    """Fail (and re-queue) the running trials whose worker is gone: by heartbeat on an RDB storage, by process id on
    this machine with a journal."""
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not worker_gone(trial):
            continue
        try:
            failed = study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, UpdateFinishedTrialError):
            continue  # another worker failed it first, and re-queues it
        retry(study, failed)


def _watchable(running: list[FrozenTrial], heartbeat: bool) -> bool:
    """Whether a worker with nothing left to claim should wait for these running trials (to retry them if their
    worker dies) rather than leave: always with heartbeats; with a journal when their workers run on this machine."""
    if heartbeat:
        return True
    for trial in running:
        worker = _worker_of(trial)
        if worker is None:  # just claimed; its worker writes its identity right away
            start = trial.datetime_start
            if start is None or (datetime.now(start.tzinfo) - start).total_seconds() < 60:
                return True
        elif worker.get("host") == _HOST and _pid_alive(worker.get("pid")):
            return True
    return False


def _trial_tag(trial: FrozenTrial) -> str:
    """`` [defaults; retry 1 of trial 2]`` for the log line of a trial."""
    tags = ["defaults"] if trial.user_attrs.get(DEFAULTS_ATTR) else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        original = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
        history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)
    if original is not None:
        tags.append(f"retry {len(history)} of trial {original}")
    return f" [{'; '.join(tags)}]" if tags else ""


# ---------------------------------------------------------------------------------------------------- the loop
class _Surplus(Exception):
    """A trial claimed while n_trials others were already finished, running or queued (a race between workers)."""


@dataclass
class Worker:
    cfg: SuiteConfig
    index: int = 0
    n_workers: int = 1
    progress: bool = True
    log: Callable[[str], None] = print
    current_trial: int | None = None
    heartbeat: bool = field(init=False)  # the storage fails dead workers' trials itself (RDB)
    retry: Callable = field(init=False)

    def __post_init__(self) -> None:
        self.heartbeat = is_rdb(storage_url(self.cfg))
        self.retry = retry_callback(self.cfg)

    def say(self, message: str) -> None:
        prefix = f"[w{self.index}] " if self.n_workers > 1 else ""
        self.log(f"{prefix}{message}")

    # ---- the studies
    def run_studies(self, studies: list[tuple[optuna.Study, StudySpec, StudySpace]],
                    on_done: Callable | None = None) -> None:
        """Each study in turn; a study whose last trials run in other workers is left for later (so this worker
        starts on the next study) and waited for at the end (so a trial whose worker dies is still retried)."""
        pending = []
        for study, spec, space in studies:
            if self.run_study(study, spec, space, wait=False) == "pending":
                pending.append((study, spec, space))
            elif on_done is not None:
                on_done(study, spec)
        for study, spec, space in pending:
            self.run_study(study, spec, space, wait=True)
            if on_done is not None:
                on_done(study, spec)

    def run_study(self, study: optuna.Study, spec: StudySpec, space: StudySpace, *, wait: bool = True) -> str:
        """Run trials until the study has n_trials finished ones; "done", "pending" (wait=False and only other
        workers' trials are left), "timeout" or "left" (the running trials cannot be watched from here)."""
        cfg = self.cfg
        n_trials, timeout = int(cfg.tune.n_trials), cfg.tune.timeout
        t0, failures, waiting_said = time.monotonic(), 0, False
        while True:
            fail_stale_trials(study, heartbeat=self.heartbeat, retry=self.retry)
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state in _FINISHED for t in trials)
            if done >= n_trials:
                return "done"
            if timeout and time.monotonic() - t0 > float(timeout):
                self.say(f"{spec.name}: tune.timeout={timeout} s reached with {done}/{n_trials} trials; re-run to "
                         f"go on")
                return "timeout"
            running = [t for t in trials if t.state == TrialState.RUNNING]
            queued = any(t.state == TrialState.WAITING for t in trials)
            if not queued and done + len(running) >= n_trials:
                if not _watchable(running, self.heartbeat):
                    return "left"
                if not wait:
                    return "pending"
                if not waiting_said:
                    self.say(f"{spec.name}: the last {len(running)} trial(s) run elsewhere; waiting for them")
                    waiting_said = True
                time.sleep(_POLL_S)
                continue
            try:
                study.optimize(lambda trial: self.objective(trial, spec, space), n_trials=1, gc_after_trial=False,
                               show_progress_bar=False)
            except _Surplus:
                continue
            except KeyboardInterrupt:
                self._requeue_interrupted(study)
                raise
            except QbenchError:
                raise
            except Exception as exc:  # noqa: BLE001 - a trial that raises is FAIL; give up after a few in a row
                failures += 1
                self.say(f"{spec.name}: trial {self.current_trial} failed: {one_line(exc)}")
                if failures >= _MAX_CONSECUTIVE_FAILURES:
                    raise QbenchError(f"{spec.name}: {failures} trials in a row failed, the last with "
                                      f"{type(exc).__name__}: {one_line(exc)}; fix it and re-run to resume") from exc
            else:
                failures = 0
            finally:
                self.current_trial = None

    def _requeue_interrupted(self, study: optuna.Study) -> None:
        if self.current_trial is None:
            return
        try:
            for trial in study.get_trials(deepcopy=True, states=(TrialState.FAIL,)):
                if trial.number == self.current_trial and not trial.user_attrs.get(SURPLUS_ATTR):
                    self.retry(study, trial)
                    self.say(f"interrupted: trial {trial.number} is queued again and runs first on resume")
        except Exception:  # noqa: BLE001 - best effort while stopping
            pass

    # ---- one trial
    def objective(self, trial: optuna.Trial, spec: StudySpec, space: StudySpace) -> float:
        cfg = self.cfg
        self.current_trial = trial.number
        n_trials = int(cfg.tune.n_trials)
        trials = trial.study.get_trials(deepcopy=False)
        used = sum(t.number < trial.number and t.state in (*_FINISHED, TrialState.RUNNING, TrialState.WAITING)
                   for t in trials)
        if used >= n_trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise _Surplus(f"trial {trial.number}: {n_trials} trials are already finished, running or queued")
        trial.set_user_attr(WORKER_ATTR, {"host": _HOST, "pid": os.getpid(), "trial": trial.number})
        overrides = {"train.epochs": int(cfg.tune.epochs), **space.suggest(trial)}
        cell = spec.cell(int(cfg.tune.seed_for_trials))
        trial_cfg = cell_config(cfg, cell, overrides)
        device = resolve_device(trial_cfg.train.device)
        trial.set_user_attr("device", device.type)
        run_dir = ResultsLayout(cfg.results_dir, cfg.name).trial_dir(spec.slug, trial.number)
        shown = format_params(trial.params) or "(no parameters)"
        tag = _trial_tag(next(t for t in trials if t.number == trial.number))

        def report(epoch: int, row: dict) -> None:
            value = float(row["val_top1"])
            trial.report(value, int(row["epoch"]))
            # Never prune after the last epoch: the trial has cost its whole budget and its value counts.
            if int(row["epoch"]) < int(cfg.tune.epochs) and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {row['epoch']} at val top-1 {value:.2f}%")

        t0 = time.perf_counter()
        try:
            result = run_cell(trial_cfg, cell, run_dir, resume=False, progress=self.progress and self.n_workers == 1,
                              epoch_callback=report, evaluate_test=False, log=self.say)
        except optuna.TrialPruned as exc:
            self.say(f"{spec.name} trial {trial.number}{tag}: {shown} → {exc} ({time.perf_counter() - t0:.1f} s)")
            raise
        finally:
            trial.set_user_attr("wall_time_s", time.perf_counter() - t0)
            (run_dir / "checkpoint.pt").unlink(missing_ok=True)
        trial.set_user_attr("device_name", result.get("device_name"))
        if result["status"] == "diverged":
            trial.set_user_attr("diverged", str(result.get("error")))
            self.say(f"{spec.name} trial {trial.number}{tag}: {shown} → diverged, scored 0.0")
            return 0.0
        value = float(result["val_top1"])
        self.say(f"{spec.name} trial {trial.number}{tag}: {shown} → val top-1 {value:.2f}% "
                 f"({time.perf_counter() - t0:.1f} s)")
        return value


# ---------------------------------------------------------------------------------------------- worker processes
def run_workers(cfg: SuiteConfig, specs: list[StudySpec], n_workers: int, progress: bool,
                log: Callable[[str], None]) -> None:
    """Run the studies in ``n_workers`` spawned processes on this machine and wait for them."""
    ctx = multiprocessing.get_context("spawn")
    names = [dataclasses.asdict(s) for s in specs]
    procs = [ctx.Process(target=_worker_main, args=(cfg, names, i, n_workers, progress), name=f"qbench-tune-w{i}")
             for i in range(n_workers)]
    log(f"starting {n_workers} worker processes")
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:  # they got the same SIGINT; give them a moment to re-queue their trials
            p.join(timeout=10)
        raise
    bad = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode != 0]
    if bad:
        codes = ", ".join(f"w{i}: {code}" for i, code in bad)
        raise QbenchError(f"{len(bad)} of {n_workers} tuning workers failed ({codes}); see their messages above, "
                          f"then re-run the same command to resume")


def _worker_main(cfg: SuiteConfig, spec_dicts: list[dict], index: int, n_workers: int, progress: bool) -> None:
    """Entry of a worker process (spawned): tune the given studies until each has n_trials finished trials."""

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
        spaces = study_spaces(cfg)
        storage = open_storage(cfg, log=log)
        worker = Worker(cfg, index, n_workers, progress, log)
        wanted = [StudySpec(**d) for d in spec_dicts]
        worker.run_studies([(load_study(cfg, spec, storage, parallel=True), spec, spaces[spec]) for spec in wanted],
                           on_done=lambda study, spec: write_summary(cfg, spec, study))
    except KeyboardInterrupt:
        sys.exit(130)
    except QbenchError as exc:
        print(f"qbench: error: [w{index}] {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
