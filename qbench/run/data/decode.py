"""ImageFolder datasets decoded and augmented on the training device, in batches (``data.decode=gpu``).

The ``DataLoader`` workers only read files (:func:`read_encoded`); a batch travels to the main process as one byte
tensor (:class:`EncodedBatch`). There :class:`DeviceImageTransform` decodes it with
``torchvision.io.decode_jpeg(list, device=...)`` — nvJPEG on CUDA (batched; the hardware JPEG engine of A100/H100-class
GPUs for baseline JPEGs), libjpeg-turbo on the CPU — and applies the standard ResNet transforms per image with
torchvision's v2 functional ops on uint8 tensors, then flips and normalises the whole batch:

* train: ``RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))`` with its boxes drawn by
  :func:`random_resized_crop_params` (torchvision's 10-try rejection sampling and central-crop fallback, vectorised
  over the batch), then a horizontal flip with probability ½;
* eval: resize of the short side to ⌊size / 0.875⌋ (bilinear with antialias, as PIL does) + ``CenterCrop(size)``.

On the CPU this is the same code with ``device=cpu`` (what the tests run): torchvision's CPU decoder is the same
libjpeg-turbo as PIL's and its uint8 antialiased bilinear resize reproduces PIL's to ±1 grey level, so the eval tensors
match the PIL path within one level.

Images nvJPEG should not get are decoded to RGB in the worker instead (torchvision's CPU decoders, PIL for formats
they lack) and then take the same device transforms: anything that is not a JPEG (real ImageNet has a PNG or two among
its ``.JPEG`` files), CMYK/YCCK and Adobe-RGB JPEGs, grayscale and 12-bit JPEGs. Which ones, is read from the JPEG
frame header (:func:`jpeg_frame`), so a batch never fails on one odd file. Should nvJPEG still reject a batch, it is
decoded on the CPU image by image (with one warning) instead of stopping the run.

The random draws come from a CPU ``torch.Generator`` that the loader seeds per epoch (and rank), in batch order: a
fixed seed gives the same batches on the same device.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision.datasets import DatasetFolder
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from .transfer import to_device

__all__ = [
    "SCALE",
    "RATIO",
    "EVAL_CROP_FRACTION",
    "EncodedBatch",
    "JpegFrame",
    "DeviceImageTransform",
    "jpeg_frame",
    "device_decodable",
    "read_encoded",
    "decode_on_cpu",
    "collate_encoded",
    "decode_batch",
    "random_resized_crop_params",
    "encoded_view",
    "is_image_folder",
]

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop defaults
EVAL_CROP_FRACTION = 0.875  # eval resizes the short side to ⌊size / 0.875⌋ (256 for 224), then center-crops

# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic coded).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_LUMA_SAMPLING = frozenset({(1, 1), (2, 1), (2, 2), (1, 2), (4, 1), (4, 2)})  # chroma 1×1: nvJPEG's known layouts
_warned_fallback = False


class EncodedBatch(NamedTuple):
    """A batch as the workers collate it (:func:`collate_encoded`)."""

    data: Tensor  # uint8: the JPEG files of the batch back to back
    lengths: list[int]  # per image: its byte count in ``data``, or -1 for an image already decoded in the worker
    decoded: list[Tensor]  # the images decoded in the worker (uint8 3×H×W RGB), in batch order
    targets: Tensor


class JpegFrame(NamedTuple):
    precision: int  # bits per sample
    height: int
    width: int
    components: int  # 1 grayscale, 3 YCbCr (or RGB), 4 CMYK/YCCK
    adobe_transform: int | None  # the Adobe APP14 colour transform flag (0: RGB/CMYK, 1: YCbCr, 2: YCCK), if any
    sampling: tuple[tuple[int, int], ...] = ()  # (horizontal, vertical) sampling factors of each component


@contextmanager
def _quiet():
    # torchvision 0.29 deprecates its image decoders in favour of TorchCodec and warns on every call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """The frame header of a JPEG file (its first start-of-frame segment); None if ``data`` is not a readable JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, adobe = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xEE and data[pos + 4:pos + 9] == b"Adobe" and length >= 12:
            adobe = data[pos + 15] if pos + 15 < len(data) else None
        if marker in _SOF_MARKERS:
            if pos + 10 > len(data):
                return None
            components = data[pos + 9]
            factors = data[pos + 11:pos + 10 + 3 * components:3]  # each component: id, (H << 4) | V, table
            return JpegFrame(precision=data[pos + 4], height=int.from_bytes(data[pos + 5:pos + 7], "big"),
                             width=int.from_bytes(data[pos + 7:pos + 9], "big"), components=components,
                             adobe_transform=adobe, sampling=tuple((f >> 4, f & 15) for f in factors))
        if marker == 0xDA or length < 2:  # a scan before any frame: not a JPEG we can read
            return None
        pos += 2 + length
    return None


