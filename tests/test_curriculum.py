"""Curricula: stages run in order on the same model, show in the status, resume inside a stage."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobkit import CLI, REPO, cli, job_values, load_weights, wait_for, write_config
from test_methods import KNOWN
from trainer.config import ConfigError, create_default_config

PAIRS = REPO / "data" / "preferences_train.jsonl"


def staged_values(tmp_path: Path, builtin_cache: Path, **extra) -> dict:
    pairs = tmp_path / "pairs.jsonl"
    if not pairs.exists():
        pairs.write_text("\n".join(PAIRS.read_text().splitlines()[:80]) + "\n")
    values = job_values(
        tmp_path,
        builtin_cache,
        **{
            "hyperparams.batch_size": 4,
            "hyperparams.warmup_steps": 1,
            "inference.preview_every_steps": 0,
            "inference.num_probes": 2,
            "inference.max_new_tokens": 8,
            "output.save_steps": 2,
            "output.save_total_limit": 4,
            "data.max_rows": 100,
            **extra,
        },
    )
    del values["hyperparams.max_steps"]
    values["stages"] = [
        {"method": {"name": "sft"}, "max_steps": 4},
        {"method": {"name": "dpo", "beta": 0.2}, "max_steps": 8, "dataset_path": [str(pairs)]},
    ]
    return values


def test_stage_options_are_checked_with_their_paths():
    with pytest.raises(ConfigError) as info:
        create_default_config(overrides={"stages": [{"method": {"name": "dpo", "bta": 1}}, {"max_steps": 2, "method": {"name": "sfy"}}]})
    assert info.value.problems == [
        "stages[0].method.bta: unknown key; did you mean stages[0].method.beta? (from create_default_config)",
        "stages[0].max_steps: required key is missing (from create_default_config)",
        f"stages[1].method.name: expected one of {KNOWN}; got 'sfy' (str); did you mean 'sft'? (from create_default_config)",
    ]


def test_a_missing_stage_dataset_is_found_by_validate(tmp_path, builtin_cache):
    values = staged_values(tmp_path, builtin_cache)
    values["stages"][1]["dataset_path"] = [str(tmp_path / "nope.jsonl")]
    proc = subprocess.run([sys.executable, str(CLI), "--config", str(write_config(tmp_path, values)), "--validate"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and f"stages[1].dataset_path[0]: {tmp_path / 'nope.jsonl'} does not exist" in proc.stderr


@pytest.mark.slow
def test_sigkill_in_stage_two_then_resume_equals_an_uninterrupted_curriculum(tmp_path, builtin_cache):
    from trainer.core import TrainerEngine
    from trainer.core.checkpoints import is_complete_checkpoint

    straight = create_default_config(overrides={**staged_values(tmp_path, builtin_cache), "output.run_name": "straight"})
    result = TrainerEngine().run_job(straight)
    run = tmp_path / "outputs" / "straight"
    assert result.model_path == run / "stage-2-dpo" / "model"
    summary = json.loads((run / "result.json").read_text())
    assert [s["method"] for s in summary["final_metrics"]["stages"]] == ["sft", "dpo"]
    # stage 2 started from stage 1's model
    stage2 = json.loads((run / "stage-2-dpo" / "resolved_config.json").read_text())["config"]
    assert stage2["model"]["path"] == str(run / "stage-1-sft" / "model") and stage2["method"]["name"] == "dpo"

    config_file = write_config(tmp_path, {**staged_values(tmp_path, builtin_cache), "output.run_name": "killed"})
    killed = tmp_path / "outputs" / "killed"
    statuses = []

    def in_stage_two() -> bool:
        try:
            statuses.append(json.loads((tmp_path / "status.json").read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        return is_complete_checkpoint(killed / "stage-2-dpo" / "checkpoint-4")

    proc = cli(config_file)
    wait_for(in_stage_two, proc, timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / "stage-2-dpo" / "model").exists()
    assert any((s["stage"], s["stage_count"], s["method"]) == (2, 2, "dpo") for s in statuses)
    assert any((s["stage"], s["method"]) == (1, "sft") for s in statuses)

    # a fresh start refuses the folder; --resume auto continues inside stage 2
    again = cli(config_file)
    assert again.wait(timeout=120) == 2 and "already holds checkpoints" in again.stderr.read()
    resumed = cli(config_file, "--resume", "auto")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resuming from {killed / 'stage-2-dpo' / 'checkpoint-'}" in out
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["phase"], status["stage"], status["method"]) == ("completed", 2, "dpo")
    assert "rewards/margins" in status["method_metrics"]

    import torch

    a, b = load_weights(run / "stage-2-dpo" / "model"), load_weights(killed / "stage-2-dpo" / "model")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-5, msg=name)
