"""The trial loop: seeded suggestions, re-queued interrupted and killed trials, two workers on one journal."""

import os
import signal
import socket
import subprocess
import sys
import types

import optuna
import pytest
from _self_kill import KILLED_TRIAL, self_killing_qbench
from optuna.trial import TrialState

from qbench.tune import tune_suite, worker
from qbench.tune.space import DEFAULTS_ATTR, WORKER_ATTR
from qbench.tune.worker import make_sampler, worker_gone

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HOST = socket.gethostname()


def test_seed_makes_suggestions_reproducible(tiny):
    def sequence(seed):
        cfg = tiny(f"tune.seed={seed}", "tune.n_trials=8")
        study = optuna.create_study(direction="maximize", sampler=make_sampler(cfg.tune, False))
        study.optimize(lambda t: -abs(t.suggest_float("lr", 1e-3, 1.0, log=True) - 0.1)
                       + (t.suggest_categorical("est", ["a", "b", "c"]) == "b"), n_trials=8)
        return [t.params for t in study.trials]

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)


def test_parallel_workers_do_not_repeat_each_other(tiny):
    """Two workers, each with its own sampler of the same tune.seed, share a study: their concurrent trials are
    seeded by their own trial numbers, so they differ (a TPE seeded once per worker would suggest the same)."""
    cfg = tiny("tune.seed=3", "tune.n_trials=8")

    def concurrent_pair():
        storage = optuna.storages.InMemoryStorage()
        first = optuna.create_study(study_name="s", storage=storage, direction="maximize",
                                    sampler=make_sampler(cfg.tune, True))
        second = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(cfg.tune, True))
        trials = first.ask(), second.ask()  # both running at once
        return [t.suggest_float("lr", 1e-3, 1.0, log=True) for t in trials]

    pair = concurrent_pair()
    assert pair[0] != pair[1] and concurrent_pair() == pair


def test_a_dead_worker_is_recognised_only_on_its_own_trial():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = {"host": HOST, "pid": dead.pid}
    assert worker_gone(types.SimpleNamespace(number=3, user_attrs={WORKER_ATTR: {**here, "trial": 3}}))
    assert worker_gone(types.SimpleNamespace(number=3, user_attrs={WORKER_ATTR: here}))  # recorded before "trial"
    # A retried trial inherits the identity of the trial it retries until its own worker writes its own.
    assert not worker_gone(types.SimpleNamespace(number=5, user_attrs={WORKER_ATTR: {**here, "trial": 3}}))
    alive = {"host": HOST, "pid": os.getppid(), "trial": 3}
    assert not worker_gone(types.SimpleNamespace(number=3, user_attrs={WORKER_ATTR: alive}))
    elsewhere = {"host": "another-machine", "pid": dead.pid, "trial": 3}
    assert not worker_gone(types.SimpleNamespace(number=3, user_attrs={WORKER_ATTR: elsewhere}))


def test_interrupt_requeues_the_trial_and_resume_finishes(tiny, study_of, logs, monkeypatch):
    cfg = tiny("methods=[fp]", "tune.pruner=none", "tune.n_trials=4", "tune.epochs=1")
    real, calls = worker.run_cell, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "run_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune_suite(cfg, progress=False, log=logs)
    monkeypatch.setattr(worker, "run_cell", real)
    study, _ = study_of(cfg, "fp")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert study.trials[3].params == study.trials[2].params
    before = [(t.number, t.value, t.params) for t in study.trials[:2]]
    tune_suite(cfg, progress=False, log=logs)
    study, _ = study_of(cfg, "fp")
    assert [(t.number, t.value, t.params) for t in study.trials[:2]] == before
    assert study.trials[3].state == TrialState.COMPLETE and study.trials[3].system_attrs["failed_trial"] == 2
    assert sum(t.state in FINISHED for t in study.trials) == 4 and len(study.trials) == 5
    assert any("fp/lenet5/W32A32/fp trial 3 [retry 1 of trial 2]:" in line for line in logs)


def test_sigkill_mid_trial_then_restart_loses_nothing(tiny, tiny_args, study_of, logs):
    """A worker killed mid-trial: on restart its trial is failed (its process is gone) and re-run with the same
    parameters; the trials it had finished are kept."""
    extra = ["methods=[fp]", "tune.pruner=none", "tune.n_trials=2", "tune.epochs=4"]
    cfg = tiny(*extra)
    proc = subprocess.run(self_killing_qbench("tune", "suite=quickstart", *tiny_args, *extra, "--no-progress"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    killed = KILLED_TRIAL
    study, _ = study_of(cfg, "fp")
    before = {t.number: (t.value, t.params) for t in study.trials if t.state == TrialState.COMPLETE}
    assert study.trials[killed].state == TrialState.RUNNING
    tune_suite(cfg, progress=False, log=logs)
    study, _ = study_of(cfg, "fp")
    assert {n: (study.trials[n].value, study.trials[n].params) for n in before} == before
    assert study.trials[killed].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == study.trials[killed].params
    assert retried[0].user_attrs[WORKER_ATTR] == {"host": HOST, "pid": os.getpid(), "trial": retried[0].number}
    assert sum(t.state in FINISHED for t in study.trials) == 2


def test_two_workers_on_one_journal_finish_exactly_n_trials(tiny, study_of, logs):
    cfg = tiny("methods=[fp]", "tune.workers=2", "tune.n_trials=5", "tune.epochs=1")
    [summary] = tune_suite(cfg, progress=False, log=logs)
    study, _ = study_of(cfg, "fp")
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert sum(t.state in FINISHED for t in trials) == 5
    assert all(t.state in FINISHED for t in trials), [t.state for t in trials]
    assert trials[0].user_attrs[DEFAULTS_ATTR] is True and trials[0].params == {"train.lr": 0.05}
    assert summary["trials_finished"] == 5 and summary["trials_running"] == 0
    assert len({t.user_attrs["qbench_worker"]["pid"] for t in trials}) >= 1
