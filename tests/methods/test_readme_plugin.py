"""The README's "Adding a method" example is the whole plugin: extracted from README.md, it registers its method,
trains it for one tiny epoch through the CLI and is listed by ``qbench list methods --plugin``."""

import json
import re
from pathlib import Path

import optuna

import qbench
from qbench.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Adding a method (no edit of qbench)"


def _example_code() -> str:
    section = README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section should hold exactly one python block, the plugin file"
    return blocks[0]


def test_readme_plugin_trains_one_epoch_and_is_listed(tmp_path, capsys, one_thread):
    plugin = tmp_path / "my_method.py"
    plugin.write_text(_example_code())
    results = tmp_path / "results"
    rc = main(["run", "suite=quickstart", "methods=[mine]", "bits=[W2A4]", "seeds=[0]", "data.name=digits",
               "train.epochs=1", f"results_dir={results}", "--plugin", str(plugin), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    records = [json.loads(p.read_text()) for p in results.glob("quickstart/*/result.json")]
    assert [(r["method"], r["bits"], r["epochs_completed"], r["error"]) for r in records] == [("mine", "W2A4", 1, None)]

    capsys.readouterr()
    assert main(["list", "methods", "mine", "--plugin", str(plugin)]) == 0
    listed = capsys.readouterr().out
    assert listed.splitlines()[1].startswith("mine  [weight quantizer]") and "threshold = 0.7" in listed

    # Its search space is the three ranges its hyperparameters declare.
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    assert list(qbench.create_method("mine").search_space(trial)) == ["threshold", "estimator", "shrink"]
