"""``regime3``: explicit numbered steps, then a blank line and ``Answer: <final answer>``.

    Step 1: 5 + 3 = 8 apples.
    Step 2: 8 - 2 = 6 apples.

    Answer: 6
"""

from __future__ import annotations

import re

from trainer.data.example import Example, RowError
from trainer.profiles.base import AnswerCheck, DataProfile, ProfileOptions


class Regime3Options(ProfileOptions):
    step_prefix: str = "Step"
    answer_prefix: str = "Answer:"


class Regime3Profile(DataProfile):
    name = "regime3"
    Options = Regime3Options
    instruction = (
        "Solve the problem step by step. Write each step on its own line as 'Step N: ...', "
        "then a blank line, then 'Answer: <final answer>'."
    )

    def render_answer(self, example: Example) -> str:
        if example.final_answer is None or not example.final_answer.strip():
            raise RowError("regime3 needs a final answer to state, and this row has none")
        existing = example.messages[-1]["content"] if example.messages else ""
        if self.check_format(existing).format_ok:
            return existing  # already in our format: keep the data's own wording
        steps = [s.strip() for s in (example.reasoning or []) if s.strip()]
        if not steps:
            raise RowError("regime3 needs reasoning steps, and this row has none")
        prefix = self.options.step_prefix
        lines = [f"{prefix} {i}: {' '.join(step.split())}" for i, step in enumerate(steps, start=1)]
        rendered = "\n".join(lines) + f"\n\n{self.options.answer_prefix} {example.final_answer.strip()}"
        verdict = self.check_format(rendered)
        if not verdict.format_ok:  # never train text the profile itself would call malformed
            raise RowError(f"cannot render in regime3's format: {'; '.join(verdict.problems)}")
        return rendered

    def check_format(self, text: str) -> AnswerCheck:
        prefix, answer_prefix = self.options.step_prefix, self.options.answer_prefix
        text = text.rstrip()
        body, sep, tail = text.rpartition("\n\n")
        problems = []
        if not sep:
            problems.append("no blank line before the answer")
            body, tail = text, ""
        answer_line = tail.strip().splitlines()[0] if tail.strip() else ""
        answer = None
        if answer_line.startswith(answer_prefix):
            answer = answer_line[len(answer_prefix) :].strip() or None
        if answer is None:
            problems.append(f"no '{answer_prefix} <final answer>' line at the end")
        if len(tail.strip().splitlines()) > 1:
            problems.append("text after the answer line")
        steps = [line for line in body.splitlines() if line.strip()]
        if not steps:
            problems.append("no steps")
        for number, line in enumerate(steps, start=1):
            if not re.match(rf"{re.escape(prefix)} {number}: \S", line):
                problems.append(f"line {number} is not '{prefix} {number}: ...'")
                break
        return AnswerCheck(not problems, answer, problems=problems)

    def extra_stops(self) -> list[str]:
        # A model that has answered sometimes starts a new problem; cut it there. ("\n\nStep 1:"
        # would be tempting, but emoji_think+regime3 has exactly that after its thinking.)
        return ["\nQuestion:"]
