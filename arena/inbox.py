"""The queue folder protocol: which inbox files are jobs, when they are complete, how they are claimed.

::

    DIR/inbox/{high,normal,low}/   dropped datasets (.jsonl .json .parquet) and *.job.json files
    DIR/processing/<job id>/       claimed jobs: the dataset, job.json, logs, the run
    DIR/done/<job id>/             finished jobs with their result
    DIR/failed/<job id>/           failed jobs with error.txt
    DIR/job_history.jsonl          every finished job, one line each (arena/history.py)

A file is taken only once complete: dot-files, ``*.part`` and ``*.tmp`` are ignored, and its size
and mtime must have stayed the same for ``stable_seconds``. It is claimed by one atomic rename.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arena.jobs import DAEMON_FILES, PRIORITIES, JobRecord, load_record, save_record, time_key
from core.training_status import now_iso
from trainer.data.readers import READERS

JOB_SUFFIX = ".job.json"
IGNORED_SUFFIXES = (".part", ".tmp")
DATA_SUFFIXES = tuple(READERS)


@dataclass(frozen=True)
class QueueDirs:
    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def processing(self) -> Path:
        return self.root / "processing"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def control(self) -> Path:
        return self.root / "control"

    def create(self) -> None:
        for folder in (self.processing, self.done, self.failed, self.control):
            folder.mkdir(parents=True, exist_ok=True)
        for priority in PRIORITIES:
            (self.inbox / priority).mkdir(parents=True, exist_ok=True)

    def folder_priority(self, path: Path) -> str:
        """``inbox/high/x.jsonl`` -> high; a file directly in ``inbox/`` is normal."""
        parent = path.parent.name
        return parent if path.parent.parent == self.inbox and parent in PRIORITIES else "normal"


@dataclass
class Candidate:
    """An inbox file that may become a job."""

    path: Path
    priority: str
    mtime: float
    size: int
    job_spec: dict[str, Any] | None = None  # parsed *.job.json
    spec_error: str | None = None

    @property
    def order(self) -> tuple[int, float, str]:
        return (PRIORITIES.index(self.priority), self.mtime, self.path.name)


def is_ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name.endswith(IGNORED_SUFFIXES)


def is_job_input(path: Path) -> bool:
    return path.name.endswith(JOB_SUFFIX) or path.suffix in DATA_SUFFIXES


class StabilityTracker:
    """Remembers each file's (size, mtime) and since when it has not changed."""

    def __init__(self, stable_seconds: float):
        self.stable_seconds = stable_seconds
        self._seen: dict[Path, tuple[int, float, float]] = {}

    def is_stable(self, path: Path, size: int, mtime: float, now: float) -> bool:
        previous = self._seen.get(path)
        if previous is None or previous[:2] != (size, mtime):
            self._seen[path] = (size, mtime, now)
            return self.stable_seconds == 0
        return now - previous[2] >= self.stable_seconds

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)


def _read_job_spec(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"job file {path.name} is not valid JSON: {exc}"
    if not isinstance(spec, dict) or not isinstance(spec.get("dataset"), str) or not spec["dataset"].strip():
        return None, f"job file {path.name} must be an object with a 'dataset' path"
    if "\x00" in spec["dataset"]:
        return None, f"job file {path.name}: the dataset path contains a NUL character"
    unknown = set(spec) - {"dataset", "overrides", "priority"}
    if unknown:
        return None, f"job file {path.name}: unknown keys {', '.join(sorted(unknown))} (known: dataset, overrides, priority)"
    if spec.get("priority", "normal") not in PRIORITIES:
        return None, f"job file {path.name}: priority must be one of {', '.join(PRIORITIES)}"
    if not isinstance(spec.get("overrides", {}), dict):
        return None, f"job file {path.name}: overrides must be an object of dotted keys"
    return spec, None


def inbox_files(dirs: QueueDirs) -> list[Path]:
    """Every file under the inbox, sorted. ``os.walk`` rather than ``rglob``: producers create
    and remove temporary subfolders, and a folder vanishing mid-walk must not be an error."""
    files = []
    for folder, _, names in os.walk(dirs.inbox, onerror=lambda error: None):
        files.extend(Path(folder) / name for name in names)
    return sorted(files)


def _dataset_of(job_file: Path, spec: dict[str, Any]) -> Path:
    return Path(os.path.abspath(job_file.parent / spec["dataset"]))


def _is_inbox_dataset(dirs: QueueDirs, dataset: Path) -> bool:
    return dataset.parent.is_relative_to(dirs.inbox) or dataset.parent == dirs.inbox


def scan_inbox(dirs: QueueDirs, tracker: StabilityTracker, now: float | None = None) -> list[Candidate]:
    """Complete inbox files in the order they should run: priority, then age, then name.

    A dataset named by a job file in the inbox (complete or not yet) is never a job of its own:
    it travels with its job file, which waits until that dataset is there and complete.
    """
    now = time.time() if now is None else now
    found: list[Candidate] = []
    stable: set[Path] = set()
    referenced: dict[Path, Path] = {}  # dataset -> the job file naming it
    for path in inbox_files(dirs):
        if is_ignored(path) or not is_job_input(path):
            continue
        try:
            info = path.stat()
        except OSError:
            continue  # claimed or removed while scanning
        candidate = Candidate(path, dirs.folder_priority(path), info.st_mtime, info.st_size)
        if path.name.endswith(JOB_SUFFIX):
            candidate.job_spec, candidate.spec_error = _read_job_spec(path)
            if candidate.job_spec:
                candidate.priority = candidate.job_spec.get("priority", candidate.priority)
                dataset = _dataset_of(path, candidate.job_spec)
                if dataset.is_dir() and (_is_inbox_dataset(dirs, dataset) or dataset == dirs.inbox):
                    candidate.job_spec = None
                    candidate.spec_error = f"job file {path.name}: its dataset is a folder of the inbox; name a file"
                else:
                    referenced[dataset] = path
        if tracker.is_stable(path, info.st_size, info.st_mtime, now):
            stable.add(path)
            found.append(candidate)
    ready = []
    for candidate in found:
        if candidate.path in referenced:
            continue
        if candidate.job_spec is not None:
            dataset = _dataset_of(candidate.path, candidate.job_spec)
            if _is_inbox_dataset(dirs, dataset) and dataset not in stable:
                continue  # its dataset is still arriving
        ready.append(candidate)
    return sorted(ready, key=lambda c: c.order)


def _job_id(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name.removesuffix(JOB_SUFFIX))[:60]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}-{stem}"


