"""Throughput of every data path on one device, in one command (issue #13) — a script, not a test:

    python tests/benchmarks/data_paths.py --device cuda --step     # a GPU machine (16 cores): a few minutes
    python tests/benchmarks/data_paths.py --device cpu --images 500 --workers 2 --batch 64

It generates an ImageFolder of ``--images`` real JPEGs of about 400×450 (with ImageNet's few odd files among them:
grayscale and CMYK JPEGs, a PNG named .JPEG), unless ``--root`` names one, and measures, on ``--device``:

* ``imagefolder/<path>/<split>`` — img/s of one epoch of the ImageNet loaders: ``pil`` (PIL decode + transforms in
  ``--workers`` worker processes) and ``device-decode`` (workers read bytes; decode — nvJPEG on CUDA — crop, resize,
  flip and normalisation on the device), train (RandomResizedCrop + flip) and eval (Resize + CenterCrop);
* ``eval_max_level_diff`` / ``eval_mean_level_diff`` — the device-decode eval tensors against the PIL path's, in grey
  levels (on the CPU ≤ 1; on CUDA nvJPEG's IDCT adds a little);
* ``resident/<dataset>`` — img/s of one training epoch of the device-resident loaders: mnist5k (batch 128) and a
  CIFAR-shaped 50,000 × 3×32×32 split with crop + flip (batch 512);
* with ``--step``: img/s of a ResNet-18 training step alone (bf16 autocast, channels_last on CUDA, synthetic batch)
  and fed by each ImageFolder path — the end-to-end question "does the loader keep up with the GPU".

Prints one table and writes ``--json`` (default ``data_paths.json``) with the numbers, the device name and versions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from qbench.config import DataConfig
from qbench.run.data import (CIFAR10_MEAN, CIFAR10_STD, IMAGENET_STD, RandomCropFlip, TensorBatches, TensorImageDataset,
                             build_datasets, build_loaders)

CLASSES = 10


def _write_image(job: tuple[str, int, str]) -> None:
    from PIL import Image

    path, seed, kind = job
    rng = np.random.RandomState(seed)
    h, w = int(rng.randint(340, 460)), int(rng.randint(380, 520))
    coarse = rng.uniform(0, 255, (h // 24 + 2, w // 24 + 2, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float64)
    image = Image.fromarray(np.clip(smooth + rng.normal(0, 16, smooth.shape), 0, 255).astype(np.uint8))
    if kind == "gray":
        image = image.convert("L")
    elif kind == "cmyk":
        image = image.convert("CMYK")
    image.save(path, "PNG" if kind == "png" else "JPEG", quality=90)


def make_image_folder(root: Path, n_images: int) -> Path:
    """root/{train,val}/<class>/*.JPEG; 1 % grayscale, 0.5 % CMYK, one PNG (ImageNet's proportions, roughly)."""
    jobs = []
    for split, n in (("train", n_images), ("val", max(CLASSES, n_images // 10))):
        for i in range(n):
            folder = root / split / f"n{i % CLASSES:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            kind = "png" if i == 7 else "gray" if i % 100 == 3 else "cmyk" if i % 200 == 5 else "rgb"
            jobs.append((str(folder / f"{split}_{i}.JPEG"), i + (0 if split == "train" else 10**6), kind))
    with multiprocessing.Pool() as pool:
        pool.map(_write_image, jobs, chunksize=16)
    return root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_rate(loader, device: torch.device, epoch: int = 1) -> float:
    """img/s of one full epoch (after one warm-up batch of a previous epoch, so workers and kernels are started)."""
    loader.set_epoch(epoch - 1)
    next(iter(loader))
    loader.set_epoch(epoch)
    _sync(device)
    t0, n = time.perf_counter(), 0
    for x, _ in loader:
        n += x.shape[0]
    _sync(device)
    return n / (time.perf_counter() - t0)


def level_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> tuple[float, float]:
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    diff = torch.cat([(x.cpu() - y.cpu()) for x, y in zip(a, b)]).mul(std).mul(255).abs()
    return float(diff.max()), float(diff.mean())


def step_rates(loaders: dict, device: torch.device, batch: int, steps: int) -> dict[str, float]:
    """ResNet-18 training steps/s alone (synthetic batch) and fed by each train loader."""
    import timm

    model = timm.create_model("resnet18", num_classes=CLASSES).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()

    def step(x, y):
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    for _ in range(3):
        step(x, y)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    _sync(device)
    out = {"step_only": steps * batch / (time.perf_counter() - t0)}
    for name, loader in loaders.items():
        loader.set_epoch(0)
        next(iter(loader))
        _sync(device)
        t0, n = time.perf_counter(), 0
        for i, (x, y) in enumerate(loader):
            if i == steps:
                break
            step(x, y)
            n += x.shape[0]
        _sync(device)
        out[f"fed_by_{name}"] = n / (time.perf_counter() - t0)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=6400, help="training JPEGs to generate (issue #13 used 6,400)")
    parser.add_argument("--root", default=None, help="an existing ImageFolder (with train/ and val/) instead")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--step", action="store_true", help="also time a ResNet-18 step fed by each path")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", default="data_paths.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = Path(args.root) if args.root else make_image_folder(Path(tmp), args.images)
        print(f"image folder {root} ready in {time.perf_counter() - t0:.1f} s")
        train_loaders, evals = {}, {}
        for decode, name in (("cpu", "pil"), ("gpu", "device-decode")):
            data = DataConfig(name="imagenet", root=str(root), decode=decode, batch_size=args.batch,
                              num_workers=args.workers, persistent_workers=True, pin_memory=device.type == "cuda",
                              val_fraction=0.01)
            train, _, test = build_loaders(build_datasets(data), data, device=device,
                                           pin_memory=data.pin_memory)
            rows[f"imagefolder/{name}/train"] = epoch_rate(train, device)
            rows[f"imagefolder/{name}/eval"] = epoch_rate(test, device)
            evals[name] = [x for x, _ in test]
            train_loaders[name] = train
            print(f"{name}: train {rows[f'imagefolder/{name}/train']:.0f} img/s, "
                  f"eval {rows[f'imagefolder/{name}/eval']:.0f} img/s")
        rows["eval_max_level_diff"], rows["eval_mean_level_diff"] = level_diff(evals["device-decode"], evals["pil"])
        if args.step:
            rows.update({f"resnet18/{k}": v for k, v in step_rates(train_loaders, device, args.batch,
                                                                   args.steps).items()})
    data = DataConfig(name="mnist5k", batch_size=128)
    train, _, _ = build_loaders(build_datasets(data), data, device=device)
    rows["resident/mnist5k"] = epoch_rate(train, device)
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cifar = TensorImageDataset(images, np.arange(50_000) % 10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                               augment=RandomCropFlip(padding=4))
    rows["resident/cifar-shaped"] = epoch_rate(TensorBatches(cifar, batch_size=512, device=device, shuffle=True,
                                                             augment=True), device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report = {"device": str(device), "device_name": name, "torch": torch.__version__,
              "torchvision": __import__("torchvision").__version__, "images": args.images,
              "workers": args.workers, "batch": args.batch, "img_s": rows}
    print(f"\n{name} ({device}), torch {torch.__version__}, {args.workers} workers, batch {args.batch}")
    for key, value in rows.items():
        unit = "grey levels" if "diff" in key else "img/s"
        print(f"  {key:<36} {value:>10.1f} {unit}")
    Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
