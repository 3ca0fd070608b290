"""Suite configuration: YAML in ``suites/`` + OmegaConf-style ``key=value`` overrides, validated by a strict schema.

Merge order: the schema defaults → the suite's YAML → command-line overrides. Every key is checked against the
schema (dataclasses below); a typo fails with one line naming the valid keys at that level. The resolved config is
saved with every run (``config.yaml``), and ``qbench run --from <run dir>/config.yaml`` reproduces that run.

Shorthands on the command line: ``method=bcgd`` (→ ``methods=[bcgd]``), ``arch=resnet20_cifar`` (→
``model.archs=[...]``), ``seed=0`` (→ ``seeds=[0]``), ``policy=fp`` (→ ``policies=[fp]``), and a scalar
``bits=W1A4`` (→ ``bits=[W1A4]``). A method's hyperparameters: ``method_hparams.bcgd.rho=1e-4``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from .errors import ConfigError

__all__ = [
    "SuiteConfig",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "TuneConfig",
    "BenchConfig",
    "load_config",
    "stage_configs",
    "list_suites",
    "suite_path",
    "to_yaml",
    "to_dict",
]


@dataclass
class DataConfig:
    name: str = "mnist5k"  # mnist5k | digits | mnist | cifar10 | cifar100 | imagenet | fake
    root: Optional[str] = None  # where the dataset files are (mnist, cifar10/100, imagenet)
    download: bool = False  # let torchvision download mnist/cifar into root (never in tests)
    val_fraction: float = 0.1  # validation carved from train (for tuning); test is only for reporting
    split_seed: int = 0
    augment: bool = True  # the dataset's standard augmentation
    input_size: Optional[int] = None  # resize (ImageNet crop size, digits upsampling)
    train_subset: Optional[int] = None  # cap on training images (quick runs)
    batch_size: int = 128
    eval_batch_size: Optional[int] = None
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False


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
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # constant | multistep | cosine | exponential
    warmup_epochs: float = 0.0
    milestones: List[int] = field(default_factory=list)  # multistep epochs
    gamma: float = 0.1  # multistep factor, or the per-epoch factor of exponential
    min_lr_factor: float = 0.0  # cosine floor as a fraction of lr
    label_smoothing: float = 0.0
    grad_clip: Optional[float] = None
    amp: str = "false"  # false | bf16 | fp16 (CUDA only)
    channels_last: bool = False  # CUDA only
    compile: bool = False  # torch.compile the model
    max_steps_per_epoch: Optional[int] = None
    diag_batches: int = 4  # training batches for the loss at Q(w) of the recurrence diagnostics (0: off)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class TuneConfig:
    n_trials: int = 20  # the same for every method (equal budget)
    epochs: int = 3  # epochs per trial, the same for every method
    pruner: str = "hyperband"  # hyperband | median | none
    seed: int = 0  # TPE sampler seed: the sequence of suggestions is reproducible for one worker
    storage: Optional[str] = None  # default: a journal file under <results_dir>/<suite>/tuning/
    workers: int = 1  # worker processes started by this command on this machine
    recipe_space: Dict[str, Any] = field(default_factory=dict)  # shared recipe keys opened to tuning
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
class SuiteConfig:
    name: str = ""
    description: str = ""
    kind: str = "train"  # train | theory
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    methods: List[str] = field(default_factory=lambda: ["fp"])
    method_hparams: Dict[str, Any] = field(default_factory=dict)  # {method: {hparam: value}}
    bits: List[str] = field(default_factory=lambda: ["W1A4"])
    # {method: [bits, ...]}: bit-widths for one method instead of `bits` (a zoo suite runs weight-only methods at
    # W1A32 while the others run at W1A1…W4A4). Keys are method names as listed in `methods`.
    method_bits: Dict[str, List[str]] = field(default_factory=dict)
    seeds: List[int] = field(default_factory=lambda: [0])
    policies: List[str] = field(default_factory=lambda: ["fp"])  # fp: first/last layers float | quantized
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    tuned: bool = False  # train each method with its tuned parameters (from `qbench tune`)
    target_accuracy: Optional[float] = None  # for "time to target" in the leaderboard
    results_dir: str = "results"
    plugins: List[str] = field(default_factory=list)  # method plugin files
    shard: Optional[str] = None  # "i/n": run the i-th of n deterministic slices of the cells
    theory: Dict[str, Any] = field(default_factory=dict)  # options of kind=theory suites
    paper: Dict[str, Any] = field(default_factory=dict)  # the paper setting this suite reproduces (for the report)
    # Stages run in order by `qbench run`, each {name: ..., <config overrides>} merged onto this config (e.g. train a
    # model, then continue it under other estimators: mnist-lenet5-repel). Run ids start with "<stage>_".
    stages: List[Dict[str, Any]] = field(default_factory=list)
    stage: str = ""  # set by stage_configs: the stage a resolved config belongs to


_SHORTHANDS = {"method": "methods", "arch": "model.archs", "seed": "seeds", "policy": "policies"}
_LIST_KEYS = {"methods", "model.archs", "seeds", "policies", "bits", "plugins"}


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
    except Exception:
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
                from_file: str | Path | None = None, suites_dir: str | Path | None = None) -> DictConfig:
    """Resolve a suite (by name or path) or a saved run config, plus ``key=value`` overrides, into a strict config.

    ``suite=NAME`` may also be given among the overrides (``qbench run suite=quickstart train.epochs=1``).
    """
    overrides = list(overrides)
    rest = []
    for item in overrides:
        if item.startswith("suite="):
            suite = item.split("=", 1)[1]
        elif item.startswith("suites_dir="):
            suites_dir = item.split("=", 1)[1]
        else:
            rest.append(item)
    cfg = OmegaConf.structured(SuiteConfig)
    if from_file is not None:
        path = Path(from_file)
        if not path.is_file():
            raise ConfigError(f"--from: no config file at '{path}'; give a run directory's config.yaml")
        saved = _load_yaml(path)
        saved.pop("cell", None)  # the run's cell (runner.cell_config), read by `qbench run --from`, not a config key
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
    _validate(cfg)
    return cfg


_STAGE_FORBIDDEN = ("name", "stage", "stages", "kind", "results_dir", "shard")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


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


def stage_configs(cfg: DictConfig) -> list[DictConfig]:
    """The resolved config of each of ``cfg.stages``, in order: the suite's config with the stage's overrides merged
    on top (checked against the schema like the suite itself), ``stage`` set to the stage's name, ``stages`` empty.
    A suite without stages is its own single stage."""
    if not cfg.stages:
        return [cfg]
    out, seen = [], set()
    for index, stage in enumerate(cfg.stages):
        data = OmegaConf.to_container(stage, resolve=True) if isinstance(stage, DictConfig) else dict(stage or {})
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
        base = cfg.copy()
        base.stages = []
        merged = _merge_checked(base, data, f"stage '{name}'")
        merged.stage = name
        _validate(merged)
        out.append(merged)
    return out


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite must be a YAML mapping of keys")
    return data


def _validate(cfg: DictConfig) -> None:
    from .bits import parse_bits
    from .run.train import OPTIMIZERS, SCHEDULES

    if cfg.kind not in ("train", "theory"):
        raise ConfigError(f"kind must be 'train' or 'theory', got '{cfg.kind}'")
    for b in cfg.bits:
        parse_bits(b)
    for method, bits in cfg.method_bits.items():
        if method not in cfg.methods:
            raise ConfigError(f"method_bits.{method}: '{method}' is not in methods {list(cfg.methods)}; add it there or "
                              "drop the key")
        for b in bits:
            parse_bits(b)
    for p in cfg.policies:
        if p not in ("fp", "quantized"):
            raise ConfigError(f"unknown policy '{p}'; choose fp (first/last layers float) or quantized")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown train.optimizer '{cfg.train.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.train.schedule not in SCHEDULES:
        raise ConfigError(f"unknown train.schedule '{cfg.train.schedule}'; choose one of {', '.join(SCHEDULES)}")
    if cfg.tune.pruner not in ("hyperband", "median", "none"):
        raise ConfigError(f"unknown tune.pruner '{cfg.tune.pruner}'; choose hyperband, median or none")
    if not cfg.seeds:
        raise ConfigError("seeds is empty; give at least one, e.g. seeds=[0]")
    if cfg.shard is not None:
        parse_shard(cfg.shard)
    if cfg.stages:
        stage_configs(cfg)  # a bad stage fails now, with the others, not after the first stage has run


def parse_shard(shard: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in str(shard).split("/"))
    except ValueError:
        raise ConfigError(f"bad shard '{shard}'; write i/n with 0 ≤ i < n, e.g. shard=0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"bad shard '{shard}'; need 0 ≤ i < n")
    return i, n


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def to_yaml(cfg: DictConfig | dict) -> str:
    data = cfg if isinstance(cfg, dict) else to_dict(cfg)
    return yaml.safe_dump(data, sort_keys=False)
