"""What every qbench figure shares: one colour and marker per method (the same in every figure of every suite), the
paper-sized figure style, facets by method family, legends outside the axes, point labels that never collide, and
writing each figure as PNG, SVG and PDF, byte-stable.

Colours are grouped by family (blues: weight quantizers, reds and oranges: activation estimators, greens: update
rules, black: the FP baseline), fixed per method name in :data:`METHOD_STYLES`, so a method keeps its colour whatever
else a figure shows; a method not listed there (a plugin) gets an entry of its family's reserve chosen by a hash of its
name. Variants of a method keep its colour: a tuned row is drawn hollow and dashed, a hyperparameter variant or a
suite stage with another marker and a dash-dot line.

matplotlib is imported inside the functions, so ``import qbench.report`` never pays for it; figures are drawn on
``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..registry import get_method_class
from ..results import atomic_write_bytes

__all__ = ["FAMILIES", "FIGURE_FORMATS", "METHOD_STYLES", "MAX_METHODS_PER_PANEL", "COLUMN_WIDTH", "TEXT_WIDTH",
           "MethodStyle", "method_family", "base_method", "method_style", "family_groups", "figure_style",
           "new_figure", "legend_outside", "legend_columns", "legend_height", "panel_grid", "panel_legend",
           "unique_handles", "place_labels", "save_figure"]

#: method families in the order figures facet them (``Method.family``); "other" collects unknown families
FAMILIES = ("baseline", "weight quantizer", "activation estimator", "update rule")
#: every figure is written in these formats, side by side (same stem)
FIGURE_FORMATS = ("png", "svg", "pdf")
#: above this many rows a figure gets one panel per method family
MAX_METHODS_PER_PANEL = 8
#: widths (inches) of one column and of the full text of a two-column paper
COLUMN_WIDTH, TEXT_WIDTH = 3.4, 7.0
PNG_DPI = 200
_RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.2, "lines.markersize": 4.5,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "svg.hashsalt": "qbench", "svg.fonttype": "path", "pdf.fonttype": 42, "savefig.dpi": PNG_DPI,
    "figure.constrained_layout.h_pad": 0.04, "figure.constrained_layout.w_pad": 0.04,
}


@dataclass(frozen=True)
class MethodStyle:
    """How one leaderboard row is drawn: ``color`` and ``marker`` are its method's; ``linestyle`` and ``filled``
    mark a variant (tuned: dashed and hollow)."""

    color: str
    marker: str
    family: str
    linestyle: str = "-"
    filled: bool = True

    def line_kwargs(self) -> dict:
        """Keyword arguments for ``Axes.plot`` / ``Axes.errorbar``."""
        kwargs = dict(color=self.color, marker=self.marker, linestyle=self.linestyle)
        if not self.filled:
            kwargs.update(markerfacecolor="white", markeredgecolor=self.color)
        return kwargs

    def scatter_kwargs(self) -> dict:
        """Keyword arguments for ``Axes.scatter``."""
        if self.filled:
            return dict(color=self.color, marker=self.marker, edgecolors="white", linewidths=0.4)
        return dict(facecolors="white", edgecolors=self.color, marker=self.marker, linewidths=1.0)


#: the shipped methods: colour and marker, fixed (family hues; within a family no colour and no marker repeats)
METHOD_STYLES = {
    "fp": MethodStyle("#000000", "s", "baseline"),
    # weight quantizers: blues and purples
    "binaryconnect": MethodStyle("#1f77b4", "o", "weight quantizer"),
    "bwn": MethodStyle("#17becf", "s", "weight quantizer"),
    "dorefa": MethodStyle("#393b79", "^", "weight quantizer"),
    "lbw": MethodStyle("#9467bd", "D", "weight quantizer"),
    "lsq": MethodStyle("#6baed6", "v", "weight quantizer"),
    "twn": MethodStyle("#7b4173", "P", "weight quantizer"),
    "xnor": MethodStyle("#0e7c7b", "X", "weight quantizer"),
    # activation estimators: reds, oranges, browns, pinks
    "ste": MethodStyle("#d62728", "o", "activation estimator"),
    "aqe": MethodStyle("#ff7f0e", "s", "activation estimator"),
    "pact": MethodStyle("#8c564b", "^", "activation estimator"),
    "dsq": MethodStyle("#e377c2", "D", "activation estimator"),
    "bnn": MethodStyle("#fdae6b", "v", "activation estimator"),
    "irnet": MethodStyle("#7f0000", "P", "activation estimator"),
    "bireal": MethodStyle("#d6a100", "X", "activation estimator"),
    # update rules: greens and olives
    "bcgd": MethodStyle("#2ca02c", "o", "update rule"),
    "pcg": MethodStyle("#005a32", "s", "update rule"),
    "binaryrelax": MethodStyle("#98df8a", "^", "update rule"),
    "proxquant": MethodStyle("#808000", "D", "update rule"),
}
# Plugins: an entry of their family's reserve (by a hash of the name, so it never depends on the other methods).
_RESERVE = {
    "baseline": ("#525252", "#969696"),
    "weight quantizer": ("#3182bd", "#9e9ac8", "#5254a3", "#00798c"),
    "activation estimator": ("#e6550d", "#ad494a", "#de9ed6", "#b15928"),
    "update rule": ("#74c476", "#8ca252", "#31a354", "#4d7c0f"),
    "other": ("#7f7f7f", "#525252", "#bdbdbd", "#17a589"),
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")
_VARIANT_MARKERS = ("<", ">", "h", "*", "p", "d")


def _stable_index(text: str, n: int) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % n


def method_family(method: str) -> str:
    """``Method.family`` of a registered method; "other" for a name the registry does not know."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method].family
    try:
        family = get_method_class(method).family
    except Exception:  # noqa: BLE001 - an unregistered or broken plugin: its rows are still drawn
        return "other"
    return family if family in FAMILIES else "other"


