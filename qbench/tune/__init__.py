"""``qbench tune``: equal-budget Optuna studies per method (:func:`tune_suite`), and the tuned parameters for
``qbench run tuned=true`` (:func:`tuned_overrides`).

Modules, in the order they build on each other: ``space`` (what a study searches), ``journal`` and ``storage``
(where the studies live), ``summary`` (what a study found), ``worker`` (the trial loop and its processes), ``suite``
(the entry point).
"""

from .suite import tune_suite
from .summary import tuned_overrides

__all__ = ["tune_suite", "tuned_overrides"]
