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
import re
from pathlib import Path

from trainer.config.schema import TrainerConfig
from trainer.data.readers import READERS
from trainer.models.folders import model_folder_problem
from trainer.callbacks import callback_problems

DATA_SUFFIXES = tuple(READERS)
TEMPLATE_KEYWORDS = ("auto", "model", "chatml")


def check_config(config: TrainerConfig) -> list[str]:
    """Every problem found, each a sentence naming its dotted key (empty: all clear). The config
    is checked as the job will run it: with its out-of-the-box data and stages filled in."""
    from trainer.core.out_of_box import fill_in

    config, _ = fill_in(config)
    return (
        check_paths(config) + check_outputs(config) + check_profile(config) + check_methods(config)
        + check_resume(config) + check_kernels(config) + check_schedule(config)
        + check_lora(config) + check_parallel(config) + check_precision(config) + check_win_rate(config)
        + callback_problems(config)
    )


def check_win_rate(config: TrainerConfig) -> list[str]:
    """A win rate (in training, or the daemon's against the hero) needs held-out prompts to answer
    and a judge that can be built."""
    from trainer.judges import judge_problems
    from trainer.methods import method_class

    asked = [key for key, on in (("inference.win_rate_every_steps", config.inference.win_rate_every_steps),
                                 ("daemon.min_win_rate", config.daemon.min_win_rate is not None)) if on]
    if not asked:
        return []
    problems = judge_problems(config.inference.judge, "inference.judge")
    if not config.inference.num_probes:
        problems.append(f"{asked[0]}: the win rate compares answers to the held-out prompts, and "
                        "inference.num_probes is 0; set it above 0")
    if "inference.win_rate_every_steps" not in asked:
        return problems
    methods = _method_names(config)
    if not any(method_class(name).generates for name in methods):
        problems.append(f"inference.win_rate_every_steps: method {methods[-1]} does not generate answers to judge")
    return problems


def check_precision(config: TrainerConfig) -> list[str]:
    """bf16 asked for on a GPU without it (before Ampere): refused, not a slow or broken run. CPUs
    autocast in bf16 and fp16 both (slowly where they lack the instructions)."""
    if config.model.precision not in ("bfloat16", "bfloat16-mixed") or config.system.device in ("cpu", "mps"):
        return []
    import torch  # only here: --validate stays light for every other config

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return [f"model.precision: {config.model.precision} needs a GPU that computes in bf16, and {torch.cuda.get_device_name()} does not; "
                "use float16 (mixed precision) or float32"]
    return []


def check_parallel(config: TrainerConfig) -> list[str]:
    """Sharded training (FSDP, DeepSpeed): its config files, its package, GPUs, several processes,
    and no generation during the job (only rank 0 answers the probes, and on sharded weights each
    forward pass needs every rank: it would wait on the others forever)."""
    import importlib.util
    import json

    from core.distributed import world_size

    asked = [(key, raw, what) for key, raw, what in (
        ("system.deepspeed", config.system.deepspeed, "DeepSpeed"), ("system.fsdp_config", config.system.fsdp_config, "FSDP"),
    ) if raw is not None]
    problems = []
    for key, raw, what in asked:
        path = config.resolve_path(raw)
        try:
            json.loads(path.read_text("utf-8"))
        except OSError:
            problems.append(f"{key}: {path} cannot be read")
        except ValueError as exc:
            problems.append(f"{key}: {path} is not JSON ({exc})")
        if config.system.device in ("cpu", "mps") or not _has_cuda():
            # accelerate drops the FSDP plugin on CPUs and trains plain data parallel instead
            problems.append(f"{key}: {what} shards over CUDA GPUs, and this job has none (system.device "
                            f"{config.system.device!r}); on CPUs several processes train data parallel without it")
        # the daemon's own process is one; its jobs run on daemon.processes
        elif world_size() == 1 and config.daemon.processes == 1:
            problems.append(f"{key}: {what} shards the training over several processes, and this job is one; start it with "
                            "torchrun --nproc_per_node N trainer/cli_main.py ... or accelerate launch --multi_gpu --num_processes N ...")
    if asked and (config.inference.preview_every_steps or config.inference.num_probes):
        problems.append(f"{asked[0][0]}: sharded weights cannot answer probes on one process; set "
                        "inference.preview_every_steps 0 and inference.num_probes 0 (evaluate the saved model after the job)")
    if config.system.deepspeed is not None and importlib.util.find_spec("deepspeed") is None:
        problems.append("system.deepspeed: the deepspeed package is not installed (pip install deepspeed, on a GPU machine)")
    if len(asked) == 2:
        problems.append("system.fsdp_config: give DeepSpeed or FSDP, not both (system.deepspeed is set too)")
    return problems


