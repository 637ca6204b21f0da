"""The typed job configuration: the one place every setting is defined and documented.

Each section is a pydantic model with ``extra="forbid"`` so a misspelt key is an error, never a
silently ignored setting. Field descriptions are the documentation: the README's configuration
reference and ``--help`` are generated from them (``trainer.config.reference``).

This module imports only pydantic (and the light tracker table), so validating a config never pulls in torch.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationInfo,
    create_model,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from trainer.trackers import DEFAULT_PROJECT, tracker_problems

SCHEMA_VERSION = 1

Precision = Literal["auto", "float32", "bfloat16", "bfloat16-mixed", "float16"]
DataFormat = Literal[
    "auto", "messages", "sharegpt", "alpaca", "prompt_completion", "question_answer", "text"
]


def _not_blank(value: str) -> str:
    # "" resolves to the base folder itself (the repository, for the shipped config), which is
    # never what an empty value meant.
    if not value.strip():
        raise ValueError("an empty path; give a file or folder")
    return value


PathText = Annotated[str, AfterValidator(_not_blank)]


def _takes_numbers_only(annotation: Any) -> bool:
    """int, float, or either with None: fields where a JSON true / false is a mistake."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    kinds = {a for a in args if a is not type(None)}
    return bool(kinds) and kinds <= {int, float}


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads true as 1, so "batch_size": true would train with batch 1.
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _takes_numbers_only(field.annotation):
            raise ValueError(f"expected a number; got {str(value).lower()} (a boolean)")
        return value


class OptimizerOptions(Section):
    """The optimizer and its options; each optimizer of ``trainer.optim`` subclasses this with its
    own typed options, as methods do with :class:`MethodOptions`."""

    # built on first use: a job validates one optimizer's options, not the thirty of the table
    model_config = ConfigDict(defer_build=True)

    name: str = Field("adamw", description="Optimizer name (trainer.optim.OPTIMIZERS).")


class SchedulerOptions(Section):
    """The learning-rate schedule and its options (``trainer.optim.SCHEDULERS``)."""

    model_config = ConfigDict(defer_build=True)  # as OptimizerOptions

    name: str = Field("linear", description="Schedule name (trainer.optim.SCHEDULERS).")


# The registries (trainer.methods, trainer.optim) hand their lookups name -> options model in here
# when they are imported (trainer.config's __init__ imports them), so this module imports neither.
_OPTIONS_LOOKUP: dict[str, Callable[[str], type[BaseModel]]] = {}


def use_options(kind: str, lookup: Callable[[str], type[BaseModel]]) -> None:
    """Register the lookup of ``kind`` ("method", "optimizer", "scheduler"): name -> options model."""
    _OPTIONS_LOOKUP[kind] = lookup


def unknown_name_model(title: str, known: tuple[str, ...]) -> type[BaseModel]:
    """The options model for a name that is not registered: its ``name`` accepts only the known
    ones, so the error reads like every other bad choice, with its path and a did-you-mean; the
    other options of a name that does not exist are not worth a second error (extra="ignore")."""
    return create_model(title, __config__=ConfigDict(extra="ignore"), name=(Literal[known], ...))  # type: ignore[valid-type]


def registry_options(table: dict[str, Any], title: str, options_of: Callable[[Any], type[BaseModel]]) -> Callable[[Any], type[BaseModel]]:
    """The lookup a registry hands to :func:`use_options`: name -> the options model of
    ``table[name]`` (``options_of`` reads it off the entry), or, for a name not in the table, a
    model refusing it (:func:`unknown_name_model`, titled ``title``)."""

    def options(name: Any) -> type[BaseModel]:
        if isinstance(name, str) and name in table:
            return options_of(table[name])
        return unknown_name_model(title, tuple(sorted(table)))

    return options


def named_options(kind: str, base: type[BaseModel]) -> Any:
    """The wrap validator of a field whose options depend on its name: ``{"name": ..., ...}`` (or
    the bare name; no name: ``base``'s default) validated against that name's own options model,
    from the registry of ``kind`` (``use_options``). Errors raised by the chosen model keep their
    paths (``method.beta``, ``hyperparams.optimizer.betas``)."""
    default = base.model_fields["name"].default

    def validate(cls: type, value: Any, handler: ValidatorFunctionWrapHandler) -> BaseModel:
        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict) or kind not in _OPTIONS_LOOKUP:
            return handler(value)
        return _OPTIONS_LOOKUP[kind](value.get("name", default)).model_validate(value)

    return validate


