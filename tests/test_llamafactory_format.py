"""LLaMA-Factory's message shape: ``{type, value}`` parts, reasoning parts, per-turn loss_weight.

The rows are written the way LLaMA-Factory's own converters write them
(``{"role": ..., "content": [{"type": "text", "value": ...}], "loss_weight": 1.0}``), and every
refusal has its accepted twin next to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.data.example import Example, Rejected, RowError
from trainer.data.formats import convert_row
from trainer.profiles import get_profile


def convert(row: dict) -> Example:
    return convert_row(row, "auto", {})


def reason_of(row: dict) -> str:
    with pytest.raises(RowError) as info:
        convert_row(row, "auto", {})
    return str(info.value)


def text(value: str) -> dict:
    return {"type": "text", "value": value}


def reasoning(value: str) -> dict:
    return {"type": "reasoning", "value": value}


def turn(role: str, *parts: dict, **extra) -> dict:
    return {"role": role, "content": list(parts), **extra}


def chat(*turns: dict) -> dict:
    return {"messages": list(turns)}


QUESTION = turn(
    "user", text("Tom has 5 apples, buys 3 and gives 2 away. How many?"), loss_weight=0.0
)
THOUGHT = "5 + 3 = 8.\n\n8 - 2 = 6."
ANSWER = turn("assistant", reasoning(THOUGHT), text("6"), loss_weight=1.0)


# --- text and reasoning parts ----------------------------------------------------------------------


def test_value_parts_are_text_joined_back_to_back_as_llamafactory_does():
    row = chat(
        turn("system", text("Be brief."), loss_weight=0.0),
        turn("user", text("Hi"), text(" there"), loss_weight=0.0),
        turn("assistant", text("Hello"), text("!"), loss_weight=1.0),
    )
    example = convert(row)
    assert example.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert example.reasoning is None and example.final_answer is None


def test_openai_text_parts_still_join_by_newlines():
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert (
        convert(chat(turn("user", *parts), turn("assistant", text("c")))).messages[0]["content"]
        == "a\nb"
    )


def test_reasoning_parts_are_the_final_turns_reasoning_not_its_content():
    example = convert(chat(QUESTION, ANSWER))
    assert example.messages[-1] == {"role": "assistant", "content": "6"}
    # one step per non-empty line, like GSM8K's reasoning lines
    assert example.reasoning == ["5 + 3 = 8.", "8 - 2 = 6."]


def test_emoji_think_renders_the_reasoning_as_its_thinking():
    profile = get_profile("emoji_think")
    rendered = profile.prepare_messages(convert(chat(QUESTION, ANSWER)))
    assert rendered[-1]["content"] == "🤔🤔🤔🤔\n5 + 3 = 8. 8 - 2 = 6.\n\n6"
    assert profile.check_format(rendered[-1]["content"]).format_ok


def test_reasoning_of_earlier_turns_is_left_out_of_the_history():
    row = chat(
        turn("user", text("q1")),
        turn("assistant", reasoning("first thought"), text("a1")),
        turn("user", text("q2")),
        turn("assistant", reasoning("second thought"), text("a2")),
    )
    example = convert(row)
    assert [m["content"] for m in example.messages] == ["q1", "a1", "q2", "a2"]
    assert example.reasoning == ["second thought"]


def test_a_turn_that_only_reasons_has_no_answer_to_learn():
    assert reason_of(chat(QUESTION, turn("assistant", reasoning("hmm")))) == "empty assistant turn"


def test_completion_lists_take_the_same_parts():
    row = {
        "prompt": [turn("user", text("q"))],
        "completion": [turn("assistant", reasoning("r"), text("a"))],
    }
    example = convert(row)
    assert example.messages == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    assert example.reasoning == ["r"]


# --- loss_weight -----------------------------------------------------------------------------------


def test_llamafactory_default_weights_train_the_assistant_as_usual():
    with_weights = convert(chat(turn("system", text("s"), loss_weight=0.0), QUESTION, ANSWER))
    without = convert(
        chat(
            turn("system", text("s")),
            turn("user", text(QUESTION["content"][0]["value"])),
            turn("assistant", reasoning(THOUGHT), text("6")),
        )
    )
    assert with_weights == without
    assert all("train" not in m for m in with_weights.messages)


def test_loss_weight_0_marks_an_earlier_assistant_turn_as_context_only():
    row = chat(
        turn("user", text("q1")),
        turn("assistant", text("a1"), loss_weight=0),
        turn("user", text("q2")),
        turn("assistant", text("a2"), loss_weight=1),
    )
    assert convert(row).messages == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "train": False},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2"},
    ]


def test_untrained_turns_after_the_last_trained_one_are_dropped():
    row = chat(
        turn("user", text("q1")),
        turn("assistant", reasoning("r1"), text("a1")),
        turn("user", text("q2")),
        turn("assistant", reasoning("r2"), text("a2"), loss_weight=0.0),
    )
    example = convert(row)
    assert example.messages == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
    ]
    assert example.reasoning == ["r1"], "the reasoning of the turn that is now the answer"


def test_a_row_with_no_trained_turn_is_rejected():
    row = chat(QUESTION, {**ANSWER, "loss_weight": 0.0})
    assert reason_of(row) == "no turn to train: every assistant turn has loss_weight 0"
    several = chat(
        turn("user", text("q")),
        turn("assistant", text("a"), loss_weight=0),
        turn("user", text("q2")),
        turn("assistant", text("b"), loss_weight=0),
    )
    assert reason_of(several) == "no turn to train: every assistant turn has loss_weight 0"


def test_the_context_only_flag_survives_the_profile_into_the_messages_the_collator_gets():
    row = chat(
        turn("user", text("q1")),
        turn("assistant", text("a1"), loss_weight=0),
        turn("user", text("q2")),
        ANSWER,
    )
    rendered = get_profile("emoji_think").prepare_messages(convert(row))
    assert [m.get("train", True) for m in rendered if m["role"] == "assistant"] == [False, True]


def test_a_context_only_turn_gets_no_loss(tiny_tokenizer):
    from core.custom_collator import tokenize_with_mask

    row = chat(
        turn("user", text("q1")),
        turn("assistant", text("a1"), loss_weight=0),
        turn("user", text("q2")),
        turn("assistant", text("a2")),
    )
    tokens = tokenize_with_mask(tiny_tokenizer, convert(row).messages)
    assert [tokens.text[lo:hi] for lo, hi in tokens.spans] == ["a2<|im_end|>"]


# --- refusals and their accepted twins --------------------------------------------------------------

REFUSED_AND_ACCEPTED = [
    (turn("assistant", {"type": "tool_call", "value": "{}"}), turn("assistant", text("{}")),
     "messages turn 2: content part 1 has type 'tool_call'; supported part types: text, reasoning"),
    (turn("assistant", {"type": "image_url", "value": "x.png"}, text("a")), turn("assistant", text("a")),
     "messages turn 2: content part 1 has type 'image_url'; supported part types: text, reasoning"),
    (turn("assistant", {"value": "a"}), turn("assistant", {"type": "text", "value": "a"}),
     "messages turn 2: content part 1 has type None; supported part types: text, reasoning"),
    (turn("assistant", {"type": "text", "value": 6}), turn("assistant", text("6")),
     "messages turn 2: content part 1: field 'value' must be a string, got int"),
    (turn("assistant", {"type": "text", "value": None}),
     turn("assistant", {"type": "text", "text": "a", "value": None}),
     ("messages turn 2: content part 1: field 'text' (OpenAI) or 'value' (LLaMA-Factory) must be a "
      "string, got null")),
    (turn("assistant", {"type": "text", "text": "a", "value": "a"}),
     turn("assistant", {"type": "text", "text": "a"}),
     "messages turn 2: content part 1: has both 'text' and 'value'; keep one"),
    (turn("assistant", text("a"), {"type": "text", "text": "b"}), turn("assistant", text("a"), text("b")),
     "messages turn 2: content parts mix OpenAI 'text' and LLaMA-Factory 'value' keys"),
    (turn("assistant", text("a"), loss_weight="1"), turn("assistant", text("a"), loss_weight=1),
     "messages turn 2: field 'loss_weight' must be a number, got str"),
    (turn("assistant", text("a"), loss_weight=True), turn("assistant", text("a"), loss_weight=1.0),
     "messages turn 2: field 'loss_weight' must be a number, got bool"),
    (turn("assistant", text("a"), loss_weight=float("inf")), turn("assistant", text("a"), loss_weight=None),
     "messages turn 2: field 'loss_weight' must be a finite number, got inf"),
    (turn("assistant", text("a"), loss_weight=0.5), turn("assistant", text("a"), loss_weight=1),
     "messages turn 2: loss_weight 0.5 is not supported; give 1 (train the turn) or 0 (context only)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("refused", "accepted", "reason"),
    REFUSED_AND_ACCEPTED,
    ids=[r for _, _, r in REFUSED_AND_ACCEPTED],
)
def test_final_turn_refused_with_reason_and_accepted_twin(refused, accepted, reason):
    assert reason_of(chat(turn("user", text("q")), refused)) == reason
    assert convert(chat(turn("user", text("q")), accepted)).messages[-1]["role"] == "assistant"


@pytest.mark.parametrize(("refused", "accepted", "reason"), [
    (turn("user", reasoning("r"), text("q")), turn("user", text("q")),
     "messages turn 1: content part 1 is reasoning in a user turn; only assistant turns reason"),
    (turn("user", text("q"), loss_weight=1.0), turn("user", text("q"), loss_weight=0.0),
     ("messages turn 1: loss_weight 1 on a user turn; only assistant turns are trained, so give 0 "
      "or leave it out")),
])  # fmt: skip
def test_prompt_turn_refused_with_reason_and_accepted_twin(refused, accepted, reason):
    assert reason_of(chat(refused, turn("assistant", text("a")))) == reason
    assert convert(chat(accepted, turn("assistant", text("a")))).messages[0] == {
        "role": "user",
        "content": "q",
    }


# --- end to end: rows on disk, counted rejects -------------------------------------------------------


def test_a_llamafactory_file_prepares_with_its_refusals_counted(tmp_path: Path, tiny_tokenizer):
    from trainer.config import create_default_config
    from trainer.data.prepare import prepare_data
    from trainer.data.report import reason_group
    from trainer.models.templates import CHATML_TEMPLATE

    good = [
        chat(
            turn("user", text(f"{i} + 1?"), loss_weight=0.0),
            turn("assistant", reasoning(f"{i} + 1 = {i + 1}."), text(str(i + 1)), loss_weight=1.0),
        )
        for i in range(8)
    ]
    untrained = chat(QUESTION, {**ANSWER, "loss_weight": 0.0})
    tool_call = chat(QUESTION, turn("assistant", {"type": "tool_call", "value": "{}"}))
    path = tmp_path / "lf.jsonl"
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*good, untrained, tool_call])
    )
    config = create_default_config(
        dataset_path=[str(path)],
        overrides={
            "system.base_dir": str(tmp_path),
            "data.holdout_size": 0,
            "data.max_reject_fraction": 0.5,
        },
    )
    eos = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")}
    data = prepare_data(
        config, tiny_tokenizer, get_profile("emoji_think"), CHATML_TEMPLATE, eos, tmp_path / "run"
    )
    rejects = [
        json.loads(line) for line in (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()
    ]
    assert [(r["line"], r["stage"], r["reason"]) for r in rejects] == [
        (9, "convert", "no turn to train: every assistant turn has loss_weight 0"),
        (
            10,
            "convert",
            "messages turn 2: content part 1 has type 'tool_call'; supported part types: text, reasoning",
        ),
    ]
    assert (data.report.rows_rejected, data.report.rows_used) == (2, 8)
    counted = {
        reason_group(Rejected(r["file"], r["line"], r["reason"], stage=r["stage"])) for r in rejects
    }
    assert counted == set(data.report.rejected_by_reason), "each refusal is counted by its reason"
    assert "🤔🤔🤔🤔\n0 + 1 = 1.\n\n1" in data.report.samples[0]
