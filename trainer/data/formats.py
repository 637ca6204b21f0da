"""Row shapes: detect which common dataset shape a raw row has, and convert it to an ``Example``.

Every shape is one registry entry (required columns + converter), checked in a fixed priority
order; a row that matches none, or that matches but is malformed, raises ``RowError`` with the
reason the user will read in the reject report. Text is kept verbatim: nothing is stripped or
normalised except where a shape defines it (GSM8K's ``<<calc>>`` annotations).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trainer.data.example import ROLES, Example, RowError

CANONICAL_COLUMNS = (
    "messages", "conversations", "system", "instruction", "input", "output", "history",
    "prompt", "completion", "question", "answer", "text",
)  # fmt: skip

# ShareGPT speaker -> canonical role. Tool traffic is kept as ordinary turns with its content
# verbatim rather than rejected: the model should learn to emit the call (an assistant turn) and to
# read the result (a user turn), and the canonical example has no tool role to put it in.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "user",
    "tool": "user",
}

_ANNOTATION = re.compile(r"<<[^<>]*>>")  # GSM8K calculator traces: "48/2 = <<48/2=24>>24"
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # "1,000" -> "1000"; "3, 4" untouched
_FINAL_MARKER = "####"


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _field(row: Mapping[str, Any], name: str) -> Any:
    if name not in row:
        raise RowError(f"missing field '{name}'")
    return row[name]


def _str_field(row: Mapping[str, Any], name: str) -> str:
    value = _field(row, name)
    if not isinstance(value, str):
        raise RowError(f"field '{name}' must be a string, got {_type_name(value)}")
    return value


def _optional_str(row: Mapping[str, Any], name: str) -> str:
    """An optional text column; absent and null (parquet's filler for missing values) read as ''."""
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"field '{name}' must be a string, got {_type_name(value)}")
    return value


def _list_field(row: Mapping[str, Any], name: str) -> list[Any]:
    value = _field(row, name)
    if not isinstance(value, list):
        raise RowError(f"field '{name}' must be a list, got {_type_name(value)}")
    return value