class HyperParams(Section):
    batch_size: int = Field(8, ge=1, description="Sequences per device per optimizer micro-step.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-steps accumulated into one optimizer step."
    )
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate.")
    num_epochs: float | None = Field(
        None,
        gt=0,
        description="Passes over the training data. Leave unset with max_steps; if neither is "
        "set, 1 epoch.",
    )
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps to train for; takes the place of num_epochs."
    )
    warmup_steps: int | None = Field(
        None, ge=0, description="Linear warmup length in optimizer steps (or use warmup_ratio)."
    )
    warmup_ratio: float | None = Field(
        None, ge=0, lt=1, description="Warmup length as a fraction of all training steps."
    )
    optimizer: SerializeAsAny[OptimizerOptions] = Field(
        default_factory=OptimizerOptions,
        validate_default=True,
        description="Optimizer: a name (adamw, sgd, adafactor, adamw_8bit, ...; see trainer.optim) or "
        "{\"name\": ..., options}; the default fused AdamW is the same update in one kernel (4x faster "
        "a step than the per-tensor loop on CPU).",
    )
    scheduler: SerializeAsAny[SchedulerOptions] = Field(
        default_factory=SchedulerOptions,
        validate_default=True,
        description="Learning-rate schedule: a name (transformers' linear, cosine, ..., or torch's "
        "step, onecycle, ...; see trainer.optim) or {\"name\": ..., options}; every one but "
        "reduce_on_plateau warms up over warmup_steps / warmup_ratio.",
    )
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(42, description="Seed for model init, data order and dropout.")
    logging_steps: int = Field(
        5, ge=1, description="Log metrics to the status file every this many optimizer steps."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward to save memory (slower)."
    )

    _optimizer = field_validator("optimizer", mode="wrap")(named_options("optimizer", OptimizerOptions))
    _scheduler = field_validator("scheduler", mode="wrap")(named_options("scheduler", SchedulerOptions))

    @model_validator(mode="after")
    def _one_warmup_and_one_length(self) -> HyperParams:
        problems = []
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            problems.append(
                "set either hyperparams.warmup_steps or hyperparams.warmup_ratio, not both"
            )
        if self.max_steps is not None and self.num_epochs is not None:
            problems.append(
                "set either hyperparams.max_steps or hyperparams.num_epochs, not both "
                "(--max-steps and --epochs each clear the other)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class LoraSection(Section):
    """LoRA adapters through peft: the base model stays frozen, small low-rank matrices train."""

    r: int = Field(8, ge=1, description="Rank of the adapter matrices.")
    alpha: float = Field(16, gt=0, description="Scaling numerator: updates are scaled by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Modules that get adapters: names such as ['q_proj', 'v_proj'], or 'all-linear' "
        "(every linear layer but the output head).",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train too.")
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained and saved in full beside the adapters (e.g. ['lm_head'])."
    )
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r).")
    use_dora: bool = Field(False, description="Weight-decomposed adapters (DoRA).")
    merge: bool = Field(
        True,
        description="Save the run's model/ as a full Hugging Face folder with the adapters merged in "
        "(the adapters alone are in adapter/ either way); false: model/ is the adapter folder, which "
        "needs its base model folder to stay where it is.",
    )
    load_in_4bit: bool = Field(
        False, description="QLoRA: the frozen base in 4-bit NF4 (bitsandbytes; CUDA GPUs only)."
    )


