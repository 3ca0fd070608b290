"""Search spaces in the suites' format: ``tune.recipe_space`` (and a method's ``HParam(space=...)``) parsed into
:class:`SearchDim` s that suggest values through an Optuna trial's public ``suggest_*`` API."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import ConfigError
from .schema import TrainConfig

__all__ = ["SearchDim", "parse_search_dim", "recipe_keys", "recipe_dims"]


@dataclass(frozen=True)
class SearchDim:
    """One tunable dimension: a float or int range (optionally log-scaled) or categorical choices."""

    key: str
    kind: str  # "float" | "int" | "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The value an Optuna trial suggests for this dimension (``trial.suggest_*``)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.key} ∈ {list(self.choices)}"
        return f"{self.key} ∈ [{self.low}, {self.high}]{' log' if self.log else ''}"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_search_dim(key: str, value: Any, where: str | None = None) -> SearchDim:
    """A range in the suites' format: ``[low, high, log|linear]`` (both ends integers → an integer range),
    ``{low: .., high: .., log: ..}``, a list of choices, or ``{choices: [...]}`` (needed for two numbers)."""
    where = where or key
    fmt = "write [low, high, log|linear], a list of choices, or {choices: [...]}"
    if isinstance(value, Mapping):
        if set(value) == {"choices"}:
            return _categorical(key, value["choices"], where)
        if set(value) <= {"low", "high", "log"} and {"low", "high"} <= set(value):
            return _range(key, value["low"], value["high"], bool(value.get("log", False)), where)
        raise ConfigError(f"{where}: bad mapping {dict(value)}; {fmt}")
    if isinstance(value, (list, tuple)):
        if len(value) == 3 and str(value[2]).lower() in ("log", "linear") and _is_number(value[0]) \
                and _is_number(value[1]):
            return _range(key, value[0], value[1], str(value[2]).lower() == "log", where)
        if len(value) == 2 and all(_is_number(v) for v in value):
            raise ConfigError(f"{where}: [{value[0]}, {value[1]}] is ambiguous; write [{value[0]}, {value[1]}, log] "
                              f"or [{value[0]}, {value[1]}, linear] for a range, or {{choices: [{value[0]}, "
                              f"{value[1]}]}} for two choices")
        return _categorical(key, value, where)
    raise ConfigError(f"{where}: got {value!r}; {fmt}")


def _range(key: str, low: Any, high: Any, log: bool, where: str) -> SearchDim:
    if not (_is_number(low) and _is_number(high)):
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
