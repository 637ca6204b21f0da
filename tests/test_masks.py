"""Loss masks token by token on a known template, template mismatch, packing isolation."""

from __future__ import annotations

import pytest

from core.custom_collator import IGNORE_INDEX, TemplateMismatch, render_marked, tokenize_with_mask

MESSAGES = [
    {"role": "system", "content": "Sys."},
    {"role": "user", "content": "Hi 12"},
    {"role": "assistant", "content": "Step 1: 1 + 1 = 2\n\nAnswer: 2"},
]


def test_mask_token_by_token(tiny_tokenizer):
    tokens = tokenize_with_mask(tiny_tokenizer, MESSAGES)
    assert tokens.text == (
        "<|im_start|>system\nSys.<|im_end|>\n<|im_start|>user\nHi 12<|im_end|>\n"
        "<|im_start|>assistant\nStep 1: 1 + 1 = 2\n\nAnswer: 2<|im_end|>\n"
    )
    pieces = [tokens.text[a:b] for a, b in tokens.offsets]
    trained = "".join(p for p, l in zip(pieces, tokens.labels) if l != IGNORE_INDEX)
    untrained = "".join(p for p, l in zip(pieces, tokens.labels) if l == IGNORE_INDEX)
    # exactly the answer plus the end-of-turn token is trained; the header and newline are not
    assert trained == "Step 1: 1 + 1 = 2\n\nAnswer: 2<|im_end|>"
    assert untrained == tokens.text.replace(trained, "")
    assert untrained.endswith("<|im_start|>assistant\n\n")
    for token, label in zip(tokens.input_ids, tokens.labels):
        assert label in (token, IGNORE_INDEX)
    last_trained = max(i for i, l in enumerate(tokens.labels) if l != IGNORE_INDEX)
    assert tiny_tokenizer.convert_ids_to_tokens(tokens.input_ids[last_trained]) == "<|im_end|>"
    assert render_marked(tokens).endswith("assistant\n[[Step 1: 1 + 1 = 2\n\nAnswer: 2<|im_end|>]]\n")


def test_every_assistant_turn_is_trained(tiny_tokenizer):
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "second"},
    ]
    tokens = tokenize_with_mask(tiny_tokenizer, messages)
    spans = [tokens.text[a:b] for a, b in tokens.spans]
    assert spans == ["first<|im_end|>", "second<|im_end|>"]


def test_template_that_renders_prompts_differently_is_caught(tiny_tokenizer):
    # A template whose generation prompt is not what the training text contains.
    bad = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
    )
    with pytest.raises(TemplateMismatch, match="renders turn 2 differently at inference"):
        tokenize_with_mask(tiny_tokenizer, MESSAGES, chat_template=bad)


def test_packed_examples_do_not_attend_to_each_other(tiny_model_dir, tiny_tokenizer):
    """Padding-free packing (position ids restart per example) gives the same logits as alone."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    a = tokenize_with_mask(tiny_tokenizer, MESSAGES)
    b = tokenize_with_mask(
        tiny_tokenizer,
        [{"role": "user", "content": "Other question 7 * 3?"}, {"role": "assistant", "content": "21"}],
    )
    collator = DataCollatorForLanguageModeling(pad_token_id=tiny_tokenizer.pad_token_id, padding_free=True)
    packed = collator([{"input_ids": a.input_ids, "labels": a.labels}, {"input_ids": b.input_ids, "labels": b.labels}])
    assert "attention_mask" not in packed
    assert packed["position_ids"][0, len(a.input_ids)].item() == 0  # restarts for b
    with torch.no_grad():
        # use_cache=False as TRL's SFTTrainer.compute_loss passes: transformers only detects
        # packed sequences from position ids when no KV cache is in play.
        together = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits[0]
        alone_a = model(input_ids=torch.tensor([a.input_ids])).logits[0]
        alone_b = model(input_ids=torch.tensor([b.input_ids])).logits[0]
        # Control: without the restarted position ids, b would see a and its logits change.
        leaky = model(input_ids=packed["input_ids"]).logits[0]
    n = len(a.input_ids)
    torch.testing.assert_close(together[:n], alone_a, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(together[n:], alone_b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(leaky[n:], alone_b, atol=1e-3)
    # The first token of b must not be trained to follow a's last token.
    assert packed["labels"][0, n].item() == IGNORE_INDEX
