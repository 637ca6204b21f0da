"""A reward spec (JSON) -> problems, or a built reward tree. One parser serves both.

The spec is the seed system's JSON: a node is ``{"type": NAME, <options>, "post": [...]}``;
``weighted_sum`` has ``components`` (nodes with a ``weight``, default 1.0, and an optional
``name`` for logs); ``"postprocess"`` is accepted for ``"post"`` (the seed's spelling); a bare
string ``"bleu"`` is ``{"type": "bleu"}``. :func:`reward_problems` reports everything wrong at
once, each problem a sentence that starts with its dotted key, before any model loads and without
importing torch; :func:`build_reward` refuses a spec with problems and otherwise builds the tree.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from trainer.rewards.base import Reward, RewardContext, RewardOptions, describe
from trainer.rewards.compose import Component, LeafNode, RewardNode, WeightedSum
from trainer.rewards.models import folder_problems
from trainer.rewards.post import POSTPROCESSORS, PostProcessor
from trainer.rewards.profile_rewards import profile_default_spec
from trainer.rewards.python_reward import PREFIX, PythonReward, PythonRewardOptions, import_function
from trainer.rewards.registry import REWARDS, unknown_reward_message

_SUM_KEYS = ("components", "normalize")
_NODE_KEYS = ("type", "weight", "name", "post", "postprocess")


class RewardSpecError(ValueError):
    """A reward spec with problems, each a full sentence naming its key path."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        count = len(self.problems)
        return "\n".join([f"{count} reward problem{'s' if count != 1 else ''}:", *(f"  - {p}" for p in self.problems)])