def _turn(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


# --- messages (OpenAI, LLaMA-Factory) -------------------------------------------------------------

# Content part types a turn may hold. "text" is the turn's text; "reasoning" (LLaMA-Factory) is an
# assistant turn's thinking, which the profile renders in its own format. Images, tool calls and
# the like have nowhere to go in a text-only example, so they are refused by name.
PART_TYPES = ("text", "reasoning")
# A part's string is under "text" (OpenAI: {"type": "text", "text": ...}) or "value"
# (LLaMA-Factory: {"type": "text", "value": ...}). Each style is joined the way its own tools join
# it: OpenAI parts by newlines, as vLLM's chat utils do; LLaMA-Factory parts back to back, as its
# renderers do.
PART_STYLES = {"text": "\n", "value": ""}


@dataclass
class _Turn:
    """A parsed chat turn: its message dict, plus the reasoning it carried (assistant only)."""

    message: dict[str, Any]
    reasoning: str = ""


def _part_string(part: dict[str, Any], where: str) -> tuple[str, str]:
    """The part's string and the key it was under ("text" or "value"); a null key is absent, as
    parquet fills the keys a part lacks with nulls."""
    keys = [key for key in PART_STYLES if part.get(key) is not None]
    if len(keys) > 1:
        raise RowError(f"{where}: has both 'text' and 'value'; keep one")
    key = keys[0] if keys else "text"
    if not isinstance(part.get(key), str):
        name = f"'{key}'" if keys else "'text' (OpenAI) or 'value' (LLaMA-Factory)"
        raise RowError(f"{where}: field {name} must be a string, got {_type_name(part.get(key))}")
    return part[key], key


def _parse_parts(parts: list[Any], where: str, role: str) -> tuple[str, str]:
    """Multi-part content -> (text, reasoning), each part type joined in its style's way."""
    found: dict[str, list[str]] = {kind: [] for kind in PART_TYPES}
    styles = set()
    for index, part in enumerate(parts, start=1):
        at = f"{where}: content part {index}"
        if not isinstance(part, dict):
            raise RowError(f"{at} must be an object, got {_type_name(part)}")
        kind = part.get("type")
        if kind not in PART_TYPES:
            raise RowError(f"{at} has type {kind!r}; supported part types: {', '.join(PART_TYPES)}")
        if kind == "reasoning" and role != "assistant":
            raise RowError(f"{at} is reasoning in a {role} turn; only assistant turns reason")
        text, style = _part_string(part, at)
        found[kind].append(text)
        styles.add(style)
    if len(styles) > 1:
        raise RowError(f"{where}: content parts mix OpenAI 'text' and LLaMA-Factory 'value' keys")
    joiner = PART_STYLES[styles.pop()] if styles else ""
    return joiner.join(found["text"]), joiner.join(found["reasoning"])


def _trains(turn: Mapping[str, Any], where: str, role: str) -> bool:
    """Whether the turn is trained, from LLaMA-Factory's per-turn ``loss_weight``.

    Absent (or null, parquet's filler) means LLaMA-Factory's defaults: assistant turns are
    trained, other turns are not. Only whole turns can be in or out of the loss (labels carry no
    weights), so a weight other than 0 or 1 is refused rather than rounded; and only assistant
    turns can be trained at all.
    """
    weight = turn.get("loss_weight")
    if weight is None:
        return role == "assistant"
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise RowError(f"{where}: field 'loss_weight' must be a number, got {_type_name(weight)}")
    if not math.isfinite(weight):
        raise RowError(f"{where}: field 'loss_weight' must be a finite number, got {weight}")
    if role != "assistant":
        if weight != 0:
            raise RowError(
                f"{where}: loss_weight {weight:g} on a {role} turn; only assistant turns are "
                "trained, so give 0 or leave it out"
            )
        return False
    if weight not in (0, 1):
        raise RowError(
            f"{where}: loss_weight {weight:g} is not supported; give 1 (train the turn) or 0 "
            "(context only)"
        )
    return weight == 1


def _require_keys(turn: Any, where: str, keys: tuple[str, str]) -> None:
    """A turn must be an object holding both ``keys``."""
    if not isinstance(turn, dict):
        raise RowError(f"{where}: expected an object with '{keys[0]}' and '{keys[1]}', got {_type_name(turn)}")
    for key in keys:
        if key not in turn:
            raise RowError(f"{where}: missing field '{key}'")


def _parse_messages(turns: list[Any], field: str) -> list[_Turn]:
    """A list of ``{role, content, loss_weight?}`` turns, checked; ``field`` names it in errors."""
    parsed = []
    for index, turn in enumerate(turns, start=1):
        where = f"{field} turn {index}"
        _require_keys(turn, where, ("role", "content"))
        role, content, reasoning = turn["role"], turn["content"], ""
        if role not in ROLES:
            raise RowError(f"{where}: unknown role {role!r}; known roles: {', '.join(ROLES)}")
        if isinstance(content, list):
            content, reasoning = _parse_parts(content, where, role)
        elif not isinstance(content, str):
            raise RowError(
                f"{where}: field 'content' must be a string or a list of text parts, "
                f"got {_type_name(content)}"
            )
        message = _turn(role, content)
        trained = _trains(turn, where, role)  # checked on every turn: a bad weight is refused
        if role == "assistant" and not trained:
            message["train"] = False  # context only: see Example.messages
        parsed.append(_Turn(message, reasoning))
    return parsed


def _steps(reasoning: str) -> list[str] | None:
    # One step per non-empty line, as GSM8K's reasoning is: regime3 numbers each step, and
    # emoji_think's thinking must hold no blank line (its format ends the thinking at one).
    steps = [line for line in reasoning.split("\n") if line.strip()]
    return steps or None


def _example_of_turns(turns: list[_Turn]) -> Example:
    """The example of parsed turns: untrained turns after the last trained one are dropped, and
    the reasoning of the final turn becomes the example's.

    Dropping the tail changes nothing that is learned (a causal LM's loss on a trained turn never
    sees later tokens), and it keeps the contract that the last turn is the answer to learn. The
    reasoning of earlier assistant turns is not kept: Qwen3's and LLaMA-Factory's own templates
    also leave it out of the history, so the model never sees it there at inference either.

    Raises:
        RowError: there are assistant turns but every one has ``loss_weight`` 0.
    """
    answers = [i for i, turn in enumerate(turns) if turn.message["role"] == "assistant"]
    trained = [i for i in answers if turns[i].message.get("train", True)]
    if answers and not trained:
        raise RowError("no turn to train: every assistant turn has loss_weight 0")
    if answers and answers[-1] != trained[-1]:
        turns = turns[: trained[-1] + 1]
    reasoning = turns[-1].reasoning if turns and turns[-1].message["role"] == "assistant" else ""
    return Example([turn.message for turn in turns], reasoning=_steps(reasoning))


def convert_messages(row: Mapping[str, Any]) -> Example:
    return _example_of_turns(_parse_messages(_list_field(row, "messages"), "messages"))


# --- sharegpt -------------------------------------------------------------------------------------


def _system_turns(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    system = _optional_str(row, "system")
    return [_turn("system", system)] if system else []


def convert_sharegpt(row: Mapping[str, Any]) -> Example:
    messages = _system_turns(row)
    turns = _list_field(row, "conversations")
    if messages and turns and isinstance(turns[0], dict) and turns[0].get("from") == "system":
        # Two system prompts: picking one silently would train on a prompt the user didn't mean.
        raise RowError("both a 'system' field and a leading system turn; keep one")
    for index, turn in enumerate(turns, start=1):
        where = f"conversations turn {index}"
        _require_keys(turn, where, ("from", "value"))
        speaker, value = turn["from"], turn["value"]
        if not isinstance(speaker, str) or speaker not in SHAREGPT_ROLES:  # a list is unhashable
            known = ", ".join(SHAREGPT_ROLES)
            raise RowError(f"{where}: unknown role {speaker!r}; known roles: {known}")
        if not isinstance(value, str):
            raise RowError(f"{where}: field 'value' must be a string, got {_type_name(value)}")
        messages.append(_turn(SHAREGPT_ROLES[speaker], value))
    return Example(messages)


# --- alpaca ---------------------------------------------------------------------------------------


def _history_turns(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    if row.get("history") is None:
        return []
    turns = []
    for index, pair in enumerate(_list_field(row, "history"), start=1):
        is_pair = isinstance(pair, (list, tuple)) and len(pair) == 2
        if not (is_pair and all(isinstance(text, str) for text in pair)):
            raise RowError(
                f"field 'history' item {index} must be a [user, assistant] pair of strings"
            )
        turns += [_turn("user", pair[0]), _turn("assistant", pair[1])]
    return turns


def convert_alpaca(row: Mapping[str, Any]) -> Example:
    prompt_parts = [_str_field(row, "instruction"), _optional_str(row, "input")]
    prompt = "\n\n".join(part for part in prompt_parts if part)
    final = [_turn("user", prompt), _turn("assistant", _str_field(row, "output"))]
    return Example(_system_turns(row) + _history_turns(row) + final)


# --- prompt / completion (TRL) --------------------------------------------------------------------


def _side(row: Mapping[str, Any], name: str, role: str) -> list[_Turn]:
    """A prompt or completion: plain text (one ``role`` turn) or TRL's conversational list."""
    value = _field(row, name)
    if isinstance(value, str):
        return [_Turn(_turn(role, value))]
    if isinstance(value, list):
        return _parse_messages(value, name)
    got = _type_name(value)
    raise RowError(f"field '{name}' must be a string or a list of messages, got {got}")


def convert_prompt_completion(row: Mapping[str, Any]) -> Example:
    return _example_of_turns(_side(row, "prompt", "user") + _side(row, "completion", "assistant"))


# --- question / answer (GSM8K) --------------------------------------------------------------------


def convert_question_answer(row: Mapping[str, Any]) -> Example:
    """GSM8K: reasoning lines, then ``#### <final>``; the last ``####`` line is the final answer."""
    question, answer = _str_field(row, "question"), _str_field(row, "answer")
    lines = answer.split("\n")
    marks = [i for i, line in enumerate(lines) if line.lstrip().startswith(_FINAL_MARKER)]
    if not marks:
        return Example([_turn("user", question), _turn("assistant", answer)])
    mark = marks[-1]
    if any(line.strip() for line in lines[mark + 1 :]):
        raise RowError(f"text after the '{_FINAL_MARKER} <final answer>' line")
    final = _THOUSANDS_COMMA.sub("", lines[mark].strip()[len(_FINAL_MARKER) :].strip())
    if not final:
        raise RowError(f"empty final answer after '{_FINAL_MARKER}'")
    stripped = (_ANNOTATION.sub("", line) for line in lines[:mark])
    reasoning = [line for line in stripped if line.strip()]
    content = "\n".join([*reasoning, f"{_FINAL_MARKER} {final}"])
    messages = [_turn("user", question), _turn("assistant", content)]
    return Example(messages, final_answer=final, reasoning=reasoning)


# --- text -----------------------------------------------------------------------------------------


def convert_text(row: Mapping[str, Any]) -> Example:
    # One assistant turn, so the whole text is trained on (nothing is masked as prompt).
    return Example([_turn("assistant", _str_field(row, "text"))])


# --- registry, detection, validation --------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    required: tuple[str, ...]
    convert: Callable[[Mapping[str, Any]], Example]


# Detection priority is this order: the more specific column sets come first, so a row with
# both ``question``/``answer`` and ``text`` is read as question_answer.
FORMATS: dict[str, Shape] = {
    "messages": Shape(("messages",), convert_messages),
    "sharegpt": Shape(("conversations",), convert_sharegpt),
    "alpaca": Shape(("instruction", "output"), convert_alpaca),
    "prompt_completion": Shape(("prompt", "completion"), convert_prompt_completion),
    "question_answer": Shape(("question", "answer"), convert_question_answer),
    "text": Shape(("text",), convert_text),
}
KNOWN_FORMATS = tuple(FORMATS)


def detect_format(row: Mapping[str, Any]) -> str:
    """The first shape, in priority order, whose required columns are all present.

    Raises:
        RowError: no shape matches; the message lists the row's columns and the known shapes.
    """
    for name, shape in FORMATS.items():
        if all(column in row for column in shape.required):
            return name
    known = "; ".join(f"{name} ({', '.join(shape.required)})" for name, shape in FORMATS.items())
    raise RowError(
        f"cannot detect the row's shape from its columns {list(row)}; known shapes: {known}; "
        "set data.format or data.columns"
    )


def validate_conversation(messages: list[dict[str, Any]]) -> None:
    """Checks every shape's result shares: system first only, ends on a non-empty assistant turn."""
    for position, turn in enumerate(messages[1:], start=2):
        if turn["role"] == "system":
            raise RowError(
                f"system turn at position {position}; a system turn is only allowed first"
            )
    last = messages[-1]["role"] if messages else "system"
    # Checked before "no assistant turn": a conversation ending on the user (a prompt with no
    # answer, as in preference data) is the common case, and this says what is missing.
    if last == "user":
        raise RowError("last turn is user, not assistant")
    if last != "assistant":
        raise RowError("no assistant turn")
    if not messages[-1]["content"].strip():
        raise RowError("empty assistant turn")


def _renamed(row: Mapping[str, Any], columns: Mapping[str, str | None]) -> dict[str, Any]:
    # Unset mappings are ignored: data.columns also names the columns of other methods' shapes.
    unknown = sorted({name for name, actual in columns.items() if actual is not None} - set(CANONICAL_COLUMNS))
    if unknown:
        known = ", ".join(CANONICAL_COLUMNS)
        raise ValueError(f"unknown canonical columns {unknown}; known: {known}")
    mapping = {canonical: actual for canonical, actual in columns.items() if actual is not None}
    # Values are read from the original row, so chained or swapped mappings cannot clobber each
    # other, and a mapped column wins over a same-named canonical one: the mapping says which.
    renamed = {key: value for key, value in row.items() if key not in {*mapping, *mapping.values()}}
    for canonical, actual in mapping.items():
        if actual in row:
            renamed[canonical] = row[actual]
    return renamed


def row_format(row: Mapping[str, Any], fmt: str, columns: Mapping[str, str | None]) -> str:
    """The shape ``convert_row`` will use for this row: ``fmt``, or, for "auto", the shape
    detected after the column mapping is applied."""
    return detect_format(_renamed(row, columns)) if fmt == "auto" else fmt


def convert_row(row: Mapping[str, Any], fmt: str, columns: Mapping[str, str | None]) -> Example:
    """One raw row -> a validated ``Example`` (``source`` is left for the caller to set).

    Args:
        row: the row as read.
        fmt: "auto" to detect the shape of this row, or one of ``KNOWN_FORMATS``.
        columns: canonical column name -> the row's column name (None keeps the canonical name);
            applied by renaming before detection, so a mapping can make a shape detectable.

    Raises:
        RowError: the row cannot become an example; the message is the reason.
        ValueError: ``fmt`` or a ``columns`` key is unknown (a config error, not a row error).
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: auto, {', '.join(KNOWN_FORMATS)}")
    data = _renamed(row, columns)
    shape = FORMATS[detect_format(data) if fmt == "auto" else fmt]
    for column in shape.required:
        if column not in data:
            actual = columns.get(column)
            mapped = f" (mapped to '{column}')" if actual and actual != column else ""
            raise RowError(f"missing field '{actual or column}'{mapped}")
    example = shape.convert(data)
    validate_conversation(example.messages)
    return example
