"""Load a tokenizer and causal LM the same way for a builtin model and a real local folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config.schema import TrainerConfig
from trainer.models.builtin import resolve_model_path

def model_folder(config: TrainerConfig, spec: str | None = None) -> Path:
    """The local folder to load for ``spec`` (default: ``model.path``): a builtin is built on
    first use, a path is resolved against the config's base folder."""
    spec = config.model.path if spec is None else spec
    folder = resolve_model_path(spec, config.resolve_path(config.model.builtin_cache))
    return folder if folder.is_absolute() else config.resolve_path(folder)


def pick_device(setting: str) -> str:
    import torch

    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# Each precision's weights dtype and the autocast its training runs in (transformers' bf16 / fp16
# flags). The mixed ones keep float32 weights: fp16 because the fp16 gradient scaler cannot
# unscale fp16 gradients (transformers' "Attempting to unscale FP16 gradients"), bfloat16-mixed
# because AdamW's small updates round away on bf16 weights (one near 1.0 moves in steps of 2^-7).
PRECISIONS: dict[str, tuple[str, str | None]] = {
    "float32": ("float32", None),
    "bfloat16": ("bfloat16", "bf16"),
    "bfloat16-mixed": ("float32", "bf16"),
    "float16": ("float32", "fp16"),
}


# On a CPU, bf16 autocast paid from this model width up where it was measured (an AMD EPYC with
# AVX512-BF16; bench/speed.py --only levers): the 3.7 M model (hidden size 256) trained 1.65x
# faster than in float32, the 0.85 M embedded default (128) 0.93x: casting every weight and
# activation to bf16 costs more than a narrow matmul saves.
BF16_CPU_MIN_WIDTH = 256


def model_width(folder: Path | None) -> int | None:
    """The hidden size in a model folder's config.json (an adapter folder's: its base's), or None."""
    import json

    from trainer.models import lora

    if folder is None:
        return None
    folder = Path(folder)
    if lora.is_adapter_folder(folder):
        folder = lora.base_of(folder)
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    width = config.get("hidden_size", (config.get("text_config") or {}).get("hidden_size"))
    return width if isinstance(width, int) else None


def resolve_precision(precision: str, device: str, width: int | None = None) -> str:
    """The one place ``precision: auto`` is decided: bfloat16 on a GPU that supports it;
    bfloat16-mixed on a CPU that multiplies bf16 natively, for a model at least
    ``BF16_CPU_MIN_WIDTH`` wide (or of unknown ``width``); else float32 (bf16 without the
    instructions is emulated, far slower than fp32). The model's dtype and the trainer's bf16 /
    fp16 flags both follow the resolved name (``PRECISIONS``)."""
    if precision != "auto":
        return precision
    import torch

    from trainer.models.cpu import has_bf16_matmul

    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    wide = width is None or width >= BF16_CPU_MIN_WIDTH
    return "bfloat16-mixed" if device == "cpu" and wide and has_bf16_matmul() else "float32"


def torch_dtype(precision: str) -> Any:
    """Weights dtype for a resolved precision (``PRECISIONS``)."""
    import torch

    return getattr(torch, PRECISIONS[precision][0])


def autocast_flags(precision: str) -> dict[str, bool]:
    """transformers' ``bf16`` / ``fp16`` training flags for a resolved precision."""
    autocast = PRECISIONS[precision][1]
    return {"bf16": autocast == "bf16", "fp16": autocast == "fp16"}


def load_tokenizer(folder: Path, config: TrainerConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=config.model.trust_remote_code)
    if len(tokenizer) < 2:  # a folder without vocabulary files yields an empty tokenizer
        from trainer.config.errors import ConfigError

        raise ConfigError([f"model.path: the tokenizer in {folder} has {len(tokenizer)} token(s); the folder lacks its tokenizer files"])
    if tokenizer.pad_token is None:
        # Padding is masked out of the loss and attention, so any token will do; EOS is the
        # common choice for models that ship without a pad token.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(folder: Path, config: TrainerConfig, device: str, precision: str, quantize: bool = True) -> Any:
    """The causal LM in ``folder`` on ``device``, its weights in the resolved ``precision`` (in
    4-bit for QLoRA, unless not ``quantize``). An adapter folder (a LoRA run's model with
    ``model.lora.merge`` off) is loaded onto its base and merged (``trainer.models.lora``)."""
    from transformers import AutoModelForCausalLM

    from trainer.models import lora

    folder = Path(folder).resolve()  # LoRA adapters record their base by this path
    if lora.is_adapter_folder(folder):
        return lora.load_adapter_folder(folder, lambda base: load_model(base, config, device, precision, quantize))
    kwargs: dict[str, Any] = {"dtype": torch_dtype(precision)}
    if config.model.attn_implementation:
        kwargs["attn_implementation"] = config.model.attn_implementation
    quantized = lora.quantization_config(config.model.lora) if quantize else None
    if quantized is not None:  # QLoRA: bitsandbytes places the 4-bit weights itself
        return AutoModelForCausalLM.from_pretrained(
            folder, trust_remote_code=config.model.trust_remote_code, quantization_config=quantized,
            device_map={"": device}, **kwargs,
        )
    model = AutoModelForCausalLM.from_pretrained(
        folder, trust_remote_code=config.model.trust_remote_code, **kwargs
    )
    if device == "cpu":  # measured there only (trainer.models.norms)
        from trainer.models.norms import use_fast_rms_norm

        use_fast_rms_norm(model)
    return model.to(device)
