"""The daemon status file (``status/daemon_status.json``), written atomically like the training one.

Its JSON Schema is checked in at ``schemas/daemon_status.schema.json``. Times are ISO 8601 strings.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from arena.jobs import IsoTime
from core.training_status import now_iso, write_json_atomic

log = logging.getLogger(__name__)

DAEMON_SCHEMA_VERSION = 1

DaemonState = Literal["starting", "idle", "training", "evaluating", "paused", "stopping", "stopped"]


class QueuedFile(BaseModel):
    name: str
    priority: str
    size: int
    complete: bool = Field(description="Size and mtime stable long enough to be taken.")


class CurrentJob(BaseModel):
    id: str
    name: str
    attempt: int
    started_at: IsoTime
    status_file: str
    log_file: str
    phase: str | None = None
    current_step: int | None = None
    total_steps: int | None = None


class RecentJob(BaseModel):
    """A finished job, as kept in the queue's job history and shown in the status."""

    id: str
    name: str
    outcome: Literal["done", "failed"]
    finished_at: IsoTime
    promoted: bool | None = None
    hero_version: int | None = None
    error: str | None = Field(None, description="Why it failed, in full (may span lines).")
    metrics: dict[str, Any] = Field(default_factory=dict)
    source: str | None = Field(None, description="Where the file came from, relative to the queue folder.")
    claimed_at: IsoTime | None = None
    started_at: IsoTime | None = Field(None, description="Start of its first attempt.")
    attempts: int = 0
    folder: str | None = Field(None, description="The job folder now: under done/ or failed/.")
    log_file: str | None = None
    error_file: str | None = Field(None, description="error.txt of a failed job.")


class HeroInfo(BaseModel):
    version: int = Field(0, description="0: no promotion yet; jobs start from the base model.")
    path: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    promoted_at: IsoTime | None = None


class DaemonStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = DAEMON_SCHEMA_VERSION
    state: DaemonState = "starting"
    pid: int = Field(default_factory=os.getpid)
    queue_dir: str = ""
    started_at: IsoTime = Field(default_factory=now_iso)
    timestamp: IsoTime = Field(default_factory=now_iso, description="Time of this write (heartbeat).")
    heartbeat_interval_s: float = 5.0
    current_job: CurrentJob | None = None
    queue: list[QueuedFile] = Field(default_factory=list, description="Inbox files in run order.")
    recovered: list[str] = Field(default_factory=list, description="Jobs in processing/ to resume.")
    recent_jobs: list[RecentJob] = Field(
        default_factory=list, description="Newest first, kept across restarts (the queue's job history)."
    )
    recent_failures: list[RecentJob] = Field(
        default_factory=list, description="The newest failed jobs, however many jobs finished since."
    )
    history_file: str | None = Field(None, description="The queue's whole job history (JSON lines).")
    hero: HeroInfo | None = None
    hero_history: list[dict[str, Any]] = Field(default_factory=list)
    jobs_done: int = Field(0, description="Jobs done on this queue, over all daemon runs.")
    jobs_failed: int = Field(0, description="Jobs failed on this queue, over all daemon runs.")


class DaemonStatusWriter:
    RECENT = 20  # jobs in recent_jobs and in recent_failures

    def __init__(self, path: Path, **initial: Any):
        self.path = path
        self.status = DaemonStatus(**initial)

    def update(self, **fields: Any) -> None:
        data = self.status.model_dump()
        data.update(fields)
        data["timestamp"] = now_iso()
        self.status = DaemonStatus.model_validate(data)
        try:
            write_json_atomic(self.path, self.status.model_dump(mode="json"))
        except OSError as exc:  # a full disk costs a status update, not the daemon
            log.warning("could not write daemon status %s: %s", self.path, exc)

    def finished(self, job: RecentJob) -> None:
        s = self.status
        failures = [job, *s.recent_failures] if job.outcome == "failed" else s.recent_failures
        self.update(
            recent_jobs=[job, *s.recent_jobs][: self.RECENT],
            recent_failures=failures[: self.RECENT],
            jobs_done=s.jobs_done + (job.outcome == "done"),
            jobs_failed=s.jobs_failed + (job.outcome == "failed"),
            current_job=None,
        )
