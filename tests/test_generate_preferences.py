"""The bundled preference pairs: reproducible from their generator, and every row trainable with
the bundled profiles (chosen renders and is right; rejected fails the profile's check)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from trainer.data.shapes import preference_shape, render_pair, to_preference
from trainer.profiles import get_profile

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
COMMITTED = DATA_DIR / "preferences_train.jsonl"


def load_generator():
    """data/ is not a package, so import the script from its path."""
    spec = importlib.util.spec_from_file_location("generate_preferences", DATA_DIR / "generate_preferences.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator():
    return load_generator()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with COMMITTED.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_defaults_regenerate_the_committed_file_byte_for_byte(generator, tmp_path):
    out = tmp_path / "preferences.jsonl"
    assert generator.main(["--out", str(out)]) == 0
    assert out.read_bytes() == COMMITTED.read_bytes()


def test_seed_and_pairs_options_change_the_output(generator, tmp_path):
    generator.main(["--pairs", "40", "--seed", "7", "--out", str(tmp_path / "a.jsonl")])
    generator.main(["--pairs", "40", "--seed", "8", "--out", str(tmp_path / "b.jsonl")])
    first = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(first) == 40
    assert first != (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()


def test_committed_file_size_rows_and_columns(rows):
    assert len(rows) == 2000
    assert COMMITTED.stat().st_size < 1_500_000
    assert len({row["prompt"] for row in rows}) == len(rows), "prompts must be distinct"
    assert all(list(row) == ["prompt", "chosen", "rejected", "rejected_kind"] for row in rows)
    assert {preference_shape(row) for row in rows} == {"prompt_chosen_rejected"}


def test_every_rejected_kind_is_there_in_roughly_its_share(generator, rows):
    counts = Counter(row["rejected_kind"] for row in rows)
    assert set(counts) == set(generator.REJECTED_KINDS)
    for kind, (share, _) in generator.REJECTED_KINDS.items():
        assert abs(counts[kind] / len(rows) - share) < 0.05, (kind, counts[kind])


@pytest.mark.parametrize("name", ["regime3", "emoji_think", "emoji_think+regime3"])
def test_every_row_converts_and_its_chosen_renders_right(rows, name):
    profile = get_profile(name)
    for index, row in enumerate(rows, start=1):
        pair = render_pair(to_preference(row, source=f"preferences_train.jsonl:{index}"), profile)
        final = row["chosen"].rsplit("#### ", 1)[1]
        verdict = profile.check_answer(pair.chosen, final)
        assert verdict.format_ok and verdict.correct, (index, pair.chosen)
        assert pair.rejected == row["rejected"]  # verbatim


def test_every_rejected_answer_fails_regime3_in_format_or_answer(rows):
    regime3 = get_profile("regime3")
    seen = Counter()
    for row in rows:
        verdict = regime3.check_answer(row["rejected"], row["chosen"].rsplit("#### ", 1)[1])
        assert not (verdict.format_ok and verdict.correct), row
        seen[row["rejected_kind"], verdict.format_ok] += 1
    # Wrong answers are in the format; right ones are out of it.
    assert {kind for kind, ok in seen if ok} == {"arithmetic_slip", "wrong_final"}
    assert {kind for kind, ok in seen if not ok} == {"no_final_answer", "truncated", "prose", "bare_answer"}


def test_an_arithmetic_slip_carries_to_the_final_answer(rows):
    regime3 = get_profile("regime3")
    for row in rows:
        if row["rejected_kind"] != "arithmetic_slip":
            continue
        right = row["chosen"].rsplit("#### ", 1)[1]
        steps = row["rejected"].split("\n\n")[0].splitlines()
        last_result = steps[-1].rsplit("= ", 1)[1].split()[0]
        assert regime3.check_format(row["rejected"]).answer == last_result != right


def test_rejected_answers_follow_the_profile_they_are_written_for(generator):
    profile = get_profile("emoji_think")
    for row in generator.generate(60, 11, "emoji_think"):
        verdict = profile.check_answer(row["rejected"], row["chosen"].rsplit("#### ", 1)[1])
        assert not (verdict.format_ok and verdict.correct), row
        if row["rejected_kind"] in ("arithmetic_slip", "wrong_final"):
            assert verdict.format_ok, row
