"""The daemon status file (``status/daemon_status.json``), written atomically like the training one.

Its JSON Schema is checked in at ``schemas/daemon_status.schema.json``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    started_at: str
    status_file: str
    log_file: str
    phase: str | None = None
    current_step: int | None = None
    total_steps: int | None = None


class RecentJob(BaseModel):
    id: str
    name: str
    outcome: Literal["done", "failed"]
    finished_at: str
    promoted: bool | None = None
    hero_version: int | None = None
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class HeroInfo(BaseModel):
    version: int = Field(0, description="0: no promotion yet; jobs start from the base model.")
    path: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    promoted_at: float | None = None


class DaemonStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = DAEMON_SCHEMA_VERSION
    state: DaemonState = "starting"
    pid: int = Field(default_factory=os.getpid)
    queue_dir: str = ""
    started_at: str = Field(default_factory=now_iso)
    timestamp: str = Field(default_factory=now_iso, description="Time of this write (heartbeat).")
    heartbeat_interval_s: float = 5.0
    current_job: CurrentJob | None = None
    queue: list[QueuedFile] = Field(default_factory=list, description="Inbox files in run order.")
    recovered: list[str] = Field(default_factory=list, description="Jobs in processing/ to resume.")
    recent_jobs: list[RecentJob] = Field(default_factory=list)
    hero: HeroInfo | None = None
    hero_history: list[dict[str, Any]] = Field(default_factory=list)
    jobs_done: int = 0
    jobs_failed: int = 0


class DaemonStatusWriter:
    RECENT = 20

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
        self.update(
            recent_jobs=[job, *s.recent_jobs][: self.RECENT],
            jobs_done=s.jobs_done + (job.outcome == "done"),
            jobs_failed=s.jobs_failed + (job.outcome == "failed"),
            current_job=None,
        )
