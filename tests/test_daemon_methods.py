"""The daemon trains job files that name a method (or stages), through the same engine."""

from __future__ import annotations

import json

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
