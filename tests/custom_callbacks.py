"""A user's own TrainerCallback, named in tests as callbacks: [{"name": "custom_callbacks:StepRecorder"}]."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback


class StepRecorder(TrainerCallback):
    """Writes each finished step and the given tag to ``path``, one JSON line each."""

    def __init__(self, path: str, tag: str = "mine"):
        self.path = Path(path)
        self.tag = tag

    def on_step_end(self, args, state, control, **kwargs):
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"step": state.global_step, "tag": self.tag}) + "\n")


NOT_A_CALLBACK = object()
