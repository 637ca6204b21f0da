"""The daemon's parts without training: inbox protocol, claims, recovery, promotion rule, lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arena import control
from arena.daemon import describe_exit, job_error_message
from arena.hero import EvalMetrics, HeroStore, decide
from arena.inbox import QueueDirs, StabilityTracker, claim, recover_processing, scan_inbox
from arena.jobs import load_record
from trainer.config.schema import DaemonSection

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def dirs(tmp_path) -> QueueDirs:
    d = QueueDirs(tmp_path / "q")
    d.create()
    return d


def drop(path: Path, text: str = '{"text": "x"}\n', age: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if age:
        past = time.time() - age
        os.utime(path, (past, past))
    return path


def settled(dirs: QueueDirs, tracker: StabilityTracker | None = None, now: float | None = None):
    tracker = tracker or StabilityTracker(0)
    return scan_inbox(dirs, tracker, now)


def test_ignored_files_are_never_jobs(dirs):
    for name in (".hidden.jsonl", "a.jsonl.part", "b.jsonl.tmp", "notes.txt", "x.csv"):
        drop(dirs.inbox / name)
    drop(dirs.inbox / "ok.parquet")
    assert [c.path.name for c in settled(dirs)] == ["ok.parquet"]


def test_file_is_taken_only_once_size_and_mtime_are_stable(dirs):
    tracker = StabilityTracker(stable_seconds=2)
    path = drop(dirs.inbox / "growing.jsonl", "1\n")
    assert scan_inbox(dirs, tracker, now=100.0) == []  # first sight
    assert scan_inbox(dirs, tracker, now=101.5) == []  # not stable for 2 s yet
    with path.open("a") as handle:  # the producer is still writing
        handle.write("2\n")
    assert scan_inbox(dirs, tracker, now=102.5) == []  # changed: the clock restarts
    assert scan_inbox(dirs, tracker, now=104.0) == []
    assert [c.path.name for c in scan_inbox(dirs, tracker, now=104.6)] == ["growing.jsonl"]


def test_priority_folders_and_job_file_priority(dirs):
    drop(dirs.inbox / "low" / "a.jsonl", age=30)
    drop(dirs.inbox / "plain.jsonl", age=20)
    drop(dirs.inbox / "high" / "h.jsonl", age=10)
    drop(dirs.inbox / "low" / "urgent.job.json", json.dumps({"dataset": "/data/x.jsonl", "priority": "high"}), age=5)
    order = [(c.path.name, c.priority) for c in settled(dirs)]
    assert order == [("h.jsonl", "high"), ("urgent.job.json", "high"), ("plain.jsonl", "normal"), ("a.jsonl", "low")]


def test_claim_moves_file_and_writes_record(dirs):
    drop(dirs.inbox / "normal" / "d.jsonl")
    record = claim(dirs, settled(dirs)[0])
    folder = dirs.processing / record.id
    assert not (dirs.inbox / "normal" / "d.jsonl").exists()
    assert (folder / "d.jsonl").is_file()
    assert record.dataset == str(folder / "d.jsonl") and record.source == "inbox/normal/d.jsonl"
    assert load_record(folder) == record


def test_claim_of_a_vanished_file_claims_nothing(dirs):
    drop(dirs.inbox / "gone.jsonl")
    candidate = settled(dirs)[0]
    candidate.path.unlink()
    assert claim(dirs, candidate) is None
    assert list(dirs.processing.iterdir()) == []


def test_job_file_takes_its_inbox_dataset_along(dirs):
    drop(dirs.inbox / "set.jsonl")
    drop(dirs.inbox / "run.job.json", json.dumps({"dataset": "set.jsonl", "overrides": {"hyperparams.max_steps": 3}}))
    candidates = settled(dirs)
    assert [c.path.name for c in candidates] == ["run.job.json"]  # the dataset is not a job of its own
    record = claim(dirs, candidates[0])
    folder = dirs.processing / record.id
    assert record.dataset == str(folder / "set.jsonl") and (folder / "set.jsonl").is_file()
    assert record.overrides == {"hyperparams.max_steps": 3}


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("{oops", "job file bad.job.json is not valid JSON"),
        ('{"overrides": {}}', "job file bad.job.json must be an object with a 'dataset' path"),
        ('{"dataset": "x", "prio": 1}', "job file bad.job.json: unknown keys prio (known: dataset, overrides, priority)"),
        ('{"dataset": "x", "priority": "urgent"}', "job file bad.job.json: priority must be one of high, normal, low"),
    ],
)
def test_bad_job_file_becomes_a_failing_job_with_the_reason(dirs, spec, error):
    drop(dirs.inbox / "bad.job.json", spec)
    record = claim(dirs, settled(dirs)[0])
    assert record.error.startswith(error)


def test_good_job_file_has_no_error(dirs):
    drop(dirs.inbox / "good.job.json", '{"dataset": "/abs/x.jsonl", "priority": "low"}')
    record = claim(dirs, settled(dirs)[0])
    assert record.error is None and record.dataset == "/abs/x.jsonl" and record.priority == "low"


def test_recovery_rebuilds_missing_records_and_drops_empty_claims(dirs):
    drop(dirs.inbox / "a.jsonl")
    kept = claim(dirs, settled(dirs)[0])
    orphan = dirs.processing / "20260101-000000-abcdef-b.jsonl"
    drop(orphan / "b.jsonl")  # died between the rename and the record write
    (dirs.processing / "20260101-000000-empty").mkdir()  # died before the rename
    records = recover_processing(dirs)
    assert {r.id for r in records} == {kept.id, orphan.name}
    rebuilt = load_record(orphan)
    assert rebuilt.dataset == str(orphan / "b.jsonl")
    assert not (dirs.processing / "20260101-000000-empty").exists()


TOL = DaemonSection(format_tolerance=0.1, accuracy_tolerance=0.1, loss_tolerance=0.05)


@pytest.mark.parametrize(
    ("candidate", "promote", "reasons"),
    [
        (EvalMetrics(n=10, format_rate=0.8, accuracy=0.5, eval_loss=1.0), True, []),
        (EvalMetrics(n=10, format_rate=0.75, accuracy=0.45, eval_loss=1.04), True, []),  # within tolerance
        (EvalMetrics(n=10, format_rate=0.6, accuracy=0.5, eval_loss=1.0), False, ["format compliance 0.60 < hero 0.80 - 0.1"]),
        (EvalMetrics(n=10, format_rate=0.8, accuracy=0.3, eval_loss=1.0), False, ["accuracy 0.30 < hero 0.50 - 0.1"]),
        (EvalMetrics(n=10, format_rate=0.8, accuracy=0.5, eval_loss=1.2), False, ["eval loss 1.2000 > hero 1.0000 x (1 + 0.05)"]),
        (EvalMetrics(n=10, format_rate=0.8, accuracy=None, eval_loss=1.0), True, []),  # no answers to compare
    ],
)
def test_promotion_rule(candidate, promote, reasons):
    hero = EvalMetrics(n=10, format_rate=0.8, accuracy=0.5, eval_loss=1.0)
    assert decide(candidate, hero, TOL) == (promote, reasons)


def test_hero_store_versions_pointer_and_rejects(tmp_path):
    store = HeroStore(tmp_path / "hero", keep_rejected=2)
    assert store.current() is None
    metrics = EvalMetrics(n=1, format_rate=1.0)
    for job in ("j1", "j2"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "model.safetensors").write_text(job)
    first = store.promote(tmp_path / "j1", metrics, "j1")
    second = store.promote(tmp_path / "j2", metrics, "j2")
    assert (first.version, second.version) == (1, 2)
    assert store.current() == second
    assert (Path(second.path) / "model.safetensors").read_text() == "j2"
    for job in ("r1", "r2", "r3"):
        (tmp_path / job).mkdir()
        store.reject(tmp_path / job, metrics, job, ["worse"])
        time.sleep(0.01)
    assert sorted(p.name for p in (tmp_path / "hero" / "rejected").iterdir()) == ["r2", "r3"]
    assert [h["promoted"] for h in store.recent()] == [True, True, False, False, False]


def test_exit_codes_in_plain_words(tmp_path):
    assert describe_exit(3) == "the dataset cannot be trained on"
    assert describe_exit(2) == "the job's configuration is invalid"
    assert describe_exit(-9).startswith("the training process was killed (SIGKILL")
    assert describe_exit(143) == "the training process was stopped by signal SIGTERM"
    assert describe_exit(1) == "the training process crashed (exit code 1)"
    log = tmp_path / "job.log"
    log.write_text("step 1\nerror: 5 of 15 rows were rejected\nmore\n")
    assert job_error_message(log) == "5 of 15 rows were rejected"
    log.write_text("Traceback...\nIndexError: index out of range in self\n")
    assert job_error_message(log) == "IndexError: index out of range in self"


def test_second_holder_of_the_queue_lock_is_refused(tmp_path):
    queue = tmp_path / "q"
    held = control.acquire_queue_lock(queue)
    try:
        assert control.is_running(queue)
        code = (
            "import sys; sys.path.insert(0, %r)\n"
            "from arena import control\n"
            "try:\n    control.acquire_queue_lock(__import__('pathlib').Path(%r))\n"
            "except control.QueueBusy as e:\n    print(e); sys.exit(7)\n"
        ) % (str(REPO), str(queue))
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert other.returncode == 7
        assert other.stdout.strip() == f"another daemon (pid {os.getpid()}) is already running on {queue}; stop it with --stop first"
    finally:
        held.close()
    assert not control.is_running(queue)


def test_pause_flag(tmp_path):
    control.set_paused(tmp_path, True)
    assert control.is_paused(tmp_path)
    control.set_paused(tmp_path, False)
    assert not control.is_paused(tmp_path)


def test_dataset_arriving_before_its_job_file_waits_for_it(dirs):
    tracker = StabilityTracker(stable_seconds=2)
    drop(dirs.inbox / "data.jsonl")
    assert scan_inbox(dirs, tracker, now=100.0) == []
    drop(dirs.inbox / "run.job.json", json.dumps({"dataset": "data.jsonl"}))
    assert scan_inbox(dirs, tracker, now=100.5) == []
    # the dataset is stable, the job file not yet: the dataset must not run on its own
    assert scan_inbox(dirs, tracker, now=102.0) == []
    assert [c.path.name for c in scan_inbox(dirs, tracker, now=102.6)] == ["run.job.json"]


def test_job_file_waits_while_its_dataset_is_still_a_part_file(dirs):
    drop(dirs.inbox / "run.job.json", json.dumps({"dataset": "data.jsonl"}))
    drop(dirs.inbox / "data.jsonl.part")
    assert settled(dirs) == []
    (dirs.inbox / "data.jsonl.part").rename(dirs.inbox / "data.jsonl")
    assert [c.path.name for c in settled(dirs)] == ["run.job.json"]


@pytest.mark.parametrize("dataset", [".", "high", ""])
def test_job_file_cannot_take_the_inbox_or_a_folder_of_it(dirs, dataset):
    drop(dirs.inbox / "normal" / "other.jsonl")
    drop(dirs.inbox / "greedy.job.json", json.dumps({"dataset": dataset}))
    candidates = settled(dirs)
    greedy = next(c for c in candidates if c.path.name == "greedy.job.json")
    record = claim(dirs, greedy)
    assert record.error is not None and record.dataset is None
    assert (dirs.inbox / "normal" / "other.jsonl").is_file()  # untouched, still queued


def test_record_of_a_claim_that_never_happened_is_dropped(dirs):
    drop(dirs.inbox / "a.jsonl")
    record = claim(dirs, settled(dirs)[0])
    folder = dirs.processing / record.id
    (folder / "a.jsonl").rename(dirs.inbox / "a.jsonl")  # as if the daemon died before the rename
    assert recover_processing(dirs) == []
    assert not folder.exists() and (dirs.inbox / "a.jsonl").is_file()


def test_claim_interrupted_between_job_file_and_dataset_is_completed(dirs):
    drop(dirs.inbox / "set.jsonl")
    drop(dirs.inbox / "run.job.json", json.dumps({"dataset": "set.jsonl"}))
    record = claim(dirs, settled(dirs)[0])
    folder = dirs.processing / record.id
    (folder / "set.jsonl").rename(dirs.inbox / "set.jsonl")  # died before the second rename
    assert [r.id for r in recover_processing(dirs)] == [record.id]
    assert (folder / "set.jsonl").is_file() and not (dirs.inbox / "set.jsonl").exists()


def test_exit_code_above_128_that_is_no_signal():
    assert describe_exit(255) == "the training process crashed (exit code 255)"


def test_diverged_exit_code_in_plain_words():
    from trainer.core.runner import EXIT_DIVERGED

    assert EXIT_DIVERGED == 4
    assert describe_exit(4) == (
        "training diverged (the loss or weights became NaN/Inf); try a lower learning rate, warmup or gradient clipping"
    )


def test_job_error_message_is_whole_and_from_the_last_attempt(tmp_path):
    log = tmp_path / "job.log"
    log.write_text(
        "\n=== attempt 1 at 2026-01-01T00:00:00+00:00: python -m arena.job_runner\n"
        "error: an old problem\n"
        "\n=== attempt 2 at 2026-01-01T00:01:00+00:00: python -m arena.job_runner\n"
        "error: 2 configuration problems:\n"
        "  - hyperparams.batch_size: expected a valid integer\n"
        "  - hyperparams.lerning_rate: unknown key; did you mean hyperparams.learning_rate?\n"
        "output flushed at exit\n"
    )
    assert job_error_message(log) == (
        "2 configuration problems:\n"
        "  - hyperparams.batch_size: expected a valid integer\n"
        "  - hyperparams.lerning_rate: unknown key; did you mean hyperparams.learning_rate?"
    )
    log.write_text("\n=== attempt 1 at t: x\nerror: an old problem\n\n=== attempt 2 at t: x\nTraceback...\nIndexError: boom\n")
    assert job_error_message(log) == "IndexError: boom"
    assert job_error_message(tmp_path / "missing.log") is None


def test_diverged_candidate_is_never_promoted():
    hero = EvalMetrics(n=4, format_rate=0.0, accuracy=None, eval_loss=2.0)
    nan = EvalMetrics(n=4, format_rate=0.0, accuracy=None, eval_loss=float("nan"))
    assert decide(nan, hero, TOL) == (False, ["eval loss is nan (training diverged)"])


def test_versions_never_collide_and_a_damaged_pointer_falls_back(tmp_path):
    store = HeroStore(tmp_path / "hero", keep_rejected=0)
    (tmp_path / "hero" / "versions" / "v0003").mkdir(parents=True)  # moved, pointer never written
    (tmp_path / "cand").mkdir()
    assert store.promote(tmp_path / "cand", EvalMetrics(), "j").version == 4
    store.pointer_file.write_text("{torn")
    assert store.current().version == 4
    (tmp_path / "hero" / "history.jsonl").write_text('{"job_id": "a", "promoted": true}\n{"job_i')
    assert store.recent() == [{"job_id": "a", "promoted": True}]
