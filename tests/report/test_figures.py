"""Figures that read: one colour and marker per method in every figure, facets by family for a crowded figure,
legends outside the panels, point labels that collide with nothing (checked on the renderer's bounding boxes), and
PNG + SVG + PDF written byte-stable."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from qbench.registry import get_method_class, list_methods
from qbench.report import build_leaderboard, load_runs
from qbench.report.figure import (FAMILIES, METHOD_STYLES, MethodStyle, base_method, family_groups, figure_style,
                                  method_style)
from qbench.report.plots import (accuracy_vs_bits_figure, curves_figure, pareto_figure, recurrence_figure,
                                 recurrence_toy_figure, theory_training_figure, write_plots)

ZOO = "zoo"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("zoo") / "results"
    request.getfixturevalue("zoo_suite")(root, ZOO)
    runs = load_runs(root, ZOO)
    return root, runs, build_leaderboard(runs).cells


def _line_styles(fig) -> dict[str, tuple[str, str]]:
    """{legend label: (colour, marker)} of the data lines and point sets of ``fig``."""
    from matplotlib.colors import to_hex

    styles = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                styles[line.get_label()] = (to_hex(line.get_color()), line.get_marker())
        for container in ax.containers:  # errorbar: the data line is the container's first artist
            line = container.lines[0]
            styles[container.get_label()] = (to_hex(line.get_color()), line.get_marker())
    return styles


def test_every_shipped_method_has_its_own_style_in_its_family():
    # The shipped methods are those of the methods/ package (a plugin another test loaded is not shipped).
    shipped = {name for name in list_methods() if get_method_class(name).__module__.startswith("qbench.methods.")}
    assert set(METHOD_STYLES) == shipped  # a new shipped method gets a fixed entry here
    for name, style in METHOD_STYLES.items():
        assert style.family == get_method_class(name).family
    pairs = {(s.color, s.marker) for s in METHOD_STYLES.values()}
    assert len(pairs) == len(METHOD_STYLES) >= 19
    for family in FAMILIES:
        members = [s for s in METHOD_STYLES.values() if s.family == family]
        assert len({s.color for s in members}) == len(members) and len({s.marker for s in members}) == len(members)


def test_a_method_keeps_its_style_whatever_else_is_drawn(zoo):
    _, _, cells = zoo
    with figure_style():
        crowded_figure = accuracy_vs_bits_figure(cells)
        assert crowded_figure.get_size_inches()[0] == pytest.approx(7.0)  # 19 methods: the text width of a paper
        crowded = _line_styles(crowded_figure)
        alone = _line_styles(accuracy_vs_bits_figure(cells[cells["method_name"].isin(["fp", "ste", "pcg"])]))
    for label in ("ste", "pcg", "ste (tuned)"):
        assert crowded[label] == alone[label]
    assert crowded["ste"] == (METHOD_STYLES["ste"].color, METHOD_STYLES["ste"].marker)
    assert len({crowded[label] for label in crowded if label in METHOD_STYLES}) == \
        len([label for label in crowded if label in METHOD_STYLES])  # no two methods alike in one figure


def test_variants_keep_the_colour_and_plugins_get_a_stable_family_colour():
    ste = method_style("ste")
    tuned = method_style("ste (tuned)")
    variant = method_style("ste [estimator=identity]", "ste")
    staged = method_style("base: ste")
    assert tuned.color == variant.color == staged.color == ste.color
    assert (tuned.linestyle, tuned.filled) == ("--", False) and variant.marker != ste.marker
    assert base_method("base: ste [estimator=identity] (tuned)") == "ste"
    plugin = method_style("my_plugin_method")
    assert plugin == method_style("my_plugin_method") and plugin.family == "other"
    assert isinstance(plugin, MethodStyle) and plugin.color not in {s.color for s in METHOD_STYLES.values()}


def test_a_crowded_figure_gets_one_panel_per_family_and_a_small_one_stays_whole(zoo):
    _, runs, cells = zoo
    labels = list(dict.fromkeys(cells["method"]))
    assert [family for family, _ in family_groups(labels)] == ["weight quantizer", "activation estimator",
                                                                "update rule"]
    assert family_groups(["fp", "ste", "bcgd"]) == [(None, ["fp", "ste", "bcgd"])]
    with figure_style():
        fig = accuracy_vs_bits_figure(cells)
        titles = [ax.get_title() for ax in fig.axes if ax.axison]
        assert titles == ["weight quantizer", "activation estimator", "update rule"]
        small = accuracy_vs_bits_figure(cells[cells["method_name"].isin(["fp", "ste", "bcgd"])])
        assert len([ax for ax in small.axes if ax.axison]) == 1


def test_zoo_figures_have_no_legend_or_label_outside_or_overlapping(zoo, layout_problems):
    root, runs, cells = zoo
    metrics = {label: list(group["metrics"]) for label, group in runs[runs["bits"] == "W1A1"].groupby("method")}
    with figure_style():
        figures = {
            "accuracy": accuracy_vs_bits_figure(cells), "pareto": pareto_figure(cells),
            "curves": curves_figure(metrics, title="zoo W1A1"), "recurrence": recurrence_figure(metrics),
            "small pareto": pareto_figure(cells[cells["method_name"].isin(["fp", "ste", "bcgd", "lbw"])]),
        }
        for name, fig in figures.items():
            assert layout_problems(fig) == [], name
            legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
            assert legends, name
        labelled = [t.get_text() for ax in figures["pareto"].axes for t in ax.texts]
        assert len(labelled) >= 10 and set(labelled) <= set(cells["bits"])  # labels where there is room, only there


def test_theory_figures_read_too(layout_problems):
    steps = range(0, 201)
    curves = {name: [{"step": t, "loss": 10 ** (-t / (20 + i)), "loss_median": 10 ** (-t / (30 + i)),
                      "theta": 2.0 / (1 + t / (5 + i)), "theta_median": 2.2 / (1 + t / (9 + i))} for t in steps]
              for i, name in enumerate(["identity", "relu", "clipped_relu", "ste:alpha=1.0", "aqe"])}
    rows = [{"loss_q": 1.0 + (t % 7) / 10, "hamming": (t % 7) / 20, "visit": t % 7 == 0} for t in range(4001)]
    with figure_style():
        figures = {"training": theory_training_figure(curves, title="theory-gaussian: coarse gradient descent, seed 0"),
                   "toy": recurrence_toy_figure(rows, quantizer="binary", lr=0.05, optimum_loss=1.0)}
        for name, fig in figures.items():
            assert fig.legends and layout_problems(fig) == [], name


def test_the_layout_check_catches_a_legend_on_the_data_and_colliding_labels(zoo, layout_problems):
    _, _, cells = zoo
    with figure_style():
        fig = pareto_figure(cells)
        ax = next(ax for ax in fig.axes if ax.axison)
        ax.legend(loc="center")
        ax.annotate("W1A1", (0.5, 0.5), xycoords="axes fraction")
        ax.annotate("W2A2", (0.5, 0.5), xycoords="axes fraction")
        ax.annotate("W4A4", (1.3, 0.5), xycoords="axes fraction")
        problems = layout_problems(fig)
    assert any("covers the panel" in p for p in problems)
    assert any("'W2A2' and 'W1A1' overlap" in p for p in problems)
    assert any("'W4A4' lies outside its panel" in p for p in problems)


def test_figures_are_png_svg_pdf_and_byte_stable(zoo, tmp_path):
    root, runs, _ = zoo
    # every kind of figure, with fewer lines than the whole zoo (writing them twice is the slow part)
    runs = runs[runs["method"].isin(["fp", "ste", "pcg", "bcgd", "lsq"]) & runs["bits"].isin(["W32A32", "W1A1", "W2A2"])]
    first = write_plots(runs, root, tmp_path / "a", ZOO)
    second = write_plots(runs, root, tmp_path / "b", ZOO)
    assert [p.name for p in first] == [p.name for p in second]
    assert {p.suffix for p in first} == {".png", ".svg", ".pdf"}
    for a, b in zip(first, second):
        assert filecmp.cmp(a, b, shallow=False), a.name
    png = next(p for p in first if p.name == f"{ZOO}_accuracy_vs_bits.png")
    width_px = int.from_bytes(png.read_bytes()[16:20], "big")
    assert width_px / 200 == pytest.approx(3.4, abs=0.05)  # five methods: one column of a two-column paper, 200 dpi
    assert Path(png.with_suffix(".pdf")).read_bytes().startswith(b"%PDF-")
