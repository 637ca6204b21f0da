"""A teacher's log-probabilities of the completion as the reward (seed 004: PPO against a teacher).

The completion is scored token by token under a local causal LM (the teacher) given the prompt
conversation as the student saw it: the prompt's messages (``row["prompt_messages"]``, else one
user turn) rendered by the teacher's chat template with the assistant header after them. The
reward is the mean log-probability per completion token, in nats (``mean_logprob``, range ..0],
0 when the teacher is certain of every token), or its exponential (``probability``: the
geometric-mean token probability, 0..1). It is :class:`Perplexity` under the teacher, conditioned
on the rendered conversation rather than the raw prompt text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.rewards.base import Row
from trainer.rewards.perplexity import Perplexity, PerplexityOptions


class TeacherOptions(PerplexityOptions):
    condition_on_prompt: Literal[True] = Field(True, description="Always: the teacher reads the prompt conversation first.")
    mapping: Literal["mean_logprob", "probability"] = Field(  # type: ignore[assignment]
        "mean_logprob",
        description="mean_logprob: the mean log-probability per completion token, in nats (..0]; probability: its "
        "exponential, the geometric-mean token probability (0..1).",
    )


class Teacher(Perplexity):
    """The teacher's mean token log-probability of the completion given the prompt conversation
    (``mean_logprob``, ..0], or ``probability``, 0..1). An empty completion scores the floor:
    -30 nats, or 0."""

    name = "teacher"
    Options = TeacherOptions
    EXPONENTIAL = "probability"

    def contexts(self, prompts: list[str], rows: list[Row]) -> list[str]:
        tokenizer, _ = self.ensure_loaded()
        return [self.rendered(tokenizer, prompt, row) for prompt, row in zip(prompts, rows)]

    @staticmethod
    def rendered(tokenizer: Any, prompt: str, row: Row) -> str:
        """The prompt as the student answered it: its conversation through the chat template,
        ending in the assistant header (the raw prompt where the tokenizer has no template)."""
        if tokenizer.chat_template is None:
            return prompt
        messages = list(row.get("prompt_messages") or [{"role": "user", "content": prompt}])
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
