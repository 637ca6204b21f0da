"""``win_rate``: the win rate of the model's answers over the starting model's, judged every
``every_steps`` steps. The same thing as ``inference.win_rate_every_steps`` and
``inference.judge``, which it sets (one source of truth: the engine's win-rate tracker,
``trainer.monitoring.win_rate``, does the work). TRL 1.16 no longer ships a WinRateCallback."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator

from trainer.callbacks.base import CallbackJob, NamedCallback
from trainer.config.schema import CallbackOptions, JudgeOptions, named_options


class WinRateOptions(CallbackOptions):
    name: Literal["win_rate"] = Field("win_rate", description="The win rate over the starting model (inference.win_rate_every_steps).")
    every_steps: int = Field(50, ge=1, description="Judge every this many steps (and at the end).")
    judge: SerializeAsAny[JudgeOptions] = Field(default_factory=JudgeOptions, validate_default=True, description="The judge (trainer.judges).")

    _judge = field_validator("judge", mode="wrap")(named_options("judge", JudgeOptions))

    def settle(self, config: Any) -> None:
        inference = config.inference
        if inference.win_rate_every_steps not in (0, self.every_steps):
            raise ValueError(f"win_rate every_steps {self.every_steps} and inference.win_rate_every_steps "
                             f"{inference.win_rate_every_steps} disagree; give one of them")
        default_judge = type(inference).model_fields["judge"].default_factory()
        if inference.win_rate_every_steps and inference.judge.model_dump() not in (default_judge.model_dump(), self.judge.model_dump()):
            raise ValueError("win_rate judge and inference.judge disagree; give one of them")
        inference.win_rate_every_steps = self.every_steps
        inference.judge = self.judge


class WinRate(NamedCallback):
    name = "win_rate"
    Options = WinRateOptions

    @classmethod
    def build(cls, job: CallbackJob, options: Any) -> Any:
        return None  # settled into inference.*: trainer.core.training adds the WinRateCallback
