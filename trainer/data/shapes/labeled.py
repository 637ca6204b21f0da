"""Labeled text (classify): a text and the class it belongs to.

One row shape, ``text_label``: ``text`` (a string) and ``label`` (a string, an integer or a
boolean). No profile applies: a classifier reads the text as written and has no answer format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainer.data.example import RowError
from trainer.data.shapes._fields import field, type_name


@dataclass
class LabeledText:
    """One text and its class.

    Attributes:
        text: the text, verbatim.
        label: the class name: a string label stripped of surrounding whitespace, an integer as
            its digits ("3"), a boolean as "true" / "false".
        source: ``"<file>:<line>"``, set by the caller.
    """

    text: str
    label: str
    source: str = ""


def class_label(value: Any) -> str:
    """The class name of a label value.

    Strings are stripped because " spam" and "spam" would otherwise be two classes. A float
    with no fraction (parquet reads an integer column with gaps as floats) counts as its integer,
    so 1.0 and 1 are one class; any other float is refused, as a measurement is not a class.

    Raises:
        RowError: null, an empty string, a fractional or non-finite float, a list or an object.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        raise RowError(f"field 'label' is {value!r}, which is not a class: give a string or an integer")
    if isinstance(value, str):
        if not value.strip():
            raise RowError("empty label")
        return value.strip()
    raise RowError(f"field 'label' must be a string, an integer or a boolean, got {type_name(value)}")


def convert_text_label(row: Mapping[str, Any]) -> LabeledText:
    text = field(row, "text")
    if not isinstance(text, str):
        raise RowError(f"field 'text' must be a string, got {type_name(text)}")
    if not text.strip():
        raise RowError("empty text")
    return LabeledText(text, class_label(field(row, "label")))
