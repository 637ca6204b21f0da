"""The hero: the best model so far, its versions, and the rule that decides a promotion.

::

    DIR/hero/versions/v0001/   promoted models, never modified
    DIR/hero/current.json      pointer to the current version, switched atomically
    DIR/hero/history.jsonl     every decision, promoted or not
    DIR/hero/rejected/<job>/   recent rejected candidates, kept for inspection
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from arena.jobs import IsoTime
from core.training_status import JsonlLog, now_iso, write_json_atomic
from trainer.config.schema import DaemonSection


class EvalMetrics(BaseModel):
    """How a model does on a job's held-out rows."""

    n: int = 0
    format_rate: float = Field(0.0, description="Share of answers that follow the profile's format.")
    accuracy: float | None = Field(None, description="Share of right final answers, where known.")
    eval_loss: float | None = Field(None, description="Mean loss on the held-out answers.")
    win_rate: float | None = Field(
        None, description="A candidate's: how often the judge (inference.judge) preferred its answers to the hero's on "
        "the same held-out prompts, ties counting half; measured when daemon.min_win_rate is set."
    )


class HeroPointer(BaseModel):
    version: int
    path: str
    metrics: EvalMetrics
    promoted_at: IsoTime  # pointers of older daemons hold epoch seconds: read as ISO 8601
    job_id: str | None = None


def decide(candidate: EvalMetrics, hero: EvalMetrics, rules: DaemonSection) -> tuple[bool, list[str]]:
    """Promote unless the candidate is worse than the hero beyond a tolerance; say why not."""
    reasons = []
    if candidate.eval_loss is not None and not math.isfinite(candidate.eval_loss):
        reasons.append(f"eval loss is {candidate.eval_loss} (training diverged)")
    if candidate.format_rate < hero.format_rate - rules.format_tolerance:
        reasons.append(f"format compliance {candidate.format_rate:.2f} < hero {hero.format_rate:.2f} - {rules.format_tolerance}")
    if (
        candidate.accuracy is not None
        and hero.accuracy is not None
        and candidate.accuracy < hero.accuracy - rules.accuracy_tolerance
    ):
        reasons.append(f"accuracy {candidate.accuracy:.2f} < hero {hero.accuracy:.2f} - {rules.accuracy_tolerance}")
    if (
        candidate.eval_loss is not None
        and hero.eval_loss is not None
        and math.isfinite(hero.eval_loss)
        and candidate.eval_loss > hero.eval_loss * (1 + rules.loss_tolerance)
    ):
        reasons.append(f"eval loss {candidate.eval_loss:.4f} > hero {hero.eval_loss:.4f} x (1 + {rules.loss_tolerance})")
    if rules.min_win_rate is not None and candidate.win_rate is None:
        reasons.append("no win rate over the hero was measured (no held-out answers to judge), and daemon.min_win_rate asks for one")
    elif rules.min_win_rate is not None and candidate.win_rate < rules.min_win_rate:  # type: ignore[operator]
        reasons.append(f"win rate over the hero {candidate.win_rate:.2f} < {rules.min_win_rate} (daemon.min_win_rate)")
    return not reasons, reasons


class HeroStore:
    def __init__(self, root: Path, keep_rejected: int):
        self.root = root
        self.keep_rejected = keep_rejected
        self.history = JsonlLog(root / "history.jsonl")

    @property
    def pointer_file(self) -> Path:
        return self.root / "current.json"

    def current(self) -> HeroPointer | None:
        try:
            return HeroPointer.model_validate_json(self.pointer_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # damaged by hand: fall back to the newest version on disk
            versions = self._versions()
            if not versions:
                return None
            version, path = versions[-1]
            return HeroPointer(version=version, path=str(path), metrics=EvalMetrics(), promoted_at=path.stat().st_mtime)

    def _versions(self) -> list[tuple[int, Path]]:
        folder = self.root / "versions"
        found = [(int(p.name[1:]), p) for p in folder.glob("v[0-9]*") if p.name[1:].isdigit()] if folder.is_dir() else []
        return sorted(found)

    def promote(self, candidate: Path, metrics: EvalMetrics, job_id: str) -> HeroPointer:
        """Move the candidate model into a new version and switch ``current`` to it."""
        current = self.current()
        # Numbered past every folder on disk, not just the pointer: a crash between the move and
        # the pointer write must not make the next promotion collide with that folder.
        version = max([current.version if current else 0, *(v for v, _ in self._versions())]) + 1
        target = self.root / "versions" / f"v{version:04d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(candidate, target)  # same filesystem as the queue: an atomic move
        pointer = HeroPointer(version=version, path=str(target), metrics=metrics, promoted_at=now_iso(), job_id=job_id)
        write_json_atomic(self.pointer_file, pointer.model_dump(mode="json"))
        self.history.append({"job_id": job_id, "promoted": True, "version": version, "metrics": metrics.model_dump()})
        return pointer

    def reject(self, candidate: Path, metrics: EvalMetrics, job_id: str, reasons: list[str]) -> Path | None:
        """Keep the candidate under ``rejected/`` (the newest ``keep_rejected`` of them)."""
        self.history.append({"job_id": job_id, "promoted": False, "reasons": reasons, "metrics": metrics.model_dump()})
        if self.keep_rejected == 0:
            shutil.rmtree(candidate, ignore_errors=True)
            return None
        target = self.root / "rejected" / job_id
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(candidate, target)
        (target / "rejection.json").write_text(json.dumps({"reasons": reasons, "metrics": metrics.model_dump()}, indent=2))
        kept = sorted((p for p in target.parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[self.keep_rejected :]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def recent(self, count: int = 20) -> list[dict[str, Any]]:
        try:
            lines = (self.root / "history.jsonl").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        recent = []
        for line in lines[-count:]:
            try:
                recent.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a crash mid-append
        return recent
