"""``qbench tune``: equal-budget Optuna tuning of every method of a suite, and the tuned parameters for ``qbench run``.

One study per (suite, method, arch, bits, policy), named ``<suite>/<method>/<arch>/<bits>/<policy>`` (e.g.
``quickstart/bcgd/lenet5/W1A4/fp``). Its search space is the method's own (``Method.search_space(trial)``, from the
plugin) plus the shared recipe keys the suite opens in ``tune.recipe_space``. Every method gets the same budget: the
suite's ``tune.n_trials`` finished (complete or pruned) trials of ``tune.epochs`` epochs each, with the same pruner
and a seeded TPE sampler. The objective is the **validation** top-1 after the trial's last epoch (the test split is
never read); a trial that diverges scores 0.0, the worst accuracy. Trial 0 of every study is the method's defaults
(the suite's values of the recipe keys and the suite's ``method_hparams`` over the plugin's defaults).

Storage
    ``tune.storage`` unset: one journal file for all the suite's studies, ``<results_dir>/<suite>/tuning/journal.log``
    (several processes on one machine append to it safely). ``tune.storage=postgresql://user:pw@host/db`` (or
    ``mysql://``, ``sqlite:///``): an RDB storage shared by workers on many machines, with heartbeats
    (``tune.heartbeat_interval``, ``tune.grace_period``); the trial of a worker that died is failed and re-queued with
    the same parameters (at most ``tune.max_retry`` times). With the journal, a trial whose worker process on this
    machine is gone is failed and re-queued the same way the next time a worker looks at the study. Any other value is
    the path of a journal file.

Workers
    ``tune.workers=N`` starts N worker processes on this machine; a ``qbench tune`` started with the same storage on
    another machine joins the same studies. Workers keep going until the study has exactly ``tune.n_trials`` finished
    trials: a worker claims a trial only while fewer than n_trials trials are finished, running or queued, and waits
    (rather than leaves) while the last trials run elsewhere, so that a trial whose worker dies is still retried.
    Stopping (Ctrl-C) and re-running the same command resumes: completed trials are kept, an interrupted trial is
    re-queued with its parameters, and only the missing trials run.

Per trial: ``<results_dir>/<suite>/tuning/<slug>/trial_<number>/`` holds its config.yaml and metrics.jsonl (deeper than
the suite's run directories, so the leaderboard never reads them). After each study a summary is written to
``<results_dir>/<suite>/tuning/<slug>.json`` (see :func:`study_summary`). ``qbench run suite=S tuned=true`` trains each
cell with its study's best parameters on the suite's full schedule (:func:`tuned_overrides`).

``tune.recipe_space`` format (dotted recipe key → one of)::

    train.lr: [0.005, 0.2, log]            # float range, log scale
    train.momentum: [0.8, 0.99, linear]    # float range, linear scale
    data.batch_size: [32, 256, log]        # both ends integers: an integer range
    train.optimizer: [sgd, adamw]          # any other list: categorical choices
    train.weight_decay: {choices: [0.0, 1e-4]}   # explicit choices (needed for two numbers)
    train.gamma: {low: 0.05, high: 0.5, log: true}

Sampler: TPE seeded per trial from ``(tune.seed, trial number)``, so one worker's sequence of suggestions is
reproducible and concurrent workers do not repeat each other; ``n_startup_trials = clip(n_trials // 3, 2, 10)``;
``constant_liar`` with parallel workers. Pruners: ``hyperband`` (default; ``min_resource=1``,
``max_resource=tune.epochs``, reduction factor 3), ``median`` (``n_startup_trials = clip(n_trials // 4, 1, 5)``, no
warm-up steps) or ``none``; one report per epoch (step = the epoch number, 1-based).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..bits import parse_bits
from ..config import SuiteConfig, get_value, parse_shard, recipe_dims, to_dict
from ..errors import ConfigError, QbenchError
from ..registry import create_method, load_plugin, parse_method_spec
from ..results import ResultsLayout, atomic_write_json
from ..run.device import resolve_device
from ..run.runner import Cell, cell_config, load_splits, plan_cells, run_cell

__all__ = [
    "tune_suite",
    "tuned_overrides",
    "StudySpec",
    "study_specs",
    "open_storage",
    "storage_label",
    "journal_path",
    "mask_url",
    "study_summary",
    "summary_path",
]

WORKER_ATTR = "qbench_worker"  # user attr of a running trial: {"host", "pid"}
DEFAULTS_ATTR = "qbench_defaults"  # user attr of the enqueued defaults trial
META_ATTR = "qbench"  # study user attr: the budget the study was run with
READY_ATTR = "qbench_ready"  # study user attr: the defaults are enqueued
SURPLUS_ATTR = "qbench_surplus"  # user attr of a trial claimed beyond n_trials by a race (failed, not run)
_HOST = socket.gethostname()
_POLL_S = 1.0
_MAX_CONSECUTIVE_FAILURES = 3



# ---------------------------------------------------------------------------------------------------- studies
@dataclass(frozen=True)
class StudySpec:
    suite: str
    method: str  # as in the suite, possibly a variant "ste:estimator=identity"
    arch: str
    bits: str
    policy: str

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.method}/{self.arch}/{self.bits}/{self.policy}"

    @property
    def slug(self) -> str:
        label = self.method.replace(":", "-").replace(",", "-").replace("/", "_")
        return f"{label}_{self.arch}_{self.bits}_{self.policy}"

    def cell(self, seed: int) -> Cell:
        return Cell(self.method, self.arch, parse_bits(self.bits), self.policy, int(seed), False)


def study_specs(cfg) -> list[StudySpec]:
    """One study per (method, arch, bits, policy) of the suite, in the suite's order (seeds collapse: every trial
    trains with ``tune.seed_for_trials``). ``shard=i/n`` keeps a deterministic 1/n of the studies."""
    import hashlib

    unsharded = copy.deepcopy(cfg)
    unsharded.shard = None
    specs: list[StudySpec] = []
    for cell in plan_cells(unsharded):
        spec = StudySpec(str(cfg.name), cell.method, cell.arch, str(cell.bits), cell.policy)
        if spec not in specs:
            specs.append(spec)
    if cfg.shard:
        i, n = parse_shard(cfg.shard)
        specs = [s for s in specs if int(hashlib.sha1(s.name.encode()).hexdigest(), 16) % n == i]
    return specs


def summary_path(cfg, spec: StudySpec) -> Path:
    return ResultsLayout(cfg.results_dir, cfg.name).study_summary_path(spec.slug)


def tuning_dir(cfg) -> Path:
    return ResultsLayout(cfg.results_dir, cfg.name).tuning_dir


def journal_path(cfg) -> Path:
    return ResultsLayout(cfg.results_dir, cfg.name).journal_path


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ------------------------------------------------------------------------------------------------- method space
class _RecordingTrial:
    """Stands in for an Optuna trial to find which parameters a method's search space suggests, answering with the
    method's configured values (its defaults in this suite)."""

    number = 0

    def __init__(self, values: dict, fixed: dict):
        self._values, self._fixed = values, fixed
        self.suggested: dict[str, str] = {}

    def __getattr__(self, attr):
        if attr.startswith("suggest_"):
            def suggest(name, *args, **kwargs):
                if name in self._fixed:
                    return self._fixed[name]
                self.suggested[name] = attr
                return self._values.get(name)
            return suggest
        raise AttributeError(f"a search space may only call trial.suggest_*; it used trial.{attr}")


