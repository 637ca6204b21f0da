"""Generation penalties: a real ``transformers`` logits processor that pushes chosen tokens down.

transformers ships ``SequenceBiasLogitsProcessor``, but it wants token-id tuples and a bias per
sequence, and applies multi-token sequences only once their prefix was generated. Profiles speak
in strings (``"<think>"``) and want that token made unlikely everywhere, so this module resolves
strings to token ids once and subtracts a fixed penalty from them. Only strings that are a single
token are penalized: the first piece of a multi-token string ("<" of "<think>" in a vocabulary
without that special token) also starts unrelated text, and banning it would damage answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

log = logging.getLogger(__name__)


class TokenPenaltyProcessor(LogitsProcessor):
    """Subtract ``penalty`` from the logits of ``token_ids`` at every generation step."""

    def __init__(self, token_ids: Iterable[int], penalty: float):
        self.token_ids = sorted(set(int(t) for t in token_ids))
        self.penalty = float(penalty)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.token_ids:
            return scores
        scores = scores.clone()
        scores[:, self.token_ids] -= self.penalty
        return scores


def single_token_ids(tokenizer: Any, strings: Sequence[str]) -> list[int]:
    """Ids of the strings that are one token in ``tokenizer``; the others are logged and skipped."""
    ids = []
    for text in strings:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1:
            ids.append(encoded[0])
        else:
            log.info("penalty string %r is %d tokens here; not penalized", text, len(encoded))
    return ids


def build_logits_processors(
    tokenizer: Any, penalties: Iterable[tuple[Sequence[str], float]]
) -> LogitsProcessorList:
    """One processor per (strings, penalty) pair, resolved against ``tokenizer``."""
    return LogitsProcessorList(
        TokenPenaltyProcessor(single_token_ids(tokenizer, strings), penalty)
        for strings, penalty in penalties
    )
