"""Run records for the report tests, in the runner's real format.

Every run directory is written with the qbench.results writers: ``config.yaml`` is the suite config narrowed to the
cell with its ``cell:`` block (what :func:`qbench.run.runner.cell_config` writes), ``result.json`` holds the method's
full hyperparameters (the registered defaults updated with the overrides, as :class:`qbench.method.Method` records
them), and a killed run is a folder without ``result.json``. The helpers are handed out as fixtures because test
modules of this folder cannot import each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from qbench.report import load_runs
from qbench.report.load import method_defaults
from qbench.results import SCHEMA_VERSION, atomic_write_json, atomic_write_text, write_jsonl

SUITE = "toy"


def write_run(
    root: Path,
    method: str,
    bits: str,
    seed: int,
    acc: float | None = None,
    *,
    suite: str = SUITE,
    arch: str = "resnet20_cifar",
    dataset: str = "cifar10",
    status: str = "complete",
    tuned: bool = False,
    hparams: dict | None = None,
    policy: str = "fp",
    device: str = "cpu",
    device_name: str = "Test CPU",
    train_img_s: float = 100.0,
    top5: float | None = None,
    val_curve: list[float] | None = None,
    with_result: bool = True,
    result_overrides: dict | None = None,
) -> Path:
    """One run directory as the runner writes it; ``with_result=False`` mimics a run killed before finishing."""
    wbits, abits = (int(x) for x in bits[1:].split("A"))
    variant = "".join(f"-{k}={v}" for k, v in sorted((hparams or {}).items()))
    run_id = f"{method}{'-tuned' if tuned else ''}{variant}-{dataset}-{arch}-{bits}-{policy}-{device}-s{seed}"
    run_dir = root / suite / run_id
    spec = method + (":" + ",".join(f"{k}={v}" for k, v in sorted(hparams.items())) if hparams else "")
    config = {
        "name": suite, "kind": "train", "data": {"name": dataset, "root": "/data"}, "model": {"archs": [arch]},
        "methods": [spec], "method_hparams": {}, "bits": [bits], "seeds": [seed], "policies": [policy],
        "train": {"epochs": 3, "lr": 0.1, "milestones": [1, 2]}, "tuned": tuned,
        "cell": {"method": spec, "arch": arch, "bits": bits, "policy": policy, "seed": seed, "tuned": tuned,
                 "stage": "", "run_id": run_id},
    }
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    curve = val_curve if val_curve is not None else [(acc or 50.0) - 20, (acc or 50.0) - 10, acc or 50.0]
    write_jsonl(run_dir / "metrics.jsonl", [
        dict(epoch=i, lr=0.1, train_loss=2.0 - 0.5 * i, train_acc=v + 1, val_loss=2.1 - 0.5 * i, val_top1=v,
             val_top5=None, epoch_time_s=10.0, train_img_s=train_img_s, wall_time_s=10.0 * (i + 1),
             loss_q=1.0 / (i + 1), hamming_to_best=0.3 / (i + 1), flip_rate=0.05 / (i + 1))
        for i, v in enumerate(curve)
    ])
    atomic_write_json(run_dir / "env.json", {"qbench": "0.1.0", "torch": "2.x", "device": device})
    if not with_result:
        return run_dir
    result = dict(
        schema_version=SCHEMA_VERSION, qbench_version="0.1.0", suite=suite, run_id=run_id, status=status,
        error=None if status == "complete" else f"{status} at epoch 2", method=method, tuned=tuned,
        method_hparams={**method_defaults(method), **(hparams or {})}, arch=arch, bits=bits, wbits=wbits,
        abits=abits, policy=policy, seed=seed, dataset=dataset, epochs=3,
        epochs_completed=3 if status == "complete" else 2,
        test_top1=acc if status == "complete" else None, test_top5=top5, test_loss=0.5, val_top1=curve[-1],
        best_val_top1=max(curve), train_loss=0.4, wall_time_s=30.0, train_img_s=train_img_s,
        infer_img_s=3 * train_img_s, peak_mem_mb=512.0, device=device, device_name=device_name, num_params=1000,
        num_quantized_params=900, model_size_bits=900 * wbits + 100 * 32, kind="train", stage=None,
    )
    result.update(result_overrides or {})
    atomic_write_json(run_dir / "result.json", result)
    return run_dir


def standard_suite(root: Path) -> None:
    """FP, two methods (one also tuned), a failed run, a diverged cell, a killed run and a missing seed."""
    for seed, acc in enumerate([91.0, 91.5, 92.0]):
        write_run(root, "fp", "W32A32", seed, acc)
    for seed, acc in enumerate([88.0, 88.4, 88.9]):
        write_run(root, "bcgd", "W1A4", seed, acc)
    for seed, acc in enumerate([89.0, 89.2, 89.1]):
        write_run(root, "bcgd", "W1A4", seed, acc, tuned=True)
    write_run(root, "ste", "W1A4", 0, 86.0)
    write_run(root, "ste", "W1A4", 1, 87.4)
    write_run(root, "ste", "W1A4", 2, status="failed")
    for seed in range(3):
        write_run(root, "bcgd", "W1A2", seed, status="diverged")
    write_run(root, "ste", "W1A2", 0, 80.0)
    write_run(root, "ste", "W1A2", 1, 81.0)
    write_run(root, "ste", "W1A2", 2, with_result=False)  # killed
    write_run(root, "aqe", "W1A2", 0, 79.0)  # seeds 1 and 2 never ran


#: the zoo-quickstart plan: every shipped method at the bit-widths it runs there (zoo_suite)
ZOO_BITS = {
    "ste": ("W1A1", "W2A2", "W4A4", "W1A32", "W2A32"), "bcgd": ("W1A1", "W2A2", "W4A4"), "aqe": ("W2A2", "W4A4"),
    "pcg": ("W1A1", "W2A2", "W4A4"), "lbw": ("W1A1", "W2A2", "W4A4"), "binaryconnect": ("W1A32",),
    "bnn": ("W1A1",), "xnor": ("W1A1",), "bwn": ("W1A32",), "twn": ("W2A32",), "binaryrelax": ("W1A32", "W2A32"),
    "dorefa": ("W1A1", "W2A2", "W4A4"), "pact": ("W2A2", "W4A4"), "lsq": ("W2A2", "W4A4"),
    "dsq": ("W1A1", "W2A2", "W4A4"), "irnet": ("W1A1",), "bireal": ("W1A1",), "proxquant": ("W1A32",),
}


def zoo_suite(root: Path, suite: str = "zoo") -> None:
    """A zoo-sized suite: FP and 18 methods at their bit-widths (``ZOO_BITS``), two seeds, a tuned row, with close
    accuracies and throughputs (so figures are crowded) and the recurrence diagnostics in every curve."""
    def jitter(*key) -> float:  # deterministic noise in [0, 1)
        return int(hashlib.sha1(repr(key).encode()).hexdigest(), 16) % 1000 / 1000.0

    for seed in range(2):
        write_run(root, "fp", "W32A32", seed, 97.8 + 0.2 * seed, suite=suite, arch="lenet5", dataset="mnist5k",
                  train_img_s=1300.0)
    for method, bits_list in ZOO_BITS.items():
        for bits in bits_list:
            wbits, abits = (int(x) for x in bits[1:].split("A"))
            base = 97.5 - 6.0 / wbits - (3.0 / abits if abits < 32 else 0.0)
            for seed in range(2):
                acc = round(base + 1.5 * jitter(method, bits) + 0.3 * seed, 2)
                speed = 2600.0 + 900.0 * jitter(method, bits, "speed")
                write_run(root, method, bits, seed, acc, suite=suite, arch="lenet5", dataset="mnist5k",
                          train_img_s=speed)
                if method == "ste" and bits in ("W1A1", "W4A4"):
                    write_run(root, method, bits, seed, acc - 0.4, suite=suite, arch="lenet5", dataset="mnist5k",
                              train_img_s=speed * 0.4, tuned=True)


@pytest.fixture(name="zoo_suite", scope="session")
def zoo_suite_fixture():
    """:func:`zoo_suite`: 19 methods at the zoo's bit-widths, two seeds each."""
    return zoo_suite


