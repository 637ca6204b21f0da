"""Training methods and their registry.

``get_method("sft")`` looks a name up; ``"package.module:Class"`` imports a custom
:class:`Method`. An unknown name is an error that lists the known ones. A new method is one
module here plus one line in :data:`METHODS`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model, field_validator

from trainer.config.schema import MethodOptions, unknown_name_model, use_options
from trainer.methods.base import Method
from trainer.methods.classify import Classify
from trainer.methods.distill import Distill
from trainer.methods.dpo import DPO
from trainer.methods.grpo import GRPO
from trainer.methods.kto import KTO
from trainer.methods.orpo import ORPO
from trainer.methods.ppo import PPO
from trainer.methods.reward import Reward
from trainer.methods.rloo import RLOO
from trainer.methods.sft import SFT
from trainer.methods.simpo import SimPO

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (SFT, DPO, ORPO, SimPO, KTO, Reward, Classify, GRPO, RLOO, PPO, Distill)}


class UnknownMethodError(ValueError):
    pass


def register_method(cls: type[Method], name: str | None = None) -> type[Method]:
    METHODS[name or cls.name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    """A registered name or ``package.module:Class`` -> the method class."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownMethodError(f"cannot import method {name!r}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise UnknownMethodError(f"{name!r} is not a trainer.methods.Method subclass")
        return cls
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownMethodError(
            f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))} "
            f"(or an import path 'package.module:Class'){hint}"
        )
    return METHODS[name]


def options_model(name: Any) -> type[BaseModel]:
    """The options model that validates ``method: {"name": name, ...}``.

    For a name that is not a method, a model whose ``name`` accepts only what would be valid,
    so the error reads like every other bad choice, with its path (``method.name: ...``).
    """
    if isinstance(name, str):
        try:
            return method_class(name).Options
        except UnknownMethodError as exc:
            if ":" in name:
                return _refusing(str(exc))
    return unknown_name_model("UnknownMethod", tuple(sorted(METHODS)))


def _refusing(message: str) -> type[BaseModel]:
    def refuse(cls, value):
        raise ValueError(message)

    return create_model(
        "UnimportableMethod",
        __config__=ConfigDict(extra="ignore"),
        __validators__={"refuse": field_validator("name")(refuse)},
        name=(str, ...),
    )


use_options("method", options_model)


def get_method(options: MethodOptions) -> Method:
    """The method object for validated ``config.method`` options."""
    return method_class(options.name)(options)


__all__ = ["METHODS", "Method", "UnknownMethodError", "get_method", "method_class", "options_model", "register_method"]
