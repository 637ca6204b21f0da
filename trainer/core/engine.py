"""Layer 1: ``TrainerEngine(status_writer).run_job(config) -> JobResult``.

The one training path: the CLI, ``core/train.py`` and the daemon all come here. A job walks the
phases initializing -> preparing_data -> loading_model -> training (-> evaluating) -> saving ->
completed, writing each to the status file; any failure, including one while loading the model or
preparing data, ends in phase ``failed`` with the error and a traceback tail.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from core.training_status import DataSummary, TrainingStatusWriter
from trainer.config.schema import TrainerConfig
from trainer.core.resume import RESOLVED_CONFIG_FILE, RunPlan, data_fingerprint, plan_run
from trainer.data.prepare import PreparedData, Probe, prepare_data
from trainer.core.divergence import TrainingDiverged
from trainer.monitoring.callbacks import StopOnSignalCallback
from trainer.monitoring.formatting import format_number
from trainer.profiles import DataProfile, get_profile

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
PREVIEWS_FILE = "previews.jsonl"
RESULT_FILE = "result.json"
MODEL_DIR = "model"


def is_main_process() -> bool:
    """Rank 0 (or a single process): the only one that writes status, logs and files."""
    return int(os.environ.get("RANK", "0")) == 0


class JobStopped(Exception):
    """Training stopped on SIGTERM / Ctrl-C after saving a checkpoint; resume continues it."""

    def __init__(self, signum: int, checkpoint: str | None):
        self.signum = signum
        self.checkpoint = checkpoint
        super().__init__(f"stopped by signal {signum}; checkpoint {checkpoint or 'none'}")


@dataclass
class JobResult:
    """What a finished job produced."""

    run_dir: Path
    model_path: Path | None
    final_metrics: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    probes: list[Probe] = field(default_factory=list, repr=False)  # held-out prompts, for evaluation

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "model_path": str(self.model_path) if self.model_path else None,
            "final_metrics": self.final_metrics,
            "dry_run": self.dry_run,
        }


@dataclass
class _Session:
    """What one job works with, built step by step (kept together to pass around)."""

    config: TrainerConfig
    plan: RunPlan
    writer: TrainingStatusWriter
    profile: DataProfile
    console: TextIO
    stopper: StopOnSignalCallback
    tokenizer: Any = None
    template: str = ""
    end_token: str = ""
    eos_ids: set[int] = field(default_factory=set)
    data: PreparedData | None = None

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir


class TrainerEngine:
    """Runs jobs. ``status_writer`` defaults to one writing ``config.system.status_file``."""

    def __init__(self, status_writer: TrainingStatusWriter | None = None, console: TextIO | None = None):
        self.status_writer = status_writer
        self.console = console or sys.stdout

    def run_job(self, config: TrainerConfig, sources: dict[str, str] | None = None) -> JobResult:
        """Train (or, with ``debug.dry_run``, only prepare data) and return the result.

        Raises:
            DataError: the data cannot be trained on (too many bad rows, none left).
            JobStopped: stopped by a signal after saving a checkpoint.
            Exception: anything else, after the status file records it as ``failed``.
        """
        plan = plan_run(config)  # raises ConfigError before anything is written
        run_dir = plan.run_dir
        writer = self.status_writer or TrainingStatusWriter(
            config.resolve_path(config.system.status_file), enabled=is_main_process()
        )
        writer.reset(
            run_id=uuid.uuid4().hex[:12],
            run_name=run_dir.name,
            model_name=config.model.path,
            profile=config.profile.name,
            run_dir=str(run_dir),
            current_file=str(config.data.dataset_path[0]),
            started_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        )
        writer.set_phase("initializing")
        writer.start_heartbeat()
        # SIGTERM / Ctrl-C are ours for the whole job: during training they end in a checkpoint,
        # elsewhere at the next phase boundary; either way in phase "stopped", never half-saved.
        stopper = StopOnSignalCallback()
        stopper.install()
        try:
            profile = get_profile(config.profile.name, config.profile.options)
            session = _Session(config, plan, writer, profile, self.console, stopper)
            return self._run(session, sources or {})
        except JobStopped:
            raise
        except TrainingDiverged as exc:  # a failed run, but no bug: the message says it all
            writer.fail(exc, None)
            raise
        except BaseException as exc:
            writer.fail(exc, traceback.format_exc())
            raise
        finally:
            stopper.restore()
            writer.stop_heartbeat()

    def _run(self, s: _Session, sources: dict[str, str]) -> JobResult:
        if s.plan.note:
            print(s.plan.note, file=s.console, flush=True)
        s.run_dir.mkdir(parents=True, exist_ok=True)
        if s.writer.enabled:  # rank 0 only
            record = {
                "config": s.config.model_dump(mode="json"),
                "sources": sources,
                "data_files": data_fingerprint(s.config),  # what a later resume must find again
            }
            (s.run_dir / RESOLVED_CONFIG_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False), "utf-8")
        s.writer.set_phase("preparing_data")
        folder = self._prepare(s)
        stop_if_asked(s)
        report = s.data.report
        print("\n".join(report.summary_lines()), file=s.console, flush=True)
        if s.config.debug.dry_run:
            self._print_samples(s)
            s.writer.set_phase("completed", final_metrics={"dry_run": True})
            return JobResult(s.run_dir, None, {"dry_run": True}, dry_run=True)
        from trainer.core.training import train_and_save

        return train_and_save(s, folder)

    def _prepare(self, s: _Session) -> Path:
        import datasets
        import transformers

        # Library progress bars would interleave with our progress lines; the status file and
        # the console callback report progress instead.
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        from trainer.models.loading import load_tokenizer, model_folder
        from trainer.models.templates import choose_chat_template, end_of_turn_token

        folder = model_folder(s.config)
        s.tokenizer = load_tokenizer(folder, s.config)
        s.template = choose_chat_template(s.tokenizer, s.config.model.chat_template, s.config.resolve_path)
        s.tokenizer.chat_template = s.template
        s.end_token = end_of_turn_token(s.template, s.tokenizer) or s.tokenizer.eos_token
        s.eos_ids = {s.tokenizer.convert_tokens_to_ids(s.end_token), s.tokenizer.eos_token_id}
        s.data = prepare_data(
            s.config, s.tokenizer, s.profile, s.template, s.eos_ids, s.run_dir, write_outputs=s.writer.enabled
        )
        report = s.data.report
        s.writer.update(
            data=DataSummary(
                rows_total=report.rows_total,
                rows_used=report.rows_used,
                rows_rejected=report.rows_rejected,
                rows_truncated=report.rows_truncated,
                rows_held_out=report.rows_held_out,
                rows_held_out_copies=report.rows_held_out_copies,
                rows_duplicate=report.rows_duplicate,
                trainable_token_fraction=report.trainable_token_fraction,
                rejects_file=report.rejects_file,
                report_file=str(s.run_dir / "data_report.json"),
                cache_hit=report.cache_hit,
            )
        )
        return folder

    def _print_samples(self, s: _Session) -> None:
        for index, sample in enumerate(s.data.report.samples, start=1):
            print(f"\n--- example {index} (trained text between [[ and ]]) ---\n{sample}", file=s.console)


def stop_if_asked(s: _Session, checkpoint: str | None = None) -> None:
    """At a phase boundary: if a stop signal came, record phase stopped and raise JobStopped."""
    if s.stopper.received is not None:
        s.writer.set_phase("stopped", error_message=f"stopped by signal {s.stopper.received}")
        raise JobStopped(s.stopper.received, checkpoint)


def probes_for(config: TrainerConfig, profile: DataProfile, data: PreparedData) -> list[Probe]:
    """Fixed prompts from the config if given, else the held-out rows."""
    if not config.inference.probe_prompts:
        return data.probes[: config.inference.num_probes]
    system = profile.format_system_prompt(config.profile.system_prompt)
    return [
        Probe([{"role": "system", "content": system}, {"role": "user", "content": prompt}], None, "", "config")
        for prompt in config.inference.probe_prompts
    ]


def format_summary(result: JobResult) -> str:
    m = result.final_metrics
    lines = [
        f"loss: {format_number(m.get('loss_start'))} at start -> {format_number(m.get('loss_end'))} at end "
        "(last step)",
        f"held-out probes: {m.get('probes_format_ok', 0)}/{m.get('probes', 0)} follow the format, "
        f"{m.get('probes_correct', 0)}/{m.get('probes', 0)} answers right",
        f"model saved to {result.model_path}",
    ]
    return "\n".join(lines)
