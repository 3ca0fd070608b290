"""The theory-gaussian suite as run records, the leaderboard/plots of theory records, warm starts between suite stages
(mnist-lenet5-repel), and the recurrence figure of a real training run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from qbench.config import THEORY_ESTIMATORS, TheoryConfig, load_config, stage_configs
from qbench.errors import ConfigError, QbenchError
from qbench.report import build_leaderboard, load_runs, report
from qbench.results import atomic_write_json
from qbench.bits import parse_bits
from qbench.results import MODEL_FILE
from qbench.run.runner import Cell, run_suite, warm_start
from qbench.theory.gaussian import theory_table
from qbench.theory.suite import estimator_record, method_estimator, plan_theory, run_theory_suite

PNG = b"\x89PNG\r\n\x1a\n"
# A seconds-long version of suites/theory-gaussian.yaml: the same code path, smaller sample sizes.
SMALL_THEORY = ["theory.n_draws=10", "theory.mc_samples=20000", "theory.mc_draws=1", "theory.train_draws=2",
                "theory.train_steps=100", "theory.recurrence.steps=2000", "theory.quadrature_points=2000",
                "theory.estimators=[identity,relu,clipped_relu,aqe]"]
TABLE_KW = dict(n_draws=10, mc_samples=20_000, mc_draws=1, train_draws=2, train_steps=100)


def _records(root: Path, suite: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (root / suite).glob("*/result.json")}


# ----------------------------------------------------------------------------------------------------------- theory
@pytest.fixture(scope="module")
def theory_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("theory")
    cfg = load_config("theory-gaussian", [f"results_dir={root}", *SMALL_THEORY])
    outcome = run_theory_suite(cfg, log=lambda _msg: None)
    report(cfg.name, results_dir=root, formats=("md", "csv"))  # what `qbench run` writes after the records
    return root, cfg, outcome


def test_theory_suite_writes_complete_records_and_tables(theory_run):
    root, cfg, outcome = theory_run
    recs = _records(root, "theory-gaussian")
    expected = {f"{e}_gaussian_s0" for e in ("identity", "relu", "clipped_relu", "aqe")}
    expected |= {"recurrence-binary_gaussian_s0", "recurrence-ternary_gaussian_s0"}
    assert set(recs) == expected and not outcome.failed and len(outcome.results) == len(expected)
    for run_id, rec in recs.items():
        assert rec["status"] == "complete" and rec["kind"] == "theory" and rec["wall_time_s"] > 0, run_id
        assert {"config.yaml", "env.json", "metrics.jsonl", "result.json"} <= {p.name for p in (root / cfg.name /
                                                                                               run_id).iterdir()}
        assert all(rec["checks"].values()), (run_id, rec["checks"])
        rows = (root / cfg.name / run_id / "metrics.jsonl").read_text().splitlines()
        assert len(rows) == (2001 if rec["theory_part"] == "recurrence" else 101)
    identity, relu = recs["identity_gaussian_s0"], recs["relu_gaussian_s0"]
    # STE paper (spec §8): identity's expected coarse gradient does not vanish at θ = π, relu's does; every record
    # carries the metrics the issue asks for.
    assert identity["spurious_grad_norm"] > 0
    assert identity["spurious_grad_norm"] == pytest.approx(identity["spurious_grad_norm_formula"])
    assert relu["spurious_grad_norm"] < 1e-12
    for key in ("cos_mean", "cos_mc_mean", "mc_max_abs_err", "final_theta", "final_loss", "train_loss"):
        assert isinstance(recs["aqe_gaussian_s0"][key], float) and math.isfinite(recs["aqe_gaussian_s0"][key]), key
    assert recs["recurrence-binary_gaussian_s0"]["visits_last_quarter"] > 0
    md = (root / "leaderboards" / "theory-gaussian.md").read_text()
    assert "## Recurrence toy" in md and "| aqe " in md and "3/3 pass" in md
    csv = (root / "leaderboards" / "theory-gaussian.csv").read_text().splitlines()
    assert csv[0] == "part,name,metric,n,mean,std,min,max" and any(line.startswith("estimator,identity,cos_mean,1,")
                                                                   for line in csv)


def test_theory_rerun_skips_and_fresh_reruns(theory_run):
    root, cfg, _ = theory_run
    again = run_theory_suite(cfg, log=lambda _msg: None)
    assert not again.results and len(again.skipped) == 6
    before = json.loads((root / cfg.name / "relu_gaussian_s0" / "result.json").read_text())
    fresh_cfg = load_config("theory-gaussian", [f"results_dir={root}", *SMALL_THEORY[:-1], "theory.estimators=[relu]",
                                                "theory.recurrence.quantizers=[]"])
    fresh = run_theory_suite(fresh_cfg, resume=False, log=lambda _msg: None)
    assert [r["run_id"] for r in fresh.results] == ["relu_gaussian_s0"] and not fresh.skipped
    after = json.loads((root / cfg.name / "relu_gaussian_s0" / "result.json").read_text())
    assert after["cos_mean"] == before["cos_mean"]  # recomputed from the same seeds: the same numbers


def test_theory_report_and_leaderboard(theory_run):
    root, cfg, _ = theory_run
    paths = report(cfg.name, results_dir=root, out_dir=root / "report")
    names = {p.name for p in paths}
    assert {"theory-gaussian.md", "theory-gaussian.csv", "theory-gaussian.html", "theory-gaussian.tex",
            "theory-gaussian_training_s0.png", "theory-gaussian_recurrence_toy_binary_s0.png",
            "theory-gaussian_recurrence_toy_ternary_s0.png"} <= names
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG
    board = build_leaderboard(load_runs(root, cfg.name), suite=cfg.name)  # what `qbench run` prints afterwards
    assert board.kind == "theory"
    assert list(board.table["estimator"]) == ["identity", "relu", "clipped_relu", "aqe"]
    assert list(board.sections[0][1]["Q"]) == ["binary", "ternary"]
    assert "<h2>Recurrence toy" in (root / "report" / "theory-gaussian.html").read_text()


def test_builtin_records_reproduce_theory_table():
    """One estimator at a time gives theory_table's numbers exactly (same seed streams, same Monte Carlo samples)."""
    config = TheoryConfig(**TABLE_KW)
    table = theory_table(3, config)
    for name in THEORY_ESTIMATORS:
        row, curves = estimator_record(name, 3, config)
        for column in ("cos_mean", "cos_min", "cos_mc_mean", "mc_max_abs_err", "mc_max_z", "spurious_grad_norm",
                       "spurious_grad_norm_mc", "train_final_loss", "train_final_theta", "train_loss_rise_rate"):
            assert row[column] == table.loc[name, column], (name, column)
        assert curves["loss"][-1] == row["train_final_loss"]


