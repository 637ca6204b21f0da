"""The data bundled with the engine, one file per data shape, so every method trains out of the box.

Each file is generated deterministically by a script beside it in ``data/`` (see data/README.md).
A method's ``data_shape`` (``trainer.methods.base.Method``) picks its file here.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "data"
CONVERSATIONS = BUNDLED_DIR / "arithmetic_train.jsonl"
PREFERENCES = BUNDLED_DIR / "preferences_train.jsonl"

BUNDLED: dict[str, Path] = {
    "conversations": CONVERSATIONS,  # question / answer arithmetic, data/generate_arithmetic.py
    "prompts": CONVERSATIONS,  # RL: the questions, with their answers as references
    "preference": PREFERENCES,  # chosen / rejected answers to the same questions
    "unpaired": PREFERENCES,  # KTO splits each pair into a desirable and an undesirable example
    "labeled": BUNDLED_DIR / "classify_train.jsonl",  # "Is 4821 even?" yes / no
}
