"""The statistical comparisons of a leaderboard (issue #16), on the cell records of :mod:`qbench.report.board`.

Within a column: the methods of one *family* (the rows of one column that share the protocol: default or tuned, and
the suite stage) are compared by paired t-tests over the seeds both have, every pair, Holm-adjusted
(:func:`qbench.paired.compare`, shared with ``qbench run seeds=auto``). That gives each row its tie-aware rank and the
bold top group. FP (the W32A32 column) is the reference of Δ FP and is not compared; tuned rows compete only with
tuned rows (their tuning budget is equal among themselves, not with the defaults).

Across columns: Friedman's test over the quantized columns ("data sets" in Demšar's 2006 protocol; here the cells
dataset × arch × bits × policy) with Nemenyi's critical difference (:func:`qbench.report.stats.friedman_nemenyi`), on
the default rows that ran in every column; what :mod:`qbench.report.cd_diagram` draws.

Both are stated in words in the Significance table.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Hashable

import numpy as np
import pandas as pd

from ..bits import FP_BITS
from ..paired import ALPHA, MIN_SEEDS, Comparison, compare
from .stats import MIN_CELLS, Friedman, block_ranks, friedman_nemenyi

__all__ = ["TEST_NAME", "family_key", "assign_significance", "assign_mean_ranks", "friedman_over_columns",
           "significance_table", "friedman_statement"]

TEST_NAME = "paired t-test over seeds, Holm"


def family_key(row: dict) -> tuple[Hashable, bool, str]:
    """The rows compared with each other: one column, one protocol (default / tuned), one stage."""
    return row["_column"], bool(row["tuned"]), row.get("_stage") or ""


def _families(cell_rows: list[dict]) -> dict[tuple, list[dict]]:
    families: dict[tuple, list[dict]] = {}
    for row in cell_rows:
        families.setdefault(family_key(row), []).append(row)
    return families


def _is_reference(rows: list[dict]) -> bool:
    return rows[0]["bits"] == FP_BITS


def assign_significance(cell_rows: list[dict], alpha: float = ALPHA) -> dict[tuple, Comparison]:
    """Per family: the paired comparison, and on each row its tie-aware ``rank`` (NaN: not tested), ``top_group``,
    and its paired difference to the family's best (``vs_best_n``, ``vs_best_diff`` in metric units, ``vs_best_p``
    Holm-adjusted); ``_compared`` is how many methods of its family have a score. Returns the comparisons by family
    (the FP column has none)."""
    comparisons = {}
    for key, rows in _families(cell_rows).items():
        for row in rows:
            row.update(rank=np.nan, top_group=False, vs_best_n=np.nan, vs_best_diff=np.nan, vs_best_p=np.nan,
                       _compared=0)
        if _is_reference(rows):
            continue
        comparison = compare({row["method"]: row["_by_seed"] for row in rows}, alpha)
        comparisons[key] = comparison
        for row in rows:
            row["_compared"] = len(comparison.means)  # methods of the family with a score
        best = comparison.best
        for row in rows:
            label = row["method"]
            if label in comparison.rank:
                row["rank"] = comparison.rank[label]
                row["top_group"] = label in comparison.top_group
            paired = comparison.difference(label, best) if best is not None and label != best else None
            if paired is not None:
                row["vs_best_n"], diff, row["vs_best_p"] = paired
                row["vs_best_diff"] = row["_sign"] * diff
    return comparisons


def assign_mean_ranks(cell_rows: list[dict]) -> dict[str, float]:
    """Each label's average over the quantized columns of its rank by mean within its family (ties share the mean
    rank; a column where it ran without a result counts as last): the average ranks of Friedman's test, descriptive
    for a label that is not in every column. Sets ``mean_rank`` on every row; returns {label: mean rank}."""
    per_label: dict[str, list[float]] = {}
    for rows in _families(cell_rows).values():
        if _is_reference(rows):
            continue
        scores = np.array([[row["_sign"] * row["mean"] if row["n"] else np.nan for row in rows]])
        for row, rank in zip(rows, block_ranks(scores)[0]):
            per_label.setdefault(row["method"], []).append(float(rank))
    mean_rank = {label: float(np.mean(values)) for label, values in per_label.items()}
    for row in cell_rows:
        row["mean_rank"] = mean_rank.get(row["method"], np.nan)
    return mean_rank


def _complete_block(present: set[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    """The labels and columns of a complete block design taken from the (label, column) pairs that ran: drop, one at a
    time, the label or column with the fewest cells (labels first, then by name) until every label ran in every
    column. Deterministic; a zoo suite keeps its common bit-widths and the methods that ran at all of them."""
    labels = sorted({label for label, _ in present})
    columns = sorted({col for _, col in present})
    while labels and columns and any((label, col) not in present for label in labels for col in columns):
        by_label = [(sum((label, c) in present for c in columns), 0, label) for label in labels]
        by_column = [(sum((lab, col) in present for lab in labels), 1, col) for col in columns]
        _, kind, drop = min(by_label + by_column, key=lambda item: (item[0], item[1], str(item[2])))
        if kind == 0:
            labels.remove(drop)
        else:
            columns.remove(drop)
    return labels, columns


def friedman_over_columns(cell_rows: list[dict], alpha: float = ALPHA) -> tuple[Friedman | None, str]:
    """Friedman + Nemenyi over the quantized columns, on the rows of the default protocol (the tuned one when there
    are only tuned rows), as a complete block design (:func:`_complete_block`). Returns (result, ""), (None, why no
    test), or (None, "") for a report of a single quantized column, where there is nothing to say across columns."""
    quantized = [r for r in cell_rows if r["bits"] != FP_BITS and not r.get("_stage")]
    protocol = any(not r["tuned"] for r in quantized)  # True: the default rows
    rows = {(r["method"], r["_column"]): r for r in quantized if r["tuned"] != protocol}
    if len({col for _, col in rows}) < 2:
        return None, ""
    labels, columns = _complete_block(set(rows))
    if len(columns) < MIN_CELLS:
        return None, (f"{len(columns)} quantized column{'s' if len(columns) != 1 else ''} with the same methods: a "
                      f"test across columns needs at least {MIN_CELLS}")
    if len(labels) < 2:
        return None, "fewer than two methods ran in the same columns"
    scores = np.array([[rows[(label, col)]["_sign"] * rows[(label, col)]["mean"] if rows[(label, col)]["n"] else np.nan
                        for label in labels] for col in columns])
    return friedman_nemenyi(scores, labels, alpha), ""


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def significance_table(cell_rows: list[dict], comparisons: dict[tuple, Comparison],
                       title: Callable[[Any], str], friedman: Friedman | None, why_not: str,
                       decimals: int) -> pd.DataFrame:
    """One row per compared family, then one for the comparison across columns: the seeds, the test, the top group
    (best first, with each member's paired difference to the best and Holm p) and the methods below it."""
    lookup = {(family_key(r), r["method"]): r for r in cell_rows}
    out = []
    for key in sorted(comparisons, key=lambda k: (k[0], k[1], k[2])):
        comparison = comparisons[key]
        column, tuned, stage = key
        if len(comparison.means) < 2:
            continue
        setting = title(column) + (" (tuned)" if tuned else "") + (f" [{stage}]" if stage else "")
        counts = sorted(set(comparison.seeds.values()))
        seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        if not comparison.tested:
            out.append({"setting": setting, "seeds": seeds, "test": f"none: fewer than {MIN_SEEDS} common seeds",
                        "top group": "—", "below the top group": "—"})
            continue

        def described(label: str) -> str:
            row = lookup[(key, label)]
            if label == comparison.best:
                return f"{label} (best, {row['mean']:.{decimals}f})"
            if math.isnan(row["vs_best_p"]):
                return f"{label} (not paired with the best)"
            return f"{label} ({row['vs_best_diff']:+.{decimals}f}, {_p(row['vs_best_p'])})"

        below = sorted((m for m in comparison.rank if comparison.rank[m] > 1),
                       key=lambda m: (comparison.rank[m], -comparison.means[m], m))
        untested = sorted(m for m in comparison.means if m not in comparison.rank)
        out.append({
            "setting": setting, "seeds": seeds, "test": f"{TEST_NAME} (α = {comparison.alpha:g})",
            "top group": ", ".join(described(m) for m in comparison.top_group),
            "below the top group": ", ".join([f"rank {comparison.rank[m]}: {described(m)}" for m in below] +
                                             [f"{m} (no test: fewer than {MIN_SEEDS} seeds)" for m in untested])
            or "—",
        })
    if friedman is not None or why_not:
        out.append(_friedman_row(friedman, why_not))
    return pd.DataFrame(out, columns=["setting", "seeds", "test", "top group", "below the top group"])


def _friedman_row(friedman: Friedman | None, why_not: str) -> dict[str, str]:
    if friedman is None:
        return {"setting": "across columns", "seeds": "—", "test": f"none: {why_not}", "top group": "—",
                "below the top group": "—"}
    order = sorted(friedman.labels, key=lambda m: (friedman.rank_of(m), m))
    best = order[0]
    top = [m for m in order if not friedman.differ(best, m)]
    below = [m for m in order if friedman.differ(best, m)]
    return {
        "setting": f"across {friedman.n_blocks} quantized columns",
        "seeds": f"{friedman.n_blocks} cells",
        "test": (f"Friedman (permutation {_p(friedman.p_value)}), Nemenyi CD = {friedman.cd:.2f} "
                 f"(α = {friedman.alpha:g})"),
        "top group": ", ".join(f"{m} ({friedman.rank_of(m):.2f})" for m in top),
        "below the top group": ", ".join(f"{m} ({friedman.rank_of(m):.2f})" for m in below) or "—",
    }


def friedman_statement(friedman: Friedman | None, why_not: str) -> str:
    """The comparison across columns in one sentence (a note under the tables)."""
    if friedman is None:
        return f"Across columns: no Friedman test ({why_not})."
    head = (f"Across the {friedman.n_blocks} quantized columns (Friedman test, permutation {_p(friedman.p_value)} "
            f"over {friedman.n_permutations} within-column permutations; average rank in brackets, 1 = best): ")
    ranked = ", ".join(f"{m} ({friedman.rank_of(m):.2f})"
                       for m in sorted(friedman.labels, key=lambda m: (friedman.rank_of(m), m)))
    if not friedman.significant:
        return head + f"{ranked}: no significant difference at α = {friedman.alpha:g}."
    clauses = [f"{', '.join(clique)} are indistinguishable" for clique in friedman.cliques() if len(clique) > 1]
    order = sorted(friedman.labels, key=lambda m: (friedman.rank_of(m), m))
    listed: set[str] = set()
    for a in order:
        worse = [b for b in order
                 if b not in listed and friedman.rank_of(b) > friedman.rank_of(a) and friedman.differ(a, b)]
        listed.update(worse)
        if worse:
            clauses.append(f"{', '.join(worse)} {'is' if len(worse) == 1 else 'are'} worse than {a}")
    return (head + ranked + f"; Nemenyi CD = {friedman.cd:.2f} at α = {friedman.alpha:g} (Demšar 2006): "
            + "; ".join(clauses) + ".")
