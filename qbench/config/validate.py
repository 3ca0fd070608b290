"""Every check of a resolved config's values: the first problem raises a one-line :class:`ConfigError` naming the key
and the fix."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Any

from ..bits import parse_bits
from ..errors import ConfigError
from ..paired import MIN_SEEDS
from .policy import SAME, parse_layer_precision, parse_policy
from .schema import (AMP_ALIASES, COMPILE_MODES, DATASETS, DECODE_MODES, KINDS, LOGGERS, OPTIMIZERS, PRUNERS,
                     RECURRENCE_QUANTIZERS, SCHEDULES, SEEDS_AUTO, BenchConfig, SuiteConfig, TheoryConfig, TuneConfig)
from .space import is_number, recipe_dims

__all__ = ["validate", "parse_shard", "normalise_amp", "normalise_compile", "check_path_segment"]

# One path segment of safe characters: suite names, archs, run ids, study slugs (a method spec may carry '=', ',',
# ':', '+', '@' and '.'), never starting with '.' and never containing '..': nothing qbench writes may land outside
# results_dir.
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+,:@-]*$")


def check_path_segment(value: str, what: str) -> str:
    """``value`` when it is one safe path segment (letters, digits and ``_ . = + , : @ -``, not starting with '.', no
    '..'); otherwise a one-line :class:`ConfigError` naming ``what`` (e.g. ``"name"``)."""
    text = str(value)
    if not _SEGMENT.match(text) or ".." in text:
        raise ConfigError(f"{what} {text!r} is not a safe folder name; use letters, digits and _ . = + , : @ - "
                          "(no '/', no '..', not starting with '.')")
    return text


def _choice(key: str, value: str, allowed: tuple[str, ...], what: str = "") -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown {key} '{value}'{hint}; choose {what or 'one of ' + ', '.join(allowed)}")


def _at_least(key: str, value: Any, low: float, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_number(value) or not math.isfinite(value) or value < low:
        raise ConfigError(f"{key}={value!r} must be a finite number ≥ {low:g}")


def _finite_numbers(key: str, value: Any) -> None:
    """Every number inside a nested hyperparameter mapping is finite (NaN/inf would be recorded as the method's
    divergence, not as the bad input it is)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _finite_numbers(f"{key}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite_numbers(f"{key}[{i}]", v)
    elif (is_number(value) and not math.isfinite(value)) or \
            (isinstance(value, str) and value.strip().lower().lstrip("+-.") in ("nan", "inf", "infinity")):
        raise ConfigError(f"{key}={value} must be a finite number")


def normalise_amp(key: str, value: Any) -> str:
    text = str(value).strip().lower() if value is not None else ""
    if text not in AMP_ALIASES:
        raise ConfigError(f"unknown {key} '{value}'; use false, bf16 or fp16")
    return AMP_ALIASES[text]


def normalise_compile(key: str, value: Any) -> str:
    """``train.compile`` as one of :data:`COMPILE_MODES` (YAML's booleans arrive as "True"/"False")."""
    text = str(value).strip().lower()
    if text not in COMPILE_MODES:
        raise ConfigError(f"unknown {key} '{value}'; use auto (compile on CUDA, eager on the CPU), true, false or "
                          "reduce-overhead (CUDA graphs)")
    return text


def validate(cfg: SuiteConfig) -> None:
    """Check every value of a resolved config (normalising spellings such as ``amp: False`` in place); the first
    problem raises a one-line :class:`ConfigError` naming the key and the fix."""
    _choice("kind", cfg.kind, KINDS, "train or theory")
    check_path_segment(cfg.name, "name")
    for arch in cfg.model.archs:
        check_path_segment(arch, "model.archs entry")
    for spec in cfg.methods:
        check_path_segment(spec, "method")
    _choice("data.name", cfg.data.name, DATASETS)
    for b in [*cfg.bits, *(b for bits in cfg.method_bits.values() for b in bits)]:
        parse_bits(b)  # BitsError: one line naming the form
    for method in cfg.method_bits:
        if method not in cfg.methods:
            raise ConfigError(f"method_bits.{method}: '{method}' is not in methods {list(cfg.methods)}; add it there or "
                              "drop the key")
    if not cfg.policies:
        raise ConfigError("policies is empty; give at least one, e.g. policy=fp")
    for p in cfg.policies:
        parse_policy(p)
    for glob, precision in cfg.layer_bits.items():
        if parse_layer_precision(precision, f"layer_bits[{glob!r}]") == SAME:
            raise ConfigError(f"layer_bits[{glob!r}]=same says nothing; give fp or a bit spec such as W4A4")
    if not cfg.methods:
        raise ConfigError("methods is empty; give at least one, e.g. methods=[fp,bcgd]")
    if not cfg.model.archs:
        raise ConfigError("model.archs is empty; give at least one, e.g. arch=lenet5")
    _validate_seeds(cfg)
    t = cfg.train
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _choice("train.schedule", t.schedule, SCHEDULES)
    t.amp = normalise_amp("train.amp", t.amp)
    t.compile = normalise_compile("train.compile", t.compile)
    if cfg.bench.amp_dtype is not None:
        amp = normalise_amp("bench.amp_dtype", cfg.bench.amp_dtype)
        cfg.bench.amp_dtype = None if amp == "false" else amp
    if isinstance(t.epochs, bool) or t.epochs < 1:
        raise ConfigError(f"train.epochs={t.epochs} must be at least 1")
    if not (is_number(t.lr) and math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"train.lr={t.lr} must be a finite number > 0")
    for key in ("momentum", "weight_decay", "warmup_epochs", "min_lr_factor", "label_smoothing", "gamma"):
        _at_least(f"train.{key}", getattr(t, key), 0.0)
    if t.momentum >= 1 or t.label_smoothing >= 1:
        raise ConfigError("train.momentum and train.label_smoothing must be below 1")
    _at_least("train.grad_clip", t.grad_clip, 0.0, allow_none=True)
    _at_least("train.max_steps_per_epoch", t.max_steps_per_epoch, 1, allow_none=True)
    _at_least("train.diag_batches", t.diag_batches, 0)
    d = cfg.data
    _at_least("data.batch_size", d.batch_size, 1)
    _at_least("data.eval_batch_size", d.eval_batch_size, 1, allow_none=True)
    _at_least("data.num_workers", d.num_workers, 0)
    _at_least("data.train_subset", d.train_subset, 1, allow_none=True)
    _at_least("data.input_size", d.input_size, 1, allow_none=True)
    _choice("data.decode", d.decode, DECODE_MODES, "auto, cpu or gpu")
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={d.val_fraction} must be in [0, 1)")
    _finite_numbers("method_hparams", cfg.method_hparams)
    _validate_tune(cfg.tune)
    _validate_bench(cfg.bench)
    if cfg.kind == "theory":
        _validate_theory(cfg.theory)
    if cfg.shard is not None:
        parse_shard(cfg.shard)
    _validate_loggers(cfg.loggers)


def _validate_loggers(loggers: list) -> None:
    for name in loggers:
        _choice("loggers entry", name, LOGGERS, "from " + ", ".join(LOGGERS) + " (or loggers=[] for none)")
    if len(set(loggers)) != len(loggers):
        raise ConfigError(f"loggers={list(loggers)} lists a logger twice; give each once")


def _validate_seeds(cfg: SuiteConfig) -> None:
    """``seeds``: a list of non-negative integers or ``auto`` (then seeds_min ≤ seeds_max, and a suite the sequential
    rule can decide: one training suite, whole, in one stage)."""
    if isinstance(cfg.seeds, str) and cfg.seeds.strip().lower() == SEEDS_AUTO:
        cfg.seeds = SEEDS_AUTO
        blocker = ("a theory suite" if cfg.kind != "train" else "shard=" if cfg.shard is not None
                   else "stages" if cfg.stages else None)
        if blocker:
            raise ConfigError(f"seeds=auto decides from the records of whole leaderboard columns and cannot run with "
                              f"{blocker}; give a list of seeds, e.g. seeds=[0,1,2]")
    elif isinstance(cfg.seeds, str) or not cfg.seeds:
        raise ConfigError(f"seeds={cfg.seeds!r}: give a list of seeds, e.g. seeds=[0,1,2], or seeds=auto")
    else:
        for seed in cfg.seeds:
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise ConfigError(f"seeds must be non-negative integers, got {seed!r}")
    if isinstance(cfg.seeds_min, bool) or not isinstance(cfg.seeds_min, int) or cfg.seeds_min < MIN_SEEDS:
        raise ConfigError(f"seeds_min={cfg.seeds_min!r} must be an integer ≥ {MIN_SEEDS} (the fewest seeds the "
                          "paired test compares)")
    if isinstance(cfg.seeds_max, bool) or not isinstance(cfg.seeds_max, int) or cfg.seeds_max < cfg.seeds_min:
        raise ConfigError(f"seeds_max={cfg.seeds_max!r} must be an integer ≥ seeds_min={cfg.seeds_min}")


def _validate_tune(t: TuneConfig) -> None:
    _choice("tune.pruner", t.pruner, PRUNERS, "hyperband, median or none")
    for key in ("n_trials", "epochs", "workers", "heartbeat_interval"):
        _at_least(f"tune.{key}", getattr(t, key), 1)
    _at_least("tune.max_retry", t.max_retry, 0)
    _at_least("tune.timeout", t.timeout, 0, allow_none=True)
    _at_least("tune.grace_period", t.grace_period, 1, allow_none=True)
    recipe_dims(t.recipe_space)


def _validate_bench(b: BenchConfig) -> None:
    for key in ("batch_size", "steps", "rounds"):
        _at_least(f"bench.{key}", getattr(b, key), 1)
    _at_least("bench.warmup", b.warmup, 0)
    _at_least("bench.threads", b.threads, 1, allow_none=True)
    _at_least("bench.min_run_time", b.min_run_time, 0)


def _validate_theory(th: TheoryConfig) -> None:
    for q in th.recurrence.quantizers:
        _choice("theory.recurrence quantizer", q, RECURRENCE_QUANTIZERS)
    if not th.estimators and not th.recurrence.quantizers:
        raise ConfigError("theory.estimators and theory.recurrence.quantizers are both empty; list at least one")
    if len(set(map(str, th.estimators))) != len(th.estimators):
        raise ConfigError("theory.estimators lists an estimator twice; give each once")
    for key in ("m", "n", "n_draws", "mc_samples", "train_draws", "train_steps", "quadrature_points", "estimator_bits"):
        _at_least(f"theory.{key}", getattr(th, key), 1)
    if not 0 <= th.mc_draws <= th.n_draws:
        raise ConfigError(f"theory.mc_draws must be between 0 and theory.n_draws={th.n_draws}")
    for key in ("steps", "m", "n"):
        _at_least(f"theory.recurrence.{key}", getattr(th.recurrence, key), 1)
    # Step sizes and the clip level of μ' = 1{0 < x < clip}: a non-positive or non-finite one gives no descent (or
    # μ' ≡ 0, whose cosine with ∂f/∂w is 0/0).
    positive = {"theory.train_lr": th.train_lr, "theory.clip": th.clip, "theory.recurrence.lr": th.recurrence.lr}
    for key, value in positive.items():  # train_lr None means η = 2/(m+1)
        if value is not None and not (is_number(value) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{key}={value} must be a finite number > 0")


def parse_shard(shard: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in str(shard).split("/"))
    except ValueError:
        raise ConfigError(f"bad shard '{shard}'; write i/n with 0 ≤ i < n, e.g. shard=0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"bad shard '{shard}'; need 0 ≤ i < n")
    return i, n
