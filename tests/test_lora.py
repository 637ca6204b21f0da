"""LoRA through peft (model.lora) on the tiny model: only adapters train, checkpoints hold them and
resume exactly, the final model is an adapter folder and a merged folder that from_pretrained
loads alone; an adapter folder is a base for the next stage; QLoRA is refused on a CPU."""

from __future__ import annotations

import json

import pytest

from jobkit import REPO, job_values, load_weights, straight_and_killed
from trainer.config import create_default_config
from trainer.core.preflight import check_config

LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def test_qlora_is_refused_on_a_cpu_and_lora_passes(tmp_path, builtin_cache):
    qlora = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.lora": {"load_in_4bit": True}, "system.device": "cpu"}))
    assert any(p.startswith("model.lora.load_in_4bit: QLoRA's 4-bit base runs on CUDA GPUs only") for p in check_config(qlora))
    import torch

    if not torch.cuda.is_available():
        auto = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.lora": {"load_in_4bit": True}}))
        assert any("this machine has none" in p for p in check_config(auto))
    lora = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.lora": LORA}))
    assert not [p for p in check_config(lora) if "lora" in p]
    classifier = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.lora": {"load_in_4bit": True}, "method.name": "classify"}))
    assert ("model.lora.load_in_4bit: QLoRA is for causal LMs; method classify trains a classifier (use LoRA without "
            "load_in_4bit)") in check_config(classifier)
    unmerged = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.lora": {"merge": False}, "method.name": "reward"}))
    assert ("model.lora.merge: method reward trains a classifier, whose model/ must be a whole folder (the engine puts "
            "only causal-LM adapter folders back on their base); set merge true") in check_config(unmerged)


def test_lora_options_are_checked():
    from trainer.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        create_default_config(overrides={"model.lora": {"lora_alpha": 4, "dropout": 1.5}})
    text = str(caught.value)
    assert "model.lora.lora_alpha: unknown key; did you mean model.lora.alpha?" in text
    assert "model.lora.dropout: expected less than 1" in text


