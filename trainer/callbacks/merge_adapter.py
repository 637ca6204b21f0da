"""``merge_adapter``: with LoRA, every checkpoint also gets ``merged/``, the adapters merged into a
full Hugging Face folder that loads and serves without peft (the run's final ``model/`` is
merged already, ``model.lora.merge``).

TRL's ``MergeModelCallback`` (``trl.experimental``) is another thing: it merges the trained model
with its base through mergekit; this is peft's ``merge_and_unload`` on a copy, so training goes
on with the adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from trainer.callbacks.base import CallbackJob, NamedCallback
from trainer.config.schema import CallbackOptions

MERGED = "merged"


class MergeAdapterOptions(CallbackOptions):
    name: Literal["merge_adapter"] = Field("merge_adapter", description="A merged full model in each LoRA checkpoint.")


class MergeAdapter(NamedCallback):
    name = "merge_adapter"
    Options = MergeAdapterOptions

    @classmethod
    def check(cls, config: Any, options: Any, key: str) -> list[str]:
        lora = config.model.lora
        if lora is None:
            return [f"{key}: merge_adapter merges LoRA adapters, and model.lora is not set"]
        if lora.load_in_4bit:
            return [f"{key}: merge_adapter with model.lora.load_in_4bit would merge into 4-bit weights; the final "
                    "model/ is merged from the full-precision base instead (model.lora.merge)"]
        return []

    @classmethod
    def build(cls, job: CallbackJob, options: Any) -> Any:
        import copy

        from transformers import TrainerCallback

        class MergeOnSave(TrainerCallback):
            def on_save(self, args, state, control, model=None, **kwargs):
                if not state.is_world_process_zero:
                    return
                unwrapped = job.trainer.accelerator.unwrap_model(model)
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}" / MERGED
                merged = copy.deepcopy(unwrapped).merge_and_unload()  # a copy: training keeps its adapters
                merged.save_pretrained(str(folder))
                job.save_tokenizer(str(folder))
                if getattr(merged, "generation_config", None) is not None:
                    merged.generation_config.save_pretrained(str(folder))

        return MergeOnSave()
