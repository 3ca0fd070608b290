"""The ImageFolder path decoded on the device (qbench.run.data.decode, ``data.decode=gpu``), run here on the CPU
device (``decode_jpeg`` on CPU tensors), against the PIL path as the reference.

* Eval tensors: equal to the PIL path's within **one grey level** (max |Δ| ≤ 1/255 before normalisation, mean |Δ| below
  0.05 level). Why that tolerance: on the CPU both paths decode with the same libjpeg-turbo (bit-identical pixels, as
  ``test_cpu_decoder_is_bit_identical_to_pil`` checks), and torchvision's uint8 antialiased bilinear resize implements
  PIL's filter with its own fixed-point rounding, which can differ by one level. (On CUDA, nvJPEG's IDCT and the float
  resize add a few more levels; ``tests/benchmarks/gpu_data_path.py`` measures that on a GPU.)
* Train crops: the boxes of ``random_resized_crop_params`` have the statistics of torchvision's own
  ``RandomResizedCrop.get_params`` (two-sample Kolmogorov–Smirnov tests over 20,000 draws on the area fraction, the
  aspect ratio and the position, plus the rate of the central-crop fallback), and the crop of a given box equals PIL's.
* Grayscale, CMYK and progressive JPEGs and PNGs in the folder; determinism for a seed; the CPU fallback.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp
from torchvision import transforms as T

from qbench.config import DataConfig
from qbench.run.data import IMAGENET_MEAN, IMAGENET_STD, DeviceImageTransform, build_datasets, build_loaders
from qbench.run.data import decode as decode_module
from qbench.run.data.decode import (collate_encoded, decode_on_cpu, device_decodable, jpeg_frame,
                                    random_resized_crop_params, read_encoded)

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
KINDS = ("rgb", "progressive", "gray", "cmyk", "png", "png_gray", "png_rgba")


def picture(rng, height: int, width: int) -> np.ndarray:
    """Smooth colour fields plus texture: what JPEG and the resize filters see in photographs."""
    coarse = rng.uniform(0, 255, (height // 16 + 2, width // 16 + 2, 3))
    smooth = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC), np.float64)
    return np.clip(smooth + rng.normal(0, 18, smooth.shape), 0, 255).astype(np.uint8)


def save(pixels: np.ndarray, path, kind: str) -> None:
    image = Image.fromarray(pixels)
    if kind == "rgb":
        image.save(path, "JPEG", quality=90)
    elif kind == "progressive":
        image.save(path, "JPEG", quality=85, progressive=True)
    elif kind == "gray":
        image.convert("L").save(path, "JPEG", quality=90)
    elif kind == "cmyk":
        image.convert("CMYK").save(path, "JPEG", quality=90)
    elif kind == "png":
        image.save(path, "PNG")
    elif kind == "png_gray":
        image.convert("L").save(path, "PNG")
    elif kind == "png_rgba":
        image.convert("RGBA").save(path, "PNG")


def make_folder(root, classes=("n01", "n02"), n_train=8, n_val=4, sides=(48, 120), seed=0):
    """root/{train,val}/<class>/ with RGB JPEGs and, among them, one file of each odd kind (named .JPEG, as ImageNet
    names its one PNG and its CMYK files)."""
    rng = np.random.RandomState(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = rng.randint(sides[0], sides[1] + 1, size=2)
                kind = KINDS[(i + c) % len(KINDS)] if i < len(KINDS) else "rgb"
                save(picture(rng, h, w), folder / f"{name}_{i}.JPEG", kind)
    return root


def config(root, decode: str, **options) -> DataConfig:
    return DataConfig(name="imagenet", root=str(root), decode=decode, val_fraction=0.25, **options)


def levels(x: torch.Tensor) -> torch.Tensor:
    """Normalised ImageNet inputs back to grey levels (float)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean) * 255


def everything(loader):
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


# ------------------------------------------------------------------------------------------------ eval = PIL


