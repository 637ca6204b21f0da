"""Data preparation end to end on real files: rejects with file/line/reason, threshold, report, cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.config import create_default_config
from trainer.data.prepare import DataError, prepare_data
from trainer.models.templates import CHATML_TEMPLATE
from trainer.profiles import get_profile

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "data" / "arithmetic_train.jsonl"


def gsm_rows(n: int, start: int = 0) -> list[str]:
    return BUNDLED.read_text(encoding="utf-8").splitlines()[start : start + n]


def config_for(tmp_path: Path, files: list[str], **overrides):
    values = {
        "system.base_dir": str(tmp_path),
        "data.holdout_size": 2,
        "data.max_reject_fraction": 0.5,
        **overrides,
    }
    return create_default_config(dataset_path=files, overrides=values)


def run(tmp_path, tokenizer, config, profile="regime3"):
    eos = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return prepare_data(config, tokenizer, get_profile(profile), CHATML_TEMPLATE, eos, tmp_path / "run")


def test_every_kind_of_bad_row_is_rejected_with_file_line_and_reason(tmp_path, tiny_tokenizer):
    good = gsm_rows(20)
    bad_lines = [
        b'{"question": "no closing brace"',
        b'{"question": 5, "answer": "x\\n#### 5"}',
        b'{"question": "only a question"}',
        b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}',
        b'{"question": "caf\xe9 bad bytes", "answer": "1\\n#### 1"}',
        b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([*(g.encode() for g in good[:10]), *bad_lines, *(g.encode() for g in good[10:])]) + b"\n")
    data = run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(path)]))
    rejects = [json.loads(l) for l in (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()]
    by_line = {r["line"]: (r["stage"], r["reason"]) for r in rejects}
    assert by_line[11][0] == "read" and by_line[11][1].startswith("invalid JSON:")
    assert by_line[12] == ("convert", "field 'question' must be a string, got int")
    assert by_line[13][0] == "convert" and by_line[13][1].startswith("cannot detect the row's shape")
    assert by_line[14] == ("convert", "empty assistant turn")
    assert by_line[15][0] == "read" and by_line[15][1].startswith("not valid UTF-8")
    # a well-formed chat row that regime3 cannot render: rejected for that, not trained as is
    assert by_line[16] == ("profile", "regime3 needs a final answer to state, and this row has none")
    assert all(r["file"] == str(path) for r in rejects)
    report = data.report
    assert (report.rows_total, report.rows_rejected, report.rows_held_out, report.rows_used) == (26, 6, 2, 18)
    assert report.rejected_by_reason["profile: regime3 needs a final answer to state, and this row has none"] == 1
    saved = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert saved["rows_rejected"] == 6 and saved["reject_fraction"] == round(6 / 26, 4)
    assert len(data.train) == 18
    assert len(data.probes) == 2 and all(p.golden for p in data.probes)


def test_threshold_stops_with_counts_reasons_and_rejects_path(tmp_path, tiny_tokenizer):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(gsm_rows(10) + ["not json"] * 2) + "\n")
    config = config_for(tmp_path, [str(path)], **{"data.max_reject_fraction": 0.1})
    with pytest.raises(DataError) as info:
        run(tmp_path, tiny_tokenizer, config)
    message = str(info.value)
    assert message.startswith("2 of 12 rows (16.7%) were rejected, more than data.max_reject_fraction=0.1: 2 x read: invalid JSON")
    assert message.endswith(f"Rejected rows, with file, line and reason: {tmp_path / 'run' / 'rejects.jsonl'}")
    # the pass side of the pair: the same data under a looser threshold trains
    run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(path)], **{"data.max_reject_fraction": 0.2}))


def test_no_row_left(tmp_path, tiny_tokenizer):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi", "output": "hi"}) + "\n")
    with pytest.raises(DataError, match=r"^no row left to train on: 1 of 1 rows were rejected \(1 x profile: regime3 needs"):
        run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(path)], **{"data.max_reject_fraction": 1.0}))


@pytest.mark.parametrize("policy", ["drop", "truncate"])
def test_overlong_policy_counts(tmp_path, tiny_tokenizer, policy):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(gsm_rows(8)) + "\n")
    full = run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(path)]))
    lengths = sorted(len(ids) for ids in full.train["input_ids"])
    limit = lengths[2]
    over = sum(length > limit for length in lengths)
    assert 0 < over < len(lengths)
    config = config_for(
        tmp_path,
        [str(path)],
        **{"data.overlong_policy": policy, "data.max_length": limit, "data.max_reject_fraction": 1.0},
    )
    data = run(tmp_path, tiny_tokenizer, config)
    report = data.report
    if policy == "drop":
        assert (report.rows_used, report.rows_rejected, report.rows_truncated) == (len(lengths) - over, over, 0)
        assert report.rejected_by_reason == {"length: longer than data.max_length": over}
    else:
        assert (report.rows_used, report.rows_rejected, report.rows_truncated) == (len(lengths), 0, over)
    assert max(len(ids) for ids in data.train["input_ids"]) <= limit


def test_overlong_error_policy_names_rows(tmp_path, tiny_tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(gsm_rows(8)) + "\n")
    config = config_for(tmp_path, [str(path)], **{"data.overlong_policy": "error", "data.max_length": 150})
    with pytest.raises(DataError, match=r"rows are longer than data.max_length=150 tokens and data.overlong_policy is 'error': .*d.jsonl:\d+ \(\d+ tokens\)"):
        run(tmp_path, tiny_tokenizer, config)


def test_report_checks_and_trainable_share(tmp_path, tiny_tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(gsm_rows(30)) + "\n")
    report = run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(path)])).report
    assert report.checks == {
        "inference_prompt_matches_training": "ok",
        "assistant_turn_ends_with": ["<|im_end|>"],
        "generation_stops_there": True,
    }
    assert 0.2 < report.trainable_token_fraction < 0.6
    assert report.samples[0].count("[[") == 1 and report.samples[0].rstrip().endswith("<|im_end|>]]")
    assert report.formats == {"question_answer": 30}


def test_cache_hit_and_invalidation(tmp_path, tiny_tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(gsm_rows(30)) + "\n")
    config = config_for(tmp_path, [str(path)])
    first = run(tmp_path, tiny_tokenizer, config)
    second = run(tmp_path, tiny_tokenizer, config)
    assert (first.report.cache_hit, second.report.cache_hit) == (False, True)
    assert second.train["input_ids"] == first.train["input_ids"]
    assert second.report.rows_used == first.report.rows_used
    # a changed profile, setting or file never reuses the cache
    assert not run(tmp_path, tiny_tokenizer, config, profile="emoji_think").report.cache_hit
    assert not run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(path)], **{"data.max_length": 300})).report.cache_hit
    path.write_text("\n".join(gsm_rows(31)) + "\n")
    changed = run(tmp_path, tiny_tokenizer, config)
    assert not changed.report.cache_hit and changed.report.rows_total == 31


def test_folder_of_files(tmp_path, tiny_tokenizer):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.jsonl").write_text("\n".join(gsm_rows(5)) + "\n")
    (folder / "b.json").write_text(json.dumps([json.loads(r) for r in gsm_rows(5, start=5)]))
    (folder / ".hidden.jsonl").write_text("garbage\n")
    report = run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(folder)])).report
    assert report.rows_total == 10 and report.rows_rejected == 0


SHARED = REPO.parent / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets absent (fresh clone)")


@needs_shared
def test_real_gsm8k_prepares_for_regime3(tmp_path, tiny_tokenizer):
    config = config_for(tmp_path, [str(SHARED / "gsm8k_test.jsonl")], **{"data.max_length": 1024})
    report = run(tmp_path, tiny_tokenizer, config).report
    assert (report.rows_total, report.rows_rejected, report.rows_held_out) == (1319, 0, 2)
    assert report.rows_used == 1317
    assert report.checks["generation_stops_there"] is True


@needs_shared
def test_real_alpaca_trains_with_emoji_think_and_is_refused_by_regime3(tmp_path, tiny_tokenizer):
    files = [str(SHARED / "alpaca_en_demo.json")]
    config = config_for(tmp_path, files, **{"data.max_length": 4096})
    report = run(tmp_path, tiny_tokenizer, config, profile="emoji_think").report
    assert (report.rows_total, report.rows_rejected) == (999, 0)
    with pytest.raises(DataError, match=r"^no row left to train on: 999 of 999 rows were rejected"):
        run(tmp_path, tiny_tokenizer, config, profile="regime3")


def test_column_mapping_applies_before_shape_detection(tmp_path, tiny_tokenizer):
    path = tmp_path / "renamed.jsonl"
    path.write_text("\n".join(json.dumps({"problem": r["question"], "solution": r["answer"]}) for r in map(json.loads, gsm_rows(10))) + "\n")
    config = config_for(tmp_path, [str(path)], **{"data.columns.question": "problem", "data.columns.answer": "solution"})
    report = run(tmp_path, tiny_tokenizer, config).report
    assert (report.rows_rejected, report.formats) == (0, {"question_answer": 10})


def test_unreadable_file_stops_the_job_instead_of_counting_one_row(tmp_path, tiny_tokenizer):
    good, broken = tmp_path / "good.jsonl", tmp_path / "broken.json"
    good.write_text("\n".join(gsm_rows(200)) + "\n")
    broken.write_text("[" + ",".join(gsm_rows(100)) + ",]")
    with pytest.raises(DataError) as info:
        run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(good), str(broken)]))
    message = str(info.value)
    assert message.startswith(f"{broken}:1: invalid JSON file (no row of it can be read):")
    assert message.endswith("Fix or remove the file: its rows cannot be counted, so the job does not guess.")


def test_file_named_twice_is_read_once_and_suffix_case_is_ignored(tmp_path, tiny_tokenizer):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.jsonl").write_text("\n".join(gsm_rows(5)) + "\n")
    (folder / "B.JSONL").write_text("\n".join(gsm_rows(5, start=5)) + "\n")
    report = run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(folder), str(folder / "a.jsonl")])).report
    assert report.rows_total == 10 and len(report.files) == 2


def test_missing_dataset_is_a_data_error(tmp_path, tiny_tokenizer):
    with pytest.raises(DataError, match="dataset path .*nope.jsonl does not exist"):
        run(tmp_path, tiny_tokenizer, config_for(tmp_path, [str(tmp_path / "nope.jsonl")]))


class LoudRegime3(__import__("trainer.profiles", fromlist=["Regime3Profile"]).Regime3Profile):
    """Same registry name as regime3, different rendering: must not share its cache."""

    def render_answer(self, example):
        return super().render_answer(example).upper().replace("STEP", "Step").replace("ANSWER:", "Answer:")


def test_cache_keys_on_the_profile_class_not_just_its_name(tmp_path, tiny_tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(gsm_rows(10)) + "\n")
    config = config_for(tmp_path, [str(path)])
    eos = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")}
    plain = prepare_data(config, tiny_tokenizer, get_profile("regime3"), CHATML_TEMPLATE, eos, tmp_path / "r1")
    loud = prepare_data(config, tiny_tokenizer, LoudRegime3(), CHATML_TEMPLATE, eos, tmp_path / "r2")
    assert LoudRegime3().full_name == "regime3"
    assert not loud.report.cache_hit and loud.train["input_ids"] != plain.train["input_ids"]


def test_concurrent_store_of_the_same_key_is_not_an_error(tmp_path):
    from datasets import Dataset

    from trainer.data.cache import PreparedCache

    cache = PreparedCache(tmp_path / "c")
    data = Dataset.from_dict({"input_ids": [[1, 2]], "labels": [[1, 2]]})
    cache.store("k", data, {"report": {}})
    cache.store("k", data, {"report": {}})  # a second process that prepared the same data
    assert cache.load("k")[0]["input_ids"] == [[1, 2]]


def test_other_ranks_write_no_report(tmp_path, tiny_tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(gsm_rows(10)) + "\n")
    eos = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")}
    data = prepare_data(
        config_for(tmp_path, [str(path)]), tiny_tokenizer, get_profile("regime3"), CHATML_TEMPLATE, eos,
        tmp_path / "run", write_outputs=False,
    )
    assert data.report.rows_used == 8
    assert not (tmp_path / "run").exists()
