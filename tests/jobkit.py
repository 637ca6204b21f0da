"""Helpers for tests that run real jobs on the tiny model: a small job config, the CLI as a child
process, waiting on a running one. Imported by the end-to-end test modules (tests/ is on the path)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / "trainer" / "cli_main.py"
BUNDLED = REPO / "data" / "arithmetic_train.jsonl"
SCHEMA = REPO / "schemas" / "training_status.schema.json"


def job_values(tmp_path: Path, builtin_cache: Path, **overrides) -> dict:
    data = tmp_path / "train.jsonl"
    if not data.exists():
        data.write_text("\n".join(BUNDLED.read_text().splitlines()[:300]) + "\n")
    return {
        "system.base_dir": str(tmp_path),
        "system.status_file": str(tmp_path / "status.json"),
        "model.builtin_cache": str(builtin_cache),
        "data.dataset_path": [str(data)],
        "data.holdout_size": 4,
        "data.cache_dir": str(tmp_path / "cache"),
        "hyperparams.batch_size": 8,
        "hyperparams.learning_rate": 3e-3,
        "hyperparams.max_steps": 12,
        "hyperparams.warmup_steps": 2,
        "hyperparams.logging_steps": 2,
        "inference.preview_every_steps": 6,
        "inference.num_probes": 4,
        "inference.max_new_tokens": 24,
        "output.output_dir": str(tmp_path / "outputs"),
        "output.run_name": "run",
        "output.save_steps": 6,
        **overrides,
    }


def write_config(tmp_path: Path, values: dict) -> Path:
    nested: dict = {}
    for path, value in values.items():
        node = nested
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = tmp_path / "job.json"
    path.write_text(json.dumps(nested))
    return path


def cli(config: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CLI), "--config", str(config), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )



def out_of_box_dry_run(tmp_path: Path, method: str) -> subprocess.CompletedProcess:
    """``--method <method> --profile regime3 --dry-run`` on the default config, writing into
    ``tmp_path`` (run ``out/box``): what a newcomer's first command prepares."""
    return subprocess.run(
        [sys.executable, str(CLI), "--method", method, "--profile", "regime3", "--dry-run",
         "--set", f"output.output_dir={tmp_path / 'out'}", "--set", f"system.status_file={tmp_path / 'status.json'}",
         "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "output.run_name=box"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def load_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def straight_and_killed(tmp_path: Path, builtin_cache: Path, common: dict, kill_at: int) -> tuple[Path, Path, str]:
    """The same job run twice: "straight" in this process, and "killed": a CLI child SIGKILLed once
    checkpoint-``kill_at`` is complete, then resumed with --resume auto. Returns both run folders
    and the resumed run's output."""
    import signal

    from trainer.config import create_default_config
    from trainer.core import TrainerEngine
    from trainer.core.checkpoints import is_complete_checkpoint

    TrainerEngine().run_job(create_default_config(overrides=job_values(tmp_path, builtin_cache, **common, **{"output.run_name": "straight"})))
    config_file = write_config(tmp_path, job_values(tmp_path, builtin_cache, **common, **{"output.run_name": "killed"}))
    run = tmp_path / "outputs" / "killed"
    proc = cli(config_file)
    wait_for(lambda: is_complete_checkpoint(run / f"checkpoint-{kill_at}"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run / "model").exists(), "killed after it finished: nothing to resume"
    resumed = cli(config_file, "--resume", "auto")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "resuming from" in out
    return tmp_path / "outputs" / "straight", run, out


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve in the TensorBoard event files under ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            curves.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return curves