@pytest.mark.parametrize("input_size", [32, 224])
def test_eval_tensors_equal_the_pil_path_within_one_level(tmp_path, input_size):
    root = make_folder(tmp_path, sides=(60, 300) if input_size == 224 else (48, 120))
    outputs = {}
    for decode in ("cpu", "gpu"):
        data = config(root, decode, input_size=input_size, batch_size=4, eval_batch_size=5)
        splits = build_datasets(data)
        train, val, test = build_loaders(splits, data, device=CPU)
        outputs[decode] = [everything(loader) for loader in (test, val, train.sequential())]
    for (x_pil, y_pil), (x_dev, y_dev) in zip(outputs["cpu"], outputs["gpu"]):
        assert x_dev.shape == x_pil.shape == (len(y_pil), 3, input_size, input_size) and x_dev.dtype == torch.float32
        assert torch.equal(y_dev, y_pil)
        diff = (levels(x_dev) - levels(x_pil)).abs()
        assert diff.max() <= 1 + 1e-3, diff.max()
        assert diff.mean() < 0.05, diff.mean()


def test_cpu_decoder_is_bit_identical_to_pil(tmp_path):
    rng = np.random.RandomState(1)
    for kind in KINDS:
        path = tmp_path / f"{kind}.JPEG"
        save(picture(rng, 50, 70), path, kind)
        data = path.read_bytes()
        reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(decode_on_cpu(data).permute(1, 2, 0).numpy(), reference, err_msg=kind)


# ------------------------------------------------------------------------------------------------ train crops


