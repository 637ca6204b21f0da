"""The training status file: one pydantic model, written atomically, read by dashboards.

This module is the single implementation; ``trainer.monitoring.status_writer`` re-exports it.
Field names follow the seed system's dashboards (flat top-level fields: ``status``,
``current_step``, ``loss``, ...); newer facts sit beside them, one name per fact. The JSON Schema
of :class:`TrainingStatus` is checked in at ``schemas/training_status.schema.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

STATUS_SCHEMA_VERSION = 1

Phase = Literal[
    "initializing",
    "loading_model",
    "preparing_data",
    "training",
    "evaluating",
    "saving",
    "completed",
    "failed",
    "stopped",
]
CoarseStatus = Literal["idle", "training", "completed", "crashed"]

# The seed dashboards' coarse status, derived from the phase so the two can never disagree.
COARSE_STATUS: dict[str, CoarseStatus] = {
    "initializing": "idle",
    "loading_model": "training",
    "preparing_data": "training",
    "training": "training",
    "evaluating": "training",
    "saving": "training",
    "completed": "completed",
    "failed": "crashed",
    "stopped": "idle",
}


def without_nonfinite(value: Any, found: list[str] | None = None, path: str = "") -> Any:
    """``value`` with every NaN / Inf float replaced by None (their dotted paths go to ``found``).

    JSON has no NaN: Python writes a bare ``NaN`` token that browsers' ``JSON.parse`` rejects, and
    dashboards that coerce a missing number show 0. A non-finite figure is "no value" here; the
    run's failure (``trainer.core.divergence``) says what went wrong.
    """
    if isinstance(value, float) and not math.isfinite(value):
        if found is not None:
            found.append(path)
        return None
    if isinstance(value, dict):
        return {k: without_nonfinite(v, found, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nonfinite(v, found, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Example(BaseModel):
    """One preview: what the model really produced for a probe prompt (never decorated)."""

    step: int
    prompt: str
    golden: str | None = None
    model_output: str
    matches: bool | None = Field(None, description="Final answer equals the golden one.")
    format_ok: bool
    loss: float | None = None


class RLSample(BaseModel):
    """One completion an RL method sampled at a step, with the reward it got (never decorated)."""

    step: int
    prompt: str
    completion: str = Field(description="As the rewards saw it: cut where generation stopped.")
    reward: float | None = Field(None, description="The total reward; null where none applied.")
    rewards: dict[str, float | None] = Field(default_factory=dict, description="Each reward component's value.")


class WinRatePoint(BaseModel):
    """One win-rate measurement: the judge compared the model's answers at ``step`` with the
    starting model's (trainer.monitoring.win_rate)."""

    step: int
    win_rate: float | None = Field(None, description="(wins + ties / 2) / answers, 0..1; null with no answer.")
    wins: int = 0
    ties: int = 0
    losses: int = 0


class Checkpoint(BaseModel):
    step: int
    path: str
    time: str


class DataSummary(BaseModel):
    rows_total: int = 0
    rows_used: int = 0
    rows_rejected: int = 0
    rows_truncated: int = 0
    rows_held_out: int = 0
    rows_held_out_copies: int = Field(0, description="Repeats of held-out prompts, kept out of training.")
    rows_duplicate: int = Field(0, description="Rows identical to an earlier row.")
    trainable_token_fraction: float | None = None
    rejects_file: str | None = None
    report_file: str | None = None
    cache_hit: bool = False


