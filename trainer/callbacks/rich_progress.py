"""``rich_progress``: TRL's Rich progress bar and live table of the logged figures, in place of the
engine's console lines."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from pydantic import Field

from trainer.callbacks.base import CallbackJob, NamedCallback
from trainer.config.schema import CallbackOptions


class RichProgressOptions(CallbackOptions):
    name: Literal["rich_progress"] = Field("rich_progress", description="TRL's Rich progress display instead of console lines.")


class RichProgress(NamedCallback):
    name = "rich_progress"
    Options = RichProgressOptions

    @classmethod
    def check(cls, config: Any, options: Any, key: str) -> list[str]:
        if importlib.util.find_spec("rich") is None:
            return [f"{key}: rich_progress needs the rich package: pip install rich"]
        return []

    @classmethod
    def build(cls, job: CallbackJob, options: Any) -> Any:
        from trl import RichProgressCallback

        job.trainer.remove_callback(job.console_progress)  # one progress display, not two
        return RichProgressCallback()
