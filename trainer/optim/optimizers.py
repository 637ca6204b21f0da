"""The optimizer factory: a table from name to typed options and a route into the trainer.

``hyperparams.optimizer`` is a name (``"sgd"``) or ``{"name": "sgd", "momentum": 0.9}``; the
options are checked against that optimizer's own model (unknown keys get a did-you-mean, as
everywhere in the config). Each optimizer reaches the trainer by one of two routes:

- a name transformers' ``TrainingArguments.optim`` knows, where its handler takes every option
  we offer (AdamW's betas and eps, SGD's momentum, bitsandbytes' 8-bit AdamW, Lion...): then the
  options become ``TrainingArguments`` fields (``adam_beta1``, ``optim_args``), and transformers
  builds it;
- otherwise a class and keyword arguments for the trainer's ``optimizer_cls_and_kwargs`` hook
  (torch's Adam, Adagrad with ``initial_accumulator_value``, Adafactor with its own options,
  bitsandbytes' 32-bit AdamW): transformers' handlers for those fix options we expose.

Either way the trainer's ``create_optimizer`` makes the parameter groups: no weight decay
(``hyperparams.weight_decay``) on biases and norm weights. Nothing here imports torch at import
time: ``--validate`` stays light.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from trainer.config.schema import OptimizerOptions

Betas = tuple[float, float]


@dataclass(frozen=True)
class Route:
    """How one configured optimizer reaches the trainer: ``arguments`` for TrainingArguments
    (``optim`` and its fields), or ``hook``: an import path of the class and its kwargs (besides
    ``lr`` and the parameter groups, which the trainer gives)."""

    arguments: dict[str, Any]
    hook: tuple[str, dict[str, Any]] | None = None


class _BetasOptions(OptimizerOptions):
    """Options of the Adam family and Lion: the running averages' coefficients."""

    betas: Betas = Field((0.9, 0.999), description="Coefficients of the running averages of the gradient and its square.")

    @model_validator(mode="after")
    def _betas_in_range(self) -> _BetasOptions:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must each lie in [0, 1); got {list(self.betas)}")
        return self


class AdamWOptions(_BetasOptions):
    name: Literal["adamw", "adamw_torch", "adamw_torch_fused"] = Field(
        "adamw", description="torch's AdamW (decoupled weight decay)."
    )
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")
    fused: bool = Field(
        True, description="One fused kernel for the whole step (same update; 4x faster on CPU). "
        "adamw_torch is the unfused loop, adamw_torch_fused the fused one."
    )


class AdamOptions(_BetasOptions):
    name: Literal["adam"] = Field("adam", description="torch's Adam (weight decay as an L2 term in the gradient).")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")
    amsgrad: bool = Field(False, description="Keep the maximum of past squared-gradient averages.")


class SGDOptions(OptimizerOptions):
    name: Literal["sgd"] = Field("sgd", description="torch's SGD.")
    momentum: float = Field(0.0, ge=0, description="Momentum factor.")
    dampening: float = Field(0.0, ge=0, description="Dampening of the momentum.")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0 and dampening 0).")

    @model_validator(mode="after")
    def _nesterov(self) -> SGDOptions:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        return self


class AdagradOptions(OptimizerOptions):
    name: Literal["adagrad"] = Field("adagrad", description="torch's Adagrad.")
    lr_decay: float = Field(0.0, ge=0, description="Learning-rate decay per step.")
    eps: float = Field(1e-10, gt=0, description="Added to the denominator for stability.")
    initial_accumulator_value: float = Field(0.0, ge=0, description="Starting value of the squared-gradient sums.")


class RMSpropOptions(OptimizerOptions):
    name: Literal["rmsprop"] = Field("rmsprop", description="torch's RMSprop.")
    alpha: float = Field(0.99, gt=0, lt=1, description="Smoothing constant of the squared-gradient average.")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")
    momentum: float = Field(0.0, ge=0, description="Momentum factor.")
    centered: bool = Field(False, description="Normalise by the gradient's estimated variance.")


class AdafactorOptions(OptimizerOptions):
    name: Literal["adafactor"] = Field("adafactor", description="transformers' Adafactor (factored second moments).")
    eps1: float = Field(1e-30, gt=0, description="Regularisation of the squared gradient.")
    eps2: float = Field(1e-3, gt=0, description="Regularisation of the parameter scale.")
    clip_threshold: float = Field(1.0, gt=0, description="Threshold of the root-mean-square of the final update.")
    decay_rate: float = Field(-0.8, lt=0, description="Exponent of the running average of the squared gradient.")
    beta1: float | None = Field(None, ge=0, lt=1, description="First-moment coefficient; unset: no first moment (less memory).")
    scale_parameter: bool = Field(
        False, description="Scale the learning rate by the parameter's root-mean-square. (Adafactor's own "
        "relative_step schedule is not offered: the job's scheduler sets the rate.)"
    )


