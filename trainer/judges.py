"""Judges (seed 002): which of two answers to a prompt is the better (pairwise), and whether an
answer is good (binary); and the win rate of one model's answers over another's.

TRL 1.16 no longer ships judges nor its ``WinRateCallback`` (they were removed from
``trl.experimental``), so these are ours. A judge is built on the reward factory
(``trainer.rewards``): it scores each answer with a reward and prefers the higher score, so any
offline reward can judge. Registered judges (``{"name": ..., options}`` in the config, as methods
and optimizers are):

- ``profile``: the profile's own checks: of two answers, the one with the higher default reward
  (format 0.3 + answer 0.7) wins; an answer is good (binary) when it follows the format and,
  where the right answer is known, gives it;
- ``reward_model``: a local folder trained by ``method: reward`` scores prompt + answer; good when
  its score passes ``threshold``;
- ``always``: prefers the first answer, and calls every answer good: a judge that always agrees,
  for tests and for wiring a pipeline.

Light to import: pydantic only; a judge's reward loads its model on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from trainer.config.schema import JudgeOptions, PathText, registry_options, use_options

Row = dict[str, Any]


class ProfileJudgeOptions(JudgeOptions):
    name: Literal["profile"] = Field("profile", description="The profile's checks: format, and the right answer where known.")


class RewardModelJudgeOptions(JudgeOptions):
    name: Literal["reward_model"] = Field("reward_model", description="A local reward model (method: reward) scores each answer.")
    model_path: PathText = Field(..., description="The reward model's folder.")
    threshold: float = Field(0.0, description="Binary judging: an answer is good when its score is above this.")


class AlwaysJudgeOptions(JudgeOptions):
    name: Literal["always"] = Field("always", description="Prefers the first answer and calls every answer good (tests).")


class Judge:
    """Base of every judge: ``pairwise`` and ``binary`` over a batch."""

    name: ClassVar[str]
    Options: ClassVar[type[JudgeOptions]]

    def __init__(self, options: JudgeOptions, profile: Any = None, device: str = "cpu"):
        self.options = options
        self.profile = profile
        self.device = device

    def pairwise(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str],
                 references: Sequence[str | None] | None = None, rows: Sequence[Row] | None = None) -> list[float]:
        """Per prompt: 1.0 when the first answer is the better, 0.0 when the second is, 0.5 for a tie."""
        raise NotImplementedError

    def binary(self, prompts: Sequence[str], answers: Sequence[str],
               references: Sequence[str | None] | None = None, rows: Sequence[Row] | None = None) -> list[bool]:
        """Per prompt: whether the answer is good."""
        raise NotImplementedError


class RewardJudge(Judge):
    """Scores answers with a reward spec (``spec``); the higher score wins, equal scores tie, an
    answer the reward does not apply to loses to one it does."""

    threshold: float = 0.0

    def spec(self) -> Any:
        raise NotImplementedError

    def scores(self, prompts: Sequence[str], answers: Sequence[str], references: Any, rows: Any) -> list[float | None]:
        from trainer.rewards import RewardContext, build_reward

        if not hasattr(self, "_node"):
            self._node = build_reward(self.spec(), RewardContext(profile=self.profile, device=self.device), key="judge")
        return self._node.score(list(prompts), list(answers), list(references) if references is not None else None,
                                list(rows) if rows is not None else None)

    def pairwise(self, prompts, first, second, references=None, rows=None):
        a = self.scores(prompts, first, references, rows)
        b = self.scores(prompts, second, references, rows)
        return [_preference(x, y) for x, y in zip(a, b)]

    def binary(self, prompts, answers, references=None, rows=None):
        return [score is not None and score > self.threshold for score in self.scores(prompts, answers, references, rows)]


def _preference(a: float | None, b: float | None) -> float:
    if a is None and b is None:
        return 0.5
    if a is None or b is None:
        return 0.0 if a is None else 1.0
    return 1.0 if a > b else 0.0 if a < b else 0.5


class ProfileJudge(RewardJudge):
    """Pairwise: the profile's default reward decides (a right answer beats a wrong one, an answer
    in the format beats one out of it). Binary: the profile's checks, as previews count them."""

    name = "profile"
    Options = ProfileJudgeOptions

    def spec(self) -> Any:
        return {"type": "profile"}

    def binary(self, prompts, answers, references=None, rows=None):
        rows = list(rows) if rows is not None else [{} for _ in answers]
        out = []
        for answer, row in zip(answers, rows):
            expected = row.get("expected")
            verdict = self.profile.check_answer(answer, str(expected)) if expected is not None else None
            out.append(bool(verdict.format_ok and verdict.correct) if verdict is not None else self.profile.check_format(answer).format_ok)
        return out


class RewardModelJudge(RewardJudge):
    name = "reward_model"
    Options = RewardModelJudgeOptions

    @property
    def threshold(self) -> float:  # type: ignore[override]
        return self.options.threshold  # type: ignore[attr-defined]

    def spec(self) -> Any:
        return {"type": "reward_model", "model_path": self.options.model_path}  # type: ignore[attr-defined]


class AlwaysJudge(Judge):
    name = "always"
    Options = AlwaysJudgeOptions

    def pairwise(self, prompts, first, second, references=None, rows=None):
        return [1.0] * len(first)

    def binary(self, prompts, answers, references=None, rows=None):
        return [True] * len(answers)


JUDGES: dict[str, type[Judge]] = {cls.name: cls for cls in (ProfileJudge, RewardModelJudge, AlwaysJudge)}


def register_judge(cls: type[Judge], name: str | None = None) -> type[Judge]:
    JUDGES[name or cls.name] = cls
    return cls


use_options("judge", registry_options(JUDGES, "UnknownJudge", lambda cls: cls.Options))


def build_judge(options: JudgeOptions, profile: Any = None, device: str = "cpu") -> Judge:
    """The judge that validated ``options`` (``inference.judge``) names; the schema has refused
    any other name."""
    return JUDGES[options.name](options, profile, device)


def judge_problems(options: JudgeOptions, key: str) -> list[str]:
    """What --validate says about a judge: the problems of its reward spec (a model folder that is
    not there), read from the file system."""
    from trainer.rewards import reward_problems

    judge = build_judge(options)
    return reward_problems(judge.spec(), key) if isinstance(judge, RewardJudge) else []


def win_rate(judge: Judge, probes: Sequence[Any], answers: Sequence[str], others: Sequence[str]) -> WinRate:
    """How often ``judge`` prefers ``answers`` to ``others``, the answers to the same ``probes``."""
    prompts, references, rows = judged_inputs(probes)
    return WinRate.of(judge.pairwise(prompts, answers, others, references, rows))


def judged_inputs(probes: Sequence[Any]) -> tuple[list[str], list[str | None], list[dict[str, Any]]]:
    """What a reward or judge reads of the probes: the prompts (the last user turn), the reference
    answers (a fixed probe prompt has none) and the rows (the right answer, the conversation)."""
    prompts = [p.messages[-1]["content"] for p in probes]
    references = [p.reference or None for p in probes]
    rows = [{"expected": p.golden, "prompt_messages": p.messages, "source": p.source} for p in probes]
    return prompts, references, rows


@dataclass
class WinRate:
    """How often answers A beat answers B under a judge: ``(wins + ties / 2) / n``."""

    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate(self) -> float | None:
        return (self.wins + self.ties / 2) / self.n if self.n else None

    @classmethod
    def of(cls, preferences: Sequence[float]) -> WinRate:
        return cls(sum(p == 1.0 for p in preferences), sum(p == 0.5 for p in preferences), sum(p == 0.0 for p in preferences))