@pytest.mark.slow
def test_lora_trains_adapters_only_and_saves_adapter_and_merged_model(tmp_path, builtin_cache, tiny_model_dir):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from trainer.core import TrainerEngine

    values = job_values(tmp_path, builtin_cache, **{"model.lora": LORA, "hyperparams.max_steps": 6, "output.save_steps": 3,
                                                    "inference.preview_every_steps": 0})
    result = TrainerEngine().run_job(create_default_config(overrides=values))
    run = result.run_dir
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in name for name in adapter), sorted(adapter)[:4]
    assert {n.split(".")[-2] for n in adapter} == {"lora_A", "lora_B"}
    assert any(adapter[n].abs().max() > 0 for n in adapter if "lora_B" in n)  # B starts at 0: it trained
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    # checkpoints hold the adapters, not the whole model
    assert (run / "checkpoint-3" / "adapter_model.safetensors").is_file() and not (run / "checkpoint-3" / "model.safetensors").exists()

    # model/ is a plain folder (no peft needed): the base with B @ A * alpha / r added to q and v
    assert not (run / "model" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(run / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    merged_w, base_w = merged.state_dict(), base.state_dict()
    assert merged_w.keys() == base_w.keys()
    changed = {n for n in base_w if not torch.equal(merged_w[n], base_w[n])}
    assert changed and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in changed), sorted(changed)[:4]
    layer = "model.layers.0.self_attn.q_proj"
    a = adapter[f"base_model.model.{layer}.lora_A.weight"]
    b = adapter[f"base_model.model.{layer}.lora_B.weight"]
    torch.testing.assert_close(merged_w[f"{layer}.weight"], base_w[f"{layer}.weight"] + (b @ a) * (8 / 4))
    assert result.final_metrics["loss_end"] < result.final_metrics["loss_start"]


@pytest.mark.slow
def test_lora_sigkill_then_resume_equals_uninterrupted(tmp_path, builtin_cache):
    import torch
    from safetensors.torch import load_file

    common = {"model.lora": LORA, "hyperparams.max_steps": 8, "output.save_steps": 4, "output.save_total_limit": 3,
              "inference.preview_every_steps": 0, "inference.num_probes": 2}
    straight_run, run, _ = straight_and_killed(tmp_path, builtin_cache, common, kill_at=4)
    straight = load_file(str(straight_run / "adapter" / "adapter_model.safetensors"))
    again = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert straight.keys() == again.keys()
    for name in straight:
        torch.testing.assert_close(again[name], straight[name], atol=1e-5, rtol=1e-5, msg=name)
    a, b = load_weights(straight_run / "model"), load_weights(run / "model")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_an_unmerged_adapter_run_is_the_base_of_the_next_stage(tmp_path, builtin_cache, tiny_model_dir):
    """merge false: model/ is the adapter folder; a DPO stage after it loads it onto its base,
    trains its own adapters, and the engine's loader rebuilds the whole chain."""
    import torch

    from trainer.core import TrainerEngine
    from trainer.models.lora import base_of
    from trainer.models.loading import load_model

    values = job_values(tmp_path, builtin_cache, **{
        "model.lora": {**LORA, "merge": False}, "inference.preview_every_steps": 0, "hyperparams.batch_size": 4,
        "data.max_rows": 40,
        "stages": [{"method": {"name": "sft"}, "max_steps": 3},
                   {"method": {"name": "dpo"}, "max_steps": 3, "dataset_path": [str(REPO / "data" / "preferences_train.jsonl")]}],
    })
    config = create_default_config(overrides=values)
    result = TrainerEngine().run_job(config)
    first, second = result.run_dir / "stage-1-sft" / "model", result.model_path
    assert (first / "adapter_config.json").is_file() and (second / "adapter_config.json").is_file()
    assert base_of(second) == first and base_of(first) == tiny_model_dir.resolve()
    final = load_model(second, config, "cpu", "float32")
    start = load_model(base_of(first), config, "cpu", "float32")
    after_sft = load_model(first, config, "cpu", "float32")
    q = "model.layers.0.self_attn.q_proj.weight"
    weights = [m.state_dict()[q] for m in (start, after_sft, final)]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    assert "rewards/margins" in json.dumps(result.final_metrics)


# A method of each other code path, with its data (the bundled file of its shape): unpaired pairs,
# a classifier's head (peft's SEQ_CLS, the head trained in full), TRL's RL, and our PPO with its
# value head. (ORPO and SimPO train as DPO does, classify as reward, RLOO as GRPO.)
METHOD_DATA = {"kto": "preferences_train.jsonl", "reward": "preferences_train.jsonl", "grpo": None, "ppo": None}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHOD_DATA))
def test_every_method_trains_lora_adapters(tmp_path, builtin_cache, method):
    """sft and dpo are above; the other code paths train adapters alone too and save adapter/
    beside a whole model/ (out of the box, a refining method's SFT stage comes first)."""
    from safetensors.torch import load_file

    from trainer.core import TrainerEngine

    values = {"model.lora": LORA, "method.name": method, "hyperparams.max_steps": 2, "hyperparams.batch_size": 4,
              "inference.preview_every_steps": 0, "inference.num_probes": 1, "data.max_rows": 40}
    if METHOD_DATA[method]:
        values["data.dataset_path"] = [str(REPO / "data" / METHOD_DATA[method])]
    result = TrainerEngine().run_job(create_default_config(overrides=job_values(tmp_path, builtin_cache, **values)))
    stage = result.model_path.parent
    adapter = load_file(str(stage / "adapter" / "adapter_model.safetensors"))
    trained = {n for n in adapter if "lora_" in n}
    assert trained and all(n.split(".")[-2] in ("lora_A", "lora_B") or "lora_" not in n for n in adapter)
    assert (result.model_path / "model.safetensors").is_file() and not (result.model_path / "adapter_config.json").exists()
