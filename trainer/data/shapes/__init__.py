"""The data each training method needs, as pure functions from raw rows, with reasoned rejections.

- ``to_preference(row)`` -> ``PreferencePair`` (dpo, orpo, simpo, reward)
- ``to_unpaired(row)`` -> ``UnpairedExample`` (kto); ``unpair(pair)`` splits a pair into two
- ``to_labeled(row)`` -> ``LabeledText`` (classify)
- ``render_pair`` / ``render_unpaired`` apply a data profile: its system prompt on the prompt,
  its answer format on the answer to learn, the answer to avoid kept verbatim

A row that cannot take the shape raises ``trainer.data.example.RowError`` with the reason; the
caller counts it and records it in the reject report. ``*_shape(row)`` names the row's shape, for
counting rows per shape; the tables ``FAMILIES`` / ``*_SHAPES`` list them in detection order.
Conversations (sft, distill) and prompts with a reference (grpo, rloo, ppo) are
``trainer.data.formats``'s ``Example``.
"""

from trainer.data.shapes._fields import SHAPE_COLUMNS
from trainer.data.shapes.labeled import LabeledText
from trainer.data.shapes.preference import PreferencePair
from trainer.data.shapes.registry import (
    FAMILIES,
    LABELED_SHAPES,
    PREFERENCE_SHAPES,
    UNPAIRED_SHAPES,
    Shape,
    convert_shaped,
    detect_shape,
    labeled_shape,
    preference_shape,
    to_labeled,
    to_preference,
    to_unpaired,
    unpaired_shape,
)
from trainer.data.shapes.render import (
    answer_example,
    profile_prompt,
    render_answer,
    render_pair,
    render_unpaired,
)
from trainer.data.shapes.unpaired import UnpairedExample, unpair

__all__ = [
    "FAMILIES",
    "LABELED_SHAPES",
    "PREFERENCE_SHAPES",
    "SHAPE_COLUMNS",
    "UNPAIRED_SHAPES",
    "LabeledText",
    "PreferencePair",
    "Shape",
    "UnpairedExample",
    "answer_example",
    "convert_shaped",
    "detect_shape",
    "labeled_shape",
    "preference_shape",
    "profile_prompt",
    "render_answer",
    "render_pair",
    "render_unpaired",
    "to_labeled",
    "to_preference",
    "to_unpaired",
    "unpair",
    "unpaired_shape",
]
