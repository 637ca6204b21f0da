"""The model card (``README.md`` in the saved model folder): what the model is, in the Hugging Face
card format (YAML metadata, then Markdown), written from the job's own records.

TRL's generated card says "a fine-tuned version of [None](https://huggingface.co/None)" and lands
in the run folder; :func:`trainer.methods.base.make_trainer` turns it off, and this card is the
only one. Every figure in it is read from what the job wrote (the data report, the final
metrics); a figure the job did not measure is not in it, and a non-finite one is written as text.
"""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path
from typing import Any

CARD = "README.md"

# the figures every generating job reports, in the order a reader wants them
MAIN_FIGURES = (
    ("loss_start", "loss at the first step"),
    ("loss_end", "loss at the last step"),
    ("probes_format_ok", "held-out answers in the profile's format"),
    ("probes_correct", "held-out answers right"),
    ("heldout_reward", "held-out reward (mean)"),
    ("heldout_accuracy", "held-out accuracy"),
    ("win_rate", "win rate over the starting model"),
    ("steps", "optimizer steps"),
    ("train_runtime_s", "training time, s"),
)
SKIPPED = {"method", "stages", "classes", "from_cache"}


def engine_version() -> str:
    try:
        return metadata.version("hero-trainer")
    except metadata.PackageNotFoundError:  # run from a clone without installing
        return "unknown (not installed)"


def _shown(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _yaml_list(values: list[str]) -> str:
    return "".join(f"\n- {json.dumps(v)}" for v in values)


def render_card(
    *,
    run_name: str,
    base_model: str,
    method: str,
    generates: bool,
    profile: str,
    system_prompt: str,
    config: dict[str, Any],
    report: dict[str, Any],
    metrics: dict[str, Any],
    model_folder: Path,
    stage: str | None = None,
    example_question: str | None = None,
) -> str:
    """The card's text. ``config`` is the job's config as JSON; ``report`` its data report."""
    hp, data = config["hyperparams"], config["data"]
    pipeline = "text-generation" if generates else "text-classification"
    meta = (
        "---\n"
        "library_name: transformers\n"
        f"pipeline_tag: {pipeline}\n"
        f"base_model: {json.dumps(base_model)}\n"
        f"tags:{_yaml_list(['hero-trainer', method, profile])}\n"
        "---\n"
    )
    made = f"with {method}" + (f", {stage}" if stage else "")
    lines = [
        meta,
        f"# {run_name}",
        "",
        f"Fine-tuned from `{base_model}` {made}, by hero-trainer {engine_version()}, "
        f"to answer in the `{profile}` profile's format.",
        "",
        "## System prompt",
        "",
        "Every training conversation began with this system message. The chat template saved here puts it in "
        "when a conversation has none, and keeps a system message you give:",
        "",
        "```text",
        system_prompt,
        "```",
        "",
        "## Data",
        "",
        "| file | rows read | trained on | held out | rejected | truncated |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {', '.join(f'`{Path(f).name}`' for f in report.get('files', [])) or '–'} | {report.get('rows_total', '–')} | "
        f"{report.get('rows_used', '–')} | {report.get('rows_held_out', '–')} | {report.get('rows_rejected', '–')} | "
        f"{report.get('rows_truncated', '–')} |",
        "",
        f"Longest row {report.get('longest_row_tokens', '–')} tokens (data.max_length {data.get('max_length')}, "
        f"over-long rows: {data.get('overlong_policy')}).",
        "",
        "## Training",
        "",
        "| setting | value |",
        "| --- | --- |",
    ]
    optimizer, scheduler = hp.get("optimizer") or {}, hp.get("scheduler") or {}
    settings = {
        "method": json.dumps(config.get("method")),
        "learning rate": hp.get("learning_rate"),
        "batch size (per device)": hp.get("batch_size"),
        "gradient accumulation": hp.get("gradient_accumulation_steps"),
        "steps": hp.get("max_steps") if hp.get("max_steps") is not None else f"{hp.get('num_epochs') or 1} epoch(s)",
        "warmup steps": hp.get("warmup_steps") if hp.get("warmup_steps") is not None else hp.get("warmup_ratio"),
        "optimizer": optimizer.get("name"),
        "schedule": scheduler.get("name"),
        "weight decay": hp.get("weight_decay"),
        "seed": hp.get("seed"),
        "precision": config["model"].get("precision"),
        "LoRA": json.dumps(config["model"].get("lora")) if config["model"].get("lora") else "no",
    }
    lines += [f"| {k} | {_shown(v)} |" for k, v in settings.items() if v is not None]
    lines += ["", "## Results", "", "Measured by the job at its end (held-out rows, greedy decoding):", "",
              "| figure | value |", "| --- | --- |"]
    probes = metrics.get("probes")
    named = dict(MAIN_FIGURES)
    for key, label in MAIN_FIGURES:
        if key in metrics and metrics[key] is not None:
            value = f"{metrics[key]}/{probes}" if key in ("probes_format_ok", "probes_correct") and probes else _shown(metrics[key])
            lines.append(f"| {label} | {value} |")
    for key, value in metrics.items():
        if key not in named and key not in SKIPPED and not key.startswith("probes") and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            lines.append(f"| `{key}` | {_shown(value)} |")
    question = example_question or "What is 12 + 30?"
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer" if generates
        else "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        f"folder = {json.dumps(str(model_folder))}",
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
    ]
    if generates:
        lines += [
            "model = AutoModelForCausalLM.from_pretrained(folder)",
            f"messages = [{{\"role\": \"user\", \"content\": {json.dumps(question, ensure_ascii=False)}}}]  # the template adds the system prompt",
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", return_dict=True)",
            "output = model.generate(**inputs, max_new_tokens=256, do_sample=False)  # stops at the end of the turn",
            "print(tokenizer.decode(output[0][inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
        ]
    else:
        lines += [
            "model = AutoModelForSequenceClassification.from_pretrained(folder)",
            f"inputs = tokenizer({json.dumps(question, ensure_ascii=False)}, return_tensors=\"pt\")",
            "print(model(**inputs).logits)",
        ]
    lines += ["```", ""]
    return "\n".join(lines)
