"""Chat templates: which one renders the training text, and the plain ChatML we ship.

Stock Qwen3 templates add an empty ``<think>\\n\\n</think>`` block to assistant turns; trained as
is, it competes with a profile's own thinking format. ``model.chat_template: auto`` therefore
swaps in plain ChatML (same special tokens, no think block) when the model's template injects
``<think>``; the chosen template is saved with the model, so inference renders prompts exactly as
training did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Where the setting is not a keyword it is a path to a Jinja file.
KEYWORDS = ("auto", "model", "chatml")


def choose_chat_template(tokenizer: Any, setting: str, resolve: Any = Path) -> str:
    """The template text to train and save with, for ``model.chat_template = setting``.

    Raises:
        ValueError: 'model' was asked for but the tokenizer has no template.
    """
    own = getattr(tokenizer, "chat_template", None)
    if setting == "chatml":
        return CHATML_TEMPLATE
    if setting == "model":
        if not own:
            raise ValueError("model.chat_template is 'model' but the tokenizer has no chat template")
        return own
    if setting == "auto":
        if not own or "<think>" in own:
            return CHATML_TEMPLATE
        return own
    return Path(resolve(setting)).read_text(encoding="utf-8")


def end_of_turn_token(template: str, tokenizer: Any) -> str | None:
    """The token that closes an assistant turn in ``template`` (``<|im_end|>`` for ChatML)."""
    for candidate in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "</s>"):
        if candidate in template and candidate in tokenizer.get_vocab():
            return candidate
    return tokenizer.eos_token


# The head a saved template gets (with_default_system), between these marks so a later save
# (a curriculum's next stage loads the previous stage's tokenizer) replaces it instead of adding another.
DEFAULT_SYSTEM_OPEN = "{#- hero-trainer: default system prompt #}"
DEFAULT_SYSTEM_CLOSE = "{#- /hero-trainer #}"


def _has_default_system(template: str) -> bool:
    return template.startswith(DEFAULT_SYSTEM_OPEN) and DEFAULT_SYSTEM_CLOSE in template


def without_default_system(template: str) -> str:
    """``template`` without a head :func:`with_default_system` put in."""
    return template.split(DEFAULT_SYSTEM_CLOSE, 1)[1] if _has_default_system(template) else template


def default_system_of(template: str) -> str:
    """The system prompt a head of :func:`with_default_system` puts in ("" without one)."""
    if not _has_default_system(template):
        return ""
    head = template.split(DEFAULT_SYSTEM_CLOSE, 1)[0]
    return json.loads(head.split("'content': ", 1)[1].rsplit("}]", 1)[0])  # the literal it wrote


def with_default_system(template: str, system: str) -> str:
    """``template`` that puts ``system`` in as the system message of a conversation that has
    none, as stock templates carry a default system message, and keeps a conversation's own.

    The engine trains every row with the profile's system prompt; serving stacks (vLLM, Ollama,
    a plain ``apply_chat_template``) mostly send none, and the model would then see a prompt it
    never trained on. With this head, the saved model renders such a conversation exactly as
    training did.
    """
    template = without_default_system(template)
    if not system:
        return template
    # a Jinja string literal: Jinja reads backslash escapes as Python does; non-ASCII (emoji)
    # stays as it is, which Jinja turns back into the same characters
    # "#" as \u0023, so a prompt holding the closing mark cannot end the head early
    literal = json.dumps(system, ensure_ascii=False).replace("#", "\\u0023")
    head = (
        f"{DEFAULT_SYSTEM_OPEN}"
        "{%- if not messages or messages[0]['role'] != 'system' %}"
        f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages %}}"
        "{%- endif %}"
        f"{DEFAULT_SYSTEM_CLOSE}"
    )
    return head + template