def crop_stats(boxes: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    top, left, h, w = boxes.T.astype(np.float64)
    return {"area": h * w / (height * width), "ratio": w / h, "top": top / height, "left": left / width}


@pytest.mark.parametrize("height, width", [(400, 450), (375, 500), (120, 900), (900, 150)])
def test_crop_boxes_have_the_statistics_of_torchvisions_random_resized_crop(height, width):
    n = 20_000
    torch.manual_seed(0)  # get_params draws from the global RNG
    image = torch.empty(3, height, width)
    reference = np.array([T.RandomResizedCrop.get_params(image, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
                          for _ in range(n)])
    ours = random_resized_crop_params(torch.tensor([[height, width]] * n), torch.Generator().manual_seed(1)).numpy()
    for boxes in (reference, ours):
        top, left, h, w = boxes.T
        assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
        assert (top + h <= height).all() and (left + w <= width).all()
    stats_ref, stats_ours = crop_stats(reference, height, width), crop_stats(ours, height, width)
    for key in stats_ref:
        p = ks_2samp(stats_ref[key], stats_ours[key]).pvalue
        assert p > 1e-3, f"{key}: KS p = {p:.2g}"
        np.testing.assert_allclose(np.quantile(stats_ours[key], [0.1, 0.5, 0.9]),
                                   np.quantile(stats_ref[key], [0.1, 0.5, 0.9]), rtol=0.05, atol=0.01)
    # the central-crop fallback (all ten tries missed) at torchvision's rate, within 4 binomial standard deviations
    rate_ref = (reference == central_box(height, width)).all(axis=1).mean()
    rate_ours = (ours == central_box(height, width)).all(axis=1).mean()
    assert abs(rate_ref - rate_ours) <= 4 * np.sqrt(max(rate_ref, 1 / n) * 2 / n), (rate_ref, rate_ours)


def central_box(height: int, width: int) -> np.ndarray:
    """torchvision's fallback: the whole image, centrally cropped to the nearest aspect ratio in [3/4, 4/3]."""
    h, w = height, width
    if width / height < 3 / 4:
        h = round(width / (3 / 4))
    elif width / height > 4 / 3:
        w = round(height * 4 / 3)
    return np.array([(height - h) // 2, (width - w) // 2, h, w])


def test_train_crops_equal_pils_resized_crop_of_the_same_boxes(tmp_path):
    rng = np.random.RandomState(2)
    files = []
    for i, kind in enumerate(KINDS):
        save(picture(rng, 60 + 13 * i, 90 - 5 * i), tmp_path / f"{i}.JPEG", kind)
        files.append(tmp_path / f"{i}.JPEG")
    batch = collate_encoded([(read_encoded(str(f)), 0) for f in files])
    transform = DeviceImageTransform((32, 32), IMAGENET_MEAN, IMAGENET_STD, train=True, device=CPU)
    images = decode_module.decode_batch(batch, CPU)
    out = transform.crops(images, torch.Generator().manual_seed(3))
    # the same draws, replayed: boxes, then flips
    replay = torch.Generator().manual_seed(3)
    boxes = random_resized_crop_params(torch.tensor([tuple(im.shape[-2:]) for im in images]), replay).tolist()
    mirror = torch.rand(len(images), generator=replay) < 0.5
    assert 0 < int(mirror.sum()) < len(images)
    for k, (path, (top, left, h, w)) in enumerate(zip(files, boxes)):
        pil = Image.open(path).convert("RGB")
        expected = T.functional.pil_to_tensor(T.functional.resized_crop(pil, top, left, h, w, [32, 32]))
        if mirror[k]:
            expected = expected.flip(-1)
        assert (out[k].int() - expected.int()).abs().max() <= 1, path.name


# ------------------------------------------------------------------------------------------------ odd files


def test_odd_files_are_decoded_in_the_worker(tmp_path):
    rng = np.random.RandomState(3)
    expected_on_device = {"rgb": True, "progressive": True, "gray": False, "cmyk": False, "png": False,
                          "png_gray": False, "png_rgba": False}
    for kind in KINDS:
        path = tmp_path / f"{kind}.JPEG"
        save(picture(rng, 40, 56), path, kind)
        frame = jpeg_frame(path.read_bytes())
        assert (frame is not None) == (kind in ("rgb", "progressive", "gray", "cmyk"))
        if frame is not None:
            assert (frame.height, frame.width, frame.precision) == (40, 56, 8)
            assert frame.components == len(frame.sampling) == {"gray": 1, "cmyk": 4}.get(kind, 3)
            if frame.components == 3:
                assert frame.sampling == ((2, 2), (1, 1), (1, 1))  # PIL's default 4:2:0
        assert device_decodable(frame) == expected_on_device[kind], kind
        sample = read_encoded(str(path))
        if expected_on_device[kind]:
            assert sample.dim() == 1 and sample.dtype == torch.uint8 and sample.numel() == path.stat().st_size
        else:
            assert sample.shape == (3, 40, 56) and sample.dtype == torch.uint8
    assert jpeg_frame(b"\xff\xd8\xff\xe0\x00") is None and jpeg_frame(b"GIF89a") is None and jpeg_frame(b"") is None
    # chroma layouts nvJPEG knows go to the device; an exotic one (chroma sampled 2×2, luma 1×1) is decoded here
    image = Image.fromarray(picture(rng, 40, 56))
    for subsampling, on_device in ((0, True), (1, True), (2, True)):  # PIL: 4:4:4, 4:2:2, 4:2:0
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", subsampling=subsampling)
        assert device_decodable(jpeg_frame(buffer.getvalue())) is on_device
    frame = jpeg_frame(buffer.getvalue())._replace(sampling=((1, 1), (2, 2), (1, 1)))
    assert not device_decodable(frame)


def test_a_batch_the_decoder_rejects_is_decoded_on_the_cpu(tmp_path, monkeypatch):
    rng = np.random.RandomState(4)
    for i in range(3):
        save(picture(rng, 40, 50), tmp_path / f"{i}.JPEG", "rgb")
    batch = collate_encoded([(read_encoded(str(tmp_path / f"{i}.JPEG")), i) for i in range(3)])
    good = decode_module.decode_batch(batch, CPU)

    def broken(*args, **kwargs):
        raise RuntimeError("nvjpeg: unsupported")

    monkeypatch.setattr(decode_module, "decode_jpeg", broken)
    monkeypatch.setattr(decode_module, "_warned_fallback", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = decode_module.decode_batch(batch, CPU)
        decode_module.decode_batch(batch, CPU)
    assert all(torch.equal(a, b) for a, b in zip(good, fallback))
    assert sum("decoding such batches on the CPU" in str(w.message) for w in caught) == 1


# ------------------------------------------------------------------------------------------------ determinism


def test_train_batches_are_deterministic_for_a_seed_and_independent_of_workers(tmp_path):
    root = make_folder(tmp_path, n_train=12)

    def first_epochs(seed, workers):
        data = config(root, "gpu", input_size=24, batch_size=6, num_workers=workers)
        train, _, _ = build_loaders(build_datasets(data), data, seed=seed, device=CPU)
        out = []
        for e in (0, 1):
            train.set_epoch(e)
            out.append(everything(train))
        return out

    a, b, workers, other = first_epochs(0, 0), first_epochs(0, 0), first_epochs(0, 2), first_epochs(1, 0)
    for run in (b, workers):
        assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, run))
    assert not torch.equal(a[0][0], a[1][0])  # a new epoch, new crops
    assert not torch.equal(a[0][0], other[0][0])
    x, y = a[0]
    assert x.shape == (len(y), 3, 24, 24) and torch.isfinite(x).all()
    raw = levels(x)
    assert raw.min() >= -0.5 and raw.max() <= 255.5
