"""Chat rendering to tokens with loss masks that fall only on what the assistant says.

transformers can return assistant masks from ``apply_chat_template(return_assistant_tokens_mask=
True)``, and TRL's ``assistant_only_loss`` relies on that, but it only works with templates that
carry ``{% generation %}`` markers, and stock Qwen3 (like most templates) has none. So we find each
assistant turn's span by rendering the conversation up to that turn with and without it: the text
the turn adds, minus trailing newlines, is what the model must learn to produce, including the
end-of-turn token. Token offsets then map the spans to labels.

Batching itself is TRL's ``DataCollatorForLanguageModeling``: it pads, takes our ``labels`` as is
and builds position ids for padding-free packing. There is nothing to add to it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100  # label value that the loss skips (PyTorch CrossEntropyLoss ignore_index)


class TemplateMismatch(ValueError):
    """Rendering a conversation turn by turn does not reproduce the whole rendering."""


@dataclass
class MaskedTokens:
    """One tokenized conversation.

    Attributes:
        input_ids: all tokens.
        labels: the token id where the loss applies, ``IGNORE_INDEX`` elsewhere.
        text: the rendered text, for showing what is trained.
        spans: character spans of the trained text in ``text``.
        offsets: character span of each token.
    """

    input_ids: list[int]
    labels: list[int]
    text: str
    spans: list[tuple[int, int]]
    offsets: list[tuple[int, int]]

    @property
    def trainable(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def _render(tokenizer: Any, messages: list[dict], template: str | None, prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=prompt
    )


def assistant_spans(
    tokenizer: Any, messages: list[dict[str, str]], chat_template: str | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn's answer.

    Raises:
        TemplateMismatch: when the prompt rendered for generation is not a prefix of the
            training text, i.e. inference would see different text than training did.
    """
    full = _render(tokenizer, messages, chat_template, prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("train", True) is False:
            continue  # "train": False marks a context-only turn (e.g. LLaMA-Factory loss_weight 0)
        prompt = _render(tokenizer, messages[:index], chat_template, prompt=True)
        upto = _render(tokenizer, messages[: index + 1], chat_template, prompt=False)
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise TemplateMismatch(
                f"the chat template renders turn {index} differently at inference than in "
                "training (the generation prompt is not a prefix of the training text)"
            )
        turn = upto[len(prompt) :].rstrip("\n")
        spans.append((len(prompt), len(prompt) + len(turn)))
    return full, spans


def tokenize_with_mask(
    tokenizer: Any, messages: list[dict[str, str]], chat_template: str | None = None
) -> MaskedTokens:
    """Tokens of the rendered conversation, labelled only inside assistant spans.

    A token is trained when its characters overlap an assistant span, so the end-of-turn token
    (``<|im_end|>``) is learned and the role header before the answer is not.
    """
    text, spans = assistant_spans(tokenizer, messages, chat_template)
    # verbose=False: no "Token indices sequence length is longer..." warning; the data layer
    # counts and reports over-long rows itself, against data.max_length.
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids = list(encoded["input_ids"])
    offsets = [tuple(o) for o in encoded["offset_mapping"]]
    labels = [
        token if any(start < hi and end > lo for lo, hi in spans) else IGNORE_INDEX
        for token, (start, end) in zip(ids, offsets)
    ]
    return MaskedTokens(ids, labels, text, spans, offsets)


def render_marked(tokens: MaskedTokens, open_mark: str = "[[", close_mark: str = "]]") -> str:
    """The rendered text with trained spans wrapped in marks, for the dry run."""
    pieces, last = [], 0
    for lo, hi in tokens.spans:
        pieces += [tokens.text[last:lo], open_mark, tokens.text[lo:hi], close_mark]
        last = hi
    pieces.append(tokens.text[last:])
    return "".join(pieces)
