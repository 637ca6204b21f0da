"""Padding-free rows rounded up to a few lengths, so that a CPU's bf16 matmuls reuse their kernels.

A CPU multiplies bf16 through oneDNN, which compiles a kernel (JIT) for every new matrix shape
and caches it by shape. A padding-free row has a length of its own every step, and so has the set
of positions an LM head scores: every linear layer's forward and backward compiled afresh each
step. Measured in a bare loop over the small SFT job's batches (3.7 M parameters, ~2,400-token
rows, bfloat16-mixed): 12 steps took 3.56 s over lengths seen for the first time and 2.65 s over
the same lengths again. float32 goes through MKL's GEMM, which compiles nothing per shape (5.27
against 5.70 s), so only bf16 on a CPU is bucketed.

``bucket(n)`` rounds n up to a multiple of 1/32 of the power of two below it, and of at least 16:
32 lengths per doubling, and at most 3% more tokens (about 1.5% on average) from 512 tokens up,
at most 15 below that.

- The backbone (``bucket_rows``): a padding-free row of n tokens gets one more sequence of
  ``bucket(n) - n`` filler tokens, with positions from 0 and an attention segment of their own
  (``trainer.models.attention``), and the hidden states are cut back to n before anything reads
  them. No real token attends to a filler one, so every real hidden state is what it was; the
  filler's rows receive no gradient.
- The LM head (``trainer.models.lm_head``): the scored rows get zero rows up to ``bucket(n)``,
  and every output is cut back to n.
"""

from __future__ import annotations

import types
from typing import Any

from trainer.models.attention import SEGMENTS

MIN_MULTIPLE = 16
STEPS_PER_DOUBLING = 32
# Arguments of a call that is not a fresh padding-free training row (a cache, precomputed
# embeddings, outputs per layer or per router laid out by the row): such calls run as they are.
_NOT_A_ROW = ("past_key_values", "cache", "inputs_embeds", "attention_mask", "cache_position",
              "output_hidden_states", "output_attentions", "output_router_logits")
# The same outputs asked for by the model's config instead of the call
CONFIG_OUTPUTS = ("output_hidden_states", "output_attentions", "output_router_logits")
# The filler's token: any id of the vocabulary serves (nothing reads the filler), and 0 is one in
# every vocabulary, where a config's pad_token_id may be missing, -1 or past the embeddings
FILLER_ID = 0