def test_method_estimators_are_the_methods_backward():
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    # the STE method's clipped ReLU at α = 1 and 1 bit: μ' = 1{0 < x ≤ 1}; AQE at α = ½: 2α·1{|x| ≤ 1} (eq. 22)
    assert torch.equal(method_estimator("ste:alpha=1.0")(x), ((x > 0) & (x <= 1)).double())
    assert torch.equal(method_estimator("aqe")(x), (x.abs() <= 1).double())
    with pytest.raises(ConfigError, match="no activation quantizer"):
        method_estimator("fp")
    with pytest.raises(ConfigError, match="unknown config key 'theory.n_drawz'") as unknown:
        load_config("theory-gaussian", ["theory.n_drawz=3"])
    assert "\n" not in str(unknown.value)  # one line, naming the valid keys
    with pytest.raises(ConfigError, match="neither identity, relu, clipped_relu nor"):
        cfg = load_config("theory-gaussian", ["theory.estimators=[no_such_method]"])
        run_theory_suite(cfg, log=lambda _msg: None)


@pytest.mark.parametrize("override, message", [
    ("theory.recurrence.stepz=3", "unknown config key 'theory.recurrence.stepz'"),
    ("theory.estimators=relu", "bad value for 'theory.estimators'"),
    ("theory.estimators=[relu,relu]", "lists an estimator twice"),
    ("theory.recurrence.quantizers=[tern]", "unknown theory.recurrence quantizer 'tern'"),
    ("theory.mc_draws=500", "theory.mc_draws must be between 0 and theory.n_draws=200"),
    ("theory.quadrature_points=0", "theory.quadrature_points=0 must be"),
    ("theory.clip=0", "theory.clip=0.0 must be a finite number > 0"),
    ("theory.train_lr=-1", "theory.train_lr=-1.0 must be a finite number > 0"),
    ("theory.recurrence.lr=nan", "theory.recurrence.lr=nan must be a finite number > 0"),
])
def test_the_typed_config_validates_the_theory_block(override, message):
    """What the theory runner relies on: qbench.config rejects a bad ``theory:`` block in one line, before any run."""
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_config("theory-gaussian", [override])
    assert "\n" not in str(error.value)