class ModelSection(Section):
    path: PathText = Field(
        "builtin:tiny-qwen3",
        description="Local Hugging Face model folder, or 'builtin:tiny-qwen3' for the embedded "
        "tiny model built on first use.",
    )
    precision: Precision = Field(
        "auto",
        description="Training precision: auto (bfloat16 on a GPU that supports it, bfloat16-mixed "
        "on a CPU with AVX512-BF16 or AMX for a model at least 256 wide, else float32), float32, bfloat16 (bf16 weights), "
        "bfloat16-mixed (float32 weights, bf16 autocast) or float16 (float32 weights, fp16 "
        "autocast). A torch dtype is accepted too.",
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None, description="Attention kernel; unset lets transformers choose."
    )
    chat_template: PathText = Field(
        "auto",
        description="'auto' (the model's own template, or plain ChatML where the model's "
        "template injects <think> blocks that would compete with the profile's format), "
        "'model', 'chatml', or a path to a Jinja template file.",
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the model folder (only for folders you trust)."
    )
    builtin_cache: PathText = Field(
        "models", description="Folder where builtin models are built on first use and kept."
    )
    lora: LoraSection | None = Field(
        None, description="Train LoRA adapters instead of all weights (README, 'LoRA'); unset: full fine-tuning."
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _dtype_to_name(cls, value: Any) -> Any:
        # Accept torch.bfloat16 and "torch.bfloat16" without importing torch here.
        text = str(value)
        return text.removeprefix("torch.") if text.startswith("torch.") else value


class ColumnMapping(Section):
    """Which raw column holds which part of an example; unset columns are detected."""

    messages: str | None = Field(None, description="OpenAI-style list of {role, content}.")
    conversations: str | None = Field(None, description="ShareGPT list of {from, value}.")
    system: str | None = Field(None, description="System prompt column.")
    instruction: str | None = Field(None, description="Alpaca instruction column.")
    input: str | None = Field(None, description="Alpaca input column.")
    output: str | None = Field(None, description="Alpaca output column.")
    history: str | None = Field(None, description="Alpaca history: list of [user, assistant].")
    prompt: str | None = Field(None, description="Prompt column (prompt/completion shape).")
    completion: str | None = Field(None, description="Completion column.")
    question: str | None = Field(None, description="Question column (GSM8K shape).")
    answer: str | None = Field(None, description="Answer column: reasoning, then '#### N'.")
    text: str | None = Field(None, description="Plain text column (whole row is trained).")
    chosen: str | None = Field(None, description="Preferred answer column (preference pairs).")
    rejected: str | None = Field(None, description="Dispreferred answer column (preference pairs).")
    label: str | None = Field(None, description="Label column (KTO: desirable or not; classify: the class).")
    kto_tag: str | None = Field(None, description="LLaMA-Factory's KTO label column.")


class DataSection(Section):
    dataset_path: list[PathText] = Field(
        default_factory=lambda: ["data/arithmetic_train.jsonl"],
        description="Dataset files or folders (.jsonl, .json, .parquet); a single string is "
        "accepted.",
    )
    format: DataFormat = Field(
        "auto", description="Row shape; 'auto' detects it from the columns present."
    )
    columns: ColumnMapping = Field(
        default_factory=ColumnMapping,
        description="Explicit column names; override detection.",
    )
    max_length: int = Field(1024, ge=8, description="Longest tokenized example, in tokens.")
    overlong_policy: Literal["drop", "truncate", "error"] = Field(
        "drop", description="What to do with an example longer than max_length (always counted)."
    )
    packing: bool = Field(
        False, description="Padding-free packing of several examples per row (SFT)."
    )
    padding_free: bool = Field(
        True,
        description="Batches without padding: SFT's rows end to end, attention kept within each "
        "row (same loss as padded batches, no compute spent on padding). On CPU / MPS, and on a GPU "
        "with flash_attention_2; a GPU on SDPA keeps padded batches. The preference methods' padded "
        "batches (dpo, kto, orpo, simpo) are unpadded inside the model instead, on CPU / MPS, a "
        "pair's shared prompt computed once.",
    )
    max_reject_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Stop before loading the model if more than this share of rows is rejected.",
    )
    holdout_size: int = Field(
        16, ge=0, description="Rows held out of training for probes and evaluation."
    )
    max_rows: int | None = Field(
        None, ge=1, description="Use at most this many rows (after holdout); for quick runs."
    )
    cache_dir: PathText = Field(
        ".cache/prepared", description="Where prepared (tokenized) data is cached."
    )

    @field_validator("dataset_path", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("dataset_path")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one dataset file or folder")
        return value


class ProfileSection(Section):
    name: str = Field(
        "regime3",
        description="Data profile: a registered name (emoji_think, regime3), several joined "
        "with '+', or an import path 'package.module:Class'.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword options passed to the profile."
    )
    stop_sequences: list[str] | None = Field(
        None, description="Replace the profile's own stop sequences at generation."
    )
    system_prompt: str = Field(
        "You are a helpful assistant.",
        description="Base system prompt; the profile adds its own instruction to it.",
    )


class JudgeOptions(Section):
    """A judge and its options (``trainer.judges.JUDGES``); each judge subclasses this."""

    model_config = ConfigDict(defer_build=True)  # as OptimizerOptions

    name: str = Field("profile", description="Judge name: profile, reward_model, always (trainer.judges).")


class CallbackOptions(Section):
    """A callback by name and its options (``trainer.callbacks.CALLBACKS``); each callback
    subclasses this with its own typed options, as methods do with :class:`MethodOptions`."""

    model_config = ConfigDict(defer_build=True)  # as OptimizerOptions

    name: str = Field(..., description="Callback name (trainer.callbacks) or 'package.module:Class'.")

    def settle(self, config: TrainerConfig) -> None:
        """Make ``config`` say what this callback stands for, where another key already says it
        (``win_rate`` is ``inference.win_rate_every_steps``): one source of truth. Raises
        ValueError on a contradiction. Nothing by default."""


class InferenceSection(Section):
    preview_every_steps: int = Field(
        50, ge=0, description="Generate probe previews every this many steps (0: only at end)."
    )
    num_probes: int = Field(
        8, ge=0, description="Held-out prompts answered at each preview and at the end."
    )
    probe_prompts: list[str] = Field(
        default_factory=list,
        description="Fixed probe prompts; when empty, probes come from the held-out rows.",
    )
    max_new_tokens: int = Field(128, ge=1, description="Longest generated answer, in tokens.")
    evaluate_at_start: bool = Field(
        False,
        description="Answer the probes with the starting model too (step 0), so the result has "
        "format and answer rates before training beside those after.",
    )
    temperature: float = Field(0.0, ge=0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass when sampling.")
    repetition_penalty: float = Field(1.0, gt=0, description="transformers repetition penalty.")
    win_rate_every_steps: int = Field(
        0, ge=0, description="Every this many steps (and at the end), the judge compares the model's answers to the "
        "held-out prompts with the starting model's: the win rate in the status file (0: never)."
    )
    judge: SerializeAsAny[JudgeOptions] = Field(
        default_factory=JudgeOptions, validate_default=True,
        description="The judge of win rates (here and daemon.min_win_rate): a name (profile, reward_model, always) "
        "or {\"name\": ..., options}.",
    )

    _judge = field_validator("judge", mode="wrap")(named_options("judge", JudgeOptions))


class OutputSection(Section):
    output_dir: PathText = Field("outputs", description="Parent folder of run directories.")
    run_name: str | None = Field(
        None, description="Run directory name; default '<profile>-<timestamp>'."
    )
    save_steps: int = Field(100, ge=1, description="Save a checkpoint every this many steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept (oldest removed).")
    resume: PathText | None = Field(
        None,
        description="'auto' (newest complete checkpoint of this run, if any) or a checkpoint "
        "folder.",
    )
    report_to: list[str] = Field(
        default_factory=list,
        description="Experiment trackers, by transformers' integration names (tensorboard, wandb, mlflow, "
        "trackio, ...; trainer.trackers): each logged step, the config and the final figures go to each; "
        "their packages are extras (pip install 'hero-trainer[tensorboard]'). Default: none.",
    )
    project: str = Field(
        DEFAULT_PROJECT, min_length=1, description="The trackers' project / experiment name (W&B, MLflow, trackio)."
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _tracker_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # transformers takes one name or "none" as well as a list
            return [] if value == "none" else [value]
        return value

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, value: list[str]) -> list[str]:
        problems = tracker_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or value in {".", ".."}):
            raise ValueError("a run name is a single folder name, without '/'")
        return value


class SystemSection(Section):
    base_dir: PathText | None = Field(
        None,
        description="Relative paths resolve against this folder; default: the config file's "
        "folder, or the working directory when there is no file.",
    )
    status_file: PathText = Field(
        "status/training_status.json", description="Live status JSON for dashboards."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where to train; auto picks cuda, then mps, then cpu."
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    deepspeed: PathText | None = Field(
        None,
        description="A DeepSpeed config JSON (ZeRO stage, offload...) handed to the trainer "
        "(TrainingArguments.deepspeed); needs the deepspeed package and a launcher with several processes.",
    )
    fsdp_config: PathText | None = Field(
        None,
        description="An FSDP config JSON: turns PyTorch FSDP on with it (TrainingArguments.fsdp / fsdp_config); "
        "under torchrun or accelerate launch.",
    )
    keep_freed_memory: bool = Field(
        True,
        description="On a CPU with glibc: keep the memory training steps free for reuse instead of "
        "returning it to the system (fewer page faults; README, 'Speed'). Freed memory then stays "
        "with the process: up to 1 GiB of it, blocks under 32 MiB. Set for the whole process.",
    )
    torch_compile: bool = Field(
        False,
        description="Compile the model with torch.compile (inductor). Off by default: on a 2-core CPU its "
        "compile (107 s cold, 24 s from inductor's cache; bench/speed.py --only compile) outweighs its "
        "1.1x faster steps in a job of a few hundred steps.",
    )


class DebugSection(Section):
    verbose: bool = Field(False, description="Log at DEBUG level.")
    dry_run: bool = Field(
        False, description="Prepare data and print the data report; load no model, train nothing."
    )


class DaemonSection(Section):
    """Settings of ``arena/hero_loop.py``, the daemon that trains on every dropped dataset."""

    status_file: PathText = Field(
        "status/daemon_status.json", description="Live daemon status JSON for dashboards."
    )
    stable_seconds: float = Field(
        2.0, ge=0, description="A dropped file is taken once its size and mtime are this old."
    )
    rescan_seconds: float = Field(
        10.0, gt=0, description="Rescan the inbox this often even without file events."
    )
    max_attempts: int = Field(
        3, ge=1, description="Crashed attempts of one job before it is quarantined in failed/."
    )
    continue_from: Literal["hero", "base"] = Field(
        "hero", description="Train each job from the current hero model, or from model.path."
    )
    format_tolerance: float = Field(
        0.05, ge=0, le=1, description="A candidate may lose this much format compliance (0-1)."
    )
    accuracy_tolerance: float = Field(
        0.05, ge=0, le=1, description="A candidate may lose this much answer accuracy (0-1)."
    )
    loss_tolerance: float = Field(
        0.05, ge=0, description="A candidate's eval loss may exceed the hero's by this fraction."
    )
    min_win_rate: float | None = Field(
        None, ge=0, le=1, description="Promote only if the judge (inference.judge) prefers the candidate's answers to "
        "the hero's on the job's held-out prompts at least this often (ties count half; e.g. 0.5); unset: not judged."
    )
    keep_rejected: int = Field(
        3, ge=0, description="Rejected candidate models kept for inspection (newest first)."
    )
    processes: int = Field(
        1, ge=1, description="Processes per job (torchrun, one per GPU, or gloo on CPU); the global batch is "
        "processes x hyperparams.batch_size x gradient_accumulation_steps."
    )


class GuardSection(Section):
    """What happens when training goes wrong numerically (``trainer.core.divergence``)."""

    on_nonfinite: Literal["fail", "skip"] = Field(
        "fail",
        description="A step whose loss or gradient norm is NaN/Inf: 'fail' ends the run in phase "
        "failed (the bad step is never applied); 'skip' drops that step's update and goes on.",
    )
    max_skipped_steps: int = Field(
        10, ge=0, description="With on_nonfinite 'skip': fail once more steps than this were skipped."
    )
    loss_spike_factor: float | None = Field(
        None,
        gt=1,
        description="Treat a step whose loss exceeds this many times its recent mean like a "
        "non-finite one (skip or fail per on_nonfinite); unset: off.",
    )
    spike_window: int = Field(
        20, ge=1, description="Steps in the recent mean that loss_spike_factor compares against."
    )


class MethodOptions(Section):
    """The training method and its options. Each method (``trainer.methods``) subclasses this
    with its own typed options; ``name`` picks which, and the rest is checked against that
    method's model (unknown keys, types and choices, like every other section)."""

    name: str = Field(
        "sft",
        description="Training method: a registered name (see trainer.methods) or an import path "
        "'package.module:Class'.",
    )


class StageSection(Section):
    """One stage of a curriculum (``stages``): its own method, length and optionally data."""

    method: SerializeAsAny[MethodOptions] = Field(
        default_factory=MethodOptions, validate_default=True, description="The stage's method and options."
    )
    max_steps: int = Field(..., ge=1, description="Optimizer steps of this stage.")
    model_path: PathText | None = Field(
        None, description="The model this stage starts from (a local folder or a builtin); unset: the model the "
        "previous stage saved (the first stage: model.path)."
    )
    dataset_path: list[PathText] | None = Field(
        None, description="The stage's own data files or folders; unset: data.dataset_path."
    )
    max_length: int | None = Field(None, ge=8, description="The stage's data.max_length; unset: the job's.")
    learning_rate: float | None = Field(None, gt=0, description="The stage's peak learning rate; unset: the job's.")
    warmup_steps: int | None = Field(None, ge=0, description="The stage's warmup steps; unset: the job's.")
    cache: bool = Field(
        False, description="Keep this stage's trained model in model.builtin_cache/trained and, in a later job whose "
        "stage has the same settings and data, reuse it instead of training (the out-of-the-box distillation "
        "teacher does)."
    )

    _method = field_validator("method", mode="wrap")(named_options("method", MethodOptions))

    @field_validator("dataset_path", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RLMethodChoice(MethodOptions):
    """The RL method of a hybrid: any registered method, ppo unless named."""

    name: str = Field("ppo", description="The RL method: ppo, grpo, rloo or an import path 'package.module:Class'.")


class HybridSection(Section):
    """Seed 001's hybrid: SFT and an RL method in alternation, the RL share rising over the cycles.

    It is a short form of ``stages``: cycle i of n gives an SFT stage and an RL stage whose steps
    split ``steps_per_cycle``, the RL share going from ``rl_share_start`` to ``rl_share_end`` in
    equal steps ("start SFT-heavy, gradually increase the PPO ratio"). Both train on the job's
    data (RL on its prompts, with its answers as references).
    """

    cycles: int = Field(3, ge=1, description="SFT -> RL cycles.")
    steps_per_cycle: int = Field(40, ge=2, description="Optimizer steps of one cycle, SFT and RL together.")
    rl_method: SerializeAsAny[RLMethodChoice] = Field(
        default_factory=RLMethodChoice,
        validate_default=True,
        description="The RL method and its options (ppo by default, as the seeds; grpo or rloo by choice).",
    )
    rl_share_start: float = Field(0.25, gt=0, lt=1, description="RL's share of the first cycle's steps.")
    rl_share_end: float = Field(0.75, gt=0, lt=1, description="RL's share of the last cycle's steps.")
    # Not the job's: an SFT rate (config.json's 3e-3) wrecks an RL stage; 1e-4 is what the RL
    # methods' out-of-the-box stages use (trainer.methods.rl.RLMethod.refine_stage).
    rl_learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate of the RL stages.")

    # (an rl_method given without its name is read with MethodOptions' default, sft, so an RL
    # option there is an unknown key: RLMethodChoice's ppo is the default of an absent rl_method only)
    _method = field_validator("rl_method", mode="wrap")(named_options("method", MethodOptions))

    def expand(self) -> list[dict[str, Any]]:
        """The stages this hybrid stands for, as ``stages`` entries. Only the first stage warms
        the learning rate up: the later ones continue a model already trained."""
        stages: list[dict[str, Any]] = []
        for cycle in range(self.cycles):
            share = self.rl_share_start + (self.rl_share_end - self.rl_share_start) * (
                cycle / (self.cycles - 1) if self.cycles > 1 else 0.0
            )
            rl_steps = min(self.steps_per_cycle - 1, max(1, round(self.steps_per_cycle * share)))
            warm = {} if cycle == 0 else {"warmup_steps": 0}
            stages.append({"method": {"name": "sft"}, "max_steps": self.steps_per_cycle - rl_steps, **warm})
            stages.append({
                "method": self.rl_method.model_dump(mode="json"), "max_steps": rl_steps, "warmup_steps": 0,
                "learning_rate": self.rl_learning_rate,
            })
        return stages


def _named_callback(value: Any, handler: ValidatorFunctionWrapHandler) -> BaseModel:
    return named_options("callback", CallbackOptions)(None, value, handler)


class TrainerConfig(Section):
    """A whole fine-tuning job."""

    hyperparams: HyperParams = Field(default_factory=HyperParams, description="Optimization.")
    model: ModelSection = Field(default_factory=ModelSection, description="Model to train.")
    data: DataSection = Field(default_factory=DataSection, description="Training data.")
    profile: ProfileSection = Field(
        default_factory=ProfileSection, description="Answer format."
    )
    inference: InferenceSection = Field(
        default_factory=InferenceSection, description="Previews and probes."
    )
    output: OutputSection = Field(default_factory=OutputSection, description="Run directory.")
    system: SystemSection = Field(default_factory=SystemSection, description="Runtime.")
    debug: DebugSection = Field(default_factory=DebugSection, description="Diagnostics.")
    daemon: DaemonSection = Field(
        default_factory=DaemonSection, description="The training daemon (arena/hero_loop.py)."
    )
    guard: GuardSection = Field(
        default_factory=GuardSection, description="Divergence: non-finite loss, gradients, weights."
    )
    method: SerializeAsAny[MethodOptions] = Field(
        default_factory=MethodOptions, validate_default=True, description="Training method and its options."
    )

    stages: list[StageSection] = Field(
        default_factory=list,
        description="A curriculum: stages run in order on the same model, each its own method, "
        "steps and optionally data and length (e.g. sft, then dpo). Empty: one stage, the "
        "method above.",
    )

    hybrid: HybridSection | None = Field(
        None,
        description="Seed 001's SFT <-> RL alternation, a short form of stages (README, 'Curricula'); "
        "unset: none.",
    )

    callbacks: list[Annotated[SerializeAsAny[CallbackOptions], WrapValidator(_named_callback)]] = Field(
        default_factory=list,
        description="Trainer callbacks by name, each a name or {\"name\": ..., options}: bema, log_completions, "
        "merge_adapter, rich_progress, sync_ref_model, win_rate (trainer.callbacks), or 'package.module:Class' "
        "for your own transformers TrainerCallback (its keyword arguments in 'options'); for every stage.",
    )

    _method = field_validator("method", mode="wrap")(named_options("method", MethodOptions))

    @model_validator(mode="after")
    def _callbacks_settle(self) -> TrainerConfig:
        for index, callback in enumerate(self.callbacks):
            try:
                callback.settle(self)
            except ValueError as exc:
                raise ValueError(f"callbacks[{index}]: {exc}") from None
        return self

    @model_validator(mode="after")
    def _hybrid_is_stages(self) -> TrainerConfig:
        # Expanded here, so everything downstream (status, resume, daemon) sees plain stages; a
        # saved config carries both, and reads back the same, since the expansion is repeatable.
        if self.hybrid is None:
            return self
        expanded = [StageSection.model_validate(stage) for stage in self.hybrid.expand()]
        if self.stages and self.stages != expanded:
            raise ValueError("hybrid is a short form of stages: give one of them, not both")
        # Not `self.stages = ...`: assignment is validated, which would run this validator again.
        self.__dict__["stages"] = expanded
        return self

    def stage_methods(self) -> list[MethodOptions]:
        """The method of each stage the job runs (its one method when it has no stages)."""
        return [stage.method for stage in self.stages] or [self.method]

    def resolve_path(self, path: str | Path) -> Path:
        """A config path made absolute against ``system.base_dir`` (or the working directory)."""
        path = Path(path).expanduser()
        if path.is_absolute():
            return path
        return Path(self.system.base_dir or ".").resolve() / path
