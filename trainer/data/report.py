"""The data report: what happened to every row, as JSON and as text for the dry run."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from trainer.data.example import DataError, Rejected

# A count or position ("byte 17", "(300 > 256 tokens)"), not part of a name ("UTF-8", "Windows-1252").
_NUMBER = re.compile(r"(?<![\w-])[0-9]+(?![\w-])")
# A parenthesized detail made of figures, e.g. "(300 > 256 tokens)": the row's own, not the group's.
_FIGURES = re.compile(r"\s*\([0-9]+ [<>]=? [0-9]+[^()]*\)")


def reason_group(rejected: Rejected) -> str:
    """Rejects grouped by stage and reason, with a row's own figures dropped or folded so similar
    reasons count together (the report says the group's figures itself)."""
    return f"{rejected.stage}: {_NUMBER.sub('N', _FIGURES.sub('', rejected.reason))}"


def length_stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


@dataclass
class DataReport:
    """Counts and statistics of one data preparation. Every row read is in exactly one of
    rows_used, rows_held_out, rows_held_out_copies (repeats of a held-out prompt, kept out of
    training), rows_rejected or rows_unused (cut by data.max_rows). rows_duplicate counts rows
    identical to an earlier one, wherever they went."""

    files: list[str] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    rows_total: int = 0
    rows_used: int = 0
    rows_held_out: int = 0
    rows_rejected: int = 0
    rows_unused: int = 0
    rows_held_out_copies: int = 0
    rows_duplicate: int = 0
    rows_truncated: int = 0
    longest_row_tokens: int = 0  # over every tokenized row, before over-long ones were dropped
    p95_row_tokens: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    token_lengths: dict[str, float] = field(default_factory=dict)
    total_tokens: int = 0
    trainable_tokens: int = 0
    max_length: int = 0
    overlong_policy: str = ""
    profile: str = ""
    checks: dict[str, Any] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    rejects_file: str | None = None
    cache_key: str = ""
    cache_hit: bool = False

    @property
    def trainable_token_fraction(self) -> float | None:
        return round(self.trainable_tokens / self.total_tokens, 4) if self.total_tokens else None

    @property
    def reject_fraction(self) -> float:
        return self.rows_rejected / self.rows_total if self.rows_total else 0.0

    def length_advice(self) -> str:
        """The figures and the fix for rows longer than max_length."""
        return (
            f"The longest row has {self.longest_row_tokens} tokens and 95% of rows fit in "
            f"{self.p95_row_tokens} (data.max_length is {self.max_length}): raise it, e.g. "
            f"--set data.max_length={max(self.p95_row_tokens, self.max_length + 1)}, or keep the "
            "start of long rows with --set data.overlong_policy=truncate."
        )

    @classmethod
    def for_job(cls, config: Any, files: list[Any], profile: Any) -> DataReport:
        """An empty report for one preparation of ``files`` under ``config`` and ``profile``."""
        return cls(
            files=[str(f) for f in files],
            max_length=config.data.max_length,
            overlong_policy=config.data.overlong_policy,
            profile=profile.full_name,
        )

    def cap_rows(self, train: list[Any], max_rows: int | None) -> list[Any]:
        """``train`` cut to ``data.max_rows``, the rest counted as unused."""
        if max_rows is not None and len(train) > max_rows:
            self.rows_unused = len(train) - max_rows
            return train[:max_rows]
        return train

    def record_lengths(self, lengths: list[int]) -> None:
        """Every row's full length (before drop or truncation): the figures ``length_advice`` says."""
        if lengths:
            ordered = sorted(lengths)
            self.longest_row_tokens = ordered[-1]
            self.p95_row_tokens = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    def overlong_error(self, overlong: list[str], what: str = "rows") -> DataError:
        """The refusal under ``overlong_policy: error``, naming (some of) the rows."""
        shown = "; ".join(overlong[:5]) + (f"; and {len(overlong) - 5} more" if len(overlong) > 5 else "")
        return DataError(
            f"{len(overlong)} {what} are longer than data.max_length={self.max_length} tokens and "
            f"data.overlong_policy is 'error': {shown}. {self.length_advice()}"
        )

    def count_rejects(self, rejects: list[Rejected]) -> None:
        self.rows_rejected = len(rejects)
        self.rejected_by_reason = dict(Counter(reason_group(r) for r in rejects).most_common())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["trainable_token_fraction"] = self.trainable_token_fraction
        data["reject_fraction"] = round(self.reject_fraction, 4)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataReport:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def summary_lines(self) -> list[str]:
        lines = [
            f"profile {self.profile}; files: {', '.join(self.files)}",
            f"rows: {self.rows_total} read, {self.rows_used} used for training, "
            f"{self.rows_held_out} held out, {self.rows_rejected} rejected, "
            f"{self.rows_truncated} truncated, {self.rows_unused} unused (data.max_rows)",
            f"duplicates: {self.rows_duplicate} rows repeat an earlier row exactly; "
            f"{self.rows_held_out_copies} repeats of held-out prompts kept out of training",
            f"formats: {', '.join(f'{k} {v}' for k, v in self.formats.items()) or 'none'}",
            f"token lengths: {self.token_lengths or 'n/a'} (max_length {self.max_length}, "
            f"over-long rows: {self.overlong_policy})",
        ]
        if self.total_tokens:  # SFT rows; preference pairs are tokenized by TRL, chosen against rejected
            lines.append(
                f"trainable tokens: {self.trainable_tokens} of {self.total_tokens} "
                f"({100 * (self.trainable_token_fraction or 0):.1f}%)"
            )
        for reason, count in self.rejected_by_reason.items():
            lines.append(f"  rejected {count:>6} x {reason}")
        for name, value in self.checks.items():
            lines.append(f"check {name}: {value}")
        if self.rejects_file and self.rows_rejected:
            lines.append(f"rejected rows with file, line and reason: {self.rejects_file}")
        return lines
