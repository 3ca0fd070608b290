"""Suite configuration: the typed schema, loading, overrides and every validation. No torch.

A suite is YAML in ``suites/`` plus OmegaConf-style ``key=value`` overrides. Merge order: the schema defaults → the
suite's YAML → command-line overrides. Every key is checked against the schema (the dataclasses below); a typo fails
with one line naming the valid keys at that level, a bad value with one line naming the key and what is allowed.
:func:`load_config` returns a :class:`SuiteConfig` instance: the typed object travels from here to the training step
(``run.runner`` narrows it to a cell, ``run.train.fit`` takes its :class:`TrainConfig`, the data and model builders
take :class:`DataConfig` / :class:`ModelConfig`), so every default is written once, here. The resolved config is
saved with every run (``config.yaml``), and ``qbench run --from <run dir>/config.yaml`` reproduces that run.

Shorthands on the command line: ``method=bcgd`` (→ ``methods=[bcgd]``), ``arch=resnet20_cifar`` (→
``model.archs=[...]``), ``seed=0`` (→ ``seeds=[0]``), ``policy=fp`` (→ ``policies=[fp]``), and a scalar
``bits=W1A4`` (→ ``bits=[W1A4]``). A method's hyperparameters: ``method_hparams.bcgd.rho=1e-4``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from .bits import parse_bits
from .errors import ConfigError

__all__ = [
    "SuiteConfig",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "TuneConfig",
    "BenchConfig",
    "TheoryConfig",
    "RecurrenceConfig",
    "SearchDim",
    "KINDS",
    "DATASETS",
    "POLICIES",
    "OPTIMIZERS",
    "SCHEDULES",
    "AMP_MODES",
    "DECODE_MODES",
    "PRUNERS",
    "RECURRENCE_QUANTIZERS",
    "THEORY_ESTIMATORS",
    "load_config",
    "stage_configs",
    "with_overrides",
    "get_value",
    "list_suites",
    "suite_path",
    "parse_shard",
    "parse_search_dim",
    "recipe_keys",
    "recipe_dims",
    "to_dict",
    "to_yaml",
]

KINDS = ("train", "theory")
DATASETS = ("mnist5k", "digits", "mnist", "cifar10", "cifar100", "imagenet", "fake")
POLICIES = ("fp", "quantized")  # fp: first and last layers float; quantized: every layer
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "multistep", "cosine", "exponential")
DECODE_MODES = ("auto", "cpu", "gpu")  # data.decode
AMP_MODES = ("false", "bf16", "fp16")  # autocast dtype on CUDA; the CPU always trains in float32
PRUNERS = ("hyperband", "median", "none")
RECURRENCE_QUANTIZERS = ("binary", "ternary")  # the REC toy's weight quantizers (spec §6)
THEORY_ESTIMATORS = ("identity", "relu", "clipped_relu")  # closed forms of spec §8; any method spec works too
# Spellings accepted for train.amp / bench.amp_dtype, normalised to AMP_MODES (YAML's `false` arrives as "False").
_AMP_ALIASES = {"false": "false", "none": "false", "fp32": "false", "float32": "false", "": "false",
                "true": "bf16", "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "half": "fp16"}


@dataclass
class DataConfig:
    name: str = "mnist5k"  # one of DATASETS
    root: Optional[str] = None  # where the dataset files are (mnist, cifar10/100, imagenet)
    download: bool = False  # let torchvision download mnist/cifar into root (never in tests)
    val_fraction: float = 0.1  # validation carved from train (for tuning); test is only for reporting
    split_seed: int = 0
    augment: bool = True  # the dataset's standard augmentation
    input_size: Optional[int] = None  # resize (ImageNet crop size, digits upsampling)
    train_subset: Optional[int] = None  # cap on training images (quick runs)
    batch_size: int = 128  # the global batch (split over torchrun's processes)
    eval_batch_size: Optional[int] = None  # default: batch_size
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    decode: str = "auto"  # ImageFolder JPEGs: gpu (on the training device), cpu (PIL in the workers); auto: gpu on CUDA


@dataclass
class ModelConfig:
    archs: List[str] = field(default_factory=lambda: ["lenet5"])  # timm names (the papers' archs are registered)
    pretrained: bool = False  # timm's pretrained weights (needs them locally or a download the user allows)
    checkpoint: Optional[str] = None  # local FP state_dict to start from
    adapt_32px: bool = False  # 3×3 stride-1 stem, no max-pool (timm ImageNet models on 32 px inputs)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # extra timm.create_model keyword arguments
    # Warm start from another run of the same results dir (runner.warm_start): its model.pt, loaded after the
    # quantizer surgery. Placeholders {arch} {bits} {policy} {seed} are filled per cell (a stage-2 cell of seed s
    # starts from the stage-1 run of seed s).
    init_from_run: Optional[str] = None
    save_final: bool = False  # keep the final weights as <run_dir>/model.pt (what init_from_run loads)


@dataclass
class TrainConfig:
    epochs: int = 10
    optimizer: str = "sgd"  # one of OPTIMIZERS
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # one of SCHEDULES
    warmup_epochs: float = 0.0
    milestones: List[int] = field(default_factory=list)  # multistep epochs
    gamma: float = 0.1  # multistep factor, or the per-epoch factor of exponential
    min_lr_factor: float = 0.0  # cosine floor as a fraction of lr
    label_smoothing: float = 0.0
    grad_clip: Optional[float] = None
    amp: str = "false"  # one of AMP_MODES (CUDA only)
    channels_last: bool = False  # CUDA only
    compile: bool = False  # torch.compile the model
    max_steps_per_epoch: Optional[int] = None
    diag_batches: int = 4  # training batches for the loss at Q(w) of the recurrence diagnostics (0: off)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class TuneConfig:
    n_trials: int = 20  # the same for every method (equal budget)
    epochs: int = 3  # epochs per trial, the same for every method
    pruner: str = "hyperband"  # one of PRUNERS
    seed: int = 0  # TPE sampler seed: the sequence of suggestions is reproducible for one worker
    storage: Optional[str] = None  # default: a journal file under <results_dir>/<suite>/tuning/
    workers: int = 1  # worker processes started by this command on this machine
    # Shared recipe keys opened to tuning, {dotted key: range}; the format is parse_search_dim's.
    recipe_space: Dict[str, Any] = field(default_factory=dict)
    timeout: Optional[float] = None  # seconds per study and worker
    seed_for_trials: int = 0  # training seed of every trial
    heartbeat_interval: int = 60  # RDB storages: seconds between a running trial's heartbeats
    grace_period: Optional[int] = None  # RDB: a trial with no heartbeat for this long is failed (default 2×interval)
    max_retry: int = 3  # a trial whose worker died is re-queued with the same parameters at most this often


@dataclass
class BenchConfig:
    batch_size: int = 128
    amp_dtype: Optional[str] = None  # bf16 | fp16 (CUDA)
    channels_last: bool = False
    compile: bool = False
    steps: int = 20
    warmup: int = 5
    threads: Optional[int] = None  # CPU threads (default: torch's)
    min_run_time: float = 1.0  # CPU: seconds per measurement
    rounds: int = 1  # repeat the whole sweep (FP included) and merge the samples: robust to drift on a shared machine


@dataclass
class RecurrenceConfig:
    """The REC recurrence toy (spec §6; Long, Yin, Xin, arXiv 2012.05529)."""

    quantizers: List[str] = field(default_factory=lambda: ["binary", "ternary"])  # of RECURRENCE_QUANTIZERS
    steps: int = 20000
    m: int = 10
    n: int = 20
    lr: float = 0.05
    train_v: bool = False


@dataclass
class TheoryConfig:
    """Options of ``kind: theory`` suites: the STE paper's two-linear-layer Gaussian model (spec §8; Yin et al.,
    ICLR 2019, arXiv 1903.05662) and the recurrence toy."""

    # THEORY_ESTIMATORS (closed forms) or registered method specs (quadrature of their activation backward)
    estimators: List[str] = field(default_factory=lambda: list(THEORY_ESTIMATORS))
    m: int = 5  # spec §8's Monte Carlo check size
    n: int = 8
    n_draws: int = 200
    mc_samples: int = 200_000
    mc_draws: int = 4
    train_draws: int = 20
    train_steps: int = 1000
    train_lr: Optional[float] = None  # None: η = 2/(m+1)
    clip: float = 1.0  # clipped ReLU μ' = 1{0 < x < clip}; the model's σ = 1{x > 0} has its step at 0
    quadrature_points: int = 6500  # grid of the quadrature of a method's μ' (x ∈ [−6.5, 6.5], spacing 2e-3)
    estimator_bits: int = 1  # σ of spec §8 is a 1-bit activation: a method's estimator is taken at this bit-width
    recurrence: RecurrenceConfig = field(default_factory=RecurrenceConfig)


@dataclass
class SuiteConfig:
    name: str = ""
    description: str = ""
    kind: str = "train"  # one of KINDS
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    methods: List[str] = field(default_factory=lambda: ["fp"])
    method_hparams: Dict[str, Any] = field(default_factory=dict)  # {method: {hparam: value}}
    bits: List[str] = field(default_factory=lambda: ["W1A4"])
    # {method: [bits, ...]}: bit-widths for one method instead of `bits` (a zoo suite runs weight-only methods at
    # W1A32 while the others run at W1A1…W4A4). Keys are method names as listed in `methods`.
    method_bits: Dict[str, List[str]] = field(default_factory=dict)
    seeds: List[int] = field(default_factory=lambda: [0])
    policies: List[str] = field(default_factory=lambda: ["fp"])  # of POLICIES
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    theory: TheoryConfig = field(default_factory=TheoryConfig)
    tuned: bool = False  # train each method with its tuned parameters (from `qbench tune`)
    target_accuracy: Optional[float] = None  # for "time to target" in the leaderboard
    results_dir: str = "results"
    plugins: List[str] = field(default_factory=list)  # method plugin files
    shard: Optional[str] = None  # "i/n": run the i-th of n deterministic slices of the cells
    paper: Dict[str, Any] = field(default_factory=dict)  # the paper setting this suite reproduces (for the report)
    # Stages run in order by `qbench run`, each {name: ..., <config overrides>} merged onto this config (e.g. train a
    # model, then continue it under other estimators: mnist-lenet5-repel). Run ids start with "<stage>_".
    stages: List[Dict[str, Any]] = field(default_factory=list)
    stage: str = ""  # set by stage_configs: the stage a resolved config belongs to


# ------------------------------------------------------------------------------------------------- search spaces
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
    space = _plain(space) or {}
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


# ------------------------------------------------------------------------------------------------------ loading
_SHORTHANDS = {"method": "methods", "arch": "model.archs", "seed": "seeds", "policy": "policies"}
_LIST_KEYS = {"methods", "model.archs", "seeds", "policies", "bits", "plugins"}
_STAGE_FORBIDDEN = ("name", "stage", "stages", "kind", "results_dir", "shard")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def suite_path(name: str, suites_dir: str | Path | None = None) -> Path:
    """Path of a suite YAML: a file path, a name in ``suites_dir``, or a suite shipped with qbench."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    folders = [Path(suites_dir)] if suites_dir else []
    folders.append(Path(str(resources.files("qbench.suites"))))
    for folder in folders:
        for ext in (".yaml", ".yml"):
            if (folder / f"{name}{ext}").is_file():
                return folder / f"{name}{ext}"
    known = [n for n, _ in list_suites(suites_dir)]
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"unknown suite '{name}'{hint}; known suites: {', '.join(known)} (or give a path to a .yaml)")


