"""Labeled text (classify): files -> ``text / label`` rows -> plain-text tokens and class ids.

A classifier reads the text as written, so neither a profile nor the chat template applies: the
text is tokenized on its own (with the tokenizer's own special tokens, as the model saw plain
text in pretraining). Every row is used, held out, rejected with its reason (a null or empty
label, an empty text, a row longer than ``data.max_length`` under ``overlong_policy: drop``) or
unused (``data.max_rows``), and counted. The classes are the sorted distinct labels of the usable
rows; a label's position in that list is its id (the saved model's ``id2label``).

Over-long rows are judged before the held-out split, so held-out rows are scored exactly as
training rows are read. The held-out rows have distinct texts, and a training row that repeats a
held-out text is kept out of training (``trainer.data.holdout``), as for every other shape.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config.schema import TrainerConfig
from trainer.data.example import DataError, Rejected, RowError
from trainer.data.holdout import split_holdout
from trainer.data.readers import iter_rows, stop_on_unreadable
from trainer.data.report import DataReport, length_stats
from trainer.data.shapes import LabeledText, to_labeled

SAMPLES_SHOWN = 3


@dataclass
class _Item:
    """A usable row; ``messages`` (the text as the "prompt", the label as the "answer") is what
    the held-out split keys on."""

    row: LabeledText
    input_ids: list[int] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.row.text}, {"role": "assistant", "content": self.row.label}]


def _where(source: str) -> tuple[str, int | None]:
    file, _, line = source.rpartition(":")
    return file, int(line) if line.isdigit() else None


def _read(config: TrainerConfig, files: list[Path], report: DataReport, rejects: list[Rejected]) -> list[_Item]:
    columns = config.data.columns.model_dump()
    items = []
    for row in iter_rows(files):
        report.rows_total += 1
        if isinstance(row, Rejected):
            rejects.append(row)
            continue
        try:
            labeled = to_labeled(row.data, columns, source=f"{row.file}:{row.line}")
        except RowError as exc:
            rejects.append(Rejected(row.file, row.line, str(exc), row.data, stage="convert"))
            continue
        report.formats["text_label"] = report.formats.get("text_label", 0) + 1
        items.append(_Item(labeled))
    return items


def _tokenize(items: list[_Item], tokenizer: Any, config: TrainerConfig, report: DataReport, rejects: list[Rejected]) -> list[_Item]:
    """Tokenize each text; rows longer than ``data.max_length`` follow ``data.overlong_policy``.

    Raises:
        DataError: over-long rows under ``overlong_policy: error``.
    """
    max_len, policy = config.data.max_length, config.data.overlong_policy
    kept, overlong, lengths = [], [], []
    for item in items:
        ids = tokenizer(item.row.text, add_special_tokens=True, verbose=False)["input_ids"]
        if not ids:
            rejects.append(Rejected(*_where(item.row.source), "the text has no token", None, "tokenize"))
            continue
        lengths.append(len(ids))
        if len(ids) > max_len:
            if policy == "error":
                overlong.append(f"{item.row.source} ({len(ids)} tokens)")
                continue
            if policy == "drop":
                reason = f"longer than data.max_length ({len(ids)} > {max_len} tokens)"
                rejects.append(Rejected(*_where(item.row.source), reason, None, "length"))
                continue
            ids = ids[:max_len]  # the classifier reads the start of the text
            report.rows_truncated += 1
        item.input_ids = ids
        kept.append(item)
    report.record_lengths(lengths)
    if overlong:
        raise report.overlong_error(overlong)
    return kept


def build_labeled(config: TrainerConfig, files: list[Path], tokenizer: Any, template: str | None, profile: Any, eos_ids: set[int]):
    """(columns, probes, report, rejects, {"heldout", "classes"}) for classify; see
    ``trainer.data.prepare.prepare_data``. ``template``, ``profile`` and ``eos_ids`` are unused:
    plain text has no chat turns and no answer format.

    Raises:
        DataError: an unreadable file, over-long rows under policy 'error', a single class, or
            a holdout that leaves fewer rows to train on than it holds out.
    """
    report = DataReport(
        files=[str(f) for f in files],
        max_length=config.data.max_length,
        overlong_policy=config.data.overlong_policy,
        profile="none (plain text)",
    )
    rejects: list[Rejected] = []
    items = _read(config, files, report, rejects)
    stop_on_unreadable(rejects)
    items = _tokenize(items, tokenizer, config, report, rejects)
    classes = sorted({item.row.label for item in items})
    if len(classes) == 1:
        raise DataError(
            f"every usable row has the label {classes[0]!r}; a classifier needs at least two classes "
            f"({len(items)} rows in {', '.join(report.files)})"
        )
    train, holdout = split_holdout(items, config.data.holdout_size, config.hyperparams.seed, report)
    train = report.cap_rows(train, config.data.max_rows)

    ids = {name: index for index, name in enumerate(classes)}
    columns = {"input_ids": [item.input_ids for item in train], "labels": [ids[item.row.label] for item in train]}
    report.rows_used = len(train)
    report.rows_held_out = len(holdout)
    report.count_rejects(rejects)
    report.token_lengths = length_stats([len(item.input_ids) for item in train])
    report.samples = [f"text: [[{item.row.text}]]\nlabel: {item.row.label}" for item in train[:SAMPLES_SHOWN]]
    counts = Counter(item.row.label for item in train)
    report.checks = {"training_rows_per_class": {name: counts.get(name, 0) for name in classes}}
    heldout = [
        {"input_ids": item.input_ids, "label": ids[item.row.label], "text": item.row.text, "source": item.row.source}
        for item in holdout
    ]
    return columns, [], report, [r.to_json() for r in rejects], {"heldout": heldout, "classes": classes}
