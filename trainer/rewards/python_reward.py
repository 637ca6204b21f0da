"""The escape hatch: ``{"type": "python:package.module:function"}`` scores with your own function.

The function is called once per example as ``function(prompt, completion, reference, row,
**options)`` and returns a number (or None: does not apply); ``options`` is the node's
``"options": {...}``. For a batched reward with state of its own, subclass
:class:`trainer.rewards.Reward` and ``register_reward`` it instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pydantic import Field

from trainer.rewards.base import Reward, RewardContext, RewardOptions, Row

PREFIX = "python:"


class PythonRewardOptions(RewardOptions):
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the function.")


def import_function(type_name: str) -> Callable[..., Any]:
    """``python:package.module:function`` -> the function.

    Raises:
        ValueError: the name is malformed, the module cannot be imported (the reason says why),
            it has no such attribute, or the attribute is not callable.
    """
    target = type_name.removeprefix(PREFIX)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'python:package.module:function'; got {type_name!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: say what broke, not our traceback
        raise ValueError(f"cannot import {module_name!r} for reward {type_name!r}: {type(exc).__name__}: {exc}") from None
    function = getattr(module, attr, None)
    if function is None:
        raise ValueError(f"module {module_name!r} has no {attr!r} (reward {type_name!r})")
    if not callable(function):
        raise ValueError(f"{type_name!r} is not callable")
    return function


class PythonReward(Reward):
    """A user's function ``(prompt, completion, reference, row, **options) -> float | None``.
    The reference may be None; what that means is the function's to say."""

    name = "python"
    Options = PythonRewardOptions

    def __init__(self, options: PythonRewardOptions, context: RewardContext, type_name: str):
        super().__init__(options, context)
        self.type_name = type_name
        self.name = type_name
        self.function = import_function(type_name)

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> Any:
        return self.function(prompt, completion, reference, row, **self.options.options)