_LABEL = re.compile(r"^(?:(?P<stage>[^:\[\]()]+): )?(?P<method>[^\s\[\]()]+)(?P<rest>.*)$")


def base_method(label: str) -> str:
    """The method name of a leaderboard row label: ``"base: ste [estimator=identity] (tuned)"`` → ``"ste"``."""
    match = _LABEL.match(str(label))
    return match.group("method") if match else str(label)


def method_style(label: str, method: str | None = None) -> MethodStyle:
    """The style of the row ``label`` (of method ``method``, default: parsed from the label)."""
    method = method or base_method(label)
    if method in METHOD_STYLES:
        style = METHOD_STYLES[method]
    else:
        family = method_family(method)
        reserve = _RESERVE[family]
        style = MethodStyle(reserve[_stable_index(method, len(reserve))],
                            _MARKERS[_stable_index(method + "/marker", len(_MARKERS))], family)
    match = _LABEL.match(str(label))
    rest = match.group("rest") if match else ""
    tuned = rest.endswith(" (tuned)")
    variant = rest[: -len(" (tuned)")] if tuned else rest
    if match and match.group("stage"):
        variant = f"{match.group('stage')}:{variant}"
    if variant.strip():
        style = replace(style, marker=_VARIANT_MARKERS[_stable_index(variant, len(_VARIANT_MARKERS))],
                        linestyle="-.")
    if tuned:
        style = replace(style, linestyle="--", filled=False)
    return style


def family_groups(labels: Sequence[str], methods: Sequence[str] | None = None,
                  limit: int = MAX_METHODS_PER_PANEL) -> list[tuple[str | None, list[str]]]:
    """The panels of a figure: ``[(None, labels)]`` for at most ``limit`` rows, else one ``(family, labels)`` per
    family present, in :data:`FAMILIES` order (the FP baseline is a reference line in every panel, not a panel)."""
    methods = list(methods) if methods is not None else [base_method(label) for label in labels]
    if len(labels) <= limit:
        return [(None, list(labels))]
    by_family: dict[str, list[str]] = {}
    for label, method in zip(labels, methods):
        family = method_family(method)
        if family != "baseline":
            by_family.setdefault(family, []).append(label)
    order = {family: i for i, family in enumerate(FAMILIES)}
    return [(family, by_family[family]) for family in sorted(by_family, key=lambda f: (order.get(f, 99), f))]


