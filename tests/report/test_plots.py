"""qbench.report.plots: every plot is written headless as a real PNG (with SVG and PDF beside it), from run records
written with qbench.results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qbench.errors import QbenchError
from qbench.report import load_runs, report
from qbench.report.plots import plot_accuracy_vs_bits, plot_curves, plot_pareto, plot_recurrence, plot_recurrence_toy
from qbench.results import SCHEMA_VERSION, atomic_write_json, atomic_write_text, write_jsonl

SUITE = "toy"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(root: Path, method: str, bits: str, seed: int, acc: float, *, device: str = "cpu",
              diagnostics: bool = True, status: str = "complete") -> Path:
    wbits, abits = (int(x) for x in bits[1:].split("A"))
    run_id = f"{method}-{bits}-{device}-s{seed}"
    run_dir = root / SUITE / run_id
    cell = {"method": method, "arch": "lenet5", "bits": bits, "policy": "fp", "seed": seed, "tuned": False, "stage": "",
            "run_id": run_id}
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump({"name": SUITE, "data": {"name": "mnist"}, "cell": cell}))
    rows = []
    for epoch in range(4):
        row = dict(epoch=epoch, lr=0.1, train_loss=2.0 / (epoch + 1), train_acc=acc - 8 + 2 * epoch,
                   val_loss=2.2 / (epoch + 1), val_top1=acc - 9 + 3 * epoch, val_top5=None, epoch_time_s=5.0,
                   train_img_s=100.0, wall_time_s=5.0 * (epoch + 1))
        if diagnostics:
            row.update(loss_q=1.5 / (epoch + 1), hamming_to_best=[0.3, 0.0, 0.1, 0.0][epoch], flip_rate=0.02)
        rows.append(row)
    write_jsonl(run_dir / "metrics.jsonl", rows)
    # throughput grows with the weight bits, so the Pareto plot has a spread on its cost axis
    train_img_s = {"cpu": 100.0, "cuda": 5000.0}[device] * wbits / 32 + acc
    atomic_write_json(run_dir / "result.json", dict(
        schema_version=SCHEMA_VERSION, qbench_version="0.1.0", suite=SUITE, run_id=run_id, status=status, error=None,
        method=method, tuned=False, method_hparams={}, arch="lenet5", bits=bits, wbits=wbits, abits=abits,
        policy="fp", seed=seed, dataset="mnist", epochs=4, epochs_completed=4,
        test_top1=acc if status == "complete" else None, test_top5=None, test_loss=0.1, val_top1=acc,
        best_val_top1=acc, train_loss=0.1, wall_time_s=20.0, train_img_s=train_img_s, infer_img_s=300.0,
        peak_mem_mb=100.0, device=device, device_name={"cpu": "Test CPU", "cuda": "Test GPU"}[device],
        num_params=1000, num_quantized_params=900, model_size_bits=900 * wbits + 3200,
    ))
    return run_dir


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for seed in range(2):
        write_run(root, "fp", "W32A32", seed, 99.0 + 0.1 * seed)
        for bits, base in (("W1A4", 97.0), ("W1A2", 95.0), ("W2A2", 96.0)):
            write_run(root, "bcgd", bits, seed, base + 0.2 * seed)
            write_run(root, "ste", bits, seed, base - 1 + 0.3 * seed, diagnostics=False)
    write_run(root, "bcgd", "W1A4", 0, 97.5, device="cuda")
    write_run(root, "ste", "W1A1", 0, 10.0, status="diverged")
    return root


def assert_png(path: Path) -> None:
    data = Path(path).read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > 2000, path  # a drawn figure, not an empty canvas


def assert_figure(path: Path) -> None:
    """A real PNG, SVG or PDF (by its suffix)."""
    if path.suffix == ".png":
        return assert_png(path)
    data = path.read_bytes()
    assert data.startswith(b"%PDF-" if path.suffix == ".pdf" else b"<?xml"), path
    if path.suffix == ".svg":
        assert b"<svg" in data[:1000]


def test_each_plot_writes_a_png(results, tmp_path):
    runs = load_runs(results, SUITE)
    assert_png(plot_accuracy_vs_bits(runs, tmp_path / "acc.png"))
    assert_png(plot_pareto(runs, tmp_path / "pareto.png"))
    assert_png(plot_pareto(runs, tmp_path / "pareto_wall.png", cost="wall_time_s"))
    run_dir = results / SUITE / "bcgd-W1A4-cpu-s0"
    assert_png(plot_curves(run_dir, tmp_path / "curves_dir.png"))
    rows = runs["metrics"].iloc[0]
    assert_png(plot_curves(rows, tmp_path / "curves_rows.png"))
    assert_png(plot_curves({"bcgd": [rows, rows], "ste": rows}, tmp_path / "curves_map.png", title="t"))
    assert_png(plot_recurrence(run_dir, tmp_path / "recurrence.png"))


def test_recurrence_toy_figure_from_rows_is_written_atomically(tmp_path):
    # The per-step rows of a theory suite's recurrence record (qbench.theory.suite.recurrence_record): the figure needs
    # nothing but them and the record's quantizer, η and optimum loss.
    rows = [{"step": t, "loss_q": 1.0 + (t % 7) / 10, "hamming": (t % 7) / 20, "flip_rate": 0.05, "visit": t % 7 == 0}
            for t in range(401)]
    path = plot_recurrence_toy(rows, tmp_path / "toy" / "rec.png", quantizer="binary", lr=0.05, optimum_loss=1.0)
    assert_png(path)
    # no temporary file left behind; the vector copies sit beside the PNG
    assert sorted(p.name for p in path.parent.iterdir()) == ["rec.pdf", "rec.png", "rec.svg"]


def test_recurrence_without_diagnostics_is_a_clear_error(results, tmp_path):
    with pytest.raises(QbenchError, match="no recurrence diagnostics"):
        plot_recurrence(results / SUITE / "ste-W1A4-cpu-s0", tmp_path / "r.png")
    with pytest.raises(QbenchError, match="unknown cost"):
        plot_pareto(load_runs(results, SUITE), tmp_path / "p.png", cost="flops")


def test_write_plots_and_report_write_all_pngs(results, tmp_path):
    out = results / "leaderboards"
    written = report(SUITE, results_dir=results)  # the tables, write_plots' figures and the CD diagram
    assert {p.suffix for p in written} == {".md", ".csv", ".html", ".tex", ".png", ".svg", ".pdf"}
    assert all(p.parent == out for p in written)
    paths = [p for p in written if p.suffix in (".png", ".svg", ".pdf") and not p.stem.endswith("_cd")]
    names = {p.name for p in paths}
    assert {f"{SUITE}_accuracy_vs_bits.png", f"{SUITE}_pareto.png", f"{SUITE}_curves_mnist_lenet5_W1A4.png",
            f"{SUITE}_recurrence_mnist_lenet5_W1A4.png"} <= names
    assert f"{SUITE}_recurrence_mnist_lenet5_W32A32.png" in names  # FP logged diagnostics too
    for path in paths:
        assert path.parent == out
        assert_figure(path)
    assert sorted(p.name for p in paths) == sorted(f"{p.stem}.{fmt}" for p in paths for fmt in ("png", "svg", "pdf")
                                                   if p.suffix == ".png")


def test_plots_run_headless_and_import_lazily(results, tmp_path):
    # No display, and a backend that would need one: the Agg canvas is used regardless.
    code = (
        "import os, sys\n"
        "os.environ.pop('DISPLAY', None); os.environ['MPLBACKEND'] = 'TkAgg'\n"
        "import qbench.report.plots\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at module import'\n"
        "from qbench.report import load_runs\n"
        f"p = qbench.report.plots.plot_accuracy_vs_bits(load_runs({str(results)!r}, 'toy'), {str(tmp_path / 'h.png')!r})\n"
        "assert open(p, 'rb').read(8) == b'\\x89PNG\\r\\n\\x1a\\n'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