def _has_cuda() -> bool:
    import torch  # only for configs that need a GPU (sharding, QLoRA): --validate stays light otherwise

    return torch.cuda.is_available()


def _method_names(config: TrainerConfig) -> list[str]:
    return [method.name for method in config.stage_methods()]


def check_lora(config: TrainerConfig) -> list[str]:
    """QLoRA's 4-bit base needs bitsandbytes' CUDA kernels: refused before any model loads."""
    from trainer.methods import method_class

    lora = config.model.lora
    if lora is None:
        return []
    names = _method_names(config)
    heads = sorted({name for name in names if not method_class(name).generates})
    if heads and not lora.merge:  # the engine puts causal-LM adapter folders back on their base only
        return [f"model.lora.merge: method {', '.join(heads)} trains a classifier, whose model/ must be a whole "
                "folder (the engine puts only causal-LM adapter folders back on their base); set merge true"]
    if not lora.load_in_4bit:
        return []
    if heads:  # their loader builds a classification head on a full-precision base
        return [f"model.lora.load_in_4bit: QLoRA is for causal LMs; method {', '.join(heads)} trains a classifier "
                "(use LoRA without load_in_4bit)"]
    if config.system.device in ("cpu", "mps"):
        return [f"model.lora.load_in_4bit: QLoRA's 4-bit base runs on CUDA GPUs only, and system.device is "
                f"{config.system.device!r}; use LoRA on the full-precision base (load_in_4bit false)"]
    if not _has_cuda():
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
    hp = config.hyperparams
    if hp.warmup_steps or hp.warmup_ratio or any(stage.warmup_steps for stage in config.stages):
        problems.append("hyperparams.scheduler: reduce_on_plateau has no warmup (transformers' schedule ignores it); "
                        "set hyperparams.warmup_steps to 0, or choose another schedule")
    names = _method_names(config)
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
        # a stage that starts from its own model is checked with that model (e.g. a teacher's tokenizer against it)
        seen = config if stage.model_path is None else config.model_copy(
            update={"model": config.model.model_copy(update={"path": stage.model_path})})
        for problem in get_method(stage.method).check(seen):
            keyed = where + problem[len("method."):] if problem.startswith("method.") else problem
            problems.append(keyed if hybrid else f"{keyed} (stage {number + 1}, {stage.method.name})")
    problems += stage_reference_problems(config)
    if config.hybrid is not None and method_class(config.hybrid.rl_method.name).data_shape != "prompts":
        problems.append(
            f"hybrid.rl_method.name: {config.hybrid.rl_method.name!r} is not an RL method (one trained on prompts and "
            "rewards: ppo, grpo, rloo)"
        )
    return list(dict.fromkeys(problems))


def stage_reference_problems(config: TrainerConfig) -> list[str]:
    """Each ``stage:N`` an option names must be an earlier stage of the job, which saves a model."""
    from trainer.methods import method_class
    from trainer.methods.base import STAGE_REFERENCE

    problems = []
    methods = [(f"stages[{i}].method", i + 1, stage.method) for i, stage in enumerate(config.stages)] or [("method", 0, config.method)]
    for where, number, options in methods:
        for key in method_class(options.name).stage_references:
            reference = getattr(options, key, None)
            if not (isinstance(reference, str) and reference.startswith(STAGE_REFERENCE)):
                continue
            target = reference[len(STAGE_REFERENCE):]
            if not config.stages:
                problems.append(f"{where}.{key}: {reference!r} names a stage, and this job has no stages")
            elif not re.fullmatch(r"[0-9]+", target) or not 1 <= int(target) < number:
                problems.append(f"{where}.{key}: {reference!r} must name an earlier stage of the job: stage:1 to stage:{number - 1}"
                                if number > 1 else f"{where}.{key}: {reference!r}: the first stage has no earlier stage")
    return problems


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
    for number, stage in enumerate(config.stages):
        problem = model_folder_problem(config, stage.model_path, f"stages[{number}].model_path") if stage.model_path else None
        problems += [problem] if problem else []
    template = config.model.chat_template
    if template not in TEMPLATE_KEYWORDS and not config.resolve_path(template).is_file():
        problems.append(f"model.chat_template: template file {config.resolve_path(template)} not found")
    return problems


def check_model_folder(config: TrainerConfig) -> list[str]:
    """The job's model folder has a config and a tokenizer (a builtin is built on first use)."""
    problem = model_folder_problem(config, config.model.path, "model.path")
    return [problem] if problem else []


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