class TrainingStatus(BaseModel):
    """Everything a dashboard needs to show one run, rewritten in full at every change."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = STATUS_SCHEMA_VERSION
    run_id: str = ""
    run_name: str = ""
    model_name: str = ""
    profile: str = ""
    status: CoarseStatus = Field("idle", description="Coarse state, derived from phase.")
    phase: Phase = "initializing"
    pid: int = Field(default_factory=os.getpid)
    started_at: str = Field(default_factory=now_iso)
    timestamp: str = Field(
        default_factory=now_iso,
        description="Time of this write. Rewritten at least every heartbeat_interval_s while "
        "the run lives, so an older timestamp means the process is gone.",
    )
    heartbeat_interval_s: float = 10.0
    run_dir: str | None = None
    # progress
    current_step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    progress: float = Field(0.0, description="current_step / total_steps, 0..1.")
    elapsed_seconds: float = 0.0
    eta_seconds: float | None = Field(
        None, description="From the pace of steps done since this process (re)started."
    )
    resumed_from_step: int | None = None
    current_file: str | None = None
    batch_step: int = Field(0, description="Steps done on the current dataset file.")
    batch_total_steps: int = 0
    # latest metrics
    loss: float | None = None
    learning_rate: float | None = Field(None, description="Live value from the scheduler.")
    grad_norm: float | None = None
    tokens_per_sec: float | None = None
    method: str = Field("sft", description="The training method (trainer.methods).")
    stage: int | None = Field(None, description="In a curriculum: the running stage, from 1.")
    stage_count: int | None = Field(None, description="In a curriculum: how many stages it has.")
    method_metrics: dict[str, float | None] = Field(
        default_factory=dict,
        description="The method's own latest figures, as its trainer logs them: e.g. DPO's "
        "rewards/margins, rewards/accuracies, logps/chosen; SFT's mean_token_accuracy.",
    )
    rl_samples: list[RLSample] = Field(
        default_factory=list, description="RL methods: a few completions of the latest step, with their rewards."
    )
    win_rate: float | None = Field(
        None, description="The judge's latest win rate of the model's answers to the held-out prompts over the "
        "starting model's, 0..1 (ties count half); null until measured (inference.win_rate_every_steps)."
    )
    win_rates: list[WinRatePoint] = Field(default_factory=list, description="Every win-rate measurement, by step.")
    # data
    data: DataSummary = Field(default_factory=DataSummary)
    # latest preview, in the seed's flat names, then the recent ones
    current_prompt: str | None = None
    golden_answer: str | None = None
    model_answer: str | None = None
    answer_matches: bool | None = None
    recent_examples: list[Example] = Field(default_factory=list)
    total_evals: int = 0
    total_correct: int = 0
    total_format_ok: int = 0
    accuracy_percent: float | None = Field(None, description="total_correct / total_evals, 0-100.")
    format_ok_percent: float | None = None
    # outputs
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    final_model_path: str | None = None
    final_metrics: dict[str, Any] = Field(default_factory=dict)
    # failure
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = Field(None, description="Last lines of the traceback.")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of one.

    Temp file in the same folder (same filesystem, so the rename is atomic), fsync, os.replace.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; dashboards may run as another user
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # ASCII escapes: file names that are not valid UTF-8 (surrogates) still serialize
            json.dump(data, handle, indent=2, ensure_ascii=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TrainingStatusWriter:
    """Keeps the current :class:`TrainingStatus` and rewrites the file on every update.

    Only the main process should write: pass ``enabled=False`` on other ranks and every call
    becomes a no-op, so callers never branch on rank.
    """

    RECENT_EXAMPLES = 20

    def __init__(self, path: str | Path, enabled: bool = True, **initial: Any):
        self.path = Path(path)
        self.enabled = enabled
        self.status = TrainingStatus(**initial)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, **fields: Any) -> TrainingStatus:
        """Set fields (validated) and rewrite the file."""
        with self._lock:
            data = self.status.model_dump()
            data.update(without_nonfinite(fields))
            data["status"] = COARSE_STATUS[data["phase"]]
            data["timestamp"] = now_iso()
            self.status = TrainingStatus.model_validate(data)
            self._write()
            return self.status

    def set_phase(self, phase: Phase, **fields: Any) -> TrainingStatus:
        return self.update(phase=phase, **fields)

    def add_preview(self, example: Example) -> TrainingStatus:
        """Record one preview: the flat latest fields, the recent list and the running totals."""
        s = self.status
        evals = s.total_evals + 1
        correct = s.total_correct + bool(example.matches)
        format_ok = s.total_format_ok + example.format_ok
        recent = [*s.recent_examples, example][-self.RECENT_EXAMPLES :]
        return self.update(
            current_prompt=example.prompt,
            golden_answer=example.golden,
            model_answer=example.model_output,
            answer_matches=example.matches,
            recent_examples=recent,
            total_evals=evals,
            total_correct=correct,
            total_format_ok=format_ok,
            accuracy_percent=100.0 * correct / evals,
            format_ok_percent=100.0 * format_ok / evals,
        )

    def fail(self, error: BaseException, traceback_text: str | None, tail_lines: int = 30) -> None:
        """Phase failed with the error; ``traceback_text`` None for failures that are no bug."""
        tail = "\n".join(traceback_text.rstrip().splitlines()[-tail_lines:]) if traceback_text else None
        self.update(
            phase="failed", error_type=type(error).__name__, error_message=str(error), error_traceback=tail
        )

    def heartbeat(self) -> None:
        with self._lock:
            self.status.timestamp = now_iso()
            self._write()

    def start_heartbeat(self) -> None:
        """Rewrite the timestamp every ``heartbeat_interval_s`` from a daemon thread."""
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()  # a writer is reused across jobs (the daemon's runner, scripts)

        def beat() -> None:
            while not self._stop.wait(self.status.heartbeat_interval_s):
                self.heartbeat()

        self._thread = threading.Thread(target=beat, name="status-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def reset(self, **initial: Any) -> None:
        """Start a new run's status: nothing of the previous run carries over."""
        with self._lock:
            initial.setdefault("heartbeat_interval_s", self.status.heartbeat_interval_s)
            self.status = TrainingStatus(**initial)

    def _write(self) -> None:
        if not self.enabled:
            return
        try:
            write_json_atomic(self.path, self.status.model_dump(mode="json"))
        except OSError as exc:
            # Monitoring must never stop training: a full disk or a vanished folder costs a
            # status update, not the run.
            log.warning("could not write status file %s: %s", self.path, exc)


def read_status(path: str | Path) -> TrainingStatus | None:
    """The status in ``path``, or None when it does not exist yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return TrainingStatus.model_validate_json(text)


class JsonlLog:
    """Append-only JSON lines; each record flushed at once so a tailing reader sees whole lines."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def keep_steps_up_to(self, step: int) -> None:
        """Drop records of steps after ``step``: a resumed run redoes them, and each step
        should appear once in the history."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
        text = "".join(line + "\n" for line in kept)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)

    def append(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        nonfinite: list[str] = []
        record = without_nonfinite(record, nonfinite)
        if nonfinite:  # null alone would read as "not measured"; say it was NaN / Inf
            record["nonfinite"] = nonfinite
        line = json.dumps({"time": now_iso(), **record}, ensure_ascii=False, allow_nan=False)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
