"""Suite configuration: the typed schema, loading, overrides and every validation. No torch.

A suite is YAML in ``suites/`` plus OmegaConf-style ``key=value`` overrides. Merge order: the schema defaults → the
suite's YAML → command-line overrides. Every key is checked against the schema (the dataclasses of :mod:`.schema`); a
typo fails with one line naming the valid keys at that level, a bad value with one line naming the key and what is
allowed.
:func:`load_config` returns a :class:`SuiteConfig` instance: the typed object travels from here to the training step
(``run.runner`` narrows it to a cell, ``run.train.fit`` takes its :class:`TrainConfig`, the data and model builders
take :class:`DataConfig` / :class:`ModelConfig`), so every default is written once, here. The resolved config is
saved with every run (``config.yaml``), and ``qbench run --from <run dir>/config.yaml`` reproduces that run.

Shorthands on the command line: ``method=bcgd`` (→ ``methods=[bcgd]``), ``arch=resnet20_cifar`` (→
``model.archs=[...]``), ``seed=0`` (→ ``seeds=[0]``), ``policy=fp`` (→ ``policies=[fp]``), and a scalar
``bits=W1A4`` (→ ``bits=[W1A4]``). A method's hyperparameters: ``method_hparams.bcgd.rho=1e-4``.
"""

from .fingerprint import RESULT_IRRELEVANT, fingerprint, fingerprint_diff, result_config
from .load import (get_value, list_suites, load_config, mask_url, stage_configs, suite_path, to_dict, to_yaml,
                   url_passwords, with_overrides)
from .policy import FLOAT, POLICY_NAMES, SAME, LayerPolicy, parse_layer_precision, parse_policy
from .schema import (AMP_MODES, COMPILE_MODES, DATASETS, DECODE_MODES, KINDS, LOGGERS, OPTIMIZERS, PRUNERS,
                     RECURRENCE_QUANTIZERS, SCHEDULES, SEEDS_AUTO, THEORY_ESTIMATORS, BenchConfig, DataConfig, ModelConfig, RecurrenceConfig,
                     SuiteConfig, TheoryConfig, TrainConfig, TuneConfig)
from .space import CHOICES, SearchDim, is_number, parse_search_dim, recipe_dims, recipe_keys
from .validate import check_path_segment, parse_shard, validate

__all__ = [
    "SuiteConfig", "DataConfig", "ModelConfig", "TrainConfig", "TuneConfig", "BenchConfig", "TheoryConfig",
    "RecurrenceConfig", "SearchDim", "CHOICES", "is_number", "KINDS", "DATASETS", "OPTIMIZERS", "SCHEDULES", "AMP_MODES",
    "COMPILE_MODES", "DECODE_MODES", "PRUNERS", "RECURRENCE_QUANTIZERS", "THEORY_ESTIMATORS", "LOGGERS", "SEEDS_AUTO", "load_config",
    "stage_configs", "with_overrides",
    "get_value", "list_suites", "suite_path", "parse_shard", "parse_search_dim", "recipe_keys", "recipe_dims",
    "validate", "to_dict", "to_yaml", "RESULT_IRRELEVANT", "result_config", "fingerprint", "fingerprint_diff",
    "check_path_segment", "mask_url", "url_passwords", "LayerPolicy", "parse_policy", "parse_layer_precision",
    "POLICY_NAMES", "FLOAT", "SAME",
]
