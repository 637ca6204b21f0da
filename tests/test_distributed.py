"""Several processes (torchrun / accelerate launch of the CLI, gloo on CPU): the same weights as
one process with the same global batch, every file written once, SIGTERM stops every rank at the
same step with a checkpoint that a resume continues; core.distributed is a no-op alone."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time

import pytest

from jobkit import CLI, REPO, job_values, load_weights, write_config
from trainer.config import create_default_config

PAIRS = REPO / "data" / "preferences_train.jsonl"


def test_alone_the_helpers_are_plain_calls(monkeypatch):
    from core import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main_process()
    assert distributed.agree(lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        distributed.agree(lambda: 1 / 0)
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    with distributed.main_first():
        pass
    distributed.barrier()
    import torch.distributed as dist

    assert not dist.is_initialized()  # nothing above needed a process group


def _launch(launcher: str, config, *args: str, **popen) -> subprocess.Popen:
    prefix = {
        "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
        "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
    }[launcher]
    return subprocess.Popen([*prefix, str(CLI), "--config", str(config), *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def _two_against_one(tmp_path, builtin_cache, launcher: str, two_only: dict | None = None, **values):
    """The job with 2 processes of batch 2 (with ``two_only`` besides), and in this process with batch 4."""
    from trainer.core import TrainerEngine

    common = {"hyperparams.max_steps": 4, "output.save_steps": 2, "inference.preview_every_steps": 2, **values}
    two_values = {**common, "hyperparams.batch_size": 2, "output.run_name": "two", **(two_only or {})}
    config = write_config(tmp_path, job_values(tmp_path, builtin_cache, **two_values))
    proc = _launch(launcher, config)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    one = create_default_config(overrides=job_values(tmp_path, builtin_cache, **common, **{"hyperparams.batch_size": 4, "output.run_name": "one"}))
    result = TrainerEngine(console=io.StringIO()).run_job(one)
    two = tmp_path / "outputs" / "two"
    return result, two, out


@pytest.mark.slow
def test_sft_on_two_processes_equals_one_with_the_same_global_batch(tmp_path, builtin_cache):
    import jsonschema
    import torch

    from jobkit import SCHEMA

    result, two, out = _two_against_one(tmp_path, builtin_cache, "torchrun")
    a, b = load_weights(result.model_path), load_weights(two / "model")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-5, msg=name)
    # rank 0 alone talks and writes: one summary, one line per logged step, each preview once
    assert out.count("model saved to") == 1 and out.count("rows: 300 read") == 1
    steps = [json.loads(line)["step"] for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len((two / "previews.jsonl").read_text().splitlines()) == len((result.run_dir / "previews.jsonl").read_text().splitlines())
    assert sorted(p.name for p in (two / "checkpoint-4").glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    status = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert status["phase"] == "completed" and status["run_dir"] == str(two) or status["run_dir"] == str(result.run_dir)
    report = json.loads((two / "data_report.json").read_text())
    assert report["rows_used"] == 296 and not report["cache_hit"]  # rank 0 prepared; rank 1 read its cache


@pytest.mark.slow
def test_dpo_on_two_processes_equals_one_through_accelerate_launch(tmp_path, builtin_cache):
    import torch

    # out of the box: an SFT stage first (the embedded model is untrained), then DPO
    result, two, _ = _two_against_one(
        tmp_path, builtin_cache, "accelerate", **{"method.name": "dpo", "data.dataset_path": [str(PAIRS)], "data.max_rows": 40}
    )
    assert result.model_path.parent.name == "stage-2-dpo"
    a, b = load_weights(result.model_path), load_weights(two / "stage-2-dpo" / "model")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=5e-5, rtol=1e-4, msg=name)
    assert "rewards/margins" in json.loads((two / "result.json").read_text())["final_metrics"]


@pytest.mark.slow
def test_sigterm_stops_every_rank_at_one_step_and_the_resume_finishes(tmp_path, builtin_cache):
    values = job_values(tmp_path, builtin_cache, **{"hyperparams.max_steps": 300, "hyperparams.batch_size": 2,
                                                    "output.save_steps": 1000, "inference.preview_every_steps": 0})
    config = write_config(tmp_path, values)
    status_file = tmp_path / "status.json"
    proc = _launch("torchrun", config)
    deadline = time.monotonic() + 300
    while True:
        try:
            if (json.loads(status_file.read_text()).get("current_step") or 0) >= 3:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:] if proc.poll() is not None else "timed out"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # torchrun hands it to both ranks
    proc.communicate(timeout=120)
    run = tmp_path / "outputs" / "run"
    checkpoints = sorted(run.glob("checkpoint-*"))
    assert len(checkpoints) == 1, checkpoints  # both ranks stopped after the same step
    assert sorted(p.name for p in checkpoints[0].glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    status = json.loads(status_file.read_text())
    assert status["phase"] == "stopped" and not (run / "model").exists()
    stopped_at = int(checkpoints[0].name.split("-")[1])

    values["hyperparams.max_steps"] = stopped_at + 3
    config = write_config(tmp_path, values)
    resumed = _launch("torchrun", config, "--resume", "auto")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resuming from {checkpoints[0]}" in out and (run / "model" / "model.safetensors").is_file()
    final = json.loads(status_file.read_text())
    assert final["phase"] == "completed" and final["current_step"] == stopped_at + 3, (stopped_at, final["phase"], final["current_step"])


def test_sharding_configs_are_checked(tmp_path, builtin_cache, monkeypatch):
    import torch

    from trainer.core import preflight
    from trainer.core.preflight import check_parallel

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    good = tmp_path / "fsdp.json"
    good.write_text("{}")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    quiet = {"inference.preview_every_steps": 0, "inference.num_probes": 0}

    def problems(**values):
        return check_parallel(create_default_config(overrides=job_values(tmp_path, builtin_cache, **{**quiet, **values})))

    assert problems() == []
    assert any("cannot be read" in p for p in problems(**{"system.fsdp_config": str(tmp_path / "none.json")}))
    assert any("is not JSON" in p for p in problems(**{"system.fsdp_config": str(bad)}))
    if not torch.cuda.is_available():  # here: accelerate would drop FSDP and train plain DDP
        assert problems(**{"system.fsdp_config": str(good)}) == [
            "system.fsdp_config: FSDP shards over CUDA GPUs, and this job has none (system.device 'auto'); "
            "on CPUs several processes train data parallel without it"]
    monkeypatch.setattr(preflight, "_has_cuda", lambda: True)  # the rules of a GPU machine
    alone = problems(**{"system.fsdp_config": str(good)})
    assert alone == ["system.fsdp_config: FSDP shards the training over several processes, and this job is one; start it with "
                     "torchrun --nproc_per_node N trainer/cli_main.py ... or accelerate launch --multi_gpu --num_processes N ..."]
    assert problems(**{"system.fsdp_config": str(good), "daemon.processes": 2}) == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert problems(**{"system.fsdp_config": str(good)}) == []
    previews = problems(**{"system.fsdp_config": str(good), "inference.preview_every_steps": 5})
    assert previews == ["system.fsdp_config: sharded weights cannot answer probes on one process; set "
                        "inference.preview_every_steps 0 and inference.num_probes 0 (evaluate the saved model after the job)"]
    both = problems(**{"system.fsdp_config": str(good), "system.deepspeed": str(good)})
    assert any("give DeepSpeed or FSDP, not both" in p for p in both)
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        assert any("the deepspeed package is not installed" in p for p in problems(**{"system.deepspeed": str(good)}))
