"""Merge a job config from defaults < config file < CLI flags, remembering where each value came from.

Values are merged as raw JSON-like dicts first and validated once at the end, so every problem
(file, short flags and ``--set`` alike) is reported together, each with its dotted path and source.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainer.config.errors import ConfigError, format_validation_error, section_at, value_prefix
from trainer.config.schema import TrainerConfig

DEFAULT_CONFIG_FILE = "config.json"
# looked for in this order when --config is not given; a folder with two of them is refused
DEFAULT_CONFIG_FILES = (DEFAULT_CONFIG_FILE, "config.yaml", "config.yml")
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class Flag:
    """A short CLI flag for a common dotted config path.

    ``clears`` lists paths the flag resets to null: ``--max-steps`` replaces an epoch count from
    the config file instead of colliding with it.
    """

    flag: str
    path: str
    metavar: str
    clears: tuple[str, ...] = ()
    nargs: str | None = None


# The one table of short flags; the CLI parser and the README are built from it.
SHORT_FLAGS: tuple[Flag, ...] = (
    Flag("--profile", "profile.name", "NAME"),
    Flag("--dataset", "data.dataset_path", "PATH", nargs="+"),
    Flag("--model", "model.path", "PATH"),
    Flag("--batch-size", "hyperparams.batch_size", "N"),
    Flag("--lr", "hyperparams.learning_rate", "LR"),
    Flag("--epochs", "hyperparams.num_epochs", "N", clears=("hyperparams.max_steps",)),
    Flag("--max-steps", "hyperparams.max_steps", "N", clears=("hyperparams.num_epochs",)),
    Flag("--output-dir", "output.output_dir", "DIR"),
    Flag("--run-name", "output.run_name", "NAME"),
    Flag("--resume", "output.resume", "auto|PATH"),
    Flag("--method", "method.name", "NAME"),
)


def flag_dest(flag: Flag) -> str:
    return flag.flag.lstrip("-").replace("-", "_")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted path: leaf value}; empty dicts count as leaves."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _set_path(target: dict[str, Any], path: str, value: Any) -> str | None:
    """Set ``target[a][b][c] = value`` for path "a.b.c"; returns a problem message or None."""
    parts = path.split(".")
    if not all(parts):
        return f"{path}: not a valid dotted key path"
    leaf = value_prefix(TrainerConfig, path)
    if leaf is not None:
        return f"{path}: {leaf} is a value, not a section"
    node = target
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if isinstance(child, str) and _named_section(parts[: depth + 1]):
            child = node[part] = {"name": child}  # "scheduler": "cosine", then its .num_cycles
        if not isinstance(child, dict):
            parent = ".".join(parts[: depth + 1])
            return f"{path}: {parent} is a value, not a section"
        node = child
    node[parts[-1]] = value
    return None


def _named_section(loc: list[str]) -> bool:
    """A section given by its name alone (method, hyperparams.optimizer, ...: ``schema.use_options``)."""
    section = section_at(TrainerConfig, loc)
    return section is not None and "name" in section.model_fields


def parse_cli_value(text: str) -> Any:
    """A ``--set`` value: JSON where it parses (numbers, true, null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set(item: str) -> tuple[str, Any] | str:
    """``KEY.PATH=VALUE`` (a ``--set``) -> (path, value), or the problem with it."""
    path, sep, text = item.partition("=")
    if not sep or not path.strip():
        what = "no '='" if not sep else "no key before '='"
        return f"--set {item}: {what}; expected KEY.PATH=VALUE, e.g. hyperparams.batch_size=8"
    return path.strip(), parse_cli_value(text)


def set_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set`` items as a dotted-path dict for :func:`create_default_config`'s ``overrides``
    (scripts that take ``--set`` as the CLI does: ``examples/``).

    Raises:
        ConfigError: every malformed item, at once.
    """
    parsed = [parse_set(item) for item in items]
    problems = [p for p in parsed if isinstance(p, str)]
    if problems:
        raise ConfigError(problems)
    return dict(p for p in parsed if not isinstance(p, str))


YAML_SUFFIXES = (".yaml", ".yml")
CONFIG_FORMATS = ("json", "yaml")


def read_config_file(path: Path) -> dict[str, Any]:
    """Load a JSON or YAML config file (by suffix), naming the file, line and column of any
    syntax error and every key given twice."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc}"]) from None
    kind = "YAML" if path.suffix.lower() in YAML_SUFFIXES else "JSON"
    data = _parse_yaml(path, text) if kind == "YAML" else _parse_json(path, text)
    if not isinstance(data, dict):
        what = "a JSON object" if kind == "JSON" else "a YAML mapping"
        raise ConfigError([f"{path}: the top level must be {what}, got {type(data).__name__}"])
    duplicates: list[str] = []
    data = _plain(data, "", duplicates)
    if duplicates:
        raise ConfigError(
            [f"{path}: key {key} is given {count} times; {kind} keeps only the last, so keep one" for key, count in duplicates]
        )
    return data


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_KeyedObject.from_pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"]) from None


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml

    try:
        data = yaml.load(text, Loader=_config_yaml_loader())
        return {} if data is None else data  # an empty file, or comments alone
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([f"{where}: invalid YAML: {what}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None


@functools.cache
def _config_yaml_loader() -> type:
    """PyYAML's safe loader with two fixes for configs: mappings remember repeated keys (PyYAML
    keeps the last silently, as ``json`` does), and ``1e-4`` is a float. PyYAML follows YAML 1.1,
    which needs a dot in a float, so a learning rate written the way everyone writes it would
    arrive as the string "1e-4"."""
    import re

    import yaml

    class ConfigYamlLoader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _KeyedObject:
        # repeated keys are counted among those written here; a merge key (<<: *anchor) brings
        # in keys that the ones written here may override, as YAML means it
        written = [loader.construct_object(k, deep=True) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        loader.flatten_mapping(node)
        obj = _KeyedObject({loader.construct_object(k, deep=True): loader.construct_object(v, deep=True) for k, v in node.value})
        counts = {key: written.count(key) for key in dict.fromkeys(written)}
        obj.repeated = {key: count for key, count in counts.items() if count > 1}
        return obj

    ConfigYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    ConfigYamlLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return ConfigYamlLoader


def dump_config(data: Any, fmt: str) -> str:
    """``data`` as config text in ``fmt`` (one of :data:`CONFIG_FORMATS`), keys in schema order."""
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


class _KeyedObject(dict):
    """A parsed JSON object / YAML mapping that remembers the keys it was given more than once
    (both parsers keep the last silently, so a config with two learning rates would lose one)."""

    repeated: dict[str, int]

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _KeyedObject:
        obj = cls()
        obj.repeated = {}
        for key, value in pairs:
            if key in obj:
                obj.repeated[key] = obj.repeated.get(key, 1) + 1
            obj[key] = value
        return obj


def _plain(value: Any, prefix: str, duplicates: list[tuple[str, int]]) -> Any:
    """Plain dicts again, collecting (dotted key, count) for every repeated key."""
    if isinstance(value, dict):
        for key, count in getattr(value, "repeated", {}).items():
            duplicates.append((prefix + key, count))
        return {k: _plain(v, f"{prefix}{k}.", duplicates) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, prefix, duplicates) for v in value]
    return value


class ConfigLoader:
    """Builds a :class:`TrainerConfig` from defaults, a JSON file and CLI arguments.

    Example::

        loader = ConfigLoader("config.json")
        config = loader.merge_with_cli_args(args)   # or loader.load() for file only
        loader.sources["hyperparams.learning_rate"]  # "config.json", "--lr", "default", ...
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.sources: dict[str, str] = {}
        self._raw: dict[str, Any] = {}
        self._problems: list[str] = []

    def load(self) -> TrainerConfig:
        """Defaults < file. Raises :class:`ConfigError` with every problem found."""
        return self._build(overrides=())

    def merge_with_cli_args(self, args: argparse.Namespace | Mapping[str, Any]) -> TrainerConfig:
        """Defaults < file < CLI. ``args`` is the CLI namespace (short flags and ``set``)."""
        values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
        overrides: list[tuple[str, Any, str]] = []
        given_flags = {f.path: f.flag for f in SHORT_FLAGS if values.get(flag_dest(f)) is not None}
        for flag in SHORT_FLAGS:
            given = values.get(flag_dest(flag))
            if given is None:
                continue
            clashes = [given_flags[path] for path in flag.clears if path in given_flags]
            if clashes and flag.flag < clashes[0]:  # report each clashing pair once
                self._problems.append(f"{flag.flag} and {clashes[0]} both given; choose one")
            overrides.extend((path, None, flag.flag) for path in flag.clears)
            overrides.append((flag.path, given, flag.flag))
        for item in values.get("set") or ():
            parsed = parse_set(item)
            if isinstance(parsed, str):
                self._problems.append(parsed)
                continue
            overrides.append((*parsed, "--set"))
        return self._build(overrides)

    def apply(self, overrides: Mapping[str, Any], source: str) -> TrainerConfig:
        """Defaults < file < ``overrides`` (dotted path -> value), all tagged with ``source``."""
        return self._build([(path, value, source) for path, value in overrides.items()])

    def _build(self, overrides: Iterable[tuple[str, Any, str]]) -> TrainerConfig:
        self._raw, self.sources = {}, {}
        if self.path is not None:
            try:
                file_data = read_config_file(self.path)
            except ConfigError as exc:
                self._problems.extend(exc.problems)
            else:
                self._raw = file_data
                self.sources.update(dict.fromkeys(_flatten(file_data), str(self.path)))
        for path, value, source in overrides:
            problem = _set_path(self._raw, path, value)
            if problem:
                self._problems.append(f"{problem} (from {source})")
                continue
            self.sources = {
                k: v for k, v in self.sources.items() if k != path and not k.startswith(path + ".")
            }
            self.sources[path] = source
        system = self._raw.get("system")
        if self.path is not None and not (isinstance(system, dict) and "base_dir" in system):
            _set_path(self._raw, "system.base_dir", str(self.path.resolve().parent))
            self.sources["system.base_dir"] = f"folder of {self.path}"
        try:
            config = TrainerConfig.model_validate(self._raw)
        except ValidationError as exc:
            self._problems.extend(format_validation_error(TrainerConfig, exc, self.sources))
            config = None
        if self._problems:
            problems, self._problems = self._problems, []
            raise ConfigError(problems)
        assert config is not None
        defaults = _flatten(config.model_dump(mode="json"))
        self.sources = {
            **{path: DEFAULT_SOURCE for path in defaults},
            **self.sources,
        }
        return config

    def provenance(self, config: TrainerConfig) -> dict[str, Any]:
        """The merged config plus, per dotted path, where its value came from."""
        return {"config": config.model_dump(mode="json"), "sources": dict(sorted(self.sources.items()))}


def default_config_path(explicit: str | None, cwd: Path | None = None) -> Path | None:
    """``--config`` if given, else ``./config.json`` (or ``config.yaml`` / ``config.yml``) when
    present, else none (defaults only). Two of them in one folder are refused: which one a job
    took would be a guess."""
    if explicit:
        return Path(explicit)
    found = [path for name in DEFAULT_CONFIG_FILES if (path := (cwd or Path.cwd()) / name).is_file()]
    if len(found) > 1:
        raise ConfigError([f"{', '.join(p.name for p in found)} are all in {found[0].parent}; "
                           "keep one, or choose with --config"])
    return found[0] if found else None


def create_default_config(
    model_path: str | None = None,
    dataset_path: str | Sequence[str] | None = None,
    output_dir: str | None = None,
    profile: str | None = None,
    run_name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainerConfig:
    """A config built in code: schema defaults plus the given values.

    Example::

        config = create_default_config(
            model_path="/models/Qwen3-0.6B", dataset_path="data.jsonl", output_dir="outputs",
            overrides={"hyperparams.learning_rate": 1e-4},
        )

    Raises:
        ConfigError: when a value or an override path is invalid.
    """
    given = {
        "model.path": model_path,
        "data.dataset_path": list(dataset_path) if isinstance(dataset_path, (list, tuple)) else dataset_path,
        "output.output_dir": output_dir,
        "profile.name": profile,
        "output.run_name": run_name,
    }
    values = {path: value for path, value in given.items() if value is not None}
    values.update(overrides or {})
    return ConfigLoader(None).apply(values, source="create_default_config")