@pytest.fixture(name="write_run")
def write_run_fixture():
    """:func:`write_run`: one run directory in the runner's format."""
    return write_run


@pytest.fixture(name="standard_suite")
def standard_suite_fixture():
    """:func:`standard_suite`: a suite with every kind of run status."""
    return standard_suite


@pytest.fixture
def suite_runs(tmp_path: Path) -> pd.DataFrame:
    standard_suite(tmp_path / "results")
    return load_runs(tmp_path / "results", SUITE)


def cell(board, method: str, column: str) -> str:
    table = board.table.set_index("method")
    return table.loc[method, column]


@pytest.fixture(name="cell")
def cell_fixture():
    """``cell(board, method, column)``: one cell of a board's accuracy table."""
    return cell


def layout_problems(fig) -> list[str]:
    """What a reader would trip over in ``fig``, from the renderer's bounding boxes (``get_window_extent``): any
    text or legend outside the figure, a legend over a data panel or another legend, a point label outside its panel
    or over another label or a legend, tick labels of one axis on top of each other. Empty when the figure reads."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    tol = 1.0  # pixel

    def outside(box) -> bool:
        return box.x0 < frame.x0 - tol or box.y0 < frame.y0 - tol or box.x1 > frame.x1 + tol or box.y1 > frame.y1 + tol

    def overlap(a, b) -> bool:
        return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol

    problems = []
    data_axes = [ax for ax in fig.axes if ax.axison]
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    legend_boxes = [leg.get_window_extent(renderer) for leg in legends]
    for i, box in enumerate(legend_boxes):
        if outside(box):
            problems.append(f"legend {i} lies outside the figure")
        for ax in data_axes:
            if overlap(box, ax.get_window_extent(renderer)):
                problems.append(f"legend {i} covers the panel {ax.get_title()!r}")
        problems += [f"legends {i} and {j} overlap" for j, other in enumerate(legend_boxes[:i]) if overlap(box, other)]
    for text in fig.texts:  # the figure's title
        if text.get_visible() and text.get_text():
            problems += [f"legend {i} covers the title" for i, box in enumerate(legend_boxes)
                         if overlap(box, text.get_window_extent(renderer))]
    labels = []
    for ax in data_axes:
        panel = ax.get_window_extent(renderer)
        for text in ax.texts:
            if text.get_visible() and text.get_text():
                box = text.get_window_extent(renderer)
                if outside(box) or box.x0 < panel.x0 - tol or box.x1 > panel.x1 + tol or box.y0 < panel.y0 - tol \
                        or box.y1 > panel.y1 + tol:
                    problems.append(f"label {text.get_text()!r} lies outside its panel")
                labels.append((text.get_text(), box))
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            ticks = [t.label1.get_window_extent(renderer) for t in axis.get_major_ticks()
                     if t.get_visible() and t.label1.get_visible() and t.label1.get_text()
                     and low <= t.get_loc() <= high]  # the ticks drawn: inside the view
            problems += [f"tick labels overlap on {ax.get_title()!r}" for a, b in zip(ticks, ticks[1:]) if overlap(a, b)]
            problems += [f"tick label of {ax.get_title()!r} lies outside the figure" for box in ticks if outside(box)]
    for i, (text, box) in enumerate(labels):
        problems += [f"labels {text!r} and {other!r} overlap" for other, other_box in labels[:i]
                     if overlap(box, other_box)]
        problems += [f"label {text!r} is under a legend" for legend_box in legend_boxes if overlap(box, legend_box)]
    from matplotlib.text import Text

    tick_texts = {id(label) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                  for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()] for label in (tick.label1, tick.label2)}
    hidden = [ax for ax in fig.axes if not ax.axison]  # legend holders: their own axis texts are never drawn
    for text in fig.findobj(Text):
        if id(text) in tick_texts or any(text in (ax.title, ax.xaxis.label, ax.yaxis.label) for ax in hidden):
            continue
        if text.get_visible() and str(text.get_text()).strip() and outside(text.get_window_extent(renderer)):
            problems.append(f"text {text.get_text()!r} lies outside the figure")
    return problems


@pytest.fixture(name="layout_problems", scope="session")
def layout_problems_fixture():
    """:func:`layout_problems`: what a reader would trip over in a figure (empty when it reads)."""
    return layout_problems
