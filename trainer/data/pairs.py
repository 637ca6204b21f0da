"""Preference data: files -> preference pairs in the profile's format -> TRL's conversational
``prompt / chosen / rejected`` rows, for dpo, orpo, simpo and reward models.

Rows are read once (``trainer.data.readers``), take the preference shape
(``trainer.data.shapes``) or are rejected with the reason, and are counted per shape in the
report. TRL tokenizes the pairs itself with the tokenizer's chat template (ours, set by the
engine); we tokenize them too, only to count lengths, because TRL's own truncation and its drop
of prompts that fill ``max_length`` are silent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config.schema import TrainerConfig
from trainer.data.example import Probe, Rejected, RowError
from trainer.data.holdout import split_holdout
from trainer.data.readers import iter_rows, stop_on_unreadable
from trainer.data.report import DataReport, length_stats
from trainer.data.shapes import PreferencePair, convert_shaped, detect_shape, render_pair
from trainer.profiles import DataProfile

SAMPLES_SHOWN = 3


class _Item:
    """A rendered pair, with ``messages`` (prompt + chosen) for the held-out split."""

    def __init__(self, pair: PreferencePair):
        self.pair = pair
        self.messages = [*pair.prompt, {"role": "assistant", "content": pair.chosen}]


def _where(source: str) -> tuple[str, int | None]:
    file, _, line = source.rpartition(":")
    return file, int(line) if line.isdigit() else None


def _read_pairs(config: TrainerConfig, files: list[Path], profile: DataProfile, report: DataReport, rejects: list[Rejected]):
    columns = config.data.columns.model_dump()
    items = []
    for row in iter_rows(files):
        report.rows_total += 1
        if isinstance(row, Rejected):
            rejects.append(row)
            continue
        source = f"{row.file}:{row.line}"
        try:
            shape = detect_shape(row.data, "preference", columns)
            pair = convert_shaped(row.data, "preference", columns, shape=shape, source=source)
        except RowError as exc:
            rejects.append(Rejected(row.file, row.line, str(exc), row.data, stage="convert"))
            continue
        try:
            pair = render_pair(pair, profile, config.profile.system_prompt)
        except RowError as exc:
            rejects.append(Rejected(row.file, row.line, str(exc), row.data, stage="profile"))
            continue
        pair.source = source
        report.formats[shape] = report.formats.get(shape, 0) + 1
        items.append(_Item(pair))
    return items


def _length(tokenizer: Any, template: str | None, prompt: list[dict], answer: str) -> int:
    messages = [*prompt, {"role": "assistant", "content": answer}]
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _marked(tokenizer: Any, template: str | None, pair: PreferencePair) -> str:
    prompt = tokenizer.apply_chat_template(pair.prompt, chat_template=template, tokenize=False, add_generation_prompt=True)
    return f"{prompt}[[{pair.chosen}]]\n--- rejected (verbatim) ---\n{prompt}[[{pair.rejected}]]"


def build_pairs(config: TrainerConfig, files: list[Path], tokenizer: Any, template: str | None, profile: DataProfile, eos_ids: set[int]):
    """(columns, probes, report, rejects, {"heldout": pairs}) for a preference method; see
    ``prepare_data``."""
    report = DataReport.for_job(config, files, profile)
    rejects: list[Rejected] = []
    items = _read_pairs(config, files, profile, report, rejects)
    stop_on_unreadable(rejects)
    train, holdout = split_holdout(items, config.data.holdout_size, config.hyperparams.seed, report)
    train = report.cap_rows(train, config.data.max_rows)

    max_len, policy = config.data.max_length, config.data.overlong_policy
    columns: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    lengths, overlong = [], []
    for item in train:
        pair = item.pair
        longest = max(_length(tokenizer, template, pair.prompt, pair.chosen), _length(tokenizer, template, pair.prompt, pair.rejected))
        lengths.append(longest)
        if longest > max_len:
            if policy == "error":
                overlong.append(f"{pair.source} ({longest} tokens)")
                continue
            if policy == "drop":
                rejects.append(Rejected(*_where(pair.source), f"longer than data.max_length ({longest} > {max_len} tokens)", None, "length"))
                continue
            report.rows_truncated += 1  # TRL keeps the start (truncation_mode keep_start)
        conversational = pair.to_trl()
        for key in columns:
            columns[key].append(conversational[key])
    report.record_lengths(lengths)
    if overlong:
        raise report.overlong_error(overlong, "pairs")
    report.rows_used = len(columns["prompt"])
    report.rows_held_out = len(holdout)
    report.count_rejects(rejects)
    report.token_lengths = length_stats(lengths)
    report.samples = [_marked(tokenizer, template, item.pair) for item in train[:SAMPLES_SHOWN]]
    # A probe's golden answer is the one the chosen answer states, read as the profile reads it.
    probes = [
        Probe(item.pair.prompt, profile.check_format(item.pair.chosen).answer, item.pair.chosen, item.pair.source)
        for item in holdout
    ]
    # The whole held-out pairs, rejected answer included, for methods that score pairs (reward).
    heldout = [{**item.pair.to_trl(), "source": item.pair.source} for item in holdout]
    return columns, probes, report, [r.to_json() for r in rejects], {"heldout": heldout}
