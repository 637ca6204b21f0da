"""What the dashboards show, read from the status files and a run's JSON lines.

One module builds the snapshots; the web page and the terminal view only render them. Reading
never fails: a missing, empty or half-written file is reported as ``waiting`` with the reason.

Every snapshot carries a ``view``: ``{"state", "text", "tone"}``, the one verdict both renderers
show, so neither can make a dead or failed run look like a running one:

- training ``state``: ``waiting``, ``running``, ``stale`` (not terminal, but no heartbeat for
  three intervals: the process is probably gone), ``failed``, ``completed``, ``stopped``;
- daemon ``state``: ``waiting``, ``running``, ``stale``, ``not running``;
- ``tone``: ``active``, ``ok``, ``bad``, ``warn``, ``neutral`` (the colour to show it in).

Numbers that are not finite (a diverged loss) arrive as ``null`` or as bare ``NaN`` /
``Infinity`` tokens (Python's ``json`` writes and reads them; a browser's ``JSON.parse`` rejects
them). ``null`` stays ``null`` (shown as "–"); the bare ones are spelled as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``, so they reach the page as valid JSON, are shown as that text,
and are never mistaken for a number (or for 0).
"""

from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.run_layout import RunLayout, stage_folder

MAX_POINTS = 2000  # metric points sent to a chart; older ones are thinned out
METRIC_KEYS = ("step", "loss", "learning_rate", "grad_norm", "tokens_per_sec", "epoch")  # in every point
METRIC_KEYS_MAX = 64  # keys kept per metric point, a bound on what one odd line can send
STALE_HEARTBEATS = 3  # missed heartbeats before a writer counts as gone
STALE_GRACE_S = 5.0  # slack for a slow disk or a busy machine, seconds
# Phase by the seed format's coarse status, for files that have no ``phase``.
PHASE_OF_STATUS = {"crashed": "failed", "completed": "completed", "training": "training", "idle": "initializing"}


class NotServed(Exception):
    """A run file the dashboard refuses to read: its real path leaves the run folder (a symlink
    to /etc/passwd or to another run), or it is not a regular file (a FIFO would hang)."""


def spell_non_finite(value: Any) -> Any:
    """``value`` with every non-finite float, however deep, replaced by its JSON-ish spelling."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: spell_non_finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [spell_non_finite(v) for v in value]
    return value


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
        data = json.loads(text)  # accepts bare NaN / Infinity, as Python's json.dumps writes them
    except json.JSONDecodeError:
        return None, f"{path} is being written"
    if not isinstance(data, dict):
        return None, f"{path} does not hold a status object"
    return data, ""


def read_jsonl(path: Path, limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn or broken line is skipped, never the whole file.

    Bare ``NaN`` / ``Infinity`` / ``-Infinity`` tokens are read as floats (``json.loads``
    accepts them), so the line of a diverged step is kept and shown as NaN.
    """
    try:
        # "replace": a line cut inside a multi-byte character (🤔) is then just a torn line
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(record, dict):
            records.append(record)
    if len(records) > limit:  # keep the shape of a long curve without sending every point
        step = len(records) / limit
        records = [records[int(i * step)] for i in range(limit - 1)] + [records[-1]]
    return records


