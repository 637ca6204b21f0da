"""Pre-flight: everything a valid config can still get wrong against the machine, found before
any model loads.

The schema knows what a config may say; these checks know the world it points at: do the files
exist and hold what they should, can the outputs be written where they are meant to go, does the
profile import, is the resume unambiguous. ``--validate`` and the start of every job
(``trainer.core.runner.execute``) run the same :func:`check_config`, so whatever the start of a
job would trip on, ``--validate`` reports first, each problem naming its key. Light imports only:
``--validate`` answers without torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainer.config.schema import TrainerConfig
from trainer.data.readers import READERS

BUILTIN_PREFIX = "builtin:"
DATA_SUFFIXES = tuple(READERS)
TEMPLATE_KEYWORDS = ("auto", "model", "chatml")
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


def check_config(config: TrainerConfig) -> list[str]:
    """Every problem found, each a sentence naming its dotted key (empty: all clear). The config
    is checked as the job will run it: with its out-of-the-box data and stages filled in."""
    from trainer.core.out_of_box import fill_in

    config, _ = fill_in(config)
    return (
        check_paths(config) + check_outputs(config) + check_profile(config) + check_methods(config)
        + check_resume(config) + check_kernels(config) + check_schedule(config)
        + check_lora(config)
    )


def check_lora(config: TrainerConfig) -> list[str]:
    """QLoRA's 4-bit base needs bitsandbytes' CUDA kernels: refused before any model loads."""
    lora = config.model.lora
    if lora is None or not lora.load_in_4bit:
        return []
    if config.system.device in ("cpu", "mps"):
        return [f"model.lora.load_in_4bit: QLoRA's 4-bit base runs on CUDA GPUs only, and system.device is "
                f"{config.system.device!r}; use LoRA on the full-precision base (load_in_4bit false)"]
    import torch  # only here: --validate stays light for every other config

    if not torch.cuda.is_available():
        return ["model.lora.load_in_4bit: QLoRA's 4-bit base runs on CUDA GPUs only, and this machine has none; "
                "use LoRA on the full-precision base (load_in_4bit false)"]
    return []


def check_schedule(config: TrainerConfig) -> list[str]:
    """A schedule on the held-out loss needs held-out rows, and methods that evaluate a loss on them."""
    from trainer.methods import method_class

    if config.hyperparams.scheduler.name != "reduce_on_plateau":
        return []
    problems = []
    if config.data.holdout_size == 0:
        problems.append("hyperparams.scheduler: reduce_on_plateau steps on the held-out loss, and data.holdout_size is 0; "
                        "hold some rows out, or choose another schedule")
    names = [stage.method.name for stage in config.stages] or [config.method.name]
    without = sorted({name for name in names if not method_class(name).evaluates_heldout_loss})
    if without:
        problems.append(f"hyperparams.scheduler: reduce_on_plateau steps on the held-out loss, which method "
                        f"{', '.join(without)} does not evaluate (sft does); choose another schedule")
    return problems


def check_kernels(config: TrainerConfig) -> list[str]:
    """GPU-only kernels asked for where they cannot run (found without importing torch)."""
    import importlib.util

    if config.model.attn_implementation != "flash_attention_2":
        return []
    if config.system.device in ("cpu", "mps"):
        return [(f"model.attn_implementation: flash_attention_2 runs on CUDA GPUs only, and system.device is "
                 f"{config.system.device!r}; use sdpa (what transformers picks when it is unset)")]
    if importlib.util.find_spec("flash_attn") is None:
        return [("model.attn_implementation: flash_attention_2 needs the flash-attn package (CUDA GPUs only), which "
                 "is not installed; pip install flash-attn on a GPU machine, or use sdpa (what transformers picks when it is unset)")]
    return []


def check_methods(config: TrainerConfig) -> list[str]:
    """What the job's method, and each stage's, says it cannot train with (``Method.check``)."""
    from trainer.methods import get_method, method_class

    problems = [] if config.stages else get_method(config.method).check(config)
    for number, stage in enumerate(config.stages):
        # a stage's method options are keyed where the user wrote them: stages[i].method.*, or
        # hybrid.rl_method.* for the RL stages a hybrid expands into
        hybrid = config.hybrid is not None and stage.method.name != "sft"
        where = "hybrid.rl_method." if hybrid else f"stages[{number}].method."
        for problem in get_method(stage.method).check(config):
            keyed = where + problem[len("method."):] if problem.startswith("method.") else problem
            problems.append(keyed if hybrid else f"{keyed} (stage {number + 1}, {stage.method.name})")
    if config.hybrid is not None and method_class(config.hybrid.rl_method.name).data_shape != "prompts":
        problems.append(
            f"hybrid.rl_method.name: {config.hybrid.rl_method.name!r} is not an RL method (one trained on prompts and "
            "rewards: ppo, grpo, rloo)"
        )
    return list(dict.fromkeys(problems))


def check_profile(config: TrainerConfig) -> list[str]:
    """The profile name resolves (its module imports) and takes the given options."""
    from trainer.profiles import get_profile

    try:
        get_profile(config.profile.name, config.profile.options)
    except ValueError as exc:  # unknown names, failed imports, bad options: all user errors
        return [f"profile.name: {exc}"]
    return []


def check_resume(config: TrainerConfig) -> list[str]:
    """The run folder and checkpoint the job would use (``trainer.core.resume``)."""
    from trainer.config.errors import ConfigError
    from trainer.core.resume import plan_run

    try:
        plan_run(config)
    except ConfigError as exc:
        return exc.problems
    return []


def check_paths(config: TrainerConfig) -> list[str]:
    """Every problem with the files and folders the config reads, each naming its key."""
    problems = []
    named = [(f"data.dataset_path[{i}]", raw) for i, raw in enumerate(config.data.dataset_path)]
    for number, stage in enumerate(config.stages):
        named += [(f"stages[{number}].dataset_path[{i}]", raw) for i, raw in enumerate(stage.dataset_path or [])]
    for key, raw in named:
        path = config.resolve_path(raw)
        if not path.exists():
            problems.append(f"{key}: {path} does not exist")
        elif path.is_dir():
            if not any(p.suffix in DATA_SUFFIXES for p in path.rglob("*") if p.is_file()):
                problems.append(f"{key}: folder {path} holds no {', '.join(DATA_SUFFIXES)} file")
        elif path.suffix.lower() not in DATA_SUFFIXES:
            problems.append(f"{key}: {path} is not one of {', '.join(DATA_SUFFIXES)}")
        elif path.stat().st_size == 0:
            problems.append(f"{key}: {path} is an empty file")

    problems += check_model_folder(config)
    template = config.model.chat_template
    if template not in TEMPLATE_KEYWORDS and not config.resolve_path(template).is_file():
        problems.append(f"model.chat_template: template file {config.resolve_path(template)} not found")
    return problems


def check_model_folder(config: TrainerConfig) -> list[str]:
    """A local model folder has a config and a tokenizer (a builtin is built on first use)."""
    model = config.model.path
    if model.startswith(BUILTIN_PREFIX):
        return []
    folder = config.resolve_path(model)
    if not folder.is_dir():
        return [f"model.path: {folder} does not exist" if not folder.exists() else f"model.path: {folder} is a file, not a model folder"]
    if not (folder / "config.json").is_file():
        return [
            f"model.path: {folder} is not a Hugging Face model folder (no config.json); "
            "use a local folder or builtin:tiny-qwen3"
        ]
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return [
            f"model.path: {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
            "copy the tokenizer files of the model into the folder (tokenizer.save_pretrained)"
        ]
    return []


def check_outputs(config: TrainerConfig) -> list[str]:
    """Where the job writes: folders must be (or become) folders, files files, all writable."""
    problems = []
    folders = [
        ("output.output_dir", config.output.output_dir),
        ("data.cache_dir", config.data.cache_dir),
        ("model.builtin_cache", config.model.builtin_cache),
    ]
    if config.output.run_name:
        folders.append(("output.run_name", str(Path(config.output.output_dir) / config.output.run_name)))
    for key, raw in folders:
        problem = _folder_problem(config.resolve_path(raw))
        if problem:
            problems.append(f"{key}: {problem}")
    for key, raw in (("system.status_file", config.system.status_file), ("daemon.status_file", config.daemon.status_file)):
        path = config.resolve_path(raw)
        if path.is_dir():
            problems.append(f"{key}: {path} is a folder; give a file path, e.g. {path / 'status.json'}")
            continue
        problem = _folder_problem(path.parent)
        if problem:
            problems.append(f"{key}: cannot write {path}: {problem}")
    return problems


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or be created as) a writable folder, or None."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder" + ("" if existing == path else f" (needed for {path})")
    if not os.access(existing, os.W_OK):
        return f"{existing} is not writable"
    return None
