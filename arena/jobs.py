"""The job record: one JSON file beside each claimed job, rewritten atomically as it moves on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from core.training_status import write_json_atomic

PRIORITIES = ("high", "normal", "low")  # run order
RECORD_FILE = "job.json"
LOG_FILE = "job.log"
STATUS_FILE = "training_status.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
EVALUATION_FILE = "evaluation.json"
RUN_NAME = "run"
# Files the daemon itself writes into a job folder: never mistaken for the job's dataset.
DAEMON_FILES = {RECORD_FILE, STATUS_FILE, RESULT_FILE, EVALUATION_FILE}

Outcome = Literal["done", "failed"]


class Attempt(BaseModel):
    started_at: float
    start_model: str | None = Field(None, description="Model this attempt trained from.")
    ended_at: float | None = None
    exit_code: int | None = None
    error: str | None = None


class JobRecord(BaseModel):
    """What the daemon knows about one job."""

    id: str
    source: str = Field(description="Where the file came from, relative to the queue folder.")
    priority: str = "normal"
    dataset: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    claimed_at: float
    attempts: list[Attempt] = Field(default_factory=list)
    error: str | None = Field(None, description="Why the job cannot run at all (bad job file).")
    outcome: Outcome | None = None
    promoted: bool | None = None
    hero_version: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.source).name


def save_record(folder: Path, record: JobRecord) -> None:
    write_json_atomic(folder / RECORD_FILE, record.model_dump(mode="json"))


def load_record(folder: Path) -> JobRecord | None:
    path = folder / RECORD_FILE
    try:
        return JobRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValidationError, ValueError):
        return None
