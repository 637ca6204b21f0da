"""Which run folder a job writes, and which checkpoint it continues: never another run's.

``--resume auto`` continues a run only when it is clearly the same run: named with ``--run-name``,
or the one run under ``output_dir`` whose saved config matches this one in everything that changes
training (:data:`TRAINING_KEYS` and the data files' contents). Anything else is refused before a
file is written, with the candidates and the keys that differ, so a resume can never overwrite
another run's ``resolved_config.json``, data report or model. Both ``--validate`` (through
``trainer.core.preflight``) and the start of a job ask :func:`plan_run`, so they agree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.run_layout import STAGE_PREFIX, RunLayout
from trainer.config.errors import ConfigError
from trainer.config.schema import TrainerConfig
from trainer.optim.optimizers import optimizer_route
from trainer.optim.schedulers import scheduler_route
from trainer.core.checkpoints import (
    OPTIMIZER_FILES,
    REQUIRED_FILES,
    WEIGHT_FILES,
    checkpoints,
    find_resumable_checkpoint,
    is_complete_checkpoint,
)

RESOLVED_CONFIG_FILE = RunLayout.RESOLVED_CONFIG

# Settings that make a checkpoint belong to a different training run when they change: the data
# and how it is rendered, the model, the batch shape, lengths and seed. Learning rate, step
# count, logging and saving may change on a resume (training a run longer is a resume).
TRAINING_KEYS = (
    "model.path",
    "model.precision",
    "model.chat_template",
    "model.lora",  # a checkpoint holds adapters, or the whole model
    "data.dataset_path",
    "data.format",
    "data.columns",
    "data.max_length",
    "data.overlong_policy",
    "data.packing",
    "data.holdout_size",
    "data.max_rows",
    "profile.name",
    "profile.options",
    "profile.system_prompt",
    "hyperparams.batch_size",
    "hyperparams.gradient_accumulation_steps",
    "hyperparams.seed",
    "hyperparams.optimizer",  # a checkpoint's optimizer.pt / scheduler.pt load into the same kinds only
    "hyperparams.scheduler",
    "method",
    "stages",
)
# Of those, the ones holding paths: compared resolved, since two configs may live in two folders.
PATH_KEYS = {"model.path", "model.chat_template", "data.dataset_path"}
DATA_FILES_KEY = "data files (contents)"


@dataclass
class RunPlan:
    """Where a job writes and what it continues from."""

    run_dir: Path
    checkpoint: Path | None = None
    note: str | None = None  # one line for the console: what was chosen and why


def plan_run(config: TrainerConfig) -> RunPlan:
    """The run folder and checkpoint for ``config``.

    Raises:
        ConfigError: the resume is ambiguous, continues a run trained differently, names a
            folder that is not a checkpoint, or a fresh run would reuse a folder with checkpoints.
    """
    root = config.resolve_path(config.output.output_dir)
    resume = config.output.resume
    named = root / config.output.run_name if config.output.run_name else None
    if resume is None:
        run_dir = named or _new_run_dir(config, root)
        if checkpoints(run_dir) or any(checkpoints(p) for p in run_dir.glob(f"{STAGE_PREFIX}*")):
            raise ConfigError(
                [
                    f"output.run_name: {run_dir} already holds checkpoints of an earlier run; "
                    "add --resume auto to continue it, or choose another --run-name"
                ]
            )
        return RunPlan(run_dir)
    if resume == "auto":
        return _plan_auto(config, root, named)
    if config.stages:
        raise ConfigError(["output.resume: a job with stages resumes with --resume auto (each stage keeps its own checkpoints)"])
    return _plan_path(config, config.resolve_path(resume), named)


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The run's newest complete checkpoint; in a curriculum, that of its latest stage that has
    one (stages keep their checkpoints in ``stage-N-<method>/``)."""
    found = find_resumable_checkpoint(run_dir)
    if found is not None or not run_dir.is_dir():
        return found
    stages = sorted(
        (p for p in run_dir.glob(f"{STAGE_PREFIX}*") if p.is_dir() and find_resumable_checkpoint(p)),
        key=lambda p: int(p.name.split("-")[1]) if p.name.split("-")[1].isdigit() else 0,
    )
    return find_resumable_checkpoint(stages[-1]) if stages else None


