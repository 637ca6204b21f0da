"""Hybrid curricula: seed 001's SFT <-> RL alternation as a short form of stages, the RL share
rising over the cycles; a hybrid job killed inside an RL stage resumes to the same weights."""

from __future__ import annotations

import json
import signal

import pytest

from jobkit import cli, job_values, load_weights, wait_for, write_config
from trainer.config import ConfigError, create_default_config
from trainer.config.schema import TrainerConfig

GRPO = {"name": "grpo", "num_generations": 2, "max_completion_length": 12, "reward": {"type": "length", "target": 40, "unit": "chars"}}


def test_hybrid_expands_into_alternating_stages_with_a_rising_rl_share():
    config = create_default_config(overrides={"hybrid": {"cycles": 3, "steps_per_cycle": 20, "rl_method": GRPO}})
    assert [(s.method.name, s.max_steps) for s in config.stages] == [
        ("sft", 15), ("grpo", 5), ("sft", 10), ("grpo", 10), ("sft", 5), ("grpo", 15),
    ]
    # only the first stage warms up; the RL stages take the RL method's options
    assert [s.warmup_steps for s in config.stages] == [None, 0, 0, 0, 0, 0]
    assert all(s.method.num_generations == 2 for s in config.stages[1::2])
    one = create_default_config(overrides={"hybrid": {"cycles": 1, "steps_per_cycle": 8, "rl_method": GRPO, "rl_share_start": 0.5}})
    assert [(s.method.name, s.max_steps) for s in one.stages] == [("sft", 4), ("grpo", 4)]


def test_the_rl_method_is_ppo_unless_named():
    config = create_default_config(overrides={"hybrid": {"cycles": 2}})
    assert [s.method.name for s in config.stages] == ["sft", "ppo", "sft", "ppo"]


def test_rl_learning_rate_goes_to_the_rl_stages_only():
    config = create_default_config(overrides={"hybrid": {"cycles": 2, "rl_method": GRPO, "rl_learning_rate": 3e-5}})
    assert [s.learning_rate for s in config.stages] == [None, 3e-5, None, 3e-5]
    default = create_default_config(overrides={"hybrid": {"cycles": 1, "rl_method": GRPO}})
    assert [s.learning_rate for s in default.stages] == [None, 1e-4]  # not the job's SFT rate


def test_a_saved_hybrid_config_reads_back_the_same_and_stages_beside_it_must_agree():
    config = create_default_config(overrides={"hybrid": {"cycles": 2, "rl_method": GRPO}})
    saved = config.model_dump(mode="json")  # resolved_config.json holds both hybrid and its stages
    assert TrainerConfig.model_validate(saved).stages == config.stages
    with pytest.raises(ConfigError) as info:
        create_default_config(overrides={"hybrid": {"cycles": 2, "rl_method": GRPO}, "stages": [{"method": {"name": "sft"}, "max_steps": 3}]})
    assert any("hybrid is a short form of stages: give one of them, not both" in p for p in info.value.problems)


def test_hybrid_options_are_checked_with_their_paths():
    with pytest.raises(ConfigError) as info:
        create_default_config(overrides={"hybrid": {"cycles": 0, "rl_share_end": 1.5, "rl_method": {"name": "grpoo"}}})
    found = info.value.problems
    assert "hybrid.cycles: expected greater than or equal to 1; got 0 (int) (from create_default_config)" in found
    assert "hybrid.rl_share_end: expected less than 1; got 1.5 (float) (from create_default_config)" in found
    assert any(p.startswith("hybrid.rl_method.name: expected one of") and "did you mean 'grpo'?" in p for p in found)


def test_validate_keys_hybrid_problems_where_they_were_written():
    from trainer.core.preflight import check_methods

    bad = create_default_config(overrides={"hybrid": {"cycles": 2, "rl_method": {**GRPO, "num_generations": 3}}, "hyperparams.batch_size": 8})
    found = check_methods(bad)
    assert len(found) == 1 and found[0].startswith("hybrid.rl_method.num_generations: 3 completions per prompt must divide")
    not_rl = create_default_config(overrides={"hybrid": {"cycles": 1, "rl_method": {"name": "dpo"}}})
    assert check_methods(not_rl) == [
        "hybrid.rl_method.name: 'dpo' is not an RL method (one trained on prompts and rewards: ppo, grpo, rloo)"]
    assert check_methods(create_default_config(overrides={"hybrid": {"cycles": 2, "rl_method": GRPO}, "hyperparams.batch_size": 8})) == []


def _hybrid_values(tmp_path, builtin_cache, run_name):
    values = job_values(tmp_path, builtin_cache, **{
        "hyperparams.batch_size": 4, "hyperparams.warmup_steps": 1, "hyperparams.logging_steps": 1,
        "inference.preview_every_steps": 0, "inference.num_probes": 2, "inference.max_new_tokens": 8,
        "output.save_steps": 2, "output.save_total_limit": 4, "data.max_rows": 100, "output.run_name": run_name,
        "hybrid": {"cycles": 2, "steps_per_cycle": 8, "rl_method": GRPO, "rl_share_start": 0.5, "rl_share_end": 0.75},
    })
    del values["hyperparams.max_steps"]
    return values


@pytest.mark.slow
def test_a_hybrid_job_killed_inside_an_rl_stage_resumes_to_the_same_weights(tmp_path, builtin_cache):
    import torch

    from trainer.core import TrainerEngine
    from trainer.core.checkpoints import is_complete_checkpoint

    result = TrainerEngine().run_job(create_default_config(overrides=_hybrid_values(tmp_path, builtin_cache, "straight")))
    run = tmp_path / "outputs" / "straight"
    stages = json.loads((run / "result.json").read_text())["final_metrics"]["stages"]
    assert [(s["method"], s["final_metrics"]["steps"]) for s in stages] == [("sft", 4), ("grpo", 4), ("sft", 2), ("grpo", 6)]
    assert result.model_path == run / "stage-4-grpo" / "model"

    config_file = write_config(tmp_path, _hybrid_values(tmp_path, builtin_cache, "killed"))
    killed = tmp_path / "outputs" / "killed"
    proc = cli(config_file)
    wait_for(lambda: is_complete_checkpoint(killed / "stage-4-grpo" / "checkpoint-2"), proc, timeout=400)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / "stage-4-grpo" / "model").exists()
    resumed = cli(config_file, "--resume", "auto")
    out, err = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resuming from {killed / 'stage-4-grpo' / 'checkpoint-'}" in out
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["phase"], status["stage"], status["stage_count"], status["method"]) == ("completed", 4, 4, "grpo")
    a, b = load_weights(run / "stage-4-grpo" / "model"), load_weights(killed / "stage-4-grpo" / "model")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-5, msg=name)