@contextmanager
def figure_style() -> Iterator[None]:
    """qbench's figure style (paper font sizes, light grid, deterministic SVG ids) while building and saving."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


def _blank_figure(width: float, height: float):
    """A headless figure of ``width`` × ``height`` inches with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # attaches the Agg canvas: rendering needs no display
    return fig


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = COLUMN_WIDTH, height: float = 2.4,
               sharex: bool | str = False, sharey: bool | str = False):
    """A headless figure of ``width`` × ``height`` inches with constrained layout, and its axes grid (2-D)."""
    fig = _blank_figure(width, height)
    return fig, fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)


def legend_outside(fig, handles: Sequence, labels: Sequence[str], *, ncol: int = 4):
    """One figure legend under every axes (and under the x labels), in the order given, in ``ncol`` columns;
    constrained layout makes room for it."""
    if not handles:
        return None
    return fig.legend(handles, labels, loc="outside lower center", ncol=min(ncol, len(labels)), frameon=False)


_LINE_IN = 0.17  # inches per legend row at the legend font size


def legend_columns(labels: Sequence[str], width: float) -> int:
    """How many legend columns of ``labels`` fit in ``width`` inches (at least 1, at most 4)."""
    longest = max((len(label) for label in labels), default=1)
    return max(1, min(4, int(width * 72 // (longest * 3.7 + 28))))


def legend_height(n_entries: int, ncol: int) -> float:
    """Inches a legend of ``n_entries`` in ``ncol`` columns needs."""
    return math.ceil(n_entries / max(1, ncol)) * _LINE_IN + 0.12


def panel_grid(nrows: int, ncols: int, *, width: float, panel_height: float, legend: str = "below",
               legend_size: float = 1.0, sharey: bool = True):
    """A headless figure of ``nrows`` × ``ncols`` data panels plus empty axes that hold the legends, outside every
    data panel: one under each column (``legend="below"``, ``legend_size`` inches high) or one right of each row
    (``legend="right"``, ``legend_size`` inches wide). Panels of a row share their y axis when ``sharey``. Returns
    the figure, the data axes (2-D) and the legend axes (a list)."""
    below = legend == "below"
    fig = _blank_figure(width, panel_height * nrows + (legend_size if below else 0.0))
    if below:
        grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[panel_height] * nrows + [legend_size])
    else:
        panel_width = (width - legend_size) / max(1, ncols)
        grid = fig.add_gridspec(nrows, ncols + 1, width_ratios=[panel_width] * ncols + [legend_size])
    axes = [[None] * ncols for _ in range(nrows)]
    for r in range(nrows):
        for c in range(ncols):
            share = axes[r][0] if sharey and c else None
            axes[r][c] = fig.add_subplot(grid[r, c], sharey=share)
            if share is not None:
                axes[r][c].tick_params(labelleft=False)
    holders = [fig.add_subplot(grid[nrows, c]) for c in range(ncols)] if below else \
        [fig.add_subplot(grid[r, ncols]) for r in range(nrows)]
    for holder in holders:
        holder.set_axis_off()
    return fig, axes, holders


def panel_legend(holder, handles: Sequence, labels: Sequence[str], *, ncol: int = 1):
    """A legend filling the legend axes ``holder`` of :func:`panel_grid` from its top."""
    if not handles:
        return None
    return holder.legend(handles, labels, loc="upper left", ncol=ncol, frameon=False, borderaxespad=0.0,
                         handlelength=2.2, columnspacing=1.0)


def unique_handles(axes: Iterable) -> tuple[list, list[str]]:
    """The legend entries of ``axes`` without repeats (first one wins)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_") and label not in seen:
                seen[label] = handle
    return list(seen.values()), list(seen)


def place_labels(ax, points: Sequence[tuple[float, float, str]], *, obstacles: Sequence[tuple[float, float]] = (),
                 lines: Sequence[Sequence[tuple[float, float]]] = (), fontsize: float = 6.0,
                 marker_radius_pt: float = 3.5) -> list:
    """Label data points where the label collides with nothing: for each point the first of eight positions around
    it whose box stays inside the axes and overlaps no placed label, no marker (``points`` and the unlabelled
    ``obstacles``) and no line (``lines``, polylines in data coordinates); a point with no free position stays
    unlabelled (the table has its numbers). Call after the figure's layout is final (a canvas draw)."""
    from matplotlib.path import Path as MplPath
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0
    pad = 1.0 * scale  # free space kept around every label
    frame = ax.get_window_extent(renderer)
    radius = marker_radius_pt * scale
    to_display = ax.transData.transform
    pixels = [to_display((x, y)) for x, y, _ in points]
    occupied = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
                for px, py in [*pixels, *(to_display(o) for o in obstacles)]]
    paths = [MplPath(to_display(list(line))) for line in lines if len(line) > 1]
    placed = []
    gap = radius + pad + 0.5 * scale  # from the point to its label: the label's padding clears the point's marker
    for (x, y, text), (px, py) in zip(points, pixels):
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width, extent.height
        candidates = [(gap, gap), (gap, -gap - h), (-gap - w, gap), (-gap - w, -gap - h),
                      (-w / 2, gap), (-w / 2, -gap - h), (gap, -h / 2), (-gap - w, -h / 2)]
        for dx, dy in candidates:
            box = Bbox.from_extents(px + dx - pad, py + dy - pad, px + dx + w + pad, py + dy + h + pad)
            inside = box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in occupied) \
                    and not any(path.intersects_bbox(box, filled=False) for path in paths):
                label = ax.annotate(text, (x, y), xytext=(dx / scale, dy / scale), textcoords="offset points",
                                    fontsize=fontsize, ha="left", va="bottom", annotation_clip=False)
                label.set_in_layout(False)
                occupied.append(box)
                placed.append(label)
                break
    return placed


