"""The reward registry: name -> reward class, one module per family.

``reward_class("bleu")`` looks a name up; an unknown name is an error with a did-you-mean, or the
list of known names. ``weighted_sum`` (composition), ``profile`` (the profile's default reward)
and ``python:package.module:function`` (your own function) are read by the spec parser
(``trainer.rewards.spec``), not registered here. A new reward is one class in a family module
plus its entry in :data:`REWARDS` (or a ``register_reward`` call from your own code).
"""

from __future__ import annotations

import difflib

from trainer.rewards.base import Reward
from trainer.rewards.classifiers import CLASSIFIER_REWARDS
from trainer.rewards.embedding import EMBEDDING_REWARDS
from trainer.rewards.perplexity import Perplexity
from trainer.rewards.profile_rewards import AnswerReward, FormatReward
from trainer.rewards.sentiment import Sentiment
from trainer.rewards.style import STYLE_REWARDS
from trainer.rewards.teacher import Teacher
from trainer.rewards.text_match import TEXT_MATCH_REWARDS

REWARDS: dict[str, type[Reward]] = {
    cls.name: cls
    for cls in (
        FormatReward,
        AnswerReward,
        *TEXT_MATCH_REWARDS,
        *STYLE_REWARDS,
        Sentiment,
        Perplexity,
        Teacher,
        *CLASSIFIER_REWARDS,
        *EMBEDDING_REWARDS,
    )
}

# Names the spec parser reads itself.
COMPOSITE_TYPES = ("weighted_sum", "profile")


class UnknownRewardError(ValueError):
    pass


def register_reward(cls: type[Reward], name: str | None = None) -> type[Reward]:
    """Add a reward class to the registry under ``name`` (default: ``cls.name``)."""
    REWARDS[name or cls.name] = cls
    return cls


def unknown_reward_message(name: str) -> str:
    """"unknown reward 'blue'; did you mean 'bleu'?", or the known names when none is close."""
    known = sorted([*REWARDS, *COMPOSITE_TYPES])
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown reward {name!r}; did you mean {close[0]!r}?"
    return f"unknown reward {name!r}; known rewards: {', '.join(known)} (or 'python:package.module:function')"


def reward_class(name: str) -> type[Reward]:
    """A registered reward name -> its class.

    Raises:
        UnknownRewardError: the name is not registered (the message suggests one).
    """
    if name not in REWARDS:
        raise UnknownRewardError(unknown_reward_message(name))
    return REWARDS[name]
