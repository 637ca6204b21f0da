"""The job record: one JSON file beside each claimed job, rewritten atomically as it moves on.

Times in records are ISO 8601 strings; records written by older daemons hold epoch seconds
(floats), which are read and rewritten as ISO 8601.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from core.training_status import write_json_atomic

PRIORITIES = ("high", "normal", "low")  # run order
RECORD_FILE = "job.json"
LOG_FILE = "job.log"
STATUS_FILE = "training_status.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
EVALUATION_FILE = "evaluation.json"
# A job on several processes: rank 0's exit code (torchrun's own says only "a rank failed")
EXIT_CODE_FILE = ".exit_code"
RUN_NAME = "run"
# Files the daemon itself writes into a job folder: never mistaken for the job's dataset.
DAEMON_FILES = {RECORD_FILE, STATUS_FILE, RESULT_FILE, EVALUATION_FILE}

Outcome = Literal["done", "failed"]


def iso_time(value: Any) -> Any:
    """Epoch seconds (how older daemons wrote times) as an ISO 8601 string; anything else as is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="milliseconds")
    return value


def time_key(value: str | None) -> float:
    """An ISO 8601 time as epoch seconds, for ordering; unreadable or missing times sort first."""
    try:
        return datetime.fromisoformat(value).timestamp() if value else 0.0
    except ValueError:
        return 0.0


IsoTime = Annotated[str, BeforeValidator(iso_time), Field(description="ISO 8601 time.")]


def relocate(text: str, old: Path, new: Path) -> str:
    """``text`` with the folder ``old`` (and paths under it) renamed to ``new``: messages
    written while a job ran in processing/ name where its files are once it has moved."""
    # Not followed by a job-id character: processing/ID must not match processing/ID2.
    return re.sub(re.escape(str(old)) + r"(?![A-Za-z0-9_-])", lambda _: str(new), text)


class Attempt(BaseModel):
    started_at: IsoTime
    start_model: str | None = Field(None, description="Model this attempt trained from.")
    ended_at: IsoTime | None = None
    exit_code: int | None = None
    error: str | None = None


class JobRecord(BaseModel):
    """What the daemon knows about one job."""

    id: str
    source: str = Field(description="Where the file came from, relative to the queue folder.")
    priority: str = "normal"
    dataset: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    claimed_at: IsoTime
    attempts: list[Attempt] = Field(default_factory=list)
    error: str | None = Field(None, description="Why the job cannot run at all (bad job file).")
    outcome: Outcome | None = None
    failure: str | None = Field(None, description="Why the job failed, in full (also in error.txt).")
    finished_at: IsoTime | None = None
    promoted: bool | None = None
    hero_version: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.source).name

    def relocate(self, old: Path, new: Path) -> None:
        """Rename the job folder in every path and message the record holds."""
        if self.dataset is not None:
            self.dataset = relocate(self.dataset, old, new)
        if self.failure is not None:
            self.failure = relocate(self.failure, old, new)
        for attempt in self.attempts:
            if attempt.error is not None:
                attempt.error = relocate(attempt.error, old, new)


def save_record(folder: Path, record: JobRecord) -> None:
    write_json_atomic(folder / RECORD_FILE, record.model_dump(mode="json"))


def load_record(folder: Path) -> JobRecord | None:
    path = folder / RECORD_FILE
    try:
        return JobRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValidationError, ValueError):
        return None

