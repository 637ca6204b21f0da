"""The built reward tree: leaves (one reward each), weighted sums of nodes, post-processing on any.

What :func:`trainer.rewards.build_reward` returns is a :class:`RewardNode`: call
``node.score(prompts, completions, references, rows)`` for the rewards, or
``node.score_detailed(...)`` for the rewards and each component's own values, which RL methods
log (mean and std per component, like TRL's ``rewards/<name>/mean``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.rewards.base import Reward, Row
from trainer.rewards.post import PostProcessor

Values = list[float | None]


@dataclass
class RewardScores:
    """One batch scored: ``total[i]`` is example i's reward; ``components[name][i]`` is what
    component ``name`` gave it (after its own post-processing, before its weight). A single
    reward is its own one component."""

    total: Values
    components: dict[str, Values] = field(default_factory=dict)

    def summary(self) -> dict[str, float | None]:
        """Means and standard deviations, named as TRL's GRPO logs them: ``reward``,
        ``reward_std``, ``rewards/<name>/mean``, ``rewards/<name>/std``. Values that do not
        apply (None) are left out; std is the sample std (None below two values), as TRL's."""
        out = {"reward": _mean(self.total), "reward_std": _std(self.total)}
        for name, values in self.components.items():
            out[f"rewards/{name}/mean"] = _mean(values)
            out[f"rewards/{name}/std"] = _std(values)
        return out


def _mean(values: Values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _std(values: Values) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    mean = sum(present) / len(present)
    return math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1))


class RewardNode:
    """A node of the tree: ``name`` (its label in logs) and post-processors applied in order."""

    def __init__(self, name: str, post: Sequence[PostProcessor] = ()):
        self.name = name
        self.post = list(post)

    def score(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[str | None] | None = None,
        rows: Sequence[Row] | None = None,
    ) -> Values:
        """One reward per completion (None where nothing applies); see :class:`RewardScores`."""
        return self.score_detailed(prompts, completions, references, rows).total

    __call__ = score

    def score_detailed(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[str | None] | None = None,
        rows: Sequence[Row] | None = None,
    ) -> RewardScores:
        scores = self._score_raw(prompts, completions, references, rows)
        for processor in self.post:
            scores.total = processor.apply(scores.total)
        if not isinstance(self, WeightedSum):
            scores.components = {self.name: list(scores.total)}
        return scores

    def _score_raw(self, prompts, completions, references, rows) -> RewardScores:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What must survive a resume (EMA statistics), nested like the tree."""
        return {"post": [p.state_dict() for p in self.post]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for processor, saved in zip(self.post, state.get("post", []), strict=True):
            processor.load_state_dict(saved)


class LeafNode(RewardNode):
    """One registered reward."""

    def __init__(self, reward: Reward, name: str, post: Sequence[PostProcessor] = ()):
        super().__init__(name, post)
        self.reward = reward

    def _score_raw(self, prompts, completions, references, rows) -> RewardScores:
        return RewardScores(self.reward.score(prompts, completions, references, rows))


@dataclass
class Component:
    """A term of a weighted sum: its node and its weight as written."""

    name: str
    weight: float
    node: RewardNode


class WeightedSum(RewardNode):
    """``sum_i w_i * r_i``, with ``w_i`` divided by the sum of the weights' sizes when ``normalize``
    (the seed system's WeightedSum does that, so components on 0..1 give a total on 0..1; a
    zero weight sum is not divided). A component that does not apply to an example (None) adds
    nothing to its total, as TRL's ``nansum``; an example no component applies to gets None.
    """

    def __init__(self, components: Sequence[Component], name: str = "reward", normalize: bool = True, post: Sequence[PostProcessor] = ()):
        super().__init__(name, post)
        self.components = list(components)
        self.normalize = normalize

    @property
    def weights(self) -> list[float]:
        """The weights applied to the components (normalised if ``normalize``). Normalised by the
        sum of their sizes, not their signed sum: a negative weight (a penalty) must not flip the
        signs of the others, nor a sum near zero blow them up."""
        raw = [c.weight for c in self.components]
        total = sum(abs(w) for w in raw)
        return [w / total for w in raw] if self.normalize and total != 0 else raw

    def _score_raw(self, prompts, completions, references, rows) -> RewardScores:
        parts = {c.name: c.node.score(prompts, completions, references, rows) for c in self.components}
        total: Values = []
        for i in range(len(completions)):
            terms = [w * parts[c.name][i] for c, w in zip(self.components, self.weights) if parts[c.name][i] is not None]
            total.append(sum(terms) if terms else None)
        return RewardScores(total, parts)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "components": {c.name: c.node.state_dict() for c in self.components}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        for component in self.components:
            component.node.load_state_dict(state.get("components", {}).get(component.name, {}))
