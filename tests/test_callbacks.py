"""Callbacks by name (trainer.callbacks): options and checks (raise / pass pairs), and real jobs
on the tiny model that use them."""

from __future__ import annotations

import json

import pytest
import torch

from jobkit import job_values, load_weights
from trainer.callbacks import CALLBACKS, callback_problems
from trainer.callbacks.sync_ref_model import mix
from trainer.config import ConfigError, create_default_config
from trainer.core.engine import TrainerEngine
from trainer.core.preflight import check_config


def _config(**overrides):
    return create_default_config(overrides=overrides)


def _problems(**overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _config(**overrides)
    return info.value.problems


def test_the_registry_names_the_seed_callbacks():
    assert set(CALLBACKS) == {"bema", "log_completions", "merge_adapter", "rich_progress", "sync_ref_model", "win_rate"}


def test_names_and_options_are_checked_with_paths_and_did_you_mean():
    (problem,) = _problems(callbacks=["bemma"])
    assert problem.startswith("callbacks[0].name: expected one of 'bema'") and "did you mean 'bema'?" in problem
    (problem,) = _problems(callbacks=["rich_progress", {"name": "bema", "update_fre": 3}])
    assert problem.startswith("callbacks[1].update_fre: unknown key; did you mean callbacks[1].update_freq?")
    (problem,) = _problems(callbacks=[{"name": "sync_ref_model", "alpha": 2}])
    assert problem.startswith("callbacks[0].alpha: expected less than or equal to 1")
    ok = _config(callbacks=["bema", {"name": "sync_ref_model", "every_steps": 8}])
    assert [c.name for c in ok.callbacks] == ["bema", "sync_ref_model"] and ok.callbacks[1].every_steps == 8


def test_win_rate_callback_is_the_inference_setting():
    config = _config(callbacks=[{"name": "win_rate", "every_steps": 7, "judge": "always"}])
    assert (config.inference.win_rate_every_steps, config.inference.judge.name) == (7, "always")
    # the saved config reads back the same (both keys now say it)
    again = create_default_config(overrides={"callbacks": config.model_dump(mode="json")["callbacks"],
                                             "inference": config.model_dump(mode="json")["inference"]})
    assert again.inference == config.inference
    (problem,) = _problems(**{"callbacks": [{"name": "win_rate", "every_steps": 7}], "inference.win_rate_every_steps": 3})
    assert problem.startswith("callbacks[0]: win_rate every_steps 7 and inference.win_rate_every_steps 3 disagree")


@pytest.mark.parametrize("callbacks, extra, message", [
    (["merge_adapter"], {}, "callbacks[0]: merge_adapter merges LoRA adapters, and model.lora is not set"),
    (["merge_adapter"], {"model.lora": {"load_in_4bit": True}}, "callbacks[0]: merge_adapter with model.lora.load_in_4bit"),
    (["sync_ref_model"], {}, "callbacks[0]: sync_ref_model moves a frozen reference model, and method sft keeps none"),
    (["sync_ref_model"], {"method": {"name": "grpo", "beta": 0.0}}, "and method grpo keeps none"),
    (["sync_ref_model"], {"method": "dpo", "model.lora": {}}, "and method dpo keeps none"),
    (["log_completions"], {}, "callbacks[0]: log_completions writes tables to the experiment trackers"),
    (["bema"], {"model.lora": {}}, "callbacks[0]: bema averages the full weights"),
    ([{"name": "bema", "update_freq": 2}], {"method": "ppo", "hyperparams.max_steps": 10}, "and method ppo adds modules of its own"),
    ([{"name": "bema", "update_freq": 2}], {"hybrid": {"cycles": 1, "steps_per_cycle": 10}}, "and method ppo adds modules"),
    (["bema"], {"hyperparams.max_steps": 10}, "callbacks[0].update_freq: 400 steps after update_after 0 is past hyperparams.max_steps 10"),
    ([{"name": "bema", "update_freq": 8}], {"stages": [{"method": "sft", "max_steps": 10}, {"method": "sft", "max_steps": 5}]},
     "is past stages[1].max_steps 5"),
    (["sync_ref_model"], {"stages": [{"method": "sft", "max_steps": 3}, {"method": {"name": "grpo", "beta": 0}, "max_steps": 3}]},
     "and method grpo keeps none"),
    ([{"name": "custom_callbacks:Missing"}], {}, "callbacks[0]: cannot import 'custom_callbacks:Missing'"),
    ([{"name": "custom_callbacks:NOT_A_CALLBACK"}], {}, "is not a transformers TrainerCallback subclass"),
    ([{"name": "custom_callbacks:StepRecorder", "options": {"pth": "x"}}], {}, "does not take these options"),
])
def test_checks_refuse(callbacks, extra, message):
    problems = callback_problems(_config(callbacks=callbacks, **extra))
    assert len(problems) == 1 and message in problems[0], problems


@pytest.mark.parametrize("callbacks, extra", [
    (["merge_adapter"], {"model.lora": {}}),
    (["sync_ref_model"], {"method": "dpo"}),
    (["sync_ref_model"], {"method": {"name": "grpo", "beta": 0.05}}),
    (["sync_ref_model"], {"method": {"name": "ppo", "beta": 0.05}}),
    (["sync_ref_model"], {"method": "kto"}),
    (["sync_ref_model"], {"stages": [{"method": "sft", "max_steps": 3}, {"method": "dpo", "max_steps": 3}]}),  # the DPO stage
    (["log_completions"], {"output.report_to": ["tensorboard"]}),
    ([{"name": "bema", "update_freq": 5}], {"hyperparams.max_steps": 10}),
    ([{"name": "custom_callbacks:StepRecorder", "options": {"path": "x"}}], {}),
    (["rich_progress", "win_rate"], {}),
])
def test_checks_pass(callbacks, extra):
    assert callback_problems(_config(callbacks=callbacks, **extra)) == []


def test_validate_reports_callback_problems():
    problems = check_config(_config(callbacks=["merge_adapter"]))
    assert "callbacks[0]: merge_adapter merges LoRA adapters, and model.lora is not set" in problems


def test_mix_pairs_parameters_by_name_and_leaves_the_policys_extras():
    policy = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    reference = torch.nn.Sequential(torch.nn.Linear(2, 2))
    before = reference[0].weight.detach().clone()
    mix(policy, reference, 0.25)  # the policy's second layer (a value head) has no counterpart
    assert torch.allclose(reference[0].weight, 0.75 * before + 0.25 * policy[0].weight)
    mix(policy, reference, 1.0)
    assert torch.equal(reference[0].weight, policy[0].weight)


# --- real jobs ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_with_bema_log_completions_rich_progress_and_a_custom_callback(tmp_path, builtin_cache, tiny_model_dir, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import AutoModelForCausalLM

    steps_file = tmp_path / "steps.jsonl"
    config = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{
        "output.report_to": ["tensorboard"],
        "callbacks": [
            {"name": "bema", "update_freq": 4},
            {"name": "log_completions", "every_steps": 6, "num_prompts": 3},
            "rich_progress",
            {"name": "custom_callbacks:StepRecorder", "options": {"path": str(steps_file), "tag": "t1"}},
        ],
    }))
    result = TrainerEngine().run_job(config)
    out = capsys.readouterr().out
    run = result.run_dir
    # custom: built with its options, called at every step
    assert [json.loads(line) for line in steps_file.read_text().splitlines()] == [{"step": s, "tag": "t1"} for s in range(1, 13)]
    # rich_progress replaces the console's step lines
    assert "step    12/12" not in out and "Training" in out
    # bema: a second full model that loads alone, neither the start nor the trained model
    bema = AutoModelForCausalLM.from_pretrained(run / "bema")
    assert (run / "bema" / "tokenizer_config.json").is_file()
    averaged, trained = bema.state_dict(), load_weights(run / "model")
    start = load_weights(tiny_model_dir)
    key = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(averaged[key], trained[key]) and not torch.equal(averaged[key], start[key])
    # log_completions: a table of 3 answers at steps 6 and 12 in TensorBoard
    tables = {}
    for events in sorted((run / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
        acc.Reload()
        if "completions/text_summary" in acc.Tags()["tensors"]:
            tables = {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors("completions/text_summary")}
    assert sorted(tables) == [6, 12]
    lines = tables[12].splitlines()
    assert lines[0] == "| step | prompt | completion | format_ok | correct |" and len(lines) == 2 + 3
    assert all(line.startswith("| 12 | ") for line in lines[2:])


@pytest.mark.slow
def test_merge_adapter_writes_a_plain_model_into_each_checkpoint(tmp_path, builtin_cache):
    from transformers import AutoModelForCausalLM

    config = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{
        "model.lora": {"r": 4}, "callbacks": ["merge_adapter"], "hyperparams.max_steps": 6, "output.save_steps": 3,
        "inference.preview_every_steps": 0,
    }))
    result = TrainerEngine().run_job(config)
    run = result.run_dir
    for step in (3, 6):
        merged = run / f"checkpoint-{step}" / "merged"
        assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
        assert (merged / "tokenizer_config.json").is_file()
    plain = AutoModelForCausalLM.from_pretrained(run / "checkpoint-6" / "merged")  # no peft needed
    final = load_weights(run / "model")  # the run's own merge of the same adapters
    weights = plain.state_dict()
    assert set(final) <= set(weights)
    for name, value in final.items():
        assert torch.allclose(weights[name], value, atol=1e-6), name
    assert not all(torch.equal(value, load_weights(run / "checkpoint-3" / "merged")[name]) for name, value in final.items())
    assert (run / "checkpoint-6" / "adapter_model.safetensors").is_file()  # the checkpoint still resumes with adapters
