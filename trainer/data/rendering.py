"""Conversations read and rendered: files -> canonical examples -> the profile's chat messages.

The first half of every conversation-shaped preparation: SFT tokenizes the rendered messages
with their loss masks (``trainer.data.prepare``); the RL methods keep the prompt and the answer
apart (``trainer.data.prompt_data``). Each row that cannot be read or rendered is rejected with
its file, line and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.config.schema import TrainerConfig
from trainer.data.example import Example, Rejected, RowError
from trainer.data.formats import convert_row, row_format
from trainer.data.holdout import split_holdout
from trainer.data.readers import iter_rows, stop_on_unreadable
from trainer.data.report import DataReport
from trainer.profiles import DataProfile


@dataclass
class Rendered:
    """A row's canonical example and the messages its profile renders it to."""

    example: Example
    messages: list[dict[str, str]]


def read_examples(config: TrainerConfig, files: list[Path], report: DataReport, rejects: list[Rejected]) -> list[Example]:
    """Every row of ``files`` as an ``Example`` in any conversation format; the rest rejected."""
    columns = config.data.columns.model_dump()
    examples = []
    for item in iter_rows(files):
        report.rows_total += 1
        if isinstance(item, Rejected):
            rejects.append(item)
            continue
        try:
            fmt = row_format(item.data, config.data.format, columns)
            example = convert_row(item.data, fmt, columns)
        except RowError as exc:
            rejects.append(Rejected(item.file, item.line, str(exc), item.data, stage="convert"))
            continue
        example.source = example.source or f"{item.file}:{item.line}"
        report.formats[fmt] = report.formats.get(fmt, 0) + 1
        examples.append(example)
    return examples


def render_examples(examples: list[Example], profile: DataProfile, base_prompt: str, rejects: list[Rejected]) -> list[Rendered]:
    """Each example in the profile's format; one it cannot render is rejected with the reason."""
    rendered = []
    for example in examples:
        try:
            rendered.append(Rendered(example, profile.prepare_messages(example, base_prompt)))
        except RowError as exc:
            file, _, line = example.source.rpartition(":")
            rejects.append(
                Rejected(file, int(line) if line.isdigit() else None, str(exc), example.messages, "profile")
            )
    return rendered


def rendered_split(config: TrainerConfig, files: list[Path], profile: DataProfile, report: DataReport, rejects: list[Rejected]) -> tuple[list[Rendered], list[Rendered]]:
    """(train, held out): every row read and rendered, the held-out rows split off, the rest
    cut to ``data.max_rows``; what each step drops is counted in ``report`` and ``rejects``."""
    examples = read_examples(config, files, report, rejects)
    stop_on_unreadable(rejects)
    rendered = render_examples(examples, profile, config.profile.system_prompt, rejects)
    train, holdout = split_holdout(rendered, config.data.holdout_size, config.hyperparams.seed, report)
    return report.cap_rows(train, config.data.max_rows), holdout
