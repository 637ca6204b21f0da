"""Nothing silent in the data: duplicates and held-out overlap are counted, the held-out rows are
distinct and unseen, a holdout that leaves almost nothing is an error, empty files and other
encodings are named, and the summary's loss at end is the last step's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobkit import BUNDLED, CLI, REPO, job_values, write_config
from trainer.config import create_default_config
from trainer.data.prepare import DataError, prepare_data
from trainer.models.templates import CHATML_TEMPLATE
from trainer.profiles import get_profile


def rows(n: int) -> list[dict]:
    return [json.loads(line) for line in BUNDLED.read_text(encoding="utf-8").splitlines()[:n]]


def write_jsonl(path: Path, items: list[dict], encoding: str = "utf-8") -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding=encoding)
    return path


def prepare(tmp_path: Path, tokenizer, files: list[Path], **overrides):
    config = create_default_config(
        dataset_path=[str(f) for f in files],
        overrides={"system.base_dir": str(tmp_path), "data.cache_dir": str(tmp_path / "cache"), **overrides},
    )
    eos = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return prepare_data(config, tokenizer, get_profile("regime3"), CHATML_TEMPLATE, eos, tmp_path / "run")


def test_held_out_prompts_are_distinct_and_never_trained_on(tmp_path, tiny_tokenizer):
    base = rows(40)
    # every row three times: a naive split holds out copies of rows it also trains on
    data = prepare(tmp_path, tiny_tokenizer, [write_jsonl(tmp_path / "x.jsonl", base * 3)], **{"data.holdout_size": 5})
    report = data.report
    assert report.rows_total == 120 and report.rows_duplicate == 80
    assert report.rows_held_out == 5 and report.rows_held_out_copies == 10
    assert report.rows_used == 105
    assert report.rows_used + report.rows_held_out + report.rows_held_out_copies + report.rows_rejected == 120
    held = {json.dumps(p.messages, sort_keys=True) for p in data.probes}
    assert len(held) == 5
    trained = {tiny_tokenizer.decode(ids) for ids in data.train["input_ids"]}
    held_questions = [probe.messages[-1]["content"] for probe in data.probes]
    for question in held_questions:
        assert not any(question in text for text in trained), question
    others = [r["question"] for r in base if not any(r["question"] in q for q in held_questions)]
    assert len(others) == 35 and all(any(q in text for text in trained) for q in others)  # the check can see
    saved = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert (saved["rows_duplicate"], saved["rows_held_out_copies"]) == (80, 10)
    lines = report.summary_lines()
    assert "duplicates: 80 rows repeat an earlier row exactly; 10 repeats of held-out prompts kept out of training" in lines


def test_a_dataset_of_one_row_repeated_is_refused(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "same.jsonl", rows(1) * 30)
    with pytest.raises(DataError) as info:
        prepare(tmp_path, tiny_tokenizer, [path], **{"data.holdout_size": 2})
    assert str(info.value) == (
        "data.holdout_size=2 holds out 1 of 30 usable rows (1 distinct prompts, 29 copies of held-out "
        "prompts kept out of training), leaving 0 to train on. Lower it (e.g. --set data.holdout_size=0) or add rows."
    )


def test_a_holdout_that_leaves_almost_nothing_is_an_error(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "few.jsonl", rows(20))
    with pytest.raises(DataError, match=r"data.holdout_size=16 holds out 16 of 20 usable rows .* leaving 4 to train on"):
        prepare(tmp_path, tiny_tokenizer, [path], **{"data.holdout_size": 16})
    assert prepare(tmp_path, tiny_tokenizer, [path], **{"data.holdout_size": 4}).report.rows_used == 16


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file: no rows in it"),
        (b"  \n\n \n", "empty file: no rows in it"),
        ("\n".join(json.dumps(r) for r in rows(5)).encode("utf-16"), "the file is UTF-16 LE (it starts with a UTF-16 byte-order mark), not UTF-8"),
        ("\n".join(json.dumps(r) for r in rows(5)).encode("utf-16-be"), "the file is UTF-16 BE (every other byte is zero), not UTF-8"),
        ("\n".join(json.dumps(r) for r in rows(5)).encode("utf-32"), "the file is UTF-32 LE (it starts with a UTF-32 byte-order mark)"),
    ],
)
def test_unreadable_files_are_named_for_what_they_are(tmp_path, tiny_tokenizer, content, reason):
    good = write_jsonl(tmp_path / "good.jsonl", rows(30))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    with pytest.raises(DataError) as info:
        prepare(tmp_path, tiny_tokenizer, [good, bad])
    assert str(info.value).startswith(f"{bad}: {reason}")


def test_a_latin1_file_names_the_encoding_it_seems_to_be(tmp_path, tiny_tokenizer):
    items = [{**r, "question": r["question"] + " Café"} for r in rows(20)]
    path = write_jsonl(tmp_path / "latin.jsonl", items, encoding="cp1252")
    with pytest.raises(DataError) as info:
        prepare(tmp_path, tiny_tokenizer, [path])
    assert "20 x read: not valid UTF-8: invalid continuation byte at byte N; the text seems to be Windows-1252 / Latin-1" in str(info.value)
    # and again, now that a first attempt has run (it must not leave a cache entry that breaks)
    with pytest.raises(DataError):
        prepare(tmp_path, tiny_tokenizer, [path])


def test_empty_file_through_the_cli_says_so(tmp_path, builtin_cache):
    (tmp_path / "empty.jsonl").write_text("")
    config = write_config(tmp_path, job_values(tmp_path, builtin_cache, **{"data.dataset_path": [str(tmp_path / "empty.jsonl")]}))
    proc = subprocess.run([sys.executable, str(CLI), "--config", str(config), "--validate"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and f"data.dataset_path[0]: {tmp_path / 'empty.jsonl'} is an empty file" in proc.stderr


@pytest.mark.slow
def test_loss_at_end_is_the_last_steps_loss(tmp_path, builtin_cache):
    """12 steps logged every 5: the summary's loss at end is step 12's (as logged by an identical
    run that logs every step), not step 10's."""
    from trainer.core import TrainerEngine

    common = {"inference.preview_every_steps": 0, "inference.num_probes": 1, "inference.max_new_tokens": 4, "output.save_steps": 100}
    every = create_default_config(overrides=job_values(tmp_path, builtin_cache, **common, **{"output.run_name": "every", "hyperparams.logging_steps": 1}))
    sparse = create_default_config(overrides=job_values(tmp_path, builtin_cache, **common, **{"output.run_name": "sparse", "hyperparams.logging_steps": 5}))
    TrainerEngine().run_job(every)
    result = TrainerEngine().run_job(sparse)
    logged = {json.loads(l)["step"]: json.loads(l)["loss"] for l in (tmp_path / "outputs" / "every" / "metrics.jsonl").read_text().splitlines()}
    sparse_steps = [json.loads(l)["step"] for l in (tmp_path / "outputs" / "sparse" / "metrics.jsonl").read_text().splitlines()]
    assert sparse_steps[-1] == 10
    assert result.final_metrics["loss_end"] == pytest.approx(logged[12], rel=1e-5)
    assert result.final_metrics["loss_end"] != pytest.approx(logged[10], rel=1e-3)
    assert result.final_metrics["loss_start"] == pytest.approx(logged[1], rel=1e-5)


