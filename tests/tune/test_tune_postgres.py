"""Distributed tuning against a real PostgreSQL server: two workers reach exactly n_trials, and the trial of a worker
killed mid-trial is failed by the heartbeat and retried by another worker.

The server comes from `.ci/postgres.sh` (`eval "$(.ci/postgres.sh)"` exports QBENCH_TEST_POSTGRES_URL). Without it the
tests skip on a developer's machine; in CI (the CI variable is set) they fail instead.
"""

import os
import re
import signal
import subprocess
import time
import uuid

import pytest
from _self_kill import KILLED_TRIAL, self_killing_qbench

URL = os.environ.get("QBENCH_TEST_POSTGRES_URL")
TINY = ["data.name=digits", "data.train_subset=300", "data.batch_size=64", "model.archs=[lenet5]", "seeds=[0]",
        "train.lr=0.05", "methods=[fp]", "tune.pruner=none"]


@pytest.fixture
def pg_url():
    if not URL:
        reason = ("no PostgreSQL server: QBENCH_TEST_POSTGRES_URL is not set (start one with "
                  "`eval \"$(.ci/postgres.sh)\"`)")
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}; .ci/run must start it before pytest", pytrace=False)
        pytest.skip(reason)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("psycopg2 is not installed: pip install psycopg2-binary (the postgres extra)", pytrace=False)
        pytest.skip("psycopg2 is not installed (pip install psycopg2-binary)")
    return URL


def _cfg(tmp_path, url, name, *extra):
    from qbench.config import load_config

    return load_config("quickstart", [*TINY, f"name={name}", f"results_dir={tmp_path}", f"tune.storage={url}",
                                      "tune.heartbeat_interval=1", "tune.grace_period=3", *extra])


def _study(cfg):
    import optuna

    from qbench.tune.space import study_specs
    from qbench.tune.storage import open_storage

    [spec] = study_specs(cfg)
    return optuna.load_study(study_name=spec.name, storage=open_storage(cfg))


def test_two_worker_processes_reach_exactly_n_trials(tmp_path, pg_url, capfd):
    from optuna.trial import TrialState

    from qbench.config import mask_url
    from qbench.tune import tune_suite

    # The test server trusts every password: give one that must not appear anywhere (an unencoded '/' in it).
    secret = "pw/s3cr3t"
    pg_url = re.sub(r"^(postgresql://[^:/@]*)(:[^@]*)?@", rf"\1:{secret}@", pg_url)
    cfg = _cfg(tmp_path, pg_url, f"pg_two_{uuid.uuid4().hex[:8]}", "tune.workers=2", "tune.n_trials=5",
               "tune.epochs=1")
    logs = []
    [summary] = tune_suite(cfg, progress=False, log=logs.append)
    trials = _study(cfg).get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == 5
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert trials[0].params == {"train.lr": 0.05} and trials[0].user_attrs["qbench_defaults"] is True
    assert summary["trials_finished"] == 5 and summary["storage"] == mask_url(pg_url)
    # Neither the trials' config.yaml, the summaries nor the logs hold the password.
    records = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in records)
    assert not [p for p in records if "s3cr3t" in p.read_text(errors="replace")]
    out = capfd.readouterr()
    assert "s3cr3t" not in "\n".join(logs) + out.out + out.err


def test_killed_worker_trial_is_failed_by_heartbeat_and_retried(tmp_path, pg_url):
    from optuna.trial import TrialState

    from qbench.tune import tune_suite

    name = f"pg_kill_{uuid.uuid4().hex[:8]}"
    extra = ["tune.n_trials=3", "tune.epochs=4"]
    cfg = _cfg(tmp_path, pg_url, name, *extra)
    args = ["tune", "suite=quickstart", *TINY, f"name={name}", f"results_dir={tmp_path}", f"tune.storage={pg_url}",
            "tune.heartbeat_interval=1", "tune.grace_period=3", *extra, "--no-progress"]
    # The worker SIGKILLs itself in trial 1 after one reported epoch (tests/_self_kill.py): trial 0 is complete and
    # trial 1 is RUNNING in the database with a heartbeat that stops.
    worker = subprocess.run(self_killing_qbench(*args), capture_output=True, text=True, timeout=300)
    assert worker.returncode == -signal.SIGKILL, worker.stdout[-3000:] + worker.stderr[-3000:]
    killed = KILLED_TRIAL
    assert _study(cfg).trials[killed].state == TrialState.RUNNING  # nobody knows yet

    # A second worker joins: it runs what is left, then waits for the dead worker's trial, which the heartbeat fails
    # after the grace period and which it retries with the same parameters.
    t0 = time.time()
    [summary] = tune_suite(cfg, progress=False, log=lambda m: None)
    assert time.time() - t0 < 60
    trials = _study(cfg).trials
    assert trials[killed].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[killed].params
    assert retried[0].user_attrs["qbench_worker"]["pid"] == os.getpid()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert summary["trials_finished"] == 3 and summary["trials_failed"] == 1