def _is_figure(value: Any) -> bool:
    """A number (NaN / Inf included) or null: what a chart can draw or mark as missing."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def metric_point(record: dict[str, Any]) -> dict[str, Any]:
    """One ``metrics.jsonl`` line as the page charts it.

    The common keys are always there (null when the line lacks them); every other key whose
    value is a number or null is kept as it is: the method's own figures (DPO's
    ``rewards/chosen``, SFT's ``entropy``, ...) whatever their names, and the curriculum's
    ``stage`` / ``stage_count``. ``method`` is kept when it is a string. Text, lists and objects
    (``time``, ``nonfinite``) are left out; they are not figures.
    """
    point = {k: record.get(k) for k in METRIC_KEYS}
    for key, value in record.items():
        if key in point or len(point) >= METRIC_KEYS_MAX:
            continue
        if _is_figure(value) or (key == "method" and isinstance(value, str)):
            point[key] = value
    return point


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


def is_stale(age: float | None, data: dict[str, Any], default_interval: float = 10.0) -> bool:
    """No write for three heartbeats (and a grace period): the writing process is likely gone."""
    interval = data.get("heartbeat_interval_s")
    usable = isinstance(interval, (int, float)) and not isinstance(interval, bool) and math.isfinite(interval)
    interval = float(interval) if usable and interval > 0 else default_interval
    return age is not None and age > STALE_HEARTBEATS * interval + STALE_GRACE_S


def ago(seconds: float) -> str:
    """A rough age in words: ``40 s``, ``5 min``, ``2 h 5 min``, ``3 d 4 h``."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _steps(data: dict[str, Any]) -> str:
    return f"step {data.get('current_step', '?')}/{data.get('total_steps', '?')}"


def training_view(data: dict[str, Any], age: float | None) -> dict[str, str]:
    """The verdict on one run: failed beats everything, then finished, then a lost heartbeat."""
    phase = data.get("phase") if isinstance(data.get("phase"), str) else PHASE_OF_STATUS.get(data.get("status"))
    if phase == "failed" or data.get("status") == "crashed":
        why = data.get("error_type") or "no error type recorded"
        return {"state": "failed", "tone": "bad", "text": f"failed at {_steps(data)} ({why})"}
    if phase == "completed":
        return {"state": "completed", "tone": "ok", "text": "completed"}
    if phase == "stopped":
        return {"state": "stopped", "tone": "neutral", "text": f"stopped at {_steps(data)}"}
    if is_stale(age, data):
        return {
            "state": "stale",
            "tone": "warn",
            "text": f"stale: no heartbeat for {ago(age or 0)}; the process may be gone (last phase {phase})",
        }
    return {"state": "running", "tone": "active", "text": str(phase or "starting")}


def daemon_view(data: dict[str, Any], age: float | None) -> dict[str, str]:
    if data.get("running") is False or data.get("state") == "stopped":
        return {"state": "not running", "tone": "neutral", "text": "not running"}
    if is_stale(age, data, default_interval=5.0):
        return {
            "state": "stale",
            "tone": "warn",
            "text": f"stale: no heartbeat for {ago(age or 0)}; the daemon may be gone",
        }
    busy = data.get("state") in ("training", "evaluating", "stopping")
    return {"state": "running", "tone": "active" if busy else "neutral", "text": str(data.get("state") or "starting")}


def inside_run(run_dir: Path, name: str) -> Path | None:
    """The real path of ``run_dir/name``, or None while it does not exist.

    Raises:
        NotServed: the real path (all symlinks followed) is outside the real run folder, or is
            not a regular file. The run folder itself may be a symlink (outputs on another disk).
    """
    try:
        folder = run_dir.resolve()
        real = (run_dir / name).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise NotServed(f"{run_dir / name} cannot be resolved: {exc}") from exc
    if not real.is_relative_to(folder) or real == folder:
        raise NotServed(f"{run_dir / name} leads outside the run folder (to {real})")
    try:
        mode = real.stat().st_mode
    except OSError:
        return None
    if not stat.S_ISREG(mode):
        raise NotServed(f"{run_dir / name} is not a regular file")
    return real