class _VariantTrial:
    """The real trial, except that the hyperparameters a method variant pins (``ste:estimator=identity``) are
    returned as pinned instead of being suggested."""

    def __init__(self, trial, fixed: dict):
        self._trial, self._fixed = trial, fixed

    def __getattr__(self, attr):
        target = getattr(self._trial, attr)
        if attr.startswith("suggest_") and self._fixed:
            def suggest(name, *args, **kwargs):
                return self._fixed[name] if name in self._fixed else target(name, *args, **kwargs)
            return suggest
        return target


@dataclass
class _Space:
    base: str  # registered method name
    method: Any  # instance with the suite's hyperparameters (its search_space may read self.hp)
    fixed: dict  # pinned by the variant spec
    method_params: dict  # name → the configured (default) value
    recipe: list  # [SearchDim]
    recipe_defaults: dict  # dotted key → the suite's value

    @property
    def empty(self) -> bool:
        return not self.method_params and not self.recipe

    def defaults(self) -> tuple[dict, list[str]]:
        """(the trial-0 parameters, notes on parameters that cannot be enqueued)."""
        params, notes = {}, []
        for name, value in self.method_params.items():
            if value is None:
                notes.append(f"{name} has no default value (None); trial 0 samples it")
            else:
                params[name] = value
        for dim in self.recipe:
            value = self.recipe_defaults[dim.key]
            if dim.kind == "categorical" and value not in dim.choices:
                notes.append(f"{dim.key}={value!r} is not among its choices; trial 0 samples it")
            elif dim.kind != "categorical" and not _is_number(value):
                notes.append(f"{dim.key}={value!r} is not a number; trial 0 samples it")
            else:
                params[dim.key] = value
        return params, notes


