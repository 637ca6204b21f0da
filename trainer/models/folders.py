"""What is wrong with a model spec as a folder to load, from the file system alone: a local
Hugging Face folder needs a config and a tokenizer; a builtin name must exist (it is built on
first use). ``--validate`` (``trainer.core.preflight``) and the methods' checks of the other
models they load (a distillation teacher) ask the same question."""

from __future__ import annotations

from trainer.config.schema import TrainerConfig
from trainer.models.builtin import BUILTIN_MODELS, BUILTIN_PREFIX

# Files a Hugging Face tokenizer loads its vocabulary from; a folder with none of them makes
# transformers build an empty tokenizer silently, and the job would then blame the data.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tiktoken.model",
)


def model_folder_problem(config: TrainerConfig, model: str, key: str) -> str | None:
    """What is wrong with ``model`` (at ``key``) as a model folder to load, or None: a local
    folder with a config and a tokenizer, or a builtin name (built on first use)."""
    if model.startswith(BUILTIN_PREFIX):
        name = model[len(BUILTIN_PREFIX):]
        if name not in BUILTIN_MODELS:
            known = ", ".join(BUILTIN_PREFIX + each for each in sorted(BUILTIN_MODELS))
            return f"{key}: unknown builtin model {model!r}; known: {known}"
        return None
    folder = config.resolve_path(model)
    if not folder.is_dir():
        return f"{key}: {folder} does not exist" if not folder.exists() else f"{key}: {folder} is a file, not a model folder"
    if not (folder / "config.json").is_file():
        return (f"{key}: {folder} is not a Hugging Face model folder (no config.json); "
                "use a local folder or builtin:tiny-qwen3")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return (f"{key}: {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                "copy the tokenizer files of the model into the folder (tokenizer.save_pretrained)")
    return None
