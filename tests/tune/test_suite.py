"""`qbench tune` on tiny real data: validation-only objective, defaults as trial 0, pruning and resuming, tuned runs,
and the one-line errors."""

import dataclasses
import json

import pytest
import yaml
from optuna.trial import TrialState
from torch.utils.data import Dataset

from qbench.cli import main
from qbench.errors import QbenchError
from qbench.report import build_leaderboard, load_runs, load_tuning
from qbench.run import runner
from qbench.tune import tune_suite, tuned_overrides
from qbench.tune.space import DEFAULTS_ATTR
from qbench.tune.summary import summary_path

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def test_unknown_recipe_key_from_the_cli(tmp_path, capsys):
    code = main(["tune", "suite=quickstart", "method=fp", f"results_dir={tmp_path}",
                 "tune.recipe_space={train.lr: [0.01, 0.3, log], train.wd: [0.0, 0.1, linear]}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown tune.recipe_space key 'train.wd'" in err and "train.weight_decay" in err


def test_tuned_run_without_a_study_says_what_to_do(tiny):
    cfg = tiny("methods=[bcgd]", "tuned=true")
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


def test_objective_is_validation_only_defaults_first_then_tuned_run(tiny, tiny_args, study_of, logs, tmp_path,
                                                                   monkeypatch):
    build = runner.build_datasets

    def poisoned(*args, **kwargs):
        splits = build(*args, **kwargs)
        return dataclasses.replace(splits, test=_Poisoned(splits.test))

    monkeypatch.setattr(runner, "build_datasets", poisoned)
    monkeypatch.setattr(runner, "_SPLITS_CACHE", {})
    cfg = tiny("methods=[bcgd]", "tune.pruner=none")
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
    with pytest.raises(QbenchError):
        load_runs(tmp_path, "quickstart")

    # `qbench run tuned=true` trains with the best parameters on the full schedule and says so.
    monkeypatch.setattr(runner, "build_datasets", build)
    monkeypatch.setattr(runner, "_SPLITS_CACHE", {})
    args = ["run", "suite=quickstart", *tiny_args, "methods=[bcgd]", "tuned=true", "train.epochs=1", "--no-progress"]
    assert main(args) == 0
    best = on_disk["best_params"]
    run_dir = tmp_path / "quickstart" / "bcgd-tuned_lenet5_W1A4_fp_s0"
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
    board = build_leaderboard(runs, tuning=load_tuning(tmp_path, "quickstart"))
    [row] = board.cells.to_dict("records")
    assert row["tune_trials"] == on_disk["trials_finished"]
    assert row["tune_epochs_per_trial"] == on_disk["epochs_per_trial"]
    assert row["tune_cpu_hours"] == pytest.approx(on_disk["cpu_hours"]) and row["tune_cpu_hours"] > 0
    [costs] = board.costs.to_dict("records")
    assert costs["tuning trials"] == f"{on_disk['trials_finished']} × {on_disk['epochs_per_trial']} ep"
    assert costs["tuning CPU-h"] == f"{on_disk['cpu_hours']:.3f}" and "tuning GPU-h" not in costs


def test_fp_prunes_a_bad_trial_and_resume_keeps_every_trial(tiny, study_of, logs, tmp_path):
    cfg = tiny("methods=[fp]", "tune.pruner=median", "tune.n_trials=1")
    tune_suite(cfg, progress=False, log=logs)
    assert any("method 'fp' has no search space of its own; tuning only the shared recipe keys train.lr" in line
               for line in logs)
    study, spec = study_of(cfg, "fp")
    assert [t.params for t in study.trials] == [{"train.lr": 0.05}]
    # An absurd learning rate: the median pruner stops it after its first epoch (of 2).
    study.enqueue_trial({"train.lr": 1e-9})
    tune_suite(tiny("methods=[fp]", "tune.pruner=median", "tune.n_trials=2"), progress=False, log=logs)
    study, _ = study_of(cfg, "fp")
    bad = study.trials[1]
    assert bad.params == {"train.lr": 1e-9} and bad.state == TrialState.PRUNED
    assert list(bad.intermediate_values) == [1]
    rows = (tmp_path / "quickstart/tuning" / spec.slug / "trial_1/metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1
    before = [(t.number, t.state, t.value, t.params) for t in study.trials]
    # Raising n_trials and re-running resumes: the finished trials stay as they were, only the missing ones run.
    [summary] = tune_suite(tiny("methods=[fp]", "tune.pruner=median", "tune.n_trials=4"), progress=False, log=logs)
    study, _ = study_of(cfg, "fp")
    assert [(t.number, t.state, t.value, t.params) for t in study.trials[:2]] == before
    assert len(study.trials) == 4 and sum(t.state in FINISHED for t in study.trials) == 4
    assert set().union(*(t.params for t in study.trials)) == {"train.lr"}
    assert summary["trials_finished"] == 4 and summary["trials_pruned"] >= 1
    assert tuned_overrides(cfg, runner.plan_cells(tiny("methods=[fp]", "tuned=true"))[0]) == {
        "train.lr": summary["best_params"]["train.lr"]}
