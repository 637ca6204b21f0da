"""Experiment trackers (output.report_to): config checks, and real TensorBoard / W&B output read back."""

from __future__ import annotations

import json
import os

import pytest

from jobkit import job_values, tensorboard_scalars
from trainer.config import ConfigError, create_default_config
from trainer.core.engine import TrainerEngine
from trainer.trackers import TRACKERS, environment, tracker_problems


def _problems(**overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        create_default_config(overrides=overrides)
    return info.value.problems


# --- config --------------------------------------------------------------------------------------


def test_report_to_defaults_to_none_and_takes_one_name():
    assert create_default_config().output.report_to == []
    assert create_default_config(overrides={"output.report_to": "none"}).output.report_to == []
    assert create_default_config(overrides={"output.report_to": "tensorboard"}).output.report_to == ["tensorboard"]


def test_unknown_tracker_is_named_with_did_you_mean():
    (problem,) = _problems(**{"output.report_to": ["tensorbord"]})
    assert problem.startswith("output.report_to: ")
    assert "[0] 'tensorbord': not a tracker" in problem and "did you mean 'tensorboard'?" in problem


def test_tracker_not_installed_says_which_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert tracker_problems(["tensorboard", "mlflow", "tensorboard"]) == [
        "[1] 'mlflow': the mlflow package is not installed: pip install 'hero-trainer[mlflow]'",
        "[2] 'tensorboard' is given twice",
    ]
    assert tracker_problems(["tensorboard"]) == []


def test_every_tracker_is_a_transformers_integration():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert set(TRACKERS) <= set(INTEGRATION_TO_CALLBACK)


def test_environment_is_the_jobs_and_the_users_own_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    monkeypatch.setenv("WANDB_PROJECT", "mine")
    with environment(["tensorboard", "wandb"], tmp_path / "run", tmp_path, "hero"):
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "run" / "tensorboard")
        assert os.environ["WANDB_DIR"] == str(tmp_path / "run")
        assert os.environ["WANDB_PROJECT"] == "mine"
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ and "WANDB_DIR" not in os.environ
    assert os.environ["WANDB_PROJECT"] == "mine"


# --- real runs -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tensorboard_holds_the_loss_curve_config_and_final_figures(tmp_path, builtin_cache):
    pytest.importorskip("tensorboard")
    config = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"output.report_to": ["tensorboard"]}))
    result = TrainerEngine().run_job(config)
    folder = result.run_dir / "tensorboard"
    curves = tensorboard_scalars(folder)
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [(e["step"], e["loss"]) for e in logged if e.get("loss") is not None]
    # the same curve as metrics.jsonl, step for step
    assert [s for s, _ in curves["train/loss"]] == [s for s, _ in losses]
    assert [v for _, v in curves["train/loss"]] == pytest.approx([v for _, v in losses], rel=1e-5)
    assert curves["train/loss"][-1][1] < curves["train/loss"][0][1]
    assert "train/learning_rate" in curves
    final = {tag: values[-1] for tag, values in curves.items() if tag.startswith("final/")}
    assert final["final/probes_format_ok"] == (12, float(result.final_metrics["probes_format_ok"]))
    assert final["final/loss_end"][1] == pytest.approx(result.final_metrics["loss_end"], rel=1e-5)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    texts = {}
    for events in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            texts[tag] = acc.Tensors(tag)[0].tensor_proto.string_val[0].decode()
    logged_config = json.loads(texts["trainer_config/text_summary"].strip().removeprefix("```json").removesuffix("```"))
    assert logged_config["output"]["report_to"] == ["tensorboard"]
    assert logged_config["hyperparams"]["max_steps"] == 12


def _wandb_records(path) -> list:
    """The records of an offline W&B run file. wandb 0.31 ships no reader for its own files (the
    Go core writes them), so this reads the format: a 7-byte header, then LevelDB-log blocks of
    32 KiB whose records (crc 4, length 2, type 1: full, first, middle, last) carry protobuf
    ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.slow
def test_wandb_offline_run_holds_the_figures_and_config(tmp_path, builtin_cache, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = create_default_config(overrides=job_values(
        tmp_path, builtin_cache, **{"output.report_to": ["wandb"], "output.project": "hero-test", "hyperparams.max_steps": 4,
                                    "inference.preview_every_steps": 0}))
    result = TrainerEngine().run_job(config)
    (run_file,) = (result.run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = _wandb_records(run_file)

    def updates(kind: str, field: str) -> list[dict]:
        # a key is either ``key`` or, in the Go core's records, a one-element ``nested_key``
        return [{i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in getattr(getattr(r, kind), field)}
                for r in records if r.WhichOneof("record_type") == kind]

    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in logged if e.get("loss") is not None]
    assert [h["train/loss"] for h in updates("history", "item") if "train/loss" in h] == pytest.approx(losses, rel=1e-5)
    summary = {k: v for u in updates("summary", "update") for k, v in u.items()}
    assert summary["final/probes"] == result.final_metrics["probes"]
    assert summary["final/loss_end"] == pytest.approx(result.final_metrics["loss_end"], rel=1e-5)
    config_items = {k: v for u in updates("config", "update") for k, v in u.items()}
    assert config_items["trainer_config"]["output"]["project"] == "hero-test"
    assert config_items["run_name"] == "run"
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "hero-test" and run.display_name == "run"
    import wandb

    assert wandb.run is None  # the job closed its run: the next job in this process gets its own


def test_a_curriculum_stage_is_named_after_its_job_in_the_trackers(tmp_path):
    from trainer.methods.sft import tracker_run_name

    assert tracker_run_name(tmp_path / "outputs" / "my-job" / "stage-2-dpo") == "my-job/stage-2-dpo"
    assert tracker_run_name(tmp_path / "outputs" / "my-job") == "my-job"
