"""Post-processors: what a reward node's ``"post": [...]`` does to its values, in order.

Rewards come on different scales (BLEU 0..1, a reward model's logit anywhere); post-processing
puts them on one before they are weighted. Each processor sees a whole batch, so
``ema_normalize`` can track statistics across calls and ``normalize`` within one. ``None``
("does not apply") passes through every processor untouched and is left out of statistics.

The seed system spelled these ``"postprocess"`` with clip's ``min`` / ``max`` and scale's
``mul`` / ``add``; those spellings are accepted too (``lo`` / ``hi`` for clip, as in DESIGN.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, model_validator

from trainer.rewards.base import RewardOptions

Values = list[float | None]


class PostProcessor:
    """Base: ``name``, ``Options`` and :meth:`apply` on a batch of values."""

    name: ClassVar[str]
    Options: ClassVar[type[RewardOptions]] = RewardOptions

    def __init__(self, options: RewardOptions):
        self.options = options

    def apply(self, values: Values) -> Values:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def _each(values: Values, fn) -> Values:
    return [None if v is None else fn(v) for v in values]


class ClipOptions(RewardOptions):
    aliases: ClassVar[dict[str, str]] = {"lo": "min", "hi": "max"}
    min: float | None = Field(0.0, description="Lower bound (null: none). Seed name: lo.")
    max: float | None = Field(1.0, description="Upper bound (null: none). Seed name: hi.")

    @model_validator(mode="after")
    def _ordered(self) -> ClipOptions:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Clip(PostProcessor):
    """``min(max(x, min), max)``; defaults 0 and 1, as the seed's Clip."""

    name = "clip"
    Options = ClipOptions

    def apply(self, values: Values) -> Values:
        lo = -math.inf if self.options.min is None else self.options.min
        hi = math.inf if self.options.max is None else self.options.max
        return _each(values, lambda v: min(max(v, lo), hi))


class ScaleOptions(RewardOptions):
    aliases: ClassVar[dict[str, str]] = {"mul": "factor", "add": "shift"}
    factor: float = Field(1.0, description="Multiplier. Seed name: mul.")
    shift: float = Field(0.0, description="Added after multiplying. Seed name: add.")


class Scale(PostProcessor):
    """``factor * x + shift``."""

    name = "scale"
    Options = ScaleOptions

    def apply(self, values: Values) -> Values:
        return _each(values, lambda v: self.options.factor * v + self.options.shift)


class EmaOptions(RewardOptions):
    decay: float = Field(0.99, gt=0, lt=1, description="Weight of the past in each update (0.99: about 100 calls of memory).")
    eps: float = Field(1e-8, gt=0, description="Added to the variance before the square root.")


class EmaNormalize(PostProcessor):
    """Standardises with exponential moving averages of mean and variance, kept across calls.

    The seed system's EMANormalize, one batch at a time (with a batch of one it is exactly the
    seed's update). The first call sets the mean to that batch's mean and the variance to 1; then
    every call, over the values that apply:

        mean <- decay * mean + (1 - decay) * batch_mean
        var  <- decay * var  + (1 - decay) * mean_over_batch((x - mean)^2)     (the new mean)
        out   = (x - mean) / sqrt(var + eps)

    The state (``state_dict``) is the running mean and variance, so a resumed run can go on.
    """

    name = "ema_normalize"
    Options = EmaOptions

    def __init__(self, options: RewardOptions):
        super().__init__(options)
        self.mean: float | None = None
        self.var = 1.0

    def apply(self, values: Values) -> Values:
        present = [v for v in values if v is not None]
        if not present:
            return list(values)
        d = self.options.decay
        batch_mean = sum(present) / len(present)
        if self.mean is None:
            self.mean, self.var = batch_mean, 1.0
        self.mean = d * self.mean + (1 - d) * batch_mean
        spread = sum((v - self.mean) ** 2 for v in present) / len(present)
        self.var = d * self.var + (1 - d) * spread
        scale = math.sqrt(self.var + self.options.eps)
        return _each(values, lambda v: (v - self.mean) / scale)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean, self.var = state["mean"], state["var"]


class NormalizeOptions(RewardOptions):
    eps: float = Field(1e-8, gt=0, description="Added to the standard deviation.")


class Normalize(PostProcessor):
    """Standardises within the batch: ``(x - batch_mean) / (batch_std + eps)`` (population std,
    over the values that apply). A batch whose values are all equal becomes all 0. No state."""

    name = "normalize"
    Options = NormalizeOptions

    def apply(self, values: Values) -> Values:
        present = [v for v in values if v is not None]
        if not present:
            return list(values)
        mean = sum(present) / len(present)
        std = math.sqrt(sum((v - mean) ** 2 for v in present) / len(present))
        return _each(values, lambda v: (v - mean) / (std + self.options.eps))


POSTPROCESSORS: dict[str, type[PostProcessor]] = {cls.name: cls for cls in (Clip, Scale, EmaNormalize, Normalize)}
