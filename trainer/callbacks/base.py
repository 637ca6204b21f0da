"""What every named callback is: typed options, a check before anything loads, and a build
once the job's trainer exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainer.config.schema import CallbackOptions

if TYPE_CHECKING:
    from trainer.config.schema import TrainerConfig
    from trainer.core.context import JobContext
    from trainer.methods.base import Method
    from trainer.monitoring.preview_backend import PreviewBackend
    from trainer.trackers import TrackerSession


@dataclass
class CallbackJob:
    """What a callback may need from the job it joins (one per stage)."""

    context: JobContext
    trainer: Any  # the method's transformers / TRL trainer, built
    method: Method
    backend: PreviewBackend  # generates answers to the held-out prompts as previews do
    trackers: TrackerSession
    console_progress: Any  # our console-line callback, for a callback that replaces it
    save_tokenizer: Callable[[str], None]  # into a folder, with the saved template (the profile's system prompt)


class NamedCallback:
    """A callback of ``callbacks: [...]``: ``Options`` validates its entry; :meth:`check` says
    what it cannot run with under a config (``--validate`` and every job's start ask; keys are
    ``callbacks[i]``); :meth:`build` makes the TrainerCallback (None: the engine already does what
    it stands for, e.g. ``win_rate``)."""

    name: ClassVar[str]
    Options: ClassVar[type[CallbackOptions]]

    @classmethod
    def check(cls, config: TrainerConfig, options: Any, key: str) -> list[str]:
        return []

    @classmethod
    def build(cls, job: CallbackJob, options: Any) -> Any:
        raise NotImplementedError
