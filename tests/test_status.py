"""The status file: atomic writes under a concurrent reader, derived coarse status, schema in sync."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

from core.training_status import (
    Example,
    JsonlLog,
    TrainingStatus,
    TrainingStatusWriter,
    read_status,
)
from trainer.monitoring.status_writer import TrainingStatusWriter as ReExported

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "training_status.schema.json"


def test_one_implementation():
    assert ReExported is TrainingStatusWriter


def test_phase_sets_coarse_status_and_timestamp(tmp_path):
    writer = TrainingStatusWriter(tmp_path / "s.json", run_name="r")
    before = writer.status.timestamp
    time.sleep(0.01)
    writer.set_phase("training", current_step=3)
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["phase"] == "training" and data["status"] == "training"
    assert data["current_step"] == 3 and data["run_name"] == "r"
    assert data["timestamp"] > before
    writer.set_phase("failed")
    assert read_status(tmp_path / "s.json").status == "crashed"
    writer.set_phase("stopped")
    assert read_status(tmp_path / "s.json").status == "idle"


def test_previews_update_flat_fields_and_totals(tmp_path):
    writer = TrainingStatusWriter(tmp_path / "s.json")
    writer.add_preview(Example(step=5, prompt="p1", golden="4", model_output="Answer: 4", matches=True, format_ok=True))
    writer.add_preview(Example(step=5, prompt="p2", golden="5", model_output="x", matches=False, format_ok=False))
    s = read_status(tmp_path / "s.json")
    assert (s.current_prompt, s.golden_answer, s.model_answer, s.answer_matches) == ("p2", "5", "x", False)
    assert (s.total_evals, s.total_correct, s.accuracy_percent, s.format_ok_percent) == (2, 1, 50.0, 50.0)
    assert [e.prompt for e in s.recent_examples] == ["p1", "p2"]


def test_failure_keeps_traceback_tail(tmp_path):
    writer = TrainingStatusWriter(tmp_path / "s.json")
    writer.fail(RuntimeError("boom"), "\n".join(f"line {i}" for i in range(100)), tail_lines=3)
    s = read_status(tmp_path / "s.json")
    assert (s.phase, s.status, s.error_type, s.error_message) == ("failed", "crashed", "RuntimeError", "boom")
    assert s.error_traceback == "line 97\nline 98\nline 99"


def test_disabled_writer_writes_nothing(tmp_path):
    writer = TrainingStatusWriter(tmp_path / "s.json", enabled=False)
    writer.set_phase("training")
    JsonlLog(tmp_path / "m.jsonl", enabled=False).append({"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_heartbeat_rewrites_timestamp(tmp_path):
    writer = TrainingStatusWriter(tmp_path / "s.json", heartbeat_interval_s=0.05)
    writer.set_phase("training")
    first = read_status(tmp_path / "s.json").timestamp
    writer.start_heartbeat()
    time.sleep(0.3)
    writer.stop_heartbeat()
    assert read_status(tmp_path / "s.json").timestamp > first


def _hammer(path: str, count: int) -> None:
    writer = TrainingStatusWriter(path)
    big = "x" * 20000  # large writes make a torn file likely if writes were not atomic
    for step in range(count):
        writer.update(current_step=step, phase="training", model_answer=big + str(step))


def test_concurrent_reader_never_sees_partial_file(tmp_path):
    path = tmp_path / "s.json"
    _hammer(str(path), 1)
    proc = multiprocessing.get_context("spawn").Process(target=_hammer, args=(str(path), 400))
    proc.start()
    reads, steps = 0, set()
    while proc.is_alive() or reads < 50:
        data = json.loads(path.read_text(encoding="utf-8"))  # raises on a torn file
        TrainingStatus.model_validate(data)
        steps.add(data["current_step"])
        reads += 1
    proc.join()
    assert proc.exitcode == 0
    assert reads >= 50 and len(steps) > 1
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_checked_in_schema_matches_model():
    assert json.loads(SCHEMA.read_text()) == TrainingStatus.model_json_schema(), (
        "schemas/training_status.schema.json is stale: run python scripts/write_schemas.py"
    )


def test_jsonl_log_appends_whole_lines(tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl")
    log.append({"step": 1})
    log.append({"step": 2})
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2]


def test_checked_in_daemon_schema_matches_model():
    from arena.status import DaemonStatus

    path = REPO / "schemas" / "daemon_status.schema.json"
    assert json.loads(path.read_text()) == DaemonStatus.model_json_schema(), (
        "schemas/daemon_status.schema.json is stale: run python scripts/write_schemas.py"
    )


def test_writer_reused_for_a_second_run_starts_clean(tmp_path):
    writer = TrainingStatusWriter(tmp_path / "s.json", heartbeat_interval_s=0.05)
    writer.add_preview(Example(step=1, prompt="p", model_output="x", format_ok=False))
    writer.fail(RuntimeError("old"), "tb")
    writer.start_heartbeat()
    writer.stop_heartbeat()
    writer.reset(run_name="second")
    writer.set_phase("training")
    writer.start_heartbeat()  # must beat again after a stop
    first = read_status(tmp_path / "s.json").timestamp
    time.sleep(0.3)
    writer.stop_heartbeat()
    s = read_status(tmp_path / "s.json")
    assert s.timestamp > first
    assert (s.run_name, s.total_evals, s.error_message, s.phase) == ("second", 0, None, "training")


def test_status_file_is_readable_by_others(tmp_path):
    TrainingStatusWriter(tmp_path / "s.json").set_phase("training")
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o644
