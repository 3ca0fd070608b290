"""The method registry: listing, creation, third-party plugins from a file and from an entry point."""

import sys
import textwrap

import pytest
import torch

import qbench
from qbench import registry
from qbench.errors import PluginError, UnknownMethodError

PLUGIN = '''
import torch
from qbench import HParam, Method, quant, register_method


@register_method("{name}")
class Mine(Method):
    """A third-party method: ternary weights, clipped-ReLU activations, a shrink after each step."""
    hparams = {{"shrink": HParam(0.5, "multiply latent weights after each step")}}

    def weight_quantizer(self, bits):
        return quant.weight.StraightThroughWeight(quant.weight.ternary_exact, 3)

    def activation_quantizer(self, bits):
        return quant.activation.QuantReLU(bits, estimator="clipped_relu")

    def after_step(self, model):
        with torch.no_grad():
            for latent, _ in quant.latent.latent_weights(model):
                latent.mul_(self.hp.shrink)

    def search_space(self, trial):
        return {{"shrink": trial.suggest_float("shrink", 0.1, 1.0)}}
'''


def test_builtin_methods_are_listed_and_filtered():
    names = qbench.list_methods()
    assert {"fp", "ste", "bcgd", "aqe", "pcg", "lbw"} <= set(names)
    assert qbench.list_methods("*cg*") == ["bcgd", "pcg"]
    assert qbench.list_methods("st*") == ["ste"]


def test_unknown_method_lists_known_ones():
    with pytest.raises(UnknownMethodError) as exc:
        qbench.create_method("bcdg")
    msg = str(exc.value)
    assert "\n" not in msg and all(n in msg for n in ("bcgd", "ste", "aqe", "plugins="))


def test_plugin_file_is_discovered_and_trains_one_step(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(PLUGIN.format(name="mine_file"))
    assert registry.load_plugin(path) == ["mine_file"]
    assert "mine_file" in qbench.list_methods()
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3))
    model.pretrained_cfg = {"first_conv": "0", "classifier": "3", "input_size": (1, 8, 8)}
    qbench.quantize_model(model, "mine_file", "W2A2", "quantized", shrink=0.9)
    method = model.qbench_info.method
    latent = model[0].parametrizations.weight.original
    before = latent.detach().clone()
    opt = torch.optim.SGD(method.param_groups(model), lr=0.1)
    from qbench.run.train import train_step

    train_step(model, method, opt, torch.randn(5, 1, 8, 8), torch.randint(0, 3, (5,)),
               criterion=torch.nn.CrossEntropyLoss())
    assert not torch.equal(before, latent.detach())
    model.eval()
    assert model[0].weight.unique().numel() <= 3


def test_plugin_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError) as exc:
        registry.load_plugin(bad)
    assert "boom" in str(exc.value) and "bad.py" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(PluginError, match="does not exist"):
        registry.load_plugin(tmp_path / "missing.py")


def test_entry_point_plugin_is_loaded(tmp_path, monkeypatch):
    pkg = tmp_path / "thirdparty_qmethods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGIN.format(name="mine_ep_module"))
    dist = tmp_path / "thirdparty_qmethods-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-qmethods\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""
        [qbench.methods]
        mine_ep = thirdparty_qmethods:Mine
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    names = qbench.list_methods("mine_ep*")
    assert {"mine_ep", "mine_ep_module"} <= set(names)  # the entry-point name and the decorator's name
    assert registry.get_method_class("mine_ep") is registry.get_method_class("mine_ep_module")
    assert qbench.create_method("mine_ep", shrink=0.2).hp.shrink == 0.2
    sys.modules.pop("thirdparty_qmethods", None)


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(qbench.errors.ConfigError, match="valid: .*rho"):
        qbench.create_method("bcgd", rhoo=1)
    with pytest.raises(qbench.errors.ConfigError, match="choose one of"):
        qbench.create_method("ste", estimator="tanh")
