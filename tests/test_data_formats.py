"""Row shapes -> Example, their rejection reasons, and the file readers, on real bytes on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trainer.data.example import Example, RawRow, Rejected, RowError
from trainer.data.formats import FORMATS, KNOWN_FORMATS, convert_row, detect_format
from trainer.data.readers import expand_paths, iter_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
NO_MAPPING: dict[str, str | None] = {}


def convert(row: dict, fmt: str = "auto", **columns: str) -> Example:
    return convert_row(row, fmt, columns)


def reason_of(row: dict, fmt: str = "auto", **columns: str) -> str:
    with pytest.raises(RowError) as info:
        convert_row(row, fmt, columns)
    return str(info.value)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


# --- shapes ---------------------------------------------------------------------------------------


def test_registry_order_matches_config_choices():
    assert KNOWN_FORMATS == (
        "messages", "sharegpt", "alpaca", "prompt_completion", "question_answer", "text"
    )  # fmt: skip
    assert tuple(FORMATS) == KNOWN_FORMATS


def test_messages_string_and_text_parts():
    parts = [{"type": "text", "text": "Hi"}, {"type": "text", "text": "x"}]
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": parts},
            {"role": "assistant", "content": " Hello! "},
        ]
    }
    example = convert(row)
    assert example.messages == [system("Be brief."), user("Hi\nx"), assistant(" Hello! ")]
    assert example.final_answer is None and example.reasoning is None and example.source == ""


def test_sharegpt_system_column_and_tool_turns():
    row = {
        "system": "You can call tools.",
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "P"}}'},
            {"from": "observation", "value": '{"temp": 21}'},
            {"from": "model", "value": "It is 21 C."},
            {"from": "user", "value": "Thanks"},
            {"from": "gpt", "value": "You're welcome."},
        ],
    }
    assert convert(row).messages == [
        system("You can call tools."),
        user("Weather in Paris?"),
        assistant('{"name": "weather", "arguments": {"city": "P"}}'),
        user('{"temp": 21}'),
        assistant("It is 21 C."),
        user("Thanks"),
        assistant("You're welcome."),
    ]


def test_sharegpt_system_turn_tool_turn_and_empty_system_column():
    row = {
        "system": "",
        "conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "q"},
            {"from": "assistant", "value": "call"},
            {"from": "tool", "value": "result"},
            {"from": "gpt", "value": "a"},
        ],
    }
    assert convert(row).messages == [
        system("S"), user("q"), assistant("call"), user("result"), assistant("a")
    ]  # fmt: skip


def test_alpaca_input_system_history():
    row = {
        "instruction": "Translate.",
        "input": "Bonjour",
        "output": "Hello",
        "system": "You translate.",
        "history": [["Hi", "Hey"], ["Ready?", "Yes"]],
    }
    assert convert(row).messages == [
        system("You translate."),
        user("Hi"),
        assistant("Hey"),
        user("Ready?"),
        assistant("Yes"),
        user("Translate.\n\nBonjour"),
        assistant("Hello"),
    ]


def test_alpaca_without_input_and_null_optionals():
    row = {"instruction": "Say hi.", "input": "", "output": "hi", "system": None, "history": None}
    assert convert(row).messages == [user("Say hi."), assistant("hi")]


def test_prompt_completion_plain_and_conversational():
    assert convert({"prompt": "2+2=", "completion": "4"}).messages == [user("2+2="), assistant("4")]
    row = {
        "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}],
        "completion": [{"role": "assistant", "content": "a"}],
    }
    assert convert(row).messages == [system("S"), user("q"), assistant("a")]


def test_question_answer_gsm8k():
    row = {
        "question": "How many?",
        "answer": "He sold 48/2 = <<48/2=24>>24 in May.\n\n"
        "So $<<6000*12=72000>>72000 in all.\n#### 1,000",
    }
    example = convert(row)
    assert example.final_answer == "1000"
    assert example.reasoning == ["He sold 48/2 = 24 in May.", "So $72000 in all."]
    assert example.messages == [
        user("How many?"),
        assistant("He sold 48/2 = 24 in May.\nSo $72000 in all.\n#### 1000"),
    ]


def test_question_answer_without_marker_keeps_answer_verbatim():
    example = convert({"question": "q", "answer": "It is <<1+1=2>>2."})
    assert example.messages == [user("q"), assistant("It is <<1+1=2>>2.")]
    assert example.final_answer is None and example.reasoning is None


def test_question_answer_negative_and_bare_final():
    example = convert({"question": "q", "answer": "#### -7"})
    assert (example.final_answer, example.reasoning) == ("-7", [])
    assert example.messages[-1] == assistant("#### -7")


def test_text_is_one_assistant_turn():
    assert convert({"text": "All of it.\n"}).messages == [assistant("All of it.\n")]


def test_detection_priority():
    assert detect_format({"question": "q", "answer": "a", "text": "t"}) == "question_answer"
    assert detect_format({"messages": [], "text": "t"}) == "messages"
    both = {"instruction": "i", "output": "o", "prompt": "p", "completion": "c"}
    assert detect_format(both) == "alpaca"


def test_detection_failure_lists_columns_and_shapes():
    assert reason_of({"foo": 1, "bar": 2}) == (
        "cannot detect the row's shape from its columns ['foo', 'bar']; known shapes: "
        "messages (messages); sharegpt (conversations); alpaca (instruction, output); "
        "prompt_completion (prompt, completion); question_answer (question, answer); text (text); "
        "set data.format or data.columns"
    )


# --- column mapping -------------------------------------------------------------------------------


def test_column_mapping_makes_shape_detectable():
    row = {"problem": "1+1?", "solution": "#### 2", "text": "ignored"}
    assert detect_format(row) == "text"
    example = convert(row, question="problem", answer="solution")
    assert example.final_answer == "2"
    assert example.messages == [user("1+1?"), assistant("#### 2")]


def test_column_mapping_wins_over_same_named_column_and_none_keeps_canonical():
    row = {"instruction": "i", "output": "old", "response": "new"}
    assert convert_row(row, "alpaca", {"output": "response", "input": None}).messages == [
        user("i"), assistant("new")
    ]  # fmt: skip


def test_column_mapping_reads_the_original_row_so_swaps_work():
    row = {"instruction": "i", "output": "the input", "input": "the output"}
    example = convert(row, input="output", output="input")
    assert example.messages == [user("i\n\nthe input"), assistant("the output")]


def test_missing_mapped_column_names_the_actual_column():
    assert reason_of({"instruction": "i"}, "alpaca", output="response") == (
        "missing field 'response' (mapped to 'output')"
    )


def test_config_errors_are_not_row_errors():
    with pytest.raises(ValueError, match=r"^unknown format 'csv'; known: auto, messages, "):
        convert_row({"text": "t"}, "csv", {})
    with pytest.raises(ValueError, match=r"^unknown canonical columns \['body'\]"):
        convert_row({"text": "t"}, "auto", {"body": "x"})


# --- every rejection reason -----------------------------------------------------------------------

ROW_ERRORS = [
    ({"instruction": "i"}, "alpaca", "missing field 'output'"),
    ({"instruction": "i", "output": 3}, "alpaca", "field 'output' must be a string, got int"),
    ({"instruction": "i", "input": 5, "output": "o"}, "auto", "field 'input' must be a string, got int"),
    ({"messages": "hi"}, "auto", "field 'messages' must be a list, got str"),
    ({"conversations": None}, "auto", "field 'conversations' must be a list, got null"),
    ({"messages": [user("q"), {"role": "bot", "content": "a"}]}, "auto",
     "messages turn 2: unknown role 'bot'; known roles: system, user, assistant"),
    ({"messages": [user("q"), {"role": "assistant"}]}, "auto", "messages turn 2: missing field 'content'"),
    ({"messages": ["q"]}, "auto", "messages turn 1: expected an object with 'role' and 'content', got str"),
    ({"messages": [user("q"), {"role": "assistant", "content": 4}]}, "auto",
     "messages turn 2: field 'content' must be a string or a list of text parts, got int"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "auto", "messages turn 1: content part 1 has type 'image_url'; supported part types: text, reasoning"),
    ({"messages": [{"role": "user", "content": ["q"]}]}, "auto",
     "messages turn 1: content part 1 must be an object, got str"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "auto",
     "messages turn 1: content part 1: field 'text' (OpenAI) or 'value' (LLaMA-Factory) must be a "
     "string, got null"),
    ({"conversations": [{"from": "bot", "value": "x"}]}, "auto",
     "conversations turn 1: unknown role 'bot'; known roles: human, user, gpt, assistant, model, "
     "system, function_call, observation, tool"),
    ({"conversations": [{"from": "human"}]}, "auto", "conversations turn 1: missing field 'value'"),
    ({"conversations": [{"from": ["gpt"], "value": "x"}]}, "auto",
     "conversations turn 1: unknown role ['gpt']; known roles: human, user, gpt, assistant, model, "
     "system, function_call, observation, tool"),
    ({"conversations": [{"from": "gpt", "value": None}]}, "auto",
     "conversations turn 1: field 'value' must be a string, got null"),
    ({"conversations": [[]]}, "auto", "conversations turn 1: expected an object with 'from' and 'value', got list"),
    ({"system": "A", "conversations": [{"from": "system", "value": "B"}, {"from": "gpt", "value": "x"}]},
     "auto", "both a 'system' field and a leading system turn; keep one"),
    ({"instruction": "i", "output": "o", "history": [["only one"]]}, "auto",
     "field 'history' item 1 must be a [user, assistant] pair of strings"),
    ({"instruction": "i", "output": "o", "history": "h"}, "auto", "field 'history' must be a list, got str"),
    ({"prompt": 1, "completion": "c"}, "auto", "field 'prompt' must be a string or a list of messages, got int"),
    ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "agent", "content": "a"}]},
     "auto", "completion turn 1: unknown role 'agent'; known roles: system, user, assistant"),
    ({"question": "q", "answer": ["a"]}, "auto", "field 'answer' must be a string, got list"),
    ({"question": "q", "answer": "x\n#### 4\nmore"}, "auto", "text after the '#### <final answer>' line"),
    ({"question": "q", "answer": "x\n####  "}, "auto", "empty final answer after '####'"),
    ({"text": None}, "auto", "field 'text' must be a string, got null"),
    ({"text": " \n"}, "auto", "empty assistant turn"),
    ({"instruction": "i", "output": ""}, "auto", "empty assistant turn"),
    ({"messages": []}, "auto", "no assistant turn"),
    ({"messages": [system("s")]}, "auto", "no assistant turn"),
    ({"messages": [user("q")]}, "auto", "last turn is user, not assistant"),
    ({"messages": [user("q"), assistant("a"), user("q2")]}, "auto", "last turn is user, not assistant"),
    ({"messages": [user("q"), system("s"), assistant("a")]}, "auto",
     "system turn at position 2; a system turn is only allowed first"),
    ({"question": "q", "answer": "a"}, "text", "missing field 'text'"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "fmt", "reason"), ROW_ERRORS, ids=[r for _, _, r in ROW_ERRORS])
def test_row_error_reasons(row, fmt, reason):
    assert reason_of(row, fmt) == reason


# --- readers --------------------------------------------------------------------------------------


def split(items):
    rows = [item for item in items if isinstance(item, RawRow)]
    rejects = [item for item in items if isinstance(item, Rejected)]
    return rows, rejects


def test_jsonl_bad_lines_are_rejected_with_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b'{"text": "one"}\n'
        b"\n"
        b'{"text": tw}\n'
        b"[1, 2]\n"
        b'{"text": "caf\xe9"}\n'
        b"   \r\n"
        b'{"text": "three"}\r\n'
        b'{"text": "four"}'
    )
    items = list(iter_rows([path]))
    rows, rejects = split(items)
    assert [(r.line, r.data["text"]) for r in rows] == [(1, "one"), (7, "three"), (8, "four")]
    assert all(r.file == str(path) for r in items)
    assert [(r.line, r.reason, r.raw, r.stage) for r in rejects] == [
        (3, "invalid JSON: Expecting value at column 10",
         '{"text": tw}', "read"),
        (4, "expected a JSON object, got list", "[1, 2]", "read"),
        (5, "not valid UTF-8: invalid continuation byte at byte 13; the text seems to be Windows-1252 / "
            "Latin-1: convert the file to UTF-8 (iconv -f CP1252 -t UTF-8)", '{"text": "caf\ufffd"}', "read"),
    ]  # fmt: skip


def test_jsonl_raw_is_truncated_and_bom_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\ufeff" + json.dumps({"text": "a"}) + "\n" + "{" + "x" * 2000 + "\n", "utf-8")
    rows, rejects = split(list(iter_rows([path])))
    assert [r.data for r in rows] == [{"text": "a"}]
    assert rejects[0].line == 2 and len(rejects[0].raw) == 500


def test_json_array_and_wrapped_list(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"text": "a"}, "oops", {"text": "b"}]))
    rows, rejects = split(list(iter_rows([array])))
    assert [(r.line, r.data) for r in rows] == [(1, {"text": "a"}), (3, {"text": "b"})]
    assert [(r.line, r.reason, r.raw) for r in rejects] == [
        (2, "expected a JSON object, got str", "oops")
    ]

    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"version": 2, "data": [{"text": "c"}]}))
    assert [(r.line, r.data) for r in iter_rows([wrapped])] == [(1, {"text": "c"})]


def test_json_whole_file_failures(tmp_path):
    broken = tmp_path / "b.json"
    broken.write_text('[\n  {"text": "a"},\n  {"text": "b"\n]\n')
    assert [(r.line, r.reason) for r in iter_rows([broken])] == [
        (4, "invalid JSON file (no row of it can be read): "
         "Expecting ',' delimiter at line 4 column 1")
    ]
    scalar = tmp_path / "s.json"
    scalar.write_text('"just a string"')
    assert [(r.line, r.reason) for r in iter_rows([scalar])] == [
        (None, "expected a JSON array of objects, got str")
    ]
    two_lists = tmp_path / "t.json"
    two_lists.write_text(json.dumps({"train": [], "test": []}))
    assert [r.reason for r in iter_rows([two_lists])] == [
        "expected a JSON array of objects, or an object holding exactly one list of them; "
        "got an object with 2 lists (keys: ['train', 'test'])"
    ]


def test_parquet_rows_with_nested_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    table = pa.table({"messages": [[user("q1"), assistant("a1")], [user("q2"), assistant("a2")]]})
    pq.write_table(table, path, row_group_size=1)
    rows = list(iter_rows([path]))
    assert [(r.line, r.data) for r in rows] == [
        (1, {"messages": [user("q1"), assistant("a1")]}),
        (2, {"messages": [user("q2"), assistant("a2")]}),
    ]
    assert convert(rows[1].data).messages == [user("q2"), assistant("a2")]


def test_expand_paths_sorted_recursive_skips_hidden(tmp_path):
    names = ["b.jsonl", "a.json", "sub/c.parquet", "notes.txt", ".hidden.jsonl", ".cache/x.jsonl"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    explicit = tmp_path / ".hidden.jsonl"
    assert expand_paths([tmp_path, explicit]) == [
        tmp_path / "a.json", tmp_path / "b.jsonl", tmp_path / "sub" / "c.parquet", explicit
    ]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="does not exist"):
        expand_paths([tmp_path / "missing.jsonl"])
    unsupported = r"unsupported file type '\.txt'; known: \.jsonl, \.json, \.parquet"
    with pytest.raises(ValueError, match=unsupported):
        list(iter_rows([tmp_path / "notes.txt"]))


# --- real datasets --------------------------------------------------------------------------------


def shared(name: str) -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/datasets absent (fresh clone)")
    return SHARED / name


def load(path: Path) -> tuple[list[Example], list[Rejected]]:
    examples, rejects = [], []
    for item in iter_rows([path]):
        if isinstance(item, Rejected):
            rejects.append(item)
            continue
        try:
            examples.append(convert_row(item.data, "auto", NO_MAPPING))
        except RowError as exc:
            rejects.append(Rejected(item.file, item.line, str(exc), item.data, stage="convert"))
    return examples, rejects


@pytest.mark.parametrize(
    ("name", "count"), [("gsm8k_train.jsonl", 7473), ("gsm8k_test.jsonl", 1319)]
)
def test_gsm8k_real(name, count):
    examples, rejects = load(shared(name))
    assert (len(examples), rejects) == (count, [])
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", e.final_answer) for e in examples)
    assert not any("<<" in e.messages[-1]["content"] for e in examples)
    for example in examples:
        assert example.reasoning
        assert example.messages[-1]["content"].endswith(f"\n#### {example.final_answer}")


@pytest.mark.parametrize(("name", "count"), [("alpaca_en_demo.json", 999), ("identity.json", 91)])
def test_alpaca_real(name, count):
    examples, rejects = load(shared(name))
    assert (len(examples), rejects) == (count, [])
    assert all([m["role"] for m in e.messages] == ["user", "assistant"] for e in examples)


def test_dpo_conversations_end_on_user():
    path = shared("dpo_en_demo.json")
    rows = list(iter_rows([path]))
    assert len(rows) == 300 and all(isinstance(r, RawRow) for r in rows)
    for row in rows:
        prompt_only = {"conversations": row.data["conversations"]}
        assert reason_of(prompt_only) == "last turn is user, not assistant"
        # With the chosen answer appended, the prompt is a valid ShareGPT conversation.
        conversation = row.data["conversations"] + [row.data["chosen"]]
        example = convert({"conversations": conversation}, "sharegpt")
        assert example.messages[-1] == assistant(row.data["chosen"]["value"])
