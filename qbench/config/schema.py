"""The typed schema of a suite: one dataclass per config block, the allowed values, and every default (written
once, here). :func:`qbench.config.load_config` returns a :class:`SuiteConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

__all__ = [
    "SuiteConfig", "DataConfig", "ModelConfig", "TrainConfig", "TuneConfig", "BenchConfig", "TheoryConfig",
    "RecurrenceConfig", "KINDS", "DATASETS", "OPTIMIZERS", "SCHEDULES", "AMP_MODES", "AMP_ALIASES",
    "PRUNERS", "RECURRENCE_QUANTIZERS", "THEORY_ESTIMATORS", "LOGGERS", "SEEDS_AUTO", "COMPILE_MODES", "DECODE_MODES",
]

KINDS = ("train", "theory")
DATASETS = ("mnist5k", "digits", "mnist", "cifar10", "cifar100", "imagenet", "fake")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "multistep", "cosine", "exponential")
AMP_MODES = ("false", "bf16", "fp16")  # autocast dtype on CUDA; the CPU always trains in float32
# train.compile: auto = torch.compile on CUDA, eager on the CPU (where compiling costs more than a short run saves);
# true / false force it; reduce-overhead = compiled with CUDA graphs on CUDA (small models whose step is bound by
# kernel launches), plain compiled on the CPU.
DECODE_MODES = ("auto", "cpu", "gpu")  # data.decode: where ImageFolder JPEGs are decoded
COMPILE_MODES = ("auto", "true", "false", "reduce-overhead")
PRUNERS = ("hyperband", "median", "none")
RECURRENCE_QUANTIZERS = ("binary", "ternary")  # the REC toy's weight quantizers (spec §6)
THEORY_ESTIMATORS = ("identity", "relu", "clipped_relu")  # closed forms of spec §8; any method spec works too
SEEDS_AUTO = "auto"  # `seeds: auto`: sequential seeds (qbench.paired.plan_seeds), between seeds_min and seeds_max
LOGGERS = ("tensorboard", "mlflow", "wandb")  # experiment trackers a training run can also write to (qbench.run.loggers)
# Spellings accepted for train.amp / bench.amp_dtype, normalised to AMP_MODES (YAML's `false` arrives as "False").
AMP_ALIASES = {"false": "false", "none": "false", "fp32": "false", "float32": "false", "": "false",
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
    compile: str = "auto"  # one of COMPILE_MODES (torch.compile the model)
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

    quantizers: List[str] = field(default_factory=lambda: list(RECURRENCE_QUANTIZERS))
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
    # A list of seeds, or "auto": every cell runs seeds 0 … seeds_min − 1, then the columns whose top group is not yet
    # separated (paired t-tests over seeds, qbench.paired) get more seeds, up to seeds_max seeds (0 … seeds_max − 1).
    seeds: Any = field(default_factory=lambda: [0])
    seeds_min: int = 3  # seeds: auto: the seeds every cell runs first (at least qbench.paired.MIN_SEEDS)
    seeds_max: int = 10  # seeds: auto: the most seeds a cell gets
    # Layer precision policies (config.policy): a name (fp, quantized, int8_first_last, last_fp) or {first:, last:}.
    policies: List[Any] = field(default_factory=lambda: ["fp"])
    # {module-name glob: bits | fp}: per-layer precision after the policy, e.g. {"layer4.*": W4A4, "fc": W8A8}
    layer_bits: Dict[str, str] = field(default_factory=dict)
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
    # Experiment trackers each training run also writes to (one of LOGGERS each; none by default): per-epoch metrics,
    # the recurrence diagnostics and the resolved config. Never part of a run's result fingerprint.
    loggers: List[str] = field(default_factory=list)
