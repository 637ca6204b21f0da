"""Preference pairs (dpo, orpo, simpo, reward): a prompt, a chosen answer and a rejected one.

Accepted row shapes (one converter each; ``registry`` detects which):

- ``sharegpt``: LLaMA-Factory's ranking rows, ``conversations`` (``{from, value}`` turns ending
  with the human's) plus ``chosen`` and ``rejected`` ``{from: gpt, value}`` objects, and an
  optional ``system`` column or leading system turn.
- ``messages``: the same with OpenAI ``{role, content}`` turns under ``messages``.
- ``prompt_chosen_rejected``: TRL's explicit-prompt rows, standard (strings) or conversational
  (``prompt`` a message list, ``chosen`` / ``rejected`` lists of one assistant message); also
  TRL's mixed form of a string prompt beside full chosen / rejected transcripts.
- ``chosen_rejected``: TRL's implicit-prompt rows, full chosen and rejected transcripts whose
  shared start is the prompt (what ``trl.data_utils.extract_prompt`` does, turn by turn).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainer.data.example import RowError
from trainer.data.formats import convert_sharegpt
from trainer.data.shapes._fields import (
    answer_of,
    answer_turn,
    check_prompt,
    context_turns,
    field,
    parse_turns,
    prompt_of,
    same_answer,
    turn,
    type_name,
    with_system,
)


@dataclass
class PreferencePair:
    """One preference: for this prompt, ``chosen`` is the better answer and ``rejected`` the worse.

    Attributes:
        prompt: chat turns ``{"role", "content"}``, a system turn at most first, ending with the
            user's turn.
        chosen: the better answer's text, as the data gives it.
        rejected: the worse answer's text, as the data gives it.
        source: ``"<file>:<line>"``, set by the caller as for ``Example``.
        chosen_reasoning: reasoning steps the chosen answer carried apart from its text
            (LLaMA-Factory ``{type: reasoning}`` content parts); profiles render them as thinking.
    """

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    source: str = ""
    chosen_reasoning: list[str] | None = None

    def to_trl(self) -> dict[str, Any]:
        """TRL's conversational explicit-prompt row, as ``DPOTrainer`` and ``RewardTrainer`` take."""
        return {
            "prompt": [dict(message) for message in self.prompt],
            "chosen": [turn("assistant", self.chosen)],
            "rejected": [turn("assistant", self.rejected)],
        }


def make_pair(
    prompt: list[dict[str, str]],
    chosen: tuple[str, list[str] | None],
    rejected: tuple[str, list[str] | None],
) -> PreferencePair:
    """The pair, once every shape's common rules hold.

    Raises:
        RowError: a bad prompt (see ``check_prompt``), an empty answer, reasoning parts on the
            rejected answer, or two answers that are the same.
    """
    check_prompt(prompt)
    (chosen_text, reasoning), (rejected_text, rejected_reasoning) = chosen, rejected
    for name, text in (("chosen", chosen_text), ("rejected", rejected_text)):
        if not text.strip():
            raise RowError(f"empty {name} answer")
    if rejected_reasoning:
        # A rejected answer is kept verbatim (see render.render_pair): its text is all there is.
        raise RowError("the rejected answer has reasoning parts; put its reasoning in its text")
    if same_answer(chosen_text, rejected_text) and not reasoning:
        raise RowError("chosen and rejected are the same answer")
    return PreferencePair(prompt, chosen_text, rejected_text, chosen_reasoning=reasoning)


def _answers(row: Mapping[str, Any]) -> tuple[tuple[str, list[str] | None], ...]:
    return answer_of(field(row, "chosen"), "chosen"), answer_of(field(row, "rejected"), "rejected")


def convert_sharegpt_pair(row: Mapping[str, Any]) -> PreferencePair:
    # The prompt turns are read exactly as an SFT ShareGPT row's are, system column included.
    prompt = convert_sharegpt({"conversations": field(row, "conversations"), "system": row.get("system")})
    return make_pair(prompt.messages, *_answers(row))


def convert_messages_pair(row: Mapping[str, Any]) -> PreferencePair:
    turns = field(row, "messages")
    if not isinstance(turns, list):
        raise RowError(f"field 'messages' must be a list, got {type_name(turns)}")
    return make_pair(with_system(row, prompt_of(turns, "messages")), *_answers(row))


def convert_prompt_pair(row: Mapping[str, Any]) -> PreferencePair:
    prompt, chosen, rejected = field(row, "prompt"), field(row, "chosen"), field(row, "rejected")
    if isinstance(prompt, str) and _is_transcript(chosen) and _is_transcript(rejected):
        # TRL's maybe_extract_prompt reads this mixed form as transcripts and drops the prompt
        # column; dropping it unchecked would hide a prompt that says something else.
        pair = convert_implicit_pair(row)
        if prompt.strip() != pair.prompt[-1]["content"].strip():
            raise RowError(
                "field 'prompt' is not the last user turn the chosen and rejected transcripts "
                "share; give only answers in 'chosen' / 'rejected', or leave out 'prompt'"
            )
        return pair
    return make_pair(with_system(row, prompt_of(prompt, "prompt")), *_answers(row))


def _is_transcript(value: Any) -> bool:
    """A message list that starts before the answer (a full conversation, not just the answer)."""
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], dict)
        and value[0].get("role") not in (None, "assistant")
    )


def convert_implicit_pair(row: Mapping[str, Any]) -> PreferencePair:
    """Full chosen / rejected transcripts: their longest shared start of whole turns is the prompt,
    and each must go on with exactly one assistant answer.

    Strings with no prompt column are refused: TRL splits them at the first differing character,
    which in chat data cuts a sentence (or a word) in two and calls the first half the user's turn.
    """
    chosen, rejected = field(row, "chosen"), field(row, "rejected")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if isinstance(value, str):
            raise RowError(
                f"field '{name}' is a string and there is no 'prompt' column; give the prompt in "
                "'prompt', or full chosen and rejected transcripts as message lists"
            )
        if not isinstance(value, list):
            raise RowError(f"field '{name}' must be a list of messages (a full transcript), got {type_name(value)}")
        if not value:
            raise RowError(f"field '{name}' is an empty list; expected a full transcript")
    ours, theirs = parse_turns(chosen, "chosen"), parse_turns(rejected, "rejected")
    shared = 0
    for (mine, _), (other, _) in zip(ours, theirs):
        if (mine["role"], mine["content"]) != (other["role"], other["content"]):
            break
        shared += 1
    if shared == len(ours) == len(theirs):
        raise RowError("chosen and rejected are the same transcript")
    if shared == 0:
        raise RowError("chosen and rejected transcripts share no prefix, so there is no prompt to extract")
    for name, rest in (("chosen", ours[shared:]), ("rejected", theirs[shared:])):
        if not rest:
            raise RowError(f"the {name} transcript ends where the shared prompt ends; it has no answer of its own")
        if rest[0][0]["role"] != "assistant":
            raise RowError(f"after the shared prompt, the {name} transcript goes on with a {rest[0][0]['role']} turn, not the assistant's answer")
        if len(rest) > 1:
            raise RowError(f"after the shared prompt, the {name} transcript goes on for {len(rest)} turns; expected one assistant answer")
    prompt = with_system(row, context_turns(ours[:shared]))
    if prompt[-1]["role"] == "assistant":
        raise RowError(
            "chosen and rejected share an assistant turn before they differ; the shared prompt "
            "must end with the user's turn"
        )
    return make_pair(prompt, answer_turn(ours[shared], "chosen"), answer_turn(theirs[shared], "rejected"))
