"""Padding-free attention for devices without a variable-length kernel (CPU, MPS).

A padding-free batch is one row: the batch's sequences end to end, with ``position_ids``
restarting at 0 for each and the sequence boundaries in ``cu_seq_lens_q`` (TRL's collator sets
both). Flash attention reads those boundaries natively. SDPA does not: transformers gives it a
block-diagonal mask over the whole row, which keeps the sequences apart but costs attention over
(sum of lengths)^2 positions instead of the sum of each length^2, and it loses SDPA's fast
``is_causal`` path. ``segmented_sdpa`` runs SDPA once per sequence with ``is_causal=True``: the
same numbers as the padded batch (tests/test_speed_levers.py), with neither padding nor a mask.

A caller may lay the row out explicitly (``SEGMENTS``), which also lets a segment continue a
prefix of an earlier one: ``trainer.models.unpad`` computes a DPO pair's shared prompt once so.

Anything that is not a padding-free row of one batch (a padded batch, generation with a cache)
gets transformers' own SDPA mask and function, so a model set to this implementation generates as
before. Models whose attention is more than causal (sliding-window or chunked layers, logit
soft-capping) are not switched: per-sequence ``is_causal`` would drop their window or cap.
"""

from __future__ import annotations

import itertools
from typing import Any

NAME = "segmented_sdpa"
# The model-call keyword that lays a padding-free row out as segments explicitly (trainer.models.unpad
# sets it; transformers hands unknown keywords down to the attention function): one
# (start, end, prefix_start, prefix_length) per segment, where a segment with a prefix continues the
# first prefix_length tokens of the sequence starting at prefix_start (a DPO pair's shared prompt).
SEGMENTS = "padding_free_segments"


def segment_bounds(kwargs: dict[str, Any]) -> list[int] | None:
    """Start offsets of the packed sequences plus the row's end, or None when not packed."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is not None:
        return [int(b) for b in bounds.tolist()]
    position_ids = kwargs.get("position_ids")
    if position_ids is None or position_ids.shape[0] != 1:
        return None
    # A collator of the user's that sets only position_ids still packs: a 0 starts a sequence.
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if len(starts) <= 1:
        return None
    if starts[0] != 0:  # a row that starts mid-sequence: its first tokens are a sequence too
        starts = [0, *starts]
    return starts + [int(position_ids.shape[1])]


def segmented_sdpa_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    import torch
    from transformers.integrations.sdpa_attention import (
        repeat_kv,
        sdpa_attention_forward,
    )

    one_row = query.shape[0] == 1 and query.shape[2] == key.shape[2]
    segments = kwargs.get(SEGMENTS) if one_row else None
    if segments is None:
        bounds = segment_bounds(kwargs) if one_row else None
        segments = None if bounds is None else [(start, end, 0, 0) for start, end in itertools.pairwise(bounds)]
    if segments is None or attention_mask is not None or kwargs.get("sliding_window") is not None:
        kwargs.pop(SEGMENTS, None)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    # Cut the row into its segments with one split rather than a slice per segment: a slice's
    # backward writes its gradient into a zeroed tensor of the whole row's size, once per segment
    # and tensor (a third of the attention's time on a batch of 8 sequences here); a split's
    # backward is one concatenation. Segments that do not tile the row are sliced.
    lengths = _tiling(segments, query.shape[2])
    if lengths is None:
        pieces = [(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e]) for s, e, _, _ in segments]
    else:
        pieces = list(zip(*(t.split(lengths, dim=2) for t in (query, key, value))))
    index = {start: i for i, (start, end, _, _) in enumerate(segments) if end > start}
    parts = []
    for (start, end, prefix_start, prefix_length), (q, k, v) in zip(segments, pieces):
        if end <= start:
            continue
        if not prefix_length:
            parts.append(torch.nn.functional.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout, scale=scaling, is_causal=True,
            ))
            continue
        # the segment continues the first prefix_length tokens of an earlier sequence: its keys are
        # that prefix and then its own, causal from the bottom right
        earlier = index.get(prefix_start)
        if lengths is not None and earlier is not None and lengths[earlier] >= prefix_length:
            prefix_keys, prefix_values = (t[:, :, :prefix_length] for t in pieces[earlier][1:])
        else:
            prefix = slice(prefix_start, prefix_start + prefix_length)
            prefix_keys, prefix_values = key[:, :, prefix], value[:, :, prefix]
        keys = torch.cat([prefix_keys, k], dim=2)
        values = torch.cat([prefix_values, v], dim=2)
        causal = torch.ones(end - start, prefix_length + end - start, dtype=torch.bool, device=query.device).tril(prefix_length)
        parts.append(torch.nn.functional.scaled_dot_product_attention(
            q, keys, values, attn_mask=causal, dropout_p=dropout, scale=scaling,
        ))
    # (batch, heads, tokens, head_dim) -> (batch, tokens, heads, head_dim), as every attention
    # function of transformers returns it
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def _tiling(segments: list[tuple[int, int, int, int]], length: int) -> list[int] | None:
    """The segments' lengths if they lay the row out end to end from 0 to ``length``, else None."""
    lengths, offset = [], 0
    for start, end, _, _ in segments:
        if start != offset or end < start:
            return None
        lengths.append(end - start)
        offset = end
    return lengths if offset == length else None


def segmented_sdpa_mask(batch_size, *args, attention_mask=None, **kwargs):
    """No mask for one row without padding (the attention splits it into its sequences itself);
    SDPA's own mask for everything else, e.g. several rows packed by position_ids alone."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and batch_size == 1:
        return None
    return sdpa_mask(batch_size, *args, attention_mask=attention_mask, **kwargs)


def register() -> str:
    """Make ``segmented_sdpa`` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, segmented_sdpa_forward)
    AttentionMaskInterface.register(NAME, segmented_sdpa_mask)
    return NAME


def only_causal(config: Any) -> bool:
    """True if every attention layer of ``config`` is plain causal attention."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = set(getattr(text, "layer_types", None) or ["full_attention"])
    sliding = getattr(text, "sliding_window", None) is not None and getattr(text, "use_sliding_window", True)
    return (
        layer_types <= {"full_attention"}
        and not sliding
        and getattr(text, "attention_chunk_size", None) is None
        and getattr(text, "attn_logit_softcapping", None) is None
    )


def use_segmented_attention(model: Any) -> bool:
    """Switch a model on SDPA to ``segmented_sdpa`` for padding-free training; True if switched.
    Flash attention (varlen natively), eager (a user's explicit choice) and models with more than
    causal attention (``only_causal``) are left alone: transformers' block mask serves those."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa" or not only_causal(model.config):
        return False
    model.set_attn_implementation(register())
    return True