def test_estimators_and_quantizers_cannot_both_be_empty():
    with pytest.raises(ConfigError, match="both empty"):
        load_config("theory-gaussian", ["theory.estimators=[]", "theory.recurrence.quantizers=[]"])


# ------------------------------------------------------------------------------------------------- stages + warm start
REPEL_FAST = ["train.epochs=2", "data.train_subset=640", "seeds=[0]"]


@pytest.fixture(scope="module")
def repel_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("repel")
    cfg = load_config("mnist-lenet5-repel", [f"results_dir={root}", *REPEL_FAST])
    outcome = run_suite(cfg, progress=False, log=lambda _msg: None)
    return root, cfg, outcome


BASE = "base_ste-estimator=clipped_relu_lenet5_W32A4_quantized_s0"
CONTINUE = ("continue_ste-estimator=identity_lenet5_W32A4_quantized_s0",
            "continue_ste-estimator=clipped_relu_lenet5_W32A4_quantized_s0")


def test_repel_suite_runs_both_stages_end_to_end(repel_run):
    root, cfg, outcome = repel_run
    recs = _records(root, cfg.name)
    assert set(recs) == {BASE, *CONTINUE} and not outcome.failed
    assert all(r["status"] == "complete" and r["epochs_completed"] == 2 for r in recs.values())
    assert (root / cfg.name / BASE / MODEL_FILE).is_file()  # kept: model.save_final in the base stage
    assert not any((root / cfg.name / r / MODEL_FILE).exists() for r in CONTINUE)
    starts = {recs[r]["init_loss_q"] for r in CONTINUE}
    assert len(starts) == 1 and all(recs[r]["init_from_run"] == BASE for r in CONTINUE)
    assert all(isinstance(recs[r]["final_loss_q"], float) for r in CONTINUE)
    # Re-running skips all three; the leaderboard keeps the stages apart and says where continuations started.
    assert len(run_suite(cfg, progress=False, log=lambda _msg: None).skipped) == 3
    board = build_leaderboard(load_runs(root, cfg.name), suite=cfg.name)
    labels = set(board.table.iloc[:, 0])
    assert labels == {"base: ste [estimator=clipped_relu]", "continue: ste [estimator=identity]",
                      "continue: ste [estimator=clipped_relu]"}
    assert any(note.startswith("`continue: ste [estimator=identity]` continues `" + BASE) for note in board.notes)
    paths = report(cfg.name, results_dir=root, formats=["md"])
    names = {p.name for p in paths}
    assert {f"{cfg.name}_curves_mnist5k_lenet5_W32A4_base.png",
            f"{cfg.name}_curves_mnist5k_lenet5_W32A4_continue.png"} <= names


def _fresh_model():
    from qbench.run.models import create_model
    from qbench.quant.apply import quantize_model
    from qbench.registry import create_method

    torch.manual_seed(123)
    model = create_model("lenet5", num_classes=10, in_chans=1, input_size=(1, 28, 28))
    quantize_model(model, create_method("ste", estimator="identity"), "W32A4", "quantized", input_size=(1, 28, 28))
    return model


