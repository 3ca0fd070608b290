"""`qbench tune` on tiny real data: validation-only objective, defaults as trial 0, pruning, resume after an interrupt
and after SIGKILL, two workers on one journal, tuned runs, and the one-line errors."""

import dataclasses
import json
import signal
import subprocess
import sys

import optuna
import pytest
from _self_kill import KILLED_TRIAL, self_killing_qbench
from optuna.trial import TrialState
from torch.utils.data import Dataset

from qbench.run import runner
from qbench.tune import study as tune_study
from qbench.config import load_config, recipe_dims
from qbench.errors import ConfigError, QbenchError
from qbench.tune.study import (
    DEFAULTS_ATTR,
    StudySpec,
    _method_space,
    _sampler,
    mask_url,
    open_storage,
    summary_path,
    tune_suite,
    tuned_overrides,
)

TINY = ["data.name=digits", "data.train_subset=300", "data.batch_size=64", "model.archs=[lenet5]", "bits=[W1A4]",
        "seeds=[0]", "train.epochs=1", "train.lr=0.05", "tune.epochs=2", "tune.n_trials=3"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def tiny(tmp_path, *extra):
    return load_config("quickstart", [*TINY, f"results_dir={tmp_path}", *extra])


def study_of(cfg, method, bits="W1A4", policy="fp"):
    spec = StudySpec(cfg.name, method, "lenet5", "W32A32" if method == "fp" else bits, policy)
    return optuna.load_study(study_name=spec.name, storage=open_storage(cfg)), spec


class Logs(list):
    def __call__(self, message):
        self.append(str(message))


# ------------------------------------------------------------------------------------------------ no training
def test_recipe_space_validation():
    dims = recipe_dims({"train.lr": [0.01, 0.3, "log"], "train.momentum": [0.8, 0.99, "linear"],
                                  "data.batch_size": [32, 256, "log"], "train.optimizer": ["sgd", "adamw"],
                                  "train.weight_decay": {"choices": [0.0, 1e-4]},
                                  "train.gamma": {"low": 0.05, "high": 0.5, "log": True}})
    kinds = {d.key: (d.kind, d.log) for d in dims}
    assert kinds == {"train.lr": ("float", True), "train.momentum": ("float", False), "data.batch_size": ("int", True),
                     "train.optimizer": ("categorical", False), "train.weight_decay": ("categorical", False),
                     "train.gamma": ("float", True)}
    with pytest.raises(ConfigError) as err:
        recipe_dims({"train.lrr": [0.01, 0.3, "log"]})
    msg = str(err.value)
    assert "\n" not in msg and "train.lrr" in msg and "did you mean 'train.lr'" in msg
    assert "valid keys:" in msg and "train.weight_decay" in msg and "train.momentum" in msg
    with pytest.raises(ConfigError, match="tune.epochs"):
        recipe_dims({"train.epochs": [1, 5, "linear"]})
    with pytest.raises(ConfigError, match="ambiguous"):
        recipe_dims({"train.lr": [0.01, 0.3]})
    with pytest.raises(ConfigError, match="low > 0"):
        recipe_dims({"train.lr": [0.0, 0.3, "log"]})
    with pytest.raises(ConfigError, match="below high"):
        recipe_dims({"train.lr": [0.3, 0.1, "linear"]})


def test_unknown_recipe_key_from_the_cli(tmp_path, capsys):
    from qbench.cli import main

    code = main(["tune", "suite=quickstart", "method=fp", f"results_dir={tmp_path}",
                 "tune.recipe_space={train.lr: [0.01, 0.3, log], train.wd: [0.0, 0.1, linear]}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown tune.recipe_space key 'train.wd'" in err and "train.weight_decay" in err


def test_unreachable_postgres_is_one_line_without_password(tmp_path, capsys):
    cfg = tiny(tmp_path, "tune.storage=postgresql://alice:hunter2@127.0.0.1:1/qbench")
    with pytest.raises(QbenchError) as err:
        open_storage(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "hunter2" not in msg
    assert msg.startswith("cannot connect to tune.storage postgresql://alice:***@127.0.0.1:1/qbench")
    from qbench.cli import main

    assert main(["tune", "suite=quickstart", "method=fp", f"results_dir={tmp_path}",
                 "tune.storage=postgresql://alice:hunter2@127.0.0.1:1/qbench"]) == 2
    err_text = capsys.readouterr().err
    assert "hunter2" not in err_text and len(err_text.strip().splitlines()) == 1
    assert mask_url("postgresql://u:p@h:5/db") == "postgresql://u:***@h:5/db"
    assert mask_url("postgresql://h:5/db") == "postgresql://h:5/db"


def test_method_search_spaces_and_variants(tmp_path):
    cfg = tiny(tmp_path)
    recipe = recipe_dims(cfg.tune.recipe_space)
    bcgd = _method_space(cfg, StudySpec(cfg.name, "bcgd", "lenet5", "W1A4", "fp"), recipe)
    assert bcgd.method_params == {"estimator": "clipped_relu", "alpha_grad": "mean", "rho": 1e-5}
    assert bcgd.defaults()[0] == {"estimator": "clipped_relu", "alpha_grad": "mean", "rho": 1e-5, "train.lr": 0.05}
    fp = _method_space(cfg, StudySpec(cfg.name, "fp", "lenet5", "W32A32", "fp"), recipe)
    assert fp.method_params == {} and not fp.empty
    # A variant pins its inline hyperparameters: they are not searched.
    variant = _method_space(cfg, StudySpec(cfg.name, "ste:estimator=identity", "lenet5", "W1A4", "fp"), recipe)
    assert "estimator" not in variant.method_params and variant.fixed == {"estimator": "identity"}


def test_search_space_with_unknown_hyperparameter(tmp_path):
    plugin = tmp_path / "badspace.py"
    plugin.write_text(
        "from qbench import Method, register_method\n"
        "@register_method('badspace_test')\n"
        "class BadSpace(Method):\n"
        "    '''Suggests a parameter it does not have.'''\n"
        "    def search_space(self, trial):\n"
        "        return {'nope': trial.suggest_float('nope', 0.1, 1.0)}\n")
    cfg = tiny(tmp_path, "methods=[badspace_test]", f"plugins=[{plugin}]")
    with pytest.raises(ConfigError, match="suggests 'nope', not among its hyperparameters"):
        tune_suite(cfg, log=Logs())


def test_seed_makes_suggestions_reproducible(tmp_path):
    def sequence(seed):
        cfg = tiny(tmp_path, f"tune.seed={seed}", "tune.n_trials=8")
        study = optuna.create_study(direction="maximize", sampler=_sampler(cfg, False))
        study.optimize(lambda t: -abs(t.suggest_float("lr", 1e-3, 1.0, log=True) - 0.1)
                       + (t.suggest_categorical("est", ["a", "b", "c"]) == "b"), n_trials=8)
        return [t.params for t in study.trials]

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)


def test_tuned_run_without_a_study_says_what_to_do(tmp_path):
    cfg = tiny(tmp_path, "methods=[bcgd]", "tuned=true")
    cell = runner.plan_cells(cfg)[0]
    with pytest.raises(QbenchError) as err:
        tuned_overrides(cfg, cell)
    assert "run `qbench tune suite=quickstart method=bcgd` first" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------------- training
class _Poisoned(Dataset):
    """The test split, armed: reading any sample fails the test."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        raise AssertionError("the tuning objective read the test split")

    def __getitems__(self, indices):
        raise AssertionError("the tuning objective read the test split")


def test_objective_is_validation_only_defaults_first_then_tuned_run(tmp_path, monkeypatch):
    build = runner.build_datasets

    def poisoned(*args, **kwargs):
        splits = build(*args, **kwargs)
        return dataclasses.replace(splits, test=_Poisoned(splits.test))

    monkeypatch.setattr(runner, "build_datasets", poisoned)
    monkeypatch.setattr(runner, "_SPLITS_CACHE", {})
    cfg = tiny(tmp_path, "methods=[bcgd]", "tune.pruner=none")
    logs = Logs()
    [summary] = tune_suite(cfg, progress=False, log=logs)
    study, spec = study_of(cfg, "bcgd")
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state == TrialState.COMPLETE for t in trials)
    # Trial 0 is the method's defaults (and the suite's lr); the others are sampled.
    assert trials[0].params == {"estimator": "clipped_relu", "alpha_grad": "mean", "rho": 1e-5, "train.lr": 0.05}
    assert trials[0].user_attrs[DEFAULTS_ATTR] is True
    assert not any(t.user_attrs.get(DEFAULTS_ATTR) for t in trials[1:])
    # Each trial trained tune.epochs epochs and was scored on the validation split.
    for t in trials:
        trial_dir = tmp_path / "quickstart/tuning" / spec.slug / f"trial_{t.number}"
        rows = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and t.value == pytest.approx(rows[-1]["val_top1"])
        result = json.loads((trial_dir / "result.json").read_text())
        assert "test_top1" not in result
    # The summary for the leaderboard.
    on_disk = json.loads(summary_path(cfg, spec).read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["trials_finished"] == 3 and on_disk["trials_failed"] == 0 and on_disk["n_trials"] == 3
    assert on_disk["default_trial"] == 0 and on_disk["default_value"] == pytest.approx(trials[0].value)
    assert on_disk["best_value"] == pytest.approx(max(t.value for t in trials))
    assert on_disk["cpu_hours"] > 0 and on_disk["gpu_hours"] == 0
    # Tuning records are not suite results.
    from qbench.report import load_runs

    with pytest.raises(QbenchError):
        load_runs(tmp_path, "quickstart")

    # `qbench run tuned=true` trains with the best parameters on the full schedule and says so.
    monkeypatch.setattr(runner, "build_datasets", build)
    monkeypatch.setattr(runner, "_SPLITS_CACHE", {})
    from qbench.cli import main

    args = ["run", "suite=quickstart", *TINY, f"results_dir={tmp_path}", "methods=[bcgd]", "tuned=true",
            "train.epochs=1", "--no-progress"]
    assert main(args) == 0
    best = on_disk["best_params"]
    run_dir = tmp_path / "quickstart" / "bcgd-tuned_lenet5_W1A4_fp_s0"
    import yaml

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["lr"] == pytest.approx(best["train.lr"])
    assert saved["train"]["epochs"] == 1  # the suite's schedule, not tune.epochs
    assert saved["method_hparams"]["bcgd"]["rho"] == pytest.approx(best["rho"])
    assert saved["method_hparams"]["bcgd"]["estimator"] == best["estimator"]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["tuned"] is True and result["status"] == "complete"
    runs = load_runs(tmp_path, "quickstart")
    assert list(runs["run_id"]) == ["bcgd-tuned_lenet5_W1A4_fp_s0"]
    # The leaderboard shows what the tuning cost next to the tuned row: finished trials × epochs and CPU hours.
    from qbench.report import build_leaderboard, load_tuning

    board = build_leaderboard(runs, tuning=load_tuning(tmp_path, "quickstart"))
    [row] = board.cells.to_dict("records")
    assert row["tune_trials"] == on_disk["trials_finished"] and row["tune_epochs_per_trial"] == on_disk["epochs_per_trial"]
    assert row["tune_cpu_hours"] == pytest.approx(on_disk["cpu_hours"]) and row["tune_cpu_hours"] > 0
    [costs] = board.costs.to_dict("records")
    assert costs["tuning trials"] == f"{on_disk['trials_finished']} × {on_disk['epochs_per_trial']} ep"
    assert costs["tuning CPU-h"] == f"{on_disk['cpu_hours']:.3f}" and "tuning GPU-h" not in costs


def test_fp_prunes_a_bad_trial_and_resume_keeps_every_trial(tmp_path):
    cfg = tiny(tmp_path, "methods=[fp]", "tune.pruner=median", "tune.n_trials=1")
    logs = Logs()
    tune_suite(cfg, progress=False, log=logs)
    assert any("method 'fp' has no search space of its own; tuning only the shared recipe keys train.lr" in line
               for line in logs)
    study, spec = study_of(cfg, "fp")
    assert [t.params for t in study.trials] == [{"train.lr": 0.05}]
    # An absurd learning rate: the median pruner stops it after its first epoch (of 2).
    study.enqueue_trial({"train.lr": 1e-9})
    tune_suite(tiny(tmp_path, "methods=[fp]", "tune.pruner=median", "tune.n_trials=2"), progress=False, log=Logs())
    study, _ = study_of(cfg, "fp")
    bad = study.trials[1]
    assert bad.params == {"train.lr": 1e-9} and bad.state == TrialState.PRUNED
    assert list(bad.intermediate_values) == [1]
    rows = (tmp_path / "quickstart/tuning" / spec.slug / "trial_1/metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1
    before = [(t.number, t.state, t.value, t.params) for t in study.trials]
    # Raising n_trials and re-running resumes: the finished trials stay as they were, only the missing ones run.
    [summary] = tune_suite(tiny(tmp_path, "methods=[fp]", "tune.pruner=median", "tune.n_trials=4"), progress=False,
                           log=Logs())
    study, _ = study_of(cfg, "fp")
    assert [(t.number, t.state, t.value, t.params) for t in study.trials[:2]] == before
    assert len(study.trials) == 4 and sum(t.state in FINISHED for t in study.trials) == 4
    assert set().union(*(t.params for t in study.trials)) == {"train.lr"}
    assert summary["trials_finished"] == 4 and summary["trials_pruned"] >= 1
    assert tuned_overrides(cfg, runner.plan_cells(tiny(tmp_path, "methods=[fp]", "tuned=true"))[0]) == {
        "train.lr": summary["best_params"]["train.lr"]}


def test_interrupt_requeues_the_trial_and_resume_finishes(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, "methods=[fp]", "tune.pruner=none", "tune.n_trials=4", "tune.epochs=1")
    real, calls = tune_study.run_cell, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tune_study, "run_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune_suite(cfg, progress=False, log=Logs())
    monkeypatch.setattr(tune_study, "run_cell", real)
    study, _ = study_of(cfg, "fp")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert study.trials[3].params == study.trials[2].params
    before = [(t.number, t.value, t.params) for t in study.trials[:2]]
    tune_suite(cfg, progress=False, log=Logs())
    study, _ = study_of(cfg, "fp")
    assert [(t.number, t.value, t.params) for t in study.trials[:2]] == before
    assert study.trials[3].state == TrialState.COMPLETE and study.trials[3].system_attrs["failed_trial"] == 2
    assert sum(t.state in FINISHED for t in study.trials) == 4 and len(study.trials) == 5


def _cli(tmp_path, *extra):
    return [sys.executable, "-m", "qbench", "tune", "suite=quickstart", *TINY, f"results_dir={tmp_path}", *extra,
            "--no-progress"]


def test_sigkill_mid_trial_then_restart_loses_nothing(tmp_path):
    """A worker killed mid-trial: on restart its trial is failed (its process is gone) and re-run with the same
    parameters; the trials it had finished are kept."""
    extra = ["methods=[fp]", "tune.pruner=none", "tune.n_trials=2", "tune.epochs=4"]
    cfg = tiny(tmp_path, *extra)
    argv = _cli(tmp_path, *extra)
    proc = subprocess.run(self_killing_qbench(*argv[3:]), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    killed = KILLED_TRIAL
    study, _ = study_of(cfg, "fp")
    before = {t.number: (t.value, t.params) for t in study.trials if t.state == TrialState.COMPLETE}
    assert study.trials[killed].state == TrialState.RUNNING
    tune_suite(cfg, progress=False, log=Logs())
    study, _ = study_of(cfg, "fp")
    assert {n: (study.trials[n].value, study.trials[n].params) for n in before} == before
    assert study.trials[killed].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == study.trials[killed].params
    assert sum(t.state in FINISHED for t in study.trials) == 2


def test_two_workers_on_one_journal_finish_exactly_n_trials(tmp_path):
    cfg = tiny(tmp_path, "methods=[fp]", "tune.workers=2", "tune.n_trials=5", "tune.epochs=1")
    logs = Logs()
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
