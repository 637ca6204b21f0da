"""The queue's job history: every finished job, one JSON line each, in ``DIR/job_history.jsonl``.

The daemon appends a job's line once its folder is in ``done/`` or ``failed/``, and loads the
file when it starts, so ``--status`` and the dashboard still show earlier jobs and failures after
a restart. Jobs finished by an older daemon, or whose line a crash lost between the folder's move
and the append, are added from their folders at start.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from arena.inbox import QueueDirs
from arena.jobs import ERROR_FILE, LOG_FILE, JobRecord, load_record, time_key
from arena.status import RecentJob

log = logging.getLogger(__name__)

HISTORY_FILE = "job_history.jsonl"


@dataclass
class HistorySummary:
    """What the status shows of the history: the newest jobs and failures, and the totals."""

    recent: list[RecentJob] = field(default_factory=list)  # newest first
    failures: list[RecentJob] = field(default_factory=list)  # newest first
    done: int = 0
    failed: int = 0


def finished_job(record: JobRecord, folder: Path) -> RecentJob:
    """The history entry of a job whose folder is now ``folder`` (under done/ or failed/)."""
    failed = record.outcome == "failed"
    return RecentJob(
        id=record.id,
        name=record.name,
        outcome="failed" if failed else "done",
        finished_at=record.finished_at or _last_time(record, folder),
        promoted=None if failed else record.promoted,
        hero_version=None if failed else record.hero_version,
        error=_failure(record) if failed else None,
        metrics={} if failed else record.metrics,
        source=record.source,
        claimed_at=record.claimed_at,
        started_at=record.attempts[0].started_at if record.attempts else None,
        attempts=len(record.attempts),
        folder=str(folder),
        log_file=str(folder / LOG_FILE),
        error_file=str(folder / ERROR_FILE) if failed else None,
    )


def _failure(record: JobRecord) -> str:
    """Why a job failed; an older daemon kept it only in the attempts."""
    errors = [a.error for a in record.attempts if a.error]
    return record.failure or record.error or (errors[-1] if errors else "failed (no reason recorded)")


def _last_time(record: JobRecord, folder: Path) -> float | str:
    """When a job of an older daemon (no finished_at) ended: its last attempt, else its folder."""
    ended = [a.ended_at for a in record.attempts if a.ended_at]
    if ended:
        return ended[-1]
    try:
        return folder.stat().st_mtime
    except OSError:
        return record.claimed_at


class JobHistory:
    def __init__(self, dirs: QueueDirs):
        self.dirs = dirs
        self.path = dirs.root / HISTORY_FILE

    def append(self, job: RecentJob) -> None:
        """Add one line, on disk before this returns (flushed and fsynced)."""
        line = (json.dumps(job.model_dump(mode="json"), ensure_ascii=False) + "\n").encode("utf-8")
        with self.path.open("a+b") as handle:  # "a": every write goes to the end
            size = handle.seek(0, os.SEEK_END)
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    line = b"\n" + line  # a line torn by a crash stays a line of its own, skipped on load
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def entries(self) -> dict[str, RecentJob]:
        """Every job in the file by id, oldest first; a job written twice counts once (the last)."""
        found: dict[str, RecentJob] = {}
        try:
            with self.path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        job = RecentJob.model_validate_json(line)
                    except (ValidationError, ValueError):
                        continue  # torn by a crash mid-append, or damaged by hand
                    found.pop(job.id, None)
                    found[job.id] = job
        except FileNotFoundError:
            pass
        return found

    def load(self, keep: int) -> HistorySummary:
        """Add the finished jobs the file lacks, then summarize it (the newest ``keep`` jobs)."""
        entries = self.entries()
        for job in self._missing(entries):
            try:
                self.append(job)
            except OSError as exc:  # shown all the same; the next start tries again
                log.warning("could not add job %s to %s: %s", job.id, self.path, exc)
            entries[job.id] = job
        summary = HistorySummary()
        recent: deque[RecentJob] = deque(maxlen=keep)
        failures: deque[RecentJob] = deque(maxlen=keep)
        for job in entries.values():
            recent.append(job)
            if job.outcome == "failed":
                failures.append(job)
                summary.failed += 1
            else:
                summary.done += 1
        summary.recent, summary.failures = list(reversed(recent)), list(reversed(failures))
        return summary

    def _missing(self, entries: dict[str, RecentJob]) -> list[RecentJob]:
        """Folders in done/ and failed/ with no history line, oldest first."""
        missing = []
        for outcome, parent in (("done", self.dirs.done), ("failed", self.dirs.failed)):
            if not parent.is_dir():
                continue
            for folder in parent.iterdir():
                if folder.name in entries or not folder.is_dir():
                    continue
                record = load_record(folder)
                if record is None:
                    log.warning("%s has no readable job record; it is left out of the history", folder)
                    continue
                record.outcome = outcome  # where it lies is what became of it
                missing.append(finished_job(record, folder))
        return sorted(missing, key=lambda job: time_key(job.finished_at))
