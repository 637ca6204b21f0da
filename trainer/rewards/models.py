"""Local model folders for model-based rewards: checked before anything loads, loaded once, lazily.

Every model-based reward names a folder on disk (``model_path``); nothing is fetched from a hub
(``local_files_only``). :func:`folder_problems` is what validation says about the folder, from
the file system alone; :func:`read_config` reads its ``config.json`` as plain JSON, so labels
and sizes can be checked without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from trainer.rewards.base import Requirement, Reward, RewardContext, RewardOptions

TORCH = (Requirement("torch", "torch"), Requirement("transformers", "transformers"))


class ModelOptions(RewardOptions):
    model_path: str = Field(..., description="A local Hugging Face model folder (with config.json).")
    max_length: int = Field(1024, gt=0, description="Tokens per scored text; longer texts are truncated.")
    batch_size: int | None = Field(None, gt=0, description="Texts per forward pass (default: the job's reward batch size).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Precision; auto: float32 on the CPU, the checkpoint's own elsewhere."
    )


def model_folder(value: str) -> Path:
    return Path(value).expanduser()


def folder_problems(value: str) -> list[str]:
    """What is wrong with ``value`` as a model folder (empty list: nothing), each sentence
    starting with the path."""
    path = model_folder(value)
    if not path.exists():
        return [f"{path} does not exist"]
    if not path.is_dir():
        return [f"{path} is not a folder"]
    if not (path / "config.json").is_file():
        return [f"{path} has no config.json (not a Hugging Face model folder)"]
    return []


def read_config(value: str) -> dict[str, Any] | None:
    """The folder's ``config.json`` as a dict, or None if it cannot be read."""
    try:
        return json.loads((model_folder(value) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def label_names(config: dict[str, Any]) -> list[str]:
    """A classifier config's label names in index order (``LABEL_<i>`` where none are named)."""
    id2label = config.get("id2label") or {}
    count = len(id2label) or int(config.get("num_labels", 2))
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(count)]


class ModelReward(Reward):
    """A reward that runs a model from ``options.model_path``; subclasses load it in
    :meth:`load` (called once, on first use) and keep what it returns in ``self.loaded``."""

    Options = ModelOptions
    model_option = "model_path"
    requires = TORCH

    def __init__(self, options: Any, context: RewardContext):
        super().__init__(options, context)
        self.loaded: Any = None

    @property
    def folder(self) -> Path:
        return model_folder(self.options.model_path)

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or self.context.batch_size

    def ensure_loaded(self) -> Any:
        if self.loaded is None:
            self.loaded = self.load()
        return self.loaded

    def load(self) -> Any:
        raise NotImplementedError

    def torch_dtype(self) -> Any:
        import torch

        if self.options.dtype == "auto":
            return torch.float32 if self.context.device == "cpu" else "auto"
        return getattr(torch, self.options.dtype)

    def load_tokenizer(self) -> Any:
        """The folder's tokenizer, with a pad token (its EOS when it has none) for batching."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def load_model(self, auto_class: Any, tokenizer: Any) -> Any:
        """``auto_class.from_pretrained(folder)`` on the context's device, in eval mode, with
        the tokenizer's pad token (a decoder's classification head reads the last token that is
        not padding, so it must know which that is)."""
        model = auto_class.from_pretrained(self.folder, local_files_only=True, dtype=self.torch_dtype())
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return model.to(self.context.device).eval()
