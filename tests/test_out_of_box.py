"""Out of the box: `--method dpo` on a fresh clone's defaults trains on the bundled pairs, from an
SFT-trained model (a two-stage job); what the user chose is left alone."""

from __future__ import annotations

import json

import pytest

from jobkit import REPO, out_of_box_dry_run
from trainer.config import create_default_config
from trainer.core.out_of_box import fill_in

CONVERSATIONS = str(REPO / "data" / "arithmetic_train.jsonl")
PAIRS = str(REPO / "data" / "preferences_train.jsonl")
CLASSIFY = str(REPO / "data" / "classify_train.jsonl")


def _config(**overrides):
    return create_default_config(overrides={"data.dataset_path": [CONVERSATIONS], "hyperparams.max_steps": 40, **overrides})


def test_dpo_on_the_defaults_becomes_sft_then_dpo_on_the_bundled_pairs():
    config, notes = fill_in(_config(method={"name": "dpo", "beta": 0.2}))
    assert [s.method.name for s in config.stages] == ["sft", "dpo"]
    sft, dpo = config.stages
    assert sft.dataset_path == [CONVERSATIONS] and sft.max_steps == 40  # the job's steps
    assert dpo.dataset_path == [PAIRS] and dpo.method.beta == 0.2  # the user's options travel
    assert (dpo.max_steps, dpo.learning_rate) == (100, 5e-4)
    assert len(notes) == 2 and "bundled preference data" in notes[0] and "2 stages" in notes[1]


@pytest.mark.parametrize("method, data", [("kto", PAIRS), ("simpo", PAIRS), ("grpo", CONVERSATIONS), ("rloo", CONVERSATIONS), ("ppo", CONVERSATIONS)])
def test_the_other_refining_methods_start_from_sft_too(method, data):
    config, _ = fill_in(_config(method={"name": method}))
    assert [s.method.name for s in config.stages] == ["sft", method]
    assert config.stages[1].dataset_path == [data]  # RL: prompts from the conversations themselves


@pytest.mark.parametrize("method, data", [("reward", PAIRS), ("classify", CLASSIFY), ("orpo", PAIRS)])
def test_methods_that_start_from_scratch_get_their_data_and_no_stage(method, data):
    config, notes = fill_in(_config(method={"name": method}))
    assert config.stages == [] and config.data.dataset_path == [data] and len(notes) == 1


def test_what_the_user_chose_is_left_alone(tmp_path):
    own = tmp_path / "mine.jsonl"
    own.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    sft = _config()
    assert fill_in(sft) == (sft, [])  # SFT on the conversations: nothing to fill in
    theirs = _config(method={"name": "dpo"}, **{"data.dataset_path": [str(own)]})
    assert fill_in(theirs) == (theirs, [])  # their own data: no swap, no extra stage
    folder = _config(method={"name": "dpo"}, **{"model.path": str(tmp_path)})
    config, notes = fill_in(folder)  # a model folder of theirs: the bundled pairs, no SFT stage
    assert config.stages == [] and config.data.dataset_path == [PAIRS] and len(notes) == 1
    staged = _config(stages=[{"method": {"name": "sft"}, "max_steps": 3}, {"method": {"name": "dpo"}, "max_steps": 2}])
    config, notes = fill_in(staged)  # their stages: only the data of the stage that has none of its shape
    assert [s.dataset_path for s in config.stages] == [None, [PAIRS]] and len(notes) == 1


def test_the_cli_dry_run_of_method_dpo_prepares_both_stages(tmp_path):
    proc = out_of_box_dry_run(tmp_path, "dpo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "out of the box: builtin:tiny-qwen3 is untrained and dpo refines a model that already answers" in proc.stdout
    assert "=== stage 1/2: sft" in proc.stdout and "=== stage 2/2: dpo" in proc.stdout
    run = tmp_path / "out" / "box"
    stage_reports = [json.loads((run / name / "data_report.json").read_text()) for name in ("stage-1-sft", "stage-2-dpo")]
    assert stage_reports[0]["files"] == [CONVERSATIONS] and stage_reports[1]["files"] == [PAIRS]
    assert stage_reports[1]["rows_rejected"] == 0 and stage_reports[1]["rows_used"] > 1900
    resolved = json.loads((run / "resolved_config.json").read_text())
    assert [s["method"]["name"] for s in resolved["config"]["stages"]] == ["sft", "dpo"]
    assert "2 stages" in resolved["sources"]["out_of_box"]


def test_a_resume_compares_the_filled_in_config_and_names_what_changed(tmp_path):
    from trainer.core.engine import TrainerEngine
    from trainer.core.preflight import check_config

    values = {
        "method": {"name": "dpo"}, "output.output_dir": str(tmp_path / "out"), "output.run_name": "box",
        "system.status_file": str(tmp_path / "status.json"), "data.cache_dir": str(tmp_path / "cache"),
    }
    filled, _ = fill_in(_config(**values))
    run = tmp_path / "out" / "box"
    checkpoint = run / "stage-2-dpo" / "checkpoint-2"  # a job stopped in its dpo stage
    checkpoint.mkdir(parents=True)
    for name in ("optimizer.pt", "scheduler.pt", "model.safetensors"):
        (checkpoint / name).write_bytes(b"")
    (checkpoint / "trainer_state.json").write_text('{"global_step": 2}')
    TrainerEngine._write_resolved(filled, run, {})  # as the job records it: filled in
    assert check_config(_config(**values, **{"output.resume": "auto"})) == []  # the same job resumes
    changed = check_config(_config(**{**values, "method": {"name": "dpo", "beta": 0.3}, "output.resume": "auto"}))
    assert len(changed) == 1 and "trained with other settings" in changed[0], changed
    assert "stages: was [" in changed[0]  # the changed stage is named; no traceback
