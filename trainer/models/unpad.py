"""Padded batches computed as one padding-free row, inside the model (CPU / MPS).

SFT's collator can lay a batch out padding-free itself (``trainer.methods.sft``). The preference
trainers cannot: TRL's DPO collator pads chosen and rejected sequences to the batch's longest
(its own ``padding_free`` is disabled in TRL 1.16 "after a refactor"), and its loss code slices
the padded ``[2 * pairs, length]`` log-probabilities. So the padding is taken out one level
down instead, where the flash-attention integrations do it (their "unpad / pad back"): the
backbone's forward drops the padded positions of a right- or left-padded batch, runs the
sequences end to end as one row (positions restarting at 0, ``segmented_sdpa`` keeping each
sequence's attention to itself), and scatters the hidden states back to the padded layout, zeros
at the padding. Everything above it (TRL's LM head, masks, loss) sees the shapes it expects.

DPO's batches are pairs: the chosen sequences, then the rejected ones of the same prompts. With
``pairs`` each rejected sequence is packed only from the first token where it leaves its chosen
one, and attends to the chosen one's tokens before that; its hidden states there are the chosen
one's, copied back (causal attention: a shared prefix has the same hidden states in both, and
its gradient is the sum of both uses). So a pair's prompt is computed once, as in "prefix
sharing" for preference training (Wang et al., 2024), with the padded batch's numbers up to float
rounding (tests/test_speed_levers.py).

Only a training-style call is unpadded: token ids, a 2-D attention mask that does pad (or any,
with ``pairs``), no cache, ``use_cache=False`` (TRL's fused LM head always passes it), no explicit
positions. Generation, cached decoding and batches without padding run the backbone's own
forward, unchanged. Positions are
counted over the real tokens, as ``generate`` counts them; for rotary models that gives the same
attention as the padded batch (left padding only shifts every position of a row alike). Each
row's tokens are one run, as TRL's collators lay them out; a mask with holes would be packed as
if the holes were not there. Mixture-of-experts models keep padded batches (their router loss is
taken over the padded layout). What changes is only what the padding computes: its hidden states
are zeros, so a figure averaged over padded positions too (ORPO's and SimPO's logged
``logits/chosen`` and ``logits/rejected``) reads differently; losses and log-probabilities do not.
"""

from __future__ import annotations

import types
from typing import Any

from trainer.models.attention import NAME, SEGMENTS, use_segmented_attention
from trainer.models.buckets import asks_layout_outputs, forward_row, other_per_token_input


# Arguments that make a call something other than a fresh training forward (a cache under either
# of its names, precomputed embeddings or positions, per-layer or per-router outputs, which would
# come back in the packed layout): such calls stay padded.
_NOT_A_TRAINING_CALL = ("cache", "past_key_values", "inputs_embeds", "position_ids", "cache_position",
                        "output_hidden_states", "output_attentions", "output_router_logits")


def _padded_training_call(backbone: Any, args: tuple, kwargs: dict) -> bool:
    """Whether a backbone call is one this module unpads (see the module's docstring)."""
    input_ids, attention_mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
    if args or input_ids is None or attention_mask is None or attention_mask.dim() != 2 or kwargs.get("use_cache") is not False:
        return False
    if any(kwargs.get(name) is not None for name in _NOT_A_TRAINING_CALL):
        return False
    if asks_layout_outputs(backbone.config, kwargs):
        return False
    # any other per-token input would reach the packed call in the padded shape
    if other_per_token_input(kwargs, tuple(input_ids.shape), {"input_ids", "attention_mask"}):
        return False
    return backbone._unpad_pairs or not bool(attention_mask.all())


def _layout(input_ids: Any, real: Any, pairs: bool) -> tuple[Any, Any, list[tuple[int, int, int, int]], Any]:
    """The padded batch as one row: its tokens, their positions, the attention's segments, and
    where in the row each real position of the padded batch is. With ``pairs``, row i + half
    (DPO's rejected sequence) is packed only from where it stops agreeing with row i (its chosen
    one), and attends to row i's tokens before that: their shared prompt is computed once."""
    import torch

    tokens = [row[keep] for row, keep in zip(input_ids, real)]
    half = len(tokens) // 2 if pairs and len(tokens) % 2 == 0 else 0
    ids, positions, segments, where, starts = [], [], [], [], []
    offset = 0
    for r, row in enumerate(tokens):
        shared = 0
        if half and r >= half:
            partner = tokens[r - half]
            n = min(len(row), len(partner))
            # causal attention: a prefix both rows share has the same hidden states in both
            shared = int((row[:n] == partner[:n]).long().cumprod(0).sum())
        own = len(row) - shared
        starts.append(offset)
        ids.append(row[shared:])
        positions.append(torch.arange(shared, len(row)))
        prefix_start = starts[r - half] if shared else 0
        segments.append((offset, offset + own, prefix_start, shared))
        where.append(torch.cat([torch.arange(prefix_start, prefix_start + shared), torch.arange(offset, offset + own)]))
        offset += own
    return torch.cat(ids).unsqueeze(0), torch.cat(positions).unsqueeze(0), segments, torch.cat(where)


def _unpadding_forward(self, *args, **kwargs):
    """The backbone's forward, through one padding-free row when the call is a padded training batch.
    A method bound to its module (not a closure), so a deep copy of the model unpads its own backbone."""
    forward = type(self).forward
    if not _padded_training_call(self, args, kwargs):
        return forward(self, *args, **kwargs)
    input_ids, real = kwargs["input_ids"], kwargs["attention_mask"].bool()
    # the layout is a few small host-side decisions per row: made on CPU copies, moved over once
    ids, positions, segments, where = _layout(input_ids.cpu(), real.cpu(), self._unpad_pairs)
    ids, positions, where = (t.to(input_ids.device) for t in (ids, positions, where))
    rest = {k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask")}
    # at a bucket length where bf16 matmuls on a CPU compile per shape (trainer.models.buckets)
    outputs = forward_row(self, forward, {**rest, "input_ids": ids, "attention_mask": None, "position_ids": positions, SEGMENTS: segments})
    hidden = outputs.last_hidden_state[0].index_select(0, where)  # a shared prefix's rows twice
    # masked_scatter keeps the padded layout differentiable: each real position gets its own row
    outputs.last_hidden_state = hidden.new_zeros(*real.shape, hidden.shape[-1]).masked_scatter(real.unsqueeze(-1), hidden)
    return outputs


def unpad_padded_batches(model: Any, pairs: bool = False) -> bool:
    """Have ``model`` compute padded training batches padding-free; True if it now does. With
    ``pairs`` (DPO's batches: chosen rows, then the same prompts' rejected rows), each pair's
    shared prefix is computed once. Needs the segmented attention (``trainer.models.attention``):
    a model on flash attention, eager, or with more than causal attention is left as it is."""
    if getattr(model, "get_base_model", None) is not None:  # a peft wrapper: the causal LM inside
        model = model.get_base_model()
    text = model.config.get_text_config()
    if hasattr(text, "output_router_logits"):
        # mixture-of-experts: the router's load-balancing loss is taken over the padded layout's
        # tokens (and a shared prompt would be routed once), so these keep padded batches
        return False
    if getattr(model.config, "_attn_implementation", None) != NAME and not use_segmented_attention(model):
        return False
    backbone = model.base_model  # the decoder under the LM head (Qwen3Model under Qwen3ForCausalLM)
    backbone._unpad_pairs = pairs
    backbone.forward = types.MethodType(_unpadding_forward, backbone)
    return True
