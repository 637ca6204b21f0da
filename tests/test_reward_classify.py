"""Reward models and classifiers: options, labeled data with counted rejects, held-out pairs kept
whole, the bundled classify data, and both methods end to end on the tiny model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter

import pytest

from jobkit import CLI, REPO, SCHEMA, job_values, load_weights, write_config
from trainer.config import ConfigError, create_default_config
from trainer.methods import get_method

PAIRS = REPO / "data" / "preferences_train.jsonl"
CLASSIFY = REPO / "data" / "classify_train.jsonl"


def problems(**overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        create_default_config(overrides=overrides)
    return info.value.problems


# --- options -------------------------------------------------------------------------------------


def test_reward_options_pass_and_raise():
    config = create_default_config(overrides={"method": {"name": "reward", "center_rewards_coefficient": 0.01}})
    method = get_method(config.method)
    assert (method.data_shape, method.generates, config.method.center_rewards_coefficient) == ("preference", False, 0.01)
    assert create_default_config(overrides={"method.name": "reward"}).method.center_rewards_coefficient is None
    found = problems(method={"name": "reward", "center_rewards_coefficient": -1, "beta": 0.1})
    assert "method.center_rewards_coefficient: expected greater than or equal to 0; got -1 (int) (from create_default_config)" in found
    assert any(p.startswith("method.beta: unknown key") for p in found)


def test_classify_options_pass_and_raise():
    config = create_default_config(overrides={"method": {"name": "classify"}})
    method = get_method(config.method)
    assert (method.data_shape, method.generates) == ("labeled", False)
    assert problems(method={"name": "classify", "center_rewards_coefficient": 0.01})[0].startswith(
        "method.center_rewards_coefficient: unknown key"
    )
    assert problems(**{"method.name": "clasify"})[0].endswith("did you mean 'classify'? (from create_default_config)")


# --- labeled data --------------------------------------------------------------------------------


def prepare(tmp_path, tokenizer, rows, shape="labeled", **overrides):
    from trainer.data.prepare import prepare_data
    from trainer.models.templates import CHATML_TEMPLATE
    from trainer.profiles import get_profile

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = {"data.cache_dir": str(tmp_path / "cache"), "data.holdout_size": 4, "data.max_reject_fraction": 0.5, **overrides}
    config = create_default_config(dataset_path=[str(data)], overrides=settings)
    eos = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return prepare_data(config, tokenizer, get_profile("regime3"), CHATML_TEMPLATE, eos, tmp_path / "run", shape=shape)


def good_rows(n: int = 40) -> list[dict]:
    return [{"text": f"{i} + 1 = {i + 1 + i % 2}", "label": "no" if i % 2 else "yes"} for i in range(n)]


LONG = {"text": " ".join(["12 + 34 = 46"] * 20), "label": "yes"}  # ~160 tokens


def test_labeled_rows_become_plain_tokens_and_class_ids(tmp_path, tiny_tokenizer):
    data = prepare(tmp_path, tiny_tokenizer, good_rows())
    assert data.classes == ["no", "yes"]
    assert data.report.rows_used == 36 and data.report.rows_held_out == 4 and data.report.rows_rejected == 0
    assert data.report.formats == {"text_label": 40}
    assert data.report.checks["training_rows_per_class"] == {"no": 18, "yes": 18}
    assert set(data.train.column_names) == {"input_ids", "labels"} and set(data.train["labels"]) == {0, 1}
    first = data.train[0]
    text = tiny_tokenizer.decode(first["input_ids"])
    assert "<|im_start|>" not in text and "=" in text  # plain text, no chat template
    held = data.heldout
    assert len(held) == 4 and all(tiny_tokenizer(h["text"])["input_ids"] == h["input_ids"] for h in held)
    assert all(data.classes[h["label"]] == dict((r["text"], r["label"]) for r in good_rows())[h["text"]] for h in held)
    assert not {h["text"] for h in held} & {tiny_tokenizer.decode(ids) for ids in data.train["input_ids"]}
    again = prepare(tmp_path, tiny_tokenizer, good_rows())  # a cache hit keeps the held-out rows and classes
    assert again.report.cache_hit and again.heldout == held and again.classes == data.classes


def test_labeled_rejections_are_counted_with_reasons(tmp_path, tiny_tokenizer):
    rows = [*good_rows(), {"text": "1 + 1 = 2", "label": None}, {"text": "  ", "label": "yes"}, LONG]
    data = prepare(tmp_path, tiny_tokenizer, rows, **{"data.max_length": 64})
    assert data.report.rows_rejected == 3 and data.report.rows_used == 36
    assert data.report.rejected_by_reason == {
        "convert: field 'label' must be a string, an integer or a boolean, got null": 1,
        "convert: empty text": 1,
        "length: longer than data.max_length": 1,
    }
    rejects = [json.loads(line) for line in (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["stage"]) for r in rejects] == [(41, "convert"), (42, "convert"), (43, "length")]


def test_labeled_overlong_policies(tmp_path, tiny_tokenizer):
    from trainer.data.prepare import DataError

    with pytest.raises(DataError, match=r"1 rows are longer than data.max_length=64 tokens and data.overlong_policy is 'error'"):
        prepare(tmp_path, tiny_tokenizer, [*good_rows(), LONG], **{"data.max_length": 64, "data.overlong_policy": "error"})
    data = prepare(tmp_path, tiny_tokenizer, [*good_rows(), LONG], **{"data.max_length": 64, "data.overlong_policy": "truncate"})
    assert data.report.rows_truncated == 1 and data.report.rows_rejected == 0
    assert max(len(ids) for ids in data.train["input_ids"]) <= 64 and data.report.longest_row_tokens > 64


def test_a_single_class_is_an_error(tmp_path, tiny_tokenizer):
    from trainer.data.prepare import DataError

    with pytest.raises(DataError, match="every usable row has the label 'yes'; a classifier needs at least two classes"):
        prepare(tmp_path, tiny_tokenizer, [{"text": f"{i} + 0 = {i}", "label": "yes"} for i in range(20)])


def test_held_out_pairs_keep_their_rejected_answer(tmp_path, tiny_tokenizer):
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines()[:40]]
    data = prepare(tmp_path, tiny_tokenizer, rows, shape="preference")
    assert len(data.heldout) == 4 and len(data.train) == 36
    by_prompt = {row["prompt"]: row for row in rows}
    for pair in data.heldout:
        row = by_prompt[pair["prompt"][-1]["content"]]
        assert pair["rejected"] == [{"role": "assistant", "content": row["rejected"]}]  # verbatim
        assert pair["chosen"][0]["role"] == "assistant" and pair["source"].endswith(f":{rows.index(row) + 1}")
    trained = {p[-1]["content"] for p in data.train["prompt"]}
    assert not trained & {pair["prompt"][-1]["content"] for pair in data.heldout}


def test_reward_pairs_are_tokenized_as_trl_does_and_cut_to_max_length(tmp_path, tiny_tokenizer):
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from trainer.data.shapes import to_preference
    from trainer.methods.reward import pair_ids

    rows = [to_preference(json.loads(line)).to_trl() for line in PAIRS.read_text().splitlines()[:3]]
    args = RewardConfig(output_dir=str(tmp_path), max_length=None, use_cpu=True, bf16=False, activation_checkpointing=False, report_to=[])
    theirs = RewardTrainer._prepare_dataset(None, Dataset.from_list(rows), tiny_tokenizer, args, "train")
    ours = [pair_ids(tiny_tokenizer, row, 10_000) for row in rows]
    assert [{k: t[k] for k in ("chosen_ids", "rejected_ids")} for t in theirs] == ours
    cut = pair_ids(tiny_tokenizer, rows[0], 50)  # overlong_policy truncate: the start is kept
    assert cut == {k: ids[:50] for k, ids in ours[0].items()}


# --- the bundled classify data -------------------------------------------------------------------


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_classify", REPO / "data" / "generate_classify.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_classify_data_regenerates_byte_for_byte_and_is_balanced(tmp_path):
    generator = load_generator()
    out = tmp_path / "classify.jsonl"
    assert generator.main(["--out", str(out)]) == 0
    assert out.read_bytes() == CLASSIFY.read_bytes()
    rows = [json.loads(line) for line in CLASSIFY.read_text().splitlines()]
    assert len(rows) == 2000 and CLASSIFY.stat().st_size < 300_000
    assert Counter(row["label"] for row in rows) == {"yes": 1000, "no": 1000}
    numbers = [int(row["text"].split()[1]) for row in rows]
    assert len(set(numbers)) == len(rows)  # each number asked about once
    for row, n in zip(rows, numbers):
        assert row["label"] == ("yes" if row["text"] in (f"Is {n} even?" if n % 2 == 0 else f"Is {n} odd?",) else "no"), row


def test_sum_statements_are_labeled_by_their_truth():
    rows = load_generator().generate(400, 7, "sum")
    assert Counter(row["label"] for row in rows) == {"yes": 200, "no": 200} and len({r["text"] for r in rows}) == 400
    for row in rows:
        left, result = row["text"].split(" = ")
        a, op, b = left.split()
        truth = (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(result)
        assert row["label"] == ("yes" if truth else "no") and int(result) >= 0, row


# --- end to end ----------------------------------------------------------------------------------


def run_job(tmp_path, builtin_cache, data, method, *args, **values):
    values = job_values(tmp_path, builtin_cache, **{"data.dataset_path": [str(data)], "inference.preview_every_steps": 0, **values})
    proc = subprocess.run(
        [sys.executable, str(CLI), "--config", str(write_config(tmp_path, values)), "--method", method, *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((tmp_path / "status.json").read_text())
    import jsonschema

    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    run = tmp_path / "outputs" / "run"
    return proc, status, run, json.loads((run / "result.json").read_text())


def changed(base_dir, model_dir) -> bool:
    import torch

    before, after = load_weights(base_dir), load_weights(model_dir)
    shared = set(before) & set(after)
    assert len(shared) > 10  # the body's weights, under the same names
    return any(not torch.equal(before[k], after[k]) for k in shared)


@pytest.mark.slow
def test_reward_end_to_end_on_the_tiny_model(tmp_path, builtin_cache, tiny_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    (tmp_path / "pairs.jsonl").write_text("\n".join(PAIRS.read_text().splitlines()[:120]) + "\n")
    proc, status, run, result = run_job(
        tmp_path, builtin_cache, tmp_path / "pairs.jsonl", "reward", "--set", "method.center_rewards_coefficient=0.01",
        **{"hyperparams.batch_size": 4, "hyperparams.max_steps": 8},
    )
    assert "held-out pairs ranked right: " in proc.stdout
    assert (status["phase"], status["method"]) == ("completed", "reward")
    figures = result["final_metrics"]
    assert figures["method"] == "reward" and figures["heldout_pairs"] == 4 and figures["steps"] == 8
    for key in ("heldout_accuracy", "heldout_accuracy_before"):
        assert 0 <= figures[key] <= 1 and status["final_metrics"][key] == figures[key]
    assert isinstance(figures["heldout_margin"], float) and isinstance(figures["heldout_margin_before"], float)
    assert isinstance(status["method_metrics"]["accuracy"], float)  # TRL's own, on the training pairs
    assert figures["probes"] == 0 and not (run / "model" / "generation_config.json").exists()

    model = AutoModelForSequenceClassification.from_pretrained(run / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    assert (type(model).__name__, model.config.num_labels) == ("Qwen3ForSequenceClassification", 1)
    conversation = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "Answer: 5"}]
    with torch.no_grad():
        logits = model(**tokenizer.apply_chat_template(conversation, return_dict=True, return_tensors="pt")).logits
    assert logits.shape == (1, 1) and torch.isfinite(logits).all()
    assert changed(tiny_model_dir, run / "model")


@pytest.mark.slow
def test_classify_end_to_end_on_the_tiny_model(tmp_path, builtin_cache, tiny_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    (tmp_path / "rows.jsonl").write_text("\n".join(CLASSIFY.read_text().splitlines()[:300]) + "\n")
    proc, status, run, result = run_job(tmp_path, builtin_cache, tmp_path / "rows.jsonl", "classify", **{"data.holdout_size": 20})
    assert "held-out accuracy: " in proc.stdout and "formats: text_label 300" in proc.stdout
    assert (status["phase"], status["method"]) == ("completed", "classify")
    figures = result["final_metrics"]
    assert figures["method"] == "classify" and figures["heldout_rows"] == 20 and figures["classes"] == ["no", "yes"]
    for key in ("heldout_accuracy", "heldout_accuracy_before"):
        assert 0 <= figures[key] <= 1 and status["final_metrics"][key] == figures[key]
    assert json.loads((run / "data_report.json").read_text())["rows_held_out"] == 20

    model = AutoModelForSequenceClassification.from_pretrained(run / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    assert model.config.id2label == {0: "no", 1: "yes"} and model.config.label2id == {"no": 0, "yes": 1}
    with torch.no_grad():
        logits = model(**tokenizer(["Is 17 odd?", "Is 17 even?"], padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert changed(tiny_model_dir, run / "model")
