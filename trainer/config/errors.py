"""Config problems in a person's words: full dotted path, what was expected, a did-you-mean.

All problems of one load are collected into a single :class:`ConfigError`; the CLI prints them and
exits with code 2, without a traceback.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError


class ConfigError(Exception):
    """One or more problems with a configuration, each a full sentence naming its key path."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} configuration problem{'s' if count != 1 else ''}:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``Foo``, ``Foo | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is typing.Annotated:  # SerializeAsAny[...], Field metadata
        return section_model(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is list:  # stages: list[StageSection]
        return section_model(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = section_model(arg)
            if found is not None:
                return found
    return None


def section_at(root: type[BaseModel], loc: Iterable[str | int]) -> type[BaseModel] | None:
    """The model class found by following ``loc`` from ``root``; None if it leaves the schema."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) and model is not None:
            continue  # an item of a list of sections (stages[1]) is that section
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = section_model(model.model_fields[part].annotation)
    return model


def value_prefix(root: type[BaseModel], path: str) -> str | None:
    """The part of ``path`` that is already a plain value in the schema ("a.b" of "a.b.c")."""
    parts = path.split(".")
    for depth in range(1, len(parts)):
        parent = section_at(root, parts[: depth - 1])
        name = parts[depth - 1]
        if parent is None or name not in parent.model_fields:
            return None
        annotation = parent.model_fields[name].annotation
        if section_model(annotation) is None and typing.get_origin(annotation) is not dict:
            return ".".join(parts[:depth])
    return None


def leaf_paths(root: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted field path of the schema, sections and leaves alike."""
    paths = []
    for name, field in root.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        sub = section_model(field.annotation)
        if sub is not None:
            paths.extend(leaf_paths(sub, f"{path}."))
    return paths


def suggest_key(root: type[BaseModel], loc: tuple[str | int, ...]) -> str | None:
    """The valid dotted path a misspelt or misplaced key most likely meant."""
    parent = section_at(root, loc[:-1])
    key = str(loc[-1])
    prefix = f"{dotted(loc[:-1])}." if loc[:-1] else ""
    if parent is not None:
        names = list(dict.fromkeys([*parent.model_fields, *_subclass_fields(parent)]))
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        close = close or [name for name in names if _abbreviates(key, name)]
        if close:
            return prefix + close[0]
    # A right name in the wrong section ("learning_rate" at the top level) is a common slip.
    everywhere = leaf_paths(root)
    same_name = [p for p in everywhere if p.rsplit(".", 1)[-1] == key]
    if same_name:
        return same_name[0]
    close = difflib.get_close_matches(key, [p.rsplit(".", 1)[-1] for p in everywhere], n=1)
    if close:
        return next(p for p in everywhere if p.rsplit(".", 1)[-1] == close[0])
    return None


def _subclass_fields(model: type[BaseModel]) -> list[str]:
    """Fields of a section's subclasses: a method's options extend ``MethodOptions``, and the
    key a user meant may be one of them."""
    found = []
    for sub in model.__subclasses__():
        found += [*sub.model_fields, *_subclass_fields(sub)]
    return found


def _abbreviates(short: str, name: str) -> bool:
    """"lr" for learning_rate, "epochs" for num_epochs: initials, or a whole word of the name."""
    words = name.split("_")
    return short == "".join(w[0] for w in words) or (len(words) > 1 and short in words)


def _describe_input(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def format_validation_error(
    root: type[BaseModel],
    error: ValidationError,
    sources: Mapping[str, str] | None = None,
) -> list[str]:
    """Turn pydantic's errors into one message per problem.

    Args:
        root: the model that was validated, used to find did-you-mean candidates.
        error: what pydantic raised.
        sources: dotted path -> where the value came from, appended as "(from ...)".
    Returns:
        Messages such as "hyperparams.learnig_rate: unknown key; did you mean
        hyperparams.learning_rate?".
    """
    sources = sources or {}
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not _is_union_branch(p))
        path = dotted(loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            guess = suggest_key(root, loc)
            message = f"{path}: unknown key" + (f"; did you mean {guess}?" if guess else "")
        elif kind == "value_error" or kind == "assertion_error":
            message = f"{path}: {str(item['msg']).removeprefix('Value error, ')}"
            if not loc:
                message = message.removeprefix("(top level): ")
        elif kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            given = item.get("input")
            message = f"{path}: expected one of {expected}; got {_describe_input(given)}"
            if isinstance(given, str):
                choices = [c.strip(" '") for c in expected.replace(" or ", ", ").split(",")]
                close = difflib.get_close_matches(given, choices, n=1)
                if close:
                    message += f"; did you mean '{close[0]}'?"
        elif kind == "missing":
            message = f"{path}: required key is missing"
        else:
            expected = item["msg"].removeprefix("Input should be ").rstrip(".")
            message = f"{path}: expected {expected}; got {_describe_input(item.get('input'))}"
        source = _source_of(path, sources)
        if source:
            message += f" (from {source})"
        problems.append(message)
    return problems


def dotted(loc: Iterable[str | int]) -> str:
    """``("data", "dataset_path", 0)`` -> ``data.dataset_path[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _is_union_branch(part: str | int) -> bool:
    # pydantic inserts the tried branch ("list[str]", "function-before[...]") into the loc.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _source_of(path: str, sources: Mapping[str, str]) -> str | None:
    path = re.sub(r"\[\d+\]", "", path)  # a list item's source is its list's
    below = [src for key, src in sources.items() if key.startswith(path + ".") and src != "default"]
    if below:
        return below[0]
    while path:
        if path in sources and sources[path] != "default":
            return sources[path]
        path = path.rpartition(".")[0]
    return None