def save_figure(fig, path: str | Path) -> list[Path]:
    """Write ``fig`` as PNG at ``path`` and as SVG and PDF beside it (same stem), atomically and without dates or
    software versions in the files, so the same data gives the same bytes. Returns the three paths, PNG first."""
    path = Path(path)
    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}
    paths = []
    engine = fig.get_layout_engine()
    try:
        for index, fmt in enumerate(FIGURE_FORMATS):
            target = path.with_suffix(f".{fmt}")
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=PNG_DPI, metadata=metadata[fmt])
            if index == 0 and engine is not None:
                # The first save ran the layout; the vector copies keep it (one layout for the three files, and the
                # constrained-layout solve is a third of the time of writing a figure).
                fig.set_layout_engine("none")
            data = buffer.getvalue()
            data = _palette_png(data) if fmt == "png" else _stable_svg_ids(data) if fmt == "svg" else data
            atomic_write_bytes(target, data)
            paths.append(target)
    finally:
        fig.set_layout_engine(engine)  # the caller's figure keeps its layout engine
    return paths


_SVG_HASH_ID = re.compile(rb'id="([a-z][0-9a-f]{10})"')


def _stable_svg_ids(data: bytes) -> bytes:
    """The SVG with its hashed ids (clip paths, markers) renamed in order of appearance. matplotlib hashes a clip
    rectangle's float bounds into its id, and constrained layout can move a bound by one ulp from one run to the next:
    same picture, different bytes. Renaming keeps the file byte-stable."""
    names = {}
    for match in _SVG_HASH_ID.finditer(data):
        names.setdefault(match.group(1), b"%s%d" % (match.group(1)[:1], len(names)))
    if not names:
        return data
    pattern = re.compile(rb"(?<=[\"#])(" + b"|".join(re.escape(k) for k in names) + rb")(?=[\")])")
    return pattern.sub(lambda m: names[m.group(1)], data)


def _palette_png(data: bytes) -> bytes:
    """The PNG as 256 colours without dithering: a line chart looks the same at a third of the bytes, which keeps a
    suite's web page light (matplotlib's Agg PNG is 32-bit RGBA)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, format="PNG",
                                                                                                 optimize=True)
    return out.getvalue()
