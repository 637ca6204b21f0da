"""Method data shapes: preference pairs, unpaired KTO examples, labeled text, and a profile applied
to them; every accepted shape and every rejection reason, as raise/pass pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.data.example import RowError
from trainer.data.shapes import (
    FAMILIES,
    LABELED_SHAPES,
    PREFERENCE_SHAPES,
    UNPAIRED_SHAPES,
    LabeledText,
    PreferencePair,
    UnpairedExample,
    detect_shape,
    labeled_shape,
    preference_shape,
    profile_prompt,
    render_pair,
    render_unpaired,
    to_labeled,
    to_preference,
    to_unpaired,
    unpair,
    unpaired_shape,
)
from trainer.profiles import get_profile

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
BASE = "You are a helpful assistant."
GSM_ANSWER = "Tom has 5 apples and buys 3: 5 + 3 = <<5+3=8>>8.\nHe gives 2 away: 8 - 2 = <<8-2=6>>6.\n#### 6"


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def human(text: str) -> dict[str, str]:
    return {"from": "human", "value": text}


def gpt(text: str) -> dict[str, str]:
    return {"from": "gpt", "value": text}


def reason(convert, row: dict, **kwargs) -> str:
    with pytest.raises(RowError) as info:
        convert(row, **kwargs)
    return str(info.value)


# --- registry -------------------------------------------------------------------------------------


def test_families_and_detection_order():
    assert FAMILIES == {"preference": PREFERENCE_SHAPES, "unpaired": UNPAIRED_SHAPES, "labeled": LABELED_SHAPES}
    assert list(PREFERENCE_SHAPES) == ["sharegpt", "messages", "prompt_chosen_rejected", "chosen_rejected"]
    assert list(UNPAIRED_SHAPES) == ["prompt_completion_label", "messages_label", "sharegpt_label"]
    assert list(LABELED_SHAPES) == ["text_label"]


@pytest.mark.parametrize(
    ("row", "shape"),
    [
        ({"conversations": [], "chosen": "", "rejected": "", "prompt": "x"}, "sharegpt"),
        ({"messages": [], "chosen": "", "rejected": ""}, "messages"),
        ({"prompt": "", "chosen": "", "rejected": ""}, "prompt_chosen_rejected"),
        ({"chosen": [], "rejected": []}, "chosen_rejected"),
    ],
)
def test_preference_shape_detection(row, shape):
    assert preference_shape(row) == shape


def test_unpaired_and_labeled_detection():
    assert unpaired_shape({"prompt": "", "completion": "", "label": True}) == "prompt_completion_label"
    assert unpaired_shape({"messages": [], "kto_tag": True}) == "messages_label"
    assert unpaired_shape({"conversations": [], "label": True}) == "sharegpt_label"
    assert labeled_shape({"text": "", "label": 1}) == "text_label"


def test_undetectable_row_names_its_columns_and_the_known_shapes():
    message = reason(preference_shape, {"question": "q", "answer": "a"})
    assert "cannot read the row as preference data from its columns ['question', 'answer']" in message
    assert "prompt_chosen_rejected (prompt, chosen, rejected)" in message
    assert "set data.columns" in message
    assert "messages_label (messages, label or kto_tag)" in reason(unpaired_shape, {"text": "t"})


def test_config_errors_are_value_errors_not_row_errors():
    with pytest.raises(ValueError, match="unknown data family 'pairs'; known: preference, unpaired, labeled"):
        detect_shape({}, "pairs")
    with pytest.raises(ValueError, match="unknown preference shape 'dpo'; known: auto, sharegpt"):
        to_preference({}, shape="dpo")
    with pytest.raises(ValueError, match=r"unknown columns \['question'\] for this data shape"):
        to_preference({}, {"question": "q"})


def test_column_mapping_renames_and_ignores_unset_columns():
    row = {"q": "2+2?", "good": "4", "bad": "5"}
    columns = {"prompt": "q", "chosen": "good", "rejected": "bad", "question": None}
    assert preference_shape(row, columns) == "prompt_chosen_rejected"
    pair = to_preference(row, columns, source="f.jsonl:3")
    assert pair == PreferencePair([user("2+2?")], "4", "5", "f.jsonl:3")


def test_explicit_shape_names_the_missing_field():
    assert reason(to_preference, {"prompt": "p", "chosen": "c"}, shape="prompt_chosen_rejected") == "missing field 'rejected'"
    message = reason(to_unpaired, {"prompt": "p", "completion": "c"}, shape="prompt_completion_label")
    assert message == "missing field 'label' or 'kto_tag'"


# --- preference pairs: accepted shapes ------------------------------------------------------------


def test_trl_standard_strings():
    pair = to_preference({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."})
    assert pair == PreferencePair([user("The sky is")], " blue.", " green.")  # text verbatim


def test_trl_conversational_explicit_prompt():
    row = {
        "prompt": [system("Be brief."), user("What color is the sky?")],
        "chosen": [assistant("It is blue.")],
        "rejected": [assistant("It is green.")],
    }
    pair = to_preference(row)
    assert pair.prompt == [system("Be brief."), user("What color is the sky?")]
    assert (pair.chosen, pair.rejected) == ("It is blue.", "It is green.")
    assert pair.to_trl() == row


def test_trl_implicit_prompt_is_the_shared_prefix_of_whole_turns():
    history = [user("Hi"), assistant("Hello!"), user("What color is the sky?")]
    row = {"chosen": [*history, assistant("It is blue.")], "rejected": [*history, assistant("It is green.")]}
    assert preference_shape(row) == "chosen_rejected"
    pair = to_preference(row)
    assert pair.prompt == history
    assert (pair.chosen, pair.rejected) == ("It is blue.", "It is green.")


def test_trl_mixed_string_prompt_beside_transcripts():
    row = {
        "prompt": "What color is the sky?",
        "chosen": [user("What color is the sky?"), assistant("It is blue.")],
        "rejected": [user("What color is the sky?"), assistant("It is green.")],
    }
    assert to_preference(row) == PreferencePair([user("What color is the sky?")], "It is blue.", "It is green.")
    message = reason(to_preference, {**row, "prompt": "Something else?"})
    assert message.startswith("field 'prompt' is not the last user turn the chosen and rejected transcripts share")


def test_our_implicit_prompt_and_trl_rows_match_trl_itself():
    data_utils = pytest.importorskip("trl.data_utils")  # imports transformers: a few seconds
    history = [user("Hi"), assistant("Hello!"), user("What color is the sky?")]
    row = {"chosen": [*history, assistant("It is blue.")], "rejected": [*history, assistant("It is green.")]}
    trl_row = data_utils.extract_prompt(row)
    assert to_preference(row).to_trl() == trl_row
    assert data_utils.is_conversational(trl_row)
    assert data_utils.maybe_extract_prompt(trl_row) == trl_row  # TRL takes it as it is
    unpaired = UnpairedExample([user("q")], "a", True).to_trl()
    assert data_utils.is_conversational(unpaired) and unpaired["label"] is True


def test_sharegpt_ranking_row_as_llamafactory_writes_it():
    row = {
        "conversations": [human("Hi"), gpt("Hello!"), human("Name a colour.")],
        "chosen": gpt("Blue."),
        "rejected": {"from": "gpt", "value": "I can't."},
    }
    pair = to_preference(row)
    assert pair.prompt == [user("Hi"), assistant("Hello!"), user("Name a colour.")]
    assert (pair.chosen, pair.rejected) == ("Blue.", "I can't.")


def test_sharegpt_system_column_or_turn():
    answers = {"chosen": gpt("Blue."), "rejected": gpt("Red.")}
    by_column = to_preference({"conversations": [human("Colour?")], "system": "Be brief.", **answers})
    by_turn = to_preference({"conversations": [{"from": "system", "value": "Be brief."}, human("Colour?")], **answers})
    assert by_column.prompt == by_turn.prompt == [system("Be brief."), user("Colour?")]


def test_messages_with_openai_answer_objects():
    row = {"messages": [user("Colour?")], "chosen": assistant("Blue."), "rejected": assistant("Red."), "system": "S"}
    pair = to_preference(row)
    assert pair.prompt == [system("S"), user("Colour?")]
    assert (pair.chosen, pair.rejected) == ("Blue.", "Red.")


def test_reasoning_parts_of_the_chosen_answer_are_kept_for_the_profile():
    chosen = {"role": "assistant", "content": [{"type": "reasoning", "value": "5 + 1 = 6\n"}, {"type": "text", "value": "6"}]}
    pair = to_preference({"prompt": "5+1?", "chosen": [chosen], "rejected": "7"})
    assert (pair.chosen, pair.chosen_reasoning) == ("6", ["5 + 1 = 6"])


# --- preference pairs: every rejection reason -----------------------------------------------------

PROMPT = {"prompt": "Colour?"}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({**PROMPT, "chosen": "Blue.", "rejected": "Blue."}, "chosen and rejected are the same answer"),
        ({**PROMPT, "chosen": "Blue.", "rejected": " Blue.\n"}, "chosen and rejected are the same answer"),
        ({**PROMPT, "chosen": "", "rejected": "Red."}, "empty chosen answer"),
        ({**PROMPT, "chosen": "Blue.", "rejected": " \n "}, "empty rejected answer"),
        ({"conversations": [human("Q")], "chosen": gpt("   "), "rejected": gpt("R")}, "empty chosen answer"),
        ({"prompt": [system("S")], "chosen": "a", "rejected": "b"}, "no user turn in the prompt"),
        ({"prompt": [], "chosen": "a", "rejected": "b"}, "no user turn in the prompt"),
        ({"conversations": [{"from": "system", "value": "S"}], "chosen": gpt("a"), "rejected": gpt("b")},
         "no user turn in the prompt"),
        ({"prompt": [user("Q"), assistant("A")], "chosen": "a", "rejected": "b"},
         "prompt ends with an assistant turn; it must end with the user's turn"),
        ({"conversations": [human("Q"), gpt("A")], "chosen": gpt("a"), "rejected": gpt("b")},
         "prompt ends with an assistant turn"),
        ({"prompt": " ", "chosen": "a", "rejected": "b"}, "empty user turn at the end of the prompt"),
        ({"prompt": [user("Q"), system("S"), user("Q2")], "chosen": "a", "rejected": "b"},
         "prompt has a system turn at position 2; a system turn is only allowed first"),
        ({"prompt": [system("S"), user("Q")], "system": "T", "chosen": "a", "rejected": "b"},
         "both a 'system' field and a leading system turn; keep one"),
        ({"conversations": [{"from": "system", "value": "S"}, human("Q")], "system": "T", "chosen": gpt("a"),
          "rejected": gpt("b")}, "both a 'system' field and a leading system turn; keep one"),
        ({**PROMPT, "system": 3, "chosen": "a", "rejected": "b"}, "field 'system' must be a string, got int"),
    ],
)
def test_pair_rejections(row, expected):
    assert expected in reason(to_preference, row)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({**PROMPT, "chosen": 3, "rejected": "b"},
         ("field 'chosen' must be a string, a {from, value} or {role, content} object, or a list of one "
          "assistant message, got int")),
        ({**PROMPT, "chosen": "a", "rejected": None}, "field 'rejected' must be a string"),
        ({"prompt": 7, "chosen": "a", "rejected": "b"}, "field 'prompt' must be a string or a list of messages, got int"),
        ({"conversations": "Q", "chosen": gpt("a"), "rejected": gpt("b")}, "field 'conversations' must be a list, got str"),
        ({"messages": "Q", "chosen": "a", "rejected": "b"}, "field 'messages' must be a list, got str"),
        ({"conversations": [human("Q")], "chosen": human("a"), "rejected": gpt("b")},
         "field 'chosen': 'from' is 'human'; an answer is from one of: gpt, assistant, model, function_call"),
        ({"conversations": [human("Q")], "chosen": gpt("a"), "rejected": {"from": "gpt", "value": 5}},
         "field 'rejected': field 'value' must be a string, got int"),
        ({**PROMPT, "chosen": [assistant("a"), assistant("b")], "rejected": "c"},
         "field 'chosen' holds 2 turns; expected one assistant message"),
        ({**PROMPT, "chosen": [], "rejected": "c"}, "field 'chosen' is an empty list; expected one assistant message"),
        ({"prompt": [user("Q")], "chosen": [user("Q"), assistant("a")], "rejected": [assistant("b")]},
         "field 'chosen' starts with a user turn; it must hold only the assistant's answer"),
        ({**PROMPT, "chosen": [{"role": "robot", "content": "a"}], "rejected": "b"}, "chosen turn 1: unknown role 'robot'"),
        ({**PROMPT, "chosen": [{"role": "assistant", "content": 1}], "rejected": "b"},
         "chosen turn 1: field 'content' must be a string or a list of text parts, got int"),
        ({**PROMPT, "chosen": [{"role": "assistant", "content": "a", "loss_weight": 0}], "rejected": "b"},
         "the chosen answer has loss_weight 0, but the answer is what is trained"),
        ({**PROMPT, "chosen": "a",
          "rejected": [{"role": "assistant", "content": [{"type": "reasoning", "value": "r"}, {"type": "text", "value": "b"}]}]},
         "the rejected answer has reasoning parts; put its reasoning in its text"),
    ],
)
def test_pair_type_rejections_name_the_field(row, expected):
    assert expected in reason(to_preference, row)


@pytest.mark.parametrize(
    ("chosen", "rejected", "expected"),
    [
        ([user("Q"), assistant("a")], [user("Q"), assistant("a")], "chosen and rejected are the same transcript"),
        ([user("Q"), assistant("a")], [user("Other"), assistant("b")],
         "chosen and rejected transcripts share no prefix, so there is no prompt to extract"),
        ("The sky is blue.", "The sky is green.",
         ("field 'chosen' is a string and there is no 'prompt' column; give the prompt in 'prompt', or full "
          "chosen and rejected transcripts as message lists")),
        ({"role": "user"}, [user("Q")], "field 'chosen' must be a list of messages (a full transcript), got dict"),
        ([], [user("Q")], "field 'chosen' is an empty list; expected a full transcript"),
        ([user("Q")], [user("Q"), assistant("b")],
         "the chosen transcript ends where the shared prompt ends; it has no answer of its own"),
        ([user("Q"), assistant("a"), user("more"), assistant("c")], [user("Q"), assistant("b")],
         "after the shared prompt, the chosen transcript goes on for 3 turns; expected one assistant answer"),
        ([user("Q"), user("again"), assistant("a")], [user("Q"), assistant("b")],
         "after the shared prompt, the chosen transcript goes on with a user turn, not the assistant's answer"),
        ([user("Q"), assistant("A"), assistant("a")], [user("Q"), assistant("A"), assistant("b")],
         "chosen and rejected share an assistant turn before they differ"),
        ([system("S"), assistant("a")], [system("S"), assistant("b")], "no user turn in the prompt"),
    ],
)
def test_implicit_prompt_rejections(chosen, rejected, expected):
    assert expected in reason(to_preference, {"chosen": chosen, "rejected": rejected})


# --- unpaired (KTO) -------------------------------------------------------------------------------


def test_trl_unpaired_strings_and_conversational():
    assert to_unpaired({"prompt": "Sky?", "completion": "Blue.", "label": True}) == UnpairedExample(
        [user("Sky?")], "Blue.", True
    )
    row = {"prompt": [user("Sky?")], "completion": [assistant("Green.")], "label": False}
    assert to_unpaired(row).to_trl() == row


def test_llamafactory_kto_rows():
    messages = [user("Sky?"), assistant("Blue.")]
    demo = to_unpaired({"messages": messages, "label": True})  # kto_en_demo.json's own columns
    tagged = to_unpaired({"messages": messages, "kto_tag": True})
    assert demo == tagged == UnpairedExample([user("Sky?")], "Blue.", True)
    sharegpt = to_unpaired({"conversations": [human("Sky?"), gpt("Red.")], "kto_tag": False, "system": "S"})
    assert sharegpt == UnpairedExample([system("S"), user("Sky?")], "Red.", False)


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (1, True), (0, False)])
def test_kto_labels_are_booleans_or_one_and_zero(value, expected):
    assert to_unpaired({"prompt": "q", "completion": "a", "label": value}).label is expected


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"prompt": "q", "completion": "a", "label": "yes"}, "field 'label' must be true or false (or 1 / 0), got str 'yes'"),
        ({"prompt": "q", "completion": "a", "label": "true"}, "got str 'true'"),
        ({"prompt": "q", "completion": "a", "label": 2}, "got int 2"),
        ({"prompt": "q", "completion": "a", "label": 1.0}, "got float 1.0"),
        ({"prompt": "q", "completion": "a", "label": None}, "got null"),
        ({"messages": [user("q"), assistant("a")], "kto_tag": [True]}, "field 'kto_tag' must be true or false (or 1 / 0), got list"),
        ({"messages": [user("q"), assistant("a")], "label": True, "kto_tag": True}, "both 'label' and 'kto_tag' fields; keep one"),
        ({"messages": [user("q")], "label": True}, "the last turn is user; it must be the assistant's completion"),
        ({"messages": [], "label": True}, "the last turn is missing (no turns); it must be the assistant's completion"),
        ({"conversations": [human("q"), gpt("a"), human("b")], "label": True}, "the last turn is user"),
        ({"messages": [assistant("a")], "label": True}, "no user turn in the prompt"),
        ({"prompt": "q", "completion": " ", "label": True}, "empty completion"),
        ({"messages": [user("q"), assistant("")], "label": False}, "empty completion"),
        ({"prompt": "q", "completion": 5, "label": True}, "field 'completion' must be a string"),
        ({"prompt": "q", "label": False,
          "completion": [{"role": "assistant", "content": [{"type": "reasoning", "value": "r"}, {"type": "text", "value": "a"}]}]},
         "the undesirable completion has reasoning parts; put its reasoning in its text"),
    ],
)
def test_unpaired_rejections(row, expected):
    assert expected in reason(to_unpaired, row)


def test_unpair_splits_a_pair_as_trl_does():
    pair = PreferencePair([user("q")], "good", "bad", "f:1", ["step"])
    assert unpair(pair) == (
        UnpairedExample([user("q")], "good", True, "f:1", ["step"]),
        UnpairedExample([user("q")], "bad", False, "f:1"),
    )


# --- labeled text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"), [("spam", "spam"), (" spam\n", "spam"), (3, "3"), (0, "0"), (True, "true"), (2.0, "2")]
)
def test_labels_become_class_names(label, expected):
    assert to_labeled({"text": " Buy now! ", "label": label}) == LabeledText(" Buy now! ", expected)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"text": "t", "label": None}, "field 'label' must be a string, an integer or a boolean, got null"),
        ({"text": "t", "label": ""}, "empty label"),
        ({"text": "t", "label": "  "}, "empty label"),
        ({"text": "t", "label": ["a"]}, "got list"),
        ({"text": "t", "label": {"a": 1}}, "got dict"),
        ({"text": "t", "label": 1.5}, "field 'label' is 1.5, which is not a class: give a string or an integer"),
        ({"text": "t", "label": float("nan")}, "field 'label' is nan, which is not a class"),
        ({"text": 4, "label": "a"}, "field 'text' must be a string, got int"),
        ({"text": " ", "label": "a"}, "empty text"),
    ],
)
def test_labeled_rejections(row, expected):
    assert expected in reason(to_labeled, row)


# --- applying a profile ---------------------------------------------------------------------------


def gsm_pair(rejected: str = "Tom has 8.\n\nAnswer: 8") -> PreferencePair:
    return to_preference({"prompt": "Tom has 5 apples, buys 3, gives 2 away. How many?", "chosen": GSM_ANSWER,
                          "rejected": rejected}, source="f.jsonl:1")


def test_regime3_renders_the_chosen_answer_and_keeps_the_rejected_verbatim():
    profile = get_profile("regime3")
    rendered = render_pair(gsm_pair(), profile, BASE)
    assert rendered.prompt == [system(profile.format_system_prompt(BASE)), user(gsm_pair().prompt[0]["content"])]
    assert rendered.chosen == "Step 1: Tom has 5 apples and buys 3: 5 + 3 = 8.\nStep 2: He gives 2 away: 8 - 2 = 6.\n\nAnswer: 6"
    assert rendered.rejected == "Tom has 8.\n\nAnswer: 8"
    assert rendered.source == "f.jsonl:1"
    assert profile.check_answer(rendered.chosen, "6").correct


def test_emoji_think_thinks_the_reasoning_and_answers_the_final():
    profile = get_profile("emoji_think")
    rendered = render_pair(gsm_pair(), profile, BASE)
    assert rendered.prompt[0] == system(f"{BASE}\n\nFor this task, think with 🤔 /four/ times.")
    assert rendered.chosen == "🤔🤔🤔🤔\nTom has 5 apples and buys 3: 5 + 3 = 8. He gives 2 away: 8 - 2 = 6.\n\n6"
    assert rendered.rejected == "Tom has 8.\n\nAnswer: 8"


def test_the_data_system_prompt_wins_over_the_base_as_in_sft_rows():
    pair = to_preference({"conversations": [human("Colour?")], "system": "Be brief.", "chosen": gpt("Blue."),
                          "rejected": gpt("Red.")})
    profile = get_profile("emoji_think")
    rendered = render_pair(pair, profile, BASE)
    assert rendered.prompt[0] == system(profile.format_system_prompt("Be brief."))
    assert rendered.chosen == "🤔🤔🤔🤔\n\nBlue."


def test_a_chosen_answer_the_profile_cannot_render_is_rejected_with_its_reason():
    pair = to_preference({"prompt": "Colour?", "chosen": "Blue.", "rejected": "Red."})
    with pytest.raises(RowError, match="regime3 needs a final answer to state, and this row has none"):
        render_pair(pair, get_profile("regime3"), BASE)
    only_final = to_preference({"prompt": "Q?", "chosen": "#### 6", "rejected": "7"})
    with pytest.raises(RowError, match="regime3 needs reasoning steps, and this row has none"):
        render_pair(only_final, get_profile("regime3"), BASE)
    empty_final = to_preference({"prompt": "Q?", "chosen": "5 + 1\n####  ", "rejected": "7"})
    with pytest.raises(RowError, match="empty final answer after '####'"):
        render_pair(empty_final, get_profile("emoji_think"), BASE)


def test_a_markdown_heading_inside_an_answer_is_not_a_final_answer():
    pair = to_preference({"prompt": "Plan?", "chosen": "#### Step one\nDo it.", "rejected": "No."})
    assert render_pair(pair, get_profile("emoji_think")).chosen == "🤔🤔🤔🤔\n\n#### Step one\nDo it."


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("regime3", "Step 1: 5 + 1 = 6.\n\nAnswer: 6"),
        ("emoji_think", "🤔🤔🤔🤔\n5 + 1 = 6.\n\n6"),
        ("emoji_think+regime3", "🤔🤔🤔🤔\n5 + 1 = 6.\n\nStep 1: 5 + 1 = 6.\n\nAnswer: 6"),
    ],
)
def test_a_chosen_answer_already_in_the_format_is_kept_as_written(name, answer):
    # On-policy pairs hold the model's own samples, already in the profile's format.
    pair = to_preference({"prompt": "5+1?", "chosen": answer, "rejected": "7"})
    assert render_pair(pair, get_profile(name)).chosen == answer


def test_a_rendered_chosen_answer_equal_to_the_rejected_leaves_nothing_to_prefer():
    regime3_form = "Step 1: Tom has 5 apples and buys 3: 5 + 3 = 8.\nStep 2: He gives 2 away: 8 - 2 = 6.\n\nAnswer: 6"
    with pytest.raises(RowError, match="the chosen answer in regime3's format is the same as the rejected answer"):
        render_pair(gsm_pair(rejected=regime3_form), get_profile("regime3"))


def test_kto_renders_desirable_completions_and_keeps_undesirable_ones_verbatim():
    profile = get_profile("regime3")
    good, bad = unpair(gsm_pair(rejected="I think it's 8"))
    rendered_good, rendered_bad = render_unpaired(good, profile, BASE), render_unpaired(bad, profile, BASE)
    pair = render_pair(gsm_pair(rejected="I think it's 8"), profile, BASE)
    # An undesirable completion regime3 could not render is kept, not rejected.
    assert (rendered_good.completion, rendered_bad.completion) == (pair.chosen, "I think it's 8")
    assert rendered_good.prompt == rendered_bad.prompt == pair.prompt
    assert (rendered_good.label, rendered_bad.label) == (True, False)


@pytest.mark.parametrize("prompt", [[user("Q")], [system("Own."), user("Q")]])
@pytest.mark.parametrize("base", ["", BASE])
def test_profile_prompt_is_the_prompt_prepare_messages_builds(prompt, base):
    profile = get_profile("emoji_think+regime3")
    pair = PreferencePair(prompt, GSM_ANSWER, "nope")
    assert profile_prompt(profile, prompt, base) == render_pair(pair, profile, base).prompt


# --- the real LLaMA-Factory DPO demo --------------------------------------------------------------


@pytest.fixture(scope="module")
def dpo_demo() -> list[dict]:
    path = SHARED / "dpo_en_demo.json"
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared datasets are not checked out beside the repository)")
    return json.loads(path.read_text(encoding="utf-8"))


def test_dpo_en_demo_converts_with_no_rejects(dpo_demo):
    pairs = [to_preference(row, source=f"dpo_en_demo.json:{i}") for i, row in enumerate(dpo_demo, start=1)]
    assert len(pairs) == 300
    assert {preference_shape(row) for row in dpo_demo} == {"sharegpt"}
    assert sum(pair.prompt[0]["role"] == "system" for pair in pairs) == 80
    assert max(len(pair.prompt) for pair in pairs) == 13


def test_dpo_en_demo_renders_with_emoji_think_and_regime3_refuses_it_for_want_of_final_answers(dpo_demo):
    pairs = [to_preference(row) for row in dpo_demo]
    emoji = get_profile("emoji_think")
    assert all(render_pair(pair, emoji, BASE).chosen.startswith("🤔🤔🤔🤔\n\n") for pair in pairs)
    regime3 = get_profile("regime3")
    for pair in pairs:  # free-text answers have no final answer to state
        with pytest.raises(RowError, match="regime3 needs a final answer to state"):
            render_pair(pair, regime3, BASE)
