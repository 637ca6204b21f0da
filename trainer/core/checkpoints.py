"""Run directories and checkpoints: where a run lives, and which checkpoint a resume can trust."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from trainer.config.schema import TrainerConfig

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# transformers writes trainer_state.json after the weights, optimizer, scheduler and RNG state,
# so its presence (and parseability) marks a checkpoint whose save finished.
REQUIRED_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def is_complete_checkpoint(folder: Path) -> bool:
    if not all((folder / name).is_file() for name in REQUIRED_FILES):
        return False
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
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


def resolve_run_dir(config: TrainerConfig) -> Path:
    """``output_dir/run_name``; without a run name, ``<profile>-<time>``, except that
    ``--resume auto`` without a run name continues the newest run that has a checkpoint."""
    root = config.resolve_path(config.output.output_dir)
    if config.output.run_name:
        return root / config.output.run_name
    if config.output.resume == "auto" and root.is_dir():
        runs = [p for p in root.iterdir() if p.is_dir() and find_resumable_checkpoint(p)]
        if runs:
            return max(runs, key=lambda p: p.stat().st_mtime)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"{config.profile.name.replace('+', '_').replace(':', '_')}-{stamp}"


def resume_checkpoint(config: TrainerConfig, run_dir: Path) -> Path | None:
    """The checkpoint to resume from per ``output.resume`` (None: start fresh)."""
    if config.output.resume is None:
        return None
    if config.output.resume == "auto":
        return find_resumable_checkpoint(run_dir)
    return config.resolve_path(config.output.resume)
