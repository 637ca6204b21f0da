"""The held-out rows: probes and evaluation data that training never sees.

Works on any item with ``messages`` (the rendered conversation, the answer last): SFT rows and
preference pairs (prompt plus chosen answer) alike.
"""

from __future__ import annotations

import json
import random
from typing import Any, TypeVar

from trainer.data.example import DataError
from trainer.data.report import DataReport

T = TypeVar("T")


def prompt_key(item: Any) -> str:
    return json.dumps(item.messages[:-1], sort_keys=True, ensure_ascii=False)


def split_holdout(rendered: list[T], size: int, seed: int, report: DataReport) -> tuple[list[T], list[T]]:
    """Held-out rows with distinct prompts, none of which is also trained on.

    Rows are drawn in a seeded shuffle, skipping a prompt already held out; every training row
    that repeats a held-out prompt is kept out of training too (counted), or the probes would
    measure memory, not learning. Exact duplicate rows are counted for the report.
    """
    seen: set[str] = set()
    for item in rendered:
        key = json.dumps(item.messages, sort_keys=True, ensure_ascii=False)
        report.rows_duplicate += key in seen
        seen.add(key)
    order = list(range(len(rendered)))
    random.Random(seed).shuffle(order)
    held_prompts: dict[str, int] = {}
    for index in order:
        if len(held_prompts) >= size:
            break
        held_prompts.setdefault(prompt_key(rendered[index]), index)
    held = set(held_prompts.values())
    holdout = [r for i, r in enumerate(rendered) if i in held]
    train, copies = [], 0
    for i, item in enumerate(rendered):
        if i in held:
            continue
        if prompt_key(item) in held_prompts:
            copies += 1
            continue
        train.append(item)
    report.rows_held_out_copies = copies
    if holdout and len(train) < len(holdout):
        distinct = len({prompt_key(r) for r in rendered})
        raise DataError(
            f"data.holdout_size={size} holds out {len(holdout)} of {len(rendered)} usable rows "
            f"({distinct} distinct prompts{f', {copies} copies of held-out prompts kept out of training' if copies else ''}), "
            f"leaving {len(train)} to train on. Lower it (e.g. --set data.holdout_size="
            f"{max(0, min(size, distinct // 10))}) or add rows."
        )
    return train, holdout