def bucket(n: int) -> int:
    """``n`` rounded up to the next bucket length (see the module's docstring)."""
    if n <= MIN_MULTIPLE:
        return MIN_MULTIPLE
    multiple = max(MIN_MULTIPLE, (1 << (n.bit_length() - 1)) // STEPS_PER_DOUBLING)
    return -(-n // multiple) * multiple


def bf16_on_cpu(tensor: Any) -> bool:
    """Whether ``tensor``'s matmuls would run in bf16 on a CPU: autocast to bf16, or bf16 itself."""
    import torch

    if tensor.device.type != "cpu":
        return False
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu") == torch.bfloat16
    return tensor.dtype == torch.bfloat16


def asks_layout_outputs(config: Any, kwargs: dict[str, Any]) -> bool:
    """Whether the model's config asks for outputs laid out by the row (per layer or router), or
    the call or config for a tuple instead of a ModelOutput: a call whose row the backbone may
    not lay out differently (here, and in ``trainer.models.unpad``)."""
    return (any(getattr(config, name, False) for name in CONFIG_OUTPUTS)
            or kwargs.get("return_dict", getattr(config, "return_dict", True)) is False)


def other_per_token_input(kwargs: dict[str, Any], shape: tuple[int, ...], known: set[str]) -> bool:
    """Whether a call has a per-token input of ``shape`` (token_type_ids, ...) besides ``known``:
    it would reach a call laid out differently in its old shape."""
    return any(hasattr(v, "shape") and tuple(v.shape[:2]) == tuple(shape) for k, v in kwargs.items() if k not in known)


def padded_row(kwargs: dict[str, Any], pad_id: int = FILLER_ID) -> tuple[dict[str, Any], int] | None:
    """A padding-free backbone call's keywords with the row filled up to its bucket, and the real
    length; None for any other call, or a row already at a bucket length."""
    import torch

    ids, positions = kwargs.get("input_ids"), kwargs.get("position_ids")
    if ids is None or positions is None or ids.dim() != 2 or ids.shape[0] != 1 or kwargs.get("use_cache") is not False:
        return None
    # a (3, 1, n) layout of multimodal rotary positions is not one row's positions
    if positions.dim() != 2:
        return None
    if any(kwargs.get(name) is not None and kwargs.get(name) is not False for name in _NOT_A_ROW):
        return None
    n = ids.shape[1]
    # any other per-token input would need filling too: left as it is
    if other_per_token_input(kwargs, (1, n), {"input_ids", "position_ids", "seq_idx"}):
        return None
    filler = bucket(n) - n
    if not filler:
        return None
    out = dict(kwargs)
    out["input_ids"] = torch.cat([ids, ids.new_full((1, filler), pad_id)], dim=1)
    out["position_ids"] = torch.cat([positions, torch.arange(filler, dtype=positions.dtype, device=positions.device)[None]], dim=1)
    for name in ("cu_seq_lens_q", "cu_seq_lens_k"):  # the filler is one more sequence
        if kwargs.get(name) is not None:
            bounds = kwargs[name]
            out[name] = torch.cat([bounds, bounds.new_tensor([n + filler])])
    for name in ("max_length_q", "max_length_k"):
        if kwargs.get(name) is not None:
            out[name] = max(int(kwargs[name]), filler)
    if kwargs.get("seq_idx") is not None:
        seq_idx = kwargs["seq_idx"]
        out["seq_idx"] = torch.cat([seq_idx, seq_idx.new_full((1, filler), int(seq_idx.max()) + 1)], dim=1)
    if kwargs.get(SEGMENTS) is not None:
        out[SEGMENTS] = [*kwargs[SEGMENTS], (n, n + filler, 0, 0)]
    return out, n


def forward_row(backbone: Any, forward: Any, kwargs: dict[str, Any]) -> Any:
    """``forward(backbone, **kwargs)``, through a bucketed row where it is one (``padded_row``)
    and its matmuls run in bf16 on a CPU; the hidden states come back at the real length."""
    asked = asks_layout_outputs(backbone.config, kwargs)
    padded = None if asked or not bf16_on_cpu(backbone.get_input_embeddings().weight) else padded_row(kwargs)
    if padded is None:
        return forward(backbone, **kwargs)
    outputs = forward(backbone, **padded[0])
    outputs.last_hidden_state = outputs.last_hidden_state[:, : padded[1]]
    return outputs


def _bucketing_forward(self, *args, **kwargs):
    """The backbone's forward, through a bucketed row (``forward_row``). A method bound to its
    module, so a deep copy of the model buckets its own backbone."""
    if args:
        return type(self).forward(self, *args, **kwargs)
    return forward_row(self, type(self).forward, kwargs)


def bucket_rows(model: Any) -> None:
    """Have ``model``'s backbone compute padding-free rows at bucket lengths (see the module's
    docstring). A backbone whose forward is already replaced (``trainer.models.unpad``) buckets
    through that replacement instead. Mixture-of-experts models are left alone."""
    if getattr(model, "get_base_model", None) is not None:  # a peft wrapper: the causal LM inside
        model = model.get_base_model()
    if hasattr(model.config.get_text_config(), "output_router_logits"):
        # mixture-of-experts: the router's load-balancing loss is taken over every token of the
        # row, so filler tokens would change it (and train through it)
        return
    backbone = model.base_model
    if "forward" not in vars(backbone):
        backbone.forward = types.MethodType(_bucketing_forward, backbone)
