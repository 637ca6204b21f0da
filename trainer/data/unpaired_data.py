"""Unpaired data: files -> examples judged one at a time, in the profile's format -> TRL's
conversational ``prompt / completion / label`` rows, for kto.

Rows are read once (``trainer.data.readers``). A row takes the unpaired shape (TRL's
``prompt / completion / label``, LLaMA-Factory's ``messages`` or ``conversations`` with a
``label`` / ``kto_tag``), or else the preference shape, and a pair is split into a desirable and
an undesirable example, as TRL's ``unpair_preference_dataset`` splits one; a row that takes
neither is rejected with the reason. The report counts rows (a split pair is one row, trained,
held out or rejected as one), per shape, and says how many desirable and undesirable examples
went to training. TRL tokenizes the examples itself with the tokenizer's chat template (ours, set
by the engine); we tokenize them too, only to count lengths, because TRL's truncation and its
drop of prompts that fill ``max_length`` are silent.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from trainer.config.schema import TrainerConfig
from trainer.data.example import Probe, Rejected, RowError
from trainer.data.holdout import prompt_key, split_holdout
from trainer.data.pairs import _length, _where  # the pair builder's: tokens of one answer, "<file>:<line>"
from trainer.data.readers import iter_rows, stop_on_unreadable
from trainer.data.report import DataReport, length_stats
from trainer.data.shapes import (
    PREFERENCE_SHAPES,
    UNPAIRED_SHAPES,
    UnpairedExample,
    convert_shaped,
    detect_shape,
    render_pair,
    render_unpaired,
    unpair,
)
from trainer.profiles import DataProfile

SAMPLES_SHOWN = 3


class _Item:
    """One row's rendered examples: one, or the two halves of a pair. ``messages`` (the prompt
    and its desirable completion, else its only completion) is what the held-out split and the
    duplicate count look at; ``desirable`` is the example a probe is made from, if any."""

    def __init__(self, examples: list[UnpairedExample], source: str):
        self.examples = examples
        self.source = source
        self.desirable = next((e for e in examples if e.label), None)
        first = self.desirable or examples[0]
        self.messages = [*first.prompt, {"role": "assistant", "content": first.completion}]


def _detect(data: dict[str, Any], columns: dict[str, Any]) -> tuple[str, str]:
    """(family, shape): an unpaired shape first, then a preference shape (split later).

    Raises:
        RowError: the row takes neither; the message lists both families' shapes.
    """
    for family in ("unpaired", "preference"):
        try:
            return family, detect_shape(data, family, columns)
        except RowError:
            continue
    known = "; ".join(f"{name} ({shape.describe()})" for name, shape in {**UNPAIRED_SHAPES, **PREFERENCE_SHAPES}.items())
    raise RowError(
        f"cannot read the row as unpaired data or as a preference pair from its columns {list(data)}; "
        f"known shapes: {known}; set data.columns to name yours"
    )


def _render(family: str, shaped: Any, profile: DataProfile, base_prompt: str) -> list[UnpairedExample]:
    """The row's examples in the profile's format. A pair is rendered as a pair first (so a
    chosen answer that becomes the rejected one in the profile's format is refused, as for dpo),
    then split: rendering either way gives the same texts (``shapes.unpair``)."""
    if family == "preference":
        return list(unpair(render_pair(shaped, profile, base_prompt)))
    return [render_unpaired(shaped, profile, base_prompt)]


def _read_items(config: TrainerConfig, files: list[Path], profile: DataProfile, report: DataReport, rejects: list[Rejected]):
    columns = config.data.columns.model_dump()
    items = []
    for row in iter_rows(files):
        report.rows_total += 1
        if isinstance(row, Rejected):
            rejects.append(row)
            continue
        source = f"{row.file}:{row.line}"
        try:
            family, shape = _detect(row.data, columns)
            shaped = convert_shaped(row.data, family, columns, shape=shape, source=source)
        except RowError as exc:
            rejects.append(Rejected(row.file, row.line, str(exc), row.data, stage="convert"))
            continue
        try:
            examples = _render(family, shaped, profile, config.profile.system_prompt)
        except RowError as exc:
            rejects.append(Rejected(row.file, row.line, str(exc), row.data, stage="profile"))
            continue
        for example in examples:
            example.source = source
        report.formats[shape] = report.formats.get(shape, 0) + 1
        items.append(_Item(examples, source))
    return items


def _split(items: list[_Item], size: int, seed: int, report: DataReport) -> tuple[list[_Item], list[_Item]]:
    """Held-out rows with distinct prompts, drawn only from rows with a desirable example (a
    probe asks the prompt and compares with that answer); a row of undesirable examples only
    whose prompt is held out is kept out of training too, counted as a copy."""
    candidates = [item for item in items if item.desirable is not None]
    others = [item for item in items if item.desirable is None]
    train, holdout = split_holdout(candidates, size, seed, report)
    seen = {json.dumps(item.messages, sort_keys=True, ensure_ascii=False) for item in candidates}
    for item in others:  # split_holdout counted the duplicates among the candidates
        key = json.dumps(item.messages, sort_keys=True, ensure_ascii=False)
        report.rows_duplicate += key in seen
        seen.add(key)
    held = {prompt_key(item) for item in holdout}
    kept = [item for item in others if prompt_key(item) not in held]
    report.rows_held_out_copies += len(others) - len(kept)
    training = set(map(id, train + kept))
    return [item for item in items if id(item) in training], holdout  # file order, for max_rows and samples


def _marked(tokenizer: Any, template: str | None, item: _Item) -> str:
    blocks = []
    for example in item.examples:
        prompt = tokenizer.apply_chat_template(example.prompt, chat_template=template, tokenize=False, add_generation_prompt=True)
        label = "desirable" if example.label else "undesirable (verbatim)"
        blocks.append(f"--- {label} ---\n{prompt}[[{example.completion}]]")
    return "\n".join(blocks)


def _prompt_length(tokenizer: Any, template: str | None, prompt: list[dict]) -> int:
    text = tokenizer.apply_chat_template(prompt, chat_template=template, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _fit(items: list[_Item], config: TrainerConfig, tokenizer: Any, template: str | None, report: DataReport, rejects: list[Rejected]):
    """The items that fit ``data.max_length`` under ``data.overlong_policy``, judged per row by its
    longest example; and every row's longest length, before any drop.

    Raises:
        DataError: over-long rows and policy 'error'.
    """
    max_len, policy = config.data.max_length, config.data.overlong_policy
    kept, lengths, overlong = [], [], []
    for item in items:
        longest = max(_length(tokenizer, template, e.prompt, e.completion) for e in item.examples)
        lengths.append(longest)
        if longest > max_len:
            where = _where(item.source)
            if policy == "error":
                overlong.append(f"{item.source} ({longest} tokens)")
                continue
            if policy == "drop":
                rejects.append(Rejected(*where, f"longer than data.max_length ({longest} > {max_len} tokens)", None, "length"))
                continue
            prompt = max(_prompt_length(tokenizer, template, e.prompt) for e in item.examples)
            if prompt >= max_len:
                # KTOTrainer drops such an example without a word: truncation would leave no
                # completion token to learn from.
                rejects.append(Rejected(*where, f"the prompt alone fills data.max_length ({prompt} >= {max_len} tokens), so truncation leaves no completion", None, "length"))
                continue
            report.rows_truncated += 1  # TRL keeps the start of the sequence
        kept.append(item)
    report.record_lengths(lengths)
    if overlong:
        raise report.overlong_error(overlong, "rows")
    return kept, lengths


def build_unpaired(config: TrainerConfig, files: list[Path], tokenizer: Any, template: str | None, profile: DataProfile, eos_ids: set[int]):
    """(columns, probes, report, rejects) for an unpaired method (kto); see ``prepare_data``.

    The examples come out shuffled (seeded by ``hyperparams.seed``): KTOTrainer reads them in
    order, not in a random sampler, because its KL estimate pairs each prompt with the completion
    of its neighbour in the batch; a shuffle mixes desirable and undesirable examples in every
    batch and keeps a split pair's two halves apart.
    """
    report = DataReport.for_job(config, files, profile)
    rejects: list[Rejected] = []
    items = _read_items(config, files, profile, report, rejects)
    stop_on_unreadable(rejects)
    train, holdout = _split(items, config.data.holdout_size, config.hyperparams.seed, report)
    train = report.cap_rows(train, config.data.max_rows)
    train, lengths = _fit(train, config, tokenizer, template, report, rejects)

    examples = [example for item in train for example in item.examples]
    random.Random(config.hyperparams.seed).shuffle(examples)
    columns: dict[str, list] = {"prompt": [], "completion": [], "label": []}
    for example in examples:
        for key, value in example.to_trl().items():
            columns[key].append(value)
    desirable = sum(columns["label"])
    report.rows_used = len(train)
    report.rows_held_out = len(holdout)
    report.count_rejects(rejects)
    report.token_lengths = length_stats(lengths)
    report.checks = {"unpaired_examples": f"{desirable} desirable, {len(examples) - desirable} undesirable"}
    report.samples = [_marked(tokenizer, template, item) for item in train[:SAMPLES_SHOWN]]
    # A probe asks a held-out prompt; its golden answer is the one the desirable completion
    # states, read as the profile reads it.
    probes = [
        Probe(e.prompt, profile.check_format(e.completion).answer, e.completion, e.source)
        for e in (item.desirable for item in holdout)
        if e is not None
    ]
    return columns, probes, report, [r.to_json() for r in rejects]