def test_an_overlong_refusal_says_the_figures_and_the_fix(tmp_path, tiny_tokenizer, caplog):
    path = write_jsonl(tmp_path / "x.jsonl", rows(40))
    with pytest.raises(DataError) as info:
        prepare(tmp_path, tiny_tokenizer, [path], **{"data.max_length": 64, "data.holdout_size": 2})
    text = str(info.value)
    assert "x length: longer than data.max_length" in text and "N > N" not in text
    longest = max(len(ids) for ids in prepare(tmp_path, tiny_tokenizer, [path], **{"data.holdout_size": 2}).train["input_ids"])
    assert f"The longest row has {longest} tokens and 95% of rows fit in " in text
    assert "(data.max_length is 64): raise it, e.g. --set data.max_length=" in text
    assert "--set data.overlong_policy=truncate" in text
    # we count lengths ourselves: transformers' own warning (past the tokenizer's limit) stays out
    limit = tiny_tokenizer.model_max_length
    long_row = {**rows(1)[0], "question": " ".join([rows(1)[0]["question"]] * 60)}
    path = write_jsonl(tmp_path / "long.jsonl", [long_row, *rows(40)])
    caplog.clear()
    with caplog.at_level("WARNING"):
        report = prepare(tmp_path, tiny_tokenizer, [path], **{"data.holdout_size": 2, "data.max_length": 4096}).report
    assert report.longest_row_tokens > limit
    assert "Token indices sequence length" not in caplog.text
