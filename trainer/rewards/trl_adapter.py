"""Rewards as TRL reward functions (GRPOTrainer / RLOOTrainer ``reward_funcs``).

TRL calls each reward function once per batch as ``f(prompts=..., completions=...,
completion_ids=..., **columns)``, where ``columns`` are the dataset's other columns (one list
each) plus ``trainer_state``, ``log_extra`` and ``log_metric``; it names the function in its
logs by ``__name__`` (``rewards/<name>/mean`` and ``/std``), reads ``None`` as NaN (left out of
those means and of the weighted sum), and adds the functions up with ``args.reward_weights``.

:func:`trl_reward_funcs` turns a weighted sum into one function per component, with the weights
to pass as ``reward_weights``, so TRL itself logs each component and sums exactly what
:meth:`RewardNode.score` would. :func:`trl_reward_func` is the single-function form; it logs the
components through TRL's ``log_metric``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainer.rewards.base import RewardContext
from trainer.rewards.compose import RewardNode, WeightedSum
from trainer.rewards.spec import build_reward

# What TRL adds to the columns it passes; not data.
TRL_EXTRAS = ("trainer_state", "log_extra", "log_metric", "environments", "completion_ids")


def message_text(value: Any) -> str:
    """A prompt or completion as TRL gives it (a string, or chat messages) -> plain text: the
    string itself, or the content of the messages' last turn (a list of text parts joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        content = value[-1].get("content", "")
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return "" if value is None else str(value)


def completion_text(value: Any) -> str:
    """A completion as text; a conversational completion's assistant turns joined."""
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return "".join(message_text([m]) for m in value if m.get("role", "assistant") == "assistant")
    return message_text(value)


class TRLRewardFunction:
    """A reward node in TRL's calling convention; ``__name__`` is its name in TRL's logs.

    The prompt is its text (a conversational prompt's last turn); the whole message list is in
    ``row["prompt_messages"]``, which ``reward_model`` renders. The reference is the column
    ``context.reference_column`` (None where that column is missing or empty for a row); ``row``
    holds every other column of the example. With ``stops`` (the profile's stop sequences), a
    completion is cut at the first one before it is scored, as the previews cut theirs: TRL's
    stop strings leave the stop itself in the text.
    """

    def __init__(self, node: RewardNode, reference_column: str, log_components: bool = False, stops: Sequence[str] = ()):
        self.node = node
        self.__name__ = node.name
        self.reference_column = reference_column
        self.log_components = log_components
        self.stops = [s for s in stops if s]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        columns = {k: v for k, v in kwargs.items() if k not in TRL_EXTRAS and isinstance(v, list | tuple) and len(v) == n}
        rows = [{k: v[i] for k, v in columns.items()} for i in range(n)]
        for row, prompt in zip(rows, prompts):
            if isinstance(prompt, list):
                row["prompt_messages"] = prompt
        references = [row.get(self.reference_column) or None for row in rows]
        texts = [completion_text(c) for c in completions]
        if self.stops:
            from trainer.monitoring.preview_backend import cut_at_stops  # one meaning of "where it stopped"

            texts = [cut_at_stops(text, self.stops) for text in texts]
        scores = self.node.score_detailed([message_text(p) for p in prompts], texts, references, rows)
        log_metric = kwargs.get("log_metric")
        if self.log_components and callable(log_metric):
            for name, value in scores.summary().items():
                if name.startswith("rewards/") and value is not None:
                    log_metric(name, value)
        return scores.total


def trl_reward_funcs(
    spec: Any, context: RewardContext, key: str = "method.reward", stops: Sequence[str] = ()
) -> tuple[list[TRLRewardFunction], list[float]]:
    """TRL ``reward_funcs`` and ``reward_weights`` for ``spec`` (None: the profile's default).

    A weighted sum without post-processing of its own becomes one function per component
    (each applying its own post-processing), with the weights the sum applies (normalised if
    the sum normalises), so TRL's weighted ``nansum`` equals :meth:`RewardNode.score`. Any other
    spec (a single reward, or a sum whose total is post-processed: a clip of a total cannot be
    split over its terms) is one function with weight 1.0. ``stops``: see
    :class:`TRLRewardFunction`.

    Raises:
        RewardSpecError: the spec has problems.
    """
    node = build_reward(spec, context, key)
    if isinstance(node, WeightedSum) and not node.post:
        return [TRLRewardFunction(c.node, context.reference_column, stops=stops) for c in node.components], node.weights
    return [TRLRewardFunction(node, context.reference_column, stops=stops)], [1.0]


def trl_reward_func(spec: Any, context: RewardContext, key: str = "method.reward", stops: Sequence[str] = ()) -> TRLRewardFunction:
    """The whole reward as one TRL function (named after the top node, "reward" for a sum);
    each component's mean and std go to TRL's ``log_metric`` as ``rewards/<name>/mean|std``.

    Raises:
        RewardSpecError: the spec has problems.
    """
    return TRLRewardFunction(build_reward(spec, context, key), context.reference_column, log_components=True, stops=stops)
