"""The hero loop: watch the inbox, run one job at a time in a child process, keep the best model.

Jobs are at-least-once: a job stays in ``processing/`` until it is done or failed, so a daemon
that stops or dies resumes it on its next start from the job's newest checkpoint. Every finished
job goes into the queue's job history (``arena/history.py``), which the status shows across restarts.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from arena import control
from arena.hero import EvalMetrics, HeroStore, decide
from arena.history import JobHistory, finished_job
from arena.jobs import EVALUATION_FILE, ERROR_FILE, EXIT_CODE_FILE, LOG_FILE, RESULT_FILE, STATUS_FILE, Attempt, JobRecord, save_record
from arena.job_runner import JOB_LOCK
from trainer.core.runner import EXIT_CONFIG, EXIT_DATA, EXIT_DIVERGED
from arena.inbox import (
    QueueDirs,
    StabilityTracker,
    claim,
    inbox_files,
    is_ignored,
    is_job_input,
    recover_processing,
    scan_inbox,
)
from arena.jobs import PRIORITIES
from arena.status import CurrentJob, DaemonStatusWriter, HeroInfo, QueuedFile
from core.training_status import now_iso, read_status, write_json_atomic
from trainer.config.schema import TrainerConfig

log = logging.getLogger("arena")

REPO_ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.5  # how often a running child and unstable files are looked at
ATTEMPT_MARK = "=== attempt "  # starts the line the daemon writes into job.log before each attempt
# Exit codes that fail the job at once: the same input fails the same way again.
FINAL_EXITS = (EXIT_CONFIG, EXIT_DATA, EXIT_DIVERGED)


def describe_exit(code: int) -> str:
    """A child's exit code in plain words."""
    if code == EXIT_DATA:
        return "the dataset cannot be trained on"
    if code == EXIT_CONFIG:
        return "the job's configuration is invalid"
    if code == EXIT_DIVERGED:
        return (
            "training diverged (the loss or weights became NaN/Inf); "
            "try a lower learning rate, warmup or gradient clipping"
        )
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum == signal.SIGKILL:
        return "the training process was killed (SIGKILL; often the system running out of memory)"
    try:
        name = signal.Signals(signum).name if signum else None
    except ValueError:  # e.g. exit(255): above 128 but not a signal
        name = None
    if name:
        return f"the training process was stopped by signal {name}"
    return f"the training process crashed (exit code {code})"


