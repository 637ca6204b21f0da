"""Profiles: rendering, format checks, stops, composition, registry, rejection of unrenderable rows."""

from __future__ import annotations

import pytest

from trainer.data.example import Example, RowError
from trainer.profiles import (
    PROFILES,
    DataProfile,
    UnknownProfileError,
    get_profile,
    register_profile,
)
from trainer.profiles.base import BASE_STOP_SEQUENCES, AnswerCheck, normalize_answer

BASE = "You are a helpful assistant."


def gsm_example() -> Example:
    return Example(
        messages=[
            {"role": "user", "content": "Tom has 5 apples, buys 3 and gives 2 away. How many now?"},
            {"role": "assistant", "content": "5 + 3 = 8\n8 - 2 = 6\n#### 6"},
        ],
        final_answer="6",
        reasoning=["He buys 3: 5 + 3 = 8.", "He gives 2 away: 8 - 2 = 6."],
    )


def chat_example() -> Example:
    return Example(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ]
    )


EXPECTED = {
    "regime3": "Step 1: He buys 3: 5 + 3 = 8.\nStep 2: He gives 2 away: 8 - 2 = 6.\n\nAnswer: 6",
    "emoji_think": "🤔🤔🤔🤔\nHe buys 3: 5 + 3 = 8. He gives 2 away: 8 - 2 = 6.\n\n6",
    "emoji_think+regime3": "🤔🤔🤔🤔\nHe buys 3: 5 + 3 = 8. He gives 2 away: 8 - 2 = 6.\n\n"
    "Step 1: He buys 3: 5 + 3 = 8.\nStep 2: He gives 2 away: 8 - 2 = 6.\n\nAnswer: 6",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rendering_exact(name):
    messages = get_profile(name).prepare_messages(gsm_example(), BASE)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[-1]["content"] == EXPECTED[name]
    assert messages[1] == gsm_example().messages[0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_own_rendering_passes_own_check_and_survives_stops(name):
    profile = get_profile(name)
    answer = profile.prepare_messages(gsm_example(), BASE)[-1]["content"]
    verdict = profile.check_answer(answer, "6")
    assert verdict == AnswerCheck(format_ok=True, answer="6", correct=True, problems=[])
    for stop in profile.get_stop_sequences():
        assert stop not in answer, f"stop {stop!r} would cut {name}'s own answer"


def test_seed_stop_lists_would_have_cut_the_formats():
    # The reason the stops changed: the seed's "\n\n" appears inside both formats.
    for name in ("regime3", "emoji_think"):
        answer = get_profile(name).prepare_messages(gsm_example(), BASE)[-1]["content"]
        assert "\n\n" in answer


def test_system_prompts():
    assert get_profile("emoji_think").format_system_prompt(BASE) == (
        "You are a helpful assistant.\n\nFor this task, think with 🤔 /four/ times."
    )
    regime = get_profile("regime3").format_system_prompt(BASE)
    assert regime.startswith(BASE + "\n\nSolve the problem step by step.")
    both = get_profile("emoji_think+regime3").format_system_prompt(BASE)
    assert "think with 🤔 /four/ times" in both and "Step N:" in both


def test_data_system_prompt_is_kept_and_extended():
    messages = get_profile("emoji_think").prepare_messages(chat_example(), BASE)
    assert messages[0] == {
        "role": "system",
        "content": "Be brief.\n\nFor this task, think with 🤔 /four/ times.",
    }
    assert messages[-1]["content"] == "🤔🤔🤔🤔\n\nBlue."


def test_regime3_rejects_rows_without_final_answer():
    with pytest.raises(RowError, match="^regime3 needs a final answer to state, and this row has none$"):
        get_profile("regime3").prepare_messages(chat_example(), BASE)


def test_regime3_rejects_rows_without_steps():
    example = gsm_example()
    example.reasoning = []
    with pytest.raises(RowError, match="^regime3 needs reasoning steps, and this row has none$"):
        get_profile("regime3").render_answer(example)


def test_regime3_keeps_data_already_in_format():
    example = gsm_example()
    example.messages[-1]["content"] = "Step 1: 5 + 3 - 2 = 6\n\nAnswer: 6"
    assert get_profile("regime3").render_answer(example) == "Step 1: 5 + 3 - 2 = 6\n\nAnswer: 6"


@pytest.mark.parametrize(
    ("text", "problems", "answer"),
    [
        ("Step 1: 2 + 2 = 4\n\nAnswer: 4", [], "4"),
        ("Step 1: a\nStep 2: b\n\nAnswer: 1,000", [], "1,000"),
        (
            "Step 1: 2 + 2 = 4\nAnswer: 4",
            [
                "no blank line before the answer",
                "no 'Answer: <final answer>' line at the end",
                "line 2 is not 'Step 2: ...'",
            ],
            None,
        ),
        ("Step 1: x\nStep 3: y\n\nAnswer: 4", ["line 2 is not 'Step 2: ...'"], "4"),
        ("Step 1: x\n\nAnswer: 4\nmore", ["text after the answer line"], "4"),
        ("\n\nAnswer: 4", ["no steps"], "4"),
        ("Step 1: x\n\nThe answer is 4", ["no 'Answer: <final answer>' line at the end"], None),
    ],
)
def test_regime3_format_check(text, problems, answer):
    verdict = get_profile("regime3").check_format(text)
    assert verdict.problems == problems
    assert verdict.format_ok is (not problems)
    assert verdict.answer == answer


@pytest.mark.parametrize(
    ("text", "ok", "answer"),
    [
        ("🤔🤔🤔🤔\nthinking\n\n42", True, "42"),
        ("🤔🤔🤔🤔\n\nBlue.", True, "Blue."),
        ("🤔🤔🤔\nthinking\n\n42", False, None),
        ("🤔🤔🤔🤔🤔\nthinking\n\n42", False, None),
        ("🤔🤔🤔🤔 thinking only", False, None),
        ("42", False, None),
    ],
)
def test_emoji_think_format_check(text, ok, answer):
    verdict = get_profile("emoji_think").check_format(text)
    assert verdict.format_ok is ok
    assert verdict.answer == answer


def test_composed_check_needs_both_formats():
    profile = get_profile("emoji_think+regime3")
    assert not profile.check_format("🤔🤔🤔🤔\nhm\n\n6").format_ok
    assert not profile.check_format("Step 1: a\n\nAnswer: 6").format_ok
    assert profile.check_answer("🤔🤔🤔🤔\nhm\n\nStep 1: a\n\nAnswer: 7", "6").correct is False


def test_answers_compare_as_numbers():
    assert normalize_answer("1,000") == normalize_answer("1000.0") == "1000"
    assert normalize_answer(" Blue. ") == "blue"
    assert get_profile("regime3").check_answer("Step 1: x\n\nAnswer: $18", "18").correct is True
    assert get_profile("regime3").check_answer("Step 1: x\n\nAnswer: 18", None).correct is None


def test_penalties_target_think_tags():
    specs = get_profile("emoji_think+regime3").generation_penalties()
    assert len(specs) == 1 and specs[0].strings == ("<think>", "</think>")


def test_unknown_profile_lists_known_names():
    with pytest.raises(UnknownProfileError) as info:
        get_profile("emoji")
    assert str(info.value) == (
        "unknown profile 'emoji'; known profiles: emoji_think, plain, regime3 "
        "(or an import path 'package.module:Class')"
    )


def test_only_wrapping_profiles_compose():
    with pytest.raises(ValueError, match="profile 'regime3' cannot wrap another profile"):
        get_profile("regime3+emoji_think")


def test_options_validated_and_routed():
    profile = get_profile("emoji_think+regime3", {"count": 2, "answer_prefix": "Final:"})
    assert profile.marker == "🤔🤔"
    assert profile.inner.options.answer_prefix == "Final:"
    assert profile.format_system_prompt("") .startswith("For this task, think with 🤔 /two/ times.")
    with pytest.raises(ValueError, match="unknown options colour"):
        get_profile("regime3", {"colour": "red"})


class ShoutProfile(DataProfile):
    name = "shout"

    def render_answer(self, example):
        return example.messages[-1]["content"].upper()

    def check_format(self, text):
        return AnswerCheck(text == text.upper(), text or None)


def test_custom_profile_by_import_path_and_registration():
    profile = get_profile(f"{__name__}:ShoutProfile")
    assert profile.prepare_messages(chat_example())[-1]["content"] == "BLUE."
    register_profile(ShoutProfile)
    try:
        assert isinstance(get_profile("emoji_think+shout").inner, ShoutProfile)
    finally:
        PROFILES.pop("shout")
    with pytest.raises(UnknownProfileError, match="is not a DataProfile subclass"):
        get_profile(f"{__name__}:gsm_example")
    with pytest.raises(UnknownProfileError, match="cannot import profile 'nope.mod:X'"):
        get_profile("nope.mod:X")


def test_base_stops_are_post_format():
    assert BASE_STOP_SEQUENCES == ("<|im_start|>", "<|endoftext|>", "\n\n\n")


def test_numeric_answer_with_words_matches():
    profile = get_profile("regime3")
    assert profile.check_answer("Step 1: x\n\nAnswer: 6 apples", "6").correct is True
    assert profile.check_answer("Step 1: x\n\nAnswer: 16 apples", "6").correct is False
    assert profile.check_answer("Step 1: x\n\nAnswer: blue", "Blue").correct is True


def test_regime3_renders_multiline_steps_as_one_line():
    example = gsm_example()
    example.reasoning = ["He buys 3:\n5 + 3 = 8.", "8 - 2 = 6."]
    rendered = get_profile("regime3").render_answer(example)
    assert rendered == "Step 1: He buys 3: 5 + 3 = 8.\nStep 2: 8 - 2 = 6.\n\nAnswer: 6"
