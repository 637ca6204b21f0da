"""What the dashboards show, read from the status files and a run's JSON lines.

One module builds the snapshots; the web page and the terminal view only render them. Reading
never fails: a missing, empty or half-written file is reported as ``waiting`` with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TERMINAL_PHASES = {"completed", "failed", "stopped"}
MAX_POINTS = 2000  # metric points sent to a chart; older ones are thinned out


def read_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(data, why not) for a JSON object file; data is None while the file is not usable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"{path} does not exist yet"
    except OSError as exc:
        return None, f"{path} cannot be read: {exc.strerror}"
    except UnicodeDecodeError:
        return None, f"{path} is being written"  # cut inside a multi-byte character
    if not text.strip():
        return None, f"{path} is empty"
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None, f"{path} is being written"
    if not isinstance(data, dict):
        return None, f"{path} does not hold a status object"
    return data, ""


def read_jsonl(path: Path, limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (being appended) is skipped."""
    try:
        # "replace": a line cut inside a multi-byte character (🤔) is then just a torn line
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    if len(records) > limit:  # keep the shape of a long curve without sending every point
        step = len(records) / limit
        records = [records[int(i * step)] for i in range(limit - 1)] + [records[-1]]
    return records


def age_seconds(timestamp: Any) -> float | None:
    if not isinstance(timestamp, str) or not timestamp:
        return None
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()


def is_stale(age: float | None, data: dict[str, Any]) -> bool:
    """No write for three heartbeats (and a grace period): the writing process is likely gone."""
    interval = data.get("heartbeat_interval_s")
    interval = float(interval) if isinstance(interval, (int, float)) else 10.0
    return age is not None and age > 3 * interval + 5


@dataclass(frozen=True)
class Sources:
    """The only files a dashboard reads: the two status files it is configured with, and the
    metrics / previews of the run those name."""

    training_status: Path
    daemon_status: Path

    def daemon(self) -> dict[str, Any]:
        data, why = read_json(self.daemon_status)
        if data is None:
            return {"waiting": why}
        age = age_seconds(data.get("timestamp"))
        data["stale"] = data.get("state") != "stopped" and is_stale(age, data)
        data["age_seconds"] = age
        return data

    def training_file(self) -> Path:
        """The daemon's running job if there is one, else the configured training status."""
        daemon, _ = read_json(self.daemon_status)
        job = (daemon or {}).get("current_job")
        if isinstance(job, dict) and daemon.get("state") != "stopped" and isinstance(job.get("status_file"), str):
            return Path(job["status_file"])
        return self.training_status

    def training(self) -> dict[str, Any]:
        path = self.training_file()
        data, why = read_json(path)
        if data is None:
            return {"waiting": why, "file": str(path)}
        age = age_seconds(data.get("timestamp"))
        data["stale"] = data.get("phase") not in TERMINAL_PHASES and is_stale(age, data)
        data["age_seconds"] = age
        data["file"] = str(path)
        return data

    def _run_file(self, name: str) -> Path | None:
        data, _ = read_json(self.training_file())
        run_dir = (data or {}).get("run_dir")
        return Path(run_dir) / name if isinstance(run_dir, str) and run_dir else None

    def metrics(self) -> list[dict[str, Any]]:
        path = self._run_file("metrics.jsonl")
        keep = ("step", "loss", "learning_rate", "grad_norm", "tokens_per_sec", "epoch")
        return [{k: r.get(k) for k in keep} for r in read_jsonl(path)] if path else []

    def previews(self, limit: int = 50) -> list[dict[str, Any]]:
        path = self._run_file("previews.jsonl")
        return read_jsonl(path)[-limit:] if path else []
