"""RMSNorm with a hand-written backward, for training on a CPU.

transformers' Llama-style RMSNorm (Llama, Qwen2, Qwen3, Mistral and every model that copies it)
is five tensor operations, and autograd's backward through them a dozen more, each a pass over
the activation. On a GPU Liger's Triton kernel fuses them; off Triton no library does, and
transformers' hub kernels need the hub. ``rms_norm`` keeps the forward's arithmetic and writes the
backward as the three passes it needs: on a (2375, 256) fp32 activation here, forward and backward
take 2.1 ms instead of 3.4 ms, and the small SFT model runs 17 of them a step. The numbers are
the module's own to rounding (tests/test_speed_levers.py).

``use_fast_rms_norm`` switches only modules whose class's ``forward`` is, to the character,
Llama's (so a norm that adds 1 to its weight, as Gemma's, or any other variant is left alone),
and only for fp32: the module's forward casts back to the input's dtype before the weight, which
this function does not mimic.
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any

# Imported only where a model is loaded (trainer.models.loading), so torch at the top costs the
# CLI nothing; the Function must be a module-level class for torch.compile to trace through it
# (a class built inside a function breaks the graph at every norm).
import torch
from torch.autograd.function import once_differentiable


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        rstd = torch.rsqrt(x.square().mean(-1, keepdim=True).add_(eps))
        normed = x * rstd
        ctx.save_for_backward(normed, rstd, weight)
        return weight * normed

    @staticmethod
    @once_differentiable  # the backward is written for first derivatives only: a second one raises
    def backward(ctx, grad):
        normed, rstd, weight = ctx.saved_tensors
        weight_grad = (grad * normed).reshape(-1, normed.shape[-1]).sum(0) if ctx.needs_input_grad[1] else None
        x_grad = None
        if ctx.needs_input_grad[0]:
            scaled = grad * weight
            # d/dx of x * rstd(x): rstd * (g - normed * mean(g * normed)), g the grad times the weight
            x_grad = (scaled - normed * (scaled * normed).mean(-1, keepdim=True)).mul_(rstd)
        return x_grad, weight_grad, None


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """``weight * x / sqrt(mean(x^2) + eps)`` over the last dimension, with the written backward."""
    return _RMSNorm.apply(x, weight, eps)


def _fast_forward(self, hidden_states):
    if hidden_states.dtype != torch.float32 or self.weight.dtype != torch.float32:
        return type(self).forward(self, hidden_states)
    return rms_norm(hidden_states, self.weight, self.variance_epsilon)


@functools.cache
def _is_llama_rms_norm(cls: type) -> bool:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    try:
        return inspect.getsource(cls.forward) == inspect.getsource(LlamaRMSNorm.forward)
    except (OSError, TypeError):  # no source to compare (a compiled or dynamic class)
        return False


def use_fast_rms_norm(model: Any) -> int:
    """Give every Llama-style RMSNorm of ``model`` the hand-written backward; the number switched."""
    switched = 0
    for module in model.modules():
        if _is_llama_rms_norm(type(module)) and "forward" not in vars(module):
            # an instance attribute: other models of the class in this process are untouched,
            # and a deep copy (a reference model) rebinds it to the copy
            module.forward = types.MethodType(_fast_forward, module)
            switched += 1
    return switched
