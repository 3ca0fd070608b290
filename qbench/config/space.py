"""Search ranges: the one way to write the range a tunable value is searched over, for a suite's
``tune.recipe_space`` and a method's ``HParam(..., space=...)`` alike::

    [0.005, 0.2, log]              # float range, log scale
    [0.8, 0.99, linear]            # float range, linear scale
    [0, 3, linear]                 # both ends integers: an integer range
    [sgd, adamw]                   # any other list: categorical choices, in that order
    {choices: [0.0, 1e-4]}         # explicit choices (needed for two numbers)
    {low: 0.05, high: 0.5, log: true}

and, for a hyperparameter that lists its allowed ``choices``, the word ``"choices"``: search over exactly those.
:func:`parse_search_dim` turns one such value into a :class:`SearchDim`, which asks an Optuna trial (its public
``suggest_*`` API) for a value. Mistakes raise a one-line :class:`~qbench.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import ConfigError
from .schema import TrainConfig

__all__ = ["CHOICES", "SearchDim", "parse_search_dim", "is_number", "recipe_keys", "recipe_dims"]

#: ``space=CHOICES`` searches over the hyperparameter's own ``choices``
CHOICES = "choices"


@dataclass(frozen=True)
class SearchDim:
    """One searched dimension: a float or integer range (linear or log) or categorical choices, suggested under
    ``key`` (a recipe key such as ``train.lr``; a hyperparameter's dimension is keyless and suggested under the
    hyperparameter's name)."""

    key: str
    kind: str  # "float" | "int" | "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial, name: str | None = None) -> Any:
        """The value ``trial`` (an Optuna trial, or anything with its ``suggest_*`` methods) picks for ``name``
        (default: :attr:`key`)."""
        name = name or self.key
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)

    def describe(self, name: str | None = None) -> str:
        name = name or self.key
        if self.kind == "categorical":
            return f"{name} ∈ {list(self.choices)}"
        return f"{name} ∈ [{self.low}, {self.high}]{' log' if self.log else ''}"


def is_number(x: Any) -> bool:
    """An int or float that is not a bool (YAML and Python both read ``true`` as a bool, not as 1)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_search_dim(key: str, value: Any, where: str | None = None, choices: Any = None) -> SearchDim:
    """Parse one range written in the format of the module docstring; ``where`` names it in error messages and
    ``choices`` are what ``value == "choices"`` stands for (a hyperparameter's allowed values)."""
    where = where or key
    fmt = "write [low, high, log|linear], a list of choices, or {choices: [...]}"
    if isinstance(value, str) and value == CHOICES:
        if not choices:
            raise ConfigError(f"{where}: space='choices' needs the hyperparameter's choices=[...]; or {fmt}")
        return _categorical(key, choices, where)
    if isinstance(value, Mapping):
        if set(value) == {"choices"}:
            return _categorical(key, value["choices"], where)
        if set(value) <= {"low", "high", "log"} and {"low", "high"} <= set(value):
            return _range(key, value["low"], value["high"], bool(value.get("log", False)), where)
        raise ConfigError(f"{where}: bad mapping {dict(value)}; {fmt}")
    if isinstance(value, (list, tuple)):
        if len(value) == 3 and str(value[2]).lower() in ("log", "linear") and is_number(value[0]) \
                and is_number(value[1]):
            return _range(key, value[0], value[1], str(value[2]).lower() == "log", where)
        if len(value) == 2 and all(is_number(v) for v in value):
            raise ConfigError(f"{where}: [{value[0]}, {value[1]}] is ambiguous; write [{value[0]}, {value[1]}, log] "
                              f"or [{value[0]}, {value[1]}, linear] for a range, or {{choices: [{value[0]}, "
                              f"{value[1]}]}} for two choices")
        return _categorical(key, value, where)
    raise ConfigError(f"{where}: got {value!r}; {fmt}")


def _range(key: str, low: Any, high: Any, log: bool, where: str) -> SearchDim:
    if not (is_number(low) and is_number(high)):
        raise ConfigError(f"{where}: low and high must be numbers, got {low!r} and {high!r}")
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got {low})")
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    return SearchDim(key, kind, low, high, log)


def _categorical(key: str, choices: Any, where: str) -> SearchDim:
    choices = list(choices or [])
    if not choices:
        raise ConfigError(f"{where}: empty list of choices")
    for c in choices:
        if c is not None and not isinstance(c, (bool, int, float, str)):
            raise ConfigError(f"{where}: choice {c!r} must be a number, string, bool or null")
    return SearchDim(key, "categorical", choices=tuple(choices))


# Recipe keys that may not be tuned: the budget (epochs), the hardware, and list-valued keys.
_TRAIN_FIXED = {"epochs", "device", "compile", "channels_last", "amp", "max_steps_per_epoch", "diag_batches",
                "milestones"}
_DATA_TUNABLE = ("batch_size", "augment")


def recipe_keys() -> list[str]:
    """The dotted recipe keys ``tune.recipe_space`` may open (every scalar of ``train`` but the budget and the
    hardware, plus ``data.batch_size`` and ``data.augment``)."""
    keys = [f"train.{f.name}" for f in dataclasses.fields(TrainConfig) if f.name not in _TRAIN_FIXED]
    return sorted(keys + [f"data.{k}" for k in _DATA_TUNABLE])


def recipe_dims(space: Mapping[str, Any] | None) -> list[SearchDim]:
    """``tune.recipe_space`` parsed into :class:`SearchDim` s; a mistake raises a one-line :class:`ConfigError`."""
    space = (OmegaConf.to_container(space, resolve=True) if isinstance(space, (DictConfig, ListConfig)) else space) or {}
    if not isinstance(space, Mapping):
        raise ConfigError("tune.recipe_space must map dotted recipe keys to ranges, e.g. {train.lr: [0.01, 0.3, log]}")
    valid = recipe_keys()
    dims = []
    for key, value in space.items():
        key = str(key)
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            budget = " (the epoch budget is tune.epochs)" if key == "train.epochs" else ""
            raise ConfigError(f"unknown tune.recipe_space key '{key}'{hint}{budget}; valid keys: {', '.join(valid)}")
        dims.append(parse_search_dim(key, value, f"tune.recipe_space['{key}']"))
    return dims
