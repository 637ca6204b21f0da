"""The configuration reference, generated from the schema so the docs cannot drift from the code.

``python trainer/cli_main.py --config-reference`` prints it; the README embeds the same text
between markers and a test keeps the two equal.
"""

from __future__ import annotations

import re

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from trainer.config.errors import section_model
from trainer.config.loader import SHORT_FLAGS
from trainer.config.schema import TrainerConfig

README_BEGIN = "<!-- config-reference:begin -->"
README_END = "<!-- config-reference:end -->"


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    # Annotated[str, AfterValidator(...)] reads as its type; the validator is no reader's business
    text = re.sub(r"Annotated\[(\w+), \w+\(func=<function [\w.]+ at 0x[0-9a-f]+>\)\]", r"\1", text)
    return text.removeprefix("<class '").removesuffix("'>")


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "(required)"
    if isinstance(value, BaseModel):
        return ""
    return json.dumps(value, ensure_ascii=False)


def _section_rows(model: type[BaseModel], prefix: str, flags: dict[str, str]) -> list[str]:
    rows = []
    nested = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = section_model(field.annotation)
        if sub is not None and prefix:
            nested.append((path, sub))
            continue
        if sub is not None:
            continue
        doc = (field.description or "").replace("|", "\\|")
        flag = f" (`{flags[path]}`)" if path in flags else ""
        kind = _type_name(field.annotation).replace("|", "\\|")
        rows.append(f"| `{path}`{flag} | `{kind}` | `{_default(field)}` | {doc} |")
    for path, sub in nested:
        rows.extend(_section_rows(sub, f"{path}.", flags))
        choices = _choices(path)
        if choices is not None:
            rows.extend(_choice_rows(f"{path}.", *choices, flags))
    return rows


def _choice_rows(prefix: str, kind: str, options: dict[str, type[BaseModel]], flags: dict[str, str]) -> list[str]:
    """Each registered choice's own options (a method's, an optimizer's...), marked with the
    choices that take them; a model shared by several names is listed once."""
    rows: dict[str, list[str]] = {}
    for choice, model in sorted(options.items()):
        for row in _section_rows(model, prefix, flags):
            if not row.startswith(f"| `{prefix}name`"):
                rows.setdefault(row, []).append(choice)
    return [row.replace("` |", f"` ({kind} {', '.join(names)}) |", 1) for row, names in rows.items()]


def _choices(path: str) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """The registry behind a field whose options depend on its name."""
    from trainer.methods import METHODS
    from trainer.optim import OPTIMIZERS, SCHEDULERS

    return {
        "method": ("method", {name: cls.Options for name, cls in METHODS.items()}),
        "hyperparams.optimizer": ("optimizer", {name: e.options for name, e in OPTIMIZERS.items()}),
        "hyperparams.scheduler": ("scheduler", {name: e.options for name, e in SCHEDULERS.items()}),
    }.get(path)


def config_reference() -> str:
    """Markdown: one table per section, every field with type, default, flag and description."""
    flags = {flag.path: flag.flag for flag in SHORT_FLAGS}
    out = [
        "Every key below can be set in `config.json` (or a YAML config), or on the command line with "
        "`--set PATH=VALUE` (the value is read as JSON where it parses, else as a string); "
        "short flags are shown beside their keys.",
        "",
    ]
    for name, field in TrainerConfig.model_fields.items():
        sub = section_model(field.annotation)
        assert sub is not None, name
        out += [f"### `{name}`: {field.description}", ""]
        out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        out += _section_rows(sub, f"{name}.", flags)
        choices = _choices(name)
        if choices is not None:
            out += _choice_rows(f"{name}.", *choices, flags)
        out.append("")
    return "\n".join(out).rstrip() + "\n"
