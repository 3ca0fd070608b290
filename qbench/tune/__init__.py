"""``qbench tune``: equal-budget Optuna studies per method."""

from .study import tune_suite, tuned_overrides

__all__ = ["tune_suite", "tuned_overrides"]
