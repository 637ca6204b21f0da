"""Checkpoints: which folders of a run are checkpoints, and which one a resume can trust."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.run_layout import RunLayout

CHECKPOINT_RE = re.compile(rf"^{RunLayout.CHECKPOINT_PREFIX}(\d+)$")
# transformers writes trainer_state.json after the weights, optimizer, scheduler and RNG state,
# so its presence (and parseability) marks a checkpoint whose save finished.
REQUIRED_FILES = ("trainer_state.json", "scheduler.pt")
# The optimizer state: the trainer's own file, or FSDP's (optimizer.bin); DeepSpeed keeps it with
# the weights in global_step*/ (both layouts are transformers'; not run here, no GPU was lent).
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")
# (a LoRA run's checkpoints hold its adapters: trainer.models.lora)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "adapter_model.safetensors")
SHARDED_WEIGHTS = ("pytorch_model_fsdp*", "global_step*")


def is_complete_checkpoint(folder: Path) -> bool:
    if not all((folder / name).is_file() for name in REQUIRED_FILES):
        return False
    sharded = any(any(folder.glob(pattern)) for pattern in SHARDED_WEIGHTS) if folder.is_dir() else False
    if not sharded and not any((folder / name).is_file() for name in OPTIMIZER_FILES):
        return False
    if not sharded and not any((folder / name).is_file() for name in WEIGHT_FILES):
        return False
    try:
        state = json.loads((folder / "trainer_state.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, newest (highest step) first."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)), reverse=True)


def find_resumable_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, skipping partial or corrupt ones."""
    return next((c for c in checkpoints(run_dir) if is_complete_checkpoint(c)), None)
