"""LoRA and QLoRA through peft (``model.lora``), for every method.

The job wraps the model its method loads (``apply``): peft freezes the base and adds the adapters,
and the trainer trains, checkpoints and resumes only those (transformers saves a PeftModel's
checkpoint as ``adapter_model.safetensors``). At the end (``save``) the adapters go to the run's
``adapter/`` folder and, with ``merge`` (the default), merged into the base they make a plain
Hugging Face folder in ``model/`` that ``from_pretrained`` loads with nothing else; without it
``model/`` is the adapter folder, and :func:`load_adapter_folder` (the engine's loader) puts it on
its base again, so a next stage, the daemon's evaluation and a job continuing from it work alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.config.schema import LoraSection

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_folder(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def base_of(folder: Path) -> Path:
    """The base model folder an adapter folder was trained on (its adapter_config.json)."""
    return Path(json.loads((Path(folder) / ADAPTER_CONFIG).read_text("utf-8"))["base_model_name_or_path"])


def apply(model: Any, lora: LoraSection, task_type: str, seed: int) -> Any:
    """``model`` with fresh LoRA adapters (a peft ``PeftModel``); ``task_type`` is peft's
    ("CAUSAL_LM", "SEQ_CLS": a classifier's head then trains in full, as peft does by default).
    The adapters' random init is seeded: the same job makes the same adapters, and a resumed job
    continues what an uninterrupted one would have done."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias=lora.bias,
        modules_to_save=lora.modules_to_save,
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        task_type=task_type,
    )
    if lora.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    set_seed(seed)
    return get_peft_model(model, config)


def quantization_config(lora: LoraSection | None) -> Any:
    """transformers' 4-bit loading settings for QLoRA, or None."""
    if lora is None or not lora.load_in_4bit:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_adapter_folder(folder: Path, load_base: Any) -> Any:
    """The model of an adapter folder: its base (``load_base(path)``, itself possibly an adapter
    folder) with the adapters merged in, named after ``folder`` so adapters trained on it next
    record it as their base."""
    from peft import PeftModel

    merged = PeftModel.from_pretrained(load_base(base_of(folder)), str(folder)).merge_and_unload()
    merged.name_or_path = merged.config._name_or_path = str(folder)
    return merged


def save(trainer: Any, model: Any, model_dir: Path, adapter_dir: Path, lora: LoraSection, write: bool = True,
         load_base: Any = None) -> Any:
    """Write the adapters to ``adapter_dir`` and the final model to ``model_dir`` (merged, or the
    adapters again); returns the model the job goes on with (merged: a plain transformers model).
    Every rank calls it (the trainer's saves are collective under FSDP); ``write``: this rank
    writes what the trainer does not (the merged model). ``load_base(path)`` loads a base at
    full precision: a 4-bit base would merge lossily into a 4-bit folder, so QLoRA's adapters are
    merged onto the base reloaded."""
    trainer.save_model(str(adapter_dir))
    if not lora.merge:
        trainer.save_model(str(model_dir))
        return model
    if not write:
        return model
    merged = load_adapter_folder(adapter_dir, load_base) if lora.load_in_4bit else model.merge_and_unload()
    merged.save_pretrained(str(model_dir))
    return merged
