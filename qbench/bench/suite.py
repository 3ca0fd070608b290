"""``qbench bench suite=S``: throughput of FP and every method of a suite, on synthetic input of the suite's shape.

The sweep itself is :func:`qbench.bench.sweep.run_bench`; this module maps a suite config onto it. Options come from
the suite's ``bench`` block (``bench.batch_size``, ``bench.amp_dtype``, ``bench.channels_last``, ``bench.compile``,
``bench.threads``, ``bench.steps``, ``bench.rounds``), overridable on the command line like any key; the step uses the
suite's ``train`` recipe (its optimizer) and ``model`` block.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from ..config import SuiteConfig, parse_policy
from ..errors import ConfigError
from ..registry import parse_method_spec
from .sweep import format_bench, run_bench

__all__ = ["DATASET_SHAPES", "bench_suite"]

# (channels, height, width, classes) of each dataset as fed to the model; ImageNet's side follows data.input_size.
DATASET_SHAPES = {
    "mnist5k": (1, 28, 28, 10),
    "mnist": (1, 28, 28, 10),
    "digits": (1, 8, 8, 10),
    "cifar10": (3, 32, 32, 10),
    "cifar100": (3, 32, 32, 100),
    "imagenet": (3, 224, 224, 1000),
    "fake": (3, 32, 32, 10),
}


def bench_suite(cfg: SuiteConfig, *, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Measure every (arch, method, bits) of the suite plus FP, write rows for ``qbench report``, print ratios."""
    if cfg.data.name not in DATASET_SHAPES:
        raise ConfigError(f"qbench bench has no input shape for dataset '{cfg.data.name}'; "
                          f"known: {', '.join(DATASET_SHAPES)}")
    c, h, w, classes = DATASET_SHAPES[cfg.data.name]
    if cfg.data.input_size:
        h = w = int(cfg.data.input_size)
    b = cfg.bench
    methods, hparams, bits = [], {}, {}
    for spec in cfg.methods:
        base, hp = parse_method_spec(spec, cfg.method_hparams)
        if base not in methods:
            methods.append(base)
            hparams[base] = hp
            # the suite's bit-widths of this method (method_bits, else bits); unsupported ones are left out
            bits[base] = [str(x) for x in cfg.method_bits.get(spec, cfg.bits)]
    if "fp" not in methods:
        methods.insert(0, "fp")
    df = run_bench(archs=list(cfg.model.archs), methods=methods, bits_list=bits, input_size=(c, h, w),
                   num_classes=classes, in_chans=c, batch_size=b.batch_size, device=cfg.train.device,
                   amp_dtype=b.amp_dtype, channels_last=b.channels_last, compile=b.compile, policy=parse_policy(cfg.policies[0]).name, layer_bits=cfg.layer_bits,
                   threads=b.threads, steps=b.steps, warmup=b.warmup, min_run_time=b.min_run_time, rounds=b.rounds,
                   results_dir=cfg.results_dir, suite=cfg.name, recipe=cfg.train, model=cfg.model,
                   method_hparams=hparams, log=log)
    log(format_bench(df))
    return df
