"""Per-token log-probabilities for small vocabularies, in place of TRL's tiled kernel.

TRL's trainers (SFT, DPO, KTO, ORPO, ...) score tokens through ``add_fused_lm_head``: the LM head
projects in tiles so that a 150k-token vocabulary never materialises ``[tokens, vocab]`` logits,
and the backward recomputes every tile. That is the right trade on a GPU with a large vocabulary.
On a CPU it is two costs at once: without Triton, TRL scores *every* position (prompt and padding
included, "compact" mode is Triton-only, to keep Neuron's shapes static), and the torch fallback
of the tile kernel recomputes the projection in Python-driven tiles. On a 2k-token vocabulary that
was a quarter of an SFT step here (bench/speed.py).

``install()`` swaps in, on CPU / MPS for vocabularies up to ``PLAIN_MAX_VOCAB``, plain autograd on the full
logits of the scored positions, and has CPUs score only the positions with a label, as TRL already
does on GPUs. Bigger vocabularies keep TRL's kernel. The outputs are TRL's, field for field
(log-probs, entropy, log sum of squared probabilities, mean logit, top-1), checked against TRL's
kernel in tests/test_speed_levers.py. TRL 1.16 is pinned (pyproject), and ``install`` refuses to
patch a TRL whose internals moved.
"""

from __future__ import annotations

from typing import Any

from trainer.models import buckets

# [tokens, 32k] fp32 logits of an 8 x 512 batch are 0.5 GB: past that, TRL's tiles pay.
PLAIN_MAX_VOCAB = 32768
# Where the plain path runs: devices without TRL's Triton kernel.
PLAIN_DEVICES = ("cpu", "mps")
_INSTALLED = {"done": False}


def plain_log_probs(
    hidden: Any,
    weight: Any,
    bias: Any,
    targets: Any,
    temperature: float,
    chunk_size: int,
    final_logit_softcapping: float | None = None,
    logit_scale: float = 1.0,
    outputs: tuple[str, ...] = (),
) -> tuple[Any, Any, Any, Any, Any]:
    """What TRL's ``_ChunkedLogProbFunction.apply`` returns, by ordinary autograd. In bf16 on a
    CPU the scored rows are computed at a bucket length (``trainer.models.buckets``)."""
    import torch

    n = hidden.shape[0]
    filler = buckets.bucket(n) - n if hidden.dim() == 2 and buckets.bf16_on_cpu(hidden) else 0
    if filler:
        hidden = torch.cat([hidden, hidden.new_zeros(filler, hidden.shape[1])])
        padded = plain_log_probs(hidden, weight, bias, torch.cat([targets, targets.new_zeros(filler)]), temperature,
                                 chunk_size, final_logit_softcapping, logit_scale, outputs)
        return tuple(None if t is None else t[:n] for t in padded)

    if not torch.is_autocast_enabled(hidden.device.type) and weight.dtype != hidden.dtype:
        # as TRL's kernel: the head in the hidden states' dtype (e.g. cast_lm_head_to_fp32)
        weight = weight.to(hidden.dtype)
        bias = None if bias is None else bias.to(hidden.dtype)
    z = torch.nn.functional.linear(hidden, weight, bias).float()
    # a scale or temperature of 1 is skipped, not applied: x * 1.0 and x / 1.0 are x exactly, and
    # each is a pass over [tokens, vocab] (about 2% of a small model's SFT step here)
    if logit_scale != 1.0:
        z = z * logit_scale
    if final_logit_softcapping is not None:
        z = final_logit_softcapping * torch.tanh(z / final_logit_softcapping)
    if temperature != 1.0:
        z = z / temperature
    log_p = torch.log_softmax(z, dim=-1)
    log_probs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1) if "entropy" in outputs else None
    with torch.no_grad():  # TRL marks these three non-differentiable
        log_sum_sq = torch.logsumexp(2 * log_p, dim=-1) if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(-1) if "mean_logits" in outputs else None
        # argmax returns the first maximum: a tie with an earlier token is not top-1, as in TRL
        is_top1 = z.argmax(-1) == targets if "is_top1" in outputs else None
    return log_probs, entropy, log_sum_sq, mean_logits, is_top1


def install() -> bool:
    """Route TRL's fused LM head through ``plain_log_probs`` for small vocabularies (idempotent).
    Returns False, changing nothing, if TRL's internals are not the ones this was written for."""
    if _INSTALLED["done"]:
        return True
    import trl.trainer.utils as trl_utils

    kernel = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    use_triton = getattr(trl_utils, "_use_triton", None)
    if kernel is None or use_triton is None or not hasattr(kernel, "apply"):
        return False

    class SmallVocabularyFirst:
        """Stands in for TRL's autograd Function: only ``apply`` is ever called on it."""

        @staticmethod
        def apply(hidden, weight, bias, targets, *rest):
            # GPUs keep TRL's Triton kernel: it never holds [tokens, vocab] tensors in memory
            if weight.shape[0] <= PLAIN_MAX_VOCAB and hidden.device.type in PLAIN_DEVICES:
                return plain_log_probs(hidden, weight, bias, targets, *rest)
            return kernel.apply(hidden, weight, bias, targets, *rest)

    trl_utils._ChunkedLogProbFunction = SmallVocabularyFirst
    # Score only the labelled positions on CPUs too ("compact"); TRL keeps every position off
    # Triton devices so that Neuron compiles one shape, which does not concern a CPU.
    trl_utils._use_triton = lambda device: use_triton(device) or device.type == "cpu"
    _INSTALLED["done"] = True
    return True
