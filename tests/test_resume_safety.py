"""A resume never touches another run: ambiguous or mismatched resumes are refused before any
file is written, with the candidates and the keys that differ."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobkit import CLI, REPO, job_values, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, builtin_cache) -> Path:
    """outputs/alpha: a real 4-step run with checkpoints at steps 2 and 4."""
    from trainer.config import create_default_config
    from trainer.core import TrainerEngine

    root = tmp_path_factory.mktemp("resume")
    config = create_default_config(overrides=_values(root, builtin_cache, **{"output.run_name": "alpha"}))
    TrainerEngine().run_job(config)
    return root / "outputs" / "alpha"


def _values(root: Path, builtin_cache: Path, **extra) -> dict:
    return job_values(
        root,
        builtin_cache,
        **{
            "hyperparams.max_steps": 4,
            "output.save_steps": 2,
            "inference.preview_every_steps": 0,
            "inference.num_probes": 1,
            "inference.max_new_tokens": 4,
            **extra,
        },
    )


@pytest.fixture
def workspace(tmp_path, trained_run, builtin_cache):
    """A copy of the trained run's folder tree, and a job config that matches it."""
    source_root = trained_run.parent.parent
    shutil.copy(source_root / "train.jsonl", tmp_path / "train.jsonl")
    shutil.copytree(trained_run, tmp_path / "outputs" / "alpha")
    saved = tmp_path / "outputs" / "alpha" / "resolved_config.json"
    # The copy's config names the copied files, as if it had been trained here.
    saved.write_text(saved.read_text().replace(str(source_root), str(tmp_path)))
    record = json.loads(saved.read_text())
    assert record["data_files"] == {str(tmp_path / "train.jsonl"): next(iter(record["data_files"].values()))}
    values = _values(tmp_path, builtin_cache)
    del values["output.run_name"]
    return tmp_path, values


def _cli(tmp_path: Path, values: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLI), "--config", str(write_config(tmp_path, values)), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_auto_resume_refuses_a_run_trained_on_other_data(workspace):
    tmp_path, values = workspace
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join((tmp_path / "train.jsonl").read_text().splitlines()[:200]) + "\n")
    values["data.dataset_path"] = [str(other)]
    before = _snapshot(tmp_path / "outputs" / "alpha")
    for mode in (["--validate"], []):
        proc = _cli(tmp_path, values, "--resume", "auto", *mode)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert "--resume auto found no run in" in proc.stderr and "--run-name NAME" in proc.stderr
        assert "alpha (newest checkpoint-4" in proc.stderr
        # a long value keeps both its ends: the file names show however deep the folder is
        changed = next(line for line in proc.stderr.splitlines() if "data.dataset_path: was [" in line)
        was, now = changed.split("data.dataset_path: was ", 1)[1].split(", now ")
        for shown, path in ((was, tmp_path / "train.jsonl"), (now.rstrip(), other)):
            full = json.dumps([str(path)])
            assert shown == full or (shown.startswith(full[:38]) and shown.endswith(full[-39:]) and len(shown) == 80), shown
    assert _snapshot(tmp_path / "outputs" / "alpha") == before  # not one byte of it touched
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["alpha"]


def test_auto_resume_refuses_when_ambiguous(workspace):
    tmp_path, values = workspace
    shutil.copytree(tmp_path / "outputs" / "alpha", tmp_path / "outputs" / "beta")
    proc = _cli(tmp_path, values, "--resume", "auto", "--validate")
    assert proc.returncode == 2
    assert "--resume auto is ambiguous: 2 runs in" in proc.stderr
    assert "alpha (newest checkpoint-4" in proc.stderr and "beta (newest checkpoint-4" in proc.stderr


def test_auto_resume_picks_the_one_matching_run(workspace):
    """Of two runs, only one trained like this config: that one is continued, and says so."""
    tmp_path, values = workspace
    shutil.copytree(tmp_path / "outputs" / "alpha", tmp_path / "outputs" / "beta")
    saved = tmp_path / "outputs" / "beta" / "resolved_config.json"
    record = json.loads(saved.read_text())
    record["config"]["hyperparams"]["batch_size"] = 4
    saved.write_text(json.dumps(record))
    (tmp_path / "outputs" / "beta").touch()  # the newest: the old rule would have taken it
    beta = _snapshot(tmp_path / "outputs" / "beta")
    proc = _cli(tmp_path, values, "--resume", "auto", "--max-steps", "6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--resume auto: alpha is the only run whose config matches this one" in proc.stdout
    assert f"resuming from {tmp_path / 'outputs' / 'alpha' / 'checkpoint-4'}" in proc.stdout
    assert (tmp_path / "outputs" / "alpha" / "checkpoint-6").is_dir()
    assert _snapshot(tmp_path / "outputs" / "beta") == beta


def test_named_resume_refuses_other_settings_and_names_the_keys(workspace):
    tmp_path, values = workspace
    values.update({"hyperparams.batch_size": 4, "data.max_length": 128})
    proc = _cli(tmp_path, values, "--run-name", "alpha", "--resume", "auto")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"output.resume: {tmp_path / 'outputs' / 'alpha'} was trained with other settings" in proc.stderr
    assert "data.max_length: was 1024, now 128" in proc.stderr
    assert "hyperparams.batch_size: was 8, now 4" in proc.stderr


def test_named_resume_refuses_when_the_data_files_changed(workspace):
    tmp_path, values = workspace
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(data.read_text().splitlines()[:-1]) + "\n")
    proc = _cli(tmp_path, values, "--run-name", "alpha", "--resume", "auto", "--validate")
    assert proc.returncode == 2
    assert f"data files (contents): changed since that run ({data})" in proc.stderr


def test_auto_resume_without_a_checkpoint_says_it_starts_fresh(workspace):
    tmp_path, values = workspace
    proc = _cli(tmp_path, values, "--run-name", "new", "--resume", "auto", "--max-steps", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"--resume auto: no complete checkpoint in {tmp_path / 'outputs' / 'new'}; starting fresh" in proc.stdout
    assert (tmp_path / "outputs" / "new" / "model").is_dir()


def test_resume_from_a_checkpoint_path_continues_its_run(workspace):
    tmp_path, values = workspace
    checkpoint = tmp_path / "outputs" / "alpha" / "checkpoint-2"
    proc = _cli(tmp_path, values, "--resume", str(checkpoint))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {checkpoint}" in proc.stdout
    assert json.loads((tmp_path / "outputs" / "alpha" / "result.json").read_text())["final_metrics"]["steps"] == 4
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["alpha"]
    # a run folder is not a checkpoint: the message points at the checkpoint inside it
    proc = _cli(tmp_path, values, "--resume", str(tmp_path / "outputs" / "alpha"), "--validate")
    assert proc.returncode == 2
    assert f"is a run folder, not a checkpoint; did you mean --resume {tmp_path / 'outputs' / 'alpha' / 'checkpoint-4'}?" in proc.stderr
