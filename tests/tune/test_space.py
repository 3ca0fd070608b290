"""What a study searches: the recipe space format, the method's recorded search space, variants, trial 0."""

import pytest

from qbench.config import recipe_dims
from qbench.errors import ConfigError
from qbench.tune import tune_suite
from qbench.tune.space import StudySpec, format_params, method_space, overrides_from_params


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


def test_method_search_spaces_and_variants(tiny):
    cfg = tiny()
    recipe = recipe_dims(cfg.tune.recipe_space)
    bcgd = method_space(cfg, StudySpec(cfg.name, "bcgd", "lenet5", "W1A4", "fp"), recipe)
    assert bcgd.method_params == {"estimator": "clipped_relu", "alpha_grad": "mean", "rho": 1e-5}
    assert bcgd.defaults()[0] == {"estimator": "clipped_relu", "alpha_grad": "mean", "rho": 1e-5, "train.lr": 0.05}
    fp = method_space(cfg, StudySpec(cfg.name, "fp", "lenet5", "W32A32", "fp"), recipe)
    assert fp.method_params == {} and not fp.empty
    # A variant pins its inline hyperparameters: they are not searched.
    variant = method_space(cfg, StudySpec(cfg.name, "ste:estimator=identity", "lenet5", "W1A4", "fp"), recipe)
    assert "estimator" not in variant.method_params and variant.fixed == {"estimator": "identity"}


def test_search_space_with_unknown_hyperparameter(tiny, tmp_path, logs):
    plugin = tmp_path / "badspace.py"
    plugin.write_text(
        "from qbench import Method, register_method\n"
        "@register_method('badspace_test')\n"
        "class BadSpace(Method):\n"
        "    '''Suggests a parameter it does not have.'''\n"
        "    def search_space(self, trial):\n"
        "        return {'nope': trial.suggest_float('nope', 0.1, 1.0)}\n")
    cfg = tiny("methods=[badspace_test]", f"plugins=[{plugin}]")
    with pytest.raises(ConfigError, match="suggests 'nope', not among its hyperparameters"):
        tune_suite(cfg, log=logs)


def test_params_become_config_overrides():
    params = {"train.lr": 0.05, "train.epochs": 3, "rho": 1e-5}
    assert overrides_from_params(params, "bcgd") == {"train.lr": 0.05, "method_hparams.bcgd.rho": 1e-5}
    assert format_params({"train.lr": 0.0512345, "estimator": "identity"}) == "train.lr=0.05123, estimator=identity"