def _iso_mtime(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except OSError:
        return None


def _finite_numbers(figures: Any) -> dict[str, Any]:
    """The numeric figures of a result (non-finite ones spelled, as everywhere on the page)."""
    if not isinstance(figures, dict):
        return {}
    return spell_non_finite({k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})


def _stages_of(config: dict[str, Any]) -> list[dict[str, Any]]:
    """A curriculum's stages as the run folder holds them: folder, method and first global step
    (stage i starts where the steps of the stages before it end, so all share one step axis)."""
    stages, start = [], 0
    for index, stage in enumerate(config.get("stages") or [], start=1):
        method = str((stage.get("method") or {}).get("name", "?"))
        steps = stage.get("max_steps") if isinstance(stage.get("max_steps"), int) else 0
        folder = stage_folder(index, method)
        stages.append({"index": index, "method": method, "folder": folder, "start": start, "steps": steps})
        start += steps
    return stages


@dataclass(frozen=True)
class Sources:
    """The only files a dashboard reads: the two status files it is configured with, the
    metrics / previews of the run those name, and the runs under ``runs_root`` (the config's
    output folder) for comparing them."""

    training_status: Path
    daemon_status: Path
    runs_root: Path | None = None

    def daemon(self) -> dict[str, Any]:
        data, why = read_json(self.daemon_status)
        if data is None:
            if not self.daemon_status.exists():
                return {"waiting": why, "view": {"state": "not running", "tone": "neutral", "text": "not running"}}
            return {"waiting": why, "view": {"state": "waiting", "tone": "neutral", "text": "waiting"}}
        age = age_seconds(data.get("timestamp"))
        view = daemon_view(data, age)
        data["view"] = view
        data["stale"] = view["state"] == "stale"
        data["age_seconds"] = age
        if view["state"] != "running" and "current_job" in data:
            # the job a dead daemon last reported is history, not work in progress
            data["last_job"] = data.pop("current_job")
        return spell_non_finite(data)

    def training_file(self) -> Path:
        """The daemon's running job if there is one, else the configured training status."""
        daemon, _ = read_json(self.daemon_status)
        job = (daemon or {}).get("current_job")
        if (
            isinstance(job, dict)
            and isinstance(job.get("status_file"), str)
            and daemon.get("state") != "stopped"
            and daemon.get("running") is not False
        ):
            return Path(job["status_file"])
        return self.training_status

    def training(self) -> dict[str, Any]:
        path = self.training_file()
        data, why = read_json(path)
        if data is None:
            return {"waiting": why, "file": str(path), "view": {"state": "waiting", "tone": "neutral", "text": "waiting"}}
        age = age_seconds(data.get("timestamp"))
        view = training_view(data, age)
        data["view"] = view
        data["stale"] = view["state"] == "stale"
        data["age_seconds"] = age
        data["file"] = str(path)
        if view["state"] != "running":
            data["eta_seconds"] = None  # an ETA from a finished, failed or vanished process is not true
        return spell_non_finite(data)

    def _run_file(self, name: str) -> Path | None:
        data, _ = read_json(self.training_file())
        run_dir = (data or {}).get("run_dir")
        return inside_run(Path(run_dir), name) if isinstance(run_dir, str) and run_dir else None

    def metrics(self) -> list[dict[str, Any]]:
        """The run's metric lines, shaped by :func:`metric_point`.

        Raises:
            NotServed: the metrics file leads outside its run folder.
        """
        path = self._run_file(RunLayout.METRICS)
        return spell_non_finite([metric_point(r) for r in read_jsonl(path)] if path else [])

    def previews(self, limit: int = 50) -> list[dict[str, Any]]:
        """Raises NotServed for a previews file that leads outside its run folder."""
        path = self._run_file(RunLayout.PREVIEWS)
        return spell_non_finite(read_jsonl(path)[-limit:] if path else [])

    # --- the runs under the output folder, to compare ------------------------------------------

    def _run_folders(self) -> dict[str, Path]:
        """name -> folder of every run under ``runs_root`` (a folder with a resolved_config.json)."""
        root = self.runs_root
        if root is None:
            return {}
        try:
            children = sorted(root.iterdir())
        except OSError:
            return {}
        return {c.name: c for c in children if c.is_dir() and (c / RunLayout.RESOLVED_CONFIG).is_file()}

    def _run_config(self, folder: Path) -> dict[str, Any]:
        try:
            path = inside_run(folder, RunLayout.RESOLVED_CONFIG)
        except NotServed:
            return {}
        data, _ = read_json(path) if path else (None, "")
        config = (data or {}).get("config")
        return config if isinstance(config, dict) else {}

    def _result(self, folder: Path, name: str = RunLayout.RESULT) -> dict[str, Any] | None:
        try:
            path = inside_run(folder, name)
        except NotServed:
            return None
        return read_json(path)[0] if path else None

    def runs(self) -> list[dict[str, Any]]:
        """Every run under the output folder, newest first: name, method (a curriculum's in
        order), profile, status, start time, steps and final figures."""
        live, _ = read_json(self.training_file())
        live_dir = Path(live["run_dir"]).resolve() if isinstance((live or {}).get("run_dir"), str) and live["run_dir"] else None
        rows = []
        for name, folder in self._run_folders().items():
            config = self._run_config(folder)
            stages = _stages_of(config)
            methods = [s["method"] for s in stages] or [str((config.get("method") or {}).get("name", "?"))]
            result = self._result(folder)
            stage_results = [self._result(folder, f"{s['folder']}/{RunLayout.RESULT}") for s in stages]
            status, tone = "incomplete", "warn"  # no result: stopped, killed, or still running
            if live_dir is not None and folder.resolve() in (live_dir, live_dir.parent):
                # the run the status file follows: its live verdict, before any result an earlier
                # attempt left (a diverged run being resumed still has its failed result.json)
                view = training_view(live, age_seconds(live.get("timestamp")))
                status, tone = view["state"], view["tone"]
            elif result is not None and result.get("status") != "failed":
                status, tone = ("dry run", "neutral") if result.get("dry_run") else ("completed", "ok")
            elif (result or {}).get("status") == "failed" or any((r or {}).get("status") == "failed" for r in stage_results):
                status, tone = "failed", "bad"
            final = (result or {}).get("final_metrics") if result else None
            if final is None:  # a curriculum cut short: the last stage that finished
                final = next(((r or {}).get("final_metrics") for r in reversed(stage_results) if (r or {}).get("final_metrics")), None)
            rows.append({
                "name": name,
                "method": " -> ".join(methods),
                "profile": (config.get("profile") or {}).get("name"),
                "status": status,
                "tone": tone,
                "started": _iso_mtime(folder / RunLayout.RESOLVED_CONFIG),
                "stages": [{k: s[k] for k in ("index", "method", "start", "steps")} for s in stages],
                "final": _finite_numbers(final),
            })
        return sorted(rows, key=lambda r: r["started"] or "", reverse=True)

    def run_metrics(self, name: str) -> dict[str, Any]:
        """One run's metric points on the job's step axis (a curriculum's stages one after the
        other, each point with its ``stage``), and where each stage starts.

        Raises:
            NotServed: ``name`` is not a run under the output folder, or a file leads outside it.
        """
        folder = self._run_folders().get(name)
        if folder is None:
            raise NotServed(f"{name!r} is not a run under {self.runs_root}")
        stages = _stages_of(self._run_config(folder))
        points: list[dict[str, Any]] = []
        if not stages:
            path = inside_run(folder, RunLayout.METRICS)
            points = [metric_point(r) for r in read_jsonl(path)] if path else []
        for stage in stages:
            path = inside_run(folder, f"{stage['folder']}/{RunLayout.METRICS}")
            for record in read_jsonl(path, limit=MAX_POINTS // len(stages)) if path else []:
                point = metric_point(record)
                if isinstance(point["step"], (int, float)):
                    point["step"] = point["step"] + stage["start"]
                point["stage"] = stage["index"]
                points.append(point)
        bounds = [{"step": s["start"], "label": f"stage {s['index']} {s['method']}"} for s in stages]
        return spell_non_finite({"name": name, "points": points, "stages": bounds})
