"""The method plugin base class.

A method is (a) a weight quantizer per bit-width, (b) an activation quantizer with its backward estimator, and (c) an
update rule, expressed as hooks around the optimizer step (spec §0). Each part can be overridden on its own, so a new
method is usually a dozen lines in one file (see ``methods/`` and the README's plugin section).
"""

from __future__ import annotations

import copy
import functools
from typing import Any, ClassVar, Iterable

from torch import nn

from .bits import FLOAT_BITS, Bits
from .errors import BitsError, ConfigError
from .quant import weight as wq
from .quant.activation import ALPHA_GRADS, ESTIMATORS, InputQuantizer, QuantReLU
from .quant.learned import split_param_groups
from .config.space import SearchDim, parse_search_dim

__all__ = ["Method", "HParam", "QuantReLUMethod"]


class HParam:
    """A documented hyperparameter: default, help text, (optionally) the allowed choices and the range it is tuned
    over.

    ``space`` is written as a suite's ``tune.recipe_space`` entry (:mod:`qbench.config.space`): ``[low, high, log|linear]``
    (integer ends: an integer range), a list of choices, ``{choices: [...]}``, or ``"choices"`` for the hyperparameter's
    own ``choices``. None: not tuned. :meth:`Method.search_space` suggests every hyperparameter that has one."""

    def __init__(self, default: Any, help: str, choices: Iterable[Any] | None = None, *, space: Any = None):
        self.default, self.help = default, help
        self.choices = tuple(choices) if choices is not None else None
        self.space: SearchDim | None = None if space is None else parse_search_dim(
            "", space, f"HParam({default!r}, space={space!r})", self.choices)

    def with_default(self, default: Any) -> "HParam":
        """The same hyperparameter (help, choices, space) with another default."""
        other = copy.copy(self)
        other.default = default
        return other

    def __repr__(self) -> str:
        return f"HParam({self.default!r})"