def _new_run_dir(config: TrainerConfig, root: Path) -> Path:
    """``<profile>-<time>``, with a counter when two jobs start within the same second."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{config.profile.name.replace('+', '_').replace(':', '_')}-{stamp}"
    candidate, count = root / base, 1
    while candidate.exists():
        count += 1
        candidate = root / f"{base}-{count}"
    return candidate


def _plan_auto(config: TrainerConfig, root: Path, named: Path | None) -> RunPlan:
    if named is not None:
        checkpoint = newest_checkpoint(named)
        if checkpoint is None:
            return RunPlan(named, None, f"--resume auto: no complete checkpoint in {named}; starting fresh")
        _refuse_if_different(config, named)
        # A curriculum's stages find their own checkpoints; the job itself continues none.
        return RunPlan(named, None if config.stages else checkpoint)
    runs = sorted(
        (p for p in root.iterdir() if p.is_dir() and newest_checkpoint(p)) if root.is_dir() else (),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    if not runs:
        run_dir = _new_run_dir(config, root)
        return RunPlan(run_dir, None, f"--resume auto: no run in {root} has a checkpoint; starting fresh as {run_dir.name}")
    differences = {run: training_differences(config, run) for run in runs}
    matching = [run for run in runs if not differences[run]]
    if len(matching) == 1:
        run = matching[0]
        note = None if len(runs) == 1 else f"--resume auto: {run.name} is the only run whose config matches this one"
        return RunPlan(run, None if config.stages else find_resumable_checkpoint(run), note)
    lines = [_describe_candidate(run, differences[run]) for run in runs]
    if matching:
        head = f"output.resume: --resume auto is ambiguous: {len(matching)} runs in {root} match this config"
    else:
        head = f"output.resume: --resume auto found no run in {root} trained with this config"
    raise ConfigError(
        [head + "; name the one to continue with --run-name NAME (or start a new run without "
         "--resume). Candidates:\n      " + "\n      ".join(lines)]
    )


def _plan_path(config: TrainerConfig, checkpoint: Path, named: Path | None) -> RunPlan:
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise ConfigError([f"output.resume: {problem}"])
    run_dir = named or checkpoint.parent  # naming a checkpoint continues its run
    _refuse_if_different(config, checkpoint.parent)
    return RunPlan(run_dir, checkpoint)


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from, or None when it is a complete checkpoint."""
    if not folder.exists():
        return f"checkpoint folder {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is a file, not a checkpoint folder"
    if is_complete_checkpoint(folder):
        return None
    inside = find_resumable_checkpoint(folder)
    if inside is not None:
        return f"{folder} is a run folder, not a checkpoint; did you mean --resume {inside}?"
    missing = [n for n in REQUIRED_FILES if not (folder / n).is_file()]
    if not any((folder / n).is_file() for n in OPTIMIZER_FILES):
        missing.append(" or ".join(OPTIMIZER_FILES))
    if not any((folder / n).is_file() for n in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    detail = f"missing {', '.join(missing)}" if missing else "its trainer_state.json is unreadable"
    return f"{folder} is not a complete checkpoint ({detail})"


def _refuse_if_different(config: TrainerConfig, run_dir: Path) -> None:
    differences = training_differences(config, run_dir)
    if differences:
        raise ConfigError(
            [
                f"output.resume: {run_dir} was trained with other settings, so this job would not "
                "continue it; choose another --run-name, or change back:\n      "
                + "\n      ".join(differences)
            ]
        )


def _describe_candidate(run: Path, differences: list[str]) -> str:
    step = newest_checkpoint(run).name
    when = datetime.fromtimestamp(run.stat().st_mtime).isoformat(timespec="seconds")
    what = "config matches" if not differences else "differs in " + "; ".join(differences)
    return f"{run.name} (newest {step}, modified {when}): {what}"


def training_differences(config: TrainerConfig, run_dir: Path) -> list[str]:
    """``key: was X, now Y`` for each training setting in which ``run_dir``'s saved config
    differs from ``config``; a run with no readable saved config differs in everything."""
    try:
        saved = json.loads((run_dir / RESOLVED_CONFIG_FILE).read_text("utf-8"))
        old = TrainerConfig.model_validate(saved["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return [f"its {RESOLVED_CONFIG_FILE} is missing or unreadable, so its settings are unknown"]
    found = []
    for key in TRAINING_KEYS:
        before, after = _value(old, key), _value(config, key)
        if before != after:
            found.append(f"{key}: was {_short(before)}, now {_short(after)}")
    if scheduler_route(config.hyperparams.scheduler).build is not None:
        # a torch schedule keeps its length in scheduler.pt (OneCycleLR's total, T_max): a resume
        # that trains longer would run past it
        for key in ("hyperparams.max_steps", "hyperparams.num_epochs"):
            before, after = _value(old, key), _value(config, key)
            if before != after:
                found.append(f"{key}: was {_short(before)}, now {_short(after)} (a torch schedule's length is in its saved state)")
    recorded = saved.get("data_files")
    if recorded is not None and not found:
        now = data_fingerprint(config)
        if now != recorded:
            changed = sorted(set(recorded) ^ set(now) | {f for f in recorded if f in now and recorded[f] != now[f]})
            found.append(f"{DATA_FILES_KEY}: changed since that run ({', '.join(changed[:3])})")
    return found


# Keys compared by what they do, not how they are written: "adamw_torch_fused" (a run saved before
# optimizers took options) and {"name": "adamw", "fused": true} build the same optimizer; LoRA's
# merge only decides how the final model is saved.
COMPARED_AS = {
    "hyperparams.optimizer": lambda options: asdict(optimizer_route(options)),
    "model.lora": lambda lora: None if lora is None else lora.model_dump(mode="json", exclude={"merge"}),
}


def _value(config: TrainerConfig, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    if key in COMPARED_AS:
        return json.loads(json.dumps(COMPARED_AS[key](node)))  # tuples as lists, as a saved config has them
    if key in PATH_KEYS:
        if isinstance(node, list):
            return [str(config.resolve_path(p)) for p in node]
        if key == "model.path" and node.startswith("builtin:"):
            return node
        if key == "model.chat_template" and node in ("auto", "model", "chatml"):
            return node
        return str(config.resolve_path(node))
    if isinstance(node, list):  # stages: a list of sections
        return [n.model_dump(mode="json") if hasattr(n, "model_dump") else n for n in node]
    return node.model_dump(mode="json") if hasattr(node, "model_dump") else node


def _short(value: Any) -> str:
    """A value in at most 80 characters; a long one keeps both ends (a path's file name is at its end)."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:38] + "..." + text[-39:]


def data_fingerprint(config: TrainerConfig) -> dict[str, str]:
    """Each data file's path -> SHA-256 of its bytes (folders expanded); {} if unreadable."""
    from trainer.data.cache import file_digest
    from trainer.data.readers import expand_paths

    try:
        files = expand_paths([config.resolve_path(p) for p in config.data.dataset_path])
        return {str(f.resolve()): file_digest(f) for f in files}
    except OSError:
        return {}
