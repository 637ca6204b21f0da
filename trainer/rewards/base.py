"""The reward contract: one class per reward, typed options, scored per example, called per batch.

A reward scores one generated answer: ``(prompt, completion, reference, row) -> float``. RL
trainers score a whole batch of generations at once, and model-based rewards are only fast when
they batch, so the public call is :meth:`Reward.score` over lists; a simple reward implements
:meth:`Reward.score_one` and inherits the loop.

``None`` is a reward's "does not apply": a reward that compares with a reference gives ``None``
for an example that has none (TRL reads ``None`` as NaN, leaves it out of the means it logs and
of the weighted sum). Anything else that is not a finite number is an error naming the reward
and the example: a NaN reward would reach the advantages silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:
    from trainer.profiles.base import DataProfile

Row = Mapping[str, Any]


class RewardError(ValueError):
    """A reward could not score an example (a bad value from a user's function, a broken model)."""


@dataclass
class RewardContext:
    """What rewards need from the job, handed over explicitly (no global state).

    Attributes:
        profile: the data profile; ``format``, ``answer`` and ``profile`` rewards judge with it.
        device: where model-based rewards run ("cpu", "cuda", "cuda:1").
        batch_size: examples per forward pass of a model-based reward.
        reference_column: the dataset column holding the reference answer, read by the TRL
            adapter (``trainer.rewards.trl_adapter``) from the columns TRL passes as kwargs.
    """

    profile: DataProfile | None = None
    device: str = "cpu"
    batch_size: int = 16
    reference_column: str = "reference"


@dataclass(frozen=True)
class Requirement:
    """A package a reward imports: ``module`` is checked with ``importlib.util.find_spec``
    (nothing imported), ``pip`` is what to install."""

    module: str
    pip: str


class RewardOptions(BaseModel):
    """Options of a reward; subclasses add fields. Unknown keys are errors.

    ``aliases`` maps another accepted spelling to a field (the seed system's names, e.g. clip's
    ``lo`` for ``min``); giving both spellings is an error, not a silent pick.
    """

    model_config = ConfigDict(extra="forbid")
    aliases: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _spelled_two_ways(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls.aliases:
            return data
        data = dict(data)
        for alias, field in cls.aliases.items():
            if alias in data:
                if field in data:
                    raise ValueError(f"{field} and {alias} are the same option; give one")
                data[field] = data.pop(alias)
        return data


class Reward:
    """Base of every reward. Subclasses set ``name``, ``Options`` and implement
    :meth:`score_one`, or :meth:`score_many` when they batch (model-based rewards).

    Class attributes read before anything is built (``reward_problems``):
        needs_reference: the reward compares with a reference; examples without one get None.
        needs_profile: the reward judges with ``context.profile``.
        requires: packages the reward imports, checked without importing them.
        model_option: the option naming a local model folder (checked: exists, has config.json).
    """

    name: ClassVar[str]
    Options: ClassVar[type[RewardOptions]] = RewardOptions
    needs_reference: ClassVar[bool] = False
    needs_profile: ClassVar[bool] = False
    requires: ClassVar[tuple[Requirement, ...]] = ()
    model_option: ClassVar[str | None] = None

    def __init__(self, options: RewardOptions, context: RewardContext):
        self.options = options
        self.context = context

    @classmethod
    def check(cls, options: RewardOptions) -> list[str]:
        """Problems with ``options`` that the option types cannot say (a label the model does
        not have), each "<option>: <sentence>"; read from files only, never a model load."""
        return []

    # --- scoring ----------------------------------------------------------------------------

    def score(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[str | None] | None = None,
        rows: Sequence[Row] | None = None,
    ) -> list[float | None]:
        """One reward per completion, in order (None where the reward does not apply).

        Raises:
            RewardError: the lists differ in length, or the reward gave a value that is not a
                finite number.
        """
        n = len(completions)
        references = list(references) if references is not None else [None] * n
        rows = list(rows) if rows is not None else [{} for _ in range(n)]
        if not (len(prompts) == len(references) == len(rows) == n):
            raise RewardError(
                f"{self.name}: {len(prompts)} prompts, {n} completions, {len(references)} references "
                f"and {len(rows)} rows; one of each per example"
            )
        todo = [i for i in range(n) if references[i] is not None or not self.needs_reference]
        out: list[float | None] = [None] * n
        if todo:
            values = self.score_many(
                [prompts[i] for i in todo],
                [completions[i] for i in todo],
                [references[i] for i in todo],
                [rows[i] for i in todo],
            )
            for i, value in zip(todo, values, strict=True):
                out[i] = as_reward(value, f"{self.name} (example {i})")
        return out

    def score_many(
        self,
        prompts: list[str],
        completions: list[str],
        references: list[str | None],
        rows: list[Row],
    ) -> list[Any]:
        """Score examples that all apply (a reference each when ``needs_reference``)."""
        return [self.score_one(p, c, r, row) for p, c, r, row in zip(prompts, completions, references, rows)]

    def score_one(self, prompt: str, completion: str, reference: str | None, row: Row) -> float | None:
        raise NotImplementedError

    # --- state (post-processors keep some; plain rewards keep none) -------------------------

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def as_reward(value: Any, who: str) -> float | None:
    """``value`` as a reward: a finite float, or None ("does not apply").

    Raises:
        RewardError: anything else, naming ``who`` gave it.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RewardError(f"{who} gave {value!r} ({type(value).__name__}); a reward is a number or None") from None
    if not math.isfinite(number):
        raise RewardError(f"{who} gave {number}; a reward must be finite (None means 'does not apply')")
    return number


def describe(value: Any) -> str:
    """``'x' (str)``: a value as the config errors show it."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
