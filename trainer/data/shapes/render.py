"""A data profile applied to method shapes: the profile's system prompt on every prompt, and its
answer format on the answers the method moves the model towards.

The answer to learn from is rendered the way an SFT row's answer is: the chosen answer of a pair,
the desirable completion of a KTO example. The answer to move away from is kept verbatim: the
rejected answer, the undesirable completion. A rejected answer is often bad precisely in its
format (no final answer line, the steps run together, cut off half way); rendering it in the
profile's format would repair exactly what makes it worse, and the pair would then teach a
difference the data never had, or none at all. The same holds for an undesirable completion,
which is also what TRL's unpairing of a pair gives for the rejected side, so a pair and its two
unpaired halves train on the same texts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer.data.example import Example, RowError
from trainer.data.formats import convert_question_answer
from trainer.data.shapes._fields import same_answer, turn
from trainer.data.shapes.preference import PreferencePair
from trainer.data.shapes.unpaired import UnpairedExample

if TYPE_CHECKING:
    from trainer.profiles.base import DataProfile

_FINAL_MARKER = "####"  # GSM8K's final answer line, as formats.convert_question_answer reads it


def answer_example(prompt: list[dict[str, str]], text: str, reasoning: list[str] | None = None) -> Example:
    """The prompt and an answer as the ``Example`` a profile renders.

    An answer whose last non-empty line is ``#### <final answer>`` carries its reasoning and final
    answer the way GSM8K rows do, and is read exactly as an SFT ``question / answer`` row is
    (annotations stripped, one step per line). Only the last line counts, so a Markdown ``####``
    heading inside a free-text answer is text. ``reasoning`` (from reasoning content parts) wins
    over reasoning lines.

    Raises:
        RowError: the final answer after ``####`` is empty.
    """
    lines = [line for line in text.split("\n") if line.strip()]
    final, steps, content = None, reasoning, text
    if lines and lines[-1].lstrip().startswith(_FINAL_MARKER):
        parsed = convert_question_answer({"question": "", "answer": text})
        final, steps, content = parsed.final_answer, reasoning or parsed.reasoning, parsed.messages[-1]["content"]
    messages = [dict(message) for message in prompt] + [turn("assistant", content)]
    return Example(messages, final_answer=final, reasoning=steps)


def profile_prompt(profile: DataProfile, prompt: list[dict[str, str]], base_prompt: str = "") -> list[dict[str, str]]:
    """The prompt with the profile's system prompt, as ``DataProfile.prepare_messages`` builds it
    for SFT rows: the data's own system turn, or else ``base_prompt``, with the profile's
    instruction added. Used where there is no answer to render."""
    turns = [dict(message) for message in prompt]
    data_system = turns.pop(0)["content"] if turns and turns[0]["role"] == "system" else ""
    system = profile.format_system_prompt(data_system or base_prompt)
    return ([turn("system", system)] if system else []) + turns


def render_answer(
    profile: DataProfile,
    prompt: list[dict[str, str]],
    text: str,
    reasoning: list[str] | None = None,
    base_prompt: str = "",
) -> tuple[list[dict[str, str]], str]:
    """The prompt with the profile's system prompt, and the answer in the profile's format.

    An answer with no GSM8K structure that the profile's own check already accepts (a sample the
    model generated in the format, as on-policy preference data has) is kept as written:
    rendering it again could wrap it twice (``emoji_think`` would add a second marker) or refuse
    it for want of a final answer the text states in the format.

    Returns:
        (prompt messages, rendered answer).

    Raises:
        RowError: the profile cannot render the answer; the message is the profile's reason.
    """
    example = answer_example(prompt, text, reasoning)
    if example.final_answer is None and example.reasoning is None and profile.check_format(text).format_ok:
        return profile_prompt(profile, prompt, base_prompt), text
    messages = profile.prepare_messages(example, base_prompt)
    return messages[:-1], messages[-1]["content"]


def render_pair(pair: PreferencePair, profile: DataProfile, base_prompt: str = "") -> PreferencePair:
    """The pair ready to train with ``profile``: the prompt with its system prompt, the chosen
    answer in its format, the rejected answer verbatim (see the module docstring for why).

    Raises:
        RowError: the profile cannot render the chosen answer (its reason), or the rendered
            chosen answer is the same text as the rejected one, which leaves nothing to prefer.
    """
    prompt, chosen = render_answer(profile, pair.prompt, pair.chosen, pair.chosen_reasoning, base_prompt)
    if same_answer(chosen, pair.rejected):
        raise RowError(f"the chosen answer in {profile.full_name}'s format is the same as the rejected answer")
    return PreferencePair(prompt, chosen, pair.rejected, pair.source)


def render_unpaired(example: UnpairedExample, profile: DataProfile, base_prompt: str = "") -> UnpairedExample:
    """The example ready to train with ``profile``: the prompt with its system prompt; a
    desirable completion in the profile's format, an undesirable one verbatim, for the reason a
    rejected answer is (see the module docstring).

    Raises:
        RowError: the profile cannot render a desirable completion; the message is its reason.
    """
    if example.label:
        prompt, completion = render_answer(profile, example.prompt, example.completion, example.reasoning, base_prompt)
    else:
        prompt, completion = profile_prompt(profile, example.prompt, base_prompt), example.completion
    return UnpairedExample(prompt, completion, example.label, example.source)

