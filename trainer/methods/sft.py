"""Supervised fine-tuning through TRL's ``SFTTrainer``, from our config and prepared data.

The dataset arrives tokenized, with ``labels`` already masked (``core.custom_collator``), so TRL
neither re-renders nor re-masks it; it batches with its own collator and runs the transformers
training loop, checkpoints and resume.

Two things make it faster than TRL's defaults on the same rows (``bench/speed.py`` measures them):

- padding-free batches (``data.padding_free``, on by default): a batch's rows end to end in one
  row, no padding token computed; attention stays within each row, through flash attention's
  variable-length path or, on SDPA, ``trainer.models.attention``'s segmented SDPA;
- per-token log-probabilities by plain autograd on a small vocabulary, at the trained positions
  only (``trainer.models.lm_head``, for every method: ``make_trainer`` installs it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainer import optim
from trainer.config.schema import MethodOptions
from trainer.methods.base import Method, make_trainer

if TYPE_CHECKING:
    from trainer.core.context import JobContext


class SFTOptions(MethodOptions):
    name: Literal["sft"] = Field("sft", description="Supervised fine-tuning on the assistant turns.")


def tracker_run_name(run_dir: Any) -> str:
    """The run's name in the trackers: a curriculum's stage as ``<job>/<stage>``, so that two
    jobs' ``stage-1-sft`` stay apart."""
    from core.run_layout import STAGE_PREFIX

    return f"{run_dir.parent.name}/{run_dir.name}" if run_dir.name.startswith(STAGE_PREFIX) else run_dir.name


def training_arguments(context: JobContext, config_class: Any, **method_args: Any) -> Any:
    """The TrainingArguments every method shares, from the job config, as ``config_class``
    (TRL's per-method config classes all extend transformers' TrainingArguments)."""
    from trainer.models.loading import autocast_flags

    config, hp = context.config, context.config.hyperparams
    return config_class(
        output_dir=str(context.run_dir),
        per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        learning_rate=hp.learning_rate,
        num_train_epochs=hp.num_epochs if hp.num_epochs is not None else 1.0,
        max_steps=hp.max_steps if hp.max_steps is not None else -1,
        warmup_steps=hp.warmup_steps if hp.warmup_steps is not None else (hp.warmup_ratio or 0.0),
        **optim.training_arguments(hp),  # optimizer and schedule (trainer.optim)
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        seed=hp.seed,
        data_seed=hp.seed,
        # TRL's base config turns checkpointing on by default (through the deprecated
        # gradient_checkpointing name); ours is off unless asked for, since it costs speed.
        activation_checkpointing=hp.gradient_checkpointing,
        logging_steps=hp.logging_steps,
        logging_first_step=True,  # the loss before any update, for the start/end summary
        # transformers' filter hides a NaN/Inf step inside the logged average (a diverged run
        # then logs loss 0.0); the logs must show it, and trainer.core.divergence acts on it.
        logging_nan_inf_filter=False,
        save_strategy="steps",
        save_steps=config.output.save_steps,
        save_total_limit=config.output.save_total_limit,
        # experiment trackers: transformers' own callbacks (trainer.trackers says where they write)
        report_to=list(config.output.report_to),
        run_name=tracker_run_name(context.run_dir),
        project=config.output.project,
        disable_tqdm=True,  # our console callback prints progress with an ETA
        use_cpu=context.device == "cpu",
        **autocast_flags(context.precision),
        dataloader_num_workers=config.system.num_workers,
        torch_compile=config.system.torch_compile,
        # sharded training, passed through as the library takes it (README, "Several processes")
        deepspeed=str(config.resolve_path(config.system.deepspeed)) if config.system.deepspeed else None,
        fsdp=bool(config.system.fsdp_config) or None,
        fsdp_config=str(config.resolve_path(config.system.fsdp_config)) if config.system.fsdp_config else None,
        dataloader_pin_memory=context.device == "cuda",
        # with several processes: every parameter takes part in each loss (DDP's search for
        # unused ones is an extra pass over the graph each step)
        ddp_find_unused_parameters=False,
        **method_args,
    )


def heldout_conversations(context: JobContext) -> Any:
    """The held-out rows (the probes, with their reference answers) tokenized as training rows are,
    cut to data.max_length: the data of an eval loss."""
    from datasets import Dataset

    from core.custom_collator import tokenize_with_mask

    columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for probe in context.data.probes:
        messages = [*probe.messages, {"role": "assistant", "content": probe.reference}]
        tokens = tokenize_with_mask(context.tokens.tokenizer, messages, context.tokens.template)
        columns["input_ids"].append(tokens.input_ids[: context.config.data.max_length])
        columns["labels"].append(tokens.labels[: context.config.data.max_length])
    return Dataset.from_dict(columns)


def padding_free_rows(context: JobContext) -> bool:
    """Whether a batch's rows go end to end in one row (packed, or ``data.padding_free``).
    Padding-free rows are measured fast on CPUs (segmented SDPA) and are flash attention's own
    format; on a GPU with SDPA they are not measured yet, so batches stay padded there."""
    data = context.config.data
    flash = context.config.model.attn_implementation == "flash_attention_2"
    return data.packing or (data.padding_free and (context.device in ("cpu", "mps") or flash))


def unpad_preference_batches(context: JobContext, *models: Any, pairs: bool = False) -> None:
    """For trainers whose collators pad (DPO's chosen and rejected sequences): the models compute
    those batches padding-free inside (``trainer.models.unpad``; with ``pairs``, a pair's shared
    prompt once), under the same switch and on the same devices as SFT's padding-free rows."""
    from trainer.models import unpad

    if context.config.data.padding_free and context.device in ("cpu", "mps"):
        for model in models:
            if model is not None:
                unpad.unpad_padded_batches(model, pairs=pairs)


class SFT(Method):
    name = "sft"
    Options = SFTOptions
    data_shape = "conversations"
    evaluates_heldout_loss = True

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        from trl import SFTConfig, SFTTrainer

        from trainer.models.attention import use_segmented_attention
        from trainer.models.buckets import bucket_rows

        data = context.config.data
        cpu = context.device in ("cpu", "mps")
        padding_free = padding_free_rows(context)
        if padding_free and cpu:
            use_segmented_attention(model)
            bucket_rows(model)
        args = training_arguments(
            context,
            SFTConfig,
            # rows are already cut to max_length by data preparation; TRL refuses a max_length
            # with padding-free batches that are not packed, since it would not enforce it
            max_length=data.max_length if data.packing else None,
            packing=data.packing,
            padding_free=padding_free,
            packing_strategy="bfd",
        )
        # a schedule on the held-out loss (reduce_on_plateau) evaluates on the held-out rows
        extra = {"eval_dataset": heldout_conversations(context)} if args.eval_strategy != "no" else {}
        return make_trainer(SFTTrainer, context, model, args, callbacks, **extra)
