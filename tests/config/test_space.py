"""Search ranges (qbench.config.space): each written form gives the Optuna distribution its format promises."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from qbench.errors import ConfigError
from qbench.method import HParam
from qbench.config import parse_search_dim

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _suggested_distribution(dim):
    """The distribution a real Optuna trial records when asked through ``dim``."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    dim.suggest(trial, "x")
    return trial.distributions["x"]


# Expected distributions written out from the format (qbench.config.space docstring, tune.recipe_space's format).
@pytest.mark.parametrize("spec,expected", [
    ([0.005, 0.2, "log"], FloatDistribution(0.005, 0.2, log=True)),
    ([0.8, 0.99, "linear"], FloatDistribution(0.8, 0.99)),
    ([0.5, 1, "LINEAR"], FloatDistribution(0.5, 1.0)),  # one float end: a float range
    ([32, 256, "log"], IntDistribution(32, 256, log=True)),
    ([0, 3, "linear"], IntDistribution(0, 3)),
    (["sgd", "adamw"], CategoricalDistribution(["sgd", "adamw"])),
    ([False, True], CategoricalDistribution([False, True])),  # bools are not numbers: choices, in this order
    ({"choices": [0.0, 1e-4]}, CategoricalDistribution([0.0, 1e-4])),
    ({"low": 0.05, "high": 0.5, "log": True}, FloatDistribution(0.05, 0.5, log=True)),
    ({"low": 1, "high": 4}, IntDistribution(1, 4)),
])
def test_each_form_suggests_its_distribution(spec, expected):
    assert _suggested_distribution(parse_search_dim("", spec, "test")) == expected


def test_choices_word_searches_the_given_choices_in_their_order():
    dim = parse_search_dim("", "choices", "test", choices=("b", "a", "c"))
    assert _suggested_distribution(dim) == CategoricalDistribution(["b", "a", "c"])
    assert HParam("b", "h", ("b", "a"), space="choices").space == parse_search_dim("", ["b", "a"], "test")


@pytest.mark.parametrize("spec,needle", [
    ([1, 2], "ambiguous"),
    ([2.0, 1.0, "linear"], "must be below"),
    ([0.0, 1.0, "log"], "log range needs low > 0"),
    ({"low": 1}, "bad mapping"),
    ([], "empty list"),
    (0.5, "write [low, high, log|linear]"),
    ([[1], [2]], "must be a number, string, bool or null"),
    ("choices", "needs the hyperparameter's choices"),
])
def test_mistakes_are_one_line_config_errors(spec, needle):
    with pytest.raises(ConfigError) as exc:
        parse_search_dim("", spec, "where")
    assert needle in str(exc.value) and str(exc.value).startswith("where: ") and "\n" not in str(exc.value)


def test_hparam_checks_its_space_when_declared():
    with pytest.raises(ConfigError, match=r"HParam\(0.5, space=\[0.1, 1\]\).*ambiguous"):
        HParam(0.5, "a plugin's typo", space=[0.1, 1])
    assert HParam(0.5, "not tuned").space is None


def test_with_default_keeps_help_choices_and_space():
    h = HParam("a", "help", ("a", "b"), space="choices")
    other = h.with_default("b")
    assert (other.default, other.help, other.choices, other.space) == ("b", "help", ("a", "b"), h.space)


def test_a_keyed_dimension_suggests_under_its_key():
    dim = parse_search_dim("train.lr", [0.01, 0.1, "log"])
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    dim.suggest(trial)
    assert trial.distributions == {"train.lr": FloatDistribution(0.01, 0.1, log=True)}
    assert dim.describe() == "train.lr ∈ [0.01, 0.1] log"
