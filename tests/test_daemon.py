"""The daemon for real: a child-process daemon on a temporary queue, training the tiny model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DAEMON = REPO / "arena" / "hero_loop.py"
BUNDLED = REPO / "data" / "arithmetic_train.jsonl"
SCHEMA = REPO / "schemas" / "daemon_status.schema.json"

pytestmark = pytest.mark.slow


class Daemon:
    """A running ``arena/hero_loop.py`` and the folders it owns."""

    def __init__(self, tmp_path: Path, builtin_cache: Path, **overrides):
        self.root = tmp_path
        self.queue = tmp_path / "queue"
        self.status_file = tmp_path / "daemon_status.json"
        config = {
            "hyperparams": {"batch_size": 8, "learning_rate": 0.003, "max_steps": 8, "logging_steps": 2, "warmup_steps": 1},
            "data": {"holdout_size": 4, "cache_dir": str(tmp_path / "cache")},
            "model": {"builtin_cache": str(builtin_cache)},
            "inference": {"preview_every_steps": 0, "num_probes": 4, "max_new_tokens": 16},
            "output": {"save_steps": 4},
            "daemon": {"stable_seconds": 0.5, "rescan_seconds": 2, "max_attempts": 2, "status_file": str(self.status_file)},
        }
        for path, value in overrides.items():
            section, key = path.split(".")
            config[section][key] = value
        self.config = tmp_path / "daemon.json"
        self.config.write_text(json.dumps(config))
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        self.proc = self.command()
        return self.proc

    def command(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(DAEMON), "--queue", str(self.queue), "--config", str(self.config), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def control(self, *args: str) -> subprocess.CompletedProcess:
        proc = self.command(*args)
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def drop(self, name: str, lines: list[str], folder: str = "") -> Path:
        target = self.queue / "inbox" / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")  # written elsewhere, renamed when complete
        part.write_text("\n".join(lines) + "\n")
        part.rename(target)
        return target

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def jobs(self, state: str) -> list[Path]:
        folder = self.queue / state
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def wait(self, predicate, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; status: {json.dumps(self.status())[:2000]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.communicate(timeout=120)


@pytest.fixture
def daemon(tmp_path, builtin_cache):
    d = Daemon(tmp_path, builtin_cache)
    yield d
    d.stop()


def rows(n: int, start: int = 0) -> list[str]:
    return BUNDLED.read_text().splitlines()[start : start + n]


def test_datasets_train_in_priority_order_bad_one_fails_hero_promoted(daemon):
    import jsonschema

    daemon.drop("good.jsonl", rows(120), folder="low")
    daemon.drop("corrupt.jsonl", rows(10) + ["{not json"] * 10, folder="high")
    daemon.start()
    # The folder moves into done/ or failed/ first and the history and status record it after,
    # so wait for the status as well as the folders.
    daemon.wait(
        lambda: len(daemon.jobs("done")) == 1 and len(daemon.jobs("failed")) == 1
        and daemon.status().get("jobs_done") == 1 and daemon.status().get("jobs_failed") == 1
    )

    failed = daemon.jobs("failed")[0]
    assert failed.name.endswith("corrupt.jsonl")
    error = (failed / "error.txt").read_text()
    assert error.startswith("Job corrupt.jsonl failed: the dataset cannot be trained on: 10 of 20 rows (50.0%) were rejected")
    assert "(after 1 attempt)" in error  # bad data is not retried
    record = json.loads((failed / "job.json").read_text())
    assert record["outcome"] == "failed" and record["attempts"][0]["exit_code"] == 3

    done = daemon.jobs("done")[0]
    result = json.loads((done / "result.json").read_text())
    assert result["outcome"] == "done" and result["promoted"] is True and result["hero_version"] == 1
    assert result["metrics"]["candidate"]["eval_loss"] < result["metrics"]["hero_before"]["eval_loss"]
    report = json.loads((done / "run" / "data_report.json").read_text())
    assert report["rows_total"] == 120  # the whole file, nothing taken early or lost

    pointer = json.loads((daemon.queue / "hero" / "current.json").read_text())
    assert pointer["version"] == 1 and Path(pointer["path"], "model.safetensors").is_file()
    assert not daemon.jobs("processing") and not any(p.is_file() for p in (daemon.queue / "inbox").rglob("*"))

    # the failed job ran first (high before low), and the daemon kept going after it
    status = daemon.status()
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert [j["name"] for j in status["recent_jobs"]] == ["good.jsonl", "corrupt.jsonl"]
    assert status["hero"]["version"] == 1 and status["jobs_done"] == 1 and status["jobs_failed"] == 1
    finished = status["recent_jobs"][0]
    assert finished["folder"] == str(done) and finished["promoted"] is True and finished["hero_version"] == 1
    history = [json.loads(line) for line in (daemon.queue / "job_history.jsonl").read_text().splitlines()]
    assert [(j["name"], j["outcome"]) for j in history] == [("corrupt.jsonl", "failed"), ("good.jsonl", "done")]

    # a second dataset continues from the hero
    daemon.drop("more.jsonl", rows(120, start=200))
    daemon.wait(lambda: len(daemon.jobs("done")) == 2)
    second = json.loads((daemon.jobs("done")[-1] / "job.json").read_text())
    assert second["attempts"][0]["start_model"] == pointer["path"]


def test_second_daemon_refuses_then_pause_resume_and_stop(daemon):
    daemon.start()
    daemon.wait(lambda: daemon.status().get("state") == "idle")
    other = daemon.command()
    out, err = other.communicate(timeout=60)
    assert other.returncode == 2
    assert f"another daemon (pid {daemon.proc.pid}) is already running on {daemon.queue}" in err

    assert daemon.control("--pause").returncode == 0
    daemon.wait(lambda: daemon.status().get("state") == "paused")
    daemon.drop("waiting.jsonl", rows(60))
    time.sleep(3)
    assert (daemon.queue / "inbox" / "waiting.jsonl").exists()  # not taken while paused
    assert [q["name"] for q in daemon.status()["queue"]] == ["waiting.jsonl"]

    assert daemon.control("--resume").returncode == 0
    daemon.wait(lambda: len(daemon.jobs("done")) == 1)

    status = daemon.control("--status")
    assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
    assert daemon.control("--stop").returncode == 0
    assert daemon.proc.wait(timeout=60) == 0
    assert daemon.status()["state"] == "stopped"
    assert daemon.control("--status").returncode == 1


def test_sigkill_mid_job_then_restart_finishes_it(tmp_path, builtin_cache):
    # max_attempts 1: the attempt the kill interrupted must not count as a failed one
    daemon = Daemon(tmp_path, builtin_cache, **{"hyperparams.max_steps": 60, "daemon.max_attempts": 1})
    try:
        daemon.drop("long.jsonl", rows(200))
        daemon.start()

        def checkpointed() -> bool:
            jobs = daemon.jobs("processing")
            return bool(jobs) and (jobs[0] / "run" / "checkpoint-8" / "trainer_state.json").is_file()

        daemon.wait(checkpointed)
        job = daemon.jobs("processing")[0]
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(timeout=30)
        # Its runner gets SIGTERM from the kernel, checkpoints and exits; nothing is lost.
        daemon.start()
        daemon.wait(lambda: len(daemon.jobs("done")) == 1, timeout=300)
        done = daemon.jobs("done")[0]
        assert done.name == job.name and not daemon.jobs("failed") and not daemon.jobs("processing")
        record = json.loads((done / "job.json").read_text())
        assert len(record["attempts"]) == 2 and record["outcome"] == "done"
        assert record["attempts"][0]["start_model"] == record["attempts"][1]["start_model"]
        log = (done / "job.log").read_text()
        assert "resuming from" in log
        state = json.loads(sorted((done / "run").glob("checkpoint-*"))[-1].joinpath("trainer_state.json").read_text())
        assert state["global_step"] == 60
    finally:
        daemon.stop()


def test_job_that_keeps_crashing_is_quarantined(tmp_path, builtin_cache, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken-model"  # an embedding smaller than the tokenizer: IndexError in training
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(64)
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(broken)
    daemon = Daemon(tmp_path, builtin_cache, **{"daemon.continue_from": "base", "model.path": str(broken)})
    try:
        daemon.drop("set.jsonl", rows(40))
        daemon.start()
        daemon.wait(lambda: len(daemon.jobs("failed")) == 1)
        failed = daemon.jobs("failed")[0]
        record = json.loads((failed / "job.json").read_text())
        assert [a["exit_code"] for a in record["attempts"]] == [1, 1]
        error = (failed / "error.txt").read_text()
        assert error.startswith("Job set.jsonl failed: the training process crashed (exit code 1): IndexError")
        assert "(after 2 attempts)" in error
        assert daemon.proc.poll() is None  # the daemon is still up
    finally:
        daemon.stop()


def test_stop_mid_job_checkpoints_and_the_next_start_continues(tmp_path, builtin_cache):
    # max_attempts 1: the attempt --stop interrupted must not count as a failed one
    daemon = Daemon(tmp_path, builtin_cache, **{"hyperparams.max_steps": 60, "daemon.max_attempts": 1})
    try:
        daemon.drop("long.jsonl", rows(200))
        daemon.start()

        def training() -> bool:
            job = daemon.status().get("current_job") or {}
            return (job.get("current_step") or 0) >= 6

        daemon.wait(training)
        assert daemon.status()["state"] == "training"
        assert daemon.control("--stop").returncode == 0
        assert daemon.proc.wait(timeout=60) == 0
        job = daemon.jobs("processing")[0]
        record = json.loads((job / "job.json").read_text())
        assert record["attempts"][0]["exit_code"] == 128 + signal.SIGTERM and record["attempts"][0]["error"] is None
        assert list((job / "run").glob("checkpoint-*/trainer_state.json"))
        assert json.loads((job / "training_status.json").read_text())["phase"] == "stopped"

        daemon.start()
        daemon.wait(lambda: len(daemon.jobs("done")) == 1, timeout=300)
        record = json.loads((daemon.jobs("done")[0] / "job.json").read_text())
        assert [a["exit_code"] for a in record["attempts"]] == [128 + signal.SIGTERM, 0]
        assert "resuming from" in (daemon.jobs("done")[0] / "job.log").read_text()
    finally:
        daemon.stop()
