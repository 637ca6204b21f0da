"""Trainer callbacks by name (``callbacks: [...]`` in the config), and their registry.

Each entry is a name or ``{"name": ..., options}``, validated against that callback's own typed
options as methods and optimizers are; ``"package.module:Class"`` is your own transformers
``TrainerCallback``, built with ``options`` as its keyword arguments. They join every stage's
trainer after the engine's own callbacks. A new callback is one module here plus one entry in
:data:`CALLBACKS`.

- ``bema`` (TRL's BEMACallback): an averaged model in ``<run>/bema``;
- ``log_completions``: answers to the held-out prompts as a table in the trackers;
- ``merge_adapter``: a merged full model in each LoRA checkpoint;
- ``rich_progress`` (TRL's RichProgressCallback) instead of the console lines;
- ``sync_ref_model``: the reference moves towards the policy (TR-DPO), for every method with one;
- ``win_rate``: the same as ``inference.win_rate_every_steps`` with ``inference.judge``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pydantic import BaseModel, Field

from trainer.callbacks.base import CallbackJob, NamedCallback
from trainer.callbacks.bema import BEMA
from trainer.callbacks.log_completions import LogCompletions
from trainer.callbacks.merge_adapter import MergeAdapter
from trainer.callbacks.rich_progress import RichProgress
from trainer.callbacks.sync_ref_model import SyncRefModel
from trainer.callbacks.win_rate import WinRate
from trainer.config.schema import CallbackOptions, registry_options, use_options

CALLBACKS: dict[str, type[NamedCallback]] = {
    cls.name: cls for cls in (BEMA, LogCompletions, MergeAdapter, RichProgress, SyncRefModel, WinRate)
}


class CustomCallbackOptions(CallbackOptions):
    name: str = Field(..., pattern=r"^[\w.]+:\w+$", description="'package.module:Class', a transformers TrainerCallback.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the class.")


class Custom(NamedCallback):
    """A user's own ``TrainerCallback`` by import path."""

    name = "package.module:Class"
    Options = CustomCallbackOptions

    @classmethod
    def load(cls, options: CustomCallbackOptions) -> type:
        module_name, _, attr = options.name.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import {options.name!r}: {exc}") from None
        from transformers import TrainerCallback

        if not (isinstance(found, type) and issubclass(found, TrainerCallback)):
            raise ValueError(f"{options.name!r} is not a transformers TrainerCallback subclass")
        try:
            inspect.signature(found).bind(**options.options)
        except TypeError as exc:
            raise ValueError(f"{options.name!r} does not take these options: {exc}") from None
        return found

    @classmethod
    def check(cls, config: Any, options: CustomCallbackOptions, key: str) -> list[str]:
        try:
            cls.load(options)
        except ValueError as exc:
            return [f"{key}: {exc}"]
        return []

    @classmethod
    def build(cls, job: CallbackJob, options: CustomCallbackOptions) -> Any:
        return cls.load(options)(**options.options)


_named = registry_options(CALLBACKS, "UnknownCallback", lambda cls: cls.Options)


def options_model(name: Any) -> type[BaseModel]:
    """The options model of ``callbacks: [{"name": name, ...}]``: an import path is a custom one."""
    if isinstance(name, str) and ":" in name:
        return CustomCallbackOptions
    return _named(name)


use_options("callback", options_model)


def callback_class(options: CallbackOptions) -> type[NamedCallback]:
    return Custom if isinstance(options, CustomCallbackOptions) else CALLBACKS[options.name]


def callback_problems(config: Any) -> list[str]:
    """What each configured callback cannot run with, keyed ``callbacks[i]`` (light: a custom
    class is imported, nothing is built)."""
    problems = []
    for index, options in enumerate(config.callbacks):
        problems += callback_class(options).check(config, options, f"callbacks[{index}]")
    return problems


def build_callbacks(job: CallbackJob, specs: list[CallbackOptions]) -> list[Any]:
    """The TrainerCallbacks of ``specs`` for one stage's trainer (entries that stand for engine
    settings build none)."""
    built = (callback_class(options).build(job, options) for options in specs)
    return [callback for callback in built if callback is not None]


__all__ = ["CALLBACKS", "CallbackJob", "NamedCallback", "build_callbacks", "callback_problems"]
