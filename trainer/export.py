"""``trainer export RUN_OR_MODEL_DIR --to ollama|merged``: a saved model made ready for a serving stack.

- ``ollama``: a ``Modelfile`` beside the weights (``ollama create NAME -f Modelfile`` in that
  folder): the chat template in Ollama's Go template language, the profile's system prompt, the
  stop tokens and greedy sampling, as the engine evaluates. Only ChatML templates translate
  (the embedded models', Qwen's): a Jinja template in general is a program, and no converter of
  Jinja to Go templates exists to rely on.
- ``merged``: a LoRA adapter folder (``model.lora.merge: false``) merged onto its recorded base
  into a full folder that loads without peft.

A run folder is taken to its final model (a curriculum's last stage: ``result.json`` names it).
The system prompt and stops come from the run's ``resolved_config.json`` (the profile) where the
folder sits in a run, else from what the saved template carries.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.run_layout import RunLayout
from trainer.config.errors import ConfigError
from trainer.models.templates import default_system_of

MODELFILE = "Modelfile"
CHATML_END = "<|im_end|>"

# Ollama's Go template for ChatML: what CHATML_TEMPLATE (with its default system head) renders.
# Ollama puts the Modelfile's SYSTEM first among the messages when a request has none, and hands
# the system message both as .System and inside .Messages: the loop skips it (as Ollama's own
# qwen2 template does), or it would be rendered twice.
OLLAMA_CHATML = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}{{- if ne .Role \"system\" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}{{ end }}"
    "<|im_start|>assistant\n"
)


def _quoted(value: str, key: str) -> str:
    """A Modelfile value as Ollama's parser reads it: it strips the quotes and unescapes nothing,
    so a value with a newline (a stop of "\\n\\n\\n") is written with the real characters
    inside triple quotes, which may span lines."""
    if '"""' in value:
        raise ConfigError([f"{key}: {value!r} holds three double quotes, which a Modelfile cannot quote"])
    return f'"""{value}"""' if ("\n" in value or '"' in value) else f'"{value}"'


def model_folder(path: Path) -> Path:
    """The model folder ``path`` names: itself, or a run's final model."""
    path = Path(path)
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    result = path / RunLayout.RESULT
    if result.is_file():
        saved = json.loads(result.read_text("utf-8")).get("model_path")
        if saved and Path(saved).is_dir():
            return Path(saved)
    if (path / RunLayout.MODEL).is_dir():
        return path / RunLayout.MODEL
    raise ConfigError([f"{path}: neither a model folder (config.json) nor a run folder with a saved model"])


def _run_config(folder: Path) -> dict[str, Any] | None:
    """The resolved config of the run (or stage) the model folder was saved by."""
    resolved = folder.parent / RunLayout.RESOLVED_CONFIG
    if resolved.is_file():
        return json.loads(resolved.read_text("utf-8")).get("config")
    return None


def system_and_stops(folder: Path, template: str) -> tuple[str, list[str]]:
    """The system prompt a conversation without one gets, and where generation stops: as the job
    that saved the folder had them, else what the saved template carries."""
    saved = _run_config(folder)
    if saved is None:
        return default_system_of(template), []
    from trainer.config.schema import TrainerConfig
    from trainer.core.context import stop_sequences, system_prompt
    from trainer.profiles import get_profile

    config = TrainerConfig.model_validate(saved)
    profile = get_profile(config.profile.name, config.profile.options)
    return system_prompt(config, profile), stop_sequences(config, profile)


def _template(folder: Path) -> str:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text("utf-8")
    config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
    return config.get("chat_template") or ""


def modelfile(folder: Path, source: str = ".") -> str:
    """The Modelfile text for the model in ``folder``; ``source`` is its FROM (Ollama resolves a
    relative one against the Modelfile's folder)."""
    template = _template(folder)
    if "<|im_start|>" not in template or CHATML_END not in template:
        raise ConfigError([f"{folder}: its chat template is not ChatML; only ChatML templates translate to Ollama's "
                           "(write TEMPLATE in the Modelfile yourself)"])
    system, stops = system_and_stops(folder, template)
    generation = json.loads((folder / "generation_config.json").read_text("utf-8")) if (folder / "generation_config.json").is_file() else {}
    lines = [
        "# Written by hero-trainer (trainer export --to ollama): ollama create NAME -f Modelfile",
        f"FROM {source}",
        f'TEMPLATE """{OLLAMA_CHATML}"""',
    ]
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'the system prompt')}")
    for stop in dict.fromkeys([CHATML_END, *stops]):
        lines.append(f"PARAMETER stop {_quoted(stop, 'a stop sequence')}")
    lines.append("PARAMETER temperature 0")  # greedy, as the engine's previews and held-out figures
    if isinstance(generation.get("max_new_tokens"), int):
        lines.append(f"PARAMETER num_predict {generation['max_new_tokens']}")
    return "\n".join(lines) + "\n"


def export_ollama(folder: Path, out: Path | None) -> Path:
    beside = out is None or out.resolve() == folder.resolve()
    target = (folder if beside else out) / MODELFILE
    text = modelfile(folder, "." if beside else str(folder.resolve()))  # elsewhere: FROM names the weights
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, "utf-8")
    return target


def export_merged(folder: Path, out: Path | None) -> Path:
    """The adapter folder merged onto its base, as a full model folder."""
    from transformers import AutoTokenizer

    from trainer.models import lora

    if not lora.is_adapter_folder(folder):
        raise ConfigError([f"{folder}: not a LoRA adapter folder (no adapter_config.json): it is a full model already"])
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    target = out or folder.parent / f"{folder.name}-merged"
    if target.exists() and any(target.iterdir()):
        raise ConfigError([f"{target} already exists and is not empty; choose another with --output"])
    adapter = json.loads((folder / lora.ADAPTER_CONFIG).read_text("utf-8"))
    auto = AutoModelForSequenceClassification if adapter.get("task_type") == "SEQ_CLS" else AutoModelForCausalLM
    merged = lora.load_adapter_folder(folder, lambda base: auto.from_pretrained(base))
    merged.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(target))
    if (folder / "generation_config.json").is_file():
        shutil.copy2(folder / "generation_config.json", target / "generation_config.json")
    card = folder / "README.md"
    if card.is_file():  # the card's usage snippet names the folder it loads
        (target / "README.md").write_text(card.read_text("utf-8").replace(json.dumps(str(folder)), json.dumps(str(target))), "utf-8")
    return target


EXPORTS: dict[str, Callable[[Path, Path | None], Path]] = {"ollama": export_ollama, "merged": export_merged}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer export", description="Make a saved model ready for a serving stack.")
    parser.add_argument("path", type=Path, help="A run folder (its final model) or a model folder.")
    parser.add_argument("--to", required=True, choices=sorted(EXPORTS), help="ollama: a Modelfile beside the weights; "
                        "merged: a LoRA adapter folder merged into a full one.")
    parser.add_argument("--output", type=Path, help="Where to write (default: the model folder; merged: <model>-merged).")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    written = EXPORTS[args.to](model_folder(args.path), args.output)
    print(f"wrote {written}")
    return 0