def _method_space(cfg, spec: StudySpec, recipe: list) -> _Space:
    base, hparams = parse_method_spec(spec.method, to_dict(cfg).get("method_hparams"))
    _, inline = parse_method_spec(spec.method, None)
    method = create_method(base, **hparams)
    recorder = _RecordingTrial(dict(method.config), dict(inline))
    method.search_space(recorder)
    unknown = sorted(set(recorder.suggested) - set(method.config))
    if unknown:
        raise ConfigError(f"method '{base}' search space suggests {', '.join(repr(u) for u in unknown)}, not among its "
                          f"hyperparameters; valid: {', '.join(sorted(method.config)) or '(none)'}")
    method_params = {name: method.config[name] for name in recorder.suggested}
    recipe_defaults = {d.key: get_value(cfg, d.key) for d in recipe}
    return _Space(base, method, dict(inline), method_params, recipe, recipe_defaults)


def _overrides_from_params(params: dict, base: str) -> dict[str, Any]:
    """Optuna parameters → dotted config keys: recipe keys as they are, the method's under method_hparams.<base>."""
    out = {}
    for name, value in params.items():
        if "." in name:
            if name != "train.epochs":  # the full schedule is the suite's
                out[name] = value
        else:
            out[f"method_hparams.{base}.{name}"] = value
    return out


# ------------------------------------------------------------------------------------------------------ storage
def mask_url(url: str) -> str:
    """The storage URL with its password replaced by ***."""
    return re.sub(r"^([A-Za-z][\w+.-]*://[^:/?#@]*):[^@/]*@", r"\1:***@", str(url))


def storage_label(cfg) -> str:
    return mask_url(cfg.tune.storage) if cfg.tune.storage else str(journal_path(cfg))


_RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite", "mariadb", "oracle", "mssql")


