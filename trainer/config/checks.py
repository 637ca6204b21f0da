"""Checks of a valid config against the world: do its files exist, can its outputs be written.

Separate from the schema because they depend on the machine, not on the config alone; the CLI's
``--validate`` runs them, and the engine runs them before it loads anything heavy.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainer.config.schema import TrainerConfig

BUILTIN_PREFIX = "builtin:"
from trainer.data.readers import READERS

DATA_SUFFIXES = tuple(READERS)
TEMPLATE_KEYWORDS = ("auto", "model", "chatml")


def _first_existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(path: Path) -> bool:
    return os.access(_first_existing_parent(path), os.W_OK)


def check_profile(config: TrainerConfig) -> list[str]:
    """The profile name resolves and takes the given options."""
    from trainer.profiles import get_profile

    try:
        get_profile(config.profile.name, config.profile.options)
    except ValueError as exc:
        return [f"profile.name: {exc}"]
    return []


def check_config(config: TrainerConfig) -> list[str]:
    """Everything checkable without loading a model: paths and profile."""
    return check_paths(config) + check_profile(config)


def check_paths(config: TrainerConfig) -> list[str]:
    """Every problem with the files and folders the config names, each naming its key."""
    problems = []
    for index, raw in enumerate(config.data.dataset_path):
        path = config.resolve_path(raw)
        key = f"data.dataset_path[{index}]"
        if not path.exists():
            problems.append(f"{key}: {path} does not exist")
        elif path.is_dir():
            if not any(p.suffix in DATA_SUFFIXES for p in path.rglob("*") if p.is_file()):
                problems.append(f"{key}: folder {path} holds no {', '.join(DATA_SUFFIXES)} file")
        elif path.suffix not in DATA_SUFFIXES:
            problems.append(f"{key}: {path} is not one of {', '.join(DATA_SUFFIXES)}")

    model = config.model.path
    if not model.startswith(BUILTIN_PREFIX):
        folder = config.resolve_path(model)
        if not (folder / "config.json").is_file():
            problems.append(
                f"model.path: {folder} is not a Hugging Face model folder (no config.json); "
                "use a local folder or builtin:tiny-qwen3"
            )
    template = config.model.chat_template
    if template not in TEMPLATE_KEYWORDS and not config.resolve_path(template).is_file():
        problems.append(f"model.chat_template: template file {config.resolve_path(template)} not found")

    resume = config.output.resume
    if resume not in (None, "auto") and not config.resolve_path(resume).is_dir():
        problems.append(f"output.resume: checkpoint folder {config.resolve_path(resume)} not found")
    for key, raw in (
        ("output.output_dir", config.output.output_dir),
        ("system.status_file", config.system.status_file),
        ("data.cache_dir", config.data.cache_dir),
    ):
        if not _writable(config.resolve_path(raw)):
            problems.append(f"{key}: {config.resolve_path(raw)} is not writable")
    return problems
