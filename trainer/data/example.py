"""The canonical example every row shape converts into, and the record of a rejected row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


class RowError(ValueError):
    """A row that cannot become an example; the message is the reason shown to the user."""


@dataclass
class Example:
    """One conversation, plus what the data says about its answer.

    Attributes:
        messages: chat turns, each {"role": "system"|"user"|"assistant", "content": str}; the
            last turn is the assistant's answer to learn. An earlier assistant turn that is
            context only (LLaMA-Factory's ``loss_weight: 0``) also has ``"train": False``, and
            the loss must not fall on it; the last turn is always trained.
        final_answer: the bare final answer when the data has one (GSM8K's "#### 42" -> "42").
        reasoning: reasoning steps of the last turn, one string per step, when the data has them
            (GSM8K's lines before "####"; the lines of LLaMA-Factory's reasoning parts, which are
            not also in the last turn's content). Profiles render them as their thinking.
        source: "<file>:<line>" (line is 1-based; for JSON arrays and parquet, the row index
            1-based) so every example can be traced back.
    """

    messages: list[dict[str, Any]]
    final_answer: str | None = None
    reasoning: list[str] | None = None
    source: str = ""


@dataclass
class Rejected:
    """A row that was not trained on, with where it came from and why."""

    file: str
    line: int | None
    reason: str
    raw: Any = None
    stage: str = "read"  # read | convert | profile | tokenize

    def to_json(self) -> dict[str, Any]:
        raw = self.raw
        if not isinstance(raw, (dict, list, str, int, float, bool, type(None))):
            raw = repr(raw)
        return {"file": self.file, "line": self.line, "stage": self.stage, "reason": self.reason, "raw": raw}


@dataclass
class RawRow:
    """A row as read from disk, before its shape is known."""

    file: str
    line: int
    data: dict[str, Any] = field(default_factory=dict)


class DataError(Exception):
    """The data cannot be trained on as configured (a user error, reported without traceback)."""


@dataclass
class Probe:
    """A held-out prompt: what to ask, what the answer should be, and the reference rendering."""

    messages: list[dict[str, str]]
    golden: str | None
    reference: str
    source: str
