"""Learned quantizer parameters: shared building blocks for methods that train a step size, a clipping value or a
softness parameter together with the weights (LSQ, PACT, DSQ in ``methods/``; any third-party plugin).

* **Parameter roles → optimizer groups.** A quantizer module lists its learned parameters in the class attribute
  ``qbench_param_roles = {attribute: role}``; :func:`split_param_groups` (what :meth:`qbench.Method.param_groups`
  calls) gives a role its own optimizer group when the method asks for options for it
  (:meth:`qbench.Method.param_group_options`, e.g. PACT's own L2 decay on α). Roles without options stay in the main
  group, so a method that asks for nothing trains exactly as before. Roles are looked up through the modules, not
  stored on the tensors, so they survive ``.to()``, deepcopy and state-dict loading. The latent (float) weights of
  the quantized layers have the role "latent" (ProxQuant trains them without weight decay).
* :func:`round_ste`, :func:`grad_scale`, :func:`ste_replace` — the straight-through round and the value-preserving
  gradient scaling of the LSQ paper (Esser et al., arXiv 1902.08153, §2.2 and its code listing), written as autograd
  Functions so the forward value is *exactly* the quantized one (``x + (q − x).detach()`` can be off by one ulp,
  which adds spurious levels).
* :func:`sync_mean` and the ``initialized`` buffers — data-dependent initialisation on the first *training* batch
  (the evaluation-mode placement probe of :func:`~qbench.quant.apply.quantize_model` runs on random input and must
  not set it), averaged over ranks under torchrun so that every replica starts from the same value.
  :class:`LazyInit` mirrors the buffer in a Python flag, so the step reads the buffer once, not every forward.
* :func:`lsq_quantize` (LSQ eq. 1–3 and 5 with the §2.2 gradient scale) and the modules :class:`LearnedStepWeight`
  (a weight parametrization with its own ``nn.Parameter`` step, per tensor as in the paper or per output channel)
  and :class:`LearnedStepQuantizer` (activations and layer inputs, unsigned after a ReLU or signed).
* :func:`project_learned_` — puts every learned quantizer parameter back into its domain after an optimizer step
  (modules define ``project_()``); done after the step rather than in place during the forward, because a module
  called twice in one forward pass would otherwise modify a tensor autograd has saved.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor, nn

from ..errors import BitsError, ConfigError
from .gates import keep_between
from .latent import latent_weights
from .weight import WeightParametrization

__all__ = [
    "PARAM_ROLES_ATTR",
    "ROLE_STEP",
    "ROLE_CLIP",
    "ROLE_SOFTNESS",
    "ROLE_LATENT",
    "FEATURE_COUNTS",
    "param_roles",
    "split_param_groups",
    "project_learned_",
    "round_ste",
    "grad_scale",
    "ste_replace",
    "sync_mean",
    "LazyInit",
    "lsq_bounds",
    "lsq_init_step",
    "lsq_quantize",
    "LearnedStepWeight",
    "LearnedStepQuantizer",
]

#: class attribute of a quantizer module: ``{parameter attribute: role}``
PARAM_ROLES_ATTR = "qbench_param_roles"
ROLE_STEP = "step"  # a learned quantization step size (LSQ)
ROLE_CLIP = "clip"  # a learned clipping value / range bound (PACT's α, DSQ's l and u)
ROLE_SOFTNESS = "softness"  # a learned shape parameter of a soft quantizer (DSQ's α)
ROLE_LATENT = "latent"  # the latent float weight of a quantized layer (``parametrizations.weight.original``)
#: what N counts in LSQ's activation gradient scale 1/√(N·Q_P): the features of one example (paper §2.2 text) or
#: every element of the batch (``v.numel()`` in the paper's code listing)
FEATURE_COUNTS = ("example", "batch")


# ------------------------------------------------------------------------------------------ roles and param groups
def param_roles(model: nn.Module) -> dict[int, str]:
    """``{id(parameter): role}`` for every learned quantizer parameter declared through ``qbench_param_roles``, and
    the role "latent" for the latent weight of every quantized layer (:func:`~qbench.quant.latent.latent_weights`)."""
    roles = {id(latent): ROLE_LATENT for latent, _ in latent_weights(model)}
    for module in model.modules():
        for attr, role in getattr(module, PARAM_ROLES_ATTR, {}).items():
            p = getattr(module, attr, None)
            if isinstance(p, nn.Parameter):
                roles[id(p)] = role
    return roles


def split_param_groups(model: nn.Module, options: Mapping[str, Mapping | None] | None = None) -> list[dict]:
    """Optimizer parameter groups: first the main group (every trainable parameter whose role has no options, in
    ``model.parameters()`` order), then one group per role in ``options`` that has parameters, carrying those options
    (e.g. ``{"clip": {"weight_decay": 1e-4}}``) and ``qbench_role``. Without options: one group, as before."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    options = {role: dict(opts) for role, opts in (options or {}).items() if opts is not None}
    if not options:
        return [{"params": trainable}]
    for role, opts in options.items():
        if "params" in opts:
            raise ConfigError(f"param_group_options()['{role}'] must not contain 'params'; give optimizer options only")
    roles = param_roles(model)
    main: list[nn.Parameter] = []
    grouped: dict[str, list[nn.Parameter]] = {role: [] for role in options}
    for p in trainable:
        role = roles.get(id(p))
        (grouped[role] if role in grouped else main).append(p)
    groups = [{"params": main}]
    groups += [{"params": ps, "qbench_role": role, **options[role]} for role, ps in grouped.items() if ps]
    return groups


