"""Pieces every method's data shape shares: column renaming, prompts, answers and their reasons.

The turn parsing itself is ``trainer.data.formats``'s (roles, content parts, ``loss_weight``), so a
turn is read, and refused, the same way in every shape; what is added here is what a prompt or an
answer on its own must be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainer.data.example import RowError
from trainer.data.formats import SHAREGPT_ROLES, _parse_messages, _steps, _type_name

# Canonical column names of the method shapes; ``columns`` maps them to a dataset's own names.
SHAPE_COLUMNS = (
    "prompt", "chosen", "rejected", "conversations", "messages", "system", "completion",
    "label", "kto_tag", "text",
)  # fmt: skip

type_name = _type_name


def renamed(row: Mapping[str, Any], columns: Mapping[str, str | None] | None) -> dict[str, Any]:
    """The row with mapped columns under their canonical names (see ``formats._renamed``).

    A mapping to None is ignored, so the engine's whole ``data.columns`` section can be passed.

    Raises:
        ValueError: a canonical name that is mapped is not one of ``SHAPE_COLUMNS`` (a config
            error, not a row error).
    """
    mapping = {canonical: actual for canonical, actual in (columns or {}).items() if actual is not None}
    unknown = sorted(set(mapping) - set(SHAPE_COLUMNS))
    if unknown:
        raise ValueError(f"unknown columns {unknown} for this data shape; known: {', '.join(SHAPE_COLUMNS)}")
    # Values come from the original row, so chained or swapped mappings cannot clobber each other.
    out = {key: value for key, value in row.items() if key not in {*mapping, *mapping.values()}}
    for canonical, actual in mapping.items():
        if actual in row:
            out[canonical] = row[actual]
    return out


def field(row: Mapping[str, Any], name: str) -> Any:
    if name not in row:
        raise RowError(f"missing field '{name}'")
    return row[name]


def turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


# --- prompts --------------------------------------------------------------------------------------


def parse_turns(value: list[Any], name: str) -> list[tuple[dict[str, Any], str]]:
    """``{role, content}`` turns checked as SFT rows are: (message, reasoning) per turn."""
    return [(parsed.message, parsed.reasoning) for parsed in _parse_messages(value, name)]


def prompt_of(value: Any, name: str) -> list[dict[str, str]]:
    """A prompt column: a string (one user turn) or a list of ``{role, content}`` turns."""
    if isinstance(value, str):
        return [turn("user", value)]
    if isinstance(value, list):
        return context_turns(parse_turns(value, name))
    raise RowError(f"field '{name}' must be a string or a list of messages, got {type_name(value)}")


def context_turns(parsed: list[tuple[dict[str, Any], str]]) -> list[dict[str, str]]:
    """Prompt turns as context: no training flag (a prompt is never trained), no reasoning (an
    earlier turn's thinking is not shown to the model in the history, as in SFT rows)."""
    return [turn(message["role"], message["content"]) for message, _ in parsed]


def with_system(row: Mapping[str, Any], prompt: list[dict[str, str]]) -> list[dict[str, str]]:
    """The prompt with the row's ``system`` column, if any, as its first turn.

    Raises:
        RowError: the column is not a string, or the prompt also starts with a system turn.
    """
    system = row.get("system")
    if system is None or system == "":
        return prompt
    if not isinstance(system, str):
        raise RowError(f"field 'system' must be a string, got {type_name(system)}")
    if prompt and prompt[0]["role"] == "system":
        # Two system prompts: picking one silently would train on a prompt the user didn't mean.
        raise RowError("both a 'system' field and a leading system turn; keep one")
    return [turn("system", system), *prompt]


def check_prompt(prompt: list[dict[str, str]]) -> list[dict[str, str]]:
    """A prompt must be a system turn at most first, and end with a non-empty user turn.

    Raises:
        RowError: with the first rule broken, in plain words.
    """
    for position, message in enumerate(prompt[1:], start=2):
        if message["role"] == "system":
            raise RowError(f"prompt has a system turn at position {position}; a system turn is only allowed first")
    if not any(message["role"] == "user" for message in prompt):
        raise RowError("no user turn in the prompt")
    if prompt[-1]["role"] != "user":
        raise RowError(f"prompt ends with an {prompt[-1]['role']} turn; it must end with the user's turn")
    if not prompt[-1]["content"].strip():
        raise RowError("empty user turn at the end of the prompt")
    return prompt


# --- answers --------------------------------------------------------------------------------------


def answer_of(value: Any, name: str) -> tuple[str, list[str] | None]:
    """One assistant answer, as text plus the reasoning steps it carried (LLaMA-Factory parts).

    Accepted: a string; a ShareGPT ``{from, value}`` object (LLaMA-Factory's ranking rows); an
    OpenAI ``{role, content}`` object; or TRL's conversational form, a list of one assistant
    message.

    Raises:
        RowError: a wrong type, a turn that is not the assistant's, more than one turn, or an
            answer with ``loss_weight: 0``; the field is named.
    """
    if isinstance(value, str):
        text, reasoning = value, None
    elif isinstance(value, dict) and "from" in value:
        text, reasoning = _sharegpt_answer(value, name), None
    elif isinstance(value, dict):
        text, reasoning = _message_answer([value], name)
    elif isinstance(value, list):
        text, reasoning = _message_answer(value, name)
    else:
        raise RowError(
            f"field '{name}' must be a string, a {{from, value}} or {{role, content}} object, or a "
            f"list of one assistant message, got {type_name(value)}"
        )
    return text, reasoning  # emptiness is the caller's to judge, in its own words


def _sharegpt_answer(value: dict[str, Any], name: str) -> str:
    speaker, text = value.get("from"), value.get("value")
    if not isinstance(speaker, str) or SHAREGPT_ROLES.get(speaker) != "assistant":
        assistants = ", ".join(k for k, role in SHAREGPT_ROLES.items() if role == "assistant")
        raise RowError(f"field '{name}': 'from' is {speaker!r}; an answer is from one of: {assistants}")
    if not isinstance(text, str):
        raise RowError(f"field '{name}': field 'value' must be a string, got {type_name(text)}")
    return text


def _message_answer(value: list[Any], name: str) -> tuple[str, list[str] | None]:
    if not value:
        raise RowError(f"field '{name}' is an empty list; expected one assistant message")
    parsed = parse_turns(value, name)
    roles = [message["role"] for message, _ in parsed]
    if roles[0] != "assistant":
        raise RowError(
            f"field '{name}' starts with a {roles[0]} turn; it must hold only the assistant's answer "
            "(for full transcripts, leave out the 'prompt' column and the shared start becomes the prompt)"
        )
    if len(parsed) > 1:
        raise RowError(f"field '{name}' holds {len(parsed)} turns; expected one assistant message")
    return answer_turn(parsed[0], name)


def answer_turn(parsed: tuple[dict[str, Any], str], name: str) -> tuple[str, list[str] | None]:
    """An assistant turn as an answer: its text and reasoning steps; a context-only turn
    (``loss_weight: 0``) cannot be the answer, which is what a method trains on."""
    message, reasoning = parsed
    if message.get("train") is False:
        raise RowError(f"the {name} answer has loss_weight 0, but the answer is what is trained")
    return message["content"], _steps(reasoning)


def same_answer(first: str, second: str) -> bool:
    """Equal but for surrounding whitespace, which no tokenizer-level difference should teach."""
    return first.strip() == second.strip()
