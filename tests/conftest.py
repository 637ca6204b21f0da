"""Shared fixtures: the embedded tiny model, built once per test session into a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Under pytest-xdist the suite runs one worker per core: each worker's torch (and the processes it
# starts, which inherit this) takes one thread, so the workers do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def builtin_cache(tmp_path_factory) -> Path:
    """A models folder holding the built tiny-qwen3 (built once, seconds)."""
    from trainer.models.builtin import resolve_model_path

    root = tmp_path_factory.mktemp("models")
    resolve_model_path("builtin:tiny-qwen3", root)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(builtin_cache) -> Path:
    from trainer.models.builtin import resolve_model_path

    return resolve_model_path("builtin:tiny-qwen3", builtin_cache)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)