def package_available(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class ParsedNode:
    """One node of a spec that parsed: everything needed to build it, nothing loaded."""

    key: str
    name: str
    weight: float = 1.0
    post: list[tuple[type[PostProcessor], RewardOptions]] = field(default_factory=list)
    reward: type[Reward] | None = None  # a leaf's class; None for a weighted sum
    type_name: str = ""
    options: RewardOptions | None = None
    components: list[ParsedNode] = field(default_factory=list)
    normalize: bool = True


class _Parser:
    """Walks a spec, collecting every problem; ``context`` None skips what needs the job (the
    profile); ``environment`` False skips packages and folders."""

    def __init__(self, context: RewardContext | None, environment: bool = True):
        self.context = context
        self.environment = environment
        self.problems: list[str] = []

    def node(self, raw: Any, key: str, in_sum: bool = False, in_profile: bool = False) -> ParsedNode | None:
        if isinstance(raw, str):
            raw = {"type": raw}
        if not isinstance(raw, dict):
            self.problems.append(f"{key}: expected a reward such as {{\"type\": \"bleu\"}}; got {describe(raw)}")
            return None
        raw = dict(raw)
        type_name = raw.pop("type", None)
        if type_name is None:
            self.problems.append(f"{key}.type: required key is missing (a reward name such as 'bleu', or 'weighted_sum')")
            return None
        if not isinstance(type_name, str):
            self.problems.append(f"{key}.type: expected a reward name; got {describe(type_name)}")
            return None
        weight = self._weight(raw, key, in_sum)
        name = self._name(raw, key)
        post = self._post(raw, key)
        if type_name == "weighted_sum":
            parsed = self._sum(raw, key, in_profile)
        elif type_name == "profile":
            parsed = self._profile(raw, key, in_profile)
        else:
            parsed = self._leaf(type_name, raw, key)
        if parsed is None:
            return None
        parsed.weight = weight
        parsed.name = name or parsed.name
        parsed.post = parsed.post + post  # a profile's own post first, then the node's
        return parsed

    # --- the keys every node may have --------------------------------------------------------

    def _weight(self, raw: dict[str, Any], key: str, in_sum: bool) -> float:
        if "weight" not in raw:
            return 1.0
        value = raw.pop("weight")
        if not in_sum:
            self.problems.append(f"{key}.weight: only a component of a weighted_sum has a weight")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{key}.weight: expected a number; got {describe(value)}")
        elif not math.isfinite(value):
            self.problems.append(f"{key}.weight: expected a finite number; got {value}")
        else:
            return float(value)
        return 1.0

    def _name(self, raw: dict[str, Any], key: str) -> str | None:
        if "name" not in raw:
            return None
        value = raw.pop("name")
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", value):
            self.problems.append(
                f"{key}.name: expected a label of letters, digits and _ . : - (it names the reward in logs); got {describe(value)}"
            )
            return None
        return value

    def _post(self, raw: dict[str, Any], key: str) -> list[tuple[type[PostProcessor], RewardOptions]]:
        if "post" in raw and "postprocess" in raw:
            self.problems.append(f"{key}.postprocess: post and postprocess are the same list; give one")
            raw.pop("postprocess")
        spelling = "post" if "post" in raw else "postprocess"
        items = raw.pop(spelling, None)
        if items is None:
            return []
        if not isinstance(items, list):
            self.problems.append(f"{key}.{spelling}: expected a list of post-processors such as [{{\"type\": \"clip\"}}]; got {describe(items)}")
            return []
        out = []
        for index, item in enumerate(items):
            where = f"{key}.{spelling}[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                self.problems.append(f"{where}: expected a post-processor such as {{\"type\": \"clip\", \"min\": 0, \"max\": 1}}; got {describe(item)}")
                continue
            options = dict(item)
            kind = options.pop("type")
            cls = POSTPROCESSORS.get(kind)
            if cls is None:
                self.problems.append(f"{where}.type: {_unknown('post-processor', kind, POSTPROCESSORS)}")
                continue
            parsed = self._options(cls.Options, options, where)
            if parsed is not None:
                out.append((cls, parsed))
        return out

    # --- the kinds of node -------------------------------------------------------------------

    def _sum(self, raw: dict[str, Any], key: str, in_profile: bool) -> ParsedNode | None:
        components = raw.pop("components", None)
        normalize = raw.pop("normalize", True)
        self._unknown_keys(raw, key, _SUM_KEYS)
        if not isinstance(normalize, bool):
            self.problems.append(f"{key}.normalize: expected true or false; got {describe(normalize)}")
        if components is None:
            self.problems.append(f"{key}.components: required key is missing (a weighted_sum needs a list of rewards)")
            return None
        if not isinstance(components, list) or not components:
            self.problems.append(f"{key}.components: expected a non-empty list of rewards; got {describe(components)}")
            return None
        parsed = ParsedNode(key, "reward", normalize=normalize is not False)
        taken: dict[str, int] = {}
        for index, raw_child in enumerate(components):
            explicit = isinstance(raw_child, dict) and "name" in raw_child
            child = self.node(raw_child, f"{key}.components[{index}]", in_sum=True, in_profile=in_profile)
            if child is None:
                continue
            if child.name in taken and explicit:
                self.problems.append(f"{key}.components[{index}].name: {child.name!r} already names components[{taken[child.name]}]")
            elif child.name in taken:
                child.name = _numbered(child.name, taken)
            taken[child.name] = index
            parsed.components.append(child)
        return parsed

    def _profile(self, raw: dict[str, Any], key: str, in_profile: bool) -> ParsedNode | None:
        self._unknown_keys(raw, key, ())
        if in_profile:
            self.problems.append(f"{key}.type: a profile's default reward cannot itself contain 'profile'")
            return None
        if self.context is None:
            return ParsedNode(key, "profile")  # checked again when the job's profile is known
        if self.context.profile is None:
            self.problems.append(f"{key}.type: profile (the profile's default reward) needs the data profile; none was given")
            return None
        spec = profile_default_spec(self.context.profile)
        parsed = self.node(spec, f"{key} (profile {self.context.profile.full_name!r} default reward)", in_sum=False, in_profile=True)
        if parsed is not None and parsed.name == "reward":
            parsed.name = "profile"
        return parsed

    def _leaf(self, type_name: str, raw: dict[str, Any], key: str) -> ParsedNode | None:
        if type_name.startswith(PREFIX):
            try:
                import_function(type_name)
            except ValueError as exc:
                self.problems.append(f"{key}.type: {exc}")
                return None
            options = self._options(PythonRewardOptions, raw, key)
            label = type_name.rsplit(":", 1)[-1]
            return None if options is None else ParsedNode(key, label, reward=PythonReward, type_name=type_name, options=options)
        cls = REWARDS.get(type_name)
        if cls is None:
            self.problems.append(f"{key}.type: {unknown_reward_message(type_name)}")
            return None
        options = self._options(cls.Options, raw, key)
        if self.environment:
            self._environment(cls, options, key)
        return None if options is None else ParsedNode(key, type_name, reward=cls, type_name=type_name, options=options)

    def _environment(self, cls: type[Reward], options: RewardOptions | None, key: str) -> None:
        """Packages, the profile and model folders: what must be on this machine."""
        for requirement in cls.requires:
            if not package_available(requirement.module):
                self.problems.append(f"{key}.type: {cls.name} needs the package {requirement.pip} (pip install {requirement.pip})")
        if cls.needs_profile and self.context is not None and self.context.profile is None:
            self.problems.append(f"{key}.type: {cls.name} judges with the data profile; none was given")
        if options is None:
            return
        folder_ok = True
        if cls.model_option is not None:
            found = folder_problems(getattr(options, cls.model_option))
            folder_ok = not found
            self.problems += [f"{key}.{cls.model_option}: {p}" for p in found]
        if folder_ok:
            self.problems += [f"{key}.{p}" for p in cls.check(options)]

    # --- helpers -------------------------------------------------------------------------------

    def _options(self, model: type[BaseModel], raw: dict[str, Any], key: str) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self.problems += _option_problems(model, exc, key)
            return None

    def _unknown_keys(self, raw: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
        for extra in raw:
            close = difflib.get_close_matches(str(extra), [*allowed, *_NODE_KEYS], n=1)
            hint = f"; did you mean {key}.{close[0]}?" if close else ""
            self.problems.append(f"{key}.{extra}: unknown key{hint}")


def _numbered(name: str, taken: dict[str, int]) -> str:
    number = 2
    while f"{name}_{number}" in taken:
        number += 1
    return f"{name}_{number}"


def _unknown(what: str, name: str, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"unknown {what} {name!r}; did you mean {close[0]!r}?"
    return f"unknown {what} {name!r}; known: {', '.join(sorted(known))}"


def _option_problems(model: type[BaseModel], error: ValidationError, key: str) -> list[str]:
    """pydantic's errors on a node's options in the config's words, under ``key``."""
    from trainer.config.errors import format_validation_error  # light; imported late to avoid a cycle

    out = []
    for item, message in zip(error.errors(include_url=False), format_validation_error(model, error), strict=True):
        if item["type"] == "extra_forbidden":
            message = re.sub(r"; did you mean (\S+)\?$", lambda m: f"; did you mean {key}.{m.group(1)}?", message)
        out.append(f"{key}.{message}" if item["loc"] else f"{key}: {message}")
    return out


def parse_reward(spec: Any, key: str = "method.reward", context: RewardContext | None = None, environment: bool = True) -> tuple[ParsedNode | None, list[str]]:
    """The parsed tree (None if the top node did not parse) and every problem found."""
    parser = _Parser(context, environment)
    return parser.node(spec, key), parser.problems


def reward_problems(spec: Any, key: str = "method.reward", context: RewardContext | None = None) -> list[str]:
    """Everything wrong with a reward spec, each problem a sentence starting with its dotted key
    (``method.reward.components[1].type: unknown reward 'blue'; did you mean 'bleu'?``).

    Checks the structure, every option's type and range, that needed packages are installed
    (found, not imported) and that model folders exist and hold a config.json (and, read from
    that file, a classifier's label). No model loads and torch is not imported, so ``--validate``
    can call it. With ``context``, profile rewards are checked against ``context.profile``;
    without one, they are checked when the reward is built.
    """
    return parse_reward(spec, key, context)[1]


def build_reward(spec: Any, context: RewardContext, key: str = "method.reward") -> RewardNode:
    """The reward tree for ``spec``; ``None`` means the profile's default reward. Models load
    later, on first use.

    Raises:
        RewardSpecError: the spec has problems (all of them, as :func:`reward_problems` says).
    """
    parsed, problems = parse_reward({"type": "profile"} if spec is None else spec, key, context)
    if problems or parsed is None:
        raise RewardSpecError(problems)
    return _build(parsed, context)


def _build(parsed: ParsedNode, context: RewardContext) -> RewardNode:
    post = [cls(options) for cls, options in parsed.post]
    if parsed.reward is None:
        components = [Component(c.name, c.weight, _build(c, context)) for c in parsed.components]
        return WeightedSum(components, name=parsed.name, normalize=parsed.normalize, post=post)
    if parsed.reward is PythonReward:
        reward: Reward = PythonReward(parsed.options, context, parsed.type_name)
    else:
        reward = parsed.reward(parsed.options, context)
    return LeafNode(reward, parsed.name, post)