def claim(dirs: QueueDirs, candidate: Candidate) -> JobRecord | None:
    """Move the candidate into ``processing/<id>/`` with its job record.

    The record is written first and the rename is the claim: if the file is gone (the producer
    removed it), the folder is removed and None is returned. Recovery treats a record whose
    file is still in the inbox as a claim that never happened.
    """
    job_id = _job_id(candidate.path)
    folder = dirs.processing / job_id
    folder.mkdir(parents=True)
    record = JobRecord(
        id=job_id,
        source=os.fsdecode(candidate.path.relative_to(dirs.root)),
        priority=candidate.priority,
        claimed_at=now_iso(),
    )
    move_along: Path | None = None
    if candidate.spec_error:
        record.error = candidate.spec_error
    elif candidate.job_spec is not None:
        dataset = _dataset_of(candidate.path, candidate.job_spec)
        if _is_inbox_dataset(dirs, dataset) and dataset.is_file() and is_job_input(dataset):
            move_along, dataset = dataset, folder / dataset.name
        record.dataset = str(dataset)
        record.overrides = candidate.job_spec.get("overrides", {})
    else:
        record.dataset = str(folder / candidate.path.name)
    save_record(folder, record)
    try:
        os.rename(candidate.path, folder / candidate.path.name)
    except FileNotFoundError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    if move_along is not None:
        os.rename(move_along, folder / move_along.name)
    return record


def recover_processing(dirs: QueueDirs) -> list[JobRecord]:
    """Jobs left in ``processing/`` by a daemon that stopped or died, oldest claim first.

    A record whose claimed file is still in the inbox is a claim that never happened: the folder
    goes and the file stays queued. A claim interrupted between the job file and its dataset is
    completed. A folder with a claimed file but no readable record gets its record rebuilt.
    """
    records = []
    for folder in sorted(p for p in dirs.processing.iterdir() if p.is_dir()):
        record = load_record(folder)
        if record is not None and not (folder / Path(record.source).name).exists():
            if (dirs.root / record.source).exists():
                shutil.rmtree(folder, ignore_errors=True)
                continue
        if record is None:
            record = _rebuild_record(folder)
        if record is None:
            if not any(folder.iterdir()):
                folder.rmdir()
            continue
        _finish_dataset_move(dirs, folder, record)
        records.append(record)
    return sorted(records, key=lambda r: time_key(r.claimed_at))


def _finish_dataset_move(dirs: QueueDirs, folder: Path, record: JobRecord) -> None:
    """A job file was claimed but the daemon died before its inbox dataset followed it."""
    dataset = Path(record.dataset) if record.dataset else None
    if dataset is None or dataset.exists() or dataset.parent != folder:
        return
    job_file = folder / Path(record.source).name
    spec, _ = _read_job_spec(job_file) if job_file.name.endswith(JOB_SUFFIX) else (None, None)
    if spec is None:
        return
    original = _dataset_of(dirs.root / record.source, spec)
    if original.is_file():
        os.rename(original, dataset)


def _rebuild_record(folder: Path) -> JobRecord | None:
    """The record of a claim whose record is missing or unreadable, from the claimed file."""
    inputs = sorted(
        p for p in folder.iterdir() if p.is_file() and is_job_input(p) and p.name not in DAEMON_FILES
    )
    if not inputs:
        return None
    job_files = [p for p in inputs if p.name.endswith(JOB_SUFFIX)]
    claimed = job_files[0] if job_files else inputs[0]
    record = JobRecord(id=folder.name, source=claimed.name, priority="normal", claimed_at=now_iso())
    if job_files:
        spec, error = _read_job_spec(claimed)
        record.error = error
        if spec is not None:
            dataset = folder / Path(spec["dataset"]).name
            record.dataset = str(dataset if dataset.exists() else Path(spec["dataset"]))
            record.overrides = spec.get("overrides", {})
    else:
        record.dataset = str(claimed)
    save_record(folder, record)
    return record