class Bnb8bitAdamWOptions(_BetasOptions):
    name: Literal["adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit", "paged_adamw_32bit"] = Field(
        "adamw_8bit",
        description="bitsandbytes' AdamW with 8-bit (or 32-bit) states; paged_* page the states to host "
        "memory on a CUDA GPU (on a CPU they run unpaged).",
    )
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")


class Bnb32bitAdamWOptions(Bnb8bitAdamWOptions):
    name: Literal["adamw_32bit"] = Field("adamw_32bit", description="bitsandbytes' AdamW with 32-bit states.")


class LionOptions(_BetasOptions):
    name: Literal["lion_8bit", "lion_32bit"] = Field("lion_8bit", description="bitsandbytes' Lion, 8- or 32-bit states.")
    betas: Betas = Field((0.9, 0.99), description="Coefficients of the update's and the momentum's running averages.")


def _adam_arguments(options: Any) -> dict[str, Any]:
    return {"adam_beta1": options.betas[0], "adam_beta2": options.betas[1], "adam_epsilon": options.eps}


def _optim_args(**values: Any) -> str:
    """transformers' ``optim_args`` string ("k=v,k=v"), as its SGD / RMSprop handlers parse it."""
    return ",".join(f"{key}={value}" for key, value in values.items())


def _adamw(o: AdamWOptions) -> Route:
    fused = o.fused if o.name == "adamw" else o.name == "adamw_torch_fused"
    return Route({"optim": "adamw_torch_fused" if fused else "adamw_torch", **_adam_arguments(o)})


def _adam(o: AdamOptions) -> Route:
    return Route({}, ("torch.optim:Adam", {"betas": tuple(o.betas), "eps": o.eps, "amsgrad": o.amsgrad}))


def _sgd(o: SGDOptions) -> Route:
    return Route({"optim": "sgd", "optim_args": _optim_args(momentum=o.momentum, dampening=o.dampening, nesterov=o.nesterov)})


def _adagrad(o: AdagradOptions) -> Route:
    # transformers' adagrad handler has no initial_accumulator_value
    kwargs = {"lr_decay": o.lr_decay, "eps": o.eps, "initial_accumulator_value": o.initial_accumulator_value}
    return Route({}, ("torch.optim:Adagrad", kwargs))


def _rmsprop(o: RMSpropOptions) -> Route:
    args = _optim_args(alpha=o.alpha, eps=o.eps, momentum=o.momentum, centered=o.centered)
    return Route({"optim": "rmsprop", "optim_args": args})


def _adafactor(o: AdafactorOptions) -> Route:
    # transformers' adafactor handler fixes every option but the learning rate
    kwargs = {
        "eps": (o.eps1, o.eps2), "clip_threshold": o.clip_threshold, "decay_rate": o.decay_rate,
        "beta1": o.beta1, "scale_parameter": o.scale_parameter, "relative_step": False, "warmup_init": False,
    }
    return Route({}, ("transformers.optimization:Adafactor", kwargs))


def _bnb_adamw(o: Bnb8bitAdamWOptions) -> Route:
    return Route({"optim": o.name, **_adam_arguments(o)})


def _bnb_adamw_32bit(o: Bnb32bitAdamWOptions) -> Route:
    # transformers knows no unpaged 32-bit bitsandbytes AdamW
    return Route({}, ("bitsandbytes.optim:AdamW32bit", {"betas": tuple(o.betas), "eps": o.eps}))


def _lion(o: LionOptions) -> Route:
    # transformers passes Lion adam_beta1 / adam_beta2
    return Route({"optim": o.name, "adam_beta1": o.betas[0], "adam_beta2": o.betas[1]})


@dataclass(frozen=True)
class OptimizerEntry:
    options: type[OptimizerOptions]
    route: Callable[[Any], Route]


def _table(*entries: OptimizerEntry) -> dict[str, OptimizerEntry]:
    """Each entry under every name its options accept (their ``name`` Literal): one list of names."""
    return {name: entry for entry in entries for name in typing.get_args(entry.options.model_fields["name"].annotation)}


OPTIMIZERS: dict[str, OptimizerEntry] = _table(
    OptimizerEntry(AdamWOptions, _adamw),  # adamw, adamw_torch, adamw_torch_fused
    OptimizerEntry(AdamOptions, _adam),
    OptimizerEntry(SGDOptions, _sgd),
    OptimizerEntry(AdagradOptions, _adagrad),
    OptimizerEntry(RMSpropOptions, _rmsprop),
    OptimizerEntry(AdafactorOptions, _adafactor),
    OptimizerEntry(Bnb8bitAdamWOptions, _bnb_adamw),  # adamw_8bit, adamw_bnb_8bit, paged_adamw_8bit / 32bit
    OptimizerEntry(Bnb32bitAdamWOptions, _bnb_adamw_32bit),
    OptimizerEntry(LionOptions, _lion),  # lion_8bit, lion_32bit
)


def optimizer_route(options: OptimizerOptions) -> Route:
    """The route of a validated ``hyperparams.optimizer``."""
    return OPTIMIZERS[options.name].route(options)
