"""Which row shapes each family of methods takes, and how a row's shape is detected.

A *family* is the data a method needs: ``preference`` (dpo, orpo, simpo, reward), ``unpaired``
(kto), ``labeled`` (classify). Each family is a table from shape name to ``Shape`` (required
columns + converter), tried in order, so the more specific column sets come first and a row
with ``conversations``, ``chosen`` and ``rejected`` reads as ShareGPT, not as an implicit prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trainer.data.example import RowError
from trainer.data.shapes import labeled, preference, unpaired
from trainer.data.shapes._fields import renamed
from trainer.data.shapes.labeled import LabeledText
from trainer.data.shapes.preference import PreferencePair
from trainer.data.shapes.unpaired import LABEL_COLUMNS, UnpairedExample

Columns = Mapping[str, str | None] | None


@dataclass(frozen=True)
class Shape:
    """A row shape: the columns it needs and its converter.

    Attributes:
        required: column names that must all be present; an entry that is a tuple is met by any
            one of its names (the KTO tag is ``label`` or ``kto_tag``).
        convert: the row (columns already renamed) -> the family's dataclass, or ``RowError``.
    """

    required: tuple[str | tuple[str, ...], ...]
    convert: Callable[[Mapping[str, Any]], Any]

    def matches(self, row: Mapping[str, Any]) -> bool:
        return all(any(name in row for name in _names(need)) for need in self.required)

    def describe(self) -> str:
        return ", ".join(" or ".join(_names(need)) for need in self.required)


def _names(need: str | tuple[str, ...]) -> tuple[str, ...]:
    return (need,) if isinstance(need, str) else need


PREFERENCE_SHAPES: dict[str, Shape] = {
    "sharegpt": Shape(("conversations", "chosen", "rejected"), preference.convert_sharegpt_pair),
    "messages": Shape(("messages", "chosen", "rejected"), preference.convert_messages_pair),
    "prompt_chosen_rejected": Shape(("prompt", "chosen", "rejected"), preference.convert_prompt_pair),
    "chosen_rejected": Shape(("chosen", "rejected"), preference.convert_implicit_pair),
}
UNPAIRED_SHAPES: dict[str, Shape] = {
    "prompt_completion_label": Shape(("prompt", "completion", LABEL_COLUMNS), unpaired.convert_prompt_completion),
    "messages_label": Shape(("messages", LABEL_COLUMNS), unpaired.convert_messages_unpaired),
    "sharegpt_label": Shape(("conversations", LABEL_COLUMNS), unpaired.convert_sharegpt_unpaired),
}
LABELED_SHAPES: dict[str, Shape] = {
    "text_label": Shape(("text", "label"), labeled.convert_text_label),
}
FAMILIES: dict[str, dict[str, Shape]] = {
    "preference": PREFERENCE_SHAPES,
    "unpaired": UNPAIRED_SHAPES,
    "labeled": LABELED_SHAPES,
}


def _family(family: str) -> dict[str, Shape]:
    if family not in FAMILIES:
        raise ValueError(f"unknown data family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family]


def detect_shape(row: Mapping[str, Any], family: str, columns: Columns = None) -> str:
    """The first shape of ``family``, in order, whose required columns the row has (after the
    ``columns`` mapping is applied).

    Raises:
        RowError: no shape matches; the message lists the row's columns and the family's shapes.
        ValueError: an unknown family or mapped column (config errors).
    """
    shapes = _family(family)
    data = renamed(row, columns)
    for name, shape in shapes.items():
        if shape.matches(data):
            return name
    known = "; ".join(f"{name} ({shape.describe()})" for name, shape in shapes.items())
    raise RowError(
        f"cannot read the row as {family} data from its columns {list(row)}; known shapes: "
        f"{known}; set data.columns to name yours"
    )


def convert_shaped(
    row: Mapping[str, Any], family: str, columns: Columns = None, *, shape: str = "auto", source: str = ""
) -> Any:
    """One raw row -> the family's dataclass (``PreferencePair``, ``UnpairedExample`` or
    ``LabeledText``) with ``source`` set.

    Args:
        row: the row as read.
        family: "preference", "unpaired" or "labeled".
        columns: canonical column name -> the row's column name (None keeps the canonical name).
        shape: "auto" to detect it per row, or one of the family's shape names.
        source: "<file>:<line>" to record on the result.

    Raises:
        RowError: the row cannot take the shape; the message is the reason.
        ValueError: an unknown family, shape or mapped column (config errors, not row errors).
    """
    shapes = _family(family)
    if shape != "auto" and shape not in shapes:
        raise ValueError(f"unknown {family} shape {shape!r}; known: auto, {', '.join(shapes)}")
    data = renamed(row, columns)
    chosen = shapes[detect_shape(data, family) if shape == "auto" else shape]
    for need in chosen.required:
        if not any(name in data for name in _names(need)):
            raise RowError("missing field " + " or ".join(f"'{name}'" for name in _names(need)))
    result = chosen.convert(data)
    result.source = source
    return result


def preference_shape(row: Mapping[str, Any], columns: Columns = None) -> str:
    """The preference shape of ``row`` (see ``PREFERENCE_SHAPES``), for counting rows per shape."""
    return detect_shape(row, "preference", columns)


def to_preference(
    row: Mapping[str, Any], columns: Columns = None, *, shape: str = "auto", source: str = ""
) -> PreferencePair:
    """A preference row of any accepted shape -> ``PreferencePair`` (see ``convert_shaped``)."""
    return convert_shaped(row, "preference", columns, shape=shape, source=source)


def unpaired_shape(row: Mapping[str, Any], columns: Columns = None) -> str:
    return detect_shape(row, "unpaired", columns)


def to_unpaired(
    row: Mapping[str, Any], columns: Columns = None, *, shape: str = "auto", source: str = ""
) -> UnpairedExample:
    """A KTO row of any accepted shape -> ``UnpairedExample`` (see ``convert_shaped``)."""
    return convert_shaped(row, "unpaired", columns, shape=shape, source=source)


def labeled_shape(row: Mapping[str, Any], columns: Columns = None) -> str:
    return detect_shape(row, "labeled", columns)


def to_labeled(
    row: Mapping[str, Any], columns: Columns = None, *, shape: str = "auto", source: str = ""
) -> LabeledText:
    """A classification row -> ``LabeledText`` (see ``convert_shaped``)."""
    return convert_shaped(row, "labeled", columns, shape=shape, source=source)
