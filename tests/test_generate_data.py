"""The bundled arithmetic data: reproducible from its generator, and well-formed GSM8K rows."""

from __future__ import annotations

import importlib.util
import json
import operator
import re
import sys
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
COMMITTED = DATA_DIR / "arithmetic_train.jsonl"
ANNOTATION = re.compile(r"<<(\d+)([+*-])(\d+)=(\d+)>>(\d+)")
FINAL = re.compile(r"#### (\d+)")
APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def load_generator():
    """data/ is not a package, so import the script from its path."""
    spec = importlib.util.spec_from_file_location("generate_arithmetic",
                                                  DATA_DIR / "generate_arithmetic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with COMMITTED.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_defaults_regenerate_the_committed_file_byte_for_byte(tmp_path):
    out = tmp_path / "arithmetic.jsonl"
    assert load_generator().main(["--out", str(out)]) == 0
    assert out.read_bytes() == COMMITTED.read_bytes()


def test_seed_and_rows_options_change_the_output(tmp_path):
    generator = load_generator()
    generator.main(["--rows", "50", "--seed", "7", "--out", str(tmp_path / "a.jsonl")])
    generator.main(["--rows", "50", "--seed", "8", "--out", str(tmp_path / "b.jsonl")])
    first = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(first) == 50
    assert first != (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()


def test_committed_file_size_and_row_count(rows):
    assert len(rows) == 4000
    assert COMMITTED.stat().st_size < 2_000_000
    assert len({row["question"] for row in rows}) == len(rows), "questions must be distinct"


def test_each_row_has_question_and_answer_only(rows):
    for row in rows:
        assert set(row) == {"question", "answer"}
        assert row["question"].endswith("?")


def test_answers_have_two_or_three_reasoning_lines_then_final(rows):
    for row in rows:
        *reasoning, final = row["answer"].split("\n")
        assert 2 <= len(reasoning) <= 3, row["answer"]
        assert FINAL.fullmatch(final), final
        assert all(len(ANNOTATION.findall(line)) == 1 for line in reasoning), row["answer"]


def test_annotations_are_correct_and_chain_to_the_final_answer(rows):
    for row in rows:
        annotations = ANNOTATION.findall(row["answer"])
        for left, op, right, result, shown in annotations:
            assert APPLY[op](int(left), int(right)) == int(result), row["answer"]
            assert result == shown, "the text after the annotation repeats its result"
            assert 0 <= int(result) < 100
        # Each step works on the previous result, and the last result is the final answer.
        for previous, current in zip(annotations, annotations[1:]):
            assert current[0] == previous[3], row["answer"]
        assert FINAL.search(row["answer"]).group(1) == annotations[-1][3]


def test_every_operation_is_used(rows):
    ops = {op for row in rows for _, op, *_ in ANNOTATION.findall(row["answer"])}
    assert ops == {"+", "-", "*"}