def open_storage(cfg, *, must_exist: bool = False):
    """The Optuna storage of a suite's studies (see the module doc). A URL that cannot connect raises one line with
    the password masked."""
    import optuna

    url = cfg.tune.storage
    if url and "://" in str(url):
        scheme = str(url).split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in _RDB_SCHEMES:
            raise ConfigError(f"unsupported tune.storage scheme '{scheme}://' in {mask_url(url)}; use a journal file "
                              f"path, postgresql://user:password@host:port/db, mysql://… or sqlite:///path.db")
        return _open_rdb(cfg, _with_driver(str(url)), shown=mask_url(url))
    path = Path(url) if url else journal_path(cfg)
    if must_exist and not path.is_file():
        raise QbenchError(f"no tuning journal at {path}; run `qbench tune suite={cfg.name}` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # optuna < 4
        from optuna.storages import JournalFileStorage as JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _with_driver(url: str) -> str:
    """``postgres://`` and a bare ``postgresql://`` → the PostgreSQL driver that is installed (SQLAlchemy ≥ 2.1
    picks psycopg 3 for a bare URL; qbench's ``postgres`` extra installs psycopg2-binary)."""
    import importlib.util

    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        if importlib.util.find_spec("psycopg") is not None:
            return f"postgresql+psycopg://{rest}"
        if importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


def _open_rdb(cfg, url: str, *, shown: str | None = None):
    import optuna

    masked = shown or mask_url(url)
    t = cfg.tune
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the heartbeat is "experimental"
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=int(t.heartbeat_interval),
                grace_period=int(t.grace_period) if t.grace_period else None,
                heartbeat_stale_trial_callback=_RetryTrial(int(t.max_retry)))
    except ImportError:
        raise QbenchError(f"tune.storage {masked} needs a database driver: pip install psycopg2-binary "
                          f"(or qbench-bench[postgres])") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of every kind: one line
        raise QbenchError(f"cannot connect to tune.storage {masked}: {_one_line(exc, url)}") from None
    return storage


def _one_line(exc: BaseException, url: str = "") -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    text = re.sub(r"\(Background on this error at: [^)]*\)", "", text).strip()
    password = re.match(r"^[A-Za-z][\w+.-]*://[^:/?#@]*:([^@/]*)@", url or "")
    if password and password.group(1):
        text = text.replace(password.group(1), "***")
    return text[:300]


class _RetryTrial:
    """Re-queue a trial whose worker died with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback, minus
    the dead worker's identity), at most ``max_retry`` times per original trial."""

    def __init__(self, max_retry: int):
        self.max_retry = max_retry

    def __call__(self, study, trial) -> None:
        import optuna

        history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
        if len(history) > self.max_retry:
            return
        system_attrs = {**trial.system_attrs, "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                        "retry_history": history}
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in (WORKER_ATTR, "device", "device_name")}
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs=user_attrs, system_attrs=system_attrs))


def _heartbeat_enabled(study) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


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


def _fail_stale(study, retry: _RetryTrial) -> None:
    """Fail (and re-queue) the running trials whose worker is gone: by heartbeat on an RDB storage, by process id on
    this machine with a journal."""
    import optuna
    from optuna.trial import TrialState

    if _heartbeat_enabled(study):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
        return
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR) or {}
        if worker.get("host") != _HOST or worker.get("pid") == os.getpid() or _pid_alive(worker.get("pid")):
            continue
        try:
            failed = study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        if failed:
            retry(study, copy.deepcopy(study._storage.get_trial(trial._trial_id)))


def _watchable(study, running: list) -> bool:
    """Whether a worker with nothing left to claim should wait for these running trials (to retry them if their
    worker dies) rather than leave: always with heartbeats; with a journal when their workers run on this machine."""
    if _heartbeat_enabled(study):
        return True
    for trial in running:
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None:  # just claimed; its worker writes its identity right away
            start = trial.datetime_start
            if start is None or (datetime.now(start.tzinfo) - start).total_seconds() < 60:
                return True
        elif worker.get("host") == _HOST and _pid_alive(worker.get("pid")):
            return True
    return False


