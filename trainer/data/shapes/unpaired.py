"""Unpaired examples (kto): a prompt, one completion, and whether the completion is desirable.

Accepted row shapes:

- ``prompt_completion_label``: TRL's unpaired preference rows, ``prompt`` / ``completion``
  (strings, or a message list and a list of one assistant message) and a boolean ``label``.
- ``messages_label``: LLaMA-Factory's KTO rows (``kto_en_demo.json``): ``messages`` whose last
  turn is the assistant's completion, and the tag in ``label`` (its dataset_info maps
  ``kto_tag`` to that column) or in a column named ``kto_tag``.
- ``sharegpt_label``: the same with ShareGPT ``conversations``.
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
    turn,
    type_name,
    with_system,
)
from trainer.data.shapes.preference import PreferencePair

LABEL_COLUMNS = ("label", "kto_tag")


@dataclass
class UnpairedExample:
    """One completion judged on its own: ``label`` True for desirable, False for undesirable.

    Attributes:
        prompt: chat turns ``{"role", "content"}``, a system turn at most first, ending with the
            user's turn.
        completion: the completion's text, as the data gives it.
        label: True when the completion is desirable.
        source: ``"<file>:<line>"``, set by the caller.
        reasoning: reasoning steps the completion carried apart from its text (LLaMA-Factory
            reasoning parts); only on desirable completions.
    """

    prompt: list[dict[str, str]]
    completion: str
    label: bool
    source: str = ""
    reasoning: list[str] | None = None

    def to_trl(self) -> dict[str, Any]:
        """TRL's conversational unpaired row, as ``KTOTrainer`` takes."""
        return {
            "prompt": [dict(message) for message in self.prompt],
            "completion": [turn("assistant", self.completion)],
            "label": self.label,
        }


def kto_label(row: Mapping[str, Any]) -> bool:
    """The row's desirability tag: a JSON boolean, or the integers 1 / 0.

    Strings ("yes", "true", "good") are refused rather than guessed at: a tag read the wrong way
    round trains the model towards the completions it should move away from.

    Raises:
        RowError: no tag, both columns, or a value that is not a boolean or 0 / 1.
    """
    present = [name for name in LABEL_COLUMNS if name in row]
    if not present:
        raise RowError("missing field 'label' (or 'kto_tag'): true for a desirable completion, false otherwise")
    if len(present) > 1:
        raise RowError("both 'label' and 'kto_tag' fields; keep one")
    name = present[0]
    value = row[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    shown = f" {value!r}" if isinstance(value, (str, int, float)) else ""
    raise RowError(f"field '{name}' must be true or false (or 1 / 0), got {type_name(value)}{shown}")


def make_unpaired(
    prompt: list[dict[str, str]], completion: tuple[str, list[str] | None], label: bool
) -> UnpairedExample:
    """The example, once the rules every unpaired shape shares hold.

    Raises:
        RowError: a bad prompt, an empty completion, or reasoning parts on an undesirable one.
    """
    check_prompt(prompt)
    text, reasoning = completion
    if not text.strip():
        raise RowError("empty completion")
    if reasoning and not label:
        # An undesirable completion is kept verbatim (see render.render_unpaired).
        raise RowError("the undesirable completion has reasoning parts; put its reasoning in its text")
    return UnpairedExample(prompt, text, label, reasoning=reasoning)


def convert_prompt_completion(row: Mapping[str, Any]) -> UnpairedExample:
    prompt = with_system(row, prompt_of(field(row, "prompt"), "prompt"))
    return make_unpaired(prompt, answer_of(field(row, "completion"), "completion"), kto_label(row))


def convert_messages_unpaired(row: Mapping[str, Any]) -> UnpairedExample:
    turns = field(row, "messages")
    if not isinstance(turns, list):
        raise RowError(f"field 'messages' must be a list, got {type_name(turns)}")
    parsed = parse_turns(turns, "messages")
    _last_is_completion([message for message, _ in parsed])
    prompt = with_system(row, context_turns(parsed[:-1]))
    return make_unpaired(prompt, answer_turn(parsed[-1], "completion"), kto_label(row))


def convert_sharegpt_unpaired(row: Mapping[str, Any]) -> UnpairedExample:
    messages = convert_sharegpt({"conversations": field(row, "conversations"), "system": row.get("system")}).messages
    _last_is_completion(messages)
    return make_unpaired(messages[:-1], (messages[-1]["content"], None), kto_label(row))


def _last_is_completion(messages: list[dict[str, Any]]) -> None:
    last = messages[-1]["role"] if messages else None
    if last != "assistant":
        got = f"is {last}" if last else "is missing (no turns)"
        raise RowError(f"the last turn {got}; it must be the assistant's completion")


def unpair(pair: PreferencePair) -> tuple[UnpairedExample, UnpairedExample]:
    """A pair as two unpaired examples, chosen desirable and rejected undesirable, as TRL's
    ``unpair_preference_dataset`` splits it; rendering either way gives the same text."""
    return (
        UnpairedExample(pair.prompt, pair.chosen, True, pair.source, pair.chosen_reasoning),
        UnpairedExample(pair.prompt, pair.rejected, False, pair.source),
    )
