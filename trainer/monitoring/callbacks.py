"""Hugging Face ``TrainerCallback``s: status file, console progress, previews, graceful stop.

Monitoring never branches the training loop: each callback returns at once on ranks other than
0, and the status writer itself is a no-op where disabled.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from core import distributed
from core.training_status import Checkpoint, JsonlLog, TrainingStatusWriter, now_iso
from trainer.monitoring.formatting import format_duration, format_number
from trainer.monitoring.preview_backend import PreviewBackend, PreviewSummary


class Pace:
    """Step timing since this process (re)started, so the ETA stays right after a resume."""

    def __init__(self) -> None:
        self.start_time = time.monotonic()
        self.start_step: int | None = None
        self.last_time = self.start_time
        self.last_tokens: float | None = None

    def begin(self, step: int) -> None:
        self.start_step = step
        self.start_time = self.last_time = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start_time

    def eta(self, step: int, total: int) -> float | None:
        done = step - (self.start_step or 0)
        if done <= 0 or total <= 0:
            return None
        return max(0.0, (total - step) * self.elapsed() / done)

    def tokens_per_sec(self, total_tokens: float | None) -> float | None:
        """From TRL's running ``num_tokens`` count between two logs."""
        now = time.monotonic()
        rate = None
        if total_tokens is not None and self.last_tokens is not None and now > self.last_time:
            rate = (total_tokens - self.last_tokens) / (now - self.last_time)
        self.last_time, self.last_tokens = now, total_tokens
        return rate


# Log keys with a field of their own in the status; every other number a trainer logs is the
# method's own figure (status.method_metrics).
COMMON_LOG_KEYS = {"loss", "learning_rate", "grad_norm", "epoch", "num_tokens", "step"}


class StatusCallback(TrainerCallback):
    """Progress, metrics and checkpoints into the status file and ``metrics.jsonl``."""

    def __init__(self, writer: TrainingStatusWriter, metrics: JsonlLog, pace: Pace):
        self.writer = writer
        self.metrics = metrics
        self.pace = pace

    def on_train_begin(self, args, state, control, **kwargs):
        self.pace.begin(state.global_step)
        if not state.is_world_process_zero:
            return
        self.writer.set_phase(
            "training",
            current_step=state.global_step,
            total_steps=state.max_steps,
            batch_step=state.global_step,
            batch_total_steps=state.max_steps,
            resumed_from_step=state.global_step or None,
            progress=state.global_step / state.max_steps if state.max_steps else 0.0,
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        eta = self.pace.eta(state.global_step, state.max_steps)
        rate = self.pace.tokens_per_sec(logs.get("num_tokens"))
        self.writer.update(
            current_step=state.global_step,
            batch_step=state.global_step,
            epoch=float(state.epoch or 0.0),
            progress=state.global_step / state.max_steps if state.max_steps else 0.0,
            elapsed_seconds=round(self.pace.elapsed(), 2),
            eta_seconds=None if eta is None else round(eta, 1),
            loss=loss,
            learning_rate=logs.get("learning_rate"),
            grad_norm=logs.get("grad_norm"),
            tokens_per_sec=None if rate is None else round(rate, 1),
            method_metrics={
                k: float(v) for k, v in logs.items() if k not in COMMON_LOG_KEYS and isinstance(v, (int, float))
            },
            **({"rl_samples": [{"step": state.global_step, **x} for x in logs["samples"]]} if logs.get("samples") else {}),
        )
        self.metrics.append({"step": state.global_step, "epoch": state.epoch, "tokens_per_sec": rate, **logs})

    def on_train_end(self, args, state, control, **kwargs):
        # the last steps after the last log step count too (max_steps 9, logging every 2)
        if state.is_world_process_zero:
            self.writer.update(
                current_step=state.global_step,
                batch_step=state.global_step,
                progress=state.global_step / state.max_steps if state.max_steps else 0.0,
            )

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        kept = [c for c in self.writer.status.checkpoints if Path(c.path).exists() and c.path != str(path)]
        kept.append(Checkpoint(step=state.global_step, path=str(path), time=now_iso()))
        self.writer.update(checkpoints=kept)


class ConsoleProgressCallback(TrainerCallback):
    """One line per log step: step, loss, lr, tokens/s, ETA."""

    def __init__(self, pace: Pace, stream: Any = None):
        self.pace = pace
        self.stream = stream or sys.stdout

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        eta = self.pace.eta(state.global_step, state.max_steps)
        eta_text = format_duration(eta)
        pct = 100 * state.global_step / state.max_steps if state.max_steps else 0
        print(
            f"step {state.global_step:>5}/{state.max_steps} ({pct:3.0f}%)  loss {format_number(logs['loss'])}  "
            f"lr {format_number(logs.get('learning_rate'), '.2e')}  ETA {eta_text}",
            file=self.stream,
            flush=True,
        )


class PreviewCallback(TrainerCallback):
    """Every ``every`` steps, answer the probes and record them (status + ``previews.jsonl``)."""

    def __init__(self, backend: PreviewBackend, writer: TrainingStatusWriter, log: JsonlLog, every: int):
        self.backend = backend
        self.writer = writer
        self.log = log
        self.every = every

    def record(self, summary: PreviewSummary) -> None:
        for record in summary.records:
            self.writer.add_preview(record)
            self.log.append(record.model_dump())

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.every or state.global_step % self.every or not self.backend.probes:
            return
        if state.global_step >= state.max_steps:
            return  # the job's final evaluation answers the probes at this step
        if not state.is_world_process_zero:
            return
        self.writer.set_phase("evaluating")
        loss = self.writer.status.loss
        self.record(self.backend.run(model, state.global_step, loss=loss))
        self.writer.set_phase("training")


class StopOnSignalCallback(TrainerCallback):
    """SIGTERM / Ctrl-C: finish the current step, save a checkpoint, stop training.

    Installing the handlers is this object's job (``install`` / ``restore``) so the engine can
    tell afterwards whether the run stopped on a signal.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with whoever owns them
                return

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signum

    def on_step_end(self, args, state, control, **kwargs):
        # with several processes, a signal one rank got stops them all after this same step
        if distributed.any_rank(self.received is not None):
            self.received = self.received or signal.SIGTERM
            control.should_save = True
            control.should_training_stop = True