# ------------------------------------------------------------------------------------------- sampler and pruner
def _sampler(cfg, parallel: bool):
    import optuna

    class SeededTPESampler(optuna.samplers.TPESampler):
        """TPE whose random state is re-seeded from (tune.seed, trial number) before each trial."""

        def __init__(self, seed: int, **kwargs):
            super().__init__(seed=seed, **kwargs)
            self._qbench_seed = int(seed)

        def before_trial(self, study, trial):
            state = (self._qbench_seed * 1_000_003 + trial.number * 7919 + 17) % 2**32
            for rng_owner in (self, getattr(self, "_random_sampler", None)):
                lazy = getattr(rng_owner, "_rng", None)
                if lazy is not None and hasattr(lazy, "rng"):
                    lazy.rng.seed(state)
            super().before_trial(study, trial)

    n = int(cfg.tune.n_trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant_liar is "experimental"
        return SeededTPESampler(int(cfg.tune.seed), n_startup_trials=max(2, min(10, n // 3)), constant_liar=parallel)


def _pruner(cfg):
    import optuna

    kind = str(cfg.tune.pruner)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, int(cfg.tune.epochs)),
                                              reduction_factor=3)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, int(cfg.tune.n_trials) // 4)),
                                           n_warmup_steps=0)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown tune.pruner '{kind}'; choose hyperband, median or none")


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------------------------------ preparation
def _meta(cfg, space: _Space) -> dict:
    return {"epochs": int(cfg.tune.epochs), "seed_for_trials": int(cfg.tune.seed_for_trials),
            "recipe_space": [d.describe() for d in space.recipe],
            "method_space": sorted(space.method_params), "qbench_budget": "equal per method"}


def _check_meta(study, meta: dict, spec: StudySpec, label: str) -> None:
    old = study.user_attrs.get(META_ATTR)
    if not old:
        return
    for key in ("epochs", "seed_for_trials", "recipe_space"):
        if old.get(key) != meta.get(key):
            raise ConfigError(
                f"study '{spec.name}' in {label} was tuned with {key}={old.get(key)} (now {meta.get(key)}); keep "
                f"it so every trial has the same budget, or tune into another results_dir/tune.storage")


def _prepare_study(cfg, spec: StudySpec, space: _Space, storage, *, log, parallel: bool):
    """Create the study (or load it) and enqueue the defaults as trial 0 exactly once, even with several workers on
    several machines starting at once: only the process that created the study enqueues; the others wait for it."""
    import optuna

    meta = _meta(cfg, space)
    kwargs = dict(study_name=spec.name, storage=storage, sampler=_sampler(cfg, parallel), pruner=_pruner(cfg))
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


# ---------------------------------------------------------------------------------------------------- the loop
class _Surplus(Exception):
    """A trial claimed while n_trials others were already finished, running or queued (a race between workers)."""


@dataclass
class _Worker:
    cfg: Any
    index: int = 0
    n_workers: int = 1
    progress: bool = True
    log: Callable[[str], None] = print
    current_trial: int | None = None

    def say(self, message: str) -> None:
        prefix = f"[w{self.index}] " if self.n_workers > 1 else ""
        self.log(f"{prefix}{message}")

    # ---- one study
    def run_studies(self, studies: list[tuple[Any, StudySpec, _Space]], on_done: Callable | None = None) -> None:
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

    def run_study(self, study, spec: StudySpec, space: _Space, *, wait: bool = True) -> str:
        """Run trials until the study has n_trials finished ones; "done", "pending" (wait=False and only other
        workers' trials are left), "timeout" or "left" (the running trials cannot be watched from here)."""
        from optuna.trial import TrialState

        cfg = self.cfg
        n_trials, timeout = int(cfg.tune.n_trials), cfg.tune.timeout
        retry = _RetryTrial(int(cfg.tune.max_retry))
        t0, failures, waiting_said = time.monotonic(), 0, False
        while True:
            _fail_stale(study, retry)
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            if done >= n_trials:
                return "done"
            if timeout and time.monotonic() - t0 > float(timeout):
                self.say(f"{spec.name}: tune.timeout={timeout} s reached with {done}/{n_trials} trials; re-run to "
                         f"go on")
                return "timeout"
            running = [t for t in trials if t.state == TrialState.RUNNING]
            queued = any(t.state == TrialState.WAITING for t in trials)
            if not queued and done + len(running) >= n_trials:
                if not _watchable(study, running):
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
                self._requeue_interrupted(study, retry)
                raise
            except QbenchError:
                raise
            except Exception as exc:  # noqa: BLE001 - a trial that raises is FAIL; give up after a few in a row
                failures += 1
                self.say(f"{spec.name}: trial {self.current_trial} failed: {_one_line(exc)}")
                if failures >= _MAX_CONSECUTIVE_FAILURES:
                    raise QbenchError(f"{spec.name}: {failures} trials in a row failed, the last with "
                                      f"{type(exc).__name__}: {_one_line(exc)}; fix it and re-run to resume") from exc
            else:
                failures = 0
            finally:
                self.current_trial = None

    def _requeue_interrupted(self, study, retry: _RetryTrial) -> None:
        from optuna.trial import TrialState

        if self.current_trial is None:
            return
        try:
            for trial in study.get_trials(deepcopy=True, states=(TrialState.FAIL,)):
                if trial.number == self.current_trial and not trial.user_attrs.get(SURPLUS_ATTR):
                    retry(study, trial)
                    self.say(f"interrupted: trial {trial.number} is queued again and runs first on resume")
        except Exception:  # noqa: BLE001 - best effort while stopping
            pass

    # ---- one trial
    def objective(self, trial, spec: StudySpec, space: _Space) -> float:
        import optuna
        from optuna.trial import TrialState

        cfg = self.cfg
        self.current_trial = trial.number
        n_trials = int(cfg.tune.n_trials)
        used = sum(t.number < trial.number and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                           TrialState.WAITING)
                   for t in trial.study.get_trials(deepcopy=False))
        if used >= n_trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise _Surplus(f"trial {trial.number}: {n_trials} trials are already finished, running or queued")
        trial.set_user_attr(WORKER_ATTR, {"host": _HOST, "pid": os.getpid()})
        extra: dict[str, Any] = {"train.epochs": int(cfg.tune.epochs)}
        for dim in space.recipe:
            extra[dim.key] = dim.suggest(trial)
        sampled = space.method.search_space(_VariantTrial(trial, space.fixed))
        for name, value in sampled.items():
            if name not in space.fixed:
                extra[f"method_hparams.{space.base}.{name}"] = value
        cell = spec.cell(int(cfg.tune.seed_for_trials))
        trial_cfg = cell_config(cfg, cell, extra)
        device = resolve_device(trial_cfg.train.device)
        trial.set_user_attr("device", device.type)
        run_dir = tuning_dir(cfg) / spec.slug / f"trial_{trial.number}"
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items()) or "(no parameters)"
        tag = " [defaults]" if trial.user_attrs.get(DEFAULTS_ATTR) else ""

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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# -------------------------------------------------------------------------------------------------- summaries
def study_summary(cfg, spec: StudySpec, study, space: _Space | None = None) -> dict:
    """What a study cost and found; written to ``<results_dir>/<suite>/tuning/<slug>.json``."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s: 0 for s in ("complete", "pruned", "failed", "running", "waiting")}
    hours = {"cpu": 0.0, "gpu": 0.0}
    devices: dict[str, int] = {}
    for t in trials:
        if t.user_attrs.get(SURPLUS_ATTR):
            continue
        key = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
               TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[t.state]
        count[key] += 1
        if t.duration is not None:
            hours["gpu" if t.user_attrs.get("device") == "cuda" else "cpu"] += t.duration.total_seconds() / 3600
        if t.user_attrs.get("device_name"):
            devices[t.user_attrs["device_name"]] = devices.get(t.user_attrs["device_name"], 0) + 1
    base = spec.method.partition(":")[0]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    default = next((t for t in trials if t.user_attrs.get(DEFAULTS_ATTR) and t.state.is_finished()
                    and t.state != TrialState.FAIL), None)
    default_value = None
    if default is not None:
        default_value = default.value if default.state == TrialState.COMPLETE else None
    meta = study.user_attrs.get(META_ATTR) or {}
    return {
        "study": spec.name, "suite": spec.suite, "method": spec.method, "arch": spec.arch, "bits": spec.bits,
        "policy": spec.policy, "storage": storage_label(cfg),
        "n_trials": int(cfg.tune.n_trials), "epochs_per_trial": int(cfg.tune.epochs),
        "pruner": str(cfg.tune.pruner), "sampler_seed": int(cfg.tune.seed),
        "trials_complete": count["complete"], "trials_pruned": count["pruned"], "trials_failed": count["failed"],
        "trials_running": count["running"], "trials_waiting": count["waiting"],
        "trials_finished": count["complete"] + count["pruned"],
        "trial_hours": hours["cpu"] + hours["gpu"], "cpu_hours": hours["cpu"], "gpu_hours": hours["gpu"],
        "device": max(devices, key=devices.get) if devices else None,
        "search_space": (meta.get("method_space", []) + meta.get("recipe_space", [])),
        "method_search_space": bool(meta.get("method_space")),
        "best_trial": best.number if best else None, "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else None,
        "best_overrides": _overrides_from_params(best.params, base) if best else None,
        "default_trial": default.number if default else None,
        "default_state": default.state.name.lower() if default else None,
        "default_value": default_value, "default_params": dict(default.params) if default else None,
        "objective": "val_top1 after the trial's last epoch (validation split; diverged = 0.0)",
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _write_summary(cfg, spec: StudySpec, study) -> dict:
    summary = study_summary(cfg, spec, study)
    atomic_write_json(summary_path(cfg, spec), summary)
    return summary


# ----------------------------------------------------------------------------------------------------- entries
def _resolve(cfg, *, log) -> tuple[list[StudySpec], dict[StudySpec, _Space]]:
    if cfg.kind != "train":
        raise QbenchError(f"suite '{cfg.name}' is a {cfg.kind} suite; only training suites can be tuned")
    recipe = recipe_dims(cfg.tune.recipe_space)
    for plugin in cfg.plugins:
        load_plugin(plugin)
    specs = study_specs(cfg)
    spaces = {spec: _method_space(cfg, spec, recipe) for spec in specs}
    return specs, spaces


def tune_suite(cfg, *, progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Tune every (method, arch, bits, policy) of a suite; returns one summary dict per study (see
    :func:`study_summary`). Resumes studies that exist in the storage."""
    _quiet_optuna()
    specs, spaces = _resolve(cfg, log=log)
    load_splits(cfg.data)  # a data error is one line before anything starts
    storage = open_storage(cfg)
    n_workers = int(cfg.tune.workers)
    label = storage_label(cfg)
    log(f"tuning {len(specs)} stud{'y' if len(specs) == 1 else 'ies'} of suite '{cfg.name}': {cfg.tune.n_trials} "
        f"trials × {cfg.tune.epochs} epoch(s) each, pruner {cfg.tune.pruner}, TPE seed {cfg.tune.seed}, objective "
        f"val top-1; storage {label}")
    studies = {}
    for spec in specs:
        space = spaces[spec]
        if space.empty:
            log(f"{spec.name}: nothing to tune (method '{space.base}' has no search space and tune.recipe_space is "
                f"empty); `qbench run tuned=true` uses its defaults")
            continue
        if not space.method_params:
            log(f"{spec.name}: method '{space.base}' has no search space of its own; tuning only the shared recipe "
                f"keys {', '.join(d.key for d in space.recipe)}")
        studies[spec] = _prepare_study(cfg, spec, space, storage, log=log, parallel=n_workers > 1 or bool(
            cfg.tune.storage and "://" in str(cfg.tune.storage)))
    if n_workers == 1:
        worker = _Worker(cfg, 0, 1, progress, log)
        worker.run_studies([(study, spec, spaces[spec]) for spec, study in studies.items()],
                           on_done=lambda study, spec: _write_summary(cfg, spec, study))
    else:
        _run_workers(cfg, list(studies), n_workers, progress, log)
    summaries = []
    for spec in studies:
        study = _load_study(cfg, spec, storage)
        summaries.append(_write_summary(cfg, spec, study))
    _log_table(summaries, log)
    log(f"summaries in {tuning_dir(cfg)}/<study>.json; dashboard: optuna-dashboard {_dashboard_arg(cfg)}")
    log(f"train with the best parameters: qbench run suite={cfg.name} tuned=true")
    return summaries


