"""orpo, simpo and kto behind the methods registry: TRL's import paths and choices, options with
their errors, the unpaired (KTO) data builder with its reasons, and each method end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import typing

import pytest

from jobkit import CLI, REPO, SCHEMA, job_values, load_weights, tensorboard_scalars, write_config
from trainer.config import ConfigError, create_default_config
from trainer.methods import get_method

PAIRS = REPO / "data" / "preferences_train.jsonl"


def problems(method: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        create_default_config(overrides={"method": method})
    return info.value.problems


def src(text: str) -> str:
    return f"{text} (from create_default_config)"


# --- TRL: where the trainers are, and what they accept ----------------------------------------


def test_trl_import_paths_are_the_pinned_ones():
    import trl
    from transformers import Trainer, TrainingArguments

    from trainer.methods.orpo import TRL_ORPO, experimental_trl
    from trainer.methods.simpo import TRL_CPO

    assert (TRL_ORPO, TRL_CPO) == ("trl.experimental.orpo", "trl.experimental.cpo")
    orpo_config, orpo_trainer = experimental_trl(TRL_ORPO, "ORPOConfig", "ORPOTrainer")
    cpo_config, cpo_trainer = experimental_trl(TRL_CPO, "CPOConfig", "CPOTrainer")
    # KTO is stable API in TRL 1.x (trl.experimental.kto only forwards, with a deprecation warning)
    for config_class, trainer_class in ((orpo_config, orpo_trainer), (cpo_config, cpo_trainer), (trl.KTOConfig, trl.KTOTrainer)):
        assert issubclass(config_class, TrainingArguments) and issubclass(trainer_class, Trainer)
    with pytest.raises(ImportError, match=r"NoSuchTrainer not found in trl\.experimental\.orpo of TRL .*written for TRL 1\.16"):
        experimental_trl(TRL_ORPO, "NoSuchTrainer")


@pytest.mark.parametrize(
    ("method", "config_path", "passed"),
    [
        ("orpo", "trl.experimental.orpo:ORPOConfig", {"beta"}),
        ("simpo", "trl.experimental.cpo:CPOConfig", {"beta", "simpo_gamma", "cpo_alpha"}),
        ("kto", "trl:KTOConfig", {"beta", "desirable_weight", "undesirable_weight", "loss_type"}),
    ],
)
def test_every_option_is_a_field_of_trls_config(method, config_path, passed):
    from trainer.methods import method_class
    from trainer.methods.orpo import experimental_trl

    module, _, name = config_path.partition(":")
    (config_class,) = experimental_trl(module, name)
    options = set(method_class(method).Options.model_fields) - {"name", "reference_model"}
    assert options == passed and options <= set(config_class.__dataclass_fields__)


def test_kto_losses_are_trls():
    from trl import KTOConfig

    from trainer.methods.kto import KTOLoss

    assert set(typing.get_args(KTOLoss)) == set(KTOConfig.__dataclass_fields__["loss_type"].metadata["choices"])


def test_simpo_is_a_cpo_loss_of_trls():
    from trainer.methods.orpo import experimental_trl
    from trainer.methods.simpo import TRL_CPO

    (cpo_config,) = experimental_trl(TRL_CPO, "CPOConfig")
    assert "simpo" in cpo_config.__dataclass_fields__["loss_type"].metadata["choices"]


# --- options ----------------------------------------------------------------------------------


def test_orpo_options():
    config = create_default_config(overrides={"method": {"name": "orpo", "beta": 0.25}})
    assert (config.method.beta, get_method(config.method).data_shape) == (0.25, "preference")
    found = problems({"name": "orpo", "beta": 0, "bta": 1, "reference_model": "x"})
    assert src("method.beta: expected greater than 0; got 0 (int)") in found
    assert src("method.bta: unknown key; did you mean method.beta?") in found
    assert any(p.startswith("method.reference_model: unknown key") for p in found)  # ORPO has none


def test_simpo_options():
    config = create_default_config(overrides={"method": {"name": "simpo"}})
    assert (config.method.beta, config.method.simpo_gamma, config.method.cpo_alpha) == (2.0, 0.5, 0.0)
    config = create_default_config(overrides={"method": {"name": "simpo", "beta": 2.5, "simpo_gamma": 1.4, "cpo_alpha": 0.05}})
    assert (config.method.beta, config.method.simpo_gamma, config.method.cpo_alpha) == (2.5, 1.4, 0.05)
    assert get_method(config.method).data_shape == "preference"
    found = problems({"name": "simpo", "beta": -2, "simpo_gamma": -1, "cpo_alpha": -0.5, "simpo_gama": 1, "loss_type": "simpo"})
    assert src("method.beta: expected greater than 0; got -2 (int)") in found
    assert src("method.simpo_gamma: expected greater than or equal to 0; got -1 (int)") in found
    assert src("method.cpo_alpha: expected greater than or equal to 0; got -0.5 (float)") in found
    assert src("method.simpo_gama: unknown key; did you mean method.simpo_gamma?") in found
    assert any(p.startswith("method.loss_type: unknown key") for p in found)  # simpo is the loss


def test_kto_options():
    config = create_default_config(
        overrides={"method": {"name": "kto", "beta": 0.3, "desirable_weight": 1.33, "undesirable_weight": 0.5, "loss_type": "apo_zero_unpaired"}}
    )
    assert (config.method.beta, config.method.desirable_weight, config.method.undesirable_weight) == (0.3, 1.33, 0.5)
    assert config.method.loss_type == "apo_zero_unpaired" and get_method(config.method).data_shape == "unpaired"
    found = problems({"name": "kto", "beta": 0, "desirable_weight": 0, "undesirable_weight": -1, "loss_type": "kt0", "undesirable_wieght": 1})
    assert src("method.beta: expected greater than 0; got 0 (int)") in found
    assert src("method.desirable_weight: expected greater than 0; got 0 (int)") in found
    assert src("method.undesirable_weight: expected greater than 0; got -1 (int)") in found
    assert src("method.loss_type: expected one of 'kto' or 'apo_zero_unpaired'; got 'kt0' (str); did you mean 'kto'?") in found
    assert src("method.undesirable_wieght: unknown key; did you mean method.undesirable_weight?") in found
    assert problems({"name": "kto", "desirable_weight": True})[0].startswith("method.desirable_weight:")  # no bool for a number


KTO_BATCH_PROBLEM = (
    "hyperparams.batch_size: expected at least 2 for method kto with loss_type 'kto' (its KL estimate pairs "
    "each prompt with another example's completion in the same batch); got 1. Raise it, or set "
    "method.loss_type to apo_zero_unpaired, which has no KL term"
)


def test_validate_refuses_a_kto_batch_of_one_before_any_model_loads():
    from trainer.core.preflight import check_methods

    config = create_default_config(overrides={"method": {"name": "kto"}, "hyperparams.batch_size": 1})
    assert check_methods(config) == [KTO_BATCH_PROBLEM]
    staged = create_default_config(overrides={"hyperparams.batch_size": 1, "stages": [
        {"method": {"name": "sft"}, "max_steps": 2}, {"method": {"name": "kto"}, "max_steps": 2}]})
    assert check_methods(staged) == [f"{KTO_BATCH_PROBLEM} (stage 2, kto)"]
    # the pass side: a batch of two, or the loss without a KL term
    assert check_methods(create_default_config(overrides={"method": {"name": "kto"}, "hyperparams.batch_size": 2})) == []
    assert check_methods(create_default_config(overrides={
        "method": {"name": "kto", "loss_type": "apo_zero_unpaired"}, "hyperparams.batch_size": 1})) == []


def test_the_cli_validate_names_the_kto_batch_problem():
    proc = subprocess.run(
        [sys.executable, "trainer/cli_main.py", "--method", "kto", "--set", "hyperparams.batch_size=1", "--validate"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert KTO_BATCH_PROBLEM in proc.stderr


def test_the_new_methods_are_known_by_name():
    found = problems({"name": "ktoo"})
    assert len(found) == 1 and "'kto'" in found[0] and "'orpo'" in found[0] and "'simpo'" in found[0]
    assert "did you mean 'kto'?" in found[0]


# --- the unpaired builder -----------------------------------------------------------------------

PAIR = {"prompt": "Ann has 2 pens and buys 3 more. How many pens does she have?", "chosen": "She has 2 + 3 = 5 pens.\n#### 5", "rejected": "6"}
TAGGED = {  # LLaMA-Factory's KTO row: messages, the tag in kto_tag
    "messages": [{"role": "user", "content": "Bo has 4 cups and breaks 1. How many are left?"}, {"role": "assistant", "content": "4 - 1 = 3 cups.\n#### 3"}],
    "kto_tag": True,
}
UNDESIRABLE = {"prompt": "Cy has 7 hats and loses 2. How many hats?", "completion": "Answer: 9", "label": False}


def _prepare(tmp_path, tokenizer, rows: list, **overrides):
    from trainer.data.prepare import prepare_data
    from trainer.models.templates import CHATML_TEMPLATE
    from trainer.profiles import get_profile

    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    config = create_default_config(
        dataset_path=[str(data)],
        overrides={"data.cache_dir": str(tmp_path / "cache"), "data.holdout_size": 0, "data.max_reject_fraction": 1.0, **overrides},
    )
    eos = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return prepare_data(config, tokenizer, get_profile("regime3"), CHATML_TEMPLATE, eos, tmp_path / "run", shape="unpaired")


def _rejects(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()]


def test_unpaired_builder_splits_pairs_reads_kto_tags_and_rejects_with_reasons(tmp_path, tiny_tokenizer):
    rows = [
        PAIR,
        TAGGED,
        UNDESIRABLE,
        {"prompt": "Di has 1 kite.", "completion": "1\n#### 1", "label": "yes"},  # a tag is not guessed
        {"prompt": "Ed?", "completion": "2\n#### 2", "label": 1, "kto_tag": 1},
        {"question": "What is 1 + 1?", "answer": "#### 2"},  # an SFT row: neither shape
        {"prompt": "Fay?", "chosen": "same\n#### 1", "rejected": "same\n#### 1"},  # nothing to prefer
        "{not json",
        {"prompt": "Ida?", "completion": "I think it is big.", "label": True},  # the profile needs a final answer
        {"prompt": "Jo?", "chosen": "2 + 3 = 5.\n#### 5", "rejected": "Step 1: 2 + 3 = 5.\n\nAnswer: 5"},  # the same once rendered
    ]
    prepared = _prepare(tmp_path, tiny_tokenizer, rows)
    report, train = prepared.report, prepared.train
    assert (report.rows_total, report.rows_used, report.rows_rejected) == (10, 3, 7)
    assert report.formats == {"prompt_chosen_rejected": 1, "messages_label": 1, "prompt_completion_label": 1}
    assert report.checks == {"unpaired_examples": "2 desirable, 2 undesirable"}
    assert set(train.column_names) == {"prompt", "completion", "label"} and len(train) == 4

    # the pair became two examples: the chosen answer in the profile's format, the rejected verbatim
    halves = {row["label"]: row for row in train if row["prompt"][-1]["content"] == PAIR["prompt"]}
    assert set(halves) == {True, False}
    assert halves[True]["completion"][0]["content"].endswith("Answer: 5") and halves[False]["completion"] == [{"role": "assistant", "content": "6"}]
    assert halves[True]["prompt"] == halves[False]["prompt"] and halves[True]["prompt"][0]["role"] == "system"
    tagged = next(row for row in train if row["prompt"][-1]["content"] == TAGGED["messages"][0]["content"])
    assert tagged["label"] is True and tagged["completion"][0]["content"].endswith("Answer: 3")
    verbatim = next(row for row in train if row["prompt"][-1]["content"] == UNDESIRABLE["prompt"])
    assert verbatim["label"] is False and verbatim["completion"][0]["content"] == "Answer: 9"

    reasons = {(r["line"], r["stage"]): r["reason"] for r in _rejects(tmp_path)}
    assert reasons[(4, "convert")] == "field 'label' must be true or false (or 1 / 0), got str 'yes'"
    assert reasons[(5, "convert")] == "both 'label' and 'kto_tag' fields; keep one"
    assert reasons[(6, "convert")].startswith("cannot read the row as unpaired data or as a preference pair from its columns ['question', 'answer']; known shapes: prompt_completion_label (prompt, completion, label or kto_tag)")
    assert "prompt_chosen_rejected (prompt, chosen, rejected)" in reasons[(6, "convert")]
    assert reasons[(7, "convert")] == "chosen and rejected are the same answer"
    assert reasons[(8, "read")].startswith("invalid JSON: ")
    assert reasons[(9, "profile")] == "regime3 needs a final answer to state, and this row has none"
    assert reasons[(10, "profile")] == "the chosen answer in regime3's format is the same as the rejected answer"
    assert len(reasons) == 7 and report.rejected_by_reason["convert: field 'label' must be true or false (or N / N), got str 'yes'"] == 1


def test_unpaired_holdout_has_distinct_prompts_and_probes_from_desirable_answers(tmp_path, tiny_tokenizer):
    rows = []
    for n in range(6):
        question = f"Gus has {n} apples and gets 2 more. How many apples?"
        rows.append({"prompt": question, "chosen": f"{n} + 2 = {n + 2}.\n#### {n + 2}", "rejected": f"{n + 3}"})
        rows.append({"prompt": question, "completion": f"Answer: {n}", "label": False})  # same prompt, undesirable only
    prepared = _prepare(tmp_path, tiny_tokenizer, rows, **{"data.holdout_size": 2})
    report, train, probes = prepared.report, prepared.train, prepared.probes
    # two pairs held out, with the two undesirable rows that repeat their prompts kept out of training
    assert (report.rows_held_out, report.rows_held_out_copies, report.rows_used, report.rows_rejected) == (2, 2, 8, 0)
    assert len(probes) == 2 and all(p.golden == str(int(p.messages[-1]["content"].split()[2]) + 2) for p in probes)
    assert all(p.reference.endswith(f"Answer: {p.golden}") for p in probes)
    held = {p.messages[-1]["content"] for p in probes}
    assert not held & {row["prompt"][-1]["content"] for row in train}
    assert len(train) == 4 * 2 + 4 and sum(train["label"]) == 4


def test_unpaired_lengths_are_counted_and_overlong_rows_follow_the_policy(tmp_path, tiny_tokenizer):
    long_prompt = {"prompt": "How many? " * 80, "completion": "1 + 1 = 2.\n#### 2", "label": True}
    long_answer = {"prompt": "Hal has 1 cap and gets 1 more. How many?", "completion": "1 + 1 = 2. " * 40 + "\n#### 2", "label": True}
    rows = [PAIR, long_prompt, long_answer]
    dropped = _prepare(tmp_path / "drop", tiny_tokenizer, rows, **{"data.max_length": 200})
    assert (dropped.report.rows_used, dropped.report.rows_rejected) == (1, 2)
    assert all(r["stage"] == "length" and r["reason"].startswith("longer than data.max_length (") for r in _rejects(tmp_path / "drop"))
    assert dropped.report.longest_row_tokens > 200 and dropped.report.token_lengths["max"] == dropped.report.longest_row_tokens

    truncated = _prepare(tmp_path / "truncate", tiny_tokenizer, rows, **{"data.max_length": 200, "data.overlong_policy": "truncate"})
    assert (truncated.report.rows_used, truncated.report.rows_truncated, truncated.report.rows_rejected) == (2, 1, 1)
    (reject,) = _rejects(tmp_path / "truncate")
    assert (reject["line"], reject["stage"]) == (2, "length")
    assert reject["reason"].startswith("the prompt alone fills data.max_length (") and reject["reason"].endswith(">= 200 tokens), so truncation leaves no completion")

    from trainer.data.prepare import DataError

    with pytest.raises(DataError, match=r"2 rows are longer than data.max_length=200 tokens and data.overlong_policy is 'error': .*rows.jsonl:2"):
        _prepare(tmp_path / "error", tiny_tokenizer, rows, **{"data.max_length": 200, "data.overlong_policy": "error"})


# --- end to end -------------------------------------------------------------------------------

ORPO_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "nll_loss", "log_odds_ratio", "log_odds_chosen")
SIMPO_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "nll_loss")
KTO_KEYS = ("kl", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected")


def _run_method(tmp_path, builtin_cache, method: str, *sets: str):
    lines = PAIRS.read_text().splitlines()[:100]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    values = job_values(
        tmp_path,
        builtin_cache,
        **{"data.dataset_path": [str(tmp_path / "pairs.jsonl")], "hyperparams.batch_size": 4, "hyperparams.max_steps": 6, "inference.preview_every_steps": 0},
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(CLI), "--config", str(write_config(tmp_path, values)), "--method", method, *(a for s in sets for a in ("--set", s))],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    print(f"{method}: job took {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "formats: prompt_chosen_rejected 100" in proc.stdout
    return proc


def _check_run(tmp_path, tiny_model_dir, method: str, keys: tuple[str, ...]) -> dict:
    import jsonschema
    import torch

    run = tmp_path / "outputs" / "run"
    for name in ("resolved_config.json", "data_report.json", "rejects.jsonl", "metrics.jsonl", "result.json", "checkpoint-6", "model/model.safetensors", "model/tokenizer_config.json", "model/generation_config.json"):
        assert (run / name).exists(), name
    status = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert (status["phase"], status["method"], status["current_step"]) == ("completed", method, 6)
    for key in keys:
        assert isinstance(status["method_metrics"][key], float), key
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 4, 6] and all(keys[0] in r for r in records)
    final = json.loads((run / "result.json").read_text())["final_metrics"]
    assert final["method"] == method and all(isinstance(final[key], float) for key in keys)
    before, after = load_weights(tiny_model_dir), load_weights(run / "model")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    return json.loads((run / "data_report.json").read_text())


@pytest.mark.slow
def test_orpo_end_to_end_on_the_tiny_model(tmp_path, builtin_cache, tiny_model_dir):
    _run_method(tmp_path, builtin_cache, "orpo", "method.beta=0.2", "output.report_to=tensorboard")
    _check_run(tmp_path, tiny_model_dir, "orpo", ORPO_KEYS)
    curves = tensorboard_scalars(tmp_path / "outputs" / "run" / "tensorboard")  # the method's own figures, tracked
    assert all(len(curves[f"train/{key}"]) == 4 for key in ORPO_KEYS)
    resolved = json.loads((tmp_path / "outputs" / "run" / "resolved_config.json").read_text())
    assert resolved["config"]["method"] == {"name": "orpo", "beta": 0.2}


@pytest.mark.slow
def test_simpo_end_to_end_on_the_tiny_model(tmp_path, builtin_cache, tiny_model_dir):
    _run_method(tmp_path, builtin_cache, "simpo", "method.simpo_gamma=0.8")
    _check_run(tmp_path, tiny_model_dir, "simpo", SIMPO_KEYS)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["method_metrics"]["nll_loss"] == 0.0  # cpo_alpha 0: plain SimPO, no language-model term


@pytest.mark.slow
def test_kto_end_to_end_on_the_tiny_model_from_split_pairs(tmp_path, builtin_cache, tiny_model_dir):
    proc = _run_method(tmp_path, builtin_cache, "kto", "method.desirable_weight=1.2")
    assert "check unpaired_examples: 96 desirable, 96 undesirable" in proc.stdout
    report = _check_run(tmp_path, tiny_model_dir, "kto", KTO_KEYS)
    assert (report["rows_used"], report["rows_held_out"], report["formats"]) == (96, 4, {"prompt_chosen_rejected": 100})
    assert json.loads((tmp_path / "status.json").read_text())["method_metrics"]["kl"] >= 0  # TRL clamps its estimate at 0