def list_suites(suites_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """(name, one-line description) of every suite shipped with qbench and in ``suites_dir``."""
    folders = [Path(str(resources.files("qbench.suites")))]
    if suites_dir:
        folders.insert(0, Path(suites_dir))
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.y*ml")):
            if path.stem in found:
                continue
            try:
                desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
            except yaml.YAMLError:
                desc = "(unreadable YAML)"
            found[path.stem] = " ".join(str(desc).split())
    return sorted(found.items())


def _valid_keys(node: Any) -> list[str]:
    try:
        return sorted(str(k) for k in node.keys())
    except Exception:  # noqa: BLE001 - a leaf has no keys
        return []


def _describe_key_error(base: DictConfig, key: str) -> str:
    parts = key.split(".")
    node: Any = base
    for i, part in enumerate(parts):
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
            continue
        prefix = ".".join(parts[:i])
        valid = _valid_keys(node)
        close = difflib.get_close_matches(part, valid, n=1)
        hint = f" (did you mean '{'.'.join([*parts[:i], close[0]])}'?)" if close else ""
        where = f" under '{prefix}'" if prefix else ""
        return f"unknown config key '{key}'{hint}; valid keys{where}: {', '.join(valid)}"
    return f"invalid config key '{key}'"


def _normalise_override(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"bad override '{item}'; write key=value, e.g. train.epochs=3 or bits=[W1A4,W2A4]")
    key, value = item.split("=", 1)
    key = key.strip().lstrip("+")
    key = _SHORTHANDS.get(key, key)
    if key in _LIST_KEYS and not value.strip().startswith("["):
        value = f"[{value}]"
    return key, value


def _merge_checked(base: DictConfig, data: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, data)
    except (ConfigKeyError, ConfigAttributeError) as exc:
        key = getattr(exc, "full_key", None) or str(exc)
        raise ConfigError(f"{source}: {_describe_key_error(base, str(key))}") from None
    except ValidationError as exc:
        key = getattr(exc, "full_key", "?")
        raise ConfigError(f"{source}: bad value for '{key}': {str(exc).splitlines()[0]}") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: {str(exc).splitlines()[0]}") from None


def load_config(suite: str | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                from_file: str | Path | None = None, suites_dir: str | Path | None = None) -> SuiteConfig:
    """Resolve a suite (by name or path) or a saved run config, plus ``key=value`` overrides, into a validated
    :class:`SuiteConfig`.

    ``suite=NAME`` may also be given among the overrides (``qbench run suite=quickstart train.epochs=1``). With
    ``from_file`` (a run's ``config.yaml``) the result is narrowed to that run's cell whatever the overrides say, so
    ``qbench run --from`` re-runs exactly that run.
    """
    rest = []
    for item in overrides:
        if item.startswith("suite="):
            suite = item.split("=", 1)[1]
        elif item.startswith("suites_dir="):
            suites_dir = item.split("=", 1)[1]
        else:
            rest.append(item)
    cfg = OmegaConf.structured(SuiteConfig)
    saved_cell = None
    if from_file is not None:
        path = Path(from_file)
        if not path.is_file():
            raise ConfigError(f"--from: no config file at '{path}'; give a run directory's config.yaml")
        saved = _load_yaml(path)
        saved_cell = saved.pop("cell", None)  # the run's cell (run.runner.cell_config), not a config key
        cfg = _merge_checked(cfg, saved, str(path))
    elif suite is not None:
        path = suite_path(suite, suites_dir)
        data = _load_yaml(path)
        data.setdefault("name", path.stem)
        cfg = _merge_checked(cfg, data, str(path))
    elif rest:
        raise ConfigError("no suite given; add suite=<name> (see `qbench list suites`) or --from <run>/config.yaml")
    for item in rest:
        key, value = _normalise_override(item)
        parsed = OmegaConf.from_dotlist([f"{key}={value}"])
        if key.startswith("stages."):  # stages.<name>.<key>=value changes one stage only
            _override_one_stage(cfg, key, parsed, item)
            continue
        cfg = _merge_checked(cfg, parsed, f"override '{item}'")
        _override_stages(cfg, key, parsed)
    if isinstance(saved_cell, Mapping):
        _narrow_to_saved_cell(cfg, saved_cell, str(from_file))
    return _finish(cfg)


def _narrow_to_saved_cell(cfg: DictConfig, cell: Mapping, source: str) -> None:
    missing = [k for k in ("method", "arch", "bits", "policy", "seed") if k not in cell]
    if missing:
        raise ConfigError(f"{source}: its cell block lacks {', '.join(missing)}; give the config.yaml a qbench run "
                          "wrote (or copy that run's folder again)")
    cfg.methods, cfg.bits, cfg.seeds, cfg.policies = [cell["method"]], [cell["bits"]], [cell["seed"]], [cell["policy"]]
    cfg.model.archs = [cell["arch"]]


def _finish(cfg: DictConfig) -> SuiteConfig:
    """DictConfig → the typed object, normalised and validated (stages included)."""
    try:
        typed = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    validate(typed)
    return typed


def _override_stages(cfg: DictConfig, key: str, parsed: DictConfig) -> None:
    """A command-line override wins over a stage that sets the same key too (``train.epochs=1`` shortens every stage
    of a staged suite, as it would an unstaged one)."""
    if key.startswith("stages") or not cfg.stages:
        return
    value = OmegaConf.select(parsed, key)
    for stage in cfg.stages:
        if OmegaConf.select(stage, key, default=None) is not None:
            OmegaConf.update(stage, key, value, merge=False)


def _override_one_stage(cfg: DictConfig, key: str, parsed: DictConfig, item: str) -> None:
    """``stages.continue.train.lr=1e-3``: set a key of the stage named ``continue`` (checked when stages resolve)."""
    _, name, *rest = key.split(".")
    names = [str(stage.get("name")) for stage in cfg.stages]
    if not rest:
        example = names[0] if names else "base"
        raise ConfigError(f"override '{item}': write stages.<stage name>.<key>=value, "
                          f"e.g. stages.{example}.train.lr=1e-3")
    if name not in names:
        raise ConfigError(f"override '{item}': no stage named '{name}'; this suite's stages: "
                          f"{', '.join(names) or '(none)'}")
    OmegaConf.update(cfg.stages[names.index(name)], ".".join(rest), OmegaConf.select(parsed, key), merge=True)


def stage_configs(cfg: SuiteConfig) -> list[SuiteConfig]:
    """The resolved config of each of ``cfg.stages``, in order: the suite's config with the stage's overrides merged
    on top (checked against the schema like the suite itself), ``stage`` set to the stage's name, ``stages`` empty.
    A suite without stages is its own single stage."""
    if not cfg.stages:
        return [cfg]
    out, seen = [], set()
    for index, stage in enumerate(cfg.stages):
        data = dict(_plain(stage) or {}) if isinstance(stage, (Mapping, DictConfig)) else stage
        if not isinstance(data, dict):
            raise ConfigError(f"stages[{index}] must be a mapping {{name: ..., <config keys>}}")
        name = str(data.pop("name", "") or "")
        if not _STAGE_NAME.match(name):
            raise ConfigError(f"stages[{index}] needs a name of letters, digits and '-' (got {name!r}); "
                              "e.g. name: base")
        if name in seen:
            raise ConfigError(f"stage name '{name}' is used twice; give every stage its own name")
        seen.add(name)
        bad = sorted(set(data) & set(_STAGE_FORBIDDEN))
        if bad:
            raise ConfigError(f"stage '{name}' sets {', '.join(bad)}; a stage may only change the suite's run keys "
                              "(methods, bits, model, train, ...)")
        base = OmegaConf.structured(dataclasses.replace(cfg, stages=[]))
        merged = _merge_checked(base, data, f"stage '{name}'")
        merged.stage = name
        out.append(_finish(merged))
    return out


def with_overrides(cfg: SuiteConfig, overrides: Mapping[str, Any]) -> SuiteConfig:
    """A copy of ``cfg`` with dotted keys set (``{"train.lr": 0.05, "method_hparams.bcgd.rho": 1e-4}``), checked
    and validated like a command-line override (tuned parameters, Optuna trials)."""
    node = OmegaConf.structured(cfg)
    for key, value in overrides.items():
        try:
            OmegaConf.update(node, key, value, merge=True)
        except (ConfigKeyError, ConfigAttributeError):
            raise ConfigError(_describe_key_error(node, key)) from None
        except (ValidationError, OmegaConfBaseException) as exc:
            raise ConfigError(f"bad value for '{key}': {str(exc).splitlines()[0]}") from None
    return _finish(node)


def get_value(cfg: SuiteConfig, dotted: str) -> Any:
    """The value of a dotted key (``"train.lr"``) of a typed config; a ConfigError names an unknown key."""
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                raise ConfigError(f"unknown config key '{dotted}'")
            node = node[part]
        elif dataclasses.is_dataclass(node) and part in {f.name for f in dataclasses.fields(node)}:
            node = getattr(node, part)
        else:
            raise ConfigError(f"unknown config key '{dotted}'")
    return node


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite must be a YAML mapping of keys")
    return data


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


# --------------------------------------------------------------------------------------------------- validation
def _choice(key: str, value: str, allowed: tuple[str, ...], what: str = "") -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown {key} '{value}'{hint}; choose {what or 'one of ' + ', '.join(allowed)}")


def _at_least(key: str, value: Any, low: float, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not _is_number(value) or not math.isfinite(value) or value < low:
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
    elif (_is_number(value) and not math.isfinite(value)) or \
            (isinstance(value, str) and value.strip().lower().lstrip("+-.") in ("nan", "inf", "infinity")):
        raise ConfigError(f"{key}={value} must be a finite number")


def _normalise_amp(key: str, value: Any) -> str:
    text = str(value).strip().lower() if value is not None else ""
    if text not in _AMP_ALIASES:
        raise ConfigError(f"unknown {key} '{value}'; use false, bf16 or fp16")
    return _AMP_ALIASES[text]


def validate(cfg: SuiteConfig) -> None:
    """Check every value of a resolved config (normalising spellings such as ``amp: False`` in place); the first
    problem raises a one-line :class:`ConfigError` naming the key and the fix."""
    _choice("kind", cfg.kind, KINDS, "train or theory")
    _choice("data.name", cfg.data.name, DATASETS)
    for b in [*cfg.bits, *(b for bits in cfg.method_bits.values() for b in bits)]:
        parse_bits(b)  # BitsError: one line naming the form
    for method in cfg.method_bits:
        if method not in cfg.methods:
            raise ConfigError(f"method_bits.{method}: '{method}' is not in methods {list(cfg.methods)}; add it there or "
                              "drop the key")
    for p in cfg.policies:
        _choice("policy", p, POLICIES, "fp (first/last layers float) or quantized")
    if not cfg.methods:
        raise ConfigError("methods is empty; give at least one, e.g. methods=[fp,bcgd]")
    if not cfg.model.archs:
        raise ConfigError("model.archs is empty; give at least one, e.g. arch=lenet5")
    if not cfg.seeds:
        raise ConfigError("seeds is empty; give at least one, e.g. seeds=[0]")
    for seed in cfg.seeds:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seeds must be non-negative integers, got {seed!r}")
    t = cfg.train
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _choice("train.schedule", t.schedule, SCHEDULES)
    t.amp = _normalise_amp("train.amp", t.amp)
    if cfg.bench.amp_dtype is not None:
        amp = _normalise_amp("bench.amp_dtype", cfg.bench.amp_dtype)
        cfg.bench.amp_dtype = None if amp == "false" else amp
    if isinstance(t.epochs, bool) or t.epochs < 1:
        raise ConfigError(f"train.epochs={t.epochs} must be at least 1")
    if not (_is_number(t.lr) and math.isfinite(t.lr) and t.lr > 0):
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
    if cfg.stages:
        stage_configs(cfg)  # a bad stage fails now, with the others, not after the first stage has run


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


def parse_shard(shard: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in str(shard).split("/"))
    except ValueError:
        raise ConfigError(f"bad shard '{shard}'; write i/n with 0 ≤ i < n, e.g. shard=0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"bad shard '{shard}'; need 0 ≤ i < n")
    return i, n


def to_dict(cfg: SuiteConfig | DictConfig | Mapping) -> dict:
    """A plain nested dict (what ``config.yaml`` holds)."""
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def to_yaml(cfg: SuiteConfig | DictConfig | Mapping) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