def test_warm_start_loads_exactly_the_source_weights(repel_run):
    root, cfg, _ = repel_run
    saved = torch.load(root / cfg.name / BASE / MODEL_FILE, weights_only=True)
    model = _fresh_model()
    assert not torch.equal(model.state_dict()["conv1.weight"], saved["conv1.weight"])
    cell = Cell("ste", "lenet5", parse_bits("W32A4"), "quantized", 0)
    template = "base_ste-estimator=clipped_relu_{arch}_{bits}_{policy}_s{seed}"
    assert warm_start(model, root / cfg.name, cell, template) == BASE
    state = model.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():  # weights, BN running statistics and the quantizers' α, bit for bit
        assert torch.equal(state[key], value), key


def test_warm_start_errors_name_the_fix(tmp_path):
    cell = Cell("ste", "lenet5", parse_bits("W32A4"), "quantized", 0)
    with pytest.raises(QbenchError, match="is not run"):
        warm_start(_fresh_model(), tmp_path, cell, "missing_s{seed}")
    atomic_write_json(tmp_path / "done_s0" / "result.json", {"status": "complete"})
    with pytest.raises(QbenchError, match="model.save_final=true"):
        warm_start(_fresh_model(), tmp_path, cell, "done_s{seed}")
    with pytest.raises(QbenchError, match="bad placeholder"):
        warm_start(_fresh_model(), tmp_path, cell, "done_s{epoch}")


def test_stages_resolve_with_overrides_and_reject_bad_stages():
    cfg = load_config("mnist-lenet5-repel", ["train.epochs=3", "stages.continue.train.lr=1e-3"])
    base, cont = stage_configs(cfg)
    assert (base.stage, base.train.epochs, base.train.lr, base.model.save_final) == ("base", 3, 0.1, True)
    assert (cont.stage, cont.train.epochs, cont.train.lr, cont.model.save_final) == ("continue", 3, 1e-3, False)
    with pytest.raises(ConfigError, match="used twice"):
        load_config("mnist-lenet5-repel", ["stages=[{name: a}, {name: a}]"])
    with pytest.raises(ConfigError, match="may only change"):
        load_config("mnist-lenet5-repel", ["stages=[{name: a, results_dir: x}]"])
    with pytest.raises(ConfigError, match="no stage named 'nope'"):
        load_config("mnist-lenet5-repel", ["stages.nope.train.lr=1"])


# ----------------------------------------------------------------------------- recurrence figure of a real training run
def test_report_draws_the_recurrence_figure_of_a_real_run(tmp_path):
    cfg = load_config("quickstart", ["data.name=digits", "methods=[ste]", "bits=[W1A4]", "seeds=[0]", "train.epochs=2",
                                     "data.batch_size=64", f"results_dir={tmp_path}"])
    run_suite(cfg, progress=False, log=lambda _msg: None)
    rows = [json.loads(line) for line in
            (tmp_path / "quickstart" / "ste_lenet5_W1A4_fp_s0" / "metrics.jsonl").read_text().splitlines()]
    assert all({"loss_q", "hamming_to_best", "flip_rate"} <= set(row) for row in rows)
    paths = report("quickstart", results_dir=tmp_path, formats=["md"])
    figure = [p for p in paths if p.name.startswith("quickstart_recurrence_")]
    expected = [f"quickstart_recurrence_digits_lenet5_W1A4.{ext}" for ext in ("png", "svg", "pdf")]
    assert [p.name for p in figure] == expected
    assert figure[0].read_bytes()[:8] == PNG


def test_saved_configs_reproduce_one_record_with_from(theory_run, repel_run):
    """`qbench run --from <run>/config.yaml`: the saved config loads (its `cell` is not a config key) and plans exactly
    that run — a stage cell keeps its stage and warm start, a theory record its one estimator."""
    from qbench.run.runner import plan_cells

    root, cfg, _ = theory_run
    saved = load_config(None, [], from_file=root / cfg.name / "relu_gaussian_s0" / "config.yaml")
    assert [item["run_id"] for item in plan_theory(saved)] == ["relu_gaussian_s0"]
    root, cfg, _ = repel_run
    saved = load_config(None, [], from_file=root / cfg.name / CONTINUE[0] / "config.yaml")
    assert [c.run_id for c in plan_cells(saved)] == [CONTINUE[0]] and saved.model.init_from_run.startswith("base_")
