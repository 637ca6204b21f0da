"""A data profile: how the model should answer, as one unit.

A profile renders a canonical :class:`~trainer.data.example.Example` into chat messages in its
answer format, names the stop sequences and generation penalties that end and guard that format at
inference, and judges whether a generated answer follows the format (and is right). Previews,
evaluation and, later, RL rewards all use the same check, so "format ok" means one thing.

Profiles compose: a *wrapping* profile (``emoji_think``) puts its own part before an inner
profile's answer, so ``emoji_think+regime3`` thinks first and then answers in steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from trainer.data.example import Example, RowError

# Stops that can only appear after any profile's format has ended: a new chat turn starting, the
# tokenizer's end-of-text, or a run of blank lines that no profile format contains. EOS itself is
# handled by the generation config, not by string matching.
BASE_STOP_SEQUENCES = ("<|im_start|>", "<|endoftext|>", "\n\n\n")

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class PenaltySpec:
    """A generation penalty a profile wants: lower these strings' token logits by ``penalty``."""

    strings: tuple[str, ...]
    penalty: float


@dataclass
class AnswerCheck:
    """The verdict on one generated answer.

    Attributes:
        format_ok: the text follows the profile's format.
        answer: the final answer extracted from the text, if any.
        correct: the answer equals the expected one (None when nothing was expected).
        problems: why the format is not followed, in plain words.
    """

    format_ok: bool
    answer: str | None
    correct: bool | None = None
    problems: list[str] = field(default_factory=list)


def normalize_answer(text: str) -> str:
    """Canonical form for comparing answers: numbers without commas or trailing zeros."""
    text = text.strip().strip(".").strip()
    number = text.replace(",", "").replace("$", "")
    try:
        value = float(number)
    except ValueError:
        return " ".join(text.lower().split())
    return str(int(value)) if value.is_integer() else repr(value)


def answers_match(answer: str | None, expected: str | None) -> bool | None:
    """Equal after normalizing; a numeric expected answer is compared with the last number in
    the given one, so "6 apples" matches "6"."""
    if expected is None:
        return None
    if answer is None:
        return False
    if normalize_answer(answer) == normalize_answer(expected):
        return True
    found = last_number(answer)
    return found is not None and last_number(expected) == expected.strip().replace(",", "") and (
        normalize_answer(found) == normalize_answer(expected)
    )


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


class ProfileOptions(BaseModel):
    """Options of a profile; subclasses add fields. Unknown options are errors."""

    model_config = ConfigDict(extra="forbid")


class DataProfile:
    """Base class: the seed interface plus format checking and generation penalties.

    Subclasses set ``name``, ``Options`` and implement :meth:`render_answer` and
    :meth:`check_format`. A wrapping profile sets ``wraps = True`` and gets ``inner``.
    """

    name: ClassVar[str] = "base"
    wraps: ClassVar[bool] = False
    Options: ClassVar[type[ProfileOptions]] = ProfileOptions
    instruction: ClassVar[str] = ""

    def __init__(self, inner: DataProfile | None = None, **options: Any):
        if inner is not None and not self.wraps:
            raise ValueError(f"profile {self.name!r} cannot wrap another profile")
        try:
            self.options = self.Options(**options)
        except ValidationError as exc:
            bad = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            known = ", ".join(self.Options.model_fields) or "none"
            raise ValueError(f"profile {self.name!r}: bad options {bad} (known: {known})") from None
        self.inner = inner

    # --- the seed interface ---------------------------------------------------------------

    def format_system_prompt(self, base_prompt: str) -> str:
        """The system prompt with this profile's instruction (and its inner profile's) added."""
        parts = [base_prompt.strip(), self.instruction]
        if self.inner is not None:
            parts.append(self.inner.format_system_prompt("").strip())
        return "\n\n".join(p for p in parts if p)

    def prepare_messages(self, example: Example, base_prompt: str = "") -> list[dict[str, str]]:
        """Chat messages to train on: our system prompt, the turns, the answer in our format.

        Raises:
            RowError: the example cannot be rendered in this format (e.g. no final answer).
        """
        turns = [dict(m) for m in example.messages]
        data_system = turns.pop(0)["content"] if turns and turns[0]["role"] == "system" else ""
        system = self.format_system_prompt(data_system or base_prompt)
        if not turns or turns[-1]["role"] != "assistant":
            raise RowError("no assistant turn to render")
        turns[-1] = {"role": "assistant", "content": self.render_answer(example)}
        return ([{"role": "system", "content": system}] if system else []) + turns

    def get_stop_sequences(self) -> list[str]:
        """Strings that end generation: only ones this format can never contain."""
        stops = list(BASE_STOP_SEQUENCES) + self.extra_stops()
        if self.inner is not None:
            stops += self.inner.get_stop_sequences()
        return list(dict.fromkeys(stops))

    # --- what makes a profile a whole unit ------------------------------------------------

    def render_answer(self, example: Example) -> str:
        raise NotImplementedError

    def check_format(self, text: str) -> AnswerCheck:
        """Format verdict and extracted answer for ``text`` (``correct`` left unset)."""
        raise NotImplementedError

    def check_answer(self, text: str, expected: str | None = None) -> AnswerCheck:
        """Does ``text`` follow the format, and does its final answer equal ``expected``?"""
        verdict = self.check_format(text)
        verdict.correct = answers_match(verdict.answer, expected)
        return verdict

    def extra_stops(self) -> list[str]:
        return []

    def generation_penalties(self) -> list[PenaltySpec]:
        """Penalties for ``core.logit_penalty``; stock Qwen3 ``<think>`` tags compete with
        every profile that brings its own format, so all profiles push them down."""
        specs = [PenaltySpec(("<think>", "</think>"), penalty=100.0)]
        if self.inner is not None:
            specs += [s for s in self.inner.generation_penalties() if s not in specs]
        return specs

    @property
    def full_name(self) -> str:
        return self.name if self.inner is None else f"{self.name}+{self.inner.full_name}"


class PlainAnswer(DataProfile):
    """The answer as the data gives it; the inner default of wrapping profiles."""

    name = "plain"

    def render_answer(self, example: Example) -> str:
        content = example.messages[-1]["content"] if example.messages else ""
        if not content.strip():
            raise RowError("empty assistant turn")
        return content

    def check_format(self, text: str) -> AnswerCheck:
        stripped = text.strip()
        problems = [] if stripped else ["empty answer"]
        return AnswerCheck(bool(stripped), last_number(stripped) or stripped or None, problems=problems)
