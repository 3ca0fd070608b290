"""Config: suites, strict keys, shorthands, reproducing a run from its saved config."""

import subprocess
import sys

import pytest

from qbench.config import (DataConfig, SuiteConfig, TrainConfig, fingerprint, get_value, list_suites, load_config,
                           to_yaml, with_overrides)
from qbench.errors import BitsError, ConfigError


def test_every_shipped_suite_loads_and_has_a_description():
    suites = dict(list_suites())
    assert {"quickstart", "mnist-lenet5-ste", "cifar10-resnet20-w1a4", "cifar10-vgg11", "cifar100-convnet-w1a1"} <= set(suites)
    for name, desc in suites.items():
        cfg = load_config(name)
        assert cfg.name == name and desc


def test_overrides_and_shorthands():
    cfg = load_config("quickstart", ["method=bcgd", "bits=W1A4", "train.epochs=3", "seeds=[0,1]",
                                     "data.root=/data", "results_dir=/tmp/r", "method_hparams.bcgd.rho=1e-4"])
    assert list(cfg.methods) == ["bcgd"] and list(cfg.bits) == ["W1A4"] and cfg.train.epochs == 3
    assert list(cfg.seeds) == [0, 1] and cfg.data.root == "/data" and cfg.results_dir == "/tmp/r"
    assert cfg.method_hparams["bcgd"]["rho"] == 1e-4


@pytest.mark.parametrize("override,needle", [
    ("train.epohs=3", "did you mean 'train.epochs'"),
    ("trian.epochs=3", "valid keys: "),
    ("data.nme=x", "valid keys under 'data'"),
])
def test_typos_fail_with_the_valid_keys(override, needle):
    with pytest.raises(ConfigError) as exc:
        load_config("quickstart", [override])
    assert needle in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("override,error", [
    ("train.epochs=abc", ConfigError), ("bits=[W1X4]", BitsError), ("policy=half", ConfigError),
    ("train.optimizer=lion", ConfigError), ("shard=3/2", ConfigError), ("noequals", ConfigError),
])
def test_bad_values(override, error):
    with pytest.raises(error):
        load_config("quickstart", [override])


def test_unknown_suite_lists_known_ones():
    with pytest.raises(ConfigError, match="quickstart"):
        load_config("quickstrat")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config("quickstart", ["train.epochs=2"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    again = load_config(from_file=path)
    assert to_yaml(again) == to_yaml(cfg)


def test_load_config_returns_the_typed_schema():
    cfg = load_config("quickstart")
    assert isinstance(cfg, SuiteConfig) and isinstance(cfg.train, TrainConfig) and isinstance(cfg.data, DataConfig)
    assert cfg.train.epochs == 2 and cfg.data.batch_size == 64  # the suite's values
    assert cfg.train.weight_decay == TrainConfig().weight_decay  # one default, the schema's


@pytest.mark.parametrize("override,key", [
    ("train.epochs=0", "train.epochs"), ("train.epochs=-2", "train.epochs"),
    ("train.lr=nan", "train.lr"), ("train.lr=inf", "train.lr"), ("train.lr=-1", "train.lr"), ("train.lr=0", "train.lr"),
    ("data.batch_size=0", "data.batch_size"), ("data.eval_batch_size=0", "data.eval_batch_size"),
    ("train.momentum=1.5", "train.momentum"), ("train.weight_decay=-1", "train.weight_decay"),
    ("seeds=[-1]", "seeds"), ("data.val_fraction=1.0", "data.val_fraction"),
    ("method_hparams.bcgd.rho=nan", "method_hparams.bcgd.rho"), ("tune.n_trials=0", "tune.n_trials"),
    ("train.amp=fp8", "train.amp"), ("data.name=imagenette", "data.name"),
])
def test_value_checks_name_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config("quickstart", [override])
    assert key in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("given,resolved", [("false", "false"), ("False", "false"), ("bf16", "bf16"),
                                            ("bfloat16", "bf16"), ("fp16", "fp16"), ("half", "fp16")])
def test_amp_spellings_are_normalised(given, resolved):
    assert load_config("quickstart", [f"train.amp={given}"]).train.amp == resolved


def test_with_overrides_and_get_value_check_keys():
    cfg = load_config("quickstart")
    tuned = with_overrides(cfg, {"train.lr": 0.02, "method_hparams.bcgd.rho": 1e-4})
    assert get_value(tuned, "train.lr") == 0.02 and tuned.method_hparams["bcgd"]["rho"] == 1e-4
    assert cfg.train.lr == 0.05  # the original is unchanged
    with pytest.raises(ConfigError, match="train.lrr"):
        with_overrides(cfg, {"train.lrr": 0.1})
    with pytest.raises(ConfigError, match="train.lr"):
        with_overrides(cfg, {"train.lr": -1.0})
    with pytest.raises(ConfigError):
        get_value(cfg, "train.nope")


def test_loading_a_config_does_not_import_torch():
    code = "import sys, qbench.config as c; c.load_config('quickstart'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seeds_auto_and_its_bounds():
    cfg = load_config("quickstart", ["seeds=auto", "seeds_min=4", "seeds_max=8"])
    assert (cfg.seeds, cfg.seeds_min, cfg.seeds_max) == ("auto", 4, 8)
    assert load_config("quickstart", ["seeds=[0,2]"]).seeds == [0, 2]
    for overrides, needle in ((["seeds=auto", "seeds_min=2"], "seeds_min=2 must be an integer ≥ 3"),
                              (["seeds=auto", "seeds_max=2"], "seeds_max=2 must be an integer ≥ seeds_min=3"),
                              (["seeds=auto", "shard=0/2"], "cannot run with shard="),
                              (["seeds=[]"], "give a list of seeds"), (["seeds=often"], "non-negative integers")):
        with pytest.raises(ConfigError, match=needle):
            load_config("quickstart", overrides)
    with pytest.raises(ConfigError, match="cannot run with a theory suite"):
        load_config("theory-gaussian", ["seeds=auto"])
    with pytest.raises(ConfigError, match="cannot run with stages"):
        load_config("mnist-lenet5-repel", ["seeds=auto"])


def test_the_seed_keys_do_not_change_a_run_fingerprint():
    base = load_config("quickstart", ["seeds=[0]"])
    assert fingerprint(base) == fingerprint(load_config("quickstart", ["seeds=auto", "seeds_max=20"]))
