"""The ImageNet path on the CPU: the imagenet-w1a4 suite end to end on a tiny generated ImageFolder.

The suite's GPU settings (bf16 autocast, channels_last, pinned memory) are ignored on a CPU by the training loop, so
the same suite file runs here unchanged apart from the size overrides; loader workers and persistent workers are
exercised for real.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from qbench.cli import main
from qbench.config import load_config
from qbench.run.runner import plan_cells

CLASSES = ("n01440764", "n01443537", "n01484850")


pytestmark = pytest.mark.usefixtures("one_thread")


def make_image_folder(root, n_train: int = 10, n_val: int = 3, size=(40, 48), jpeg: bool = False):
    """root/{train,val}/<wnid>/*.JPEG-like PNGs (or real JPEGs, one of them grayscale): a per-class colour plus noise,
    so the classes are learnable."""
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for k, wnid in enumerate(CLASSES):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                base = np.zeros((*size, 3), np.float64)
                base[..., k] = 160.0
                pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                if not jpeg:
                    image.save(folder / f"{wnid}_{i}.png")
                else:
                    (image.convert("L") if i == 1 else image).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    return root


def test_suite_settings():
    cfg = load_config("imagenet-w1a4")
    assert cfg.data.name == "imagenet" and cfg.model.archs == ["resnet18"] and cfg.bits == ["W1A4"]
    assert list(cfg.policies) == ["quantized", "fp"]  # both layer policies of the paper's ImageNet table
    assert {"fp", "bcgd", "pcg"} <= set(cfg.methods)  # the cells the BCGD paper reports
    assert cfg.model.pretrained  # FP init
    assert (cfg.data.num_workers, cfg.data.pin_memory, cfg.data.persistent_workers) == (8, True, True)
    assert (cfg.train.amp, cfg.train.channels_last, cfg.train.epochs) == ("bf16", True, 80)
    assert (cfg.train.optimizer, cfg.train.momentum, cfg.train.weight_decay) == ("sgd", 0.95, 1e-4)
    cells = plan_cells(cfg)
    assert len(cells) == 1 + 2 * (len(cfg.methods) - 1)
    assert {c.policy for c in cells if c.method == "bcgd"} == {"quantized", "fp"}


def test_without_data_root_one_line_error(capsys):
    assert main(["run", "suite=imagenet-w1a4"]) == 2
    err = capsys.readouterr().err
    assert "data.root" in err and err.count("\n") == 1 and "Traceback" not in err


def test_imagenet_suite_end_to_end_on_a_tiny_image_folder(tmp_path, capsys):
    root = make_image_folder(tmp_path / "imagenet")
    results = tmp_path / "results"
    rc = main(["run", "suite=imagenet-w1a4", f"data.root={root}", "train.epochs=1", "model.archs=[resnet18]",
               "model.pretrained=false", "data.input_size=32", "data.batch_size=8", "data.eval_batch_size=16",
               "data.val_fraction=0.2", "data.num_workers=2", "methods=[fp,bcgd]", "train.device=cpu",
               f"results_dir={results}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    records = {p.parent.name: json.loads(p.read_text()) for p in (results / "imagenet-w1a4").glob("*/result.json")}
    assert set(records) == {"fp_resnet18_W32A32_fp_s0", "bcgd_resnet18_W1A4_quantized_s0",
                            "bcgd_resnet18_W1A4_fp_s0"}
    for run_id, rec in records.items():
        assert rec["status"] == "complete", (run_id, rec.get("error"))
        assert rec["dataset"] == "imagenet" and rec["device"] == "cpu"
        assert 0 <= rec["test_top1"] <= 100 and rec["test_top5"] == 100.0  # 3 classes: top-5 is everything
        assert rec["train_img_s"] > 0 and rec["infer_img_s"] > 0
        rows = [json.loads(r) for r in (results / "imagenet-w1a4" / run_id / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["train_img_s"] > 0
    # the two policies differ in the layers they quantize (first conv and fc float only under policy fp)
    assert records["bcgd_resnet18_W1A4_quantized_s0"]["model_size_bits"] < records["bcgd_resnet18_W1A4_fp_s0"][
        "model_size_bits"]
    # throughput printed per epoch
    assert out.count("epoch 1/1:") == 3 and "img/s" in out


def test_device_decode_path_end_to_end_on_the_cpu(tmp_path, capsys):
    """data.decode=gpu on a CPU device: the workers read bytes, the main process decodes and augments in batches
    (the code path CUDA runs), through run_cell and fit, diagnostics included."""
    root = make_image_folder(tmp_path / "imagenet", jpeg=True)
    results = tmp_path / "results"
    rc = main(["run", "suite=imagenet-w1a4", f"data.root={root}", "train.epochs=1", "model.pretrained=false",
               "data.input_size=32", "data.batch_size=8", "data.eval_batch_size=16", "data.val_fraction=0.2",
               "data.num_workers=2", "data.decode=gpu", "methods=[bcgd]", "policies=[quantized]",
               "train.device=cpu", f"results_dir={results}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    run_dir = results / "imagenet-w1a4" / "bcgd_resnet18_W1A4_quantized_s0"
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "complete" and 0 <= record["test_top1"] <= 100, record.get("error")
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(row["loss_q"]) and row["train_img_s"] > 0


def test_fp_init_from_a_local_state_dict(tmp_path):
    """The documented offline route: save an FP resnet18 state dict once, pass model.checkpoint=... (here a
    1000-class file into a 3-class model: the classifier is skipped with a warning, everything else loads)."""
    import timm

    from qbench.config import ModelConfig
    from qbench.run.models import create_model

    source = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18_fp.pth"
    torch.save(source.state_dict(), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = create_model("resnet18", ModelConfig(checkpoint=str(path)), num_classes=3, in_chans=3, input_size=(3, 32, 32))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert any("fc.weight" in str(w.message) and "shape mismatch" in str(w.message) for w in caught)