def _dashboard_arg(cfg) -> str:
    url = cfg.tune.storage
    if url and "://" in str(url):
        return mask_url(_with_driver(str(url)))
    return str(url or journal_path(cfg))


def _load_study(cfg, spec: StudySpec, storage, *, parallel: bool = False):
    import optuna

    return optuna.load_study(study_name=spec.name, storage=storage, sampler=_sampler(cfg, parallel),
                             pruner=_pruner(cfg))


def _log_table(summaries: list[dict], log) -> None:
    if not summaries:
        return
    log("")
    log("| study | trials (done/pruned/failed) | default val | best val | best parameters | hours |")
    log("|:--|:--|--:|--:|:--|--:|")
    for s in summaries:
        default = "pruned" if s["default_state"] == "pruned" else _pct(s["default_value"])
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in (s["best_params"] or {}).items())
        log(f"| {s['study']} | {s['trials_finished']}/{s['trials_pruned']}/{s['trials_failed']} | {default} | "
            f"{_pct(s['best_value'])} | {params} | {s['trial_hours']:.3f} |")


def _pct(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _run_workers(cfg, specs: list[StudySpec], n_workers: int, progress: bool, log) -> None:
    import multiprocessing

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
    import sys

    import torch

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
        _quiet_optuna()
        specs, spaces = _resolve(cfg, log=log)
        wanted = [StudySpec(**d) for d in spec_dicts]
        storage = open_storage(cfg)
        worker = _Worker(cfg, index, n_workers, progress, log)
        worker.run_studies([(_load_study(cfg, spec, storage, parallel=True), spec, spaces[spec]) for spec in wanted],
                           on_done=lambda study, spec: _write_summary(cfg, spec, study))
    except KeyboardInterrupt:
        sys.exit(130)
    except QbenchError as exc:
        print(f"qbench: error: [w{index}] {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


_STORAGE_CACHE: dict[str, Any] = {}


def tuned_overrides(cfg, cell) -> dict[str, Any]:
    """The best parameters of the cell's study as dotted config keys (``train.lr``, ``method_hparams.bcgd.rho``); not
    ``train.epochs`` — a tuned run trains on the suite's full schedule."""
    from optuna.trial import TrialState

    _quiet_optuna()
    spec = StudySpec(str(cfg.name), cell.method, cell.arch, str(cell.bits), cell.policy)
    first = f"run `qbench tune suite={cfg.name} method={spec.method.partition(':')[0]}` first"
    recipe = recipe_dims(cfg.tune.recipe_space)
    space = _method_space(cfg, spec, recipe)
    if space.empty:
        return {}  # nothing is tunable: the tuned run is the default run
    key = f"{cfg.tune.storage or journal_path(cfg)}"
    if key not in _STORAGE_CACHE:
        if not cfg.tune.storage and not journal_path(cfg).is_file():
            raise QbenchError(f"no tuning study '{spec.name}' (no journal at {journal_path(cfg)}); {first}")
        _STORAGE_CACHE[key] = open_storage(cfg)
    storage = _STORAGE_CACHE[key]
    import optuna

    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        raise QbenchError(f"no tuning study '{spec.name}' in {storage_label(cfg)}; {first}") from None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise QbenchError(f"tuning study '{spec.name}' has no completed trial yet; {first}")
    best = max(complete, key=lambda t: (t.value, -t.number))
    return _overrides_from_params(best.params, space.base)