def project_learned_(model: nn.Module) -> None:
    """Call ``project_()`` on every module that defines it (after ``optimizer.step()``): keeps step sizes positive,
    DSQ's α in its interval, l < u."""
    with torch.no_grad():
        for module in model.modules():
            project = getattr(module, "project_", None)
            if callable(project):
                project()


# ------------------------------------------------------------------------------------------- autograd primitives
class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad


def round_ste(x: Tensor) -> Tensor:
    """round(x) forward, identity backward (the straight-through round: DoReFa eq. 5, LSQ's ``roundpass``)."""
    return _RoundSTE.apply(x)


class _GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


def grad_scale(x: Tensor, scale: float) -> Tensor:
    """x forward, ``scale``·grad backward (LSQ §2.2 ``gradscale``: the step size's gradient is multiplied by
    g = 1/√(N·Q_P) without changing its value)."""
    return _GradScale.apply(x, float(scale))


class _STEReplace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, q: Tensor) -> Tensor:
        return q.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def ste_replace(x: Tensor, q: Tensor) -> Tensor:
    """Exactly ``q`` forward, the gradient passed unchanged to ``x`` (q is not differentiated)."""
    return _STEReplace.apply(x, q.detach())


def sync_mean(t: Tensor) -> Tensor:
    """Mean of ``t`` over the ranks of a running process group (torchrun), else ``t``. Every rank must call it, in
    the same order: it is used on the first training batch, which every rank sees."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.detach().clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


class LazyInit:
    """Mixin of a quantizer module whose state is initialised from data on first use, recorded in its boolean
    ``initialized`` buffer (saved with the model, so a loaded checkpoint is not re-initialised).

    The buffer is read once (:meth:`is_initialized`) and then mirrored in a Python flag, because reading it every
    forward is a host sync on a GPU and, under ``torch.compile``, a data-dependent branch that breaks the graph; the
    flag is a Python constant the compiled graph is guarded on (one recompilation after the initialising step).
    Loading a state dict clears the flag, so the loaded buffer is read again."""

    _init_seen = False

    def is_initialized(self) -> bool:
        if not self._init_seen:
            self._init_seen = bool(self.initialized)
        return self._init_seen

    def mark_initialized(self) -> None:
        self.initialized.fill_(True)
        self._init_seen = True

    def _load_from_state_dict(self, *args, **kwargs):
        self._init_seen = False
        super()._load_from_state_dict(*args, **kwargs)


# ------------------------------------------------------------------------------------------------------ LSQ core
def lsq_bounds(bits: int, signed: bool) -> tuple[int, int]:
    """(Q_N, Q_P) of LSQ §2: signed 2^{b−1}, 2^{b−1} − 1 (weights, signed inputs); unsigned 0, 2^b − 1 (after ReLU)."""
    if signed:
        if bits < 2:
            raise BitsError(f"a signed learned-step grid needs ≥ 2 bits (got {bits}: Q_P = 0); use 2 or more bits")
        return 2 ** (bits - 1), 2 ** (bits - 1) - 1
    if bits < 1:
        raise BitsError(f"bits must be ≥ 1 (got {bits})")
    return 0, 2**bits - 1


def lsq_init_step(v: Tensor, q_p: int, dims: tuple[int, ...] | None = None) -> Tensor:
    """LSQ §2.1 initial step s₀ = 2·⟨|v|⟩/√Q_P (mean over all of v, or over ``dims`` for per-channel steps)."""
    a = v.detach().abs().float()
    mean = a.mean() if dims is None else a.mean(dim=dims, keepdim=True)
    return (2.0 * mean / math.sqrt(q_p)).clamp_min(torch.finfo(torch.float32).tiny)


class _LSQ(torch.autograd.Function):
    """LSQ eq. 1–2 forward v̂ = ⌊clip(v/s, −Q_N, Q_P)⌉·s; backward eq. 5 (STE: ∂v̂/∂v = 1 strictly inside the range,
    else 0) and eq. 3 (∂v̂/∂s = −v/s + ⌊v/s⌉ inside, −Q_N below, Q_P above), times the gradient scale g (§2.2)."""

    @staticmethod
    def forward(ctx, v: Tensor, s: Tensor, q_n: int, q_p: int, g: float) -> Tensor:
        vs = v / s
        ctx.save_for_backward(vs)
        ctx.cfg = (q_n, q_p, g, s.shape)
        return torch.round(vs).clamp_(-q_n, q_p).mul_(s)  # in place: one new tensor

    @staticmethod
    def backward(ctx, grad: Tensor):
        (vs,) = ctx.saved_tensors
        q_n, q_p, g, s_shape = ctx.cfg
        # grad·1{−Q_N < v/s < Q_P} in one gated pass (quant.gates): the data gradient (eq. 5), and the step gradient's
        # inside part below
        grad_inside = keep_between(grad, vs, -q_n, q_p)
        grad_v = grad_inside if ctx.needs_input_grad[0] else None
        grad_s = None
        if ctx.needs_input_grad[1]:
            # grad·∂v̂/∂s (eq. 3) per element as grad·(⌊v/s⌉ − v/s) inside plus grad·clip(⌊v/s⌉, −Q_N, Q_P) = grad·(−Q_N)
            # or grad·Q_P outside (one of the two terms is exactly 0), without `where` (slow on a CPU)
            r = torch.round(vs)
            outside = (grad - grad_inside).mul_(r.clamp(-q_n, q_p))
            grad_s = r.sub_(vs).mul_(grad_inside).add_(outside).sum_to_size(s_shape) * g
        return grad_v, grad_s, None, None, None


def lsq_quantize(v: Tensor, s: Tensor, q_n: int, q_p: int, g: float = 1.0) -> Tensor:
    """LSQ quantizer (eq. 1–2) with its step-size gradient (eq. 3) scaled by ``g`` (§2.2); ``s`` is a scalar or a
    tensor broadcastable to ``v`` (per channel)."""
    return _LSQ.apply(v, s.to(v.dtype), int(q_n), int(q_p), float(g))


def _channel_dims(w: Tensor) -> tuple[int, ...]:
    return tuple(range(1, w.dim()))


class LearnedStepWeight(LazyInit, WeightParametrization):
    """Weight parametrization ``w ↦ lsq_quantize(w, s)`` with a learned step ``s`` (LSQ; ``nn.Parameter`` of this
    module, so it is in ``model.parameters()``, the optimizer and the state dict as
    ``<layer>.parametrizations.weight.0.step``).

    Signed grid Q_N = 2^{b−1}, Q_P = 2^{b−1} − 1 (2^b levels). ``s`` is initialised from the weights by LSQ §2.1 at
    the first forward — the one :func:`torch.nn.utils.parametrize.register_parametrization` runs, i.e. from the
    weights the model has when it is quantized. Gradient scale g = 1/√(N·Q_P), N = weights per step (§2.2).
    ``per_channel=True`` learns one step per output channel (not in the LSQ paper; N is then the channel's size).
    """

    qbench_param_roles = {"step": ROLE_STEP}

    def __init__(self, bits: int, per_channel: bool = False, scale_grad: bool = True, min_step: float = 1e-8):
        super().__init__()
        self.bits, self.per_channel, self.scale_grad, self.min_step = bits, per_channel, scale_grad, min_step
        self.q_n, self.q_p = lsq_bounds(bits, signed=True)
        self.levels = self.q_n + self.q_p + 1
        self.step = nn.Parameter(torch.ones(()))
        self.register_buffer("initialized", torch.tensor(False))

    def _init_from(self, latent: Tensor) -> None:
        with torch.no_grad():
            dims = _channel_dims(latent) if self.per_channel and latent.dim() > 1 else None
            s0 = lsq_init_step(latent, self.q_p, dims).to(self.step.device)
            if s0.shape != self.step.shape:
                self.step.data = s0.clone()  # before any optimizer exists: registration runs the first forward
            else:
                self.step.copy_(s0)
            self.mark_initialized()

    def _g(self, latent: Tensor) -> float:
        if not self.scale_grad:
            return 1.0
        n = latent.numel() // max(1, self.step.numel())
        return 1.0 / math.sqrt(n * self.q_p)

    def forward(self, latent: Tensor) -> Tensor:
        if not self.is_initialized():
            self._init_from(latent)
        s = self.step.clamp_min(self.min_step)
        return lsq_quantize(latent, s, self.q_n, self.q_p, self._g(latent))

    def hard(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            if not self.is_initialized():
                self._init_from(latent)
            s = self.step.clamp_min(self.min_step).to(latent.dtype)
            return torch.clamp(torch.round(latent / s), -self.q_n, self.q_p) * s

    def project_(self) -> None:
        self.step.clamp_(min=self.min_step)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, levels={self.levels}, per_channel={self.per_channel}"


class LearnedStepQuantizer(LazyInit, nn.Module):
    """LSQ quantizer for activations (replacing a ReLU: unsigned, Q_N = 0, Q_P = 2^b − 1, so negative inputs map to
    0 with zero gradient, as the ReLU would) or for a layer's input that is not a ReLU output (signed).

    The step is initialised on the first training batch by LSQ §2.1 (s₀ = 2·⟨|v|⟩/√Q_P, averaged over ranks; v is
    relu(x) when unsigned, the data the grid represents); before that — the placement probe, an evaluation before
    any training — the batch's own s₀ is used without being stored.
    Gradient scale g = 1/√(N·Q_P) (§2.2) with N the features of one example (``feature_count="example"``, the
    paper's text) or every element of the batch (``"batch"``, its code listing's ``v.numel()``).
    """

    qbench_param_roles = {"step": ROLE_STEP}

    def __init__(self, bits: int, signed: bool = False, scale_grad: bool = True, feature_count: str = "example",
                 min_step: float = 1e-8):
        super().__init__()
        if feature_count not in FEATURE_COUNTS:
            raise ConfigError(f"unknown feature_count '{feature_count}'; choose one of {', '.join(FEATURE_COUNTS)}")
        self.bits, self.signed, self.scale_grad, self.feature_count = bits, signed, scale_grad, feature_count
        self.min_step = min_step
        self.q_n, self.q_p = lsq_bounds(bits, signed)
        self.step = nn.Parameter(torch.ones(()))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def levels(self) -> int:
        return self.q_n + self.q_p + 1

    def _g(self, x: Tensor) -> float:
        if not self.scale_grad:
            return 1.0
        n = x.numel() if self.feature_count == "batch" or x.dim() < 2 else x[0].numel()
        return 1.0 / math.sqrt(n * self.q_p)

    def _init_step(self, x: Tensor) -> Tensor:
        """LSQ §2.1 s₀ = 2·⟨|v|⟩/√Q_P over the data v this quantizer represents. Unsigned, it replaces a ReLU: v is
        relu(x), as in the paper, which quantizes the ReLU's output; the pre-ReLU x, negatives included, would give
        a step ~2× too large on N(0, 1) inputs (issue #15)."""
        return lsq_init_step(x if self.signed else x.detach().clamp_min(0), self.q_p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.is_initialized():
            s0 = sync_mean(self._init_step(x)) if self.training else self._init_step(x)
            if not self.training:  # e.g. the placement probe on random input: use, do not keep
                return lsq_quantize(x, s0.to(x.device), self.q_n, self.q_p, self._g(x))
            with torch.no_grad():
                self.step.copy_(s0)
                self.mark_initialized()
        s = self.step.clamp_min(self.min_step)
        return lsq_quantize(x, s, self.q_n, self.q_p, self._g(x))

    def project_(self) -> None:
        self.step.clamp_(min=self.min_step)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, step={float(self.step.detach()):.4g}"
