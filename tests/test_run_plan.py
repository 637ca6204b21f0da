"""Run folders: a fresh run never lands in an existing folder; resume plans without training."""

from __future__ import annotations

from datetime import datetime

import pytest

from trainer.config import ConfigError, create_default_config
from trainer.core import resume


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 12, 1, 8, 0, 0)


def test_two_fresh_runs_in_one_second_get_two_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "datetime", _FixedClock)
    config = create_default_config(output_dir=str(tmp_path), profile="regime3")
    first = resume.plan_run(config).run_dir
    assert first == tmp_path / "regime3-20261201-080000"
    first.mkdir()
    second = resume.plan_run(config).run_dir
    assert second == tmp_path / "regime3-20261201-080000-2"


def test_a_fresh_named_run_refuses_a_folder_with_checkpoints(tmp_path):
    (tmp_path / "run" / "checkpoint-4").mkdir(parents=True)
    config = create_default_config(output_dir=str(tmp_path), run_name="run")
    with pytest.raises(ConfigError, match="already holds checkpoints of an earlier run"):
        resume.plan_run(config)


def test_auto_resume_with_nothing_to_resume_starts_fresh_and_says_so(tmp_path):
    config = create_default_config(output_dir=str(tmp_path), overrides={"output.resume": "auto"})
    plan = resume.plan_run(config)
    assert plan.checkpoint is None and plan.note.startswith(f"--resume auto: no run in {tmp_path} has a checkpoint; starting fresh as ")