def device_decodable(frame: JpegFrame | None) -> bool:
    """Whether the file goes to nvJPEG: an 8-bit three-component YCbCr JPEG (not Adobe-RGB) with a chroma
    subsampling nvJPEG knows (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1, 4:1:0)."""
    return (frame is not None and frame.precision == 8 and frame.components == 3 and frame.adobe_transform != 0
            and frame.height > 0 and frame.width > 0 and len(frame.sampling) == 3
            and frame.sampling[0] in _LUMA_SAMPLING and frame.sampling[1] == frame.sampling[2] == (1, 1))


def decode_on_cpu(data: bytes) -> Tensor:
    """Any image file as uint8 3×H×W RGB on the CPU: torchvision's decoders (JPEG incl. CMYK and grayscale, PNG, GIF,
    WebP), PIL's ``convert("RGB")`` for what they cannot read (BMP, TIFF, 16-bit PNG, …) — what ImageFolder's PIL
    loader gives."""
    try:
        with _quiet():
            image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if image.dtype == torch.uint8:
            return image
    except RuntimeError:
        pass
    with Image.open(io.BytesIO(data)) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def read_encoded(path: str) -> Tensor:
    """The ImageFolder loader of the device path (runs in the workers): the file's bytes (1-D uint8) when nvJPEG
    decodes it (:func:`device_decodable`), else the image decoded here (uint8 3×H×W RGB)."""
    with open(path, "rb") as f:
        data = f.read()
    if device_decodable(jpeg_frame(data)):
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return decode_on_cpu(data)


def collate_encoded(samples: Sequence[tuple[Tensor, int]]) -> EncodedBatch:
    """Collate of the device path: the encoded files concatenated into one tensor (one shared-memory transfer per
    batch, not one per image), the few decoded images as a list."""
    encoded = [image for image, _ in samples if image.dim() == 1]
    return EncodedBatch(data=torch.cat(encoded) if encoded else torch.empty(0, dtype=torch.uint8),
                        lengths=[image.numel() if image.dim() == 1 else -1 for image, _ in samples],
                        decoded=[image for image, _ in samples if image.dim() != 1],
                        targets=torch.as_tensor([target for _, target in samples], dtype=torch.long))


