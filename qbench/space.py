"""Search ranges: the one way to write the range a tunable value is searched over.

A method's hyperparameter declares its range with ``HParam(..., space=...)`` (:class:`qbench.method.HParam`); the
format is that of a suite's ``tune.recipe_space`` (see :mod:`qbench.tune.study`)::

    [0.005, 0.2, log]              # float range, log scale
    [0.8, 0.99, linear]            # float range, linear scale
    [0, 3, linear]                 # both ends integers: an integer range
    [sgd, adamw]                   # any other list: categorical choices, in that order
    {choices: [0.0, 1e-4]}         # explicit choices (needed for two numbers)
    {low: 0.05, high: 0.5, log: true}

and, for a hyperparameter that lists its allowed ``choices``, the word ``"choices"``: search over exactly those.
:func:`parse_search_dim` turns one such value into a :class:`SearchDim`, whose :meth:`~SearchDim.suggest` asks an
Optuna trial for a value. Mistakes raise a one-line :class:`~qbench.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .errors import ConfigError

__all__ = ["CHOICES", "SearchDim", "parse_search_dim", "is_number"]

#: ``space=CHOICES`` searches over the hyperparameter's own ``choices``
CHOICES = "choices"

_FORMAT = "write [low, high, log|linear], a list of choices, or {choices: [...]}"


def is_number(x: Any) -> bool:
    """An int or float that is not a bool (YAML and Python both read ``true`` as a bool, not as 1)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class SearchDim:
    """One searched dimension: a float or integer range (linear or log) or a list of categorical choices."""

    kind: str  # "float" | "int" | "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial, name: str) -> Any:
        """The value ``trial`` (an Optuna trial, or anything with its ``suggest_*`` methods) picks for ``name``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)

    def describe(self, name: str) -> str:
        if self.kind == "categorical":
            return f"{name} ∈ {list(self.choices)}"
        return f"{name} ∈ [{self.low}, {self.high}]{' log' if self.log else ''}"


def parse_search_dim(value: Any, where: str, choices: Sequence | None = None) -> SearchDim:
    """Parse one range written in the format of the module docstring; ``where`` names it in error messages and
    ``choices`` are what ``value == "choices"`` stands for (a hyperparameter's allowed values)."""
    if isinstance(value, str) and value == CHOICES:
        if not choices:
            raise ConfigError(f"{where}: space='choices' needs the hyperparameter's choices=[...]; or {_FORMAT}")
        return _categorical(choices, where)
    if isinstance(value, dict):
        if set(value) == {"choices"}:
            return _categorical(value["choices"], where)
        if set(value) <= {"low", "high", "log"} and {"low", "high"} <= set(value):
            return _range(value["low"], value["high"], bool(value.get("log", False)), where)
        raise ConfigError(f"{where}: bad mapping {value}; {_FORMAT}")
    if isinstance(value, (list, tuple)):
        if len(value) == 3 and str(value[2]).lower() in ("log", "linear") and is_number(value[0]) \
                and is_number(value[1]):
            return _range(value[0], value[1], str(value[2]).lower() == "log", where)
        if len(value) == 2 and all(is_number(v) for v in value):
            raise ConfigError(f"{where}: [{value[0]}, {value[1]}] is ambiguous; write [{value[0]}, {value[1]}, log] "
                              f"or [{value[0]}, {value[1]}, linear] for a range, or {{choices: [{value[0]}, "
                              f"{value[1]}]}} for two choices")
        return _categorical(value, where)
    raise ConfigError(f"{where}: got {value!r}; {_FORMAT}")


def _range(low, high, log: bool, where: str) -> SearchDim:
    if not (is_number(low) and is_number(high)):
        raise ConfigError(f"{where}: low and high must be numbers, got {low!r} and {high!r}")
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got {low})")
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    return SearchDim(kind, low, high, log)


def _categorical(choices, where: str) -> SearchDim:
    choices = list(choices or [])
    if not choices:
        raise ConfigError(f"{where}: empty list of choices")
    for c in choices:
        if c is not None and not isinstance(c, (bool, int, float, str)):
            raise ConfigError(f"{where}: choice {c!r} must be a number, string, bool or null")
    return SearchDim("categorical", choices=tuple(choices))