def job_error_message(log_file: Path) -> str | None:
    """What the last attempt in ``job.log`` said went wrong: its own 'error: ...' message whole
    (with its indented continuation lines, such as every problem of a bad config), else the
    last line of a traceback."""
    try:
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith(ATTEMPT_MARK)]
    lines = [line for line in lines[starts[-1] + 1 if starts else 0 :] if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    if not errors:
        return lines[-1] if lines else None
    message = [lines[errors[-1]].removeprefix("error: ")]
    for line in lines[errors[-1] + 1 :]:
        if not line[0].isspace():
            break  # the message has ended; later output is something else
        message.append(line)
    return "\n".join(message)


def with_attempts(reason: str, attempts: int) -> str:
    note = f"(after {attempts} attempt{'s' if attempts != 1 else ''})"
    return f"{reason}\n{note}" if "\n" in reason else f"{reason} {note}"


def now_text() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class HeroLoop:
    """The daemon. ``run()`` blocks until SIGTERM / SIGINT (or ``stop_event``)."""

    def __init__(self, queue: Path, config: TrainerConfig):
        self.dirs = QueueDirs(queue)
        # Pin relative paths to where they mean something now, before jobs read the config
        # from another folder.
        config = config.model_copy(deep=True)
        config.system.base_dir = str(config.resolve_path("."))
        self.config = config
        self.rules = config.daemon
        self.hero = HeroStore(queue / "hero", self.rules.keep_rejected)
        self.tracker = StabilityTracker(self.rules.stable_seconds)
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.child: subprocess.Popen | None = None
        self.history = JobHistory(self.dirs)
        self.status = DaemonStatusWriter(
            config.resolve_path(self.rules.status_file),
            queue_dir=str(queue),
            heartbeat_interval_s=self.rules.rescan_seconds,
            history_file=str(self.history.path),
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self) -> int:
        lock = control.acquire_queue_lock(self.dirs.root)  # raises QueueBusy
        try:
            self.dirs.create()
            self._load_history()
            # Jobs get the daemon's merged config (file and --set alike) as their base.
            write_json_atomic(self.base_config, self.config.model_dump(mode="json"))
            self._install_signals()
            observer = self._watch_inbox()
            try:
                self._loop()
            finally:
                observer.stop()
                observer.join(timeout=5)
            self.status.update(state="stopped", current_job=None)
            return 0
        finally:
            lock.close()

    def _load_history(self) -> None:
        summary = self.history.load(keep=self.status.RECENT)
        self.status.update(
            recent_jobs=summary.recent, recent_failures=summary.failures, jobs_done=summary.done, jobs_failed=summary.failed
        )

    @property
    def base_config(self) -> Path:
        return self.dirs.control / "base_config.json"

    def _install_signals(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            # Event.set takes a lock the interrupted main thread may hold (inside wait/clear):
            # setting it from a helper thread cannot deadlock.
            threading.Thread(target=self._request_stop, args=(signum,), daemon=True).start()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)

    def _request_stop(self, signum: int) -> None:
        log.info("signal %s: finishing (the running job is checkpointed)", signum)
        self.stop_event.set()
        self.wake.set()

    def _watch_inbox(self):
        # Events make the daemon react at once; the periodic rescan catches what they miss
        # (files dropped while it was down, events lost under load).
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        loop = self

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                loop.wake.set()

        observer = Observer()
        observer.schedule(Wake(), str(self.dirs.inbox), recursive=True)
        observer.start()
        return observer

    def _loop(self) -> None:
        pending = recover_processing(self.dirs)
        if pending:
            log.info("resuming %d job(s) left in processing/", len(pending))
        while not self.stop_event.is_set():
            paused = control.is_paused(self.dirs.root)
            candidates = scan_inbox(self.dirs, self.tracker)
            self._publish_idle(paused, candidates, pending)
            if not paused and pending:
                record = pending.pop(0)
                if not self.run_job_safely(record):
                    pending.append(record)  # still held by an old runner: later
                continue
            if not paused and candidates:
                record = claim(self.dirs, candidates[0])
                if record is not None:
                    self.tracker.forget(candidates[0].path)
                    self.run_job_safely(record)
                continue
            # Files not yet stable need another look soon; otherwise events or the rescan wake us.
            arriving = any(not is_ignored(p) and is_job_input(p) for p in inbox_files(self.dirs))
            self.wake.wait(POLL_SECONDS if arriving or paused or pending else self.rules.rescan_seconds)
            self.wake.clear()

    def _publish_idle(self, paused: bool, candidates: list, pending: list[JobRecord]) -> None:
        queue = [QueuedFile(name=c.path.name, priority=c.priority, size=c.size, complete=True) for c in candidates]
        current = self.hero.current()
        hero = (
            HeroInfo(version=current.version, path=current.path, metrics=current.metrics.model_dump(), promoted_at=current.promoted_at)
            if current
            else HeroInfo(version=0, path=self.config.model.path)
        )
        self.status.update(
            state="paused" if paused else "idle",
            queue=queue,
            recovered=[r.id for r in pending],
            hero=hero,
            hero_history=self.hero.recent(),
            current_job=None,
        )

    # --- one job ------------------------------------------------------------------------------

    def run_job_safely(self, record: JobRecord) -> bool:
        """Run a job; whatever goes wrong in the daemon's own handling of it (a full disk, a
        broken file) fails that job, not the daemon. False: the job must wait."""
        try:
            return self.run_job(record)
        except Exception as exc:  # noqa: BLE001 (the daemon outlives any one job)
            log.exception("job %s: the daemon could not handle it", record.id)
            try:
                self._finish_failed(record, self.dirs.processing / record.id, f"the daemon could not run it: {exc!r}")
            except Exception:  # noqa: BLE001
                log.exception("job %s: could not even move it to failed/", record.id)
            return True

    def run_job(self, record: JobRecord) -> bool:
        folder = self.dirs.processing / record.id
        if record.outcome == "done":  # decided before a crash: finish the bookkeeping only
            self._complete_done(record, folder)
            return True
        if record.error or record.outcome == "failed":
            self._finish_failed(record, folder, record.failure or record.error or "failed before the daemon stopped")
            return True
        if not control.wait_for_lock(folder / JOB_LOCK, timeout=30, stop=self.stop_event):
            log.warning("job %s is still held by an old runner; trying again later", record.id)
            return False
        # Attempts a stop interrupted (SIGTERM, the daemon killed) are not failures: only crashes
        # count towards the quarantine.
        while sum(a.error is not None for a in record.attempts) < self.rules.max_attempts:
            code = self._attempt(record, folder)
            if self.stop_event.is_set() and code not in (0, *FINAL_EXITS):
                log.info("job %s checkpointed; it resumes on the next start", record.id)
                return True
            if code == 0:
                self._finish_done(record, folder)
                return True
            reason = describe_exit(code)
            detail = job_error_message(folder / LOG_FILE)
            record.attempts[-1].error = f"{reason}: {detail}" if detail else reason
            save_record(folder, record)
            if code in FINAL_EXITS:  # no retry: nothing is promoted from such a job either
                break
        last_error = next(a.error for a in reversed(record.attempts) if a.error)
        self._finish_failed(record, folder, with_attempts(last_error, len(record.attempts)))
        return True

    def _start_model(self, record: JobRecord) -> str:
        """What this job trains from; fixed at its first attempt, so a resume continues the
        same training even if the hero changed meanwhile."""
        for attempt in record.attempts:
            if attempt.start_model:
                return attempt.start_model
        current = self.hero.current()
        if self.rules.continue_from == "hero" and current is not None:
            return current.path
        return self.config.model.path

    def _attempt(self, record: JobRecord, folder: Path) -> int:
        start_model = self._start_model(record)
        attempt = Attempt(started_at=now_iso(), start_model=start_model)
        record.attempts.append(attempt)
        save_record(folder, record)
        processes = self.config.daemon.processes
        # several processes: torchrun's agent starts the ranks (each a job runner; rank 0 leads)
        # (a long shutdown timeout: on SIGTERM the agent waits for the ranks' checkpoint, 30 s by default)
        launcher = [
            "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "--shutdown-timeout", "600",
        ] if processes > 1 else []
        (folder / EXIT_CODE_FILE).unlink(missing_ok=True)
        command = [
            sys.executable, *launcher, "-m", "arena.job_runner", str(folder),
            "--init-model", start_model, "--config", str(self.base_config),
            "--parent-pid", str(os.getpid()),
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        with (folder / LOG_FILE).open("a", encoding="utf-8") as log_file:
            log_file.write(f"\n{ATTEMPT_MARK}{len(record.attempts)} at {now_text()}: {' '.join(command)}\n")
            log_file.flush()
            self.child = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env, start_new_session=True
            )
            code = self._watch_child(record, folder, attempt)
            if processes > 1:  # torchrun's agent exits 1 for any rank's failure; rank 0 says which
                written = folder / EXIT_CODE_FILE
                code = int(written.read_text()) if written.is_file() else code
        self.child = None
        attempt.ended_at, attempt.exit_code = now_iso(), code
        save_record(folder, record)
        return code

    def _watch_child(self, record: JobRecord, folder: Path, attempt: Attempt) -> int:
        assert self.child is not None
        signalled = False
        current = CurrentJob(
            id=record.id,
            name=record.name,
            attempt=len(record.attempts),
            started_at=now_iso(),
            status_file=str(folder / STATUS_FILE),
            log_file=str(folder / LOG_FILE),
        )
        while (code := self.child.poll()) is None:
            if self.stop_event.is_set() and not signalled:
                self.child.send_signal(signal.SIGTERM)  # the engine saves a checkpoint and exits
                signalled = True
            self._publish_running(current, stopping=signalled)
            self.wake.wait(POLL_SECONDS)
            self.wake.clear()
        return code

    def _publish_running(self, current: CurrentJob, stopping: bool) -> None:
        try:
            job = read_status(current.status_file)
        except ValueError:
            job = None
        if job is not None:
            current.phase, current.current_step, current.total_steps = job.phase, job.current_step, job.total_steps
        state = "stopping" if stopping else "evaluating" if current.phase == "evaluating" else "training"
        queue = []
        for path in inbox_files(self.dirs):
            if is_ignored(path) or not is_job_input(path):
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            queue.append(QueuedFile(name=os.fsdecode(path.name), priority=self.dirs.folder_priority(path), size=size, complete=False))
        queue.sort(key=lambda q: PRIORITIES.index(q.priority))
        self.status.update(state=state, current_job=current, queue=queue)

    # --- endings ------------------------------------------------------------------------------

    def _finish_done(self, record: JobRecord, folder: Path) -> None:
        import json

        try:
            evaluation = json.loads((folder / EVALUATION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self._finish_failed(record, folder, f"the job ended without a usable evaluation ({exc})")
            return
        candidate = EvalMetrics(**evaluation["candidate"])
        hero = EvalMetrics(**evaluation["hero"])
        promote, reasons = decide(candidate, hero, self.rules)
        # The decision is recorded before the model moves, so a crash in between is finished
        # on the next start instead of training and promoting the job again.
        record.promoted, record.outcome = promote, "done"
        record.metrics = {
            "candidate": candidate.model_dump(), "hero_before": hero.model_dump(), "reasons": reasons,
            "model_path": evaluation["model_path"], **evaluation["final_metrics"],
        }
        save_record(folder, record)
        self._complete_done(record, folder)

    def _complete_done(self, record: JobRecord, folder: Path) -> None:
        model = Path(record.metrics.get("model_path", folder / "run" / "model"))
        candidate = EvalMetrics(**record.metrics["candidate"])
        if model.exists():
            if record.promoted:
                pointer = self.hero.promote(model, candidate, record.id)
                record.hero_version = pointer.version
                log.info("job %s: promoted to hero v%d", record.id, pointer.version)
            else:
                self.hero.reject(model, candidate, record.id, record.metrics["reasons"])
                log.info("job %s: candidate not promoted: %s", record.id, "; ".join(record.metrics["reasons"]))
            save_record(folder, record)
        final = self.dirs.done / record.id
        record.relocate(folder, final)
        record.finished_at = record.finished_at or now_iso()
        save_record(folder, record)
        write_json_atomic(folder / RESULT_FILE, record.model_dump(mode="json"))
        os.replace(folder, final)
        self._record_finished(record, final)

    def _finish_failed(self, record: JobRecord, folder: Path, reason: str) -> None:
        # Everything written here names the paths the files have once the folder is in failed/.
        final = self.dirs.failed / record.id
        record.outcome, record.failure = "failed", reason
        record.relocate(folder, final)
        record.finished_at = record.finished_at or now_iso()
        save_record(folder, record)
        tail = ""
        try:
            tail = "\n".join((folder / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        except FileNotFoundError:
            pass
        (folder / ERROR_FILE).write_text(
            f"Job {record.name} failed: {record.failure}.\n"
            f"Attempts: {len(record.attempts)}. Log: {final / LOG_FILE}\n\n"
            f"Last lines of the log (written while the job was in {folder}):\n{tail}\n",
            encoding="utf-8",
        )
        os.replace(folder, final)
        log.warning("job %s failed: %s", record.id, record.failure)
        self._record_finished(record, final)

    def _record_finished(self, record: JobRecord, folder: Path) -> None:
        """Into the history on disk, then into the status."""
        job = finished_job(record, folder)
        try:
            self.history.append(job)
        except OSError as exc:  # the next start adds it from its folder
            log.warning("could not append job %s to %s: %s", record.id, self.history.path, exc)
        self.status.finished(job)
