"""What a study searches: one study per (suite, method, arch, bits, policy), its parameters and their defaults.

A study's search space is the method's own (``Method.search_space(trial)``, from the plugin; which parameters it
suggests is recorded through a stand-in trial) plus the shared recipe keys the suite opens in ``tune.recipe_space``
(:func:`qbench.config.recipe_dims`). Trial 0 is the method's defaults: the suite's values of the recipe keys and the
suite's ``method_hparams`` over the plugin's defaults. Optuna parameter names are the dotted recipe keys and the
method's hyperparameter names; :func:`overrides_from_params` turns them into config overrides.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

from ..bits import parse_bits
from ..config import SearchDim, SuiteConfig, get_value, parse_shard, recipe_dims, to_dict
from ..errors import ConfigError, QbenchError
from ..method import Method
from ..registry import create_method, load_plugin, parse_method_spec
from ..run.runner import Cell, plan_cells

__all__ = [
    "StudySpec",
    "StudySpace",
    "study_specs",
    "study_spaces",
    "method_space",
    "overrides_from_params",
    "format_params",
    "WORKER_ATTR",
    "DEFAULTS_ATTR",
    "META_ATTR",
    "READY_ATTR",
    "SURPLUS_ATTR",
]

# What qbench records on a study and its trials (Optuna user attributes), written by the workers, read by the
# summaries.
WORKER_ATTR = "qbench_worker"  # trial: {"host", "pid", "trial"} of the worker process running it
DEFAULTS_ATTR = "qbench_defaults"  # trial: the enqueued defaults (trial 0, or its retry)
META_ATTR = "qbench"  # study: the budget the study was run with
READY_ATTR = "qbench_ready"  # study: the defaults are enqueued
SURPLUS_ATTR = "qbench_surplus"  # trial: claimed beyond n_trials by a race between workers (failed, not run)


@dataclass(frozen=True)
class StudySpec:
    suite: str
    method: str  # as in the suite, possibly a variant "ste:estimator=identity"
    arch: str
    bits: str
    policy: str

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.method}/{self.arch}/{self.bits}/{self.policy}"

    @property
    def slug(self) -> str:
        label = self.method.replace(":", "-").replace(",", "-").replace("/", "_")
        return f"{label}_{self.arch}_{self.bits}_{self.policy}"

    def cell(self, seed: int) -> Cell:
        return Cell(self.method, self.arch, parse_bits(self.bits), self.policy, int(seed), False)

    @classmethod
    def of_cell(cls, cfg: SuiteConfig, cell: Cell) -> StudySpec:
        return cls(str(cfg.name), cell.method, cell.arch, str(cell.bits), cell.policy)


def study_specs(cfg: SuiteConfig) -> list[StudySpec]:
    """One study per (method, arch, bits, policy) of the suite, in the suite's order (seeds collapse: every trial
    trains with ``tune.seed_for_trials``). ``shard=i/n`` keeps a deterministic 1/n of the studies."""
    unsharded = copy.deepcopy(cfg)
    unsharded.shard = None
    specs: list[StudySpec] = []
    for cell in plan_cells(unsharded):
        spec = StudySpec.of_cell(cfg, cell)
        if spec not in specs:
            specs.append(spec)
    if cfg.shard:
        i, n = parse_shard(cfg.shard)
        specs = [s for s in specs if int(hashlib.sha1(s.name.encode()).hexdigest(), 16) % n == i]
    return specs


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _RecordingTrial:
    """Stands in for an Optuna trial to find which parameters a method's search space suggests, answering with the
    method's configured values (its defaults in this suite)."""

    number = 0

    def __init__(self, values: dict, fixed: dict):
        self._values, self._fixed = values, fixed
        self.suggested: dict[str, str] = {}

    def __getattr__(self, attr):
        if attr.startswith("suggest_"):
            def suggest(name, *args, **kwargs):
                if name in self._fixed:
                    return self._fixed[name]
                self.suggested[name] = attr
                return self._values.get(name)
            return suggest
        raise AttributeError(f"a search space may only call trial.suggest_*; it used trial.{attr}")


class _PinnedTrial:
    """The real trial, except that the hyperparameters a method variant pins (``ste:estimator=identity``) are
    returned as pinned instead of being suggested."""

    def __init__(self, trial, fixed: dict):
        self._trial, self._fixed = trial, fixed

    def __getattr__(self, attr):
        target = getattr(self._trial, attr)
        if attr.startswith("suggest_") and self._fixed:
            def suggest(name, *args, **kwargs):
                return self._fixed[name] if name in self._fixed else target(name, *args, **kwargs)
            return suggest
        return target


