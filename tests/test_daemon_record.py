"""The daemon keeps its record: history across restarts, whole failure reasons, where files are now,
ISO 8601 times, a quiet ``--status | head``, diverged jobs.

Most tests share one real daemon run (``record_run``) on jobs that fail before training (a bad job
config, a corrupt dataset), restarted once: seconds, not minutes.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from test_daemon import DAEMON, SCHEMA, Daemon, rows

OLD_ID = "20240101-000000-abcdef-old.jsonl"
OLD_CLAIMED, OLD_STARTED, OLD_ENDED, OLD_PROMOTED = 1704067200.0, 1704067201.5, 1704067300.25, 1704067300.5
BAD_OVERRIDES = {"hyperparams.lerning_rate": 0.001, "hyperparams.batch_size": "many"}
BAD_PROBLEMS = [
    "  - hyperparams.batch_size: expected a valid integer, unable to parse string as an integer; got 'many' (str)",
    "  - hyperparams.lerning_rate: unknown key; did you mean hyperparams.learning_rate?",
]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def write_old_daemon_files(queue: Path, hero_model: Path) -> None:
    """A done job and a hero pointer as a daemon before ISO 8601 times wrote them (epoch floats)."""
    folder = queue / "done" / OLD_ID
    folder.mkdir(parents=True)
    record = {
        "id": OLD_ID, "source": "inbox/old.jsonl", "priority": "normal", "dataset": str(folder / "old.jsonl"),
        "overrides": {}, "claimed_at": OLD_CLAIMED, "error": None, "outcome": "done", "promoted": True, "hero_version": 1,
        "attempts": [{"started_at": OLD_STARTED, "start_model": "builtin:tiny-qwen3", "ended_at": OLD_ENDED, "exit_code": 0, "error": None}],
        "metrics": {"candidate": {"n": 4, "format_rate": 0.5, "accuracy": None, "eval_loss": 2.0}, "reasons": []},
    }
    for name in ("job.json", "result.json"):
        (folder / name).write_text(json.dumps(record))
    hero = queue / "hero"
    hero.mkdir()
    (hero / "current.json").write_text(json.dumps({
        "version": 1, "path": str(hero_model), "metrics": {"n": 4, "format_rate": 0.5, "accuracy": None, "eval_loss": 2.0},
        "promoted_at": OLD_PROMOTED, "job_id": OLD_ID,
    }))


@dataclass
class RecordRun:
    daemon: Daemon
    failed: dict[str, Path]  # job name -> its folder under failed/
    cli: dict  # `--status` printed by the CLI while the restarted daemon was idle
    second_pid: int


@pytest.fixture(scope="module")
def record_run(tmp_path_factory, builtin_cache, tiny_model_dir) -> RecordRun:
    daemon = Daemon(tmp_path_factory.mktemp("record"), builtin_cache, **{"daemon.continue_from": "base"})
    write_old_daemon_files(daemon.queue, tiny_model_dir)
    daemon.drop("corrupt.jsonl", rows(10) + ["{not json"] * 10, folder="high")
    daemon.drop("set.jsonl", rows(20))
    daemon.drop("bad.job.json", [json.dumps({"dataset": "set.jsonl", "overrides": BAD_OVERRIDES})])
    try:
        daemon.start()
        daemon.wait(lambda: len(daemon.jobs("failed")) == 2, timeout=180)
        daemon.stop()
        daemon.start()  # the restart
        second = daemon.proc.pid
        daemon.wait(lambda: daemon.status().get("pid") == second and daemon.status().get("state") == "idle")
        shown = daemon.control("--status")
        assert shown.returncode == 0, shown.stderr
        failed = {json.loads((f / "job.json").read_text())["source"].split("/")[-1]: f for f in daemon.jobs("failed")}
        yield RecordRun(daemon, failed, json.loads(shown.stdout), second)
    finally:
        daemon.stop()


def test_earlier_jobs_and_failures_survive_a_restart(record_run):
    import jsonschema

    status = record_run.cli["status"]
    assert record_run.cli["running"] is True and status["pid"] == record_run.second_pid
    assert [(j["name"], j["outcome"]) for j in status["recent_jobs"]] == [
        ("bad.job.json", "failed"), ("corrupt.jsonl", "failed"), ("old.jsonl", "done"),  # newest first
    ]
    assert [j["name"] for j in status["recent_failures"]] == ["bad.job.json", "corrupt.jsonl"]
    assert (status["jobs_done"], status["jobs_failed"]) == (1, 2)
    bad = status["recent_jobs"][0]
    folder = record_run.failed["bad.job.json"]
    assert bad["folder"] == str(folder) and bad["error_file"] == str(folder / "error.txt") and bad["attempts"] == 1
    assert Path(status["history_file"]).is_file()
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    # what the dashboard reads: the status file itself, still holding them once the daemon stopped
    record_run.daemon.stop()
    stopped = record_run.daemon.status()
    assert stopped["state"] == "stopped" and stopped["recent_jobs"] == status["recent_jobs"]


def test_invalid_job_config_keeps_the_whole_reason(record_run):
    folder = record_run.failed["bad.job.json"]
    head = "the job's configuration is invalid: 2 configuration problems:"
    error_txt = (folder / "error.txt").read_text()
    assert error_txt.startswith(f"Job bad.job.json failed: {head}\n{BAD_PROBLEMS[0]}")
    record = json.loads((folder / "job.json").read_text())
    assert [a["exit_code"] for a in record["attempts"]] == [2]  # not retried
    shown = next(j["error"] for j in record_run.cli["status"]["recent_jobs"] if j["name"] == "bad.job.json")
    for text in (error_txt, record["attempts"][0]["error"], record["failure"], shown):
        assert head in text
        for problem in BAD_PROBLEMS:
            assert problem in text
    assert record["failure"] == shown and shown.endswith("\n(after 1 attempt)")


def test_failure_messages_name_the_failed_folder(record_run):
    folder = record_run.failed["corrupt.jsonl"]
    rejects = folder / "run" / "rejects.jsonl"
    assert rejects.is_file()
    processing = str(record_run.daemon.queue / "processing")
    message = (folder / "error.txt").read_text().split("\n\nLast lines of the log")[0]
    record = json.loads((folder / "job.json").read_text())
    for text in (message, record["attempts"][0]["error"], record.get("failure", "")):
        assert f"Rejected rows, with file, line and reason: {rejects}" in text
        assert processing not in text
    assert f"Log: {folder / 'job.log'}" in message
    assert record["dataset"] == str(folder / "corrupt.jsonl")
    shown = next(j["error"] for j in record_run.cli["status"]["recent_jobs"] if j["name"] == "corrupt.jsonl")
    assert shown == record["failure"]


def test_times_are_iso_8601_and_old_float_records_still_read(record_run):
    status = record_run.cli["status"]
    times = [status["started_at"], status["timestamp"], status["hero"]["promoted_at"]]
    for job in status["recent_jobs"]:
        times += [job["finished_at"], job["claimed_at"], job["started_at"]]
    for folder in record_run.failed.values():
        record = json.loads((folder / "job.json").read_text())
        times += [record["claimed_at"], *(t for a in record["attempts"] for t in (a["started_at"], a["ended_at"]))]
        times.append(record.get("finished_at"))
    for value in times:
        assert isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None, value
    assert status["hero"]["promoted_at"] == iso(OLD_PROMOTED)
    old = next(j for j in status["recent_jobs"] if j["id"] == OLD_ID)
    assert (old["claimed_at"], old["started_at"], old["finished_at"]) == (iso(OLD_CLAIMED), iso(OLD_STARTED), iso(OLD_ENDED))
    assert old["promoted"] is True and old["hero_version"] == 1


def test_status_into_head_exits_quietly(tmp_path):
    status_file = tmp_path / "daemon_status.json"
    jobs = [{"id": f"job-{i}", "name": "x" * 200, "outcome": "done", "finished_at": iso(OLD_ENDED)} for i in range(5000)]
    status_file.write_text(json.dumps({"state": "stopped", "recent_jobs": jobs}))  # ~1.5 MB: far past a pipe's buffer
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"daemon": {"status_file": str(status_file)}}))
    command = " ".join(shlex.quote(a) for a in [sys.executable, str(DAEMON), "--queue", str(tmp_path / "q"), "--config", str(config), "--status"])
    shell = subprocess.run(
        ["bash", "-c", f'{command} | head -1; echo "status=${{PIPESTATUS[0]}}"'],
        capture_output=True, text=True, timeout=120,
    )
    assert shell.stderr == ""
    assert shell.stdout == "{\nstatus=141\n"  # as a shell reports a tool that SIGPIPE ended


def test_diverged_job_fails_at_once_and_promotes_nothing(tmp_path, monkeypatch):
    from arena.daemon import HeroLoop
    from arena.inbox import StabilityTracker, claim, scan_inbox
    from trainer.config.loader import create_default_config

    # The job's child: a stand-in for the job runner whose training went NaN (exit code 4).
    child = tmp_path / "diverging-runner"
    child.write_text('#!/bin/sh\necho "error: the loss is nan at step 3; no final model was saved" >&2\nexit 4\n')
    child.chmod(0o755)
    config = create_default_config(overrides={"daemon.max_attempts": 3, "daemon.status_file": str(tmp_path / "status.json")})
    loop = HeroLoop(tmp_path / "q", config)
    loop.dirs.create()
    (loop.dirs.inbox / "set.jsonl").write_text('{"text": "x"}\n')
    record = claim(loop.dirs, scan_inbox(loop.dirs, StabilityTracker(0))[0])
    monkeypatch.setattr(sys, "executable", str(child))
    assert loop.run_job(record)

    folder = loop.dirs.failed / record.id
    saved = json.loads((folder / "job.json").read_text())
    assert [a["exit_code"] for a in saved["attempts"]] == [4]  # no retry
    reason = (
        "training diverged (the loss or weights became NaN/Inf); try a lower learning rate, warmup or gradient "
        "clipping: the loss is nan at step 3; no final model was saved"
    )
    assert saved["failure"] == f"{reason} (after 1 attempt)"
    assert (folder / "error.txt").read_text().startswith(f"Job set.jsonl failed: {reason} (after 1 attempt).")
    assert loop.hero.current() is None and not (loop.dirs.root / "hero" / "versions").exists()
    assert loop.status.status.recent_jobs[0].error == saved["failure"]


def test_history_keeps_everything_on_disk_and_the_newest_in_the_status(tmp_path):
    from arena.history import JobHistory
    from arena.inbox import QueueDirs
    from arena.status import RecentJob

    history = JobHistory(QueueDirs(tmp_path))
    for i in range(5):
        history.append(RecentJob(id=f"j{i}", name=f"{i}.jsonl", outcome="failed" if i % 2 else "done", finished_at=iso(i)))
    with history.path.open("a") as handle:
        handle.write('{"id": "torn", "na')  # a crash mid-append
    history.append(RecentJob(id="j5", name="5.jsonl", outcome="done", finished_at=iso(5)))
    summary = history.load(keep=2)
    assert [j.id for j in summary.recent] == ["j5", "j4"] and [j.id for j in summary.failures] == ["j3", "j1"]
    assert (summary.done, summary.failed) == (4, 2)
    assert len(history.entries()) == 6
