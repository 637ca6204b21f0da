"""Layer 1: ``TrainerEngine(status_writer).run_job(config) -> JobResult``.

The one training path: the CLI, ``core/train.py`` and the daemon all come here. A job walks the
phases initializing -> preparing_data -> loading_model -> training (-> evaluating) -> saving ->
completed, writing each to the status file; any failure, including one while loading the model or
preparing data, ends in phase ``failed`` with the error and a traceback tail. The engine knows no
training method by name: ``trainer.core.training`` asks the method registry for the trainer.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
import uuid
from datetime import datetime
from typing import TextIO

from core import distributed
from core.training_status import DataSummary, TrainingStatusWriter
from trainer.config.errors import ConfigError
from trainer.config.schema import TrainerConfig
from core.run_layout import RunLayout
from trainer.core.context import JobContext, JobResult, JobStopped, Tokenization, is_main_process
from trainer.core.curriculum import run_curriculum
from trainer.core.divergence import TrainingDiverged
from trainer.core.out_of_box import fill_in
from trainer.core.resume import data_fingerprint, plan_run
from trainer.core.training import train_and_save
from trainer.data.prepare import prepare_data
from trainer.methods import get_method
from trainer.monitoring.callbacks import StopOnSignalCallback
from trainer.profiles import get_profile

log = logging.getLogger(__name__)


class TrainerEngine:
    """Runs jobs. ``status_writer`` defaults to one writing ``config.system.status_file``."""

    def __init__(self, status_writer: TrainingStatusWriter | None = None, console: TextIO | None = None):
        self.status_writer = status_writer
        # with several processes only rank 0 talks (the others' lines would repeat its own)
        self.console = console or (sys.stdout if is_main_process() else open(os.devnull, "w"))

    def run_job(self, config: TrainerConfig, sources: dict[str, str] | None = None) -> JobResult:
        """Train (or, with ``debug.dry_run``, only prepare data) and return the result; a
        config with ``stages`` runs them in order (``trainer.core.curriculum``).

        Raises:
            ConfigError: the run folder or resume is refused (before anything is written).
            DataError: the data cannot be trained on (too many bad rows, none left).
            JobStopped: stopped by a signal after saving a checkpoint.
            TrainingDiverged: the loss, gradients or weights went non-finite.
            Exception: anything else, after the status file records it as ``failed``.
        """
        config, notes = fill_in(config)
        for note in notes:
            print(f"out of the box: {note}", file=self.console, flush=True)
        if notes:
            sources = {**(sources or {}), "out_of_box": "; ".join(notes)}
        if not config.stages:
            return self.run_single(config, sources)
        plan = distributed.agree(lambda: plan_run(config))  # raises ConfigError before anything is written
        if plan.note:
            print(plan.note, file=self.console, flush=True)
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            self._write_resolved(config, plan.run_dir, sources or {})
        return run_curriculum(self, config, plan.run_dir, sources or {})

    def run_single(
        self, config: TrainerConfig, sources: dict[str, str] | None = None, stage: tuple[int, int] | None = None
    ) -> JobResult:
        """One run (one method); ``stage`` = (i, n) when it is stage i of a curriculum of n."""
        # rank 0 plans, for every rank (core.distributed): raises ConfigError before anything is written
        plan = distributed.agree(lambda: plan_run(config))
        problems = get_method(config.method).check(config)  # what --validate says, for API callers too
        if problems:
            raise ConfigError(problems)
        run_dir = plan.run_dir
        writer = self.status_writer or TrainingStatusWriter(
            config.resolve_path(config.system.status_file), enabled=is_main_process()
        )
        writer.reset(
            run_id=uuid.uuid4().hex[:12],
            run_name=run_dir.name,
            model_name=config.model.path,
            profile=config.profile.name,
            method=config.method.name,
            stage=stage[0] if stage else None,
            stage_count=stage[1] if stage else None,
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
            context = JobContext(config, plan, writer, profile, self.console, stopper)
            return self._run(context, sources or {})
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

    def _run(self, s: JobContext, sources: dict[str, str]) -> JobResult:
        if s.plan.note:
            print(s.plan.note, file=s.console, flush=True)
        s.run_dir.mkdir(parents=True, exist_ok=True)
        if s.writer.enabled:  # rank 0 only
            self._write_resolved(s.config, s.run_dir, sources)
        s.writer.set_phase("preparing_data")
        self._prepare(s)
        s.stop_if_asked()
        report = s.data.report
        print("\n".join(report.summary_lines()), file=s.console, flush=True)
        if s.config.debug.dry_run:
            self._print_samples(s)
            s.writer.set_phase("completed", final_metrics={"dry_run": True})
            return JobResult(s.run_dir, None, {"dry_run": True}, dry_run=True)
        return train_and_save(s)

    @staticmethod
    def _write_resolved(config: TrainerConfig, run_dir, sources: dict[str, str]) -> None:
        record = {
            "config": config.model_dump(mode="json"),
            "sources": sources,
            "data_files": data_fingerprint(config),  # what a later resume must find again
        }
        RunLayout(run_dir).resolved_config.write_text(json.dumps(record, indent=2, ensure_ascii=False), "utf-8")

    def _prepare(self, s: JobContext) -> None:
        import datasets
        import transformers

        # Library progress bars would interleave with our progress lines; the status file and
        # the console callback report progress instead.
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        from trainer.models.loading import load_tokenizer, model_folder
        from trainer.models.templates import choose_chat_template, end_of_turn_token

        s.model_folder = model_folder(s.config)
        tokenizer = load_tokenizer(s.model_folder, s.config)
        template = choose_chat_template(tokenizer, s.config.model.chat_template, s.config.resolve_path)
        tokenizer.chat_template = template
        end_token = end_of_turn_token(template, tokenizer) or tokenizer.eos_token
        eos_ids = {tokenizer.convert_tokens_to_ids(end_token), tokenizer.eos_token_id}
        s.tokens = Tokenization(tokenizer, template, end_token, eos_ids)
        with distributed.main_first():  # rank 0 prepares; the others read its cache
            s.data = prepare_data(
                s.config,
                tokenizer,
                s.profile,
                template,
                eos_ids,
                s.run_dir,
                write_outputs=s.writer.enabled,
                shape=get_method(s.config.method).data_shape,
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
                report_file=str(s.layout.data_report),
                cache_hit=report.cache_hit,
            )
        )

    def _print_samples(self, s: JobContext) -> None:
        for index, sample in enumerate(s.data.report.samples, start=1):
            print(f"\n--- example {index} (trained text between [[ and ]]) ---\n{sample}", file=s.console)
