"""A stage's trained model kept for reuse (``stages[i].cache``): what a job trains the same way
every time is trained once. The out-of-the-box distillation job caches its first stage, the
embedded teacher's SFT, so only its first run pays for it.

The key is a hash of everything that decides the weights: the stage's model (for a builtin, its
recipe version too), method, hyperparameters, profile, data settings and the bytes of every data
file (not their paths: two clones share a key), the guard, the device and the precision. Output
places, previews and probes are not in it. A cached model lives in
``<model.builtin_cache>/trained/<stage>-<key>/`` (``model/`` and ``result.json``), published by an
atomic rename, as the builtins are: a half-written folder is never seen, and of two jobs that
train the same stage at once the first to finish publishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from core import distributed
from trainer.config.schema import TrainerConfig
from trainer.core.context import JobResult
from trainer.models.builtin import BUILTIN_PREFIX, lookup_builtin

RESULT = "result.json"


def cache_key(config: TrainerConfig) -> str:
    """The hash of what decides a stage's trained weights (module docstring)."""
    data = config.model_dump(mode="json")
    model = data["model"]
    if model["path"].startswith(BUILTIN_PREFIX):
        model["builtin_version"] = lookup_builtin(model["path"][len(BUILTIN_PREFIX):]).version
    model.pop("builtin_cache", None)
    settings = {key: value for key, value in data["data"].items() if key not in ("dataset_path", "cache_dir")}
    decisive = {
        "model": model, "method": data["method"], "hyperparams": data["hyperparams"], "profile": data["profile"],
        "data": settings, "files": [_digest(config.resolve_path(p)) for p in config.data.dataset_path],
        "guard": data["guard"], "device": data["system"]["device"],
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def _digest(path: Path) -> str:
    """sha256 of a data file, or of a folder's files (names and bytes, in order)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def cache_folder(config: TrainerConfig) -> Path:
    return config.resolve_path(config.model.builtin_cache) / "trained" / f"{config.output.run_name}-{cache_key(config)}"


def restore(config: TrainerConfig) -> JobResult | None:
    """The stage's result from the cache, its model copied into the stage's run folder (the next
    stage starts from there); None when nothing is cached for it. Every rank gets the same answer."""
    folder = cache_folder(config)
    if not distributed.agree(lambda: (folder / RESULT).is_file()):
        return None
    run_dir = config.resolve_path(config.output.output_dir) / str(config.output.run_name)
    model = run_dir / "model"
    if distributed.is_main_process() and not (model / "config.json").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(model, ignore_errors=True)  # a copy cut short by a kill
        shutil.copytree(folder / "model", model)
    distributed.barrier()
    metrics = json.loads((folder / RESULT).read_text("utf-8"))["final_metrics"]
    return JobResult(run_dir, model, {**metrics, "from_cache": str(folder)})


def publish(config: TrainerConfig, result: JobResult) -> Path | None:
    """Keep a stage's trained model for reuse (rank 0); the folder, or None if one was there."""
    folder = cache_folder(config)
    if not distributed.is_main_process() or result.model_path is None or (folder / RESULT).is_file():
        return None
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        shutil.copytree(result.model_path, staging / "model")
        (staging / RESULT).write_text(json.dumps({"final_metrics": result.final_metrics}, indent=2), "utf-8")
        staging.chmod(0o755)
        try:
            os.replace(staging, folder)
        except OSError:  # another job published first
            return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
