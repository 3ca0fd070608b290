"""Config: suites, strict keys, shorthands, reproducing a run from its saved config."""

import pytest

from qbench.config import list_suites, load_config, to_yaml
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
    assert cfg.method_hparams.bcgd.rho == 1e-4


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
