"""Perplexity of the completion under a local causal language model: fluent text scores high."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from trainer.rewards.base import Row
from trainer.rewards.models import ModelOptions, ModelReward


class PerplexityOptions(ModelOptions):
    condition_on_prompt: bool = Field(
        False, description="Score the completion's tokens given the prompt before them (else the completion alone)."
    )
    mapping: Literal["inverse", "neg_log"] = Field(
        "inverse",
        description="inverse: 1 / perplexity (0..1, the mean token probability's geometric mean); "
        "neg_log: -log(perplexity), the negative mean token loss in nats (..0].",
    )


class Perplexity(ModelReward):
    """Lower perplexity -> higher reward. Perplexity is ``exp(mean NLL)`` of the completion's
    tokens under the model in ``model_path``; the reward is ``1 / perplexity`` (range 0..1;
    1.0 means every token was certain) or, with ``mapping: neg_log``, ``-mean NLL`` (range
    ..0). The first completion token is predicted from the tokenizer's BOS token if it has one,
    from the prompt with ``condition_on_prompt``, and otherwise is not scored. A completion with
    no token to score (an empty one) gets the lowest reward, 0.0 (``neg_log``: -30), so that
    saying nothing is never the way to a low perplexity. Past ``max_length`` tokens, the prompt
    loses its start first; a completion longer than that is scored on its first ``max_length``
    tokens."""

    name = "perplexity"
    Options = PerplexityOptions

    # neg_log's floor for nothing to score: a mean token loss of 30 nats is far past any real text.
    EMPTY_NLL = 30.0
    # The mapping that gives exp(-mean NLL) (the others give -mean NLL).
    EXPONENTIAL = "inverse"

    def load(self) -> Any:
        from transformers import AutoModelForCausalLM

        tokenizer = self.load_tokenizer()
        return tokenizer, self.load_model(AutoModelForCausalLM, tokenizer)

    def score_many(self, prompts: list[str], completions: list[str], references: list[str | None], rows: list[Row]) -> list[float]:
        nlls = self.mean_nll(self.contexts(prompts, rows), completions)
        if self.options.mapping == self.EXPONENTIAL:
            return [0.0 if nll is None else math.exp(-nll) for nll in nlls]
        return [-self.EMPTY_NLL if nll is None else -nll for nll in nlls]

    def contexts(self, prompts: list[str], rows: list[Row]) -> list[str]:
        """The text each completion is scored after (with ``condition_on_prompt``): the prompt."""
        return prompts

    def mean_nll(self, prompts: list[str], completions: list[str]) -> list[float | None]:
        """Mean negative log-likelihood (nats per token) of each completion; None when it has no
        token to score."""
        import torch

        tokenizer, model = self.ensure_loaded()
        sequences = [self._ids(tokenizer, p, c) for p, c in zip(prompts, completions)]
        out: list[float | None] = []
        with torch.inference_mode():
            for start in range(0, len(sequences), self.batch_size):
                chunk = sequences[start : start + self.batch_size]
                width = max(len(ids) for ids, _ in chunk)
                ids = torch.full((len(chunk), max(width, 1)), tokenizer.pad_token_id, dtype=torch.long)
                scored = torch.zeros_like(ids, dtype=torch.bool)  # which positions' tokens count
                mask = torch.zeros_like(ids)
                for row, (seq, first) in enumerate(chunk):
                    ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                    scored[row, max(first, 1) : len(seq)] = True
                logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float().cpu()
                losses = torch.nn.functional.cross_entropy(
                    logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none"
                )  # losses[r, t]: predicting token t + 1
                counted = scored[:, 1:]
                for row in range(len(chunk)):
                    n = int(counted[row].sum())
                    out.append(float(losses[row][counted[row]].sum()) / n if n else None)
        return out

    def _ids(self, tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], int]:
        """Token ids of context + completion, and where the completion starts."""
        context = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        if self.options.condition_on_prompt and prompt:
            context += tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(completion, add_special_tokens=False)["input_ids"] if completion else []
        answer = answer[: self.options.max_length]
        context = context[max(0, len(context) + len(answer) - self.options.max_length) :]
        return context + answer, len(context)
