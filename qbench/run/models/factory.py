"""Building a model for a run: ``timm.create_model`` with qbench's errors, the input size, the 32-px adapter and a
local checkpoint; loading state dicts across the quantizer surgery."""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Sequence

import timm
import torch
from torch import Tensor, nn

from ...config import ModelConfig
from ...errors import QbenchError
from .zoo import adapt_to_32px, pair

__all__ = ["create_model", "load_checkpoint"]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _unknown_arch_error(arch: str) -> QbenchError:
    names = timm.list_models()
    close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
    close += [n for n in names if arch.lower() in n and n not in close][: max(0, 5 - len(close))]
    hint = f"close matches: {', '.join(close)}" if close else "list the names with timm.list_models('*pattern*')"
    return QbenchError(f"unknown model.arch '{arch}'; {hint}")


def create_model(arch: str, model: ModelConfig | None = None, *, num_classes: int, in_chans: int,
                 input_size: tuple | None = None) -> nn.Module:
    """Build ``arch`` (any timm model name, qbench's architectures included) as ``model`` configures it.

    Args:
        arch: any timm model name or one of :data:`qbench.run.models.ARCHS`.
        model: ``pretrained`` (timm's weights; may download), ``checkpoint`` (a local state dict loaded afterwards,
            see :func:`load_checkpoint`), ``adapt_32px`` (:func:`adapt_to_32px` for timm ImageNet models on CIFAR-size
            input) and ``kwargs`` (further constructor arguments); default: a plain model.
        num_classes, in_chans: passed to the model.
        input_size: (C, H, W) (or H) the model will be fed; sets ``img_size`` for models whose layers depend on it
            (``fixed_input_size`` in their cfg: lenet5, vgg11_cifar, convnet_aqe_*, ViTs) and is recorded in
            ``model.pretrained_cfg["input_size"]``.
    """
    model = model or ModelConfig()
    kwargs = dict(model.kwargs)
    if not timm.is_model(arch):
        raise _unknown_arch_error(arch)
    if input_size is not None:
        size = (in_chans, *pair(input_size)) if isinstance(input_size, int) or len(input_size) < 3 else \
            tuple(int(s) for s in input_size)
        if size[0] != in_chans:
            raise QbenchError(f"{arch}: input_size {size} has {size[0]} channels but in_chans={in_chans}; "
                              "make data and model agree")
        default = timm.models.get_pretrained_cfg(arch)
        if default is not None and default.fixed_input_size:
            kwargs.setdefault("img_size", size[1:])
    try:
        net = timm.create_model(arch, pretrained=model.pretrained, num_classes=num_classes, in_chans=in_chans,
                                **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised below unless it is a failed weight download
        if model.pretrained and _is_download_failure(exc):
            # Without network (a compute node, this project's CI) timm's hub download fails deep in requests or
            # huggingface_hub; say what to do instead of a 40-line traceback per cell.
            raise QbenchError(
                f"{arch}: timm's pretrained weights could not be fetched ({type(exc).__name__}: {_first_line(exc)}); "
                "run once where the network is reachable (they are cached under ~/.cache/huggingface) or set "
                "model.pretrained=false model.checkpoint=/path/to/weights.pth"
            ) from None
        _raise_model_error(arch, exc)
    if model.adapt_32px:
        net = adapt_to_32px(net)
    if input_size is not None:
        cfg = dict(getattr(net, "pretrained_cfg", None) or {})
        cfg["input_size"] = size
        net.pretrained_cfg = net.default_cfg = cfg
    if model.checkpoint:
        load_checkpoint(net, model.checkpoint)
    return net


_DOWNLOAD_ERROR_NAMES = ("EntryNotFound", "OfflineMode", "HTTPError", "ConnectionError", "Timeout", "URLError")


def _is_download_failure(exc: BaseException) -> bool:
    """A network or hub-cache failure while fetching pretrained weights (OSError covers requests' and urllib's)."""
    return isinstance(exc, OSError) or any(n in type(exc).__name__ for n in _DOWNLOAD_ERROR_NAMES)


def _raise_model_error(arch: str, exc: Exception) -> None:
    """One line for the errors a user can fix from the config; anything else propagates as it is."""
    if isinstance(exc, TypeError):
        raise QbenchError(f"{arch}: {_first_line(exc)}; remove the unsupported model option") from None
    if isinstance(exc, ValueError):
        raise QbenchError(f"{arch}: {_first_line(exc)}") from None
    if isinstance(exc, RuntimeError) and "No pretrained weights exist" in str(exc):
        raise QbenchError(f"{arch} has no pretrained weights; set model.pretrained=false") from None
    raise exc


_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_PARAMETRIZED_SUFFIX = ".parametrizations.weight.original"


def _unwrap_state_dict(obj) -> dict:
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None or any(isinstance(v, Tensor) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, dict):
        raise TypeError(type(obj).__name__)
    out = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            continue
        for prefix in ("module.", "_orig_mod."):  # DDP / torch.compile wrappers
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _match_parametrization(key: str, model_keys: set[str]) -> str:
    """Map a latent weight saved by the quantizer surgery onto a float model and back: ``x.weight`` ⇄
    ``x.parametrizations.weight.original``."""
    if key in model_keys:
        return key
    if key.endswith(_PARAMETRIZED_SUFFIX):
        plain = key[: -len(_PARAMETRIZED_SUFFIX)] + ".weight"
        return plain if plain in model_keys else key
    if key.endswith(".weight"):
        parametrized = key[: -len(".weight")] + _PARAMETRIZED_SUFFIX
        return parametrized if parametrized in model_keys else key
    return key


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a local state dict into ``model`` non-strictly, warning about what did not match.

    Accepts a bare ``state_dict`` or one wrapped under ``state_dict`` / ``model`` / ``model_state_dict``, strips
    ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes, maps latent weights of quantized models
    (``….parametrizations.weight.original``) onto plain ``….weight`` and back, and skips tensors whose shape differs
    (e.g. another number of classes). Loaded with ``weights_only=True``: a file holding arbitrary objects is refused.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise QbenchError(f"checkpoint file not found: {path} (model.checkpoint must point at a file saved with "
                          "torch.save(model.state_dict(), path))")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state = _unwrap_state_dict(raw)
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is not a usable state dict
        raise QbenchError(f"cannot read checkpoint {path} ({type(exc).__name__}: {_first_line(exc)}); "
                          "save it with torch.save(model.state_dict(), path)") from None
    own = model.state_dict()
    own_keys = set(own)
    loadable, mismatched = {}, []
    for key, value in state.items():
        target = _match_parametrization(key, own_keys)
        if target in own and own[target].shape != value.shape:
            mismatched.append(f"{target} {tuple(value.shape)}→{tuple(own[target].shape)}")
            continue
        loadable[target] = value
    result = model.load_state_dict(loadable, strict=False)
    missing = [k for k in result.missing_keys if not any(m.startswith(k + " ") for m in mismatched)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_preview(missing)})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected ({_preview(result.unexpected_keys)})")
    if mismatched:
        problems.append(f"{len(mismatched)} skipped for shape mismatch ({_preview(mismatched)})")
    if problems:
        warnings.warn(f"checkpoint {path}: " + "; ".join(problems), stacklevel=2)
    return model


def _preview(keys: Sequence[str], n: int = 4) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", … {len(keys) - n} more" if len(keys) > n else "")