@dataclass
class StudySpace:
    """The parameters of one study: the method's (those its search space suggests) and the recipe's."""

    base: str  # registered method name
    method: Method  # instance with the suite's hyperparameters (its search_space may read self.hp)
    fixed: dict  # pinned by the variant spec
    method_params: dict  # name → the configured (default) value
    recipe: list[SearchDim]
    recipe_defaults: dict  # dotted key → the suite's value

    @property
    def empty(self) -> bool:
        return not self.method_params and not self.recipe

    def defaults(self) -> tuple[dict, list[str]]:
        """(the trial-0 parameters, notes on parameters that cannot be enqueued)."""
        params, notes = {}, []
        for name, value in self.method_params.items():
            if value is None:
                notes.append(f"{name} has no default value (None); trial 0 samples it")
            else:
                params[name] = value
        for dim in self.recipe:
            value = self.recipe_defaults[dim.key]
            if dim.kind == "categorical" and value not in dim.choices:
                notes.append(f"{dim.key}={value!r} is not among its choices; trial 0 samples it")
            elif dim.kind != "categorical" and not _is_number(value):
                notes.append(f"{dim.key}={value!r} is not a number; trial 0 samples it")
            else:
                params[dim.key] = value
        return params, notes

    def suggest(self, trial) -> dict[str, Any]:
        """Ask an Optuna trial for every parameter (the recipe keys first, then the method's search space); returns
        them as dotted config overrides."""
        overrides = {dim.key: dim.suggest(trial) for dim in self.recipe}
        sampled = self.method.search_space(_PinnedTrial(trial, self.fixed))
        overrides.update({f"method_hparams.{self.base}.{name}": value for name, value in sampled.items()
                          if name not in self.fixed})
        return overrides

    def meta(self, cfg: SuiteConfig) -> dict:
        """The budget recorded on the study (:data:`META_ATTR`): a later run must keep it."""
        return {"epochs": int(cfg.tune.epochs), "seed_for_trials": int(cfg.tune.seed_for_trials),
                "recipe_space": [d.describe() for d in self.recipe],
                "method_space": sorted(self.method_params), "qbench_budget": "equal per method"}


def method_space(cfg: SuiteConfig, spec: StudySpec, recipe: list[SearchDim]) -> StudySpace:
    base, hparams = parse_method_spec(spec.method, to_dict(cfg).get("method_hparams"))
    _, inline = parse_method_spec(spec.method, None)
    method = create_method(base, **hparams)
    recorder = _RecordingTrial(dict(method.config), dict(inline))
    method.search_space(recorder)
    unknown = sorted(set(recorder.suggested) - set(method.config))
    if unknown:
        raise ConfigError(f"method '{base}' search space suggests {', '.join(repr(u) for u in unknown)}, not among its "
                          f"hyperparameters; valid: {', '.join(sorted(method.config)) or '(none)'}")
    method_params = {name: method.config[name] for name in recorder.suggested}
    recipe_defaults = {d.key: get_value(cfg, d.key) for d in recipe}
    return StudySpace(base, method, dict(inline), method_params, recipe, recipe_defaults)


def study_spaces(cfg: SuiteConfig) -> dict[StudySpec, StudySpace]:
    """Every study of a training suite with its search space (the suite's plugins loaded)."""
    if cfg.kind != "train":
        raise QbenchError(f"suite '{cfg.name}' is a {cfg.kind} suite; only training suites can be tuned")
    recipe = recipe_dims(cfg.tune.recipe_space)
    for plugin in cfg.plugins:
        load_plugin(plugin)
    return {spec: method_space(cfg, spec, recipe) for spec in study_specs(cfg)}


def overrides_from_params(params: dict, base: str) -> dict[str, Any]:
    """Optuna parameters → dotted config keys: recipe keys as they are, the method's under method_hparams.<base>."""
    out = {}
    for name, value in params.items():
        if "." in name:
            if name != "train.epochs":  # the full schedule is the suite's
                out[name] = value
        else:
            out[f"method_hparams.{base}.{name}"] = value
    return out


def format_params(params: dict) -> str:
    """``lr=0.05, rho=1e-05`` for logs and tables."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
