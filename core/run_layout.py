"""The run directory's layout: the one place its file names are defined.

The engine writes these files, the data layer writes the report and rejects, the dashboard and
the daemon read them; all of them ask a :class:`RunLayout` instead of spelling a name. Light on
purpose (pathlib only), so readers such as the dashboard import it without the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


STAGE_PREFIX = "stage-"  # a curriculum's stage folders: stage-<N>-<method>


def stage_folder(index: int, method: str) -> str:
    """The folder name of a curriculum's stage ``index`` (from 1) training ``method``."""
    return f"{STAGE_PREFIX}{index}-{method.replace(':', '_').replace('.', '_')}"


@dataclass(frozen=True)
class RunLayout:
    """``outputs/<run name>/`` and what lives in it."""

    root: Path

    RESOLVED_CONFIG = "resolved_config.json"
    DATA_REPORT = "data_report.json"
    REJECTS = "rejects.jsonl"
    METRICS = "metrics.jsonl"
    PREVIEWS = "previews.jsonl"
    RESULT = "result.json"
    MODEL = "model"
    ADAPTER = "adapter"  # a LoRA run's adapters alone (trainer.models.lora)
    CHECKPOINT_PREFIX = "checkpoint-"

    @property
    def resolved_config(self) -> Path:
        """The job's config with each value's source, and its data files' digests."""
        return self.root / self.RESOLVED_CONFIG

    @property
    def data_report(self) -> Path:
        return self.root / self.DATA_REPORT

    @property
    def rejects(self) -> Path:
        """Every rejected row with file, line and reason (JSON lines)."""
        return self.root / self.REJECTS

    @property
    def metrics(self) -> Path:
        """Append-only metrics history, one line per log step."""
        return self.root / self.METRICS

    @property
    def previews(self) -> Path:
        return self.root / self.PREVIEWS

    @property
    def result(self) -> Path:
        """What the job produced (or why it failed)."""
        return self.root / self.RESULT

    @property
    def model(self) -> Path:
        """The final model and tokenizer, in Hugging Face format."""
        return self.root / self.MODEL

    @property
    def adapter(self) -> Path:
        """A LoRA run's adapters (peft's adapter folder), beside the model."""
        return self.root / self.ADAPTER

    def checkpoint(self, step: int) -> Path:
        return self.root / f"{self.CHECKPOINT_PREFIX}{step}"
