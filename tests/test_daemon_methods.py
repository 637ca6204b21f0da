"""The daemon trains job files that name a method (or stages), through the same engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_daemon import REPO, Daemon

PAIRS = REPO / "data" / "preferences_train.jsonl"

pytestmark = pytest.mark.slow


def test_a_job_file_that_names_dpo(tmp_path, builtin_cache):
    daemon = Daemon(tmp_path, builtin_cache, **{"hyperparams.batch_size": 4, "hyperparams.max_steps": 4})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pairs.jsonl").write_text("\n".join(PAIRS.read_text().splitlines()[:60]) + "\n")
    job = {"dataset": str(tmp_path / "data" / "pairs.jsonl"), "overrides": {"method": {"name": "dpo", "beta": 0.2}}}
    daemon.drop("align.job.json", [json.dumps(job)])
    daemon.start()
    try:
        daemon.wait(lambda: daemon.jobs("done") or daemon.jobs("failed"), timeout=300)
    finally:
        daemon.stop()
    assert not daemon.jobs("failed"), (daemon.jobs("failed")[0] / "error.txt").read_text()
    done = daemon.jobs("done")[0]
    status = json.loads((done / "training_status.json").read_text())
    assert status["method"] == "dpo" and "rewards/margins" in status["method_metrics"]
    run = json.loads((done / "run" / "resolved_config.json").read_text())["config"]
    assert run["method"] == {"name": "dpo", "beta": 0.2, "loss_type": "sigmoid", "label_smoothing": 0.0, "reference_model": None}
    assert json.loads((done / "run" / "data_report.json").read_text())["formats"] == {"prompt_chosen_rejected": 60}
    result = json.loads((done / "result.json").read_text())
    assert result["outcome"] == "done" and "candidate" in result["metrics"]


def test_adapter_jobs_are_evaluated_promoted_and_continued_from(tmp_path, builtin_cache):
    """Two LoRA jobs asked for an unmerged adapter folder: each hero version is a whole model
    (a hero stands alone), and the second job trains on top of the first one's hero."""
    daemon = Daemon(tmp_path, builtin_cache, **{"hyperparams.max_steps": 6, "hyperparams.learning_rate": 0.01})
    (tmp_path / "data").mkdir()
    rows = (REPO / "data" / "arithmetic_train.jsonl").read_text().splitlines()
    lora = {"model": {"lora": {"r": 8, "merge": False}}}
    for name, part in (("a", rows[:120]), ("b", rows[120:240])):
        (tmp_path / "data" / f"{name}.jsonl").write_text("\n".join(part) + "\n")
    daemon.drop("a.job.json", [json.dumps({"dataset": str(tmp_path / "data" / "a.jsonl"), "overrides": lora})])
    daemon.start()
    try:
        daemon.wait(lambda: daemon.jobs("done") or daemon.jobs("failed"), timeout=300)
        daemon.drop("b.job.json", [json.dumps({"dataset": str(tmp_path / "data" / "b.jsonl"), "overrides": lora})])
        daemon.wait(lambda: len(daemon.jobs("done")) + len(daemon.jobs("failed")) >= 2, timeout=300)
    finally:
        daemon.stop()
    assert not daemon.jobs("failed"), (daemon.jobs("failed")[0] / "error.txt").read_text()
    done = {Path(json.loads((d / "result.json").read_text())["dataset"]).stem: d for d in daemon.jobs("done")}
    results = {name: json.loads((folder / "result.json").read_text()) for name, folder in done.items()}
    assert sorted(results) == ["a", "b"] and all("candidate" in r["metrics"] for r in results.values())
    versions = sorted((daemon.queue / "hero" / "versions").iterdir())
    assert results["a"]["promoted"], results["a"]["metrics"]["reasons"]  # 6 steps beat the untrained start
    assert len(versions) == sum(r["promoted"] for r in results.values())
    for version in versions:  # whole models: from_pretrained needs no adapter base
        assert (version / "model.safetensors").is_file() and not (version / "adapter_config.json").exists()
    second = json.loads((done["b"] / "run" / "resolved_config.json").read_text())["config"]
    assert second["model"]["lora"]["merge"] is True and Path(second["model"]["path"]) == versions[0]
    for folder in done.values():
        assert (folder / "run" / "adapter" / "adapter_config.json").is_file()


def test_a_job_on_two_processes(tmp_path, builtin_cache):
    """daemon.processes 2: the job runs under torchrun (gloo on CPU), rank 0 evaluates and leads."""
    daemon = Daemon(tmp_path, builtin_cache, **{"daemon.processes": 2, "hyperparams.batch_size": 4, "hyperparams.max_steps": 4})
    rows = (REPO / "data" / "arithmetic_train.jsonl").read_text().splitlines()[:120]
    daemon.drop("a.jsonl", rows)
    (tmp_path / "b.jsonl").write_text("\n".join(rows) + "\n")
    bad = {"dataset": str(tmp_path / "b.jsonl"), "overrides": {"hyperparams": {"learnig_rate": 1}}}
    daemon.drop("bad.job.json", [json.dumps(bad)])
    daemon.start()
    try:
        daemon.wait(lambda: daemon.jobs("done") and daemon.jobs("failed"), timeout=300)
    finally:
        daemon.stop()
    # rank 0's exit code reaches the daemon through torchrun: a config error, not retried
    failed = json.loads((daemon.jobs("failed")[0] / "job.json").read_text())
    assert [a["exit_code"] for a in failed["attempts"]] == [2], failed["attempts"]
    done = daemon.jobs("done")[0]
    assert sorted(p.name for p in (done / "run" / "checkpoint-4").glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    result = json.loads((done / "result.json").read_text())
    assert result["outcome"] == "done" and "candidate" in result["metrics"]
    assert "torch.distributed.run --standalone --nproc_per_node 2" in (done / "job.log").read_text()
