"""``emoji_think``: think first behind the marker, then answer.

    🤔🤔🤔🤔
    Tom has 5 apples and buys 3: 5 + 3 = 8. He gives 2 away: 8 - 2 = 6.

    6

The thinking is the data's reasoning (empty when the data has none); the answer after the blank
line is the inner profile's rendering (the data's own answer by default, or ``regime3``'s steps
with ``emoji_think+regime3``).
"""

from __future__ import annotations

from trainer.data.example import Example
from trainer.profiles.base import AnswerCheck, DataProfile, PlainAnswer, ProfileOptions


class EmojiThinkOptions(ProfileOptions):
    emoji: str = "🤔"
    count: int = 4


class EmojiThinkProfile(DataProfile):
    name = "emoji_think"
    wraps = True
    Options = EmojiThinkOptions

    def __init__(self, inner: DataProfile | None = None, **options):
        super().__init__(inner=inner or PlainAnswer(), **options)

    @property
    def marker(self) -> str:
        return self.options.emoji * self.options.count

    @property
    def instruction(self) -> str:  # type: ignore[override]
        # Worded like the seed system's instruction, which its users' data and prompts expect.
        words = {1: "once", 2: "two", 3: "three", 4: "four", 5: "five"}
        count = words.get(self.options.count, str(self.options.count))
        return f"For this task, think with {self.options.emoji} /{count}/ times."

    @property
    def full_name(self) -> str:
        return self.name if isinstance(self.inner, PlainAnswer) else super().full_name

    def render_answer(self, example: Example) -> str:
        thinking = " ".join(s.strip() for s in example.reasoning or [] if s.strip())
        answer = self.inner.render_answer(example)
        if isinstance(self.inner, PlainAnswer) and example.final_answer:
            answer = example.final_answer.strip()  # the reasoning is already in the thinking
        if not thinking:  # no reasoning in the data: marker, then the answer
            return f"{self.marker}\n\n{answer}"
        return f"{self.marker}\n{thinking}\n\n{answer}"

    def check_format(self, text: str) -> AnswerCheck:
        stripped = text.lstrip()
        if not stripped.startswith(self.marker) or stripped[len(self.marker) :].startswith(self.options.emoji):
            return AnswerCheck(False, None, problems=[f"does not start with exactly {self.marker}"])
        _, sep, answer_part = stripped[len(self.marker) :].partition("\n\n")
        if not sep or not answer_part.strip():
            return AnswerCheck(False, None, problems=["no answer after the thinking"])
        inner = self.inner.check_format(answer_part)
        return AnswerCheck(inner.format_ok, inner.answer, problems=inner.problems)

    def extra_stops(self) -> list[str]:
        return ["<think>"]