class Method:
    """Base class of every method plugin.

    Subclasses set the class attributes and override what differs from plain BinaryConnect/STE training:

    * ``hparams``: ``{name: HParam(default, help, choices)}`` — the method's own hyperparameters; every [choice] of the
      spec is one of them so that it can be tuned or ablated. Values are read as ``self.hp.<name>``.
    * :meth:`weight_quantizer`, :meth:`activation_quantizer`, :meth:`input_quantizer` — per bit-width.
    * :meth:`before_step` / :meth:`after_step` — update-level rules around ``optimizer.step()`` (BCGD's blend,
      AQE's clipping); :meth:`on_epoch_start` for schedules that depend on the epoch.
    * ``HParam(..., space=[low, high, log])`` — the range :meth:`search_space` tunes a hyperparameter over;
      :meth:`searched_hparams` makes one conditional on another.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "update rule"  # "baseline" | "weight quantizer" | "activation estimator" | "update rule"
    paper: ClassVar[str] = ""
    hparams: ClassVar[dict[str, HParam]] = {}
    #: activation module types replaced by :meth:`activation_quantizer` (ReLU-family by default, spec §2 placement)
    activation_types: ClassVar[tuple[type[nn.Module], ...]] = (nn.ReLU, nn.ReLU6)
    #: weight bit-widths the method supports (None: any; 32 = float weights is always allowed)
    weight_bits: ClassVar[tuple[int, ...] | None] = None
    #: activation bit-widths the method supports (None: any; 32 = float activations is always allowed). A method
    #: whose :meth:`activation_quantizer` returns None (a weight-only method) sets ``(32,)``, so W1A1 is refused
    #: rather than silently run with float activations.
    activation_bits: ClassVar[tuple[int, ...] | None] = None
    #: the layer policy the method's paper used, for the docs (the suite decides what is run)
    paper_policy: ClassVar[str] = ""
    #: learning rate of the optimizer step in progress (the main, first parameter group), set by
    #: :func:`qbench.train.train_step` before :meth:`before_step`; prox-type update rules whose threshold is η_t·λ_t
    #: (ProxQuant) read it in :meth:`after_step`. None outside ``train_step`` (a custom loop may set it).
    step_lr: float | None = None

    def __init__(self, **overrides: Any):
        valid = self.hparams
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ConfigError(
                f"method '{self.name}' has no hyperparameter {', '.join(repr(k) for k in unknown)}; "
                f"valid: {', '.join(sorted(valid)) or '(none)'}"
            )
        values = {k: h.default for k, h in valid.items()}
        values.update(overrides)
        for key, value in values.items():
            choices = valid[key].choices
            if choices is not None and value not in choices:
                raise ConfigError(f"{self.name}.{key}={value!r} is not allowed; choose one of {list(choices)}")
        self.config = values
        self.hp = _Namespace(values)

    # ----------------------------------------------------------------------------------------------- quantizers
    @classmethod
    def unsupported_bits(cls, bits) -> str | None:
        """Why ``bits`` (a :class:`~qbench.bits.Bits`) is outside what the method supports, or None when it is not.
        Suites skip such cells (a zoo suite lists W1A1…W4A4 for every method); :func:`quantize_model` refuses them."""
        if cls.weight_bits is not None and bits.weight < 32 and bits.weight not in cls.weight_bits:
            supported = ", ".join(f"W{b}" for b in cls.weight_bits)
            return f"method '{cls.name}' supports {supported} weights (got W{bits.weight}); W32 keeps float weights"
        if cls.activation_bits is not None and bits.act < 32 and bits.act not in cls.activation_bits:
            supported = ", ".join(f"A{b}" for b in cls.activation_bits if b < 32)
            what = f"supports {supported} activations" if supported else "quantizes weights only"
            return f"method '{cls.name}' {what} (got A{bits.act}); A32 keeps float activations"
        return None

    def check_bits(self, bits) -> None:
        reason = self.unsupported_bits(bits)
        if reason:
            raise BitsError(reason)

    def check_weight_bits(self, bits: int) -> None:
        """:meth:`check_bits` for a weight bit-width alone (a plugin's ``weight_quantizer`` guard)."""
        self.check_bits(Bits(int(bits), FLOAT_BITS))

    def weight_quantizer(self, bits: int) -> nn.Module | None:
        """Parametrization module for a layer's weight at ``bits`` (None: keep float). Default: BinaryConnect-style
        straight-through with binary (1 bit), exact ternary (2 bits) or uniform (≥ 3 bits)."""
        if bits == 1:
            fn = wq.binary
        elif bits == 2:
            fn = wq.ternary_exact
        else:
            fn = functools.partial(wq.uniform, bits=bits)
        return wq.StraightThroughWeight(fn, wq.num_levels(bits))

    def activation_quantizer(self, bits: int) -> nn.Module | None:
        """Module that replaces each activation of :attr:`activation_types` (None: keep float)."""
        return None

    def input_quantizer(self, bits: int, signed: bool) -> nn.Module | None:
        """Quantizer for the input of a quantized layer that does not come from a quantized activation."""
        return InputQuantizer(bits, signed=signed)

    # ---------------------------------------------------------------------------------------------- training hooks
    def param_groups(self, model: nn.Module) -> list[dict]:
        """Optimizer parameter groups; default one group with every trainable parameter (latent weights and any
        learned quantizer parameter such as BCGD's α, which the BCGD code trains with the weights' settings).
        Learned quantizer parameters that declare a role (``qbench_param_roles``, :mod:`qbench.quant.learned`) get a
        group of their own when :meth:`param_group_options` gives options for that role."""
        return split_param_groups(model, self.param_group_options())

    def param_group_options(self) -> dict[str, dict]:
        """Optimizer options per role of learned quantizer parameters, e.g. ``{"clip": {"weight_decay": 2e-4}}``
        (PACT's own L2 decay on α); roles left out stay in the main group with the recipe's settings."""
        return {}

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Called before each epoch (0-based); schedules that depend on the epoch live here."""

    def before_step(self, model: nn.Module) -> None:
        """Called after backward, before ``optimizer.step()``: the gradient at Q(w) is in ``latent.grad``."""

    def after_step(self, model: nn.Module) -> None:
        """Called after ``optimizer.step()`` (projections, clipping, prox steps)."""

    # ------------------------------------------------------------------------------------------------------ tuning
    def searched_hparams(self) -> list[str]:
        """Names of the hyperparameters :meth:`search_space` tunes: those that declare a ``space``, in declaration
        order. Override to make one depend on another's configured value (``self.hp``)."""
        return [name for name, h in self.hparams.items() if h.space is not None]

    def search_space(self, trial) -> dict[str, Any]:
        """Optuna search space of the method's own hyperparameters: each of :meth:`searched_hparams` suggested from
        its ``space`` under its own name (``trial.suggest_*``); empty: nothing to tune. A method whose space has
        another shape overrides this."""
        return {name: self.hparams[name].space.suggest(trial, name) for name in self.searched_hparams()}

    # -------------------------------------------------------------------------------------------------------- docs
    @classmethod
    def describe(cls) -> str:
        lines = [f"{cls.name}  [{cls.family}]  {cls.paper}".rstrip()]
        doc = (cls.__doc__ or "").strip().splitlines()
        if doc:
            lines.append(f"    {doc[0]}")
        for key, h in sorted(cls.hparams.items()):
            choices = f" {{{', '.join(map(str, h.choices))}}}" if h.choices else ""
            lines.append(f"    {key} = {h.default!r}{choices}  — {h.help}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.config.items()))
        return f"{type(self).__name__}({args})"


class _Namespace:
    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"hp({self.__dict__})"


class QuantReLUMethod(Method):
    """Base of the methods whose activations are the b-bit quantized ReLU of spec §2 (STE, BCGD, PCG, LBW).

    Subclasses extend :attr:`hparams` with ``**QuantReLUMethod.hparams`` and may change the defaults with
    :meth:`relu_hparams`."""

    hparams = {
        "estimator": HParam("clipped_relu", "activation backward μ': identity | relu | clipped_relu (spec §2)",
                            ESTIMATORS, space="choices"),
        "learn_alpha": HParam(False, "learn the activation resolution α by BCGD's rule (spec §2)", (True, False)),
        "alpha": HParam(None, "initial/fixed α; None: the half-normal Lloyd fit per bit-width (spec §2 table)"),
        "alpha_grad": HParam("mean", "∂σ/∂α variant when α is learned (BCGD code)", ALPHA_GRADS, space="choices"),
    }

    @staticmethod
    def relu_hparams(**defaults: Any) -> dict[str, HParam]:
        """The quantized-ReLU hyperparameters with some defaults changed (e.g. ``learn_alpha=True`` for BCGD)."""
        out = dict(QuantReLUMethod.hparams)
        for key, value in defaults.items():
            out[key] = out[key].with_default(value)
        return out

    def activation_quantizer(self, bits: int) -> nn.Module:
        return QuantReLU(bits, estimator=self.hp.estimator, alpha=self.hp.alpha, learn_alpha=self.hp.learn_alpha,
                         alpha_grad=self.hp.alpha_grad)

    def searched_hparams(self) -> list[str]:
        # ∂σ/∂α only acts when α is learned: tuning it with a fixed α would waste trials on a no-op
        return [name for name in super().searched_hparams() if name != "alpha_grad" or self.hp.learn_alpha]
