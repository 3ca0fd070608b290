"""What the training and theory boards share for display: status words, number formats, and :class:`Table`, the unit
a board hands to the renderers (:mod:`qbench.report.render`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pandas as pd

__all__ = ["STATUS_ORDER", "status_words", "fmt_seconds", "fmt_size", "Table"]

#: run statuses in the order cell texts and headers list them; any other status follows, sorted
STATUS_ORDER = ("complete", "failed", "diverged", "incomplete")


def status_words(counts: Counter) -> list[str]:
    """The statuses present in ``counts``, in :data:`STATUS_ORDER` then alphabetical order."""
    known = [s for s in STATUS_ORDER if counts.get(s)]
    return known + sorted(s for s in counts if s not in STATUS_ORDER and counts[s])


def fmt_seconds(seconds: float) -> str:
    """``42.0 s``, ``3.5 min`` or ``2.10 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def fmt_size(bits: float) -> str:
    """A size in bits as decimal bytes: ``512 B``, ``37.67 kB``, ``1.20 MB``."""
    size = bits / 8
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    return f"{size:.2f} GB"


@dataclass(frozen=True, eq=False)
class Table:
    """One table of a report page: its section heading, its LaTeX caption, a label unique on the page (HTML ids and
    LaTeX labels derive from it), the display frame and which cells are the best of their column (bold; None: none)."""

    heading: str
    caption: str
    label: str
    frame: pd.DataFrame
    best: pd.DataFrame | None = None
