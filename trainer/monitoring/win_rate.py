"""Win rate against the starting model (seed 002's win-rate callback): every
``inference.win_rate_every_steps`` steps and at the end, the model answers the held-out prompts
(the probes) and the judge (``inference.judge``, ``trainer.judges``) compares each answer with the
starting model's answer to the same prompt. The win rate, ``(wins + ties / 2) / n``, goes to the
status file (``win_rate``, and every measurement in ``win_rates``), to ``metrics.jsonl`` (so the
dashboard charts it) and to the result's figures.

The starting model's answers are generated once, before the first step, and kept in the run
folder (``win_rate_start.json``), so a resumed run compares with the same answers, not with the
model it resumed from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from core.training_status import JsonlLog, TrainingStatusWriter, WinRatePoint, write_json_atomic
from trainer.judges import Judge, WinRate, judged_inputs, win_rate

START_ANSWERS = "win_rate_start.json"


class WinRateTracker:
    """The starting answers, and each measurement of the model's answers against them."""

    def __init__(self, judge: Judge, probes: list[Any], run_dir: Path, writer: TrainingStatusWriter, log: JsonlLog):
        self.judge, self.probes, self.writer, self.log = judge, probes, writer, log
        self.path = run_dir / START_ANSWERS
        self.start: list[str] | None = None

    def load_start(self) -> bool:
        """The starting answers a run saved before its first step (a resumed run): True if found."""
        try:
            saved = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return False
        if saved.get("prompts") != judged_inputs(self.probes)[0]:
            return False  # other probes: the saved answers are not theirs
        self.start = saved["answers"]
        return True

    def keep_start(self, answers: list[str]) -> None:
        self.start = answers
        if self.writer.enabled:
            write_json_atomic(self.path, {"prompts": judged_inputs(self.probes)[0], "answers": answers})

    def measure(self, step: int, answers: list[str]) -> WinRate:
        assert self.start is not None, "the starting answers come first"
        result = win_rate(self.judge, self.probes, answers, self.start)
        point = WinRatePoint(step=step, win_rate=result.rate, wins=result.wins, ties=result.ties, losses=result.losses)
        history = [p for p in self.writer.status.win_rates if p.step < step]
        self.writer.update(win_rate=result.rate, win_rates=[*history, point])
        self.log.append({"step": step, "win_rate": result.rate})
        return result


class WinRateCallback(TrainerCallback):
    """Every ``every`` steps (rank 0, not at the last step: the job's final evaluation measures
    it there), answer the probes and measure the win rate."""

    def __init__(self, tracker: WinRateTracker, backend: Any, every: int):
        self.tracker, self.backend, self.every = tracker, backend, every

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if not self.every or step % self.every or step >= state.max_steps or not state.is_world_process_zero:
            return
        self.tracker.writer.set_phase("evaluating")
        summary = self.backend.run(model, step, limit=len(self.tracker.probes))
        self.tracker.measure(step, [r.model_output for r in summary.records])
        self.tracker.writer.set_phase("training")
