"""Shared pieces of the tuning tests: a tiny suite on real data (digits, LeNet-5, 2-epoch trials) and its studies."""

import optuna
import pytest

from qbench.config import load_config
from qbench.tune.space import StudySpec
from qbench.tune.storage import open_storage

TINY = ["data.name=digits", "data.train_subset=300", "data.batch_size=64", "model.archs=[lenet5]", "bits=[W1A4]",
        "seeds=[0]", "train.epochs=1", "train.lr=0.05", "tune.epochs=2", "tune.n_trials=3"]


class Logs(list):
    """A ``log`` callable that keeps the lines."""

    def __call__(self, message):
        self.append(str(message))


@pytest.fixture
def tiny_args(tmp_path):
    """The tiny suite's overrides (results under tmp_path), for the command line."""
    return [*TINY, f"results_dir={tmp_path}"]


@pytest.fixture
def tiny(tiny_args):
    """tiny(*overrides) → the quickstart suite shrunk to seconds, results under tmp_path."""
    return lambda *extra: load_config("quickstart", [*tiny_args, *extra])


@pytest.fixture
def logs():
    return Logs()


def _study_of(cfg, method, bits="W1A4", policy="fp"):
    spec = StudySpec(cfg.name, method, "lenet5", "W32A32" if method == "fp" else bits, policy)
    return optuna.load_study(study_name=spec.name, storage=open_storage(cfg)), spec


@pytest.fixture
def study_of():
    """study_of(cfg, method) → (the method's study in the suite's storage, its StudySpec)."""
    return _study_of