def _decode_jpegs(chunks: list[Tensor], device: torch.device) -> list[Tensor]:
    global _warned_fallback
    try:
        with _quiet():
            return decode_jpeg(chunks, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as exc:
        if not _warned_fallback:
            _warned_fallback = True
            warnings.warn(f"decode_jpeg on {device} failed for a batch ({str(exc).splitlines()[0][:200]}); decoding "
                          "such batches on the CPU, image by image", RuntimeWarning, stacklevel=3)
        return [to_device(decode_on_cpu(chunk.numpy().tobytes()), device) for chunk in chunks]


def decode_batch(batch: EncodedBatch, device: torch.device) -> list[Tensor]:
    """The images of ``batch`` as uint8 3×H×W RGB tensors on ``device``, in batch order."""
    encoded = [n for n in batch.lengths if n >= 0]
    decoded = iter(_decode_jpegs(list(torch.split(batch.data, encoded)), device) if encoded else [])
    ready = iter(batch.decoded)
    return [next(decoded) if n >= 0 else to_device(next(ready), device) for n in batch.lengths]


def random_resized_crop_params(sizes: Tensor, generator: torch.Generator, scale: tuple[float, float] = SCALE,
                               ratio: tuple[float, float] = RATIO, tries: int = 10) -> Tensor:
    """RandomResizedCrop boxes ``(top, left, height, width)``, int64 N×4, for images of ``sizes`` (N×2: height,
    width), drawn on the CPU from ``generator``.

    torchvision's ``RandomResizedCrop.get_params`` for a whole batch at once: up to ``tries`` candidates per image, area
    fraction uniform in ``scale`` and log aspect ratio uniform in ``log(ratio)``, sides rounded; the first candidate
    that fits is placed uniformly; an image with none gets the central crop of the whole image with its aspect ratio
    clamped into ``ratio``."""
    n = sizes.shape[0]
    height, width = sizes[:, 0].double(), sizes[:, 1].double()
    area = (height * width)[:, None]
    target = area * torch.empty(n, tries, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n, tries, dtype=torch.float64).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                                    generator=generator)
    aspect = torch.exp(log_ratio)
    w_try, h_try = torch.round(torch.sqrt(target * aspect)), torch.round(torch.sqrt(target / aspect))
    fits = (w_try > 0) & (w_try <= width[:, None]) & (h_try > 0) & (h_try <= height[:, None])
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first candidate that fits
    found = fits.any(dim=1)
    # Fallback: the whole image, cropped centrally to the nearest allowed aspect ratio.
    in_ratio = width / height
    low, high = min(ratio), max(ratio)
    fallback_w = torch.where(in_ratio > high, torch.round(height * high), width)
    fallback_h = torch.where(in_ratio < low, torch.round(width / low), height)
    w = torch.where(found, w_try.gather(1, first)[:, 0], fallback_w)
    h = torch.where(found, h_try.gather(1, first)[:, 0], fallback_h)
    u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    top = torch.where(found, torch.floor(u[:, 0] * (height - h + 1)), torch.floor((height - h) / 2))
    left = torch.where(found, torch.floor(u[:, 1] * (width - w + 1)), torch.floor((width - w) / 2))
    return torch.stack([top, left, h, w], dim=1).long()


class DeviceImageTransform:
    """The device half of the ``decode=gpu`` path: an :class:`EncodedBatch` → (normalised float N×3×S×S inputs, labels)
    on ``device``; ``train`` picks RandomResizedCrop + flip, else the eval resize + center crop (see the module doc).
    Building one touches no device."""

    def __init__(self, size: Sequence[int], mean: Sequence[float], std: Sequence[float], *, train: bool,
                 device: torch.device):
        self.size = [int(size[0]), int(size[1])]
        self.resize = int(math.floor(self.size[0] / EVAL_CROP_FRACTION))
        self.train, self.device = bool(train), torch.device(device)
        # ToTensor's /255 and Normalize folded into one multiply-add; moved to the device on first use.
        self._mul = torch.tensor([1 / (255 * s) for s in std]).view(1, -1, 1, 1)
        self._add = torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, -1, 1, 1)

    def crops(self, images: list[Tensor], generator: torch.Generator) -> Tensor:
        """The uint8 N×3×S×S batch of ``images`` (uint8 3×H×W each) before normalisation."""
        if not self.train:
            return torch.stack([TF.center_crop(TF.resize(image, [self.resize], antialias=True), self.size)
                                for image in images])
        sizes = torch.tensor([tuple(image.shape[-2:]) for image in images], dtype=torch.long)
        boxes = random_resized_crop_params(sizes, generator).tolist()
        mirror = torch.rand(len(images), generator=generator) < 0.5
        out = torch.stack([TF.resized_crop(image, *box, self.size, antialias=True)
                           for image, box in zip(images, boxes)])
        return torch.where(to_device(mirror, out.device)[:, None, None, None], out.flip(-1), out)

    def __call__(self, batch: EncodedBatch, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        out = self.crops(decode_batch(batch, self.device), generator)
        if self._mul.device != out.device:
            self._mul, self._add = self._mul.to(out.device), self._add.to(out.device)
        return torch.addcmul(self._add, out.float(), self._mul), to_device(batch.targets, out.device)


def is_image_folder(dataset: Dataset) -> bool:
    """An ImageFolder (any torchvision ``DatasetFolder``) or a ``Subset`` of one."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return isinstance(dataset, DatasetFolder)


def encoded_view(dataset: Dataset) -> Dataset:
    """The same samples as ``dataset`` (an ImageFolder or a Subset of one), read by :func:`read_encoded` and not
    transformed: what the workers of the device path load."""
    if isinstance(dataset, Subset):
        return Subset(encoded_view(dataset.dataset), dataset.indices)
    view = copy.copy(dataset)
    view.loader, view.transform = read_encoded, None
    return view
