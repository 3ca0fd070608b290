"""Every shipped suite starts on a GPU (issue #13): each suite — each stage of a staged suite — resolves through the
set-up code the training loop uses (``qbench.run.device.train_setup`` and the data-path selection
``qbench.run.data.data_path``) for ``torch.device("cuda")``, on this machine, which needs no GPU for it.

The bug this guards: ``train.amp`` left at its default ``"false"`` (or written ``amp: false`` in YAML, which arrives as
the boolean ``False``) raised ``ConfigError: unknown train.amp 'false'`` on CUDA only, so a suite that ran on every CPU
failed on the first GPU it met. The config now normalises the AMP spellings; these tests keep it that way.
"""

from __future__ import annotations

import pytest
import torch

from qbench.config import load_config, list_suites, stage_configs
from qbench.run.data import DATA_PATHS, TensorBatches, build_datasets, build_loaders, data_path
from qbench.run.device import train_setup

CUDA = torch.device("cuda")
SUITES = [name for name, _ in list_suites()]


def test_the_suites_are_found():
    assert {"quickstart", "imagenet-w1a4", "cifar10-resnet20-w1a4"} <= set(SUITES)


@pytest.mark.parametrize("name", SUITES)
def test_every_suite_resolves_on_cuda(name):
    cfg = load_config(name)
    for stage in stage_configs(cfg):
        setup = train_setup(stage.train, CUDA)
        assert setup.device == CUDA
        assert setup.amp_dtype in (None, torch.bfloat16, torch.float16)
        assert setup.channels_last == bool(stage.train.channels_last)
        path = data_path(stage.data, CUDA)
        assert path in DATA_PATHS
        assert path == ("device-decode" if stage.data.name == "imagenet" else "resident"), name


@pytest.mark.parametrize("spelling", ["false", "False", "none", "fp32", "bf16", "true", "fp16", "half"])
def test_amp_spellings_resolve_on_cuda(spelling):
    cfg = load_config("quickstart", [f"train.amp={spelling}"])
    expected = {"false": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.train.amp]
    assert train_setup(cfg.train, CUDA).amp_dtype is expected
    assert train_setup(cfg.train, torch.device("cpu")).amp_dtype is None  # the CPU always trains in float32


def test_default_amp_is_float32_on_cuda():
    """The regression itself: the default ``train.amp`` on a CUDA device."""
    cfg = load_config("quickstart")
    assert cfg.train.amp == "false"
    assert train_setup(cfg.train, CUDA).amp_dtype is None


@pytest.mark.parametrize("decode, expected", [("auto", "device-decode"), ("gpu", "device-decode"), ("cpu", "pil")])
def test_imagenet_decode_choice(decode, expected):
    cfg = load_config("imagenet-w1a4", [f"data.decode={decode}"])
    assert data_path(cfg.data, CUDA) == expected
    assert data_path(cfg.data, torch.device("cpu")) == ("device-decode" if decode == "gpu" else "pil")


@pytest.mark.parametrize("dataset", ["mnist5k", "digits", "fake"])
def test_resident_loaders_for_cuda_build_without_a_gpu(dataset):
    """The loaders of a CUDA run are built before anything touches the device (the split moves on first use)."""
    cfg = load_config("quickstart", [f"data.name={dataset}"])
    loaders = build_loaders(build_datasets(cfg.data), cfg.data, device=CUDA)
    for loader in loaders:
        assert isinstance(loader, TensorBatches) and loader.device == CUDA and loader._stored is None
        loader.set_epoch(1)
        assert len(loader) > 0
